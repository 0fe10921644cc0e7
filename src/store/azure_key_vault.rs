//! Azure Key Vault, written exactly as Airflow's `AzureKeyVaultBackend` reads it (spec §5.5), on
//! the official `azure_security_keyvault_secrets` 1.0 client.
//!
//! This module owns: the Azure store config and its mapping from Airflow's backend kwargs; the
//! name rule (prefix `rstrip(sep)`, `prefix + sep + id`, then *every* `_` of the whole name → `sep`,
//! valid only if it is `[0-9a-zA-Z-]{1,127}`); the fact that names are case-insensitive and not
//! reversible, so the original id and kind live in tags (`airflow-id`, `airflow-kind`) next to
//! `managed-by`, and reading recovers ids from them; soft-deleted names (recovered only when asked);
//! disabled secrets (reported, never overwritten blindly); the 25 KB value limit; content types.
//!
//! Key Vault has no conditional writes. This store checks the current secret right before it
//! writes (`Absent` / `Version` preconditions, ownership, the id in the tag), which closes the
//! plan-to-apply gap but is not atomic against a concurrent writer.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret as AzSecret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind as AzErrorKind;
use azure_core::http::StatusCode;
use azure_security_keyvault_secrets::models::{Secret, SetSecretParameters};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tracing::warn;

use super::{Capabilities, ConnectionFormat, Placement, Precondition, Store, StoreError, prefixed};
use crate::airflow::connection::{self, Reader};
use crate::model::{
    Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Ownership, SecretValue, Value, Variable,
};

pub const MANAGED_BY_TAG: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "airflow-secrets-sync";
/// The original Airflow id: Key Vault names fold `_` and case, so they cannot be reversed.
pub const ID_TAG: &str = "airflow-id";
/// `variable` or `connection` (an empty prefix makes both kinds share names).
pub const KIND_TAG: &str = "airflow-kind";
/// Key Vault's value limit ("25 KB").
pub const MAX_VALUE_BYTES: usize = 25 * 1024;
pub const MAX_NAME_LEN: usize = 127;

/// Which credential to use. `auto` mirrors Airflow: client secret when `tenant_id`, `client_id`
/// and `client_secret` are all set, else a chain of workload identity (when the federated token
/// env is present), managed identity, then the Azure CLI (SDK 1.x has no DefaultAzureCredential).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AzureCredentialKind {
    #[default]
    Auto,
    ClientSecret,
    ManagedIdentity,
    WorkloadIdentity,
    AzureCli,
}

/// `[target]` / `[source]` table for `kind = "azure_key_vault"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureKeyVaultConfig {
    /// `https://<vault>.vault.azure.net/`
    pub vault_url: String,
    /// Prefix of connection secrets; `false` disables connections (Airflow's `None`).
    #[serde(default = "prefixed::default_connections_prefix", deserialize_with = "prefixed::prefix_or_false")]
    pub connections_prefix: Option<String>,
    /// Prefix of variable secrets; `false` disables variables (Airflow's `None`).
    #[serde(default = "prefixed::default_variables_prefix", deserialize_with = "prefixed::prefix_or_false")]
    pub variables_prefix: Option<String>,
    #[serde(default = "prefixed::default_sep")]
    pub sep: String,
    #[serde(default)]
    pub credential: AzureCredentialKind,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// User-assigned managed identity (also the workload identity client id, as in Airflow).
    #[serde(default)]
    pub managed_identity_client_id: Option<String>,
    #[serde(default)]
    pub workload_identity_tenant_id: Option<String>,
    /// Recover a soft-deleted secret of the same name before writing (else a per-item error).
    #[serde(default)]
    pub recover_soft_deleted: bool,
    /// Treat secrets without our tags as untracked (overwritable) instead of foreign.
    #[serde(default)]
    pub adopt: bool,
}

