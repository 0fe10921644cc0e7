//! The configuration file (`config.toml`): `[source]`, `[target]`, `[select]`, `[apply]`.
//!
//! A store is named either natively (`kind = "vault"` plus that store's keys) or the way Airflow
//! names a secrets backend: `airflow_backend = "airflow.providers....VaultBackend"` with
//! `backend_kwargs` (a table, or the JSON string of `AIRFLOW__SECRETS__BACKEND_KWARGS`), which each
//! backend maps into its native config. Every option is documented in `config.toml.example`.

pub mod daemon;

use std::path::Path;

use serde::Deserialize;

use crate::model::Kind;

/// A configuration that cannot be read or is not valid (exit 3 at the binary's edge). Names the
/// file, table or key; never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Required unless the file only configures daemon `[[jobs]]` over `[stores.NAME]`.
    #[serde(default)]
    pub source: StoreSpec,
    #[serde(default)]
    pub target: StoreSpec,
    #[serde(default)]
    pub select: SelectConfig,
    #[serde(default)]
    pub apply: ApplyConfig,
    /// More stores by name (`[stores.vault]`, `[stores.fresh_metastore]`), for `restore --from
    /// NAME --to NAME`; `source` and `target` name the two tables above.
    #[serde(default)]
    pub stores: std::collections::BTreeMap<String, StoreSpec>,
    /// The tool's own state: runs, journal, encrypted snapshots (`src/state`).
    #[serde(default)]
    pub state: StateConfig,
    /// `[daemon]`: the daemon's HTTP endpoints, default time zone and shutdown grace.
    #[serde(default)]
    pub daemon: daemon::DaemonConfig,
    /// `[[jobs]]`: what the daemon runs, on which schedule (see docs/daemon.md).
    #[serde(default)]
    pub jobs: Vec<daemon::JobConfig>,
}

/// `[state]`: where runs, the journal and encrypted snapshots live, and the snapshot key.
///
/// SQLite at `path` by default (relative paths are relative to the config file's directory;
/// default `.airflow-secrets-sync/state.db` there), PostgreSQL when `url` is given. The snapshot key
/// comes from `snapshot_key`, `snapshot_key_cmd` or `AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY`, in that
/// order; keep it out of the state database's own storage.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub path: Option<std::path::PathBuf>,
    /// `postgres://…`: a shared state database (a daemon with replicas).
    pub url: Option<String>,
    /// 32 random bytes, base64 (`openssl rand -base64 32`).
    #[serde(default, deserialize_with = "secret_opt")]
    pub snapshot_key: Option<crate::secret::SecretValue>,
    /// A command that prints the snapshot key (a secret manager CLI, `pass`, …): split like a
    /// shell word list and run without a shell, stdin `/dev/null` (as `fernet_key_cmd`).
    pub snapshot_key_cmd: Option<String>,
    /// The directory relative paths resolve against: the config file's own (set by `load`).
    #[serde(skip)]
    pub base_dir: Option<std::path::PathBuf>,
}

fn secret_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<crate::secret::SecretValue>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(crate::secret::SecretValue::from))
}

impl std::fmt::Debug for StateConfig {
    // `url` may carry a password and `snapshot_key` is a key: say only whether they are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateConfig")
            .field("path", &self.path)
            .field("url", &self.url.as_ref().map(|_| "***"))
            .field("snapshot_key", &self.snapshot_key.as_ref().map(|_| "***"))
            .field("snapshot_key_cmd", &self.snapshot_key_cmd.is_some())
            .finish()
    }
}

/// A store's table, resolved by [`crate::store::registry::open`]. Kept raw so each store owns its
/// own keys (and rejects unknown ones).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct StoreSpec(pub toml::Table);

impl std::fmt::Debug for StoreSpec {
    // Store tables can hold credentials: show only which kind it is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSpec").field("kind", &self.kind_label()).finish_non_exhaustive()
    }
}

impl StoreSpec {
    /// An absent table (`[source]` left out of a daemon-only file).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn kind_label(&self) -> String {
        if let Some(k) = self.0.get("kind").and_then(|v| v.as_str()) {
            return k.to_string();
        }
        if let Some(b) = self.0.get("airflow_backend").and_then(|v| v.as_str()) {
            return b.to_string();
        }
        "(none)".into()
    }
}

