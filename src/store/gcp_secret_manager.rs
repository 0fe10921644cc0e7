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

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use google_cloud_auth::credentials::Credentials;
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model::{self as gsm, secret_version::State as VersionState};
use serde::Deserialize;
use tracing::warn;

use super::{Capabilities, ConnectionFormat, Placement, Precondition, Store, StoreError, prefixed};
use crate::airflow::connection::{self, Reader};
use crate::model::{
    Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Ownership, SecretValue, Value, Variable,
};

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

/// `[target]` / `[source]` table for `kind = "gcp_secret_manager"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSecretManagerConfig {
    /// The project holding the secrets; else taken from the key file / dict, else
    /// `GOOGLE_CLOUD_PROJECT`.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Prefix of connection secrets; `false` disables connections (Airflow's `None`).
    #[serde(default = "prefixed::default_connections_prefix", deserialize_with = "prefixed::prefix_or_false")]
    pub connections_prefix: Option<String>,
    /// Prefix of variable secrets; `false` disables variables (Airflow's `None`).
    #[serde(default = "prefixed::default_variables_prefix", deserialize_with = "prefixed::prefix_or_false")]
    pub variables_prefix: Option<String>,
    #[serde(default = "prefixed::default_sep")]
    pub sep: String,
    /// `"automatic"` (default) or a list of locations for user-managed replication.
    #[serde(default)]
    pub replication: Replication,
    /// Keep this many newest enabled versions per secret and destroy older ones; default: keep all.
    #[serde(default)]
    pub prune_versions: Option<u32>,
    /// A service-account (or external-account) key file.
    #[serde(default)]
    pub gcp_key_path: Option<PathBuf>,
    /// The same key inline (a table, or its JSON text).
    #[serde(default)]
    pub gcp_keyfile_dict: Option<serde_json::Value>,
    /// Service accounts to impersonate: delegates first, the target last (Airflow's order).
    #[serde(default)]
    pub impersonation_chain: Vec<String>,
    /// Another endpoint (tests, Private Service Connect); default `https://secretmanager.googleapis.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Treat secrets without our label as untracked (overwritable) instead of foreign.
    #[serde(default)]
    pub adopt: bool,
}

/// How new secrets are replicated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Replication {
    #[default]
    Automatic,
    UserManaged(Vec<String>),
}

impl<'de> Deserialize<'de> for Replication {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Locations(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "automatic" => Ok(Replication::Automatic),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "replication must be \"automatic\" or a list of locations, not {w:?}"
            ))),
            Raw::Locations(l) if l.is_empty() => {
                Err(serde::de::Error::custom("user-managed replication needs at least one location"))
            }
            Raw::Locations(l) => Ok(Replication::UserManaged(l)),
        }
    }
}

impl fmt::Debug for GcpSecretManagerConfig {
    // The key dict holds a private key: show only whether it is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpSecretManagerConfig")
            .field("project_id", &self.project_id)
            .field("connections_prefix", &self.connections_prefix)
            .field("variables_prefix", &self.variables_prefix)
            .field("sep", &self.sep)
            .field("replication", &self.replication)
            .field("prune_versions", &self.prune_versions)
            .field("gcp_key_path", &self.gcp_key_path)
            .field("gcp_keyfile_dict", &self.gcp_keyfile_dict.as_ref().map(|_| "<redacted>"))
            .field("impersonation_chain", &self.impersonation_chain)
            .field("endpoint", &self.endpoint)
            .field("adopt", &self.adopt)
            .finish()
    }
}

impl Default for GcpSecretManagerConfig {
    fn default() -> Self {
        Self {
            project_id: None,
            connections_prefix: prefixed::default_connections_prefix(),
            variables_prefix: prefixed::default_variables_prefix(),
            sep: prefixed::default_sep(),
            replication: Replication::Automatic,
            prune_versions: None,
            gcp_key_path: None,
            gcp_keyfile_dict: None,
            impersonation_chain: Vec::new(),
            endpoint: None,
            adopt: false,
        }
    }
}

