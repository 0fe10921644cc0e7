//! Open a store from its config table: `kind = "…"` natively, or Airflow's own
//! `airflow_backend = "<class path>"` + `backend_kwargs`, mapped by each backend.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{DynStore, StoreError};
use crate::config::StoreSpec;

/// Airflow secrets-backend class paths (current and legacy `airflow.contrib` shims) → our kind.
pub fn kind_for_airflow_backend(class_path: &str) -> Option<&'static str> {
    Some(match class_path.trim() {
        "airflow.providers.hashicorp.secrets.vault.VaultBackend"
        | "airflow.contrib.secrets.hashicorp_vault.VaultBackend" => "vault",
        "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
        | "airflow.contrib.secrets.aws_secrets_manager.SecretsManagerBackend" => "aws_secrets_manager",
        "airflow.providers.amazon.aws.secrets.systems_manager.SystemsManagerParameterStoreBackend"
        | "airflow.contrib.secrets.aws_systems_manager.SystemsManagerParameterStoreBackend" => "aws_ssm",
        "airflow.providers.google.cloud.secrets.secret_manager.CloudSecretManagerBackend"
        | "airflow.contrib.secrets.gcp_secrets_manager.CloudSecretsManagerBackend"
        | "airflow.contrib.secrets.gcp_secrets_manager.CloudSecretManagerBackend" => "gcp_secret_manager",
        "airflow.providers.microsoft.azure.secrets.key_vault.AzureKeyVaultBackend"
        | "airflow.contrib.secrets.azure_key_vault.AzureKeyVaultBackend" => "azure_key_vault",
        "airflow.secrets.local_filesystem.LocalFilesystemBackend" => "local_files",
        "airflow.secrets.environment_variables.EnvironmentVariablesBackend" => "env",
        "airflow.secrets.metastore.MetastoreBackend" => "metastore",
        _ => return None,
    })
}

fn config_error(store: &str, message: impl Into<String>) -> StoreError {
    StoreError::Config { store: store.to_string(), message: message.into() }
}

/// `backend_kwargs` as a JSON object: a TOML table, or the JSON string users already have in
/// `AIRFLOW__SECRETS__BACKEND_KWARGS`.
pub fn backend_kwargs(spec: &StoreSpec) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    match spec.0.get("backend_kwargs") {
        None => Ok(serde_json::Map::new()),
        Some(toml::Value::String(s)) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(config_error("backend_kwargs", "backend_kwargs must be a JSON object (as in AIRFLOW__SECRETS__BACKEND_KWARGS)")),
        },
        Some(v @ toml::Value::Table(_)) => match serde_json::to_value(v) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
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

/// A store's config: its native table, or (from an Airflow class path) its mapping of
/// `backend_kwargs`.
fn config_for<T: DeserializeOwned>(
    kind: &str,
    spec: &StoreSpec,
    from_airflow: bool,
    from_kwargs: impl Fn(&serde_json::Map<String, serde_json::Value>) -> Result<T, String>,
) -> Result<T, StoreError> {
    if from_airflow {
        from_kwargs(&backend_kwargs(spec)?).map_err(|m| config_error(kind, crate::secret::scrub_de_message(&m)))
    } else {
        native(kind, spec)
    }
}

/// Kwargs whose names are already our keys (LocalFilesystemBackend): deserialize them as they are.
fn kwargs_as_is<T: DeserializeOwned>(kwargs: &serde_json::Map<String, serde_json::Value>) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::Object(kwargs.clone())).map_err(|e| e.to_string())
}

/// Every store kind this tool knows, whether or not its cargo feature is compiled in.
pub const KNOWN_KINDS: &[&str] = &[
    "metastore",
    "env",
    "local_files",
    "vault",
    "aws_secrets_manager",
    "aws_ssm",
    "gcp_secret_manager",
    "azure_key_vault",
];

/// A store's parsed configuration: what `open` builds from, and what `config check` shows.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreConfig {
    Memory,
    Metastore(super::metastore::MetastoreConfig),
    Env(super::env::EnvConfig),
    LocalFiles(super::local_files::LocalFilesConfig),
    #[cfg(feature = "vault")]
    Vault(super::vault::VaultConfig),
    #[cfg(feature = "aws-sm")]
    AwsSecretsManager(super::aws_secrets_manager::AwsSecretsManagerConfig),
    #[cfg(feature = "aws-ssm")]
    AwsSsm(super::aws_ssm::AwsSsmConfig),
    #[cfg(feature = "gcp")]
    GcpSecretManager(super::gcp_secret_manager::GcpSecretManagerConfig),
    #[cfg(feature = "azure")]
    AzureKeyVault(super::azure_key_vault::AzureKeyVaultConfig),
}

