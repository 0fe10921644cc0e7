//! What Airflow defines about its metastore, and nothing that talks to a database: the
//! SQLAlchemy URL forms users write in `[database] sql_alchemy_conn`, the `variable` and
//! `connection` tables across 2.x / 3.1 / 3.2+ (spec §1.1, §1.2), schema detection by probing
//! columns (spec §1.6 "robust schema detection", §9 item 7), identifier quoting per dialect and the
//! SELECTs the metastore store runs. `crate::store::metastore` owns the connection and the rows.

use std::collections::BTreeMap;
use std::fmt;

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

/// Why a `sql_alchemy_conn` value is not one we can use. Never contains the password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("sql_alchemy_conn: {0}")]
pub struct UrlError(pub String);

/// A parsed SQLAlchemy URL: where it points, and the URL sqlx understands.
///
/// `Debug` is hand-written: `sqlx_url` holds the password.
#[derive(Clone, PartialEq, Eq)]
pub struct MetastoreUrl {
    pub dialect: Dialect,
    /// Host as written (empty for a Unix socket or SQLite).
    pub host: String,
    pub port: Option<u16>,
    /// Database name (PG/MySQL) or file path (SQLite, exactly as SQLAlchemy resolves it).
    pub database: String,
    /// The password, as written and percent-decoded; kept only so error texts can be scrubbed.
    password: Vec<String>,
    /// The URL handed to sqlx (`postgres://`, `mysql://`); for SQLite, the bare path.
    sqlx_url: String,
}

impl fmt::Debug for MetastoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetastoreUrl")
            .field("dialect", &self.dialect)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl MetastoreUrl {
    /// The connection string for sqlx (credentials included: never log it).
    pub fn sqlx_url(&self) -> &str {
        &self.sqlx_url
    }

    /// `host:port/db` (or the SQLite path) without credentials, for messages and identity.
    pub fn location(&self) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("/{}", self.database),
            _ => {
                let port = self.port.or(self.dialect.default_port()).map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}{port}/{}", self.host, self.database)
            }
        }
    }

    /// Replace every occurrence of the password (raw and percent-encoded) in a driver message.
    /// Drivers do not normally echo it; this is a second line of defence for error texts.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_string();
        for pw in self.password.iter().filter(|p| !p.is_empty()) {
            out = out.replace(pw.as_str(), "***");
        }
        out
    }
}

impl fmt::Display for MetastoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.dialect, self.location())
    }
}

/// Parse `sql_alchemy_conn` as Airflow users write it: `dialect[+driver]://user:pass@host:port/db?…`.
///
/// The `+driver` part (psycopg2, mysqldb, pymysql, ...) picks a Python DBAPI and means nothing to
/// us, so it is dropped (dependencies.md pitfall 9). SQLite follows SQLAlchemy: `sqlite:////abs`
/// is the absolute path `/abs`, `sqlite:///rel` is the relative path `rel`.
pub fn parse_sql_alchemy_url(url: &str) -> Result<MetastoreUrl, UrlError> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(UrlError("not a URL (expected dialect://…, e.g. postgresql+psycopg2://user@host/airflow)".into()));
    };
    let dialect_name = scheme.split('+').next().unwrap_or_default().to_ascii_lowercase();
    let dialect = match dialect_name.as_str() {
        "postgresql" | "postgres" => Dialect::Postgres,
        "mysql" | "mariadb" => Dialect::MySql,
        "sqlite" => Dialect::Sqlite,
        other => {
            return Err(UrlError(format!(
                "unsupported database '{}' (supported: postgresql, mysql, sqlite)",
                other.escape_debug()
            )));
        }
    };

    if dialect == Dialect::Sqlite {
        // SQLAlchemy: everything after `sqlite:///` is the path; a query string is driver options.
        let path = rest.split('?').next().unwrap_or_default();
        let Some(path) = path.strip_prefix('/') else {
            return Err(UrlError("a SQLite URL needs a path: sqlite:////absolute/path or sqlite:///relative/path".into()));
        };
        if path.is_empty() || path == ":memory:" {
            return Err(UrlError("an in-memory SQLite database holds no Airflow metastore".into()));
        }
        let decoded = percent_decode(path)?;
        return Ok(MetastoreUrl {
            dialect,
            host: String::new(),
            port: None,
            database: decoded.clone(),
            password: Vec::new(),
            sqlx_url: decoded,
        });
    }

    // Split authority / path / query the way urlsplit does.
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i + 1..]),
        None => (before_query, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let password = match userinfo.and_then(|u| u.split_once(':')) {
        Some((_, pw)) => vec![pw.to_string(), percent_decode(pw)?],
        None => Vec::new(),
    };
    let (host, port_text) = if let Some(stripped) = hostport.strip_prefix('[') {
        let Some(end) = stripped.find(']') else {
            return Err(UrlError("unterminated IPv6 address in the host".into()));
        };
        let after = &stripped[end + 1..];
        (&hostport[..end + 2], after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port_text {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| UrlError(format!("invalid port '{}'", p.escape_debug())))?),
    };
    let database = percent_decode(path)?;
    let sqlx_scheme = match dialect {
        Dialect::Postgres => "postgres",
        _ => "mysql",
    };
    let mut sqlx_url = format!("{sqlx_scheme}://{authority}/{path}");
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        sqlx_url.push('?');
        match dialect {
            Dialect::MySql => sqlx_url.push_str(&mysql_query(q)),
            _ => sqlx_url.push_str(q),
        }
    }
    Ok(MetastoreUrl { dialect, host: host.to_string(), port, database, password, sqlx_url })
}

