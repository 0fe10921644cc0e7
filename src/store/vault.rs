//! HashiCorp Vault (and OpenBao) as a source and a target, exactly as
//! `airflow.providers.hashicorp.secrets.vault.VaultBackend` reads it (spec §5.1).
//!
//! - **Naming** ([`path`]): `{mount}/data/{path}/{id}` (KV v2) or `{mount}/{path}/{id}` (KV v1);
//!   `""` path = the bare id; `mount_point` unset = the id's first `/`-segment is the mount and an
//!   id without `/` is never looked up. Ids go in verbatim and may nest with `/`.
//! - **Values** ([`value`]): a Variable is `{"value": "<string>"}`; a Connection is the field dict
//!   (or `{"conn_uri": …}`), read with Airflow's rules (a truthy `conn_uri` wins; unknown keys make
//!   Airflow fall through, so they are per-item errors here).
//! - **Ownership**: KV v2 `custom_metadata` `managed-by = airflow-secrets-sync` and `airflow-id`.
//!   Writes are check-and-set (`options.cas`), so a concurrent writer is never silently
//!   overwritten. KV v1 has neither: ownership is `Untracked` and writes are unconditional.
//! - **Calls** (KV v2): a create the plan's scan listed as absent is mark + `cas=0` write; an
//!   update of a secret the scan read with our mark is one `cas=<version>` write; anything else
//!   reads the metadata first (`vault/seen.rs`; docs/benchmarks.md "Calls per item").
//! - **Limits**: none enforced here; Vault's default `max_request_size` is 32 MiB.
//! - **Errors**: only 404 means "absent" (as in Airflow, §9 item 18). 403 names the path; a
//!   revoked or expired login token is replaced once by logging in again (approle, kubernetes,
//!   userpass); a renewable plain token is renewed before it expires (vaultrs does neither,
//!   dependencies.md pitfall 8). 429/5xx/resets are retried with bounded exponential backoff.
//!   Vault error bodies are never echoed: only the status survives.
//! - **Test emulator**: a real `bao server -dev` (OpenBao), started by `tests/vault.rs`.

mod config;
mod path;
mod seen;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use rustify::errors::ClientError as RestError;
use serde_json::Value as Json;
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretMetadataRequest, SetSecretRequestOptions};
use vaultrs::api::kv2::responses::{ReadSecretMetadataResponse, ReadSecretResponse};
use vaultrs::client::{VaultClient, VaultClientSettings, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

pub use config::{
    DEFAULT_KUBERNETES_JWT_PATH, KvVersion, MANAGED_BY, VaultAuth, VaultConfig, VaultConnectionFormat,
};
pub use path::{SecretPath, python_quote, secret_path};
pub use value::{decode_connection, decode_variable, encode_connection, encode_variable};

use super::{Capabilities, ConnectionFormat, Placement, Precondition, Store, StoreError};
use crate::airflow::connection::Reader;
use crate::model::{Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Ownership, Value, Variable};
use super::limit::{Limiter, Outcome};
use crate::secret::SecretValue;

/// Attempts per request for retryable failures (429, 5xx, dropped connections).
const MAX_ATTEMPTS: u32 = 5;
/// Per-request HTTP timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Vault limits each `custom_metadata` value to 512 bytes; longer ids are not recorded there (the
/// path already names them).
const CUSTOM_METADATA_VALUE_LIMIT: usize = 512;


/// A logged-in client and when to refresh its token.
struct Session {
    client: Arc<VaultClient>,
    /// Bumped by every login/renewal, so concurrent failures refresh only once.
    generation: u64,
    refresh_at: Option<Instant>,
}

/// A failed Vault call, classified; turned into a [`StoreError`] by [`VaultStore::error`] with
/// the operation and path added. Never holds a response body.
#[derive(Debug)]
enum Failure {
    NotFound,
    CasMismatch,
    Denied,
    Sealed,
    Throttled,
    Unavailable(String),
    Unreachable(String),
    Backend(String),
    Store(StoreError),
}

impl Failure {
    fn retryable(&self) -> bool {
        matches!(self, Failure::Throttled | Failure::Unavailable(_))
    }
}

/// How an item read ended, per id.
enum ReadOutcome {
    Found(Json, Meta),
    Absent,
    Denied(SecretPath),
}

/// The largest value written (its encoded form: a variable's bytes, a connection's JSON or URI).
/// Vault's integrated storage (Raft) refuses entries over `max_entry_size`, 1 MiB by default, and
/// the HTTP listener requests over 32 MiB: larger values are refused in the plan, before any write.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Without `read_concurrency`: reads in flight start at 16 and follow latency up to 64
/// ([`crate::apply::limit`]), so a Vault a round trip away is read nearly as fast as one on
/// loopback.
pub const READS_START: usize = 16;
pub const READS_MAX: usize = 64;
/// ... and no further than this many reads per second need at the measured latency.
pub const READS_PER_SECOND: f64 = 4000.0;

pub struct VaultStore {
    config: VaultConfig,
    address: String,
    /// Everything but the token.
    settings: VaultClientSettings,
    session: RwLock<Session>,
    login_lock: tokio::sync::Mutex<()>,
    reauthentications: AtomicU64,
    /// With the mount taken from the id (`mount_point` unset): the KV mounts of the configured
    /// version this token can use, listed at `open`. An id whose first segment is not one of them
    /// is refused: `auth/token/create` or `sys/policies/acl/x` would otherwise be a request to
    /// that API, not to a secret.
    verified_mounts: std::collections::BTreeSet<String>,
    /// Which Airflow reader stored values are decoded as (default: Airflow 3 with hashicorp ≥ 4.8,
    /// `from_json` normalisation; Airflow 2.10 pairs with hashicorp < 4.8, `Connection(**dict)`).
    reader: Reader,
    /// Reads and LISTs in flight during scan/read: `read_concurrency`, else following latency.
    reads: Limiter,
    /// What this store's scans listed and read: lets a create or an update skip the pre-write
    /// metadata read when the plan's scan already answered it (`vault/seen.rs`).
    seen: seen::Seen,
}

impl fmt::Display for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mount = self.config.mount_point.as_deref().unwrap_or("<mount from id>");
        write!(f, "vault:{} [{mount}, kv v{}]", self.address, self.config.kv_engine_version.number())
    }
}

