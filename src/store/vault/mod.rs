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
//!   dependencies.md pitfall 8). 429/5xx/resets are classified retryable and each request is sent
//!   once: the retry layer (`store::layer::retry`) retries the operation. Vault error bodies are
//!   never echoed: only the status survives.
//! - **Test emulator**: a real `bao server -dev` (OpenBao), started by `tests/vault.rs`.
//!
//! Files: this one (the store and its `Store` impl), `config` (the table, Airflow's kwargs),
//! `auth` (login, renewal), `client` (one call and its failure classes, raw HTTP), `kv` (KV reads
//! and the write paths), `path` (Airflow's path rules), `value` (the secret's data), `seen` (what a
//! scan already answered).

mod auth;
mod client;
mod config;
mod kv;
mod path;
mod seen;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde_json::Value as Json;
use vaultrs::client::VaultClientSettings;

use auth::Session;
use client::{Failure, api_error, build_client, check_address, classify, client_settings, raw_get};

pub use config::{
    DEFAULT_KUBERNETES_JWT_PATH, KvVersion, MANAGED_BY, VaultAuth, VaultConfig, VaultConnectionFormat,
};
pub use path::{SecretPath, python_quote, secret_path};
pub use value::{decode_connection, decode_variable, encode_connection, encode_variable};

use super::{Capabilities, ConnectionFormat, Placement, Precondition, Store, StoreError};
use crate::airflow::connection::Reader;
use crate::model::{Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Value, Variable};
use super::limit::Limiter;

/// The largest value written (its encoded form: a variable's bytes, a connection's JSON or URI).
/// Vault's integrated storage (Raft) refuses entries over `max_entry_size`, 1 MiB by default, and
/// the HTTP listener requests over 32 MiB: larger values are refused in the plan, before any write.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Without `read_concurrency`: reads in flight start at 16 and follow latency up to 64
/// ([`crate::store::limit`]), so a Vault a round trip away is read nearly as fast as one on
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
