//! The Airflow metastore as a [`Store`]: the `variable` and `connection` tables of a PostgreSQL,
//! MySQL/MariaDB or SQLite database, read and written the way Airflow's ORM does it.
//!
//! Mirrors `airflow.models.Variable.get_val` and `Connection.get_password` / `get_extra`:
//! a field is decrypted only when its own flag is set and (connections) the value is truthy,
//! per row (spec §1.4, §9 item 1). What Airflow defines (URL forms, tables, column limits, every
//! SQL statement per dialect) lives in [`crate::airflow::metastore`]; this module owns the
//! database connection ([`connect`]), turns rows into an [`Inventory`] ([`rows`]) and writes
//! buffered rows in one transaction ([`write`]). A row that does not decrypt is a per-item error,
//! never a crash, never skipped and never its raw token copied as a value (spec §10.1).
//!
//! Tested against the real Airflow-made SQLite files in `tests/data/metastore/` and the same
//! rows in real PostgreSQL and MariaDB (`tests/metastore.rs`).

use std::fmt;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Capabilities, ConnectionFormat, Precondition, Store, StoreError};
use crate::airflow::fernet::{AirflowFernet, ENV_FERNET_KEY, ENV_FERNET_KEY_CMD, ENV_FERNET_KEY_SECRET, KeySource, resolve_key};
use crate::airflow::metastore::{Dialect, MetastoreSchema, MetastoreUrl, Sql, TeamColumn, parse_sql_alchemy_url, validate_schema_name};
use crate::model::{Entry, Inventory, ItemError, ItemId, Kind, Meta, Ownership, SecretValue, Value};

mod connect;
mod rows;
mod write;
use connect::{Pool, connect};
pub use write::RotateReport;
use write::RowOp;

pub use crate::airflow::metastore::{ENV_SQL_ALCHEMY_CONN, ENV_SQL_ALCHEMY_SCHEMA, MAX_VALUE_BYTES, MAX_VALUE_BYTES_MYSQL};

/// `[metastore]` in our config: Airflow's own option names.
///
/// `Debug` is hand-written: `sql_alchemy_conn` carries the database password and `fernet_key`
/// the key; neither is printed.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetastoreConfig {
    /// A SQLAlchemy URL; falls back to env `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`.
    #[serde(default)]
    pub sql_alchemy_conn: Option<String>,
    /// PG schema (MySQL: database) holding the tables; falls back to env
    /// `AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA`. Empty means none.
    #[serde(default)]
    pub sql_alchemy_schema: Option<String>,
    /// As `[core] fernet_key` in airflow.cfg. A key configured on the store (this or
    /// `fernet_key_cmd`) wins over `AIRFLOW__CORE__FERNET_KEY(_CMD)` in the process environment;
    /// without one the environment is read the way Airflow reads it (§2.3).
    #[serde(default, deserialize_with = "deserialize_secret")]
    pub fernet_key: Option<SecretValue>,
    /// As `[core] fernet_key_cmd`.
    #[serde(default)]
    pub fernet_key_cmd: Option<String>,
    /// As a target: write rows unencrypted (`is_encrypted = false`) when the resolved key is empty
    /// (NullFernet). Off by default: without a key, writing is a configuration error.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Set by the caller (not the file) when the store is opened as a run's target: opening then
    /// fails, before anything is read or written, if it would write plaintext (`allow_plaintext`).
    #[serde(skip)]
    pub as_target: bool,
    /// As a target: what to do when a row already exists, like `airflow connections import`.
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// As a target on Airflow 3.2+: the `team_name` written on new rows (the team must exist).
    #[serde(default)]
    pub team_name: Option<String>,
}

/// What a write does when the variable or connection row already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Refuse (the plan reports the item as existing; `--adopt` switches to `overwrite`).
    #[default]
    Fail,
    /// Leave existing rows as they are; write only missing ones.
    Skip,
    /// Replace existing rows.
    Overwrite,
}

fn deserialize_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretValue>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretValue::from))
}

