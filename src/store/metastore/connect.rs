//! The metastore's database connection: one direct first attempt (the operator wants the reason
//! now), TLS through the TCP_NODELAY relay, and the failures a first connection maps to.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::ConnectOptions;

use super::MetastoreStore;
use crate::airflow::metastore::{Dialect, MetastoreUrl};
use crate::store::StoreError;
use crate::store::sql_conn::{NoDelayRelay, SingleConn, postgres_nodelay};

/// How long the first connection may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);


/// One connection per dialect (SQLite: a pool of local files): sqlx needs the driver named at
/// every query (dependencies.md). PostgreSQL and MySQL keep the single connection `open` made:
/// every query of a run is sequential, and each further connection costs a TCP connect, a TLS
/// handshake and a login.
pub(super) enum Pool {
    Postgres(SingleConn<PgConnection>),
    MySql(SingleConn<MySqlConnection>),
    Sqlite(SqlitePool),
}

pub(super) async fn connect(url: &MetastoreUrl, store: &str) -> Result<Pool, StoreError> {
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

impl MetastoreStore {
    /// After a failed query, the next one checks the connection first (and reopens it if lost).
    pub(super) fn suspect_connection(&self) {
        match &self.pool {
            Pool::Postgres(p) => p.suspect(),
            Pool::MySql(p) => p.suspect(),
            Pool::Sqlite(_) => {}
        }
    }

    pub(super) fn err_backend(&self, op: &'static str, e: impl fmt::Display) -> StoreError {
        self.suspect_connection();
        StoreError::Backend { store: self.to_string(), op, reason: self.url.scrub(&e.to_string()) }
    }
}
