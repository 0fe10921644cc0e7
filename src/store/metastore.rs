//! The Airflow metastore as a [`Store`] (read side): the `variable` and `connection` tables of a
//! PostgreSQL, MySQL/MariaDB or SQLite database, decrypted the way Airflow's ORM does it.
//!
//! Mirrors `airflow.models.Variable.get_val` and `Connection.get_password` / `get_extra`:
//! a field is decrypted only when its own flag is set and (connections) the value is truthy,
//! per row (spec §1.4, §9 item 1). What Airflow defines (URL forms, tables, SQL) lives in
//! [`crate::airflow::metastore`]; this module owns the database connection and turns rows into
//! an [`Inventory`]. A row that does not decrypt is a per-item error, never a crash, never skipped
//! and never its raw token copied as a value (spec §10.1). Writing rows is not implemented yet:
//! the store is read-only.
//!
//! Tested against the real Airflow-made SQLite files in `tests/data/metastore/` and the same
//! rows in real PostgreSQL and MariaDB (`tests/metastore.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, ColumnIndex, ConnectOptions, Decode, Row, Type};

use super::sql_conn::{NoDelayRelay, SingleConn, postgres_nodelay};
use super::{Capabilities, ConnectionFormat, Precondition, Store, StoreError};
use crate::airflow::fernet::{
    AirflowFernet, DecryptError, ENV_FERNET_KEY, ENV_FERNET_KEY_CMD, ENV_FERNET_KEY_SECRET, KeySource, resolve_key,
};
use crate::airflow::metastore::{
    Columns, Dialect, MetastoreSchema, MetastoreUrl, parse_sql_alchemy_url, qualified_table, quote_ident,
    validate_schema_name,
};
use crate::model::{
    Connection, Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Ownership, SecretValue, Value, Variable,
};

/// Env fallbacks Airflow itself reads for the two `[database]` options.
pub const ENV_SQL_ALCHEMY_CONN: &str = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN";
pub const ENV_SQL_ALCHEMY_SCHEMA: &str = "AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA";

/// The largest value a metastore target takes on PostgreSQL and SQLite (see `max_value_bytes`).
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;
/// The same on MySQL / MariaDB: what a 16 MiB MEDIUMTEXT holds once Fernet-encrypted.
pub const MAX_VALUE_BYTES_MYSQL: usize = 12 * 1024 * 1024;

/// How long the first connection may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

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

/// One connection per dialect (SQLite: a pool of local files): sqlx needs the driver named at
/// every query (dependencies.md). PostgreSQL and MySQL keep the single connection `open` made:
/// every query of a run is sequential, and each further connection costs a TCP connect, a TLS
/// handshake and a login.
enum Pool {
    Postgres(SingleConn<PgConnection>),
    MySql(SingleConn<MySqlConnection>),
    Sqlite(SqlitePool),
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

/// What `rotate_fernet_key` re-encrypted (or would have, with `dry_run`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotateReport {
    pub variables: usize,
    pub connections: usize,
}

/// The statements of one flush, built once per dialect and schema.
struct FlushSql {
    var_exists: String,
    conn_exists: String,
    var_delete: String,
    conn_delete: String,
    var_insert: String,
    var_update: String,
    conn_insert: String,
    conn_update: String,
}

/// A buffered change, already encrypted exactly as Airflow would store it.
enum RowOp {
    Variable { key: String, val: SecretValue, description: Option<String>, is_encrypted: bool, absent: bool },
    Connection(Box<ConnectionWrite>),
    Delete(ItemId),
}

struct ConnectionWrite {
    conn_id: String,
    conn_type: String,
    description: Option<String>,
    host: Option<String>,
    schema: Option<String>,
    login: Option<String>,
    port: Option<i32>,
    password: Option<SecretValue>,
    extra: Option<SecretValue>,
    is_encrypted: bool,
    is_extra_encrypted: bool,
    absent: bool,
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

/// One `variable` row, decoded column by column so that one bad cell fails only its item.
struct VariableRow {
    row_id: i64,
    key: Option<String>,
    val: Result<Option<String>, String>,
    description: Option<String>,
    is_encrypted: Option<bool>,
}

struct ConnectionRow {
    conn_id: String,
    conn_type: Option<String>,
    description: Option<String>,
    host: Option<String>,
    schema: Option<String>,
    login: Option<String>,
    password: Result<Option<String>, String>,
    port: Result<Option<i64>, String>,
    extra: Result<Option<String>, String>,
    is_encrypted: Option<bool>,
    is_extra_encrypted: Option<bool>,
}

fn cell<'r, R, T>(row: &'r R, col: &str) -> Result<T, String>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    // The driver's message names the column and types, not the cell's content.
    row.try_get::<T, _>(col).map_err(|e| format!("column {col}: {e}"))
}

