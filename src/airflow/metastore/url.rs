//! `[database] sql_alchemy_conn` as Airflow users write it: SQLAlchemy URLs, and the URL sqlx
//! understands for the same database.

use std::fmt;

use super::Dialect;

/// Env fallbacks Airflow itself reads for the two `[database]` options.
pub const ENV_SQL_ALCHEMY_CONN: &str = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN";
pub const ENV_SQL_ALCHEMY_SCHEMA: &str = "AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA";

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


#[cfg(test)]
mod tests {
    use super::*;

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
}
