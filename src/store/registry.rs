//! Open a store from its config table: `kind = "…"` natively, or Airflow's own
//! `airflow_backend = "<class path>"` + `backend_kwargs`, mapped by each backend.
//!
//! Every backend is one row of [`BACKENDS`] (its kind, which is also its cargo feature, and
//! Airflow's class paths for it) plus one [`BackendConfig`] impl below the table (how its config
//! maps Airflow's kwargs, whether it adopts, how it opens). Nothing else in this file names a
//! backend.
//!
//! `memory` and `dir` are test-only by design ([`TEST_ONLY_KINDS`]): they have no Airflow
//! equivalent, `memory` forgets everything at exit and `dir` keeps plaintext on disk. Tests build
//! them directly; a config naming them is refused.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use super::{DynStore, StoreError};
use crate::airflow::connection::Reader;
use crate::config::StoreSpec;

/// One backend: what a config names it by, and how to build it (when compiled in).
pub struct Backend {
    /// `kind = "…"` in a store table; also the cargo feature that builds it (unless always built).
    pub kind: &'static str,
    /// Whether it is behind the cargo feature of the same name (`false`: always built).
    pub feature_gated: bool,
    /// Airflow's secrets-backend class paths for it (current and legacy `airflow.contrib` shims).
    pub airflow_classes: &'static [&'static str],
    /// Parses a table into its config; `None` when its cargo feature is off in this build.
    parse: Option<ParseFn>,
}

type ParseFn = fn(&str, &StoreSpec, bool) -> Result<StoreConfig, StoreError>;

/// A row of [`BACKENDS`]: `backend!(kind, [classes], Config)` for an always-built backend,
/// `backend!(feature kind, [classes], Config)` for one behind the cargo feature named `kind`.
macro_rules! backend {
    ($kind:literal, [$($class:literal),* $(,)?], $config:ty) => {
        Backend { kind: $kind, feature_gated: false, airflow_classes: &[$($class),*], parse: Some(parse_as::<$config>) }
    };
    (feature $kind:literal, [$($class:literal),* $(,)?], $config:ty) => {
        Backend {
            kind: $kind,
            feature_gated: true,
            airflow_classes: &[$($class),*],
            parse: {
                #[cfg(feature = $kind)]
                const PARSE: Option<ParseFn> = Some(parse_as::<$config>);
                #[cfg(not(feature = $kind))]
                const PARSE: Option<ParseFn> = None;
                PARSE
            },
        }
    };
}

/// Every backend this tool knows, whether or not its cargo feature is compiled in.
pub const BACKENDS: &[Backend] = &[
    backend!("metastore", ["airflow.secrets.metastore.MetastoreBackend"], super::metastore::MetastoreConfig),
    backend!("env", ["airflow.secrets.environment_variables.EnvironmentVariablesBackend"], super::env::EnvConfig),
    backend!("local_files", ["airflow.secrets.local_filesystem.LocalFilesystemBackend"], super::local_files::LocalFilesConfig),
    backend!(feature "vault", [
        "airflow.providers.hashicorp.secrets.vault.VaultBackend",
        "airflow.contrib.secrets.hashicorp_vault.VaultBackend",
    ], super::vault::VaultConfig),
    backend!(feature "aws_secrets_manager", [
        "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend",
        "airflow.contrib.secrets.aws_secrets_manager.SecretsManagerBackend",
    ], super::aws::secrets_manager::AwsSecretsManagerConfig),
    backend!(feature "aws_ssm", [
        "airflow.providers.amazon.aws.secrets.systems_manager.SystemsManagerParameterStoreBackend",
        "airflow.contrib.secrets.aws_systems_manager.SystemsManagerParameterStoreBackend",
    ], super::aws::ssm::AwsSsmConfig),
    backend!(feature "gcp_secret_manager", [
        "airflow.providers.google.cloud.secrets.secret_manager.CloudSecretManagerBackend",
        "airflow.contrib.secrets.gcp_secrets_manager.CloudSecretsManagerBackend",
        "airflow.contrib.secrets.gcp_secrets_manager.CloudSecretManagerBackend",
    ], super::gcp_secret_manager::GcpSecretManagerConfig),
    backend!(feature "azure_key_vault", [
        "airflow.providers.microsoft.azure.secrets.key_vault.AzureKeyVaultBackend",
        "airflow.contrib.secrets.azure_key_vault.AzureKeyVaultBackend",
    ], super::azure_key_vault::AzureKeyVaultConfig),
];

