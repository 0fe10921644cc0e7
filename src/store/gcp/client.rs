//! Calls to Secret Manager: each failure classified (throttled with its Retry-After, unavailable,
//! per-item, not found), reads of `versions/latest`, and the write protocol (create the secret with
//! our label, add a version, prune old versions).

use std::collections::HashMap;
use std::time::Duration;

use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_secretmanager_v1::model::{self as gsm, secret_version::State as VersionState};

use super::{GcpSecretManagerStore, ID_ANNOTATION, KIND_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MAX_PAYLOAD_BYTES, Replication};
use crate::airflow::connection::{self, Reader};
use crate::model::{Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Ownership, SecretValue, Value, Variable};
use crate::store::StoreError;


/// How one failed call is to be treated.
pub(super) enum Failure {
    NotFound,
    AlreadyExists,
    Store(StoreError),
    /// A per-item condition (invalid argument, failed precondition, permission on the item).
    Item(ItemErrorKind, String),
}

impl GcpSecretManagerStore {
    pub(super) fn classify(&self, op: &'static str, e: &GaxError) -> Failure {
        let store = self.to_string();
        let http = e.http_status_code();
        let retry_after = e
            .http_headers()
            .and_then(|h| h.get("retry-after"))
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reason = e.status().map(|s| s.message.clone()).unwrap_or_else(|| e.to_string());
        let code = e.status().map(|s| s.code);
        match (code, http) {
            (Some(Code::NotFound), _) | (None, Some(404)) => Failure::NotFound,
            (Some(Code::AlreadyExists), _) | (None, Some(409)) => Failure::AlreadyExists,
            (Some(Code::ResourceExhausted), _) | (_, Some(429)) => {
                Failure::Store(StoreError::Throttled { store, op, retry_after })
            }
            (Some(Code::PermissionDenied), _) | (None, Some(403)) => {
                Failure::Item(ItemErrorKind::Unreadable, format!("permission denied during {op}"))
            }
            (Some(Code::Unauthenticated), _) | (None, Some(401)) => {
                Failure::Store(StoreError::PermissionDenied { store, what: format!("unauthenticated during {op}: {reason}") })
            }
            (Some(Code::FailedPrecondition), _) => Failure::Item(ItemErrorKind::Unreadable, reason),
            (Some(Code::InvalidArgument), _) | (None, Some(400)) => Failure::Item(ItemErrorKind::InvalidName, reason),
            (Some(Code::Unavailable | Code::DeadlineExceeded | Code::Internal | Code::Aborted), _) => {
                Failure::Store(StoreError::Unavailable { store, op, reason })
            }
            (_, Some(s)) if s >= 500 => Failure::Store(StoreError::Unavailable { store, op, reason }),
            _ if e.is_timeout() || e.is_io() || e.is_connect() || e.is_transport() => {
                Failure::Store(StoreError::Unavailable { store, op, reason })
            }
            _ => Failure::Store(StoreError::Backend { store, op, reason }),
        }
    }

    /// A store-level error for a failure that has no per-item meaning at this call site.
    pub(super) fn store_err(&self, op: &'static str, id: Option<&ItemId>, f: Failure) -> StoreError {
        match f {
            Failure::Store(e) => e,
            Failure::Item(kind, detail) => match id {
                Some(id) => StoreError::item(self, id, ItemError::new(kind, detail)),
                None => StoreError::Backend { store: self.to_string(), op, reason: detail },
            },
            Failure::NotFound => StoreError::Backend { store: self.to_string(), op, reason: "not found".into() },
            Failure::AlreadyExists => {
                StoreError::Backend { store: self.to_string(), op, reason: "already exists".into() }
            }
        }
    }

    /// Send a read once and classify its failure (throttled ones carry Retry-After for the retry
    /// layer, `store::layer::retry`).
    pub(super) async fn read_call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, Failure>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, GaxError>>,
    {
        f().await.map_err(|e| self.classify(op, &e))
    }