fn variable_row<R>(row: &R) -> Result<VariableRow, String>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let row_id: i64 = cell(row, "id")?;
    Ok(VariableRow {
        row_id,
        key: cell(row, "key").map_err(|e| format!("variable row id {row_id}: {e}"))?,
        val: cell(row, "val"),
        description: cell(row, "description").ok().flatten(),
        is_encrypted: cell(row, "is_encrypted").map_err(|e| format!("variable row id {row_id}: {e}"))?,
    })
}

fn connection_row<R>(row: &R) -> Result<ConnectionRow, String>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let conn_id: String = cell(row, "conn_id")?;
    let named = |e: String| format!("connection '{}': {e}", conn_id.escape_debug());
    Ok(ConnectionRow {
        conn_type: cell(row, "conn_type").map_err(named)?,
        description: cell(row, "description").map_err(named)?,
        host: cell(row, "host").map_err(named)?,
        schema: cell(row, "schema").map_err(named)?,
        login: cell(row, "login").map_err(named)?,
        password: cell(row, "password"),
        port: cell(row, "port"),
        extra: cell(row, "extra"),
        is_encrypted: cell(row, "is_encrypted").map_err(named)?,
        is_extra_encrypted: cell(row, "is_extra_encrypted").map_err(named)?,
        conn_id,
    })
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