/// Stores that exist for tests only and that no config can name (see the module docs).
pub const TEST_ONLY_KINDS: &[&str] = &["memory", "dir"];

/// What a backend's config knows beyond its fields: how Airflow's kwargs map to it, ownership,
/// and how it opens. Implemented once per backend, below.
#[async_trait]
pub trait BackendConfig: DeserializeOwned + fmt::Debug + Send + Sync + Sized + 'static {
    /// Airflow's `backend_kwargs` as this config. Default: the kwargs are already our keys.
    fn from_kwargs(kwargs: &Map<String, Json>) -> Result<Self, String> {
        serde_json::from_value(Json::Object(kwargs.clone())).map_err(|e| e.to_string())
    }
    /// Whether this store may take over items this tool did not write (`adopt = true`).
    fn adopt(&self) -> bool {
        false
    }
    /// `--adopt` on the command line reaches the store too, so its own ownership guard agrees
    /// with the plan.
    fn set_adopt(&mut self, _adopt: bool) {}
    /// Opened as a run's target.
    fn mark_target(&mut self) {}
    /// A line for the plan header about this side (the metastore: where its Fernet key comes from).
    fn key_note(&self, _side: &str) -> Option<String> {
        None
    }
    /// Open the store; with a reader, connections are parsed the way that Airflow reader parses
    /// them (stores keeping native fields read the same under every reader and may ignore it).
    async fn open(self, reader: Option<Reader>) -> Result<DynStore, StoreError>;
}

/// `store.with_reader(r)` when a reader is asked for.
macro_rules! reading {
    ($store:expr, $reader:expr) => {{
        let store = $store;
        match $reader {
            Some(r) => store.with_reader(r),
            None => store,
        }
    }};
}

// ---- one impl per backend ------------------------------------------------------------------

/// MetastoreBackend takes no kwargs: everything comes from Airflow's own env/config.
#[async_trait]
impl BackendConfig for super::metastore::MetastoreConfig {
    fn set_adopt(&mut self, adopt: bool) {
        // Adopting existing metastore rows means replacing them.
        if adopt && self.on_conflict == super::metastore::OnConflict::Fail {
            self.on_conflict = super::metastore::OnConflict::Overwrite;
        }
    }
    /// As a target, a metastore refuses to open if it would write plaintext.
    fn mark_target(&mut self) {
        self.as_target = true;
    }
    fn key_note(&self, side: &str) -> Option<String> {
        Some(format!("Fernet key of the {side}: {}", super::metastore::key_source(self, &|k| std::env::var(k).ok())))
    }
    async fn open(self, _reader: Option<Reader>) -> Result<DynStore, StoreError> {
        Ok(Arc::new(super::metastore::MetastoreStore::open(&self).await?))
    }
}

/// EnvironmentVariablesBackend takes no kwargs: the process environment.
#[async_trait]
impl BackendConfig for super::env::EnvConfig {
    async fn open(self, reader: Option<Reader>) -> Result<DynStore, StoreError> {
        Ok(Arc::new(reading!(super::env::EnvStore::new(&self)?, reader)))
    }
}

/// LocalFilesystemBackend's kwargs are our keys (variables_file_path, connections_file_path).
#[async_trait]
impl BackendConfig for super::local_files::LocalFilesConfig {
    async fn open(self, reader: Option<Reader>) -> Result<DynStore, StoreError> {
        Ok(Arc::new(reading!(super::local_files::LocalFilesStore::new(&self)?, reader)))
    }
}

#[cfg(feature = "vault")]
#[async_trait]
impl BackendConfig for super::vault::VaultConfig {
    fn from_kwargs(kwargs: &Map<String, Json>) -> Result<Self, String> {
        Self::from_airflow_kwargs(kwargs)
    }
    fn adopt(&self) -> bool {
        self.adopt
    }
    fn set_adopt(&mut self, adopt: bool) {
        self.adopt = adopt;
    }
    async fn open(self, reader: Option<Reader>) -> Result<DynStore, StoreError> {
        Ok(Arc::new(reading!(super::vault::VaultStore::open(&self).await?, reader)))
    }
}