impl fmt::Debug for AzureKeyVaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultConfig")
            .field("vault_url", &self.vault_url)
            .field("connections_prefix", &self.connections_prefix)
            .field("variables_prefix", &self.variables_prefix)
            .field("sep", &self.sep)
            .field("credential", &self.credential)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("managed_identity_client_id", &self.managed_identity_client_id)
            .field("workload_identity_tenant_id", &self.workload_identity_tenant_id)
            .field("recover_soft_deleted", &self.recover_soft_deleted)
            .field("adopt", &self.adopt)
            .finish()
    }
}

impl Default for AzureKeyVaultConfig {
    fn default() -> Self {
        Self {
            vault_url: String::new(),
            connections_prefix: prefixed::default_connections_prefix(),
            variables_prefix: prefixed::default_variables_prefix(),
            sep: prefixed::default_sep(),
            credential: AzureCredentialKind::Auto,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            managed_identity_client_id: None,
            workload_identity_tenant_id: None,
            recover_soft_deleted: false,
            adopt: false,
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl AzureKeyVaultConfig {
    /// Map `AzureKeyVaultBackend(**backend_kwargs)` (spec §5.5). Unknown kwargs (Airflow passes
    /// them to `SecretClient`, e.g. `api_version`) are ignored with a warning.
    pub fn from_airflow_kwargs(kwargs: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        use serde_json::Value as J;
        let mut cfg = AzureKeyVaultConfig::default();
        let opt_string = |k: &str, v: &J| -> Result<Option<String>, String> {
            match v {
                J::Null => Ok(None),
                J::String(s) => Ok(Some(s.clone())),
                _ => Err(format!("backend_kwargs.{k} must be a string")),
            }
        };
        for (k, v) in kwargs {
            match k.as_str() {
                "vault_url" => cfg.vault_url = opt_string(k, v)?.unwrap_or_default(),
                "connections_prefix" => cfg.connections_prefix = opt_string(k, v)?,
                "variables_prefix" => cfg.variables_prefix = opt_string(k, v)?,
                "sep" => cfg.sep = opt_string(k, v)?.ok_or("backend_kwargs.sep must be a string")?,
                "tenant_id" => cfg.tenant_id = opt_string(k, v)?,
                "client_id" => cfg.client_id = opt_string(k, v)?,
                "client_secret" => cfg.client_secret = opt_string(k, v)?,
                "managed_identity_client_id" => cfg.managed_identity_client_id = opt_string(k, v)?,
                "workload_identity_tenant_id" => cfg.workload_identity_tenant_id = opt_string(k, v)?,
                "config_prefix" => {}
                other => warn!(kwarg = other, "AzureKeyVaultBackend kwarg ignored (Airflow hands it to SecretClient)"),
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.vault_url.is_empty() {
            return Err("vault_url is required".into());
        }
        if self.credential == AzureCredentialKind::ClientSecret
            && (self.tenant_id.is_none() || self.client_id.is_none() || self.client_secret.is_none())
        {
            return Err("credential = \"client_secret\" needs tenant_id, client_id and client_secret".into());
        }
        Ok(())
    }

    fn prefix(&self, kind: Kind) -> Option<&str> {
        prefixed::of_kind(kind, &self.variables_prefix, &self.connections_prefix)
    }

    /// The name Airflow builds for `id` (`build_path` override, §5.5), valid or not; `None` when
    /// the kind is disabled.
    pub fn secret_name(&self, kind: Kind, id: &str) -> Option<String> {
        let prefix = self.prefix(kind)?;
        // Python's rstrip(sep) strips any trailing character found in sep.
        let prefix = prefix.trim_end_matches(|c| self.sep.contains(c));
        let name = if prefix.is_empty() { id.to_string() } else { format!("{prefix}{}{id}", self.sep) };
        Some(name.replace('_', &self.sep))
    }

    /// Where `id` lives. Names Airflow (provider ≥ 14) refuses without a request are Invalid.
    pub fn locate(&self, id: &ItemId) -> Placement {
        let Some(name) = self.secret_name(id.kind, &id.id) else {
            return Placement::Unreachable(format!("{} are disabled (prefix set to none)", id.kind.plural()));
        };
        if id.id.is_empty() || !valid_name(&name) {
            return Placement::Invalid(format!(
                "the Key Vault name would be {name:?}; Airflow only looks up names matching [0-9a-zA-Z-]{{1,127}}"
            ));
        }
        Placement::At(name)
    }

    /// The start every name of `kind` has (after the `_` → sep mapping), for untagged secrets.
    fn head(&self, kind: Kind) -> Option<String> {
        let prefix = self.prefix(kind)?;
        let prefix = prefix.trim_end_matches(|c| self.sep.contains(c));
        Some(if prefix.is_empty() { String::new() } else { format!("{prefix}{}", self.sep).replace('_', &self.sep) })
    }
}

/// Tries each credential in turn (SDK 1.x has no DefaultAzureCredential).
#[derive(Debug)]
struct ChainCredential(Vec<Arc<dyn TokenCredential>>);

#[async_trait]
impl TokenCredential for ChainCredential {
    async fn get_token(&self, scopes: &[&str], options: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        let mut last = None;
        for c in &self.0 {
            match c.get_token(scopes, options.clone()).await {
                Ok(t) => return Ok(t),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| azure_core::Error::with_message(AzErrorKind::Credential, "no credential configured")))
    }
}

fn config_err(msg: impl Into<String>) -> StoreError {
    StoreError::Config { store: "azure_key_vault".into(), message: msg.into() }
}

fn build_credential(cfg: &AzureKeyVaultConfig) -> Result<Arc<dyn TokenCredential>, StoreError> {
    use azure_identity as id;
    let cred_err = |e: azure_core::Error| config_err(format!("Azure credential: {e}"));
    let client_secret = || -> Result<Arc<dyn TokenCredential>, StoreError> {
        let (Some(t), Some(c), Some(s)) = (&cfg.tenant_id, &cfg.client_id, &cfg.client_secret) else {
            return Err(config_err("client secret credential needs tenant_id, client_id and client_secret"));
        };
        Ok(id::ClientSecretCredential::new(t, c.clone(), AzSecret::new(s.clone()), None).map_err(cred_err)?)
    };
    let managed = || -> Result<Arc<dyn TokenCredential>, StoreError> {
        let options = id::ManagedIdentityCredentialOptions {
            user_assigned_id: cfg.managed_identity_client_id.clone().map(id::UserAssignedId::ClientId),
            ..Default::default()
        };
        Ok(id::ManagedIdentityCredential::new(Some(options)).map_err(cred_err)?)
    };
    let workload = || -> Result<Arc<dyn TokenCredential>, StoreError> {
        let options = id::WorkloadIdentityCredentialOptions {
            client_id: cfg.managed_identity_client_id.clone(),
            tenant_id: cfg.workload_identity_tenant_id.clone(),
            ..Default::default()
        };
        Ok(id::WorkloadIdentityCredential::new(Some(options)).map_err(cred_err)?)
    };
    let cli = || -> Result<Arc<dyn TokenCredential>, StoreError> { Ok(id::AzureCliCredential::new(None).map_err(cred_err)?) };
    match cfg.credential {
        AzureCredentialKind::ClientSecret => client_secret(),
        AzureCredentialKind::ManagedIdentity => managed(),
        AzureCredentialKind::WorkloadIdentity => workload(),
        AzureCredentialKind::AzureCli => cli(),
        AzureCredentialKind::Auto => {
            if cfg.tenant_id.is_some() && cfg.client_id.is_some() && cfg.client_secret.is_some() {
                return client_secret();
            }
            let mut chain = Vec::new();
            if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
                chain.push(workload()?);
            }
            chain.push(managed()?);
            chain.push(cli()?);
            Ok(Arc::new(ChainCredential(chain)))
        }
    }
}

/// How one failed call is to be treated.
enum Failure {
    NotFound,
    /// 403 SecretDisabled: Airflow's `get_secret` raises on it (§9.17).
    Disabled,
    /// 409 ObjectIsDeletedButRecoverable.
    SoftDeleted,
    Store(StoreError),
}

/// The current latest version of a name, as far as writing needs to know.
struct Current {
    version: Option<String>,
    tags: HashMap<String, String>,
}

/// An Azure Key Vault as a [`Store`].
pub struct AzureKeyVaultStore {
    cfg: AzureKeyVaultConfig,
    client: SecretClient,
    label: String,
    /// Which Airflow reader parses connections (default: Airflow 3 ORM); `verify` reads with each.
    reader: Reader,
}

impl fmt::Display for AzureKeyVaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl AzureKeyVaultStore {
    /// Which Airflow reader's connection semantics to reproduce (default: Airflow 3 ORM); `verify`
    /// reads with each.
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    /// Open the vault with the credential the config names. No I/O until the first call.
    pub fn connect(cfg: AzureKeyVaultConfig) -> Result<Self, StoreError> {
        cfg.validate().map_err(config_err)?;
        let cred = build_credential(&cfg)?;
        // The SDK makes one attempt: retrying is the retry layer's (`store::layer::retry`).
        let client_options = azure_core::http::ClientOptions {
            retry: azure_core::http::RetryOptions::none(),
            ..Default::default()
        };
        Self::with_credential(cfg, cred, SecretClientOptions { client_options, ..Default::default() })
    }

    /// Open with an explicit credential and client options (tests install a transport here; only
    /// the transport differs from production).
    pub fn with_credential(
        cfg: AzureKeyVaultConfig,
        credential: Arc<dyn TokenCredential>,
        options: SecretClientOptions,
    ) -> Result<Self, StoreError> {
        cfg.validate().map_err(config_err)?;
        let client = SecretClient::new(&cfg.vault_url, credential, Some(options))
            .map_err(|e| config_err(format!("cannot build the Key Vault client: {e}")))?;
        let label = format!("azure-key-vault:{}", cfg.vault_url.trim_end_matches('/'));
        Ok(Self { cfg, client, label, reader: Reader::Orm3 })
    }

    pub fn config(&self) -> &AzureKeyVaultConfig {
        &self.cfg
    }

    fn classify(&self, op: &'static str, e: &azure_core::Error) -> Failure {
        let store = self.to_string();
        let reason = e.to_string();
        match e.kind() {
            AzErrorKind::HttpResponse { status, raw_response, .. } => {
                let body: serde_json::Value = raw_response
                    .as_ref()
                    .and_then(|r| serde_json::from_slice(r.body()).ok())
                    .unwrap_or_default();
                let inner = body.pointer("/error/innererror/code").and_then(|c| c.as_str()).unwrap_or_default();
                let retry_after = raw_response
                    .as_ref()
                    .and_then(|r| r.headers().get_optional_str(&azure_core::http::headers::RETRY_AFTER).map(str::to_string))
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match *status {
                    StatusCode::NotFound => Failure::NotFound,
                    StatusCode::Forbidden if inner == "SecretDisabled" => Failure::Disabled,
                    StatusCode::Conflict if inner == "ObjectIsDeletedButRecoverable" => Failure::SoftDeleted,
                    StatusCode::Unauthorized | StatusCode::Forbidden => {
                        Failure::Store(StoreError::PermissionDenied { store, what: format!("{op}: {reason}") })
                    }
                    StatusCode::TooManyRequests => Failure::Store(StoreError::Throttled { store, op, retry_after }),
                    s if u16::from(s) >= 500 => Failure::Store(StoreError::Unavailable { store, op, reason }),
                    _ => Failure::Store(StoreError::Backend { store, op, reason }),
                }
            }
            AzErrorKind::Io | AzErrorKind::Connection => Failure::Store(StoreError::Unavailable { store, op, reason }),
            AzErrorKind::Credential => Failure::Store(StoreError::PermissionDenied { store, what: reason }),
            _ => Failure::Store(StoreError::Backend { store, op, reason }),
        }
    }

    fn item_err(&self, id: &ItemId, kind: ItemErrorKind, detail: impl Into<String>) -> StoreError {
        StoreError::item(self, id, ItemError::new(kind, detail))
    }

    fn fail(&self, op: &'static str, id: &ItemId, f: Failure) -> StoreError {
        match f {
            Failure::Store(e) => e,
            Failure::NotFound => StoreError::Backend { store: self.to_string(), op, reason: "not found".into() },
            Failure::Disabled => self.item_err(id, ItemErrorKind::Blocked, "the secret is disabled"),
            Failure::SoftDeleted => self.item_err(
                id,
                ItemErrorKind::NotRepresentable,
                "a soft-deleted secret holds this name; set recover_soft_deleted = true, or purge it",
            ),
        }
    }

    fn ownership(&self, tags: &HashMap<String, String>, id: &ItemId) -> Ownership {
        let ours = tags.get(MANAGED_BY_TAG).map(String::as_str) == Some(MANAGED_BY_VALUE)
            && tags.get(ID_TAG).map(String::as_str) == Some(id.id.as_str());
        if ours {
            Ownership::Ours
        } else if self.cfg.adopt {
            Ownership::Untracked
        } else {
            Ownership::Foreign
        }
    }

    /// The secret value `write` sends for `entry`, or the per-item refusal.
    fn encode(&self, entry: &Entry) -> Result<SecretValue, StoreError> {
        let value = match &entry.value {
            Value::Variable(v) => v.value.clone(),
            Value::Connection(c) => connection::to_json(c),
        };
        if value.len() > MAX_VALUE_BYTES {
            return Err(self.item_err(
                &entry.id,
                ItemErrorKind::TooLarge,
                format!("{} bytes; Key Vault's limit is {MAX_VALUE_BYTES}", value.len()),
            ));
        }
        Ok(value)
    }

    /// Turn a fetched secret into an entry (or a per-item error) under `id`.
    fn decode(&self, id: &ItemId, name: &str, secret: Secret, inv: &mut Inventory) {
        let tags = secret.tags.unwrap_or_default();
        let version = secret.id.as_deref().and_then(|i| i.rsplit('/').next()).map(str::to_string);
        let text = SecretValue::new(secret.value.unwrap_or_default());
        let value = match id.kind {
            Kind::Variable => Value::Variable(Variable::new(text)),
            Kind::Connection => match connection::deserialize(text.expose_plaintext(), self.reader) {
                Ok(c) => Value::Connection(c),
                Err(e) => {
                    inv.insert_error(id.clone(), ItemError::new(ItemErrorKind::Unparseable, e.to_string()));
                    return;
                }
            },
        };
        inv.insert(Entry {
            id: id.clone(),
            value,
            meta: Meta { ownership: self.ownership(&tags, id), version, name: Some(name.to_string()) },
        });
    }

    async fn fetch(&self, id: &ItemId, name: &str) -> Result<Inventory, StoreError> {
        let mut inv = Inventory::new();
        match self.client.get_secret(name, None).await {
            Ok(r) => match r.into_model() {
                Ok(secret) => self.decode(id, name, secret, &mut inv),
                Err(e) => return Err(self.fail("get_secret", id, self.classify("get_secret", &e))),
            },
            // Absent, or soft-deleted: Airflow's ResourceNotFoundError → None.
            Err(e) => match self.classify("get_secret", &e) {
                Failure::NotFound => {}
                Failure::Disabled => inv.insert_error(
                    id.clone(),
                    ItemError::new(ItemErrorKind::Blocked, "the secret is disabled; Airflow gets HTTP 403 and raises"),
                ),
                other => return Err(self.fail("get_secret", id, other)),
            },
        }
        Ok(inv)
    }

    /// The latest version of `name` as it stands now, `None` if absent (or soft-deleted).
    async fn current(&self, id: &ItemId, name: &str) -> Result<Option<Current>, StoreError> {
        match self.client.get_secret(name, None).await {
            Ok(r) => {
                let s = r.into_model().map_err(|e| self.fail("get_secret", id, self.classify("get_secret", &e)))?;
                // The value is not needed: drop it inside its wrapper.
                let _value = SecretValue::new(s.value.unwrap_or_default());
                Ok(Some(Current {
                    version: s.id.as_deref().and_then(|i| i.rsplit('/').next()).map(str::to_string),
                    tags: s.tags.unwrap_or_default(),
                }))
            }
            Err(e) => match self.classify("get_secret", &e) {
                Failure::NotFound => Ok(None),
                Failure::Disabled => Err(self.item_err(
                    id,
                    ItemErrorKind::Blocked,
                    "the secret is disabled (Airflow raises on it); enable or delete it before syncing, it is not overwritten blindly",
                )),
                other => Err(self.fail("get_secret", id, other)),
            },
        }
    }

    async fn set(&self, id: &ItemId, name: &str, value: &SecretValue) -> Result<(), Failure> {
        let mut tags = HashMap::new();
        tags.insert(MANAGED_BY_TAG.to_string(), MANAGED_BY_VALUE.to_string());
        tags.insert(ID_TAG.to_string(), id.id.clone());
        tags.insert(KIND_TAG.to_string(), id.kind.as_str().to_string());
        let params = SetSecretParameters {
            value: Some(value.expose_plaintext().to_string()),
            content_type: Some(match id.kind {
                Kind::Connection => "application/json".to_string(),
                Kind::Variable => "text/plain".to_string(),
            }),
            tags: Some(tags),
            ..Default::default()
        };
        let body = params.try_into().map_err(|e: azure_core::Error| self.classify("set_secret", &e))?;
        self.client.set_secret(name, body, None).await.map(|_| ()).map_err(|e| self.classify("set_secret", &e))
    }

    /// Recover a soft-deleted name and wait until it is readable again (recovery is asynchronous).
    ///
    /// The wait is a poll for a state change, not a retry: only "not found yet" is polled again;
    /// any failure (throttling included) ends it and goes to the retry layer like any other.
    async fn recover(&self, id: &ItemId, name: &str) -> Result<(), StoreError> {
        self.client
            .recover_deleted_secret(name, None)
            .await
            .map_err(|e| self.fail("recover_deleted_secret", id, self.classify("recover_deleted_secret", &e)))?;
        for attempt in 0..30u32 {
            match self.client.get_secret(name, None).await {
                Ok(_) => return Ok(()),
                Err(e) => match self.classify("get_secret", &e) {
                    Failure::NotFound => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(20) + 1))).await,
                    Failure::Disabled => return Ok(()),
                    other => return Err(self.fail("get_secret", id, other)),
                },
            }
        }
        Err(StoreError::Unavailable { store: self.to_string(), op: "recover_deleted_secret", reason: "the recovered secret did not become readable".into() })
    }
}

#[async_trait]
impl Store for AzureKeyVaultStore {
    fn read_as(&self, entry: &Entry, readers: &[Reader]) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
        crate::store::read_as_string(self.encode(entry), readers, |s, r| {
            Ok(Some(match entry.id.kind {
                Kind::Variable => Value::Variable(Variable::new(s)),
                Kind::Connection => Value::Connection(
                    connection::deserialize(s, r).map_err(|e| ItemError::new(ItemErrorKind::Unparseable, e.to_string()))?,
                ),
            }))
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: false,
            variables: self.cfg.variables_prefix.is_some(),
            connections: self.cfg.connections_prefix.is_some(),
            max_value_bytes: Some(MAX_VALUE_BYTES),
            empty_variables: true,
            variable_line_breaks: true,
            connection_format: ConnectionFormat::Json,
            connection_description: true,
            variable_description: false,
            can_tag: true,
            can_delete: true,
            // Checked by this store right before each write (see the module docs).
            conditional_writes: true,
            read_batch: 1,
            write_concurrency: 4,
            // Key Vault's service limit for secret writes (about 300 per 10 s per vault).
            write_rate: Some(30.0),
            buffered_writes: false,
            case_insensitive_names: true,
            keep_existing: false,
        }
    }