/// MySQL TLS options as SQLAlchemy users write them for mysqlclient (`ssl_mode=REQUIRED`,
/// `ssl_ca=…`, `ssl_cert=…`, `ssl_key=…`), in the names sqlx reads (`ssl-mode`, `ssl-ca`, …),
/// which would otherwise ignore them silently (a `VERIFY_IDENTITY` dropped is no verification).
/// `ssl_mode` takes MySQL's values: DISABLED, PREFERRED (the default), REQUIRED, VERIFY_CA,
/// VERIFY_IDENTITY. Other options pass through as written.
fn mysql_query(query: &str) -> String {
    let renamed = |key: &str| match key {
        "ssl_mode" | "sslmode" => Some("ssl-mode"),
        "ssl_ca" => Some("ssl-ca"),
        "ssl_cert" => Some("ssl-cert"),
        "ssl_key" => Some("ssl-key"),
        _ => None,
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => match renamed(k) {
                Some(k) => format!("{k}={v}"),
                None => pair.to_string(),
            },
            None => pair.to_string(),
        })
        .collect();
    pairs.join("&")
}

fn percent_decode(s: &str) -> Result<String, UrlError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| UrlError("a percent-encoded part is not UTF-8".into()))
}

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

/// Which multi-team column the tables carry (spec §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeamColumn {
    /// 2.x and 3.0.
    None,
    /// 3.1.x: `team_id` UUID.
    TeamId,
    /// 3.2+: `team_name` (revision `b12d4f98a91e`).
    TeamName,
}

/// The shape of the two tables as found in a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetastoreSchema {
    pub team: TeamColumn,
    /// Whether `is_encrypted` / `variable.val` may be NULL (2.x to 3.1; NOT NULL from 3.2,
    /// revision `888b59e02a5b`).
    pub nullable_flags: bool,
    pub variable_has_description: bool,
    pub connection_has_description: bool,
    /// `alembic_version.version_num`, for reporting only (detection uses the columns).
    pub alembic_revision: Option<String>,
}

/// Column name → nullable, as probed from the database.
pub type Columns = BTreeMap<String, bool>;

const VARIABLE_REQUIRED: &[&str] = &["key", "val", "is_encrypted"];
const CONNECTION_REQUIRED: &[&str] =
    &["conn_id", "conn_type", "host", "schema", "login", "password", "port", "extra", "is_encrypted", "is_extra_encrypted"];

impl MetastoreSchema {
    /// Classify the tables from their columns. `Err` names what is missing.
    pub fn detect(variable: &Columns, connection: &Columns) -> Result<Self, String> {
        if variable.is_empty() && connection.is_empty() {
            return Err("no Airflow metastore tables (variable, connection)".into());
        }
        for (table, cols, required) in
            [("variable", variable, VARIABLE_REQUIRED), ("connection", connection, CONNECTION_REQUIRED)]
        {
            if cols.is_empty() {
                return Err(format!("no Airflow '{table}' table"));
            }
            let missing: Vec<&str> = required.iter().copied().filter(|c| !cols.contains_key(*c)).collect();
            if !missing.is_empty() {
                return Err(format!(
                    "table '{table}' lacks column(s) {} (not an Airflow 2.x/3.x metastore?)",
                    missing.join(", ")
                ));
            }
        }
        let team = if variable.contains_key("team_name") || connection.contains_key("team_name") {
            TeamColumn::TeamName
        } else if variable.contains_key("team_id") || connection.contains_key("team_id") {
            TeamColumn::TeamId
        } else {
            TeamColumn::None
        };
        let nullable_flags = variable.get("is_encrypted").copied().unwrap_or(true)
            || variable.get("val").copied().unwrap_or(true)
            || connection.get("is_encrypted").copied().unwrap_or(true)
            || connection.get("is_extra_encrypted").copied().unwrap_or(true);
        Ok(Self {
            team,
            nullable_flags,
            variable_has_description: variable.contains_key("description"),
            connection_has_description: connection.contains_key("description"),
            alembic_revision: None,
        })
    }