#[cfg(feature = "aws_secrets_manager")]
#[async_trait]
impl BackendConfig for super::aws::secrets_manager::AwsSecretsManagerConfig {
    fn from_kwargs(kwargs: &Map<String, Json>) -> Result<Self, String> {
        Self::from_airflow_kwargs(kwargs)
    }
    fn adopt(&self) -> bool {
        self.adopt
    }
    fn set_adopt(&mut self, adopt: bool) {
        self.adopt = adopt;
    }
    async fn open(self, reader: Option<Reader>) -> Result<DynStore, StoreError> {
        Ok(Arc::new(reading!(super::aws::secrets_manager::AwsSecretsManagerStore::new(self).await?, reader)))
    }
}

#[cfg(feature = "aws_ssm")]
#[async_trait]
impl BackendConfig for super::aws::ssm::AwsSsmConfig {
    fn from_kwargs(kwargs: &Map<String, Json>) -> Result<Self, String> {
        Self::from_airflow_kwargs(kwargs)
    }
    fn adopt(&self) -> bool {
        self.adopt
    }
    fn set_adopt(&mut self, adopt: bool) {
        self.adopt = adopt;
    }
    async fn open(self, reader: Option<Reader>) -> Result<DynStore, StoreError> {
        Ok(Arc::new(reading!(super::aws::ssm::AwsSsmStore::new(self).await?, reader)))
    }
}

#[cfg(feature = "gcp_secret_manager")]
#[async_trait]
impl BackendConfig for super::gcp_secret_manager::GcpSecretManagerConfig {
    fn from_kwargs(kwargs: &Map<String, Json>) -> Result<Self, String> {
        Self::from_airflow_kwargs(kwargs)
    }
    fn adopt(&self) -> bool {
        self.adopt
    }
    fn set_adopt(&mut self, adopt: bool) {
        self.adopt = adopt;
    }
    async fn open(self, reader: Option<Reader>) -> Result<DynStore, StoreError> {
        Ok(Arc::new(reading!(super::gcp_secret_manager::GcpSecretManagerStore::connect(self).await?, reader)))
    }
}

#[cfg(feature = "azure_key_vault")]
#[async_trait]
impl BackendConfig for super::azure_key_vault::AzureKeyVaultConfig {
    fn from_kwargs(kwargs: &Map<String, Json>) -> Result<Self, String> {
        Self::from_airflow_kwargs(kwargs)
    }
    fn adopt(&self) -> bool {
        self.adopt
    }
    fn set_adopt(&mut self, adopt: bool) {
        self.adopt = adopt;
    }
    async fn open(self, reader: Option<Reader>) -> Result<DynStore, StoreError> {
        Ok(Arc::new(reading!(super::azure_key_vault::AzureKeyVaultStore::connect(self)?, reader)))
    }
}

// ---- the machinery (names no backend) -------------------------------------------------------

/// The backend row for a kind.
pub fn backend(kind: &str) -> Option<&'static Backend> {
    BACKENDS.iter().find(|b| b.kind == kind)
}

/// Every store kind a config can name, whether or not its cargo feature is compiled in.
pub fn known_kinds() -> impl Iterator<Item = &'static str> {
    BACKENDS.iter().map(|b| b.kind)
}

/// Airflow secrets-backend class paths (current and legacy `airflow.contrib` shims) → our kind.
pub fn kind_for_airflow_backend(class_path: &str) -> Option<&'static str> {
    let class_path = class_path.trim();
    BACKENDS.iter().find(|b| b.airflow_classes.contains(&class_path)).map(|b| b.kind)
}

fn config_error(store: &str, message: impl Into<String>) -> StoreError {
    StoreError::Config { store: store.to_string(), message: message.into() }
}

