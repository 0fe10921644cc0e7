//! Google Cloud Secret Manager, written exactly as Airflow's `CloudSecretManagerBackend` reads it
//! (spec §5.4), on the official `google-cloud-secretmanager-v1` REST client.
//!
//! This module owns: the GCP store config and its mapping from Airflow's backend kwargs, the
//! name rule (`prefix + sep + id`, no rstrip, no sanitising, `""` prefix gives `-id`), what GCP
//! can hold (`[A-Za-z0-9_-]{1,255}`, 64 KiB payloads), and the write protocol: create the secret
//! (replication, `managed-by` label, the original id in an annotation), then add a version. An
//! update only ever *adds* an enabled version, because Airflow reads `versions/latest` (the most
//! recently created one) and raises if that one is disabled or destroyed; optional pruning destroys
//! old versions and never touches the newest.
//!
//! Files: this one (the store and its `Store` impl), `config` (the table, Airflow's kwargs, the
//! name rule, credentials), `client` (each call's failure class, reads, the write protocol).

mod client;
mod config;

use std::fmt;

use async_trait::async_trait;
use futures::StreamExt;
use google_cloud_auth::credentials::Credentials;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model as gsm;

use client::{Failure, string_value};
pub use config::{GcpSecretManagerConfig, Replication};
use config::{config_err, credentials_from, keyfile_json};

use super::{Capabilities, ConnectionFormat, Placement, Precondition, Store, StoreError};
use crate::airflow::connection::Reader;
use crate::model::{Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Value};

/// Label that marks a secret as written by this tool (GCP label keys/values: `[a-z0-9_-]`).
pub const MANAGED_BY_LABEL: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "airflow-secrets-sync";
/// Annotation holding the original Airflow id (names are reversible here; this is a cross-check
/// and keeps overlapping prefixes apart).
pub const ID_ANNOTATION: &str = "airflow-secrets-sync/id";
/// Annotation holding the kind (`variable` / `connection`).
pub const KIND_ANNOTATION: &str = "airflow-secrets-sync/kind";

/// GCP's payload limit (spec §5.4).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// GCP's secret id limit.
pub const MAX_SECRET_ID_LEN: usize = 255;

/// A Secret Manager project as a [`Store`].
pub struct GcpSecretManagerStore {
    cfg: GcpSecretManagerConfig,
    project: String,
    client: SecretManagerService,
    /// Which Airflow reader parses connections (default: Airflow 3 ORM); `verify` reads with each.
    reader: Reader,
}

impl fmt::Debug for GcpSecretManagerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpSecretManagerStore").field("project", &self.project).field("cfg", &self.cfg).finish()
    }
}

impl fmt::Display for GcpSecretManagerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gcp-secret-manager:projects/{}", self.project)
    }
}


impl GcpSecretManagerStore {
    /// Open the store with the credentials the config names (key file/dict, impersonation, else ADC).
    pub async fn connect(cfg: GcpSecretManagerConfig) -> Result<Self, StoreError> {
        cfg.validate().map_err(config_err)?;
        let key = keyfile_json(&cfg)?;
        let key_project = key.as_ref().and_then(|k| k.get("project_id")).and_then(|p| p.as_str()).map(str::to_string);
        let creds = credentials_from(&cfg, key)?;
        Self::build(cfg, creds, key_project).await
    }

    /// Open the store with explicit credentials (tests use anonymous credentials and `endpoint`).
    pub async fn connect_with_credentials(cfg: GcpSecretManagerConfig, creds: Credentials) -> Result<Self, StoreError> {
        cfg.validate().map_err(config_err)?;
        Self::build(cfg, creds, None).await
    }

    async fn build(cfg: GcpSecretManagerConfig, creds: Credentials, key_project: Option<String>) -> Result<Self, StoreError> {
        // Airflow: project_id, else the credentials' project, else a ValueError.
        let project = cfg
            .project_id
            .clone()
            .or(key_project)
            .or_else(|| std::env::var("GOOGLE_CLOUD_PROJECT").ok().filter(|p| !p.is_empty()))
            .ok_or_else(|| config_err("project_id is not set and cannot be taken from the credentials"))?;
        // One attempt per request: retrying is the retry layer's (`store::layer::retry`).
        let mut builder = SecretManagerService::builder()
            .with_credentials(creds)
            .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry);
        if let Some(ep) = &cfg.endpoint {
            builder = builder.with_endpoint(ep.clone());
        }
        let client = builder.build().await.map_err(|e| config_err(format!("cannot build the client: {e}")))?;
        Ok(Self { cfg, project, client, reader: Reader::Orm3 })
    }

    /// Which Airflow reader's connection semantics to reproduce (default: Airflow 3 ORM).
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    pub fn config(&self) -> &GcpSecretManagerConfig {
        &self.cfg
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    fn secret_path(&self, secret_id: &str) -> String {
        format!("projects/{}/secrets/{secret_id}", self.project)
    }
}

