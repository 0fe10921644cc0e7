//! Reading the metastore: the scan's rows decoded column by column (one bad cell fails only its
//! item), decrypted as Airflow's ORM decrypts them, and the schema probe.

use std::collections::BTreeMap;

use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Row, Type};

use super::MetastoreStore;
use super::connect::Pool;
use crate::airflow::fernet::DecryptError;
use crate::airflow::metastore::{Columns, MetastoreSchema};
use crate::model::{Connection, Entry, ItemError, ItemErrorKind, ItemId, SecretValue, Value, Variable};
use crate::store::StoreError;


/// One `variable` row, decoded column by column so that one bad cell fails only its item.
pub(super) struct VariableRow {
    row_id: i64,
    key: Option<String>,
    val: Result<Option<String>, String>,
    description: Option<String>,
    is_encrypted: Option<bool>,
}

pub(super) struct ConnectionRow {
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

    pub(super) async fn probe_schema(&self) -> Result<MetastoreSchema, StoreError> {
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
        let sql = self.sql();
        let pairs: Vec<(String, bool)> = match &self.pool {
            Pool::Postgres(p) => {
                let mut c = p.get().await.map_err(|e| self.err_backend("probe schema", e))?;
                sqlx::query_as::<_, (String, bool)>(sql.columns()).bind(sql.table(table)).fetch_all(&mut *c).await
            }
            Pool::MySql(p) => {
                let mut c = p.get().await.map_err(|e| self.err_backend("probe schema", e))?;
                sqlx::query_as::<_, (String, bool)>(sql.columns()).bind(sql.db_schema).bind(table).fetch_all(&mut *c).await
            }
            Pool::Sqlite(p) => sqlx::query_as::<_, (String, bool)>(sql.columns()).bind(table).fetch_all(p).await,
        }
        .map_err(|e| self.err_backend("probe schema", e))?;
        Ok(pairs.into_iter().collect::<BTreeMap<_, _>>())
    }

    /// Best effort: a database without `alembic_version` is still read (detection uses columns).
    async fn alembic_revision(&self) -> Option<String> {
        let sql = self.sql().alembic_revision();
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

    pub(super) async fn variable_rows(&self) -> Result<Vec<VariableRow>, StoreError> {
        // The only dynamic part is the schema prefix, checked by validate_schema_name in open().
        let sql = self.sql().select_variables(&self.schema);
        stream_rows!(self, sql, "scan variables", variable_row)
    }

    pub(super) async fn connection_rows(&self) -> Result<Vec<ConnectionRow>, StoreError> {
        let sql = self.sql().select_connections(&self.schema);
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

    pub(super) fn variable_entry(&self, row: VariableRow) -> Option<(ItemId, Result<Entry, ItemError>)> {
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

    pub(super) fn connection_entry(&self, row: ConnectionRow) -> (ItemId, Result<Entry, ItemError>) {
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