impl StoreConfig {
    /// Whether this store may take over items this tool did not write (`adopt = true`).
    pub fn adopt(&self) -> bool {
        match self {
            #[cfg(feature = "vault")]
            StoreConfig::Vault(c) => c.adopt,
            #[cfg(feature = "aws-sm")]
            StoreConfig::AwsSecretsManager(c) => c.adopt,
            #[cfg(feature = "aws-ssm")]
            StoreConfig::AwsSsm(c) => c.adopt,
            #[cfg(feature = "gcp")]
            StoreConfig::GcpSecretManager(c) => c.adopt,
            #[cfg(feature = "azure")]
            StoreConfig::AzureKeyVault(c) => c.adopt,
            _ => false,
        }
    }

    /// Opened as a run's target: a metastore then refuses to open if it would write plaintext.
    pub fn mark_target(&mut self) {
        if let StoreConfig::Metastore(c) = self {
            c.as_target = true;
        }
    }

    /// The plan-header note of a metastore side: where its Fernet key comes from.
    pub fn key_note(&self, side: &str) -> Option<String> {
        match self {
            StoreConfig::Metastore(c) => Some(format!(
                "Fernet key of the {side}: {}",
                super::metastore::key_source(c, &|k| std::env::var(k).ok())
            )),
            _ => None,
        }
    }