/// Which items a run touches: a team can move one slice at a time.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// `"variables"` or `"connections"`; both when absent.
    pub only: Option<OnlyKind>,
    /// Glob patterns on ids (`*`, `?`, `[abc]`); when non-empty an id must match one.
    #[serde(default)]
    pub include: Vec<String>,
    /// Glob patterns on ids; a matching id is left alone.
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl SelectConfig {
    /// The include globs (`None` when there are none) and the exclude globs, compiled: the one
    /// place a bad pattern is found (the planner's selection and config validation both use it).
    pub fn globs(&self) -> Result<(Option<globset::GlobSet>, globset::GlobSet), String> {
        let build = |pats: &[String]| -> Result<globset::GlobSet, String> {
            let mut b = globset::GlobSetBuilder::new();
            for p in pats {
                // Ids contain `/` (Vault nesting), so `*` must cross it: no literal_separator.
                b.add(globset::Glob::new(p).map_err(|e| format!("bad glob {p:?}: {e}"))?);
            }
            b.build().map_err(|e| format!("bad globs: {e}"))
        };
        let include = if self.include.is_empty() { None } else { Some(build(&self.include)?) };
        Ok((include, build(&self.exclude)?))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnlyKind {
    Variables,
    Connections,
}

impl OnlyKind {
    pub fn kind(self) -> Kind {
        match self {
            OnlyKind::Variables => Kind::Variable,
            OnlyKind::Connections => Kind::Connection,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    /// Delete target items (that this tool owns) which the source no longer has.
    #[serde(default)]
    pub prune: bool,
    /// Take over existing target items this tool did not create.
    #[serde(default)]
    pub adopt: bool,
    /// Refuse a plan that deletes more than this many items.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: usize,
    /// Writes in flight at once; default: the target's own capability.
    pub concurrency: Option<usize>,
    /// Attempts per item for retryable errors (throttling, 5xx), with exponential backoff.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Read every written item back and compare it (recommended).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// Writes per second; default: the target's published write quota (AWS Secrets Manager 50,
    /// SSM 3, GCP 5 secrets, Azure Key Vault 30; Vault and files unpaced). 0 turns pacing off.
    pub max_writes_per_second: Option<f64>,
}

fn default_max_deletes() -> usize {
    10
}
fn default_max_attempts() -> u32 {
    6
}
fn default_true() -> bool {
    true
}

impl Default for ApplyConfig {
    fn default() -> Self {
        Self {
            prune: false,
            adopt: false,
            max_deletes: default_max_deletes(),
            concurrency: None,
            max_attempts: default_max_attempts(),
            verify: true,
            max_writes_per_second: None,
        }
    }
}

impl Config {
    /// The store table called `name`: `source`, `target`, or a key of `[stores]`.
    pub fn store(&self, name: &str) -> Result<&StoreSpec, ConfigError> {
        match name {
            "source" | "target" if self.store_table(name).is_empty() => {
                Err(ConfigError(format!("the configuration has no [{name}] table")))
            }
            "source" => Ok(&self.source),
            "target" => Ok(&self.target),
            other => self.stores.get(other).ok_or_else(|| {
                let known: Vec<&str> = ["source", "target"].into_iter().chain(self.stores.keys().map(String::as_str)).collect();
                ConfigError(format!("no store named {other:?} in the config (known: {})", known.join(", ")))
            }),
        }
    }

    fn store_table(&self, name: &str) -> &StoreSpec {
        if name == "source" { &self.source } else { &self.target }
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        // toml's messages quote the offending line, which may hold a credential: keep the
        // position and the reason only.
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| format!(" at byte {}", s.start)).unwrap_or_default();
            ConfigError(format!("invalid configuration{at}: {}", crate::secret::scrub_de_message(e.message())))
        })?;
        // [source] and [target] may be left out only by a file that configures daemon jobs.
        if cfg.jobs.is_empty() {
            for name in ["source", "target"] {
                if cfg.store_table(name).is_empty() {
                    return Err(ConfigError(format!("invalid configuration: missing [{name}] table")));
                }
            }
        }
        daemon::validate(&cfg)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        let mut cfg = Self::from_toml(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        cfg.state.base_dir = Some(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
        Ok(cfg)
    }
}