/// Run `sql` on the store's pool and convert each row with `$convert` (generic over the driver's
/// row type) as it arrives: the driver rows are never all held at once.
macro_rules! stream_rows {
    ($store:expr, $sql:expr, $label:literal, $convert:ident) => {{
        use futures::TryStreamExt;
        let sql = AssertSqlSafe($sql);
        let mut out = Vec::new();
        macro_rules! stream {
            ($pool:expr) => {{
                let mut rows = sqlx::query(sql).fetch($pool);
                while let Some(row) = rows.try_next().await.map_err(|e| $store.err_backend($label, e))? {
                    out.push($convert(&row).map_err(|e| $store.err_backend($label, e))?);
                }
            }};
        }
        match &$store.pool {
            Pool::Postgres(p) => {
                let mut c = p.get().await.map_err(|e| $store.err_backend($label, e))?;
                stream!(&mut *c)
            }
            Pool::MySql(p) => {
                let mut c = p.get().await.map_err(|e| $store.err_backend($label, e))?;
                stream!(&mut *c)
            }
            Pool::Sqlite(p) => stream!(p),
        }
        Ok(out)
    }};
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
                team: crate::airflow::metastore::TeamColumn::None,
                nullable_flags: true,
                variable_has_description: false,
                connection_has_description: false,
                alembic_revision: None,
            },
        };
        store.schema = store.probe_schema().await?;
        if store.team_name.is_some() && store.schema.team != crate::airflow::metastore::TeamColumn::TeamName {
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

    /// The largest value written, before encryption (a Fernet token is about 4/3 of it). MySQL and
    /// MariaDB hold `variable.val` in a MEDIUMTEXT (16 MiB) and refuse packets over
    /// `max_allowed_packet` (16 MiB by default on MariaDB); PostgreSQL and SQLite take up to 1 GB per
    /// value, capped here at 64 MiB so that one row never costs gigabytes of memory.
    pub fn max_value_bytes(&self) -> usize {
        match self.url.dialect {
            Dialect::MySql => MAX_VALUE_BYTES_MYSQL,
            Dialect::Postgres | Dialect::Sqlite => MAX_VALUE_BYTES,
        }
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

    /// Existing rows are "foreign" while `on_conflict = "fail"`: the plan then refuses to replace
    /// them unless the operator adopts them (which switches to `overwrite`).
    fn row_meta(&self, id: &ItemId) -> Meta {
        let ownership = if self.on_conflict == OnConflict::Fail { Ownership::Foreign } else { Ownership::Untracked };
        Meta { name: Some(id.id.clone()), ownership, ..Meta::default() }
    }

    /// Encrypt a value the way Airflow stores it: a token of the FIRST key, or the plaintext with
    /// the flag off when no key is configured (NullFernet).
    fn seal(&self, plain: &SecretValue) -> (SecretValue, bool) {
        match self.fernet.encrypt(plain) {
            Some(token) => (SecretValue::new(token), true),
            None => (plain.clone(), false),
        }
    }

    /// What Airflow's columns cannot hold (spec §1.1, §1.2): checked by the plan (through
    /// `read_as`) and again by the write.
    fn admit(entry: &Entry) -> Result<(), ItemError> {
        let too_long = |what: &str, v: &str, limit: usize| {
            (v.chars().count() > limit)
                .then(|| ItemError::new(ItemErrorKind::InvalidName, format!("{what} is longer than {limit} characters")))
        };
        if entry.id.id.is_empty() {
            return Err(ItemError::new(ItemErrorKind::InvalidName, "an empty id"));
        }
        if let Some(e) = too_long("the id", &entry.id.id, 250) {
            return Err(e);
        }
        if let Value::Connection(c) = &entry.value {
            for (what, v) in [("host", &c.host), ("schema", &c.schema), ("conn_type", &c.conn_type)] {
                if let Some(e) = v.as_deref().and_then(|v| too_long(what, v, 500)) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Turn an entry into the row Airflow would write (spec §1.3).
    fn prepare(&self, entry: &Entry, pre: &Precondition) -> Result<RowOp, StoreError> {
        self.check_writable()?;
        let absent = *pre == Precondition::Absent;
        Self::admit(entry).map_err(|e| StoreError::item(self, &entry.id, e))?;
        let size = match &entry.value {
            Value::Variable(v) => v.value.len(),
            Value::Connection(c) => crate::airflow::connection::to_json(c).len(),
        };
        if size > self.max_value_bytes() {
            let why = format!("{size} bytes encoded; the limit is {}", self.max_value_bytes());
            return Err(StoreError::item(self, &entry.id, ItemError::new(ItemErrorKind::TooLarge, why)));
        }
        Ok(match &entry.value {
            Value::Variable(v) => {
                // Variable.set stores even the empty string encrypted (spec §1.3).
                let (val, is_encrypted) = self.seal(&v.value);
                RowOp::Variable { key: entry.id.id.clone(), val, description: v.description.clone(), is_encrypted, absent }
            }
            Value::Connection(c) => {
                // Airflow's setters ignore falsy values: an empty password or extra is NULL, flag off.
                let password = c.password.as_ref().filter(|p| !p.is_empty()).map(|p| self.seal(p));
                let extra = c.extra.as_ref().filter(|x| !x.is_empty()).map(|x| self.seal(x));
                RowOp::Connection(Box::new(ConnectionWrite {
                    conn_id: entry.id.id.clone(),
                    conn_type: c.conn_type.clone().unwrap_or_default(),
                    description: c.description.clone(),
                    host: c.host.clone(),
                    schema: c.schema.clone(),
                    login: c.login.clone(),
                    port: c.port.map(i32::from),
                    is_encrypted: password.as_ref().is_some_and(|p| p.1),
                    is_extra_encrypted: extra.as_ref().is_some_and(|x| x.1),
                    password: password.map(|p| p.0),
                    extra: extra.map(|x| x.0),
                    absent,
                }))
            }
        })
    }

    fn ph(&self, n: usize) -> String {
        match self.url.dialect {
            Dialect::Postgres => format!("${n}"),
            Dialect::MySql | Dialect::Sqlite => "?".into(),
        }
    }

    fn table(&self, name: &str) -> String {
        qualified_table(self.url.dialect, self.db_schema.as_deref(), name)
    }

    fn q(&self, col: &str) -> String {
        quote_ident(self.url.dialect, col)
    }

    fn sql_exists(&self, kind: Kind) -> String {
        let (table, key) = match kind {
            Kind::Variable => ("variable", "key"),
            Kind::Connection => ("connection", "conn_id"),
        };
        format!("SELECT 1 FROM {} WHERE {} = {}", self.table(table), self.q(key), self.ph(1))
    }

    fn sql_delete(&self, kind: Kind) -> String {
        self.sql_exists(kind).replacen("SELECT 1 FROM", "DELETE FROM", 1)
    }

    /// Columns written for a variable, in bind order (the key is bound last for UPDATE).
    fn variable_columns(&self) -> Vec<&'static str> {
        let mut cols = vec!["val", "is_encrypted"];
        if self.schema.variable_has_description {
            cols.push("description");
        }
        if self.team_name.is_some() {
            cols.push("team_name");
        }
        cols
    }

    fn connection_columns(&self) -> Vec<&'static str> {
        let mut cols =
            vec!["conn_type", "host", "schema", "login", "password", "port", "extra", "is_encrypted", "is_extra_encrypted"];
        if self.schema.connection_has_description {
            cols.push("description");
        }
        if self.team_name.is_some() {
            cols.push("team_name");
        }
        cols
    }

    fn sql_insert(&self, table: &str, key: &str, cols: &[&str]) -> String {
        let names: Vec<String> = cols.iter().map(|c| self.q(c)).chain([self.q(key)]).collect();
        let phs: Vec<String> = (1..=names.len()).map(|i| self.ph(i)).collect();
        format!("INSERT INTO {} ({}) VALUES ({})", self.table(table), names.join(", "), phs.join(", "))
    }

    fn sql_update(&self, table: &str, key: &str, cols: &[&str]) -> String {
        let sets: Vec<String> = cols.iter().enumerate().map(|(i, c)| format!("{} = {}", self.q(c), self.ph(i + 1))).collect();
        format!("UPDATE {} SET {} WHERE {} = {}", self.table(table), sets.join(", "), self.q(key), self.ph(cols.len() + 1))
    }

    fn conflict_error(&self, id: &ItemId) -> StoreError {
        StoreError::item(
            self,
            id,
            ItemError::new(
                ItemErrorKind::Blocked,
                "a row already exists and on_conflict = \"fail\" (use \"skip\" or \"overwrite\", or --adopt)",
            ),
        )
    }

    /// `airflow rotate-fernet-key` (spec §2.4): with `fernet_key = "NEW,OLD"`, re-encrypt every
    /// flagged field with the first key, keeping each token's timestamp; plaintext rows are left
    /// alone. All rows in one transaction, updated in batches of 100. A row that no key decrypts
    /// aborts the whole rotation, naming the row. `dry_run` counts without writing.
    pub async fn rotate_fernet_key(&self, dry_run: bool) -> Result<RotateReport, StoreError> {
        if self.fernet.is_null() {
            return Err(StoreError::FernetKey {
                store: self.to_string(),
                reason: "no fernet key is configured; set fernet_key = \"NEW,OLD\"".into(),
            });
        }
        let q = |c: &str| self.q(c);
        let enc = |c: &str| match self.url.dialect {
            Dialect::Postgres => format!("CAST({} AS BOOLEAN)", q(c)),
            _ => q(c),
        };
        let select_vars = format!(
            "SELECT {}, {}, {} FROM {} WHERE {} ORDER BY {}",
            crate::airflow::metastore::int64_expr(self.url.dialect, "id"),
            q("key"),
            q("val"),
            self.table("variable"),
            enc("is_encrypted"),
            q("id")
        );
        let select_conns = format!(
            "SELECT {}, {}, {}, {}, {}, {} FROM {} WHERE {} OR {} ORDER BY {}",
            crate::airflow::metastore::int64_expr(self.url.dialect, "id"),
            q("conn_id"),
            q("password"),
            q("extra"),
            enc("is_encrypted"),
            enc("is_extra_encrypted"),
            self.table("connection"),
            enc("is_encrypted"),
            enc("is_extra_encrypted"),
            q("id")
        );
        let update_var = format!("UPDATE {} SET {} = {} WHERE {} = {}", self.table("variable"), q("val"), self.ph(1), q("id"), self.ph(2));
        let update_conn = format!(
            "UPDATE {} SET {} = {}, {} = {} WHERE {} = {}",
            self.table("connection"),
            q("password"),
            self.ph(1),
            q("extra"),
            self.ph(2),
            q("id"),
            self.ph(3)
        );
        let rotate = |id: &ItemId, field: &str, token: &str| {
            self.fernet.rotate(token).map_err(|e| {
                StoreError::item(self, id, ItemError::new(ItemErrorKind::WrongKey, format!("{field} cannot be rotated: {e}")))
            })
        };
        let mut report = RotateReport::default();
        macro_rules! run {
            ($begin:expr) => {{
                let mut tx = $begin.await.map_err(|e| self.err_backend("begin", e))?;
                let vars: Vec<(i64, Option<String>, Option<String>)> = sqlx::query_as(AssertSqlSafe(select_vars.clone()))
                    .fetch_all(&mut *tx).await.map_err(|e| self.err_backend("read variables", e))?;
                for batch in vars.chunks(100) {
                    for (row_id, key, val) in batch {
                        let Some(val) = val.as_deref().filter(|v| !v.is_empty()) else { continue };
                        let id = ItemId::variable(key.clone().unwrap_or_else(|| format!("(row {row_id})")));
                        let new = rotate(&id, "val", val)?;
                        report.variables += 1;
                        if !dry_run {
                            sqlx::query(AssertSqlSafe(update_var.clone())).bind(new).bind(*row_id)
                                .execute(&mut *tx).await.map_err(|e| self.err_backend("rotate variable", e))?;
                        }
                    }
                }
                let conns: Vec<(i64, String, Option<String>, Option<String>, Option<bool>, Option<bool>)> =
                    sqlx::query_as(AssertSqlSafe(select_conns.clone()))
                        .fetch_all(&mut *tx).await.map_err(|e| self.err_backend("read connections", e))?;
                for batch in conns.chunks(100) {
                    for (row_id, conn_id, password, extra, pe, xe) in batch {
                        let id = ItemId::connection(conn_id.clone());
                        // Each field only if its own flag is set and it holds a value (Airflow's rule).
                        let password = match password.as_deref().filter(|p| !p.is_empty() && pe.unwrap_or(false)) {
                            Some(p) => Some(rotate(&id, "password", p)?),
                            None => password.clone(),
                        };
                        let extra = match extra.as_deref().filter(|x| !x.is_empty() && xe.unwrap_or(false)) {
                            Some(x) => Some(rotate(&id, "extra", x)?),
                            None => extra.clone(),
                        };
                        report.connections += 1;
                        if !dry_run {
                            sqlx::query(AssertSqlSafe(update_conn.clone())).bind(password).bind(extra).bind(*row_id)
                                .execute(&mut *tx).await.map_err(|e| self.err_backend("rotate connection", e))?;
                        }
                    }
                }
                if dry_run {
                    tx.rollback().await.map_err(|e| self.err_backend("rollback", e))?;
                } else {
                    tx.commit().await.map_err(|e| self.err_backend("commit", e))?;
                }
            }};
        }
        match &self.pool {
            Pool::Postgres(p) => {
                let mut c = p.get().await.map_err(|e| self.err_backend("begin", e))?;
                run!(sqlx::Connection::begin(&mut *c))
            }
            Pool::MySql(p) => {
                let mut c = p.get().await.map_err(|e| self.err_backend("begin", e))?;
                run!(sqlx::Connection::begin(&mut *c))
            }
            Pool::Sqlite(p) => run!(p.begin()),
        }
        Ok(report)
    }

    /// After a failed query, the next one checks the connection first (and reopens it if lost).
    fn suspect_connection(&self) {
        match &self.pool {
            Pool::Postgres(p) => p.suspect(),
            Pool::MySql(p) => p.suspect(),
            Pool::Sqlite(_) => {}
        }
    }

    fn err_backend(&self, op: &'static str, e: impl fmt::Display) -> StoreError {
        self.suspect_connection();
        StoreError::Backend { store: self.to_string(), op, reason: self.url.scrub(&e.to_string()) }
    }

    async fn probe_schema(&self) -> Result<MetastoreSchema, StoreError> {
        let variable = self.columns("variable").await?;
        let connection = self.columns("connection").await?;
        let mut schema = MetastoreSchema::detect(&variable, &connection).map_err(|e| {
            let place = match &self.db_schema {
                Some(s) => format!("{} (schema {s})", self.url),
                None => self.url.to_string(),
            };
            StoreError::Schema {
                store: self.to_string(),
                message: format!("{e} in {place}; run `airflow db migrate` first"),
            }
        })?;
        schema.alembic_revision = self.alembic_revision().await;
        Ok(schema)
    }

    /// Column name → nullable for `table`; empty if the table does not exist.
    async fn columns(&self, table: &str) -> Result<Columns, StoreError> {
        let schema = self.db_schema.as_deref();
        let pairs: Vec<(String, bool)> = match &self.pool {
            Pool::Postgres(p) => {
                // to_regclass resolves an unqualified name through search_path exactly as the
                // unqualified SELECT will, and gives NULL (no rows) for a missing table.
                let regclass = qualified_table(Dialect::Postgres, schema, table);
                sqlx::query_as::<_, (String, bool)>(
                    "SELECT a.attname::text, NOT a.attnotnull FROM pg_catalog.pg_attribute a \
                     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                )
                .bind(regclass)
                .fetch_all(&mut *p.get().await.map_err(|e| self.err_backend("probe schema", e))?)
                .await
            }
            Pool::MySql(p) => {
                sqlx::query_as::<_, (String, bool)>(
                    "SELECT CAST(column_name AS CHAR), is_nullable = 'YES' FROM information_schema.columns \
                     WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
                )
                .bind(schema)
                .bind(table)
                .fetch_all(&mut *p.get().await.map_err(|e| self.err_backend("probe schema", e))?)
                .await
            }
            Pool::Sqlite(p) => {
                sqlx::query_as::<_, (String, bool)>("SELECT name, \"notnull\" = 0 FROM pragma_table_info(?)")
                    .bind(table)
                    .fetch_all(p)
                    .await
            }
        }
        .map_err(|e| self.err_backend("probe schema", e))?;
        Ok(pairs.into_iter().collect::<BTreeMap<_, _>>())
    }

    /// Best effort: a database without `alembic_version` is still read (detection uses columns).
    async fn alembic_revision(&self) -> Option<String> {
        let d = self.url.dialect;
        let sql = format!(
            "SELECT {} FROM {}",
            quote_ident(d, "version_num"),
            qualified_table(d, self.db_schema.as_deref(), "alembic_version")
        );
        macro_rules! query {
            () => {
                sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
            };
        }
        let r = match &self.pool {
            Pool::Postgres(p) => match p.get().await {
                Ok(mut c) => query!().fetch_optional(&mut *c).await,
                Err(e) => Err(e),
            },
            Pool::MySql(p) => match p.get().await {
                Ok(mut c) => query!().fetch_optional(&mut *c).await,
                Err(e) => Err(e),
            },
            Pool::Sqlite(p) => query!().fetch_optional(p).await,
        };
        r.ok().flatten()
    }

    async fn variable_rows(&self) -> Result<Vec<VariableRow>, StoreError> {
        // The only dynamic part is the schema prefix, checked by validate_schema_name in open().
        let sql = self.schema.select_variables(self.url.dialect, self.db_schema.as_deref());
        stream_rows!(self, sql, "scan variables", variable_row)
    }

    async fn connection_rows(&self) -> Result<Vec<ConnectionRow>, StoreError> {
        let sql = self.schema.select_connections(self.url.dialect, self.db_schema.as_deref());
        stream_rows!(self, sql, "scan connections", connection_row)
    }

    /// Decrypt `token` or say why not. The detail names the field and the cause, never the token.
    fn decrypt(&self, field: &str, flag: &str, token: &str) -> Result<SecretValue, ItemError> {
        let err = if self.fernet.is_null() {
            DecryptError::NoKey
        } else {
            match self.fernet.decrypt(token) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            }
        };
        let kind = match err {
            DecryptError::NoKey => ItemErrorKind::NoKey,
            DecryptError::WrongKey => ItemErrorKind::WrongKey,
            DecryptError::Corrupt => ItemErrorKind::CorruptToken,
        };
        Err(ItemError::new(kind, format!("{field} is flagged {flag} but {err}")))
    }

    fn variable_entry(&self, row: VariableRow) -> Option<(ItemId, Result<Entry, ItemError>)> {
        let Some(key) = row.key else {
            // A 2.x row with a NULL key: Airflow cannot look it up, and the 3.2 migration
            // (`888b59e02a5b`) renames it to this. Report it under that name rather than skip it.
            let id = ItemId::variable(format!("__airflow_var_fix_888b59e02a5b_{}", row.row_id));
            let detail = format!("variable row id {} has a NULL key; Airflow cannot look it up", row.row_id);
            return Some((id, Err(ItemError::new(ItemErrorKind::Unparseable, detail))));
        };
        let id = ItemId::variable(key);
        let val = match row.val {
            Ok(Some(v)) => v,
            // Spec §1.2: a NULL val reads as absent in Airflow (get_val returns None).
            Ok(None) => {
                tracing::warn!(id = %id, "variable row has a NULL val; Airflow reads it as absent, skipping");
                return None;
            }
            Err(e) => return Some((id, Err(ItemError::new(ItemErrorKind::Unparseable, e)))),
        };
        // Variable.get_val decrypts when `_val is not None and is_encrypted` (not "truthy").
        let value = if row.is_encrypted == Some(true) {
            match self.decrypt("val", "is_encrypted", &val) {
                Ok(v) => v,
                Err(e) => return Some((id, Err(e))),
            }
        } else {
            SecretValue::from(val)
        };
        let entry = Entry {
            id: id.clone(),
            value: Value::Variable(Variable { value, description: row.description }),
            meta: self.row_meta(&id),
        };
        Some((id, Ok(entry)))
    }

    /// `Connection.get_password` / `get_extra`: decrypt iff the field's flag is set and the value
    /// is truthy; NULL flags are false (2.x).
    fn connection_field(
        &self,
        field: &str,
        flag_name: &str,
        stored: Result<Option<String>, String>,
        flag: Option<bool>,
    ) -> Result<Option<SecretValue>, ItemError> {
        match stored.map_err(|e| ItemError::new(ItemErrorKind::Unparseable, e))? {
            None => Ok(None),
            Some(s) if flag == Some(true) && !s.is_empty() => self.decrypt(field, flag_name, &s).map(Some),
            Some(s) => Ok(Some(SecretValue::from(s))),
        }
    }

    fn connection_entry(&self, row: ConnectionRow) -> (ItemId, Result<Entry, ItemError>) {
        let id = ItemId::connection(row.conn_id);
        let port = match row.port {
            Ok(None) => None,
            Ok(Some(p)) => match u16::try_from(p) {
                Ok(p) => Some(p),
                Err(_) => {
                    let detail = format!("port {p} is outside 0..=65535");
                    return (id, Err(ItemError::new(ItemErrorKind::Unparseable, detail)));
                }
            },
            Err(e) => return (id, Err(ItemError::new(ItemErrorKind::Unparseable, e))),
        };
        let password = self.connection_field("password", "is_encrypted", row.password, row.is_encrypted);
        let extra = self.connection_field("extra", "is_extra_encrypted", row.extra, row.is_extra_encrypted);
        let (password, extra) = match (password, extra) {
            (Ok(p), Ok(x)) => (p, x),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => return (id, Err(e)),
            (Err(p), Err(x)) => {
                let detail = format!("{}; {}", p.detail, x.detail);
                return (id, Err(ItemError::new(p.kind, detail)));
            }
        };
        let conn = Connection {
            conn_type: row.conn_type,
            description: row.description,
            host: row.host,
            login: row.login,
            password,
            schema: row.schema,
            port,
            extra,
        };
        let entry =
            Entry { id: id.clone(), value: Value::Connection(conn), meta: self.row_meta(&id) };
        (id, Ok(entry))
    }
}

async fn connect(url: &MetastoreUrl, store: &str) -> Result<Pool, StoreError> {
    let config = |e: sqlx::Error| StoreError::Config { store: store.to_string(), message: url.scrub(&e.to_string()) };
    let unreachable = |reason: String| StoreError::Unreachable {
        store: store.to_string(),
        reason: format!("{}: {}", url.location(), url.scrub(&reason)),
    };
    // One direct attempt, not through a pool: a pool would retry "connection refused" until its
    // timeout, and the operator wants the reason now. On PostgreSQL and MySQL this connection is
    // then the store's only one (src/store/sql_conn.rs): one TLS handshake and login per run.
    macro_rules! attempt {
        ($opts:expr) => {
            match tokio::time::timeout(CONNECT_TIMEOUT, $opts.connect()).await {
                Err(_) => return Err(unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))),
                Ok(r) => r,
            }
        };
    }
    macro_rules! relay {
        ($host:expr, $port:expr, $name:expr) => {
            match tokio::time::timeout(CONNECT_TIMEOUT, NoDelayRelay::start($host, $port, $name)).await {
                Err(_) => return Err(unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))),
                Ok(r) => r.map_err(|e| classify_connect(sqlx::Error::Io(e), store, url))?,
            }
        };
    }
    macro_rules! first {
        ($opts:expr) => {
            attempt!($opts).map_err(|e| classify_connect(e, store, url))?
        };
    }
    match url.dialect {
        Dialect::Postgres => {
            // No statement cache: PgBouncer in transaction mode (dependencies.md pitfall 9).
            let mut opts = PgConnectOptions::from_str(url.sqlx_url()).map_err(config)?.statement_cache_capacity(0);
            // sslmode as libpq reads it. sqlx does disable, prefer (TLS if the server offers it,
            // else plain), require (TLS, unverified), verify-ca and verify-full; `allow` it takes
            // as disable, where libpq tries plain first and TLS when the server refuses plain.
            let conn = if matches!(opts.get_ssl_mode(), PgSslMode::Allow) {
                match attempt!(opts) {
                    Ok(conn) => conn,
                    Err(sqlx::Error::Database(refused)) => {
                        tracing::debug!(store, reason = %url.scrub(&refused.to_string()),
                            "sslmode=allow: a plain connection was refused; trying TLS");
                        opts = opts.ssl_mode(PgSslMode::Require);
                        first!(opts)
                    }
                    Err(e) => return Err(classify_connect(e, store, url)),
                }
            } else if opts.get_socket().is_none() && !matches!(opts.get_ssl_mode(), PgSslMode::Disable) {
                // TLS is asked for: through the relay that sets TCP_NODELAY (sql_conn.rs).
                let relay;
                (opts, relay) = match tokio::time::timeout(CONNECT_TIMEOUT, postgres_nodelay(opts)).await {
                    Err(_) => return Err(unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))),
                    Ok(r) => r.map_err(|e| classify_connect(sqlx::Error::Io(e), store, url))?,
                };
                let conn = first!(opts);
                return Ok(Pool::Postgres(SingleConn::new(opts, conn, CONNECT_TIMEOUT).with_relay(relay)));
            } else {
                first!(opts)
            };
            Ok(Pool::Postgres(SingleConn::new(opts, conn, CONNECT_TIMEOUT)))
        }
        Dialect::MySql => {
            let mut opts = MySqlConnectOptions::from_str(url.sqlx_url()).map_err(config)?;
            // TLS possible (ssl-mode is not DISABLED): through the relay that sets TCP_NODELAY.
            let mut relay = None;
            if opts.get_socket().is_none() && !matches!(opts.get_ssl_mode(), sqlx::mysql::MySqlSslMode::Disabled) {
                relay = relay!(opts.get_host(), opts.get_port(), "mysqld.sock");
                if let Some(r) = &relay {
                    opts = opts.socket(r.path());
                }
            }
            let conn = first!(opts);
            Ok(Pool::MySql(SingleConn::new(opts, conn, CONNECT_TIMEOUT).with_relay(relay)))
        }
        Dialect::Sqlite => {
            // Never create an empty file: a typo in the path must be an error, not a new metastore.
            // (SQLite opens a write-protected file read-only by itself.)
            let opts = SqliteConnectOptions::new().filename(url.sqlx_url()).create_if_missing(false);
            drop(first!(opts));
            Ok(Pool::Sqlite(SqlitePoolOptions::new().max_connections(4).acquire_timeout(CONNECT_TIMEOUT).connect_lazy_with(opts)))
        }
    }
}