fn is_gcp_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl GcpSecretManagerConfig {
    /// Map `CloudSecretManagerBackend(**backend_kwargs)` (spec §5.4). Unknown kwargs are accepted
    /// and ignored, as Airflow's base class does, with a warning.
    pub fn from_airflow_kwargs(kwargs: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        use serde_json::Value as J;
        let mut cfg = GcpSecretManagerConfig::default();
        let string = |k: &str, v: &J| -> Result<String, String> {
            v.as_str().map(str::to_string).ok_or_else(|| format!("backend_kwargs.{k} must be a string"))
        };
        let prefix = |k: &str, v: &J| -> Result<Option<String>, String> {
            match v {
                J::Null => Ok(None),
                J::String(s) => Ok(Some(s.clone())),
                _ => Err(format!("backend_kwargs.{k} must be a string or null")),
            }
        };
        for (k, v) in kwargs {
            match k.as_str() {
                "connections_prefix" => cfg.connections_prefix = prefix(k, v)?,
                "variables_prefix" => cfg.variables_prefix = prefix(k, v)?,
                "sep" => cfg.sep = string(k, v)?,
                "project_id" => cfg.project_id = if v.is_null() { None } else { Some(string(k, v)?) },
                "gcp_key_path" => cfg.gcp_key_path = if v.is_null() { None } else { Some(string(k, v)?.into()) },
                // Airflow takes the credential config file (Workload Identity Federation) as a
                // path or as the JSON text itself.
                "gcp_credential_config_file" => match v {
                    J::Null => {}
                    J::String(s) if s.trim_start().starts_with('{') => {
                        cfg.gcp_keyfile_dict = Some(J::String(s.clone()))
                    }
                    J::String(s) => cfg.gcp_key_path = Some(s.into()),
                    J::Object(_) => cfg.gcp_keyfile_dict = Some(v.clone()),
                    _ => return Err("backend_kwargs.gcp_credential_config_file must be a path or JSON".into()),
                },
                "gcp_keyfile_dict" => match v {
                    J::Null => {}
                    J::Object(_) | J::String(_) => cfg.gcp_keyfile_dict = Some(v.clone()),
                    _ => return Err("backend_kwargs.gcp_keyfile_dict must be a dict or its JSON text".into()),
                },
                "impersonation_chain" => {
                    cfg.impersonation_chain = match v {
                        J::Null => Vec::new(),
                        J::String(s) => vec![s.clone()],
                        J::Array(a) => a
                            .iter()
                            .map(|x| x.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or("backend_kwargs.impersonation_chain must be a string or a list of strings")?,
                        _ => return Err("backend_kwargs.impersonation_chain must be a string or a list of strings".into()),
                    }
                }
                // Config lookups and scopes are not ours to sync / need (we ask for cloud-platform).
                "config_prefix" | "gcp_scopes" => {}
                other => warn!(kwarg = other, "CloudSecretManagerBackend kwarg ignored (Airflow ignores it too)"),
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Airflow's init check (§5.4): `connections_prefix + sep` must match `^[a-zA-Z0-9-_]*$`
    /// (the variables prefix is not validated by Airflow, so neither here).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = &self.connections_prefix
            && !format!("{p}{}", self.sep).chars().all(is_gcp_id_char)
        {
            return Err("`connections_prefix`, `variables_prefix` and `sep` should follow the pattern ^[a-zA-Z0-9-_]*$ \
                        (Airflow refuses this connections_prefix + sep)"
                .into());
        }
        if self.prune_versions == Some(0) {
            return Err("prune_versions must be at least 1 (the newest version is never destroyed)".into());
        }
        if self.gcp_key_path.is_some() && self.gcp_keyfile_dict.is_some() {
            return Err("give gcp_key_path or gcp_keyfile_dict, not both".into());
        }
        Ok(())
    }

    fn prefix(&self, kind: Kind) -> Option<&str> {
        prefixed::of_kind(kind, &self.variables_prefix, &self.connections_prefix)
    }

    /// The secret id Airflow requests for `id`: `build_path(prefix, id, sep)`, verbatim (§5.4).
    /// `None` when the kind is disabled (Airflow makes no request).
    pub fn secret_id(&self, kind: Kind, id: &str) -> Option<String> {
        self.prefix(kind).map(|p| format!("{p}{}{id}", self.sep))
    }

    /// The id a secret id stands for, if it is under `kind`'s prefix.
    fn id_from_secret_id<'a>(&self, kind: Kind, secret_id: &'a str) -> Option<&'a str> {
        let p = self.prefix(kind)?;
        let rest = secret_id.strip_prefix(p)?.strip_prefix(self.sep.as_str())?;
        (!rest.is_empty()).then_some(rest)
    }

    /// Where `id` lives, or why GCP cannot hold it (§8: ids outside `[A-Za-z0-9_-]`, > 255).
    pub fn locate(&self, id: &ItemId) -> Placement {
        let Some(name) = self.secret_id(id.kind, &id.id) else {
            return Placement::Unreachable(format!("{} are disabled (prefix set to none)", id.kind.plural()));
        };
        if id.id.is_empty() {
            return Placement::Invalid("an empty id".into());
        }
        if let Some(bad) = name.chars().find(|c| !is_gcp_id_char(*c)) {
            return Placement::Invalid(format!(
                "GCP secret ids allow only [A-Za-z0-9_-]; {:?} is not allowed (Airflow's request would fail)",
                bad
            ));
        }
        if name.len() > MAX_SECRET_ID_LEN {
            return Placement::Invalid(format!("the secret id is {} characters; GCP allows {MAX_SECRET_ID_LEN}", name.len()));
        }
        Placement::At(name)
    }
}

/// A Secret Manager project as a [`Store`].
pub struct GcpSecretManagerStore {
    cfg: GcpSecretManagerConfig,
    project: String,
    client: SecretManagerService,
    /// Attempts for a throttled or unavailable *read* (writes are retried by `apply`).
    read_attempts: u32,
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

fn config_err(msg: impl Into<String>) -> StoreError {
    StoreError::Config { store: "gcp_secret_manager".into(), message: msg.into() }
}

fn keyfile_json(cfg: &GcpSecretManagerConfig) -> Result<Option<serde_json::Value>, StoreError> {
    if let Some(path) = &cfg.gcp_key_path {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_err(format!("cannot read gcp_key_path {}: {e}", path.display())))?;
        // Never echo the file: it holds a private key.
        return serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| config_err(format!("gcp_key_path {} is not a JSON key file", path.display())));
    }
    match &cfg.gcp_keyfile_dict {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => serde_json::from_str(s)
            .map(Some)
            .map_err(|_| config_err("gcp_keyfile_dict is not valid JSON")),
        Some(v) => Ok(Some(v.clone())),
    }
}