#[async_trait]
impl Store for GcpSecretManagerStore {
    fn read_as(&self, entry: &Entry, readers: &[Reader]) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
        crate::store::read_as_string(self.encode(entry), readers, |s, r| string_value(entry.id.kind, s, r))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: false,
            variables: self.cfg.variables_prefix.is_some(),
            connections: self.cfg.connections_prefix.is_some(),
            max_value_bytes: Some(MAX_PAYLOAD_BYTES),
            empty_variables: false,
            variable_line_breaks: true,
            connection_format: ConnectionFormat::Json,
            connection_description: true,
            variable_description: false,
            can_tag: true,
            can_delete: true,
            conditional_writes: false,
            read_batch: 1,
            write_concurrency: 8,
            // 600 write requests per minute per project; a new secret takes two (CreateSecret +
            // AddSecretVersion).
            write_rate: Some(5.0),
            buffered_writes: false,
            case_insensitive_names: false,
            keep_existing: false,
        }
    }

    fn identity(&self) -> String {
        format!(
            "gcp_secret_manager:projects/{}:{:?}:{:?}:{}",
            self.project, self.cfg.connections_prefix, self.cfg.variables_prefix, self.cfg.sep
        )
    }

    fn locate(&self, id: &ItemId) -> Placement {
        self.cfg.locate(id)
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let mut inv = Inventory::new();
        let Some(prefix) = self.cfg.prefix(kind) else { return Ok(inv) };
        let head = format!("{prefix}{}", self.cfg.sep);
        let parent = format!("projects/{}", self.project);
        // `name:` narrows server-side; the exact prefix test below is what decides.
        let filter = if head.is_empty() { String::new() } else { format!("name:{head}") };
        let mut found: Vec<(ItemId, gsm::Secret)> = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .read_call("list_secrets", || {
                    self.client
                        .list_secrets()
                        .set_parent(parent.clone())
                        .set_filter(filter.clone())
                        .set_page_token(token.clone())
                        .send()
                })
                .await
                .map_err(|f| self.store_err("list_secrets", None, f))?;
            for s in page.secrets {
                let secret_id = s.name.rsplit('/').next().unwrap_or_default();
                let Some(id) = self.cfg.id_from_secret_id(kind, secret_id) else { continue };
                // Overlapping prefixes: a secret we wrote says which kind it is.
                if s.annotations.get(KIND_ANNOTATION).is_some_and(|k| k != kind.as_str()) {
                    continue;
                }
                found.push((ItemId::new(kind, id), s));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let results: Vec<Result<Inventory, StoreError>> = futures::stream::iter(found)
            .map(|(id, s)| async move {
                let mut one = Inventory::new();
                self.read_latest(&id, &s, &mut one).await.map(|_| one)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for r in results {
            inv.extend(r?);
        }
        Ok(inv)
    }

    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        let results: Vec<Result<Inventory, StoreError>> = futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let mut one = Inventory::new();
                let Placement::At(secret_id) = self.cfg.locate(&id) else { return Ok(one) };
                let path = self.secret_path(&secret_id);
                match self.read_call("get_secret", || self.client.get_secret().set_name(path.clone()).send()).await {
                    Ok(secret) => self.read_latest(&id, &secret, &mut one).await?,
                    Err(Failure::NotFound) => {}
                    Err(Failure::Item(ItemErrorKind::Unreadable, _)) => one.insert_error(
                        id.clone(),
                        ItemError::new(ItemErrorKind::Unreadable, "permission denied on the secret"),
                    ),
                    Err(f) => return Err(self.store_err("get_secret", Some(&id), f)),
                }
                Ok(one)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut inv = Inventory::new();
        for r in results {
            inv.extend(r?);
        }
        Ok(inv)
    }

    /// Values only, to verify writes: `versions/latest` alone (one call per item), without the
    /// `GetSecret` that [`Store::read`] adds for the labels (ownership).
    async fn read_back(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        let results: Vec<Result<Inventory, StoreError>> = futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let mut one = Inventory::new();
                let Placement::At(secret_id) = self.cfg.locate(&id) else { return Ok(one) };
                let secret = gsm::Secret::new().set_name(self.secret_path(&secret_id));
                self.read_latest(&id, &secret, &mut one).await.map(|_| one)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut inv = Inventory::new();
        for r in results {
            inv.extend(r?);
        }
        Ok(inv)
    }

    async fn write(&self, entry: &Entry, _pre: &Precondition) -> Result<(), StoreError> {
        let secret_id = match self.cfg.locate(&entry.id) {
            Placement::At(n) => n,
            Placement::Invalid(why) => {
                return Err(StoreError::item(self, &entry.id, ItemError::new(ItemErrorKind::InvalidName, why)));
            }
            Placement::Unreachable(why) => {
                return Err(StoreError::item(self, &entry.id, ItemError::new(ItemErrorKind::Unreachable, why)));
            }
        };
        let value = self.encode(entry)?;
        self.ensure_secret(&entry.id, &secret_id).await?;
        // The payload goes straight from the SecretValue into the request body.
        let payload = gsm::SecretPayload::new().set_data(bytes::Bytes::copy_from_slice(value.expose_plaintext().as_bytes()));
        self.client
            .add_secret_version()
            .set_parent(self.secret_path(&secret_id))
            .set_payload(payload)
            .send()
            .await
            .map_err(|e| {
                let f = self.classify("add_secret_version", &e);
                self.store_err("add_secret_version", Some(&entry.id), f)
            })?;
        if let Some(keep) = self.cfg.prune_versions {
            self.prune(&entry.id, &secret_id, keep).await?;
        }
        Ok(())
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        let Placement::At(secret_id) = self.cfg.locate(id) else { return Ok(()) };
        match self.client.delete_secret().set_name(self.secret_path(&secret_id)).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.classify("delete_secret", &e) {
                Failure::NotFound => Ok(()),
                other => Err(self.store_err("delete_secret", Some(id), other)),
            },
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        let parent = format!("projects/{}", self.project);
        self.read_call("list_secrets", || self.client.list_secrets().set_parent(parent.clone()).set_page_size(1).send())
            .await
            .map(|_| ())
            .map_err(|f| match f {
                Failure::Item(ItemErrorKind::Unreadable, what) => {
                    StoreError::PermissionDenied { store: self.to_string(), what }
                }
                other => self.store_err("list_secrets", None, other),
            })
    }
}