    /// `--adopt` on the command line reaches the store too, so its own ownership guard agrees with
    /// the plan.
    pub fn set_adopt(&mut self, adopt: bool) {
        match self {
            // Adopting existing metastore rows means replacing them.
            StoreConfig::Metastore(c) if adopt && c.on_conflict == super::metastore::OnConflict::Fail => {
                c.on_conflict = super::metastore::OnConflict::Overwrite
            }
            #[cfg(feature = "vault")]
            StoreConfig::Vault(c) => c.adopt = adopt,
            #[cfg(feature = "aws-sm")]
            StoreConfig::AwsSecretsManager(c) => c.adopt = adopt,
            #[cfg(feature = "aws-ssm")]
            StoreConfig::AwsSsm(c) => c.adopt = adopt,
            #[cfg(feature = "gcp")]
            StoreConfig::GcpSecretManager(c) => c.adopt = adopt,
            #[cfg(feature = "azure")]
            StoreConfig::AzureKeyVault(c) => c.adopt = adopt,
            _ => {}
        }
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
    own.0.retain(|k, _| !crate::airflow::fidelity::FIDELITY_KEYS.contains(&k.as_ref()));
    let spec = &own;
    let (kind, from_airflow) = resolve_kind(spec)?;
    let k = kind.as_str();
    Ok(match k {
        "memory" => StoreConfig::Memory,
        // MetastoreBackend takes no kwargs: everything comes from Airflow's own env/config.
        "metastore" => StoreConfig::Metastore(config_for(k, spec, from_airflow, kwargs_as_is)?),
        // EnvironmentVariablesBackend takes no kwargs: the process environment.
        "env" => StoreConfig::Env(config_for(k, spec, from_airflow, kwargs_as_is)?),
        // LocalFilesystemBackend's kwargs are our keys (variables_file_path, connections_file_path).
        "local_files" => StoreConfig::LocalFiles(config_for(k, spec, from_airflow, kwargs_as_is)?),
        #[cfg(feature = "vault")]
        "vault" => StoreConfig::Vault(config_for(k, spec, from_airflow, super::vault::VaultConfig::from_airflow_kwargs)?),
        #[cfg(feature = "aws-sm")]
        "aws_secrets_manager" => StoreConfig::AwsSecretsManager(config_for(k, spec, from_airflow, |m| {
            super::aws_secrets_manager::AwsSecretsManagerConfig::from_airflow_kwargs(m)
        })?),
        #[cfg(feature = "aws-ssm")]
        "aws_ssm" => StoreConfig::AwsSsm(config_for(k, spec, from_airflow, super::aws_ssm::AwsSsmConfig::from_airflow_kwargs)?),
        #[cfg(feature = "gcp")]
        "gcp_secret_manager" => StoreConfig::GcpSecretManager(config_for(k, spec, from_airflow, |m| {
            super::gcp_secret_manager::GcpSecretManagerConfig::from_airflow_kwargs(m)
        })?),
        #[cfg(feature = "azure")]
        "azure_key_vault" => StoreConfig::AzureKeyVault(config_for(k, spec, from_airflow, |m| {
            super::azure_key_vault::AzureKeyVaultConfig::from_airflow_kwargs(m)
        })?),
        k if KNOWN_KINDS.contains(&k) => {
            return Err(config_error(k, format!("the {k} store is not built into this binary (cargo feature off)")));
        }
        other => {
            return Err(config_error(
                other,
                format!("unknown store kind {other:?}; known: {}", KNOWN_KINDS.join(", ")),
            ));
        }
    })
}

/// Open the store a config table describes.
pub async fn open(spec: &StoreSpec) -> Result<DynStore, StoreError> {
    open_config(parse(spec)?).await
}

pub async fn open_config(cfg: StoreConfig) -> Result<DynStore, StoreError> {
    Ok(match cfg {
        StoreConfig::Memory => Arc::new(super::memory::MemoryStore::new("config")),
        StoreConfig::Metastore(c) => Arc::new(super::metastore::MetastoreStore::open(&c).await?),
        StoreConfig::Env(c) => Arc::new(super::env::EnvStore::new(&c)?),
        StoreConfig::LocalFiles(c) => Arc::new(super::local_files::LocalFilesStore::new(&c)?),
        #[cfg(feature = "vault")]
        StoreConfig::Vault(c) => Arc::new(super::vault::VaultStore::open(&c).await?),
        #[cfg(feature = "aws-sm")]
        StoreConfig::AwsSecretsManager(c) => Arc::new(super::aws_secrets_manager::AwsSecretsManagerStore::new(c).await?),
        #[cfg(feature = "aws-ssm")]
        StoreConfig::AwsSsm(c) => Arc::new(super::aws_ssm::AwsSsmStore::new(c).await?),
        #[cfg(feature = "gcp")]
        StoreConfig::GcpSecretManager(c) => Arc::new(super::gcp_secret_manager::GcpSecretManagerStore::connect(c).await?),
        #[cfg(feature = "azure")]
        StoreConfig::AzureKeyVault(c) => Arc::new(super::azure_key_vault::AzureKeyVaultStore::connect(c)?),
    })
}

/// [`open_config`], with connections parsed the way `reader` (Airflow 2 ORM, 3 ORM, task-sdk)
/// parses them: `verify` reads a target once per reader (spec §4.4). Stores that keep native
/// fields (the metastore, memory) read the same under every reader.
pub async fn open_config_with_reader(
    cfg: StoreConfig,
    reader: crate::airflow::connection::Reader,
) -> Result<DynStore, StoreError> {
    Ok(match cfg {
        StoreConfig::Env(c) => Arc::new(super::env::EnvStore::new(&c)?.with_reader(reader)),
        #[cfg(feature = "vault")]
        StoreConfig::Vault(c) => Arc::new(super::vault::VaultStore::open(&c).await?.with_reader(reader)),
        StoreConfig::LocalFiles(c) => Arc::new(super::local_files::LocalFilesStore::new(&c)?.with_reader(reader)),
        #[cfg(feature = "aws-sm")]
        StoreConfig::AwsSecretsManager(c) => {
            Arc::new(super::aws_secrets_manager::AwsSecretsManagerStore::new(c).await?.with_reader(reader))
        }
        #[cfg(feature = "aws-ssm")]
        StoreConfig::AwsSsm(c) => Arc::new(super::aws_ssm::AwsSsmStore::new(c).await?.with_reader(reader)),
        #[cfg(feature = "gcp")]
        StoreConfig::GcpSecretManager(c) => {
            Arc::new(super::gcp_secret_manager::GcpSecretManagerStore::connect(c).await?.with_reader(reader))
        }
        #[cfg(feature = "azure")]
        StoreConfig::AzureKeyVault(c) => Arc::new(super::azure_key_vault::AzureKeyVaultStore::connect(c)?.with_reader(reader)),
        other => open_config(other).await?,
    })
}