/// Map a failed first connection: credentials refused is PermissionDenied, the rest Unreachable.
fn classify_connect(e: sqlx::Error, store: &str, url: &MetastoreUrl) -> StoreError {
    let reason = format!("{}: {}", url.location(), url.scrub(&e.to_string()));
    if let sqlx::Error::Database(db) = &e {
        // PG 28P01/28000 (auth), MySQL 1045 (access denied) / 1044 (no access to db).
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        if matches!(code.as_str(), "28P01" | "28000" | "1045" | "1044") {
            return StoreError::PermissionDenied { store: store.to_string(), what: reason };
        }
    }
    StoreError::Unreachable { store: store.to_string(), reason }
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
        if ops.is_empty() {
            return Ok(());
        }
        let var_cols = self.variable_columns();
        let conn_cols = self.connection_columns();
        let sql = FlushSql {
            var_exists: self.sql_exists(Kind::Variable),
            conn_exists: self.sql_exists(Kind::Connection),
            var_delete: self.sql_delete(Kind::Variable),
            conn_delete: self.sql_delete(Kind::Connection),
            var_insert: self.sql_insert("variable", "key", &var_cols),
            var_update: self.sql_update("variable", "key", &var_cols),
            conn_insert: self.sql_insert("connection", "conn_id", &conn_cols),
            conn_update: self.sql_update("connection", "conn_id", &conn_cols),
        };
        macro_rules! run {
            ($begin:expr) => {{
                let mut tx = $begin.await.map_err(|e| self.err_backend("begin", e))?;
                for op in &ops {
                    match op {
                        RowOp::Delete(id) => {
                            let q = if id.kind == Kind::Variable { &sql.var_delete } else { &sql.conn_delete };
                            sqlx::query(AssertSqlSafe(q.clone())).bind(&id.id).execute(&mut *tx).await
                                .map_err(|e| self.err_backend("delete", e))?;
                        }
                        RowOp::Variable { key, val, description, is_encrypted, absent } => {
                            let exists = sqlx::query(AssertSqlSafe(sql.var_exists.clone())).bind(key).fetch_optional(&mut *tx).await
                                .map_err(|e| self.err_backend("write variable", e))?.is_some();
                            let id = ItemId::variable(key.clone());
                            let q = match (exists, absent, self.on_conflict) {
                                (true, true, _) => return Err(StoreError::Conflict { store: self.to_string(), id }),
                                (true, false, OnConflict::Fail) => return Err(self.conflict_error(&id)),
                                (true, false, OnConflict::Skip) => continue,
                                (true, false, OnConflict::Overwrite) => &sql.var_update,
                                (false, _, _) => &sql.var_insert,
                            };
                            let mut query = sqlx::query(AssertSqlSafe(q.clone())).bind(val.expose_plaintext()).bind(*is_encrypted);
                            if self.schema.variable_has_description {
                                query = query.bind(description.as_deref());
                            }
                            if let Some(team) = &self.team_name {
                                query = query.bind(team.as_str());
                            }
                            query.bind(key).execute(&mut *tx).await.map_err(|e| self.err_backend("write variable", e))?;
                        }
                        RowOp::Connection(c) => {
                            let exists = sqlx::query(AssertSqlSafe(sql.conn_exists.clone())).bind(&c.conn_id).fetch_optional(&mut *tx).await
                                .map_err(|e| self.err_backend("write connection", e))?.is_some();
                            let id = ItemId::connection(c.conn_id.clone());
                            let q = match (exists, c.absent, self.on_conflict) {
                                (true, true, _) => return Err(StoreError::Conflict { store: self.to_string(), id }),
                                (true, false, OnConflict::Fail) => return Err(self.conflict_error(&id)),
                                (true, false, OnConflict::Skip) => continue,
                                (true, false, OnConflict::Overwrite) => &sql.conn_update,
                                (false, _, _) => &sql.conn_insert,
                            };
                            let mut query = sqlx::query(AssertSqlSafe(q.clone()))
                                .bind(&c.conn_type)
                                .bind(c.host.as_deref())
                                .bind(c.schema.as_deref())
                                .bind(c.login.as_deref())
                                .bind(c.password.as_ref().map(|p| p.expose_plaintext()))
                                .bind(c.port)
                                .bind(c.extra.as_ref().map(|x| x.expose_plaintext()))
                                .bind(c.is_encrypted)
                                .bind(c.is_extra_encrypted);
                            if self.schema.connection_has_description {
                                query = query.bind(c.description.as_deref());
                            }
                            if let Some(team) = &self.team_name {
                                query = query.bind(team.as_str());
                            }
                            query.bind(&c.conn_id).execute(&mut *tx).await.map_err(|e| self.err_backend("write connection", e))?;
                        }
                    }
                }
                crate::fault::kill_point(crate::fault::METASTORE_TX);
                tx.commit().await.map_err(|e| self.err_backend("commit", e))?;
            }};
        }
        match &self.pool {
            Pool::Postgres(p) => {
                let mut c = p.get().await.map_err(|e| self.err_backend("begin", e))?;
                run!(sqlx::Connection::begin(&mut *c))
            }
            Pool::MySql(p) => {
                let mut c = p.get().await.map_err(|e| self.err_backend("begin", e))?;
                run!(sqlx::Connection::begin(&mut *c))
            }
            Pool::Sqlite(p) => run!(p.begin()),
        }
        Ok(())
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