    /// A short human name for the generation found: "2.x/3.0", "3.1", "3.2+".
    pub fn generation(&self) -> &'static str {
        match (self.team, self.nullable_flags) {
            (TeamColumn::TeamName, _) => "3.2+",
            (TeamColumn::TeamId, _) => "3.1",
            (TeamColumn::None, true) => "2.x/3.0",
            (TeamColumn::None, false) => "3.2+ (no team column)",
        }
    }

    /// The Airflow release whose migrations end at this revision (spec §1.6), for reporting.
    pub fn airflow_version(&self) -> Option<&'static str> {
        self.alembic_revision.as_deref().and_then(airflow_version_for_revision)
    }

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
/// A column read as a 64-bit integer on every dialect.
pub fn int64_expr(dialect: Dialect, column: &str) -> String {
    let c = quote_ident(dialect, column);
    match dialect {
        Dialect::Postgres => format!("CAST({c} AS BIGINT)"),
        Dialect::MySql => format!("CAST({c} AS SIGNED)"),
        Dialect::Sqlite => c,
    }
}

/// The Airflow release a head revision belongs to (spec §1.6; unlisted patch releases share the
/// previous head, so this names the first release with that head).
pub fn airflow_version_for_revision(revision: &str) -> Option<&'static str> {
    const HEADS: &[(&str, &str)] = &[
        ("e959f08ac86c", "2.0.0"),
        ("82b7c48c147f", "2.0.1"),
        ("2e42bb497a22", "2.0.2"),
        ("a13f7613ad25", "2.1.0"),
        ("97cdd93827b8", "2.1.3"),
        ("ccde3e26fe78", "2.1.4"),
        ("7b2661a43ba3", "2.2.0"),
        ("be2bfac3da23", "2.2.3"),
        ("587bdf053233", "2.2.4"),
        ("b1b348e02d07", "2.3.0"),
        ("1de7bc13c950", "2.3.1"),
        ("3c94c427fdf6", "2.3.2"),
        ("f5fcbda3e651", "2.3.3"),
        ("ecb43d2a1842", "2.4.0"),
        ("b0d31815b5a6", "2.4.2"),
        ("e07f49787c9d", "2.4.3"),
        ("290244fb8b83", "2.5.0"),
        ("98ae134e6fff", "2.6.0"),
        ("c804e5c76e3e", "2.6.2"),
        ("4bc4d934e2bc", "2.6.2"),
        ("405de8318b3a", "2.7.0"),
        ("10b52ebd31f7", "2.8.0"),
        ("88344c1d9134", "2.8.1"),
        ("1949afb29106", "2.9.0"),
        ("686269002441", "2.9.2"),
        ("22ed7efa9da2", "2.10.0"),
        ("5f2621c13b39", "2.10.3"),
        ("29ce7909c52b", "3.0.0"),
        ("fe199e1abd77", "3.0.3"),
        ("cc92b33c6709", "3.1.0"),
        ("509b94a1042d", "3.1.8"),
        ("1d6611b6ab7c", "3.2.0"),
        ("d2f4e1b3c5a7", "3.3.0"),
    ];
    HEADS.iter().find(|(r, _)| *r == revision).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(list: &[(&str, bool)]) -> Columns {
        list.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    }

    #[test]
    fn sqlalchemy_urls_as_airflow_users_write_them() {
        for (url, dialect, host, port, db) in [
            ("postgresql+psycopg2://airflow:pw@db.example.com:6432/airflow", Dialect::Postgres, "db.example.com", Some(6432), "airflow"),
            ("postgresql://u@localhost/af", Dialect::Postgres, "localhost", None, "af"),
            ("postgres://u:p@h/af?sslmode=require", Dialect::Postgres, "h", None, "af"),
            ("mysql+mysqldb://u:p@mysql:3306/airflow", Dialect::MySql, "mysql", Some(3306), "airflow"),
            ("mysql+pymysql://u:p@[::1]:3307/airflow?charset=utf8mb4", Dialect::MySql, "[::1]", Some(3307), "airflow"),
            ("mysql://u@h/a", Dialect::MySql, "h", None, "a"),
        ] {
            let u = parse_sql_alchemy_url(url).unwrap();
            assert_eq!((u.dialect, u.host.as_str(), u.port, u.database.as_str()), (dialect, host, port, db), "{url}");
            assert!(!u.sqlx_url().contains('+'), "{url}: driver not stripped");
        }
        let u = parse_sql_alchemy_url("postgresql+psycopg2://u:p@h/af?sslmode=require").unwrap();
        assert_eq!(u.sqlx_url(), "postgres://u:p@h/af?sslmode=require");
        let u = parse_sql_alchemy_url("mysql+mysqldb://u:p@h:3306/af").unwrap();
        assert_eq!(u.sqlx_url(), "mysql://u:p@h:3306/af");
        // mysqlclient's TLS options, in the names sqlx reads.
        let u = parse_sql_alchemy_url("mysql+mysqldb://u:p@h/af?charset=utf8mb4&ssl_mode=VERIFY_IDENTITY&ssl_ca=/etc/ca.pem")
            .unwrap();
        assert_eq!(u.sqlx_url(), "mysql://u:p@h/af?charset=utf8mb4&ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ca.pem");
        let opts: sqlx::mysql::MySqlConnectOptions = u.sqlx_url().parse().unwrap();
        assert!(format!("{opts:?}").contains("VerifyIdentity"), "{opts:?}");
    }

    #[test]
    fn sqlite_paths_follow_sqlalchemy() {
        let abs = parse_sql_alchemy_url("sqlite:////opt/airflow/airflow.db").unwrap();
        assert_eq!((abs.dialect, abs.database.as_str()), (Dialect::Sqlite, "/opt/airflow/airflow.db"));
        assert_eq!(abs.to_string(), "sqlite:////opt/airflow/airflow.db");
        let rel = parse_sql_alchemy_url("sqlite:///airflow.db").unwrap();
        assert_eq!(rel.database, "airflow.db");
        assert!(parse_sql_alchemy_url("sqlite://").is_err());
        assert!(parse_sql_alchemy_url("sqlite:///:memory:").is_err());
    }

    #[test]
    fn unknown_or_broken_urls_are_refused_clearly() {
        let e = parse_sql_alchemy_url("mssql+pyodbc://u:p@h/db").unwrap_err();
        assert!(e.to_string().contains("unsupported database 'mssql'"), "{e}");
        assert!(parse_sql_alchemy_url("just-a-path").is_err());
        let e = parse_sql_alchemy_url("postgresql://u:hunter2@h:99999/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn display_and_debug_never_show_the_password() {
        let u = parse_sql_alchemy_url("postgresql+psycopg2://airflow:s%40cret-canary@db:5432/airflow").unwrap();
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert_eq!(u.to_string(), "postgresql://db:5432/airflow");
        assert_eq!(u.scrub("failed for s@cret-canary and s%40cret-canary"), "failed for *** and ***");
    }

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
    fn detection_tells_2x_31_and_32_apart() {
        let var2 = cols(&[("id", false), ("key", true), ("val", true), ("description", true), ("is_encrypted", true)]);
        let conn2 = cols(&[
            ("id", false), ("conn_id", false), ("conn_type", false), ("description", true), ("host", true),
            ("schema", true), ("login", true), ("password", true), ("port", true), ("extra", true),
            ("is_encrypted", true), ("is_extra_encrypted", true),
        ]);
        let s = MetastoreSchema::detect(&var2, &conn2).unwrap();
        assert_eq!((s.team, s.nullable_flags), (TeamColumn::None, true));

        let mut var31 = var2.clone();
        var31.insert("team_id".into(), true);
        assert_eq!(MetastoreSchema::detect(&var31, &conn2).unwrap().team, TeamColumn::TeamId);

        let mut var32: Columns = var2.keys().map(|c| (c.clone(), c == "description")).collect();
        var32.insert("team_name".into(), true);
        let mut conn32: Columns = conn2.iter().map(|(c, n)| (c.clone(), *n && !c.starts_with("is_"))).collect();
        conn32.insert("team_name".into(), true);
        let s = MetastoreSchema::detect(&var32, &conn32).unwrap();
        assert_eq!((s.team, s.nullable_flags, s.generation()), (TeamColumn::TeamName, false, "3.2+"));

        let e = MetastoreSchema::detect(&Columns::new(), &Columns::new()).unwrap_err();
        assert!(e.contains("variable, connection"), "{e}");
        let e = MetastoreSchema::detect(&cols(&[("key", true)]), &conn2).unwrap_err();
        assert!(e.contains("val, is_encrypted"), "{e}");
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
}