/// `backend_kwargs` as a JSON object: a TOML table, or the JSON string users already have in
/// `AIRFLOW__SECRETS__BACKEND_KWARGS`.
pub fn backend_kwargs(spec: &StoreSpec) -> Result<Map<String, Json>, StoreError> {
    match spec.0.get("backend_kwargs") {
        None => Ok(Map::new()),
        Some(toml::Value::String(s)) => match serde_json::from_str::<Json>(s) {
            Ok(Json::Object(m)) => Ok(m),
            _ => Err(config_error("backend_kwargs", "backend_kwargs must be a JSON object (as in AIRFLOW__SECRETS__BACKEND_KWARGS)")),
        },
        Some(v @ toml::Value::Table(_)) => match serde_json::to_value(v) {
            Ok(Json::Object(m)) => Ok(m),
            _ => Err(config_error("backend_kwargs", "backend_kwargs is not a table")),
        },
        Some(_) => Err(config_error("backend_kwargs", "backend_kwargs must be a table or a JSON string")),
    }
}

/// Deserialize a store's native table (without `kind`), naming the store in errors.
pub fn native<T: DeserializeOwned>(kind: &str, spec: &StoreSpec) -> Result<T, StoreError> {
    let mut t = spec.0.clone();
    t.remove("kind");
    toml::Value::Table(t).try_into().map_err(|e: toml::de::Error| config_error(kind, crate::secret::scrub_de_message(e.message())))
}

/// The kind a spec names, and whether it came from an Airflow class path.
pub fn resolve_kind(spec: &StoreSpec) -> Result<(String, bool), StoreError> {
    match (spec.0.get("kind"), spec.0.get("airflow_backend")) {
        (Some(_), Some(_)) => Err(config_error("store", "give either `kind` or `airflow_backend`, not both")),
        (Some(k), None) => k.as_str().map(|k| (k.to_string(), false)).ok_or_else(|| config_error("store", "`kind` must be a string")),
        (None, Some(b)) => {
            let class = b.as_str().ok_or_else(|| config_error("store", "`airflow_backend` must be a string"))?;
            let kind = kind_for_airflow_backend(class)
                .ok_or_else(|| config_error("store", format!("unknown Airflow secrets backend class {class:?}")))?;
            for key in spec.0.keys() {
                if key != "airflow_backend" && key != "backend_kwargs" {
                    return Err(config_error(kind, format!("unexpected key `{key}` next to airflow_backend (put it in backend_kwargs)")));
                }
            }
            Ok((kind.to_string(), true))
        }
        (None, None) => Err(config_error("store", "a store needs `kind = \"…\"` or `airflow_backend = \"…\"`")),
    }
}

/// A table as backend `T`'s config: its native table, or (from an Airflow class path) its
/// mapping of `backend_kwargs`.
fn parse_as<T: BackendConfig>(kind: &str, spec: &StoreSpec, from_airflow: bool) -> Result<StoreConfig, StoreError> {
    let config: T = if from_airflow {
        T::from_kwargs(&backend_kwargs(spec)?).map_err(|m| config_error(kind, crate::secret::scrub_de_message(&m)))?
    } else {
        native(kind, spec)?
    };
    Ok(StoreConfig { config: Box::new(config) })
}

/// A store's parsed configuration: what `open` builds from, and what `config check` shows.
pub struct StoreConfig {
    config: Box<dyn AnyBackend>,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

impl StoreConfig {
    /// Whether this store may take over items this tool did not write (`adopt = true`).
    pub fn adopt(&self) -> bool {
        self.config.adopt()
    }

    /// Opened as a run's target: a metastore then refuses to open if it would write plaintext.
    pub fn mark_target(&mut self) {
        self.config.mark_target()
    }

    /// The plan-header note of this side, if its backend has one (a metastore: where its Fernet
    /// key comes from).
    pub fn key_note(&self, side: &str) -> Option<String> {
        self.config.key_note(side)
    }

    /// `--adopt` on the command line reaches the store too, so its own ownership guard agrees with
    /// the plan.
    pub fn set_adopt(&mut self, adopt: bool) {
        self.config.set_adopt(adopt)
    }

    /// The backend's own config type, if it is `T` (e.g. a metastore for `rotate-fernet-key`).
    pub fn downcast<T: BackendConfig>(self) -> Option<T> {
        self.config.into_any().downcast::<T>().ok().map(|b| *b)
    }

