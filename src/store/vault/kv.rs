//! The KV operations behind the store: reads (one secret, its metadata, a LIST, a tree), and the
//! KV v2 write paths with check-and-set and the ownership mark.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
use serde_json::Value as Json;
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretMetadataRequest, SetSecretRequestOptions};
use vaultrs::api::kv2::responses::{ReadSecretMetadataResponse, ReadSecretResponse};

use super::client::{Failure, api_error, raw_get};
use super::{KvVersion, MANAGED_BY, SecretPath, VaultStore, entry_from};
use crate::store::limit::Outcome;
use crate::model::{Entry, Inventory, ItemError, ItemErrorKind, ItemId, Meta, Ownership};
use crate::store::{Precondition, StoreError};

/// Vault limits each `custom_metadata` value to 512 bytes; longer ids are not recorded there (the
/// path already names them).
const CUSTOM_METADATA_VALUE_LIMIT: usize = 512;

/// How an item read ended, per id.
enum ReadOutcome {
    Found(Json, Meta),
    Absent,
    Denied(SecretPath),
}

impl VaultStore {
    /// The refusal to replace or delete a secret this tool did not write (the same item error
    /// the planner and the other stores use).
    pub(super) fn not_owned(&self, id: &ItemId, sp: &SecretPath) -> StoreError {
        StoreError::item(
            self,
            id,
            ItemError::new(
                ItemErrorKind::NotOwned,
                format!(
                    "{} was not written by {MANAGED_BY} (no managed-by custom_metadata); set adopt = true to replace or delete it",
                    sp.api_path(self.kv())
                ),
            ),
        )
    }

    pub(super) fn is_ours(custom: &Option<HashMap<String, String>>) -> bool {
        custom.as_ref().and_then(|m| m.get("managed-by")).is_some_and(|v| v == MANAGED_BY)
    }

    pub(super) fn ownership(&self, custom: &Option<HashMap<String, String>>) -> Ownership {
        if Self::is_ours(custom) { Ownership::Ours } else { Ownership::Foreign }
    }

    /// Read one secret. `None` = 404 (absent, or a KV v2 latest version that is soft-deleted,
    /// which Airflow also reads as None).
    pub(super) async fn read_at(&self, sp: &SecretPath, id: &ItemId) -> Result<Option<(Json, Meta)>, Failure> {
        let (mount, path) = (sp.mount.as_str(), sp.path.as_str());
        let name = Some(sp.api_path(self.kv()));
        let result = match self.kv() {
            KvVersion::V2 => self
                .call(|c| async move {
                    let endpoint = ReadSecretRequest::builder().mount(mount).path(path).build().expect("mount and path are set");
                    vaultrs::api::exec_with_result(&*c, endpoint).await
                })
                .await
                .map(|r: ReadSecretResponse| {
                    let version = r.metadata.version.to_string();
                    self.seen.read(sp, &version, tagged_as(&r.metadata.custom_metadata, &id.id));
                    let meta = Meta {
                        ownership: self.ownership(&r.metadata.custom_metadata),
                        version: Some(r.metadata.version.to_string()),
                        name,
                    };
                    (r.data, meta)
                }),
            KvVersion::V1 => self
                .call(|c| async move { vaultrs::kv1::get_raw(&*c, mount, path).await })
                .await
                .map(|r| (r.data, Meta { ownership: Ownership::Untracked, version: None, name })),
        };
        match result {
            Ok(found) => Ok(Some(found)),
            Err(Failure::NotFound) => Ok(None),
            Err(f) => Err(f),
        }
    }

    pub(super) async fn read_metadata(&self, sp: &SecretPath) -> Result<Option<ReadSecretMetadataResponse>, StoreError> {
        let (mount, path) = (sp.mount.as_str(), sp.path.as_str());
        match self.call(|c| async move { vaultrs::kv2::read_metadata(&*c, mount, path).await }).await {
            Ok(m) => Ok(Some(m)),
            Err(Failure::NotFound) => Ok(None),
            Err(f) => Err(self.error("read metadata", &sp.metadata_path(), f)),
        }
    }

