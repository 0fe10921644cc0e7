//! What this store's own scans saw, so a write can skip re-reading what the plan already read.
//!
//! A plan scans the target (LIST every folder, GET every secret listed) right before the apply
//! writes. Two facts from that scan make a write's pre-write metadata read redundant:
//!
//! - **Absent**: the secret's folder was listed and the secret was not in it. A KV v2 LIST names
//!   every key that has metadata (soft-deleted and metadata-only ones too), so the path held
//!   nothing at all: a create may mark it and write with check-and-set 0 at once. A path that was
//!   listed but reads as absent (its latest version soft-deleted) is not "absent" here.
//! - **Marked**: the secret was read at version `v` carrying our mark for its id: an update at
//!   check-and-set `v` needs neither the read nor a new mark.
//!
//! - **Pre-marked**: this store put our mark on a listed-absent path for a create whose data write
//!   then failed (an answer lost, a 429): the create, sent again by the retry layer, goes straight
//!   to the data write. Forgotten at the next listing, so it never outlives one apply's retries.
//!
//! Anything this does not know takes the full path (a metadata read first), so stale knowledge
//! can only cost a call, with one exception the writes handle: a secret created by someone else
//! after the listing, which check-and-set 0 refuses.
//!
//! Paths are held as 64-bit fingerprints (a few MB for 100k items). A collision can only make an
//! absent path look listed (the full path: one more call), never the reverse; a collision in
//! `marked` would need two paths with the same hash, the later read replacing the earlier.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use super::SecretPath;

#[derive(Default)]
pub(super) struct Seen {
    inner: Mutex<Sets>,
}

#[derive(Default)]
struct Sets {
    /// Folders listed completely (a 404 on LIST is an empty folder, listed too).
    folders: HashSet<u64>,
    /// Every key those listings named (secrets, not sub-folders), and every path written since.
    leaves: HashSet<u64>,
    /// Path → the version last read there carrying our mark for the id read there (one entry
    /// per path, so a long-running daemon does not accumulate versions).
    marked: HashMap<u64, u64>,
    /// Listed-absent paths this store has put our mark on, their data not written yet.
    premarked: HashSet<u64>,
}

fn fingerprint(parts: &[&str]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// The folder a KV path is listed in, as `list_tree` names folders: `""` or `"a/b/"`.
fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..=i])
}

impl Seen {
    /// `folder` (`""` or ending in `/`) of `mount` was listed and named `keys`.
    pub(super) fn listed(&self, mount: &str, folder: &str, keys: &[String]) {
        let mut s = self.inner.lock().expect("seen");
        s.premarked.clear();
        s.folders.insert(fingerprint(&[mount, folder]));
        for key in keys.iter().filter(|k| !k.ends_with('/')) {
            s.leaves.insert(fingerprint(&[mount, &format!("{folder}{key}")]));
        }
    }

    /// A secret now exists at `sp` (this store wrote it).
    pub(super) fn exists(&self, sp: &SecretPath) {
        let key = fingerprint(&[&sp.mount, &sp.path]);
        let mut s = self.inner.lock().expect("seen");
        s.premarked.remove(&key);
        s.leaves.insert(key);
    }

    /// Our mark is on `sp` (listed absent) and its data is not written yet, or no longer is.
    pub(super) fn premark(&self, sp: &SecretPath, on: bool) {
        let key = fingerprint(&[&sp.mount, &sp.path]);
        let mut s = self.inner.lock().expect("seen");
        if on { s.premarked.insert(key) } else { s.premarked.remove(&key) };
    }

    /// Whether this store marked `sp` for a create that has not written its data yet.
    pub(super) fn premarked(&self, sp: &SecretPath) -> bool {
        self.inner.lock().expect("seen").premarked.contains(&fingerprint(&[&sp.mount, &sp.path]))
    }

    /// Whether the last listing of `sp`'s folder showed nothing at `sp`.
    pub(super) fn absent(&self, sp: &SecretPath) -> bool {
        let s = self.inner.lock().expect("seen");
        s.folders.contains(&fingerprint(&[&sp.mount, parent(&sp.path)]))
            && !s.leaves.contains(&fingerprint(&[&sp.mount, &sp.path]))
    }

    /// `sp` was read at `version`, carrying our mark for its id (`ours`) or not.
    pub(super) fn read(&self, sp: &SecretPath, version: &str, ours: bool) {
        let key = fingerprint(&[&sp.mount, &sp.path]);
        let mut s = self.inner.lock().expect("seen");
        match version.parse::<u64>() {
            Ok(v) if ours => s.marked.insert(key, v),
            _ => s.marked.remove(&key),
        };
    }

    /// Whether `sp` was read at `version` carrying our mark for its id.
    pub(super) fn marked(&self, sp: &SecretPath, version: &str) -> bool {
        let Ok(v) = version.parse::<u64>() else { return false };
        self.inner.lock().expect("seen").marked.get(&fingerprint(&[&sp.mount, &sp.path])) == Some(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(path: &str) -> SecretPath {
        SecretPath { mount: "secret".into(), path: path.into() }
    }

    #[test]
    fn only_a_listed_folder_proves_a_path_absent() {
        let seen = Seen::default();
        assert!(!seen.absent(&sp("variables/a")), "nothing listed: unknown");
        seen.listed("secret", "variables/", &["b".into(), "a/".into()]);
        assert!(seen.absent(&sp("variables/a")), "only a folder `a/` is there");
        assert!(!seen.absent(&sp("variables/b")));
        assert!(!seen.absent(&sp("variables/a/x")), "the sub-folder was not listed");
        assert!(!seen.absent(&SecretPath { mount: "other".into(), path: "variables/a".into() }));
        seen.exists(&sp("variables/a"));
        assert!(!seen.absent(&sp("variables/a")), "written since");
        seen.listed("secret", "", &["top".into()]);
        assert!(seen.absent(&sp("x")) && !seen.absent(&sp("top")));
    }

    #[test]
    fn a_premark_lasts_until_the_write_lands_or_the_next_listing() {
        let seen = Seen::default();
        seen.listed("secret", "variables/", &[]);
        seen.premark(&sp("variables/a"), true);
        seen.premark(&sp("variables/b"), true);
        assert!(seen.premarked(&sp("variables/a")) && seen.absent(&sp("variables/a")));
        seen.exists(&sp("variables/a"));
        assert!(!seen.premarked(&sp("variables/a")), "written");
        seen.premark(&sp("variables/b"), false);
        assert!(!seen.premarked(&sp("variables/b")), "unmarked");
        seen.premark(&sp("variables/b"), true);
        seen.listed("secret", "variables/", &[]);
        assert!(!seen.premarked(&sp("variables/b")), "a new scan forgets it");
    }

    #[test]
    fn marked_is_per_version_and_a_later_read_without_the_mark_forgets_it() {
        let seen = Seen::default();
        seen.read(&sp("variables/a"), "3", true);
        assert!(seen.marked(&sp("variables/a"), "3"));
        assert!(!seen.marked(&sp("variables/a"), "4"));
        seen.read(&sp("variables/a"), "4", true);
        assert!(seen.marked(&sp("variables/a"), "4") && !seen.marked(&sp("variables/a"), "3"), "one version per path");
        seen.read(&sp("variables/a"), "4", false);
        assert!(!seen.marked(&sp("variables/a"), "4"));
    }
}
