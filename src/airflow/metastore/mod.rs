//! What Airflow defines about its metastore, and nothing that talks to a database: the
//! SQLAlchemy URL forms users write in `[database] sql_alchemy_conn` ([`url`]), the `variable` and
//! `connection` tables across 2.x / 3.1 / 3.2+ with their column limits and alembic revisions
//! (spec §1.1, §1.2, §1.6; [`schema`]), and every statement the metastore store runs, per dialect
//! ([`sql`]). `crate::store::metastore` owns the connection, the transactions and the rows.

use std::fmt;

pub mod schema;
pub mod sql;
pub mod url;

pub use schema::{
    Columns, MAX_VALUE_BYTES, MAX_VALUE_BYTES_MYSQL, MetastoreSchema, TeamColumn, airflow_version_for_revision,
    check_columns, max_value_bytes,
};
pub use sql::{RotateSql, Sql, WriteSql, int64_expr, qualified_table, quote_ident, validate_schema_name};
pub use url::{ENV_SQL_ALCHEMY_CONN, ENV_SQL_ALCHEMY_SCHEMA, MetastoreUrl, UrlError, parse_sql_alchemy_url};

/// The three databases Airflow supports as a metastore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    /// SQLAlchemy's dialect name, used in `Display` and identity.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgresql",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    pub fn default_port(self) -> Option<u16> {
        match self {
            Dialect::Postgres => Some(5432),
            Dialect::MySql => Some(3306),
            Dialect::Sqlite => None,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