impl fmt::Debug for MetastoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conn = self.sql_alchemy_conn.as_deref().map(|u| match parse_sql_alchemy_url(u) {
            Ok(url) => url.to_string(),
            Err(_) => "<unparseable>".to_string(),
        });
        f.debug_struct("MetastoreConfig")
            .field("sql_alchemy_conn", &conn)
            .field("sql_alchemy_schema", &self.sql_alchemy_schema)
            .field("fernet_key", &self.fernet_key.as_ref().map(|_| "***"))
            .field("fernet_key_cmd", &self.fernet_key_cmd.as_ref().map(|_| "<set>"))
            .field("allow_plaintext", &self.allow_plaintext)
            .field("on_conflict", &self.on_conflict)
            .field("team_name", &self.team_name)
            .finish()
    }
}


/// The metastore, opened and probed.
pub struct MetastoreStore {
    url: MetastoreUrl,
    db_schema: Option<String>,
    schema: MetastoreSchema,
    pool: Pool,
    fernet: AirflowFernet,
    /// Where the key came from (the plan header names it).
    key_source: KeySource,
    allow_plaintext: bool,
    on_conflict: OnConflict,
    team_name: Option<String>,
    /// Writes and deletes buffered until `flush`, which runs them in one transaction.
    pending: std::sync::Mutex<Vec<RowOp>>,
}


impl fmt::Debug for MetastoreStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetastoreStore")
            .field("url", &self.url)
            .field("db_schema", &self.db_schema)
            .field("schema", &self.schema)
            .field("fernet", &self.fernet)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MetastoreStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metastore:{}", self.url)?;
        if let Some(s) = &self.db_schema {
            write!(f, "?schema={s}")?;
        }
        Ok(())
    }
}


/// Build the store's Fernet (spec §2.2, §2.3). A key configured on the store (`fernet_key`, then
/// `fernet_key_cmd`) wins: the process environment's `AIRFLOW__CORE__FERNET_KEY(_CMD|_SECRET)` is
/// not consulted for it (Airflow's own docker-compose sets `AIRFLOW__CORE__FERNET_KEY=''`, which
/// would otherwise silently turn a restore's encryption off). Without one, Airflow's lookup: env
/// `AIRFLOW__CORE__FERNET_KEY` first (an empty value is a hit: NullFernet), then `…_CMD`.
fn build_fernet(
    cfg: &MetastoreConfig,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    store: &str,
) -> Result<(AirflowFernet, KeySource), StoreError> {
    let fernet_error = |reason: String| StoreError::FernetKey { store: store.to_string(), reason };
    let configured = cfg.fernet_key.is_some() || cfg.fernet_key_cmd.is_some();
    let store_env = |k: &str| {
        let key_var = [ENV_FERNET_KEY, ENV_FERNET_KEY_CMD, ENV_FERNET_KEY_SECRET].contains(&k);
        if configured && key_var { None } else { env(k) }
    };
    let resolved = resolve_key(&store_env, cfg.fernet_key.as_ref(), cfg.fernet_key_cmd.as_deref())
        .map_err(|e| fernet_error(e.to_string()))?;
    tracing::debug!(store, source = %resolved.source, "fernet key resolved");
    // `fernet()` names the source in its error ("[core] fernet_key: Could not create ...").
    let fernet = resolved.fernet().map_err(|e| fernet_error(e.to_string()))?;
    Ok((fernet, resolved.source))
}

/// Where a metastore store configured as `cfg` takes its Fernet key from (no command is run):
/// what [`build_fernet`] resolves, for the plan header.
pub fn key_source(cfg: &MetastoreConfig, env: &dyn Fn(&str) -> Option<String>) -> String {
    let empty = |v: &str| if v.trim().is_empty() { " (empty: no encryption)" } else { "" };
    if let Some(k) = &cfg.fernet_key {
        format!("{} set on this store{}", KeySource::ConfigKey, empty(k.expose_plaintext()))
    } else if cfg.fernet_key_cmd.is_some() {
        format!("{} set on this store", KeySource::ConfigCmd)
    } else if let Some(v) = env(ENV_FERNET_KEY) {
        format!("{} from the environment{}", KeySource::EnvVar, empty(&v))
    } else if env(ENV_FERNET_KEY_CMD).is_some() {
        format!("{} from the environment", KeySource::EnvCmd)
    } else {
        "none configured (no encryption)".to_string()
    }
}