impl fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStore").field("config", &self.config).finish_non_exhaustive()
    }
}

impl VaultStore {
    /// Decode stored values as `reader` does (`verify` reads with each; plans with the primary one).
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    /// The KV data `write` stores for `entry` (plaintext: build it just before the wire).
    fn encode(&self, entry: &Entry) -> Result<serde_json::Map<String, Json>, ItemError> {
        let data = match &entry.value {
            Value::Variable(v) => encode_variable(&v.value),
            Value::Connection(c) => encode_connection(c, self.config.connection_format)?,
        };
        // vaultrs sends an empty object as an empty body, which KV v1 refuses.
        if data.is_empty() && self.kv() == KvVersion::V1 {
            return Err(ItemError::new(ItemErrorKind::NotRepresentable, "KV v1 cannot store an empty field dict"));
        }
        Ok(data)
    }

    /// Connect and log in. Fails early on a bad config or a failed login; a plain token is not
    /// checked here (see [`Store::check`]).
    pub async fn open(config: &VaultConfig) -> Result<Self, StoreError> {
        let config = config.clone();
        let cfg_err = |message: String| StoreError::Config { store: "vault".into(), message };
        config.validate().map_err(cfg_err)?;
        let address = match config.url.clone().filter(|u| !u.is_empty()) {
            Some(u) => u,
            None => std::env::var("VAULT_ADDR")
                .ok()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| cfg_err("no Vault address: set `url` or VAULT_ADDR".into()))?,
        };
        let address = address.trim_end_matches('/').to_string();
        check_address(&address).map_err(|m| cfg_err(format!("url {address:?}: {m}")))?;
        let settings = client_settings(&config, &address).map_err(cfg_err)?;
        let placeholder = Arc::new(build_client(&settings, "").map_err(cfg_err)?);
        let reads = match config.read_concurrency {
            Some(n) => Limiter::fixed(n),
            None => Limiter::adaptive(READS_START, READS_MAX, READS_PER_SECOND),
        }
        .limiting("read");
        let mut store = VaultStore {
            reads,
            config,
            address,
            settings,
            session: RwLock::new(Session { client: placeholder, generation: 0, refresh_at: None }),
            login_lock: tokio::sync::Mutex::new(()),
            reauthentications: AtomicU64::new(0),
            verified_mounts: Default::default(),
            reader: Reader::Orm3,
            seen: Default::default(),
        };
        let (client, refresh_at) = store.login().await?;
        *store.session.write().unwrap() = Session { client, generation: 1, refresh_at };
        if store.config.mount_point.is_none() {
            store.verified_mounts = store.kv_mounts().await?.into_iter().collect();
        }
        Ok(store)
    }

    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    /// How many times the token was replaced or renewed after `open` (diagnostics and tests).
    pub fn reauthentications(&self) -> u64 {
        self.reauthentications.load(Ordering::Relaxed)
    }

    /// Paths for `kind`, in Airflow's lookup order; empty when the kind is disabled.
    fn paths(&self, kind: Kind) -> &[String] {
        match kind {
            Kind::Variable => &self.config.variables_path,
            Kind::Connection => &self.config.connections_path,
        }
    }

    fn kv(&self) -> KvVersion {
        self.config.kv_engine_version
    }

    /// Where the tool writes `id`: the first configured path, if Airflow can read it there.
    fn write_path(&self, id: &ItemId) -> Result<SecretPath, ItemError> {
        let Some(first) = self.paths(id.kind).first() else {
            return Err(ItemError::new(
                ItemErrorKind::Unreachable,
                format!("{} are disabled ({}_path is None)", id.kind.plural(), id.kind.as_str()),
            ));
        };
        let Some(sp) = secret_path(self.config.mount_point.as_deref(), first, &id.id) else {
            return Err(ItemError::new(
                ItemErrorKind::Unreachable,
                "mount_point is unset, so Airflow takes the mount from the id's first `/`-segment, and this id has no `/`",
            ));
        };
        if let Some(why) = sp.invalid_reason() {
            return Err(ItemError::new(ItemErrorKind::InvalidName, why));
        }
        if let Some(why) = self.unverified_mount(&sp) {
            return Err(ItemError::new(ItemErrorKind::InvalidName, why));
        }
        Ok(sp)
    }

    /// Why `sp`'s mount, taken from the id, is refused: it is not a KV mount verified at `open`.
    fn unverified_mount(&self, sp: &SecretPath) -> Option<String> {
        if self.config.mount_point.is_some() || self.verified_mounts.contains(&sp.mount) {
            return None;
        }
        Some(format!(
            "the id's first segment `{}` is not a KV v{} mount this token can use (mount_point is unset, so it would \
             address another Vault API, not a secret)",
            sp.mount.escape_debug(),
            self.kv().number()
        ))
    }

    /// Every location Airflow tries for `id`, in order (one per configured path).
    fn lookup_paths(&self, id: &ItemId) -> Vec<SecretPath> {
        self.paths(id.kind)
            .iter()
            .filter_map(|p| secret_path(self.config.mount_point.as_deref(), p, &id.id))
            .filter(|sp| sp.invalid_reason().is_none() && self.unverified_mount(sp).is_none())
            .collect()
    }

    // ---- sessions and calls ---------------------------------------------------------------

    /// Log in with the configured method: a client holding a fresh token, and when to refresh it.
    async fn login(&self) -> Result<(Arc<VaultClient>, Option<Instant>), StoreError> {
        let anon = build_client(&self.settings, "").map_err(|m| self.config_error(m))?;
        let login_err = |what: String, e: ClientError| match classify(&e) {
            Failure::Denied | Failure::Backend(_) => {
                StoreError::PermissionDenied { store: self.to_string(), what: format!("login failed: {what}") }
            }
            other => self.error("login", &what, other),
        };
        let auth = match &self.config.auth {
            VaultAuth::Token { token, token_path } => {
                let token = resolve_token(token.as_ref(), token_path.as_deref(), &|k| std::env::var(k).ok())
                    .map_err(|m| self.config_error(m))?;
                let client = build_client(&self.settings, token.expose_plaintext()).map_err(|m| self.config_error(m))?;
                // The TTL decides when to renew; a token that may not look itself up is used as is.
                let refresh_at = match vaultrs::token::lookup_self(&client).await {
                    Ok(info) if info.renewable == Some(true) && info.ttl > 0 => Some(refresh_deadline(info.ttl)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::debug!(store = %self, reason = ?failure_label(&classify(&e)), "token lookup-self failed");
                        None
                    }
                };
                return Ok((Arc::new(client), refresh_at));
            }
            VaultAuth::Approle { role_id, secret_id, auth_mount_point } => {
                let secret = secret_id.as_ref().map(|s| s.expose_plaintext()).unwrap_or("");
                vaultrs::auth::approle::login(&anon, auth_mount_point, role_id, secret)
                    .await
                    .map_err(|e| login_err(format!("approle at auth/{auth_mount_point}/login"), e))?
            }
            VaultAuth::Kubernetes { kubernetes_role, kubernetes_jwt_path, auth_mount_point } => {
                let jwt = std::fs::read_to_string(kubernetes_jwt_path).map(SecretValue::from).map_err(|e| {
                    self.config_error(format!(
                        "cannot read kubernetes_jwt_path {}: {}",
                        kubernetes_jwt_path.display(),
                        e.kind()
                    ))
                })?;
                vaultrs::auth::kubernetes::login(&anon, auth_mount_point, kubernetes_role, jwt.expose_plaintext().trim())
                    .await
                    .map_err(|e| login_err(format!("kubernetes at auth/{auth_mount_point}/login"), e))?
            }
            VaultAuth::Userpass { username, password, auth_mount_point } => {
                vaultrs::auth::userpass::login(&anon, auth_mount_point, username, password.expose_plaintext())
                    .await
                    .map_err(|e| login_err(format!("userpass at auth/{auth_mount_point}/login/{username}"), e))?
            }
        };
        let client = build_client(&self.settings, &auth.client_token).map_err(|m| self.config_error(m))?;
        let refresh_at = (auth.lease_duration > 0).then(|| refresh_deadline(auth.lease_duration));
        Ok((Arc::new(client), refresh_at))
    }

    /// Replace or renew the token, once per generation however many callers saw it fail.
    async fn refresh(&self, seen_generation: u64) -> Result<(), StoreError> {
        let _guard = self.login_lock.lock().await;
        let current = {
            let s = self.session.read().unwrap();
            if s.generation != seen_generation {
                return Ok(());
            }
            s.client.clone()
        };
        let (client, refresh_at) = if self.config.auth.can_login() {
            self.login().await?
        } else {
            let auth = vaultrs::token::renew_self(&*current, None).await.map_err(|e| self.error("renew token", "auth/token/renew-self", classify(&e)))?;
            (current, (auth.renewable && auth.lease_duration > 0).then(|| refresh_deadline(auth.lease_duration)))
        };
        let mut s = self.session.write().unwrap();
        *s = Session { client, generation: seen_generation + 1, refresh_at };
        self.reauthentications.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(store = %self, method = self.config.auth.method(), "vault token refreshed");
        Ok(())
    }

    /// The current client, renewing first if the token is near its end.
    async fn current(&self) -> Result<(Arc<VaultClient>, u64), StoreError> {
        let (client, generation, due) = {
            let s = self.session.read().unwrap();
            (s.client.clone(), s.generation, s.refresh_at.is_some_and(|t| Instant::now() >= t))
        };
        if !due {
            return Ok((client, generation));
        }
        if let Err(e) = self.refresh(generation).await {
            // Keep going with the old token: it may still be valid, and a real failure shows up
            // on the call itself. Do not retry the renewal on every call.
            tracing::warn!(store = %self, error = %e, "vault token renewal failed");
            self.session.write().unwrap().refresh_at = None;
        }
        let s = self.session.read().unwrap();
        Ok((s.client.clone(), s.generation))
    }

    /// Run one Vault call with token refresh (once, on 403 with a dead login token) and bounded
    /// exponential backoff on retryable failures. 404 and CAS mismatches return at once.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, Failure>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut attempt = 1;
        let mut relogin_tried = false;
        loop {
            let (client, generation) = self.current().await.map_err(Failure::Store)?;
            let failure = match f(client.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => classify(&e),
            };
            match failure {
                Failure::Denied if self.config.auth.can_login() && !relogin_tried => {
                    relogin_tried = true;
                    // A policy denial and a revoked/expired token both answer 403; only the
                    // latter is cured by logging in again.
                    if vaultrs::token::lookup_self(&*client).await.is_err() {
                        self.refresh(generation).await.map_err(Failure::Store)?;
                        continue;
                    }
                    return Err(Failure::Denied);
                }
                f if f.retryable() && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                f => return Err(f),
            }
        }
    }

    fn config_error(&self, message: String) -> StoreError {
        StoreError::Config { store: self.to_string(), message }
    }

    /// The store error for a failed `op` on `path` (a Vault API path: never a value).
    fn error(&self, op: &'static str, path: &str, failure: Failure) -> StoreError {
        let store = self.to_string();
        match failure {
            Failure::Denied => StoreError::PermissionDenied { store, what: format!("{op} {path}") },
            Failure::Sealed => StoreError::Unavailable { store, op, reason: "vault is sealed".into() },
            Failure::Throttled => StoreError::Throttled { store, op, retry_after: None },
            Failure::Unavailable(reason) => StoreError::Unavailable { store, op, reason },
            Failure::Unreachable(reason) => StoreError::Unreachable { store, reason: format!("{}: {reason}", self.address) },
            Failure::Backend(reason) => StoreError::Backend { store, op, reason: format!("{path}: {reason}") },
            Failure::NotFound => StoreError::Backend { store, op, reason: format!("{path}: not found") },
            Failure::CasMismatch => StoreError::Backend { store, op, reason: format!("{path}: check-and-set failed") },
            Failure::Store(e) => e,
        }
    }

    /// The refusal to replace or delete a secret this tool did not write (the same item error
    /// the planner and the other stores use).
    fn not_owned(&self, id: &ItemId, sp: &SecretPath) -> StoreError {
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

    fn is_ours(custom: &Option<HashMap<String, String>>) -> bool {
        custom.as_ref().and_then(|m| m.get("managed-by")).is_some_and(|v| v == MANAGED_BY)
    }

    fn ownership(&self, custom: &Option<HashMap<String, String>>) -> Ownership {
        if Self::is_ours(custom) { Ownership::Ours } else { Ownership::Foreign }
    }

    // ---- KV operations --------------------------------------------------------------------

    /// Read one secret. `None` = 404 (absent, or a KV v2 latest version that is soft-deleted,
    /// which Airflow also reads as None).
    async fn read_at(&self, sp: &SecretPath, id: &ItemId) -> Result<Option<(Json, Meta)>, Failure> {
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

    async fn read_metadata(&self, sp: &SecretPath) -> Result<Option<ReadSecretMetadataResponse>, StoreError> {
        let (mount, path) = (sp.mount.as_str(), sp.path.as_str());
        match self.call(|c| async move { vaultrs::kv2::read_metadata(&*c, mount, path).await }).await {
            Ok(m) => Ok(Some(m)),
            Err(Failure::NotFound) => Ok(None),
            Err(f) => Err(self.error("read metadata", &sp.metadata_path(), f)),
        }
    }

    /// One LIST. A 404 is an empty folder (Vault answers LIST on a missing path with 404).
    async fn list_folder(&self, mount: &str, folder: &str) -> Result<Vec<String>, StoreError> {
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
    async fn list_tree(&self, mount: &str, root: &str, skip: &[String]) -> Result<Vec<String>, StoreError> {
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
    async fn kv_mounts(&self) -> Result<Vec<String>, StoreError> {
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
    async fn read_candidates(&self, candidates: Vec<(ItemId, Vec<SecretPath>)>) -> Result<Inventory, StoreError> {
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

    async fn write_v2(&self, entry: &Entry, sp: &SecretPath, data: &Json, pre: &Precondition) -> Result<(), StoreError> {
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
    async fn create_listed_absent(&self, entry: &Entry, sp: &SecretPath, data: &Json) -> Result<(), StoreError> {
        let id = &entry.id;
        let mark = our_mark(&id.id);
        // Ownership before data, as on the full path: a crash between the two leaves a mark on a
        // path with no value, which the next run writes.
        self.set_custom_metadata(sp, mark.clone()).await?;
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
    async fn unmark(&self, sp: &SecretPath, mark: &HashMap<String, String>) -> Result<(), StoreError> {
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
    async fn cas_write(&self, sp: &SecretPath, data: &Json, cas: u32) -> Result<(), Failure> {
        let (mount, path) = (sp.mount.as_str(), sp.path.as_str());
        self.call(|c| async move {
            vaultrs::kv2::set_with_options(&*c, mount, path, data, SetSecretRequestOptions { cas }).await
        })
        .await
        .map(|_| ())
    }

    /// Replace a KV v2 secret's `custom_metadata` (creating its metadata if needed).
    async fn set_custom_metadata(&self, sp: &SecretPath, custom: HashMap<String, String>) -> Result<(), StoreError> {
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

#[async_trait]
impl Store for VaultStore {
    fn capabilities(&self) -> Capabilities {
        let v2 = self.kv() == KvVersion::V2;
        let mut caps = Capabilities::full();
        caps.variables = !self.config.variables_path.is_empty();
        caps.connections = !self.config.connections_path.is_empty();
        // Vault's default max_request_size is 32 MiB; nothing near it is an Airflow value.
        caps.max_value_bytes = Some(MAX_VALUE_BYTES);
        caps.empty_variables = true;
        caps.connection_format = match self.config.connection_format {
            VaultConnectionFormat::Fields => ConnectionFormat::Fields,
            VaultConnectionFormat::Uri => ConnectionFormat::Uri,
        };
        caps.connection_description = self.config.connection_format == VaultConnectionFormat::Fields;
        caps.variable_description = false;
        caps.can_tag = v2;
        caps.can_delete = true;
        caps.conditional_writes = v2;
        caps.read_batch = 100;
        // The cap of the apply's adaptive limit (it starts at 8 and grows while latency stays
        // flat): a Vault a 10 ms round trip away needs ~32 writes in flight to be used well.
        caps.write_concurrency = 64;
        caps
    }

    fn identity(&self) -> String {
        format!(
            "vault:{}|ns={}|mount={}|kv={}|variables={}|connections={}",
            self.address,
            self.config.namespace.as_deref().unwrap_or(""),
            self.config.mount_point.as_deref().unwrap_or("<from id>"),
            self.kv().number(),
            self.config.variables_path.join(","),
            self.config.connections_path.join(","),
        )
    }

    fn locate(&self, id: &ItemId) -> Placement {
        match self.write_path(id) {
            Ok(sp) => Placement::At(sp.api_path(self.kv())),
            Err(e) if e.kind == ItemErrorKind::Unreachable => Placement::Unreachable(e.detail),
            Err(e) => Placement::Invalid(e.detail),
        }
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let paths = self.paths(kind);
        if paths.is_empty() {
            return Ok(Inventory::new());
        }
        let others: Vec<String> = Kind::ALL
            .iter()
            .filter(|k| **k != kind)
            .flat_map(|k| self.paths(*k).iter().cloned())
            .filter(|p| !p.is_empty())
            .collect();
        let mounts = match &self.config.mount_point {
            Some(m) => vec![m.clone()],
            None => self.kv_mounts().await?,
        };
        let mut candidates: BTreeMap<ItemId, Vec<SecretPath>> = BTreeMap::new();
        for mount in &mounts {
            for root in paths {
                // Skip only the other kind's subtrees strictly below this root.
                let skip: Vec<String> = others
                    .iter()
                    .filter(|o| *o != root && (root.is_empty() || o.starts_with(&format!("{root}/"))))
                    .cloned()
                    .collect();
                for rel in self.list_tree(mount, root, &skip).await? {
                    let id = match &self.config.mount_point {
                        Some(_) => rel.clone(),
                        None => format!("{mount}/{rel}"),
                    };
                    let path = if root.is_empty() { rel } else { format!("{root}/{rel}") };
                    candidates.entry(ItemId::new(kind, id)).or_default().push(SecretPath { mount: mount.clone(), path });
                }
            }
        }
        self.read_candidates(candidates.into_iter().collect()).await
    }

    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        let candidates = ids.iter().map(|id| (id.clone(), self.lookup_paths(id))).filter(|(_, p)| !p.is_empty()).collect();
        self.read_candidates(candidates).await
    }

    fn read_as(&self, entry: &Entry, readers: &[Reader]) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
        let data = self.encode(entry)?;
        Ok(readers.iter().map(|r| decode_value(entry.id.kind, &data, *r)).collect())
    }

    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        let sp = self.write_path(&entry.id).map_err(|e| StoreError::item(self, &entry.id, e))?;
        let size = match &entry.value {
            Value::Variable(v) => v.value.len(),
            Value::Connection(c) => match self.config.connection_format {
                VaultConnectionFormat::Uri => crate::airflow::connection::to_uri(c).len(),
                VaultConnectionFormat::Fields => crate::airflow::connection::to_json(c).len(),
            },
        };
        if size > MAX_VALUE_BYTES {
            let why = format!("{size} bytes encoded; the limit is {MAX_VALUE_BYTES}");
            return Err(StoreError::item(self, &entry.id, ItemError::new(ItemErrorKind::TooLarge, why)));
        }
        let data = Json::Object(self.encode(entry).map_err(|e| StoreError::item(self, &entry.id, e))?);
        match self.kv() {
            KvVersion::V2 => self.write_v2(entry, &sp, &data, pre).await,
            KvVersion::V1 => {
                let Json::Object(fields) = &data else { unreachable!("encoders return objects") };
                let flat: HashMap<&str, Json> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                let flat = &flat;
                let (mount, path) = (sp.mount.as_str(), sp.path.as_str());
                self.call(|c| async move { vaultrs::kv1::set(&*c, mount, path, flat).await })
                    .await
                    .map_err(|f| self.error("write", &sp.api_path(KvVersion::V1), f))
            }
        }
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        let paths = self.lookup_paths(id);
        match self.kv() {
            KvVersion::V2 => {
                // Check every location first, so a refusal deletes nothing.
                let mut doomed = Vec::new();
                for sp in paths {
                    if let Some(m) = self.read_metadata(&sp).await? {
                        if !Self::is_ours(&m.custom_metadata) && !self.config.adopt {
                            return Err(self.not_owned(id, &sp));
                        }
                        doomed.push(sp);
                    }
                }
                for sp in doomed {
                    let (mount, path) = (sp.mount.as_str(), sp.path.as_str());
                    match self.call(|c| async move { vaultrs::kv2::delete_metadata(&*c, mount, path).await }).await {
                        Ok(()) | Err(Failure::NotFound) => {}
                        Err(f) => return Err(self.error("delete", &sp.metadata_path(), f)),
                    }
                }
                Ok(())
            }
            KvVersion::V1 => {
                for sp in paths {
                    let (mount, path) = (sp.mount.as_str(), sp.path.as_str());
                    match self.call(|c| async move { vaultrs::kv1::delete(&*c, mount, path).await }).await {
                        Ok(()) | Err(Failure::NotFound) => {}
                        Err(f) => return Err(self.error("delete", &sp.api_path(KvVersion::V1), f)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Reachable, unsealed, and the token is alive.
    async fn check(&self) -> Result<(), StoreError> {
        let (client, _) = self.current().await?;
        // standbyok: a standby node answers 200 too; only "sealed" and "unreachable" matter here.
        let (status, body) = raw_get(&client, "sys/health?standbyok=true&perfstandbyok=true", false)
            .await
            .map_err(|e| self.error("health check", "sys/health", classify(&e)))?;
        if body.get("sealed").and_then(Json::as_bool) == Some(true) {
            return Err(self.error("health check", "sys/health", Failure::Sealed));
        }
        if !(200..300).contains(&status) {
            return Err(self.error("health check", "sys/health", classify(&api_error(status, &body))));
        }
        self.call(|c| async move { vaultrs::token::lookup_self(&*c).await.map(|_| ()) })
            .await
            .map_err(|f| self.error("token lookup", "auth/token/lookup-self", f))
    }
}

// ---- helpers ------------------------------------------------------------------------------

fn entry_from(id: &ItemId, data: Json, meta: Meta, reader: Reader) -> Result<Entry, ItemError> {
    let Json::Object(map) = data else {
        return Err(ItemError::new(ItemErrorKind::Unparseable, "the secret's data is not a JSON object"));
    };
    Ok(Entry { id: id.clone(), value: decode_value(id.kind, &map, reader)?, meta })
}

/// What `VaultBackend` returns for one secret's data, for `reader`.
fn decode_value(kind: Kind, map: &serde_json::Map<String, Json>, reader: Reader) -> Result<Value, ItemError> {
    Ok(match kind {
        Kind::Variable => Value::Variable(Variable::new(decode_variable(map)?)),
        Kind::Connection => Value::Connection(decode_connection(map, reader)?),
    })
}

/// The `custom_metadata` that marks a secret as written by this tool for `id`.
fn our_mark(id: &str) -> HashMap<String, String> {
    let mut custom = HashMap::from([("managed-by".to_string(), MANAGED_BY.to_string())]);
    if id.len() <= CUSTOM_METADATA_VALUE_LIMIT {
        custom.insert("airflow-id".to_string(), id.to_string());
    }
    custom
}

fn tagged_as(custom: &Option<HashMap<String, String>>, id: &str) -> bool {
    VaultStore::is_ours(custom)
        && (id.len() > CUSTOM_METADATA_VALUE_LIMIT
            || custom.as_ref().and_then(|m| m.get("airflow-id")).is_some_and(|v| v == id))
}

fn latest_is_deleted(m: &ReadSecretMetadataResponse) -> bool {
    m.versions
        .get(&m.current_version.to_string())
        .is_some_and(|v| v.destroyed || !v.deletion_time.is_empty())
}

/// Refresh when a third of the lease, or a minute, is left, whichever is more: a long batch
/// must not hit the expiry mid-run. Tokens shorter than a minute are refreshed on every call.
fn refresh_deadline(lease_secs: u64) -> Instant {
    let margin = (lease_secs / 3).max(60);
    Instant::now() + Duration::from_secs(lease_secs.saturating_sub(margin))
}

fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let base = Duration::from_millis(200).saturating_mul(1 << (attempt - 1).min(5)).min(Duration::from_secs(5));
    base + Duration::from_millis(rand::rng().random_range(0..100))
}

/// Classify a vaultrs error by status and transport cause. Bodies are inspected only to tell a
/// sealed Vault and a CAS mismatch apart; they are never kept.
fn classify(e: &ClientError) -> Failure {
    match e {
        ClientError::APIError { code, errors } => by_status(*code, errors),
        ClientError::RestClientError { source } => match source {
            RestError::ServerResponseError { code, .. } => by_status(*code, &[]),
            RestError::RequestError { source, .. } => transport(source),
            _ => Failure::Backend("an unexpected response from Vault".into()),
        },
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            Failure::Backend("an empty response from Vault".into())
        }
        ClientError::JsonParseError { .. } => Failure::Backend("a response that is not the expected JSON".into()),
        ClientError::FileNotFoundError { path }
        | ClientError::FileReadError { path, .. }
        | ClientError::ParseCertificateError { path, .. } => Failure::Backend(format!("cannot use the CA file {path}")),
        _ => Failure::Backend("the Vault client failed".into()),
    }
}

fn by_status(code: u16, errors: &[String]) -> Failure {
    match code {
        404 => Failure::NotFound,
        401 | 403 => Failure::Denied,
        400 if errors.iter().any(|e| e.contains("check-and-set")) => Failure::CasMismatch,
        429 => Failure::Throttled,
        503 if errors.iter().any(|e| e.to_ascii_lowercase().contains("sealed")) => Failure::Sealed,
        // 412: a performance standby has not caught up yet; retrying is the documented answer.
        412 | 500..=599 => Failure::Unavailable(format!("HTTP {code}")),
        _ => Failure::Backend(format!("HTTP {code}")),
    }
}

fn transport(source: &anyhow::Error) -> Failure {
    use std::io::ErrorKind as K;
    for cause in source.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
                    return Failure::Unreachable(io.kind().to_string());
                }
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::TimedOut | K::UnexpectedEof => {
                    return Failure::Unavailable(io.kind().to_string());
                }
                _ => {}
            }
        }
    }
    // Transport error texts (hyper, rustls) never carry a request body; look only for the cause.
    // "connection closed before message completed" is a dropped connection (retryable), not a
    // failure to connect: match hyper-util's connect-phase texts precisely.
    let text = source.chain().map(|c| c.to_string().to_ascii_lowercase()).collect::<Vec<_>>().join(": ");
    let connect_phase = ["client error (connect)", "tcp connect error", "dns error", "error trying to connect"];
    if connect_phase.iter().any(|t| text.contains(t)) || text.contains("certificate") || text.contains("tls handshake") {
        Failure::Unreachable("cannot connect (DNS, TCP or TLS)".into())
    } else if text.contains("timed out") || text.contains("timeout") {
        Failure::Unavailable("timed out".into())
    } else {
        Failure::Unavailable("the connection failed".into())
    }
}

fn failure_label(f: &Failure) -> &'static str {
    match f {
        Failure::NotFound => "not found",
        Failure::CasMismatch => "cas mismatch",
        Failure::Denied => "denied",
        Failure::Sealed => "sealed",
        Failure::Throttled => "throttled",
        Failure::Unavailable(_) => "unavailable",
        Failure::Unreachable(_) => "unreachable",
        Failure::Backend(_) => "backend",
        Failure::Store(_) => "store",
    }
}

/// A non-2xx raw response as vaultrs would report it (status and Vault's error strings).
fn api_error(status: u16, body: &Json) -> ClientError {
    let errors = body
        .get("errors")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    ClientError::APIError { code: status, errors }
}

/// A GET that vaultrs has no endpoint for (UI mounts, health), through the same HTTP client
/// (same TLS settings) and headers.
async fn raw_get(client: &VaultClient, path: &str, with_token: bool) -> Result<(u16, Json), ClientError> {
    let url = format!("{}/v1/{path}", client.settings.address.as_str().trim_end_matches('/'));
    let transport_err = |e: anyhow::Error| ClientError::RestClientError {
        source: RestError::RequestError { source: e, url: path.to_string(), method: "GET".into() },
    };
    let mut req = client.http.http.get(&url).header("X-Vault-Request", "true");
    if with_token && !client.settings.token.is_empty() {
        req = req.header("X-Vault-Token", client.settings.token.as_str());
    }
    if let Some(ns) = &client.settings.namespace {
        req = req.header("X-Vault-Namespace", ns.as_str());
    }
    let resp = req.send().await.map_err(|e| transport_err(e.into()))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| transport_err(e.into()))?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Json::Null)))
}

fn client_settings(config: &VaultConfig, address: &str) -> Result<VaultClientSettings, String> {
    let mut b = VaultClientSettingsBuilder::default();
    // `address` panics on a URL it cannot parse; `check_address` ran first, and this is the net.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.address(address);
    }))
    .map_err(|_| "not a valid URL".to_string())?;
    b.token("").verify(!config.skip_verify).namespace(config.namespace.clone()).timeout(Some(REQUEST_TIMEOUT));
    if let Some(ca) = &config.ca_file {
        b.ca_certs(vec![ca.display().to_string()]);
    }
    b.build().map_err(|e| format!("invalid Vault client settings: {e}"))
}