    fn identity(&self) -> String {
        format!(
            "azure_key_vault:{}:{:?}:{:?}:{}",
            self.cfg.vault_url.trim_end_matches('/'),
            self.cfg.connections_prefix,
            self.cfg.variables_prefix,
            self.cfg.sep
        )
    }

    fn locate(&self, id: &ItemId) -> Placement {
        self.cfg.locate(id)
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let mut inv = Inventory::new();
        let Some(head) = self.cfg.head(kind) else { return Ok(inv) };
        let head_lc = head.to_lowercase();
        let listing = |e: azure_core::Error| match self.classify("list_secret_properties", &e) {
            Failure::Store(se) => se,
            _ => StoreError::Backend { store: self.to_string(), op: "list_secret_properties", reason: e.to_string() },
        };
        let mut pager = self.client.list_secret_properties(None).map_err(listing)?;
        let mut found: Vec<(ItemId, String, bool)> = Vec::new();
        while let Some(props) = pager.try_next().await.map_err(listing)? {
            if props.managed == Some(true) {
                continue; // certificate-backed secrets
            }
            let Some(name) = props.id.as_deref().and_then(|i| i.split("/secrets/").nth(1)).map(|n| n.split('/').next().unwrap_or(n).to_string())
            else {
                continue;
            };
            let tags = props.tags.clone().unwrap_or_default();
            let enabled = props.attributes.as_ref().and_then(|a| a.enabled).unwrap_or(true);
            // Ids come from our tags (names are not reversible); untagged secrets under the
            // prefix are reported under the name's own tail, as foreign.
            let id = match (tags.get(KIND_TAG), tags.get(ID_TAG)) {
                (Some(k), Some(id)) if k == kind.as_str() => {
                    // Only if it still sits where that id lives (a renamed prefix is not ours).
                    match self.cfg.locate(&ItemId::new(kind, id.as_str())) {
                        Placement::At(n) if n.eq_ignore_ascii_case(&name) => id.clone(),
                        _ => continue,
                    }
                }
                (Some(_), Some(_)) => continue,
                _ => {
                    if !name.to_lowercase().starts_with(&head_lc) || name.len() == head.len() {
                        continue;
                    }
                    name[head.len()..].to_string()
                }
            };
            found.push((ItemId::new(kind, id), name, enabled));
        }
        let results: Vec<Result<Inventory, StoreError>> = futures::stream::iter(found)
            .map(|(id, name, enabled)| async move {
                if !enabled {
                    let mut one = Inventory::new();
                    one.insert_error(
                        id,
                        ItemError::new(ItemErrorKind::Blocked, "the secret is disabled; Airflow gets HTTP 403 and raises"),
                    );
                    return Ok(one);
                }
                self.fetch(&id, &name).await
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
                match self.cfg.locate(&id) {
                    Placement::At(name) => self.fetch(&id, &name).await,
                    _ => Ok(Inventory::new()),
                }
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

    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        let id = &entry.id;
        let name = match self.cfg.locate(id) {
            Placement::At(n) => n,
            Placement::Invalid(why) => return Err(self.item_err(id, ItemErrorKind::InvalidName, why)),
            Placement::Unreachable(why) => return Err(self.item_err(id, ItemErrorKind::Unreachable, why)),
        };
        let value = self.encode(entry)?;
        // Check what holds the name now: disabled, someone else's id, foreign, or changed since
        // the plan read it.
        if let Some(cur) = self.current(id, &name).await? {
            let tagged_id = cur.tags.get(ID_TAG);
            let tagged_kind = cur.tags.get(KIND_TAG);
            if let (Some(other), Some(k)) = (tagged_id, tagged_kind)
                && (other != &id.id || k != id.kind.as_str())
            {
                return Err(self.item_err(
                    id,
                    ItemErrorKind::Collision,
                    format!("the Key Vault name {name} already holds {k} {other:?} (names fold '_' and case)"),
                ));
            }
            match pre {
                Precondition::Absent => return Err(StoreError::Conflict { store: self.to_string(), id: id.clone() }),
                Precondition::Version(v) if Some(v) != cur.version.as_ref() => {
                    return Err(StoreError::Conflict { store: self.to_string(), id: id.clone() });
                }
                Precondition::Version(_) => {}
                Precondition::Any => {
                    if tagged_id.is_none() && !self.cfg.adopt {
                        return Err(self.item_err(
                            id,
                            ItemErrorKind::NotOwned,
                            format!("{name} exists and was not written by this tool"),
                        ));
                    }
                }
            }
        }
        match self.set(id, &name, &value).await {
            Ok(()) => Ok(()),
            Err(Failure::SoftDeleted) if self.cfg.recover_soft_deleted => {
                self.recover(id, &name).await?;
                self.set(id, &name, &value).await.map_err(|f| self.fail("set_secret", id, f))
            }
            Err(f) => Err(self.fail("set_secret", id, f)),
        }
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        let Placement::At(name) = self.cfg.locate(id) else { return Ok(()) };
        match self.client.delete_secret(&name, None).await {
            Ok(_) => Ok(()),
            Err(e) => match self.classify("delete_secret", &e) {
                Failure::NotFound => Ok(()),
                other => Err(self.fail("delete_secret", id, other)),
            },
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        let opts = azure_security_keyvault_secrets::models::SecretClientListSecretPropertiesOptions {
            maxresults: Some(1),
            ..Default::default()
        };
        let mut pages = self
            .client
            .list_secret_properties(Some(opts))
            .map_err(|e| StoreError::Backend { store: self.to_string(), op: "list_secret_properties", reason: e.to_string() })?
            .into_pages();
        match pages.try_next().await {
            Ok(_) => Ok(()),
            Err(e) => Err(match self.classify("list_secret_properties", &e) {
                Failure::Store(se) => se,
                _ => StoreError::Backend { store: self.to_string(), op: "list_secret_properties", reason: e.to_string() },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_airflow() {
        let cfg = AzureKeyVaultConfig { vault_url: "https://v.vault.azure.net/".into(), ..Default::default() };
        assert_eq!(cfg.locate(&ItemId::connection("smtp_default")), Placement::At("airflow-connections-smtp-default".into()));
        assert_eq!(cfg.locate(&ItemId::variable("a__b")), Placement::At("airflow-variables-a--b".into()));
        assert!(matches!(cfg.locate(&ItemId::variable("x:y")), Placement::Invalid(_)));
        let pre = AzureKeyVaultConfig { connections_prefix: Some("pre_fix--".into()), ..cfg.clone() };
        assert_eq!(pre.secret_name(Kind::Connection, "a").as_deref(), Some("pre-fix-a"));
        let long = "a".repeat(120);
        assert!(matches!(cfg.locate(&ItemId::variable(long)), Placement::Invalid(_)));
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let cfg = AzureKeyVaultConfig { client_secret: Some("canary-9a8b".into()), ..Default::default() };
        assert!(!format!("{cfg:?}").contains("canary"));
    }
}