    /// One LIST. A 404 is an empty folder (Vault answers LIST on a missing path with 404).
    pub(super) async fn list_folder(&self, mount: &str, folder: &str) -> Result<Vec<String>, StoreError> {
        let result = match self.kv() {
            KvVersion::V2 => self.call(|c| async move { vaultrs::kv2::list(&*c, mount, folder).await }).await,
            KvVersion::V1 => {
                self.call(|c| async move { vaultrs::kv1::list(&*c, mount, folder).await.map(|r| r.data.keys) }).await
            }
        };
        let result = match result {
            Err(Failure::NotFound) => Ok(Vec::new()),
            other => other,
        };
        if let Ok(keys) = &result
            && self.kv() == KvVersion::V2
        {
            self.seen.listed(mount, folder, keys);
        }
        match result {
            Ok(keys) => Ok(keys),
            Err(f) => {
                let shown = match self.kv() {
                    KvVersion::V2 => format!("{mount}/metadata/{folder}"),
                    KvVersion::V1 => format!("{mount}/{folder}"),
                };
                Err(self.error("list", &shown, f))
            }
        }
    }

    /// Every secret under `root` in `mount`, recursively, as paths relative to `root`. Subtrees
    /// that are another kind's configured path are skipped (e.g. `connections/` below a
    /// variables path of `""`): Airflow would look those up as the other kind.
    pub(super) async fn list_tree(&self, mount: &str, root: &str, skip: &[String]) -> Result<Vec<String>, StoreError> {
        let full = |rel: &str| if root.is_empty() { rel.to_string() } else { format!("{root}/{rel}") };
        let skipped = |full_path: &str| {
            let p = full_path.trim_end_matches('/');
            skip.iter().any(|s| p == s || p.starts_with(&format!("{s}/")))
        };
        let mut leaves = Vec::new();
        let mut pending = vec![String::new()];
        while !pending.is_empty() {
            let batch = std::mem::take(&mut pending);
            let listed: Vec<(String, Result<Vec<String>, StoreError>)> = stream::iter(batch)
                .map(|rel| async move {
                    let folder = if root.is_empty() { rel.clone() } else { format!("{root}/{rel}") };
                    let _slot = self.reads.acquire().await;
                    let sent = tokio::time::Instant::now();
                    let keys = self.list_folder(mount, &folder).await;
                    self.reads.record(Outcome::of(&keys, sent));
                    (rel, keys)
                })
                .buffer_unordered(self.reads.cap())
                .collect()
                .await;
            for (rel, keys) in listed {
                for key in keys? {
                    let child = format!("{rel}{key}");
                    if skipped(&full(&child)) {
                        continue;
                    }
                    if key.ends_with('/') {
                        pending.push(child);
                    } else {
                        leaves.push(child);
                    }
                }
            }
        }
        Ok(leaves)
    }