/// The token of `auth.type = "token"`, in Airflow's order: `token`, else the file `token_path`
/// (trimmed), else env `VAULT_TOKEN`. Held as a [`SecretValue`] from the moment it is read (the
/// vaultrs client keeps its own copy for the requests it sends).
fn resolve_token(
    token: Option<&SecretValue>,
    token_path: Option<&std::path::Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretValue, String> {
    match (token, token_path) {
        (Some(t), _) if !t.is_empty() => Ok(t.clone()),
        (_, Some(p)) => {
            let text = std::fs::read_to_string(p)
                .map(SecretValue::from)
                .map_err(|e| format!("cannot read token_path {}: {}", p.display(), e.kind()))?;
            Ok(SecretValue::from(text.expose_plaintext().trim()))
        }
        _ => env("VAULT_TOKEN")
            .map(SecretValue::from)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "no Vault token: set auth.token, auth.token_path or VAULT_TOKEN".into()),
    }
}

fn build_client(settings: &VaultClientSettings, token: &str) -> Result<VaultClient, String> {
    let mut s = settings.clone();
    s.token = token.to_string();
    VaultClient::new(s).map_err(|e| match classify(&e) {
        Failure::Backend(reason) => reason,
        _ => "cannot build the Vault HTTP client".into(),
    })
}

