//! Replacing files atomically without changing what an operator set up around them.
//!
//! - The new content goes to a temp file **in the same directory**, created 0600 (it holds
//!   plaintext), named `.<file>.airflow-secrets-sync-<random>.tmp`, written and fsynced.
//! - An existing file keeps its **mode and owner** (Airflow may run as another user): the temp file
//!   gets them just before the rename; if the owner cannot be kept (not root, another user's
//!   file) nothing is written and the error says so. A new file is 0600 unless `file_mode` is set.
//! - A **symbolic link is refused**, naming the path: replacing it would silently cut the link,
//!   and writing through it would let whoever controls the link choose what gets overwritten.
//!   Point the configuration at the file the link names instead.
//! - Several files are committed together ([`commit`]): every temp file is staged first, then the
//!   renames run back to back; if one fails, the files already replaced are put back (from a hard
//!   link of the old file), so a failed flush has written nothing.
//! - A kill -9 between staging and renaming leaves a temp file: [`remove_stale`] deletes this
//!   tool's temp files for a path when a store opens it (those older than a minute, so a write in
//!   flight in another process survives) and before every flush of a file store (all of them).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::StoreError;

/// What marks a temp file as ours, after `.<file name>`.
const TEMP_MARK: &str = ".airflow-secrets-sync-";
/// Temp files older than this are stale when a store opens a path.
const STALE_AFTER: Duration = Duration::from_secs(60);
/// Debug builds only: abort (as kill -9 would) after staging the temp files, before any rename.
pub const FAULT_ABORT_BEFORE_RENAME_ENV: &str = "AIRFLOW_SECRETS_SYNC_FAULT_ABORT_BEFORE_RENAME";

/// A Unix permission mode for files the tool creates, written as an octal string (`"0640"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl FileMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if !digits.is_empty() && m <= 0o777 => Ok(FileMode(m)),
            _ => Err(format!("file_mode {s:?} is not an octal permission mode such as \"0600\" or \"0640\"")),
        }
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FileMode::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether `name` is one of our temp files for `target_name`: this tool's mark, or the
/// `.<file>.XXXXXX.tmp` names earlier versions used.
fn is_our_temp(name: &str, target_name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_prefix(target_name)) else { return false };
    let Some(middle) = rest.strip_suffix(".tmp") else { return false };
    if middle.starts_with(TEMP_MARK) {
        return true;
    }
    middle.strip_prefix('.').is_some_and(|r| r.len() == 6 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Delete this tool's temp files beside `path` (regular files only), those older than a minute
/// unless `all`. Best effort: a failure is logged with the path, never the content.
pub(crate) fn remove_stale(path: &Path, all: bool) {
    let dir = parent(path);
    let target = file_name(path);
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for ent in entries.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if !is_our_temp(&name, &target) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(ent.path()) else { continue };
        let old = meta.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= STALE_AFTER);
        if meta.is_file() && (all || old) {
            match std::fs::remove_file(ent.path()) {
                Ok(()) => tracing::warn!(file = %ent.path().display(), "removed a temp file an interrupted write left"),
                Err(e) => {
                    tracing::warn!(file = %ent.path().display(), error = %e.kind(), "cannot remove a stale temp file")
                }
            }
        }
    }
}

/// Delete this tool's temp files older than a minute anywhere in `dir` (a store of many files).
pub(crate) fn remove_stale_in_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for ent in entries.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(TEMP_MARK) && name.ends_with(".tmp") {
            let target = name[1..name.find(TEMP_MARK).unwrap_or(1)].to_string();
            remove_stale(&dir.join(target), false);
        }
    }
}

/// A temp file holding a file's new content, ready to be renamed over it.
pub(crate) struct Staged {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    existed: bool,
}

fn backend(store: &dyn fmt::Display, op: &'static str, path: &Path, e: impl fmt::Display) -> StoreError {
    StoreError::Backend { store: store.to_string(), op, reason: format!("{}: {e}", path.display()) }
}

/// Write `text` to a temp file beside `path` with the mode and owner `path` will need.
pub(crate) fn stage(
    store: &dyn fmt::Display,
    path: &Path,
    text: &str,
    new_mode: Option<FileMode>,
) -> Result<Staged, StoreError> {
    let existing = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(StoreError::Config {
                store: store.to_string(),
                message: format!(
                    "{} is a symbolic link; the tool neither replaces a link nor writes through one: set the path to \
                     the file it points at",
                    path.display()
                ),
            });
        }
        Ok(m) if !m.is_file() => {
            return Err(StoreError::Config {
                store: store.to_string(),
                message: format!("{} is not a regular file", path.display()),
            });
        }
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(backend(store, "stat", path, e.kind())),
    };
    let dir = parent(path);
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{}{TEMP_MARK}", file_name(path));
    builder.prefix(&prefix).suffix(".tmp").rand_bytes(8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(&dir).map_err(|e| backend(store, "create temp file", path, e.kind()))?;
    tmp.write_all(text.as_bytes()).map_err(|e| backend(store, "write temp file", path, e.kind()))?;
    tmp.as_file().sync_all().map_err(|e| backend(store, "fsync temp file", path, e.kind()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = match &existing {
            Some(m) => {
                let mine = tmp.as_file().metadata().map_err(|e| backend(store, "stat temp file", path, e.kind()))?;
                if (mine.uid(), mine.gid()) != (m.uid(), m.gid()) {
                    std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid())).map_err(|e| {
                        StoreError::PermissionDenied {
                            store: store.to_string(),
                            what: format!(
                                "keep the owner ({}:{}) of {} ({}); run as that user or root, nothing was written",
                                m.uid(),
                                m.gid(),
                                path.display(),
                                e.kind()
                            ),
                        }
                    })?;
                }
                m.mode() & 0o7777
            }
            None => new_mode.map_or(0o600, |m| m.0),
        };
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| backend(store, "chmod temp file", path, e.kind()))?;
    }
    #[cfg(not(unix))]
    let _ = (existing.is_some(), new_mode);
    Ok(Staged { path: path.to_path_buf(), tmp, existed: existing.is_some() })
}