fn credentials_from(cfg: &GcpSecretManagerConfig, key: Option<serde_json::Value>) -> Result<Credentials, StoreError> {
    use google_cloud_auth::credentials as c;
    let base = match key {
        None => c::Builder::default().build(),
        Some(json) => match json.get("type").and_then(|t| t.as_str()) {
            Some("service_account") => c::service_account::Builder::new(json).build(),
            Some("external_account") => c::external_account::Builder::new(json).build(),
            Some("authorized_user") => c::user_account::Builder::new(json).build(),
            Some(other) => return Err(config_err(format!("unsupported GCP credential type {other:?}"))),
            None => return Err(config_err("the GCP key JSON has no \"type\"")),
        },
    }
    .map_err(|e| config_err(format!("GCP credentials: {e}")))?;
    match cfg.impersonation_chain.split_last() {
        None => Ok(base),
        Some((target, delegates)) => c::impersonated::Builder::from_source_credentials(base)
            .with_target_principal(target.clone())
            .with_delegates(delegates.iter().cloned())
            .build()
            .map_err(|e| config_err(format!("GCP impersonation: {e}"))),
    }
}

/// How one failed call is to be treated.
enum Failure {
    NotFound,
    AlreadyExists,
    Store(StoreError),
    /// A per-item condition (invalid argument, failed precondition, permission on the item).
    Item(ItemErrorKind, String),
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
        let mut builder = SecretManagerService::builder().with_credentials(creds);
        if let Some(ep) = &cfg.endpoint {
            builder = builder.with_endpoint(ep.clone());
        }
        let client = builder.build().await.map_err(|e| config_err(format!("cannot build the client: {e}")))?;
        Ok(Self { cfg, project, client, read_attempts: 5, reader: Reader::Orm3 })
    }

    /// How many times a throttled or unavailable read is tried before the error propagates.
    /// Which Airflow reader's connection semantics to reproduce (default: Airflow 3 ORM).
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    pub fn with_read_attempts(mut self, attempts: u32) -> Self {
        self.read_attempts = attempts.max(1);
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

    fn classify(&self, op: &'static str, e: &GaxError) -> Failure {
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
    fn store_err(&self, op: &'static str, id: Option<&ItemId>, f: Failure) -> StoreError {
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

    /// Run a read, retrying throttling and 5xx with backoff (honouring Retry-After).
    async fn read_call<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, GaxError>>,
    {
        let mut attempt = 0u32;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => match self.classify(op, &e) {
                    Failure::Store(se) if se.is_retryable() && attempt + 1 < self.read_attempts => {
                        let wait = se
                            .retry_after()
                            .unwrap_or_else(|| Duration::from_millis(100u64 << attempt.min(8)))
                            .min(Duration::from_secs(30));
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    other => return Err(other),
                },
            }
        }
    }

    fn ownership(&self, labels: &HashMap<String, String>) -> Ownership {
        if labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE) {
            Ownership::Ours
        } else if self.cfg.adopt {
            Ownership::Untracked
        } else {
            Ownership::Foreign
        }
    }

    /// Read `versions/latest` of one secret into `inv` (absent when GCP says NotFound, as Airflow).
    async fn read_latest(&self, id: &ItemId, secret: &gsm::Secret, inv: &mut Inventory) -> Result<(), StoreError> {
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

    fn encode(&self, entry: &Entry) -> Result<SecretValue, StoreError> {
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

    fn our_labels(&self) -> [(String, String); 1] {
        [(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())]
    }

    fn our_annotations(&self, id: &ItemId) -> [(String, String); 2] {
        [(ID_ANNOTATION.to_string(), id.id.clone()), (KIND_ANNOTATION.to_string(), id.kind.as_str().to_string())]
    }

    /// Create the secret, or make sure an existing one carries our label and annotations.
    async fn ensure_secret(&self, id: &ItemId, secret_id: &str) -> Result<(), StoreError> {
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
    async fn prune(&self, id: &ItemId, secret_id: &str, keep: u32) -> Result<(), StoreError> {
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
fn string_value(kind: Kind, text: &str, reader: Reader) -> Result<Option<Value>, ItemError> {
    Ok(Some(match kind {
        Kind::Variable => Value::Variable(Variable::new(text)),
        Kind::Connection => Value::Connection(
            connection::deserialize(text, reader).map_err(|e| ItemError::new(ItemErrorKind::Unparseable, e.to_string()))?,
        ),
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key_dict() {
        let cfg = GcpSecretManagerConfig {
            gcp_keyfile_dict: Some(serde_json::json!({"private_key": "canary-7d1f"})),
            ..Default::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn toml_prefix_false_disables_a_kind() {
        let cfg: GcpSecretManagerConfig =
            toml::from_str("project_id = \"p\"\nvariables_prefix = false\nreplication = [\"us-east1\"]").unwrap();
        assert_eq!(cfg.variables_prefix, None);
        assert_eq!(cfg.connections_prefix.as_deref(), Some("airflow-connections"));
        assert_eq!(cfg.replication, Replication::UserManaged(vec!["us-east1".into()]));
        assert!(toml::from_str::<GcpSecretManagerConfig>("variables_prefix = true").is_err());
        assert!(toml::from_str::<GcpSecretManagerConfig>("bogus = 1").is_err());
        assert!(toml::from_str::<GcpSecretManagerConfig>("replication = \"manual\"").is_err());
    }

    #[test]
    fn locate_rejects_what_gcp_cannot_hold() {
        let cfg = GcpSecretManagerConfig::default();
        assert_eq!(cfg.locate(&ItemId::connection("a__b")), Placement::At("airflow-connections-a__b".into()));
        for bad in ["team/db", "My_Conn.v2", "x:y", "caf\u{e9}"] {
            assert!(matches!(cfg.locate(&ItemId::variable(bad)), Placement::Invalid(_)), "{bad}");
        }
        let long = "x".repeat(MAX_SECRET_ID_LEN);
        assert!(matches!(cfg.locate(&ItemId::variable(long)), Placement::Invalid(_)));
        let empty = GcpSecretManagerConfig { variables_prefix: Some(String::new()), ..Default::default() };
        assert_eq!(empty.locate(&ItemId::variable("k")), Placement::At("-k".into()));
        assert_eq!(empty.id_from_secret_id(Kind::Variable, "-k"), Some("k"));
    }
}