/// Enough of a URL check that vaultrs's parser will not panic on common mistakes.
fn check_address(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace".into());
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.contains('@') {
        return Err("credentials in the URL are not supported; use the auth settings".into());
    }
    if let Some((h, port)) = host.rsplit_once(':')
        && !port.ends_with(']')
        && (!h.is_empty() && (port.is_empty() || port.parse::<u16>().is_err()))
    {
        return Err("has an invalid port".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each source of a token (config, `token_path`, `VAULT_TOKEN`) yields a `SecretValue`: its
    /// `Debug` never shows the token, and errors never do.
    #[test]
    fn the_token_is_held_as_a_secret_value_from_every_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  hvs.canary-file-8a1\n").unwrap();
        let configured = SecretValue::from("hvs.canary-cfg-8a2");
        let env = |k: &str| (k == "VAULT_TOKEN").then(|| "hvs.canary-env-8a3".to_string());
        let none = |_: &str| None;
        let cases: [(SecretValue, &str); 3] = [
            (resolve_token(Some(&configured), Some(&path), &env).unwrap(), "hvs.canary-cfg-8a2"),
            (resolve_token(None, Some(&path), &env).unwrap(), "hvs.canary-file-8a1"),
            (resolve_token(Some(&SecretValue::from("")), None, &env).unwrap(), "hvs.canary-env-8a3"),
        ];
        for (token, want) in cases {
            assert_eq!(token.expose_plaintext(), want);
            let shown = format!("{token:?} {token:#?}");
            assert!(!shown.contains("canary"), "{shown}");
        }
        let err = resolve_token(None, None, &none).unwrap_err();
        assert!(err.contains("no Vault token"), "{err}");
        let err = resolve_token(None, Some(&dir.path().join("missing")), &env).unwrap_err();
        assert!(err.contains("cannot read token_path") && !err.contains("canary"), "{err}");
    }

    /// Every Vault vector in `backend_names.json`: the request line we would send (or that Airflow
    /// sends none) for each config, id and kind, from the config Airflow's kwargs map to.
    #[test]
    fn request_paths_match_backend_names_vectors() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/backend_names.json");
        let doc: Json = serde_json::from_str(&std::fs::read_to_string(file).expect("backend_names.json")).unwrap();
        let mut checked = 0;
        for entry in doc["names"].as_array().unwrap().iter().filter(|n| n["backend"] == "VaultBackend") {
            let config = VaultConfig::from_airflow_kwargs(entry["kwargs"].as_object().unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", entry["config"]));
            for (id, kinds) in entry["ids"].as_object().unwrap() {
                for (kind, kind_key) in [(Kind::Variable, "variable"), (Kind::Connection, "connection")] {
                    for (label, result) in kinds[kind_key].as_object().unwrap() {
                        let want = &result["requested"];
                        let paths = match kind {
                            Kind::Variable => &config.variables_path,
                            Kind::Connection => &config.connections_path,
                        };
                        let got = paths
                            .first()
                            .and_then(|p| secret_path(config.mount_point.as_deref(), p, id))
                            .map(|sp| sp.request_line(config.kv_engine_version));
                        match want {
                            Json::String(s) if s == "no request" => {
                                assert_eq!(got, None, "{} {label} {kind} {id}", entry["config"])
                            }
                            Json::Array(lines) => assert_eq!(
                                got.as_deref(),
                                lines[0].as_str(),
                                "{} {label} {kind} {id}",
                                entry["config"]
                            ),
                            other => panic!("unexpected requested {other}"),
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 7 * 8 * 2 * 2, "only {checked} vectors checked");
    }

    #[test]
    fn status_classification() {
        assert!(matches!(by_status(404, &[]), Failure::NotFound));
        assert!(matches!(by_status(403, &["permission denied".into()]), Failure::Denied));
        assert!(matches!(
            by_status(400, &["check-and-set parameter did not match the current version".into()]),
            Failure::CasMismatch
        ));
        assert!(matches!(by_status(400, &["other".into()]), Failure::Backend(_)));
        assert!(matches!(by_status(429, &[]), Failure::Throttled));
        assert!(matches!(by_status(503, &["Vault is sealed".into()]), Failure::Sealed));
        assert!(matches!(by_status(503, &[]), Failure::Unavailable(_)));
        assert!(matches!(by_status(502, &[]), Failure::Unavailable(_)));
        assert!(by_status(500, &[]).retryable() && !by_status(403, &[]).retryable());
    }

    #[test]
    fn transport_causes() {
        let refused = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(transport(&refused), Failure::Unreachable(_)));
        let reset = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(transport(&reset), Failure::Unavailable(_)));
    }

    #[test]
    fn addresses() {
        assert!(check_address("http://127.0.0.1:8200").is_ok());
        assert!(check_address("https://vault.example.com").is_ok());
        assert!(check_address("https://[::1]:8200").is_ok());
        assert!(check_address("vault:8200").is_err());
        assert!(check_address("http://").is_err());
        assert!(check_address("http://h:99999").is_err());
        assert!(check_address("http://u:p@h").is_err());
    }

    #[test]
    fn backoff_is_bounded() {
        assert!(backoff(1) < Duration::from_millis(400));
        assert!(backoff(30) <= Duration::from_millis(5100));
    }
}