/// Rename every staged file over its target, in order. If a rename fails, the targets already
/// replaced are restored (or removed, when they did not exist), so on error nothing was written,
/// unless the error says a file could not be restored.
pub(crate) fn commit(store: &dyn fmt::Display, staged: Vec<Staged>) -> Result<(), StoreError> {
    if cfg!(debug_assertions) && std::env::var_os(FAULT_ABORT_BEFORE_RENAME_ENV).is_some() {
        std::process::abort();
    }
    let several = staged.len() > 1;
    // (target, backup of the old file, whether it existed)
    let mut done: Vec<(PathBuf, Option<PathBuf>, bool)> = Vec::new();
    let mut failure = None;
    for s in staged {
        let backup = if several && s.existed {
            let b = parent(&s.path).join(format!(".{}{TEMP_MARK}{}-old.tmp", file_name(&s.path), std::process::id()));
            let _ = std::fs::remove_file(&b);
            match std::fs::hard_link(&s.path, &b) {
                Ok(()) => Some(b),
                Err(e) => {
                    tracing::warn!(file = %s.path.display(), error = %e.kind(), "cannot keep the old file to undo a failed flush");
                    None
                }
            }
        } else {
            None
        };
        let path = s.path.clone();
        match s.tmp.persist(&path) {
            Ok(_) => {
                done.push((path, backup, s.existed));
                if several && done.len() == 1 {
                    crate::fault::kill_point(crate::fault::LOCAL_FILES_FLUSH);
                }
            }
            Err(e) => {
                if let Some(b) = backup {
                    let _ = std::fs::remove_file(b);
                }
                failure = Some(backend(store, "rename temp file", &path, e.error.kind()));
                break;
            }
        }
    }
    let Some(err) = failure else {
        for (path, backup, _) in &done {
            if let Some(b) = backup {
                let _ = std::fs::remove_file(b);
            }
            if let Ok(d) = std::fs::File::open(parent(path)) {
                let _ = d.sync_all();
            }
        }
        return Ok(());
    };
    let mut unrestored = Vec::new();
    for (path, backup, existed) in done.into_iter().rev() {
        let undone = match (backup, existed) {
            (Some(b), _) => std::fs::rename(&b, &path).is_ok(),
            (None, false) => std::fs::remove_file(&path).is_ok(),
            (None, true) => false,
        };
        if !undone {
            unrestored.push(path.display().to_string());
        }
    }
    if unrestored.is_empty() {
        return Err(err);
    }
    Err(StoreError::Backend {
        store: store.to_string(),
        op: "flush",
        reason: format!("{err}; already replaced and not restored: {}", unrestored.join(", ")),
    })
}

/// Replace `path` with `text` atomically (see the module docs).
/// (The caller sweeps stale temp files first when it should: [`remove_stale`].)
pub(crate) fn write_atomically(
    store: &dyn fmt::Display,
    path: &Path,
    text: &str,
    new_mode: Option<FileMode>,
) -> Result<(), StoreError> {
    commit(store, vec![stage(store, path, text, new_mode)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_only_for_their_file() {
        assert!(is_our_temp(".v.json.airflow-secrets-sync-AbC123xy.tmp", "v.json"));
        assert!(is_our_temp(".v.json.airflow-secrets-sync-77-old.tmp", "v.json"));
        assert!(is_our_temp(".v.json.Ab12Cd.tmp", "v.json"), "earlier versions' names");
        assert!(!is_our_temp(".v.json.notes.tmp", "v.json"));
        assert!(!is_our_temp(".w.json.Ab12Cd.tmp", "v.json"));
        assert!(!is_our_temp("v.json", "v.json"));
        assert_eq!(FileMode::parse("0640"), Ok(FileMode(0o640)));
        assert!(FileMode::parse("0999").is_err() && FileMode::parse("").is_err() && FileMode::parse("7777").is_err());
    }

    #[test]
    fn stale_temp_files_go_and_fresh_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let (old, fresh) = (
            d.path().join(".ab.json.airflow-secrets-sync-1.tmp"),
            d.path().join(".cd.json.airflow-secrets-sync-2.tmp"),
        );
        for p in [&old, &fresh] {
            std::fs::write(p, "canary").unwrap();
        }
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
        remove_stale_in_dir(d.path());
        assert!(!old.exists() && fresh.exists(), "only the stale one goes");
        remove_stale(&d.path().join("cd.json"), true);
        assert!(!fresh.exists(), "a flush removes all of them");
    }

    #[test]
    fn a_failed_rename_puts_back_the_files_already_replaced() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (pa, pn) = (a.path().join("one.json"), a.path().join("new.json"));
        std::fs::write(&pa, "old").unwrap();
        let sa = stage(&"test", &pa, "new", None).unwrap();
        let sn = stage(&"test", &pn, "created", None).unwrap();
        let sb = stage(&"test", &b.path().join("two.json"), "x", None).unwrap();
        // The last rename fails: its temp file (and directory) are gone.
        std::fs::remove_dir_all(b.path()).unwrap();
        let err = commit(&"test", vec![sa, sn, sb]).unwrap_err();
        assert!(!err.to_string().contains("not restored"), "{err}");
        assert_eq!(std::fs::read_to_string(&pa).unwrap(), "old");
        assert!(!pn.exists(), "a file the flush created is removed again");
        let left: Vec<_> = std::fs::read_dir(a.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("one.json")], "no temp or backup file is left");
    }
}