    /// Open the store this config describes.
    pub async fn open(self, reader: Option<Reader>) -> Result<DynStore, StoreError> {
        self.config.open(reader).await
    }
}

/// [`BackendConfig`] behind a `Box` (object-safe).
#[async_trait]
trait AnyBackend: fmt::Debug + Send + Sync {
    fn adopt(&self) -> bool;
    fn set_adopt(&mut self, adopt: bool);
    fn mark_target(&mut self);
    fn key_note(&self, side: &str) -> Option<String>;
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
    async fn open(self: Box<Self>, reader: Option<Reader>) -> Result<DynStore, StoreError>;
}

#[async_trait]
impl<T: BackendConfig> AnyBackend for T {
    fn adopt(&self) -> bool {
        BackendConfig::adopt(self)
    }
    fn set_adopt(&mut self, adopt: bool) {
        BackendConfig::set_adopt(self, adopt)
    }
    fn mark_target(&mut self) {
        BackendConfig::mark_target(self)
    }
    fn key_note(&self, side: &str) -> Option<String> {
        BackendConfig::key_note(self, side)
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
    async fn open(self: Box<Self>, reader: Option<Reader>) -> Result<DynStore, StoreError> {
        BackendConfig::open(*self, reader).await
    }
}

/// The reader model a store table asks for (`airflow_readers`, `legacy_extra`, `legacy_extra_key`:
/// keys of the planner, valid in any store table, not passed to the store).
pub fn fidelity(spec: &StoreSpec) -> Result<crate::airflow::fidelity::Fidelity, StoreError> {
    crate::airflow::fidelity::Fidelity::from_table(&spec.0).map_err(|m| config_error(&spec.kind_label(), m))
}

/// Parse a store table without connecting to anything.
pub fn parse(spec: &StoreSpec) -> Result<StoreConfig, StoreError> {
    let mut own = spec.clone();
    own.0.retain(|k, _| !crate::airflow::fidelity::FIDELITY_KEYS.contains(&k));
    let spec = &own;
    let (kind, from_airflow) = resolve_kind(spec)?;
    let k = kind.as_str();
    match backend(k) {
        Some(Backend { parse: Some(parse), .. }) => parse(k, spec, from_airflow),
        Some(Backend { parse: None, .. }) => {
            Err(config_error(k, format!("the {k} store is not built into this binary (cargo feature `{k}` off)")))
        }
        None if TEST_ONLY_KINDS.contains(&k) => Err(config_error(
            k,
            format!("the {k} store is for tests only and cannot be configured; known: {}", known_kinds().collect::<Vec<_>>().join(", ")),
        )),
        None => Err(config_error(
            k,
            format!("unknown store kind {k:?}; known: {}", known_kinds().collect::<Vec<_>>().join(", ")),
        )),
    }
}

/// Open the store a config table describes.
pub async fn open(spec: &StoreSpec) -> Result<DynStore, StoreError> {
    parse(spec)?.open(None).await
}

/// Open a parsed config.
pub async fn open_config(cfg: StoreConfig) -> Result<DynStore, StoreError> {
    cfg.open(None).await
}

/// [`open_config`], with connections parsed the way `reader` (Airflow 2 ORM, 3 ORM, task-sdk)
/// parses them: `verify` reads a target once per reader (spec §4.4). Stores that keep native
/// fields (the metastore) read the same under every reader.
pub async fn open_config_with_reader(cfg: StoreConfig, reader: Reader) -> Result<DynStore, StoreError> {
    cfg.open(Some(reader)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> StoreSpec {
        StoreSpec(toml::from_str(text).unwrap())
    }

    #[test]
    fn kinds_and_airflow_classes_are_unique() {
        let kinds: Vec<&str> = known_kinds().collect();
        let mut seen = kinds.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), kinds.len(), "a kind is listed twice: {kinds:?}");
        let classes: Vec<&str> = BACKENDS.iter().flat_map(|b| b.airflow_classes.iter().copied()).collect();
        for class in &classes {
            assert_eq!(classes.iter().filter(|c| *c == class).count(), 1, "{class} maps to two kinds");
            let kind = kind_for_airflow_backend(&format!(" {class} ")).unwrap();
            assert!(backend(kind).unwrap().airflow_classes.contains(class));
        }
        assert_eq!(kind_for_airflow_backend("airflow.secrets.base_secrets.BaseSecretsBackend"), None);
    }