    /// KV mounts of the configured version, for `mount_point = None` (`sys/internal/ui/mounts`
    /// lists the mounts this token can use, without needing `sys/mounts`).
    pub(super) async fn kv_mounts(&self) -> Result<Vec<String>, StoreError> {
        let body = self
            .call(|c| async move {
                let (status, body) = raw_get(&c, "sys/internal/ui/mounts", true).await?;
                if (200..300).contains(&status) { Ok(body) } else { Err(api_error(status, &body)) }
            })
            .await
            .map_err(|f| self.error("list mounts", "sys/internal/ui/mounts", f))?;
        let want = self.kv().number().to_string();
        let mut mounts: Vec<String> = body
            .pointer("/data/secret")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, m)| {
                let ty = m.get("type").and_then(Json::as_str).unwrap_or("");
                let version = m.pointer("/options/version").and_then(Json::as_str).unwrap_or("1");
                (ty == "kv" || ty == "generic") && version == want
            })
            .map(|(name, _)| name.trim_end_matches('/').to_string())
            // Airflow takes only the id's first segment as the mount: nested mounts are unreachable.
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .collect();
        mounts.sort();
        Ok(mounts)
    }

    /// Read each id from its candidate locations in order; the first that exists wins (Airflow's
    /// order across a list of paths).
    pub(super) async fn read_candidates(&self, candidates: Vec<(ItemId, Vec<SecretPath>)>) -> Result<Inventory, StoreError> {
        let outcomes: Vec<(ItemId, Result<ReadOutcome, StoreError>)> = stream::iter(candidates)
            .map(|(id, paths)| async move {
                let _slot = self.reads.acquire().await;
                for sp in paths {
                    let sent = tokio::time::Instant::now();
                    let read = self.read_at(&sp, &id).await;
                    self.reads.record(match &read {
                        Ok(_) | Err(Failure::Denied) => Outcome::Answered(sent.elapsed()),
                        Err(Failure::Throttled | Failure::Unavailable(_) | Failure::Unreachable(_) | Failure::Sealed) => {
                            Outcome::Overloaded
                        }
                        Err(_) => Outcome::Other,
                    });
                    match read {
                        Ok(Some((data, meta))) => return (id, Ok(ReadOutcome::Found(data, meta))),
                        Ok(None) => continue,
                        Err(Failure::Denied) => return (id, Ok(ReadOutcome::Denied(sp))),
                        Err(f) => {
                            let shown = sp.api_path(self.kv());
                            return (id, Err(self.error("read", &shown, f)));
                        }
                    }
                }
                (id, Ok(ReadOutcome::Absent))
            })
            .buffer_unordered(self.reads.cap())
            .collect()
            .await;
        let mut inv = Inventory::new();
        for (id, outcome) in outcomes {
            match outcome? {
                ReadOutcome::Found(data, meta) => match entry_from(&id, data, meta, self.reader) {
                    Ok(entry) => inv.insert(entry),
                    Err(e) => inv.insert_error(id, e),
                },
                ReadOutcome::Denied(sp) => inv.insert_error(
                    id,
                    ItemError::new(ItemErrorKind::Unreadable, format!("permission denied reading {}", sp.api_path(self.kv()))),
                ),
                ReadOutcome::Absent => {}
            }
        }
        Ok(inv)
    }

    pub(super) async fn write_v2(&self, entry: &Entry, sp: &SecretPath, data: &Json, pre: &Precondition) -> Result<(), StoreError> {
        let id = &entry.id;
        let shown = sp.api_path(KvVersion::V2);
        let conflict = || StoreError::Conflict { store: self.to_string(), id: id.clone() };
        // The plan's scan already answered what the metadata read would (see `seen`).
        match pre {
            Precondition::Absent if self.seen.absent(sp) => return self.create_listed_absent(entry, sp, data).await,
            Precondition::Version(v) if self.seen.marked(sp, v) => {
                let cas = v.parse::<u32>().map_err(|_| conflict())?;
                return match self.cas_write(sp, data, cas).await {
                    Ok(()) => Ok(()),
                    Err(Failure::CasMismatch) => Err(conflict()),
                    Err(f) => Err(self.error("write", &shown, f)),
                };
            }
            _ => {}
        }
        // One metadata read decides everything before any change: the precondition, ownership,
        // and whether our mark is already there. CAS on the data write still catches a writer
        // that races us after this read.
        let meta = self.read_metadata(sp).await?;
        let current = meta.as_ref().map_or(0, |m| m.current_version);
        let ours = meta.as_ref().is_some_and(|m| Self::is_ours(&m.custom_metadata));
        let foreign = current > 0 && !ours;
        let cas: u64 = match pre {
            // `Absent` means "Airflow reads nothing": no version, or a latest version that is
            // soft-deleted or destroyed, if it is ours to replace.
            Precondition::Absent => match &meta {
                Some(m) if current > 0 && !(latest_is_deleted(m) && (ours || self.config.adopt)) => {
                    return Err(conflict());
                }
                _ => current,
            },
            // The planner saw this version (and its ownership): an explicit adoption is allowed.
            Precondition::Version(v) => match v.parse::<u64>() {
                Ok(v) if v == current => v,
                _ => return Err(conflict()),
            },
            // No precondition: refuse foreign secrets unless adopting, and still write with CAS
            // at the version just seen, so a racing writer is not overwritten.
            Precondition::Any => {
                if foreign && !self.config.adopt {
                    return Err(self.not_owned(id, sp));
                }
                current
            }
        };
        let cas = u32::try_from(cas).map_err(|_| conflict())?;
        let previous = meta.as_ref().and_then(|m| m.custom_metadata.clone()).unwrap_or_default();
        let tagged = !meta.as_ref().is_some_and(|m| tagged_as(&m.custom_metadata, &id.id));
        // Mark ownership BEFORE the data: a process killed between the two calls then leaves
        // our mark on an item with no new value (which the next run simply writes), never a value
        // without our mark (which would read as someone else's and block rollback).
        if tagged {
            self.set_custom_metadata(sp, our_mark(&id.id)).await?;
        }
        let failure = match self.cas_write(sp, data, cas).await {
            Ok(()) => {
                self.seen.exists(sp);
                return Ok(());
            }
            Err(Failure::CasMismatch) => conflict(),
            Err(f) => self.error("write", &shown, f),
        };
        // The data write failed: a secret that was someone else's must not keep our mark (it
        // would then read as ours, and be overwritten or pruned later). Best effort: the
        // original failure is what the caller needs to see.
        if tagged
            && foreign
            && let Err(e) = self.set_custom_metadata(sp, previous).await
        {
            tracing::warn!(store = %self, id = %id, error = %e, "could not restore custom_metadata after a failed write");
        }
        Err(failure)
    }

    /// A create where the plan's listing showed nothing at `sp`: mark, then write with
    /// check-and-set 0 (3 calls with the read-back, no metadata read). Check-and-set 0 refuses
    /// the write if anyone created the secret since the listing; our mark then comes off again.
    pub(super) async fn create_listed_absent(&self, entry: &Entry, sp: &SecretPath, data: &Json) -> Result<(), StoreError> {
        let id = &entry.id;
        let mark = our_mark(&id.id);
        // Ownership before data, as on the full path: a crash between the two leaves a mark on a
        // path with no value, which the next run writes. A create sent again after its data write
        // failed (the retry layer) finds its mark there already.
        if !self.seen.premarked(sp) {
            self.set_custom_metadata(sp, mark.clone()).await?;
            self.seen.premark(sp, true);
        }
        let failure = match self.cas_write(sp, data, 0).await {
            Ok(()) => {
                self.seen.exists(sp);
                return Ok(());
            }
            Err(Failure::CasMismatch) => {
                self.seen.exists(sp);
                // A retried request whose first answer was lost can find its own write there.
                if let Ok(Some((got, meta))) = self.read_at(sp, id).await
                    && got == *data
                    && meta.ownership == Ownership::Ours
                    && meta.version.as_deref() == Some("1")
                {
                    return Ok(());
                }
                if let Err(e) = self.unmark(sp, &mark).await {
                    tracing::warn!(store = %self, id = %id, error = %e, "could not remove our mark from a secret created by someone else");
                }
                StoreError::Conflict { store: self.to_string(), id: id.clone() }
            }
            // Our mark stays on a path that held nothing: as after a crash between the calls.
            Err(f) => self.error("write", &sp.api_path(KvVersion::V2), f),
        };
        Err(failure)
    }

    /// Take our mark's keys off a secret someone else created (keeping any keys they set).
    pub(super) async fn unmark(&self, sp: &SecretPath, mark: &HashMap<String, String>) -> Result<(), StoreError> {
        let Some(meta) = self.read_metadata(sp).await? else { return Ok(()) };
        let mut custom = meta.custom_metadata.unwrap_or_default();
        let before = custom.len();
        custom.retain(|k, v| mark.get(k) != Some(v));
        if custom.len() == before {
            return Ok(());
        }
        self.set_custom_metadata(sp, custom).await
    }

    /// One KV v2 data write with check-and-set `cas` (0: only if no version exists).
    pub(super) async fn cas_write(&self, sp: &SecretPath, data: &Json, cas: u32) -> Result<(), Failure> {
        let (mount, path) = (sp.mount.as_str(), sp.path.as_str());
        self.call(|c| async move {
            vaultrs::kv2::set_with_options(&*c, mount, path, data, SetSecretRequestOptions { cas }).await
        })
        .await
        .map(|_| ())
    }

    /// Replace a KV v2 secret's `custom_metadata` (creating its metadata if needed).
    pub(super) async fn set_custom_metadata(&self, sp: &SecretPath, custom: HashMap<String, String>) -> Result<(), StoreError> {
        let (mount, path) = (sp.mount.as_str(), sp.path.as_str());
        let custom = &custom;
        self.call(|c| async move {
            let mut opts = SetSecretMetadataRequest::builder();
            opts.custom_metadata(custom.clone());
            vaultrs::kv2::set_metadata(&*c, mount, path, Some(&mut opts)).await
        })
        .await
        .map_err(|f| self.error("write metadata", &sp.metadata_path(), f))
    }
}

/// The `custom_metadata` that marks a secret as written by this tool for `id`.
pub(super) fn our_mark(id: &str) -> HashMap<String, String> {
    let mut custom = HashMap::from([("managed-by".to_string(), MANAGED_BY.to_string())]);
    if id.len() <= CUSTOM_METADATA_VALUE_LIMIT {
        custom.insert("airflow-id".to_string(), id.to_string());
    }
    custom
}

pub(super) fn tagged_as(custom: &Option<HashMap<String, String>>, id: &str) -> bool {
    VaultStore::is_ours(custom)
        && (id.len() > CUSTOM_METADATA_VALUE_LIMIT
            || custom.as_ref().and_then(|m| m.get("airflow-id")).is_some_and(|v| v == id))
}

pub(super) fn latest_is_deleted(m: &ReadSecretMetadataResponse) -> bool {
    m.versions
        .get(&m.current_version.to_string())
        .is_some_and(|v| v.destroyed || !v.deletion_time.is_empty())
}