impl MetastoreStore {
    /// Connect, resolve the Fernet key and probe the schema, reading env from the process.
    pub async fn open(cfg: &MetastoreConfig) -> Result<Self, StoreError> {
        Self::open_with_env(cfg, &|k| std::env::var(k).ok()).await
    }

    /// [`open`](Self::open) with the environment supplied (tests, and callers that resolved it).
    pub async fn open_with_env(
        cfg: &MetastoreConfig,
        env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    ) -> Result<Self, StoreError> {
        let conn = cfg.sql_alchemy_conn.clone().or_else(|| env(ENV_SQL_ALCHEMY_CONN)).filter(|c| !c.trim().is_empty());
        let Some(conn) = conn else {
            return Err(StoreError::Config {
                store: "metastore".into(),
                message: format!("no sql_alchemy_conn configured (and {ENV_SQL_ALCHEMY_CONN} is unset)"),
            });
        };
        let url = parse_sql_alchemy_url(&conn)
            .map_err(|e| StoreError::Config { store: "metastore".into(), message: e.to_string() })?;
        let db_schema = cfg.sql_alchemy_schema.clone().or_else(|| env(ENV_SQL_ALCHEMY_SCHEMA)).filter(|s| !s.is_empty());
        let store_name = format!("metastore:{url}");
        if let Some(s) = &db_schema {
            validate_schema_name(s).map_err(|message| StoreError::Config { store: store_name.clone(), message })?;
            if url.dialect == Dialect::Sqlite {
                return Err(StoreError::Config {
                    store: store_name,
                    message: "sql_alchemy_schema is not supported with SQLite".into(),
                });
            }
        }

        let (fernet, key_source) = build_fernet(cfg, env, &store_name)?;
        let pool = connect(&url, &store_name).await?;
        let mut store = Self {
            url,
            db_schema,
            pool,
            fernet,
            key_source,
            allow_plaintext: cfg.allow_plaintext,
            on_conflict: cfg.on_conflict,
            team_name: cfg.team_name.clone().filter(|t| !t.is_empty()),
            pending: std::sync::Mutex::new(Vec::new()),
            schema: MetastoreSchema {
                team: TeamColumn::None,
                nullable_flags: true,
                variable_has_description: false,
                connection_has_description: false,
                alembic_revision: None,
            },
        };
        store.schema = store.probe_schema().await?;
        if store.team_name.is_some() && store.schema.team != TeamColumn::TeamName {
            return Err(StoreError::Config {
                store: store.to_string(),
                message: "team_name needs an Airflow 3.2+ metastore (a connection.team_name column)".into(),
            });
        }
        if cfg.as_target {
            store.check_writable()?;
        }
        tracing::debug!(store = %store, generation = store.schema.generation(),
            revision = ?store.schema.alembic_revision, "metastore schema detected");
        Ok(store)
    }

    /// The table shapes found (team column, nullability, alembic revision), for reporting.
    pub fn schema(&self) -> &MetastoreSchema {
        &self.schema
    }

    pub fn dialect(&self) -> Dialect {
        self.url.dialect
    }

    /// Whether a Fernet key is configured (false means NullFernet: encrypted rows are unreadable).
    pub fn has_fernet_key(&self) -> bool {
        !self.fernet.is_null()
    }

    /// The largest value written, before encryption ([`crate::airflow::metastore::max_value_bytes`]).
    pub fn max_value_bytes(&self) -> usize {
        crate::airflow::metastore::max_value_bytes(self.url.dialect)
    }

    /// Where the Fernet key came from.
    pub fn key_source(&self) -> KeySource {
        self.key_source
    }