    #[test]
    #[cfg(all(
        feature = "vault",
        feature = "aws_secrets_manager",
        feature = "aws_ssm",
        feature = "gcp_secret_manager",
        feature = "azure_key_vault"
    ))]
    fn every_backend_is_built_under_all_features() {
        // `cargo test --all-features` turns every feature on: every row must then parse.
        for b in BACKENDS {
            assert!(b.parse.is_some(), "{} is not built (is its cargo feature named `{}`?)", b.kind, b.kind);
        }
    }

    #[test]
    fn feature_gated_kinds_are_cargo_features_and_the_old_names_still_work() {
        let manifest: toml::Table = toml::from_str(include_str!("../../Cargo.toml")).unwrap();
        let features = manifest["features"].as_table().unwrap();
        let default: Vec<&str> = features["default"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        for b in BACKENDS.iter().filter(|b| b.feature_gated) {
            assert!(features.contains_key(b.kind), "no cargo feature named {}", b.kind);
            assert!(default.contains(&b.kind), "{} is not a default feature", b.kind);
        }
        for (old, new) in [("aws-sm", "aws_secrets_manager"), ("aws-ssm", "aws_ssm"), ("gcp", "gcp_secret_manager"), ("azure", "azure_key_vault")] {
            let alias: Vec<&str> = features[old].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
            assert_eq!(alias, [new], "feature {old} is an alias of {new}");
        }
    }

    /// Vacuous under `--all-features`; `cargo test --no-default-features --features aws-sm --lib
    /// registry` exercises it (and the old feature name).
    #[test]
    fn a_backend_left_out_of_the_build_is_refused_by_name() {
        // The old feature names still build their backend.
        #[cfg(feature = "aws_secrets_manager")]
        assert!(backend("aws_secrets_manager").unwrap().parse.is_some());
        for b in BACKENDS.iter().filter(|b| b.parse.is_none()) {
            assert!(b.feature_gated, "{} is always built", b.kind);
            let err = parse(&spec(&format!("kind = {:?}", b.kind))).unwrap_err().to_string();
            assert!(err.contains("not built into this binary") && err.contains(&format!("`{}`", b.kind)), "{err}");
            if let Some(class) = b.airflow_classes.first() {
                let err = parse(&spec(&format!("airflow_backend = {class:?}"))).unwrap_err().to_string();
                assert!(err.contains("not built into this binary"), "{err}");
            }
        }
    }

    #[test]
    fn test_only_stores_are_refused_by_config_by_design() {
        for kind in TEST_ONLY_KINDS {
            assert!(backend(kind).is_none(), "{kind} is test-only, not a row");
            let err = parse(&spec(&format!("kind = {kind:?}\npath = \"/tmp/x\""))).unwrap_err().to_string();
            assert!(err.contains("for tests only"), "{err}");
        }
        let err = parse(&spec("kind = \"nosuch\"")).unwrap_err().to_string();
        assert!(err.contains("unknown store kind") && err.contains("local_files") && err.contains("azure_key_vault"), "{err}");
        assert!(!err.contains("memory"), "a test-only kind is not offered: {err}");
    }

    #[test]
    #[cfg(feature = "vault")]
    fn a_parsed_config_keeps_its_backend_hooks() {
        let mut m = parse(&spec("kind = \"metastore\"\nsql_alchemy_conn = \"sqlite:////tmp/x.db\"")).unwrap();
        assert!(!m.adopt());
        assert!(m.key_note("source").is_some_and(|n| n.starts_with("Fernet key of the source")));
        m.set_adopt(true);
        m.mark_target();
        let m = m.downcast::<crate::store::metastore::MetastoreConfig>().unwrap();
        assert!(m.as_target && m.on_conflict == crate::store::metastore::OnConflict::Overwrite);

        let mut v = parse(&spec("kind = \"vault\"\nurl = \"http://127.0.0.1:1\"\nauth = { type = \"token\", token = \"t\" }")).unwrap();
        assert!(v.key_note("target").is_none() && !v.adopt());
        v.set_adopt(true);
        assert!(v.adopt());
        assert!(v.downcast::<crate::store::metastore::MetastoreConfig>().is_none());
    }
}
