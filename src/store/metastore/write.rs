//! Writing the metastore: entries turned into the rows Airflow would write (encrypted with the
//! first key, spec §1.3), buffered, then run in one transaction; and `rotate-fernet-key`.

use sqlx::AssertSqlSafe;

use super::{MetastoreStore, OnConflict};
use super::connect::Pool;
use crate::airflow::metastore::{RotateSql, check_columns};
use crate::model::{Entry, ItemError, ItemErrorKind, ItemId, Kind, SecretValue, Value};
use crate::store::{Precondition, StoreError};


/// What `rotate_fernet_key` re-encrypted (or would have, with `dry_run`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotateReport {
    pub variables: usize,
    pub connections: usize,
}


/// A buffered change, already encrypted exactly as Airflow would store it.
pub(super) enum RowOp {
    Variable { key: String, val: SecretValue, description: Option<String>, is_encrypted: bool, absent: bool },
    Connection(Box<ConnectionWrite>),
    Delete(ItemId),
}

pub(super) struct ConnectionWrite {
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

impl MetastoreStore {
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
    pub(super) fn admit(entry: &Entry) -> Result<(), ItemError> {
        check_columns(entry).map_err(|d| ItemError::new(ItemErrorKind::InvalidName, d))
    }

    /// Turn an entry into the row Airflow would write (spec §1.3).
    pub(super) fn prepare(&self, entry: &Entry, pre: &Precondition) -> Result<RowOp, StoreError> {
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


    /// Run `ops` in ONE transaction: a failure leaves the metastore as it was (like `airflow
    /// connections import`).
    pub(super) async fn apply_ops(&self, ops: Vec<RowOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let sql = self.sql().write(&self.schema, self.team_name.is_some());
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
        let RotateSql {
            select_variables: select_vars,
            select_connections: select_conns,
            update_variable: update_var,
            update_connection: update_conn,
        } = self.sql().rotate();
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

}