    /// Writing needs a key unless `allow_plaintext` says unencrypted rows are intended: an empty
    /// `AIRFLOW__CORE__FERNET_KEY` must not silently put passwords in clear into a new metastore.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        if !self.fernet.is_null() || self.allow_plaintext {
            return Ok(());
        }
        Err(StoreError::Config {
            store: self.to_string(),
            message: format!(
                "no Fernet key to encrypt the rows with (key source: {}); configure fernet_key or fernet_key_cmd \
                 on this store, or set allow_plaintext = true to write unencrypted rows",
                self.key_source
            ),
        })
    }

    /// The statements for this database ([`crate::airflow::metastore::sql`]).
    fn sql(&self) -> Sql<'_> {
        Sql { dialect: self.url.dialect, db_schema: self.db_schema.as_deref() }
    }

    /// Existing rows are "foreign" while `on_conflict = "fail"`: the plan then refuses to replace
    /// them unless the operator adopts them (which switches to `overwrite`).
    fn row_meta(&self, id: &ItemId) -> Meta {
        let ownership = if self.on_conflict == OnConflict::Fail { Ownership::Foreign } else { Ownership::Untracked };
        Meta { name: Some(id.id.clone()), ownership, ..Meta::default() }
    }
}

#[async_trait]
impl Store for MetastoreStore {
    fn read_as(
        &self,
        entry: &Entry,
        readers: &[crate::airflow::connection::Reader],
    ) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
        Self::admit(entry)?;
        Ok(crate::store::read_as_by_format(&self.capabilities(), entry, readers))
    }

    fn airflow_version(&self) -> Option<&'static str> {
        self.schema().airflow_version()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: false,
            variables: true,
            connections: true,
            max_value_bytes: Some(self.max_value_bytes()),
            empty_variables: true,
            variable_line_breaks: true,
            connection_format: ConnectionFormat::Fields,
            connection_description: true,
            variable_description: true,
            can_tag: false,
            can_delete: true,
            // `Absent` is enforced inside the flush transaction, but rows carry no version for
            // check-and-set, so the contract's conditional writes are not claimed.
            conditional_writes: false,
            read_batch: 10_000,
            // Writes only fill a buffer; flush runs them in one transaction.
            write_concurrency: 16,
            write_rate: None,
            // Every write of a run lands in one transaction, committed by `flush`.
            buffered_writes: true,
            // key / conn_id are case-sensitive on every dialect (MySQL: utf8mb3_bin, spec §1.2).
            case_insensitive_names: false,
            keep_existing: self.on_conflict == OnConflict::Skip,
        }
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let mut inv = Inventory::new();
        let mut put = |id: ItemId, r: Result<Entry, ItemError>| match r {
            Ok(e) => inv.insert(e),
            Err(e) => inv.insert_error(id, e),
        };
        match kind {
            Kind::Variable => {
                for row in self.variable_rows().await? {
                    if let Some((id, r)) = self.variable_entry(row) {
                        put(id, r);
                    }
                }
            }
            Kind::Connection => {
                for row in self.connection_rows().await? {
                    let (id, r) = self.connection_entry(row);
                    put(id, r);
                }
            }
        }
        Ok(inv)
    }

    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        let op = self.prepare(entry, pre)?;
        self.pending.lock().expect("pending lock").push(op);
        Ok(())
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        self.pending.lock().expect("pending lock").push(RowOp::Delete(id.clone()));
        Ok(())
    }

    /// Every buffered write and delete in ONE transaction: a failure leaves the metastore as it
    /// was (like `airflow connections import`).
    async fn flush(&self) -> Result<(), StoreError> {
        let ops = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        self.apply_ops(ops).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let r = match &self.pool {
            Pool::Postgres(p) => match p.get().await {
                Ok(mut c) => sqlx::query("SELECT 1").execute(&mut *c).await.map(drop),
                Err(e) => Err(e),
            },
            Pool::MySql(p) => match p.get().await {
                Ok(mut c) => sqlx::query("SELECT 1").execute(&mut *c).await.map(drop),
                Err(e) => Err(e),
            },
            Pool::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
        };
        r.map_err(|e| {
            self.suspect_connection();
            StoreError::Unavailable { store: self.to_string(), op: "check", reason: self.url.scrub(&e.to_string()) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_credentials() {
        let cfg: MetastoreConfig = toml::from_str(
            r#"
            sql_alchemy_conn = "postgresql+psycopg2://airflow:pw-canary@db:5432/airflow"
            fernet_key = "key-canary"
            fernet_key_cmd = "cat /secret-canary"
            "#,
        )
        .unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("postgresql://db:5432/airflow"), "{shown}");
        assert_eq!(cfg.fernet_key.unwrap().expose_plaintext(), "key-canary");
    }
}