    pub(super) fn ownership(&self, labels: &HashMap<String, String>) -> Ownership {
        if labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE) {
            Ownership::Ours
        } else if self.cfg.adopt {
            Ownership::Untracked
        } else {
            Ownership::Foreign
        }
    }

    /// Read `versions/latest` of one secret into `inv` (absent when GCP says NotFound, as Airflow).
    pub(super) async fn read_latest(&self, id: &ItemId, secret: &gsm::Secret, inv: &mut Inventory) -> Result<(), StoreError> {
        let secret_id = secret.name.rsplit('/').next().unwrap_or_default().to_string();
        let name = format!("{}/versions/latest", secret.name);
        let resp = self
            .read_call("access_secret_version", || self.client.access_secret_version().set_name(name.clone()).send())
            .await;
        let resp = match resp {
            Ok(r) => r,
            // No versions at all: Airflow's NotFound → None.
            Err(Failure::NotFound) => return Ok(()),
            Err(Failure::Item(ItemErrorKind::Unreadable, detail)) if detail.starts_with("permission") => {
                inv.insert_error(
                    id.clone(),
                    ItemError::new(
                        ItemErrorKind::Unreadable,
                        "permission denied on versions/latest (Airflow would log it and fall back to the next backend)",
                    ),
                );
                return Ok(());
            }
            Err(Failure::Item(_, _)) => {
                // FAILED_PRECONDITION: the newest version is disabled or destroyed (§5.4, §9.17).
                inv.insert_error(
                    id.clone(),
                    ItemError::new(
                        ItemErrorKind::Unreadable,
                        "the latest version is disabled or destroyed; Airflow raises on it",
                    ),
                );
                return Ok(());
            }
            Err(other) => return Err(self.store_err("access_secret_version", Some(id), other)),
        };
        let version = resp.name.rsplit('/').next().map(str::to_string);
        let data = resp.payload.map(|p| p.data).unwrap_or_default();
        // Airflow decodes UTF-8 strictly and raises on anything else.
        let text = match String::from_utf8(data.to_vec()) {
            Ok(t) => SecretValue::new(t),
            Err(_) => {
                inv.insert_error(id.clone(), ItemError::new(ItemErrorKind::Unparseable, "the payload is not UTF-8"));
                return Ok(());
            }
        };
        let value = match string_value(id.kind, text.expose_plaintext(), self.reader) {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(()),
            Err(e) => {
                inv.insert_error(id.clone(), e);
                return Ok(());
            }
        };
        inv.insert(Entry {
            id: id.clone(),
            value,
            meta: Meta { ownership: self.ownership(&secret.labels), version, name: Some(secret_id) },
        });
        Ok(())
    }

    pub(super) fn encode(&self, entry: &Entry) -> Result<SecretValue, StoreError> {
        let value = match &entry.value {
            Value::Variable(v) => v.value.clone(),
            Value::Connection(c) => connection::to_json(c),
        };
        if value.is_empty() {
            // GCP refuses an empty payload ("Field [payload] is required").
            return Err(StoreError::item(
                self,
                &entry.id,
                ItemError::new(ItemErrorKind::NotRepresentable, "GCP Secret Manager cannot store an empty value"),
            ));
        }
        if value.len() > MAX_PAYLOAD_BYTES {
            return Err(StoreError::item(
                self,
                &entry.id,
                ItemError::new(ItemErrorKind::TooLarge, format!("{} bytes; GCP's limit is {MAX_PAYLOAD_BYTES}", value.len())),
            ));
        }
        Ok(value)
    }

    pub(super) fn our_labels(&self) -> [(String, String); 1] {
        [(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())]
    }

    pub(super) fn our_annotations(&self, id: &ItemId) -> [(String, String); 2] {
        [(ID_ANNOTATION.to_string(), id.id.clone()), (KIND_ANNOTATION.to_string(), id.kind.as_str().to_string())]
    }

    /// Create the secret, or make sure an existing one carries our label and annotations.
    pub(super) async fn ensure_secret(&self, id: &ItemId, secret_id: &str) -> Result<(), StoreError> {
        let replication = match &self.cfg.replication {
            Replication::Automatic => gsm::Replication::new().set_automatic(gsm::replication::Automatic::new()),
            Replication::UserManaged(locs) => gsm::Replication::new().set_user_managed(
                gsm::replication::UserManaged::new().set_replicas(
                    locs.iter().map(|l| gsm::replication::user_managed::Replica::new().set_location(l.clone())),
                ),
            ),
        };
        let secret = gsm::Secret::new()
            .set_replication(replication)
            .set_labels(self.our_labels())
            .set_annotations(self.our_annotations(id));
        let created = self
            .client
            .create_secret()
            .set_parent(format!("projects/{}", self.project))
            .set_secret_id(secret_id)
            .set_secret(secret)
            .send()
            .await;
        let err = match created {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        match self.classify("create_secret", &err) {
            Failure::AlreadyExists => {}
            other => return Err(self.store_err("create_secret", Some(id), other)),
        }
        // It exists (an update, or a foreign secret being adopted): mark it, keeping other labels.
        let path = self.secret_path(secret_id);
        let current = self
            .client
            .get_secret()
            .set_name(path.clone())
            .send()
            .await
            .map_err(|e| {
                let f = self.classify("get_secret", &e);
                self.store_err("get_secret", Some(id), f)
            })?;
        let mut labels = current.labels.clone();
        let mut annotations = current.annotations.clone();
        let before = (labels.clone(), annotations.clone());
        labels.extend(self.our_labels());
        annotations.extend(self.our_annotations(id));
        if (labels.clone(), annotations.clone()) == before {
            return Ok(());
        }
        self.client
            .update_secret()
            .set_secret(gsm::Secret::new().set_name(path).set_labels(labels).set_annotations(annotations))
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels", "annotations"]))
            .send()
            .await
            .map_err(|e| {
                let f = self.classify("update_secret", &e);
                self.store_err("update_secret", Some(id), f)
            })?;
        Ok(())
    }

    /// Keep the `keep` newest enabled versions; destroy every older version that is not yet
    /// destroyed. The newest version is never touched, so `latest` stays readable.
    pub(super) async fn prune(&self, id: &ItemId, secret_id: &str, keep: u32) -> Result<(), StoreError> {
        let parent = self.secret_path(secret_id);
        let mut versions: Vec<gsm::SecretVersion> = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .read_call("list_secret_versions", || {
                    self.client.list_secret_versions().set_parent(parent.clone()).set_page_token(token.clone()).send()
                })
                .await
                .map_err(|f| self.store_err("list_secret_versions", Some(id), f))?;
            versions.extend(page.versions);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        // Newest first, by version number (GCP numbers versions in creation order).
        let number = |v: &gsm::SecretVersion| v.name.rsplit('/').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        versions.sort_by_key(|v| std::cmp::Reverse(number(v)));
        let mut enabled_kept = 0u32;
        for (i, v) in versions.iter().enumerate() {
            if v.state == VersionState::Destroyed {
                continue;
            }
            if i == 0 || (v.state == VersionState::Enabled && enabled_kept < keep) {
                if v.state == VersionState::Enabled {
                    enabled_kept += 1;
                }
                continue;
            }
            self.client.destroy_secret_version().set_name(v.name.clone()).send().await.map_err(|e| {
                let f = self.classify("destroy_secret_version", &e);
                self.store_err("destroy_secret_version", Some(id), f)
            })?;
        }
        Ok(())
    }
}

/// What `CloudSecretManagerBackend` returns for a payload: a variable as-is, a connection through
/// `deserialize_connection`.
pub(super) fn string_value(kind: Kind, text: &str, reader: Reader) -> Result<Option<Value>, ItemError> {
    Ok(Some(match kind {
        Kind::Variable => Value::Variable(Variable::new(text)),
        Kind::Connection => Value::Connection(
            connection::deserialize(text, reader).map_err(|e| ItemError::new(ItemErrorKind::Unparseable, e.to_string()))?,
        ),
    }))
}

