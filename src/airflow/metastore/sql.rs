//! Every statement the metastore store runs, per dialect: identifier quoting, placeholders, the
//! scan SELECTs (columns by name, spec §1.2), the writes (spec §1.3), `rotate-fernet-key`'s
//! statements (spec §2.4) and the schema probes (spec §1.6). Only our own table and column names
//! and a schema name that passed [`validate_schema_name`] are ever spliced into SQL; every value is
//! a bound parameter.

use super::{Dialect, MetastoreSchema};
use crate::model::Kind;

/// Check `[database] sql_alchemy_schema` before it is spliced into SQL (sqlx's `AssertSqlSafe`):
/// a plain identifier, as PostgreSQL and MySQL accept unquoted.
pub fn validate_schema_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || name.len() > 63 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
        return Err(format!(
            "sql_alchemy_schema '{}' is not a plain identifier ([A-Za-z_][A-Za-z0-9_$]*, at most 63 characters)",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Quote an identifier for `dialect`. Only ever called with our own column/table names or a
/// schema name that passed [`validate_schema_name`].
pub fn quote_ident(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::MySql => format!("`{}`", name.replace('`', "``")),
        Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// `"schema"."table"` or `"table"`.
pub fn qualified_table(dialect: Dialect, schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", quote_ident(dialect, s), quote_ident(dialect, table)),
        None => quote_ident(dialect, table),
    }
}

impl MetastoreSchema {
    /// SELECT of every variable, columns by name (column order differs between fresh and migrated
    /// databases, spec §1.2). Result columns: key, val, description, is_encrypted.
    pub fn select_variables(&self, dialect: Dialect, schema: Option<&str>) -> String {
        let q = |c: &str| quote_ident(dialect, c);
        let description = if self.variable_has_description { q("description") } else { "NULL".to_string() };
        format!(
            "SELECT {id} AS {id_alias}, {key} AS {key}, {val} AS {val}, {description} AS {desc_alias}, {enc} AS {enc} FROM {table} ORDER BY {id}",
            id = int64_expr(dialect, "id"),
            id_alias = q("id"),
            key = q("key"),
            val = q("val"),
            desc_alias = q("description"),
            enc = q("is_encrypted"),
            table = qualified_table(dialect, schema, "variable"),
        )
    }

    /// SELECT of every connection. Result columns: conn_id, conn_type, description, host,
    /// schema, login, password, port (as a 64-bit integer), extra, is_encrypted, is_extra_encrypted.
    pub fn select_connections(&self, dialect: Dialect, schema: Option<&str>) -> String {
        let q = |c: &str| quote_ident(dialect, c);
        let description = if self.connection_has_description { q("description") } else { "NULL".to_string() };
        let port = int64_expr(dialect, "port");
        format!(
            "SELECT {conn_id}, {conn_type}, {description} AS {desc_alias}, {host}, {schema_col}, {login}, {password}, \
             {port} AS {port_alias}, {extra}, {enc} AS {enc}, {xenc} AS {xenc} FROM {table} ORDER BY {id}",
            id = q("id"),
            conn_id = q("conn_id"),
            conn_type = q("conn_type"),
            desc_alias = q("description"),
            host = q("host"),
            schema_col = q("schema"),
            login = q("login"),
            password = q("password"),
            port_alias = q("port"),
            extra = q("extra"),
            enc = q("is_encrypted"),
            xenc = q("is_extra_encrypted"),
            table = qualified_table(dialect, schema, "connection"),
        )
    }
}

/// `column` as a 64-bit integer: one type to decode on every dialect (PG INTEGER is int4, MySQL
/// INT is i32, SQLite is i64).
pub fn int64_expr(dialect: Dialect, column: &str) -> String {
    let c = quote_ident(dialect, column);
    match dialect {
        Dialect::Postgres => format!("CAST({c} AS BIGINT)"),
        Dialect::MySql => format!("CAST({c} AS SIGNED)"),
        Dialect::Sqlite => c,
    }
}

/// The statements for one database: its dialect and `[database] sql_alchemy_schema` (validated).
#[derive(Clone, Copy, Debug)]
pub struct Sql<'a> {
    pub dialect: Dialect,
    pub db_schema: Option<&'a str>,
}

/// The statements of one flush, built once per dialect and schema. Bind order: `*_exists` and
/// `*_delete` take the key; `*_insert` and `*_update` take the written columns
/// ([`Sql::variable_columns`], [`Sql::connection_columns`]) in order, then the key.
pub struct WriteSql {
    pub var_exists: String,
    pub conn_exists: String,
    pub var_delete: String,
    pub conn_delete: String,
    pub var_insert: String,
    pub var_update: String,
    pub conn_insert: String,
    pub conn_update: String,
}

/// `airflow rotate-fernet-key`'s statements. The SELECTs return the flagged rows only
/// (variables: id, key, val; connections: id, conn_id, password, extra, is_encrypted,
/// is_extra_encrypted); `update_variable` binds val then id, `update_connection` password, extra, id.
pub struct RotateSql {
    pub select_variables: String,
    pub select_connections: String,
    pub update_variable: String,
    pub update_connection: String,
}

impl Sql<'_> {
    /// The `n`-th (1-based) bind placeholder.
    pub fn ph(&self, n: usize) -> String {
        match self.dialect {
            Dialect::Postgres => format!("${n}"),
            Dialect::MySql | Dialect::Sqlite => "?".into(),
        }
    }

    /// A table of the metastore, schema-qualified when a schema is configured.
    pub fn table(&self, name: &str) -> String {
        qualified_table(self.dialect, self.db_schema, name)
    }

    fn q(&self, col: &str) -> String {
        quote_ident(self.dialect, col)
    }

    /// The scan's SELECT of every variable (see [`MetastoreSchema::select_variables`]).
    pub fn select_variables(&self, schema: &MetastoreSchema) -> String {
        schema.select_variables(self.dialect, self.db_schema)
    }

    /// The scan's SELECT of every connection (see [`MetastoreSchema::select_connections`]).
    pub fn select_connections(&self, schema: &MetastoreSchema) -> String {
        schema.select_connections(self.dialect, self.db_schema)
    }

    fn exists(&self, kind: Kind) -> String {
        let (table, key) = match kind {
            Kind::Variable => ("variable", "key"),
            Kind::Connection => ("connection", "conn_id"),
        };
        format!("SELECT 1 FROM {} WHERE {} = {}", self.table(table), self.q(key), self.ph(1))
    }

    fn delete(&self, kind: Kind) -> String {
        self.exists(kind).replacen("SELECT 1 FROM", "DELETE FROM", 1)
    }

    /// Columns written for a variable, in bind order (the key is bound last for UPDATE).
    pub fn variable_columns(schema: &MetastoreSchema, with_team: bool) -> Vec<&'static str> {
        let mut cols = vec!["val", "is_encrypted"];
        if schema.variable_has_description {
            cols.push("description");
        }
        if with_team {
            cols.push("team_name");
        }
        cols
    }

    /// Columns written for a connection, in bind order (the key is bound last for UPDATE).
    pub fn connection_columns(schema: &MetastoreSchema, with_team: bool) -> Vec<&'static str> {
        let mut cols =
            vec!["conn_type", "host", "schema", "login", "password", "port", "extra", "is_encrypted", "is_extra_encrypted"];
        if schema.connection_has_description {
            cols.push("description");
        }
        if with_team {
            cols.push("team_name");
        }
        cols
    }

    fn insert(&self, table: &str, key: &str, cols: &[&str]) -> String {
        let names: Vec<String> = cols.iter().map(|c| self.q(c)).chain([self.q(key)]).collect();
        let phs: Vec<String> = (1..=names.len()).map(|i| self.ph(i)).collect();
        format!("INSERT INTO {} ({}) VALUES ({})", self.table(table), names.join(", "), phs.join(", "))
    }

    fn update(&self, table: &str, key: &str, cols: &[&str]) -> String {
        let sets: Vec<String> = cols.iter().enumerate().map(|(i, c)| format!("{} = {}", self.q(c), self.ph(i + 1))).collect();
        format!("UPDATE {} SET {} WHERE {} = {}", self.table(table), sets.join(", "), self.q(key), self.ph(cols.len() + 1))
    }

    /// The statements of a flush, for tables shaped as `schema` (`with_team`: new rows get a
    /// `team_name`).
    pub fn write(&self, schema: &MetastoreSchema, with_team: bool) -> WriteSql {
        let var_cols = Self::variable_columns(schema, with_team);
        let conn_cols = Self::connection_columns(schema, with_team);
        WriteSql {
            var_exists: self.exists(Kind::Variable),
            conn_exists: self.exists(Kind::Connection),
            var_delete: self.delete(Kind::Variable),
            conn_delete: self.delete(Kind::Connection),
            var_insert: self.insert("variable", "key", &var_cols),
            var_update: self.update("variable", "key", &var_cols),
            conn_insert: self.insert("connection", "conn_id", &conn_cols),
            conn_update: self.update("connection", "conn_id", &conn_cols),
        }
    }

    /// `rotate-fernet-key`'s statements (see [`RotateSql`]).
    pub fn rotate(&self) -> RotateSql {
        let q = |c: &str| self.q(c);
        let enc = |c: &str| match self.dialect {
            Dialect::Postgres => format!("CAST({} AS BOOLEAN)", q(c)),
            _ => q(c),
        };
        let select_variables = format!(
            "SELECT {}, {}, {} FROM {} WHERE {} ORDER BY {}",
            int64_expr(self.dialect, "id"),
            q("key"),
            q("val"),
            self.table("variable"),
            enc("is_encrypted"),
            q("id")
        );
        let select_connections = format!(
            "SELECT {}, {}, {}, {}, {}, {} FROM {} WHERE {} OR {} ORDER BY {}",
            int64_expr(self.dialect, "id"),
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
        let update_variable =
            format!("UPDATE {} SET {} = {} WHERE {} = {}", self.table("variable"), q("val"), self.ph(1), q("id"), self.ph(2));
        let update_connection = format!(
            "UPDATE {} SET {} = {}, {} = {} WHERE {} = {}",
            self.table("connection"),
            q("password"),
            self.ph(1),
            q("extra"),
            self.ph(2),
            q("id"),
            self.ph(3)
        );
        RotateSql { select_variables, select_connections, update_variable, update_connection }
    }

    /// The query listing a table's columns as (name, nullable), no rows for a missing table.
    /// Binds: PostgreSQL the table as [`Sql::table`] names it (`to_regclass` resolves an unqualified
    /// name through `search_path` exactly as the unqualified SELECT will); MySQL the schema
    /// (`NULL`: the connection's database) then the table; SQLite the table.
    pub fn columns(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => {
                "SELECT a.attname::text, NOT a.attnotnull FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped"
            }
            Dialect::MySql => {
                "SELECT CAST(column_name AS CHAR), is_nullable = 'YES' FROM information_schema.columns \
                 WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?"
            }
            Dialect::Sqlite => "SELECT name, \"notnull\" = 0 FROM pragma_table_info(?)",
        }
    }

    /// The alembic head the database was migrated to (`alembic_version.version_num`).
    pub fn alembic_revision(&self) -> String {
        format!("SELECT {} FROM {}", self.q("version_num"), self.table("alembic_version"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::airflow::metastore::TeamColumn;

    #[test]
    fn schema_names_are_validated_and_identifiers_quoted() {
        assert!(validate_schema_name("airflow_meta").is_ok());
        for bad in ["", "1abc", "a b", "x\";drop table variable;--", "a.b"] {
            assert!(validate_schema_name(bad).is_err(), "{bad}");
        }
        assert_eq!(quote_ident(Dialect::MySql, "key"), "`key`");
        assert_eq!(quote_ident(Dialect::Postgres, "schema"), "\"schema\"");
        assert_eq!(qualified_table(Dialect::Postgres, Some("af"), "variable"), "\"af\".\"variable\"");
    }

    #[test]
    fn selects_quote_reserved_words_per_dialect() {
        let s = MetastoreSchema {
            team: TeamColumn::None,
            nullable_flags: true,
            variable_has_description: true,
            connection_has_description: false,
            alembic_revision: Some("5f2621c13b39".into()),
        };
        let v = s.select_variables(Dialect::MySql, None);
        assert!(v.contains("`key`") && v.contains("FROM `variable`"), "{v}");
        let c = s.select_connections(Dialect::MySql, Some("af"));
        assert!(c.contains("`schema`") && c.contains("FROM `af`.`connection`") && c.contains("NULL AS `description`"), "{c}");
        let c = s.select_connections(Dialect::Postgres, None);
        assert!(c.contains("\"schema\"") && c.contains("CAST(\"port\" AS BIGINT)"), "{c}");
        assert_eq!(s.airflow_version(), Some("2.10.3"));
    }

    #[test]
    fn writes_bind_the_columns_then_the_key_per_dialect() {
        let s = MetastoreSchema {
            team: TeamColumn::TeamName,
            nullable_flags: false,
            variable_has_description: true,
            connection_has_description: true,
            alembic_revision: None,
        };
        let pg = Sql { dialect: Dialect::Postgres, db_schema: Some("af") }.write(&s, true);
        assert_eq!(pg.var_exists, "SELECT 1 FROM \"af\".\"variable\" WHERE \"key\" = $1");
        assert_eq!(pg.conn_delete, "DELETE FROM \"af\".\"connection\" WHERE \"conn_id\" = $1");
        assert_eq!(
            pg.var_insert,
            "INSERT INTO \"af\".\"variable\" (\"val\", \"is_encrypted\", \"description\", \"team_name\", \"key\") VALUES ($1, $2, $3, $4, $5)"
        );
        assert_eq!(
            pg.var_update,
            "UPDATE \"af\".\"variable\" SET \"val\" = $1, \"is_encrypted\" = $2, \"description\" = $3, \"team_name\" = $4 WHERE \"key\" = $5"
        );
        let my = Sql { dialect: Dialect::MySql, db_schema: None }.write(&s, false);
        assert!(my.conn_update.starts_with("UPDATE `connection` SET `conn_type` = ?, `host` = ?"), "{}", my.conn_update);
        assert!(my.conn_update.ends_with("`description` = ? WHERE `conn_id` = ?"), "{}", my.conn_update);
        let rot = Sql { dialect: Dialect::Postgres, db_schema: None }.rotate();
        assert!(rot.select_variables.contains("WHERE CAST(\"is_encrypted\" AS BOOLEAN)"), "{}", rot.select_variables);
        assert_eq!(rot.update_connection, "UPDATE \"connection\" SET \"password\" = $1, \"extra\" = $2 WHERE \"id\" = $3");
    }
}
