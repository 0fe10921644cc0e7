//! Shared helpers for integration tests: throwaway databases on the local test servers, and the
//! location of the golden vectors (`tests/data`).
//!
//! The servers are started by `scripts/test` (PostgreSQL on 127.0.0.1:5432, user `postgres`, trust
//! auth; MariaDB on 127.0.0.1:3306, user `root`, no password). `ASS_TEST_PG_URL` and
//! `ASS_TEST_MYSQL_URL` override the admin URLs. A test that needs a server and cannot reach it
//! FAILS, naming the server and how to start it: it never passes silently.
#![allow(dead_code)]

use std::path::PathBuf;

use rand::Rng;
use sqlx::{AssertSqlSafe, Connection};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/mysql";

/// `tests/data`: golden vectors recorded from real Airflow (provenance in `tests/data/PROVENANCE.md`).
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

/// A random lowercase suffix for names that must not clash across concurrent tests.
pub fn unique_suffix() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MySql,
}

/// A database created for one test and dropped when this value is dropped.
pub struct TestDb {
    pub server: Server,
    /// The database name (`ass_test_<random>`).
    pub name: String,
    /// sqlx URL of the new database (`postgres://…/name` or `mysql://…/name`).
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// The same database as Airflow users write it (`postgresql+psycopg2://…`, `mysql+mysqldb://…`).
    pub fn sqlalchemy_url(&self) -> String {
        match self.server {
            Server::Postgres => self.url.replacen("postgres://", "postgresql+psycopg2://", 1),
            Server::MySql => self.url.replacen("mysql://", "mysql+mysqldb://", 1),
        }
    }
}

fn admin_url(server: Server) -> String {
    match server {
        Server::Postgres => std::env::var("ASS_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into()),
        Server::MySql => std::env::var("ASS_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_MYSQL_URL.into()),
    }
}

/// `scheme://auth@host:port/<db>` with the database path replaced.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("admin URL has a scheme");
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn unreachable(server: Server, url: &str, e: impl std::fmt::Display) -> ! {
    let (what, var) = match server {
        Server::Postgres => ("PostgreSQL", "ASS_TEST_PG_URL"),
        Server::MySql => ("MariaDB/MySQL", "ASS_TEST_MYSQL_URL"),
    };
    let shown = with_database(url, "…");
    panic!(
        "the {what} test server ({shown}) is unreachable: {e}\n\
         Run the tests through scripts/test, which starts it, or point {var} at a server."
    )
}

/// A fresh, empty PostgreSQL database.
pub async fn fresh_postgres() -> TestDb {
    fresh(Server::Postgres).await
}

/// A fresh, empty MariaDB/MySQL database (utf8mb4).
pub async fn fresh_mysql() -> TestDb {
    fresh(Server::MySql).await
}

async fn fresh(server: Server) -> TestDb {
    let admin = admin_url(server);
    let name = format!("ass_test_{}", unique_suffix());
    // The name is ours (hex), so splicing it into DDL is safe.
    let ddl = match server {
        Server::Postgres => format!("CREATE DATABASE {name}"),
        Server::MySql => format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
    };
    match server {
        Server::Postgres => {
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| unreachable(server, &admin, e));
            sqlx::query(AssertSqlSafe(ddl)).execute(&mut c).await.expect("CREATE DATABASE");
            let _ = c.close().await;
        }
        Server::MySql => {
            let mut c = sqlx::MySqlConnection::connect(&admin).await.unwrap_or_else(|e| unreachable(server, &admin, e));
            sqlx::query(AssertSqlSafe(ddl)).execute(&mut c).await.expect("CREATE DATABASE");
            let _ = c.close().await;
        }
    }
    TestDb { server, url: with_database(&admin, &name), name, admin_url: admin }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with its own.
        let (server, name, admin) = (self.server, self.name.clone(), self.admin_url.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                match server {
                    Server::Postgres => {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                            // FORCE (PG 13+): pools of the test may still hold idle connections.
                            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut c).await;
                        }
                    }
                    Server::MySql => {
                        if let Ok(mut c) = sqlx::MySqlConnection::connect(&admin).await {
                            let sql = format!("DROP DATABASE IF EXISTS {name}");
                            let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut c).await;
                        }
                    }
                }
            });
        });
        let _ = done.join();
    }
}

/// Run a script of `;`-separated statements (no `;` inside literals) on a PostgreSQL database.
pub async fn pg_exec_script(url: &str, script: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| unreachable(Server::Postgres, url, e));
    for stmt in split_script(script) {
        sqlx::query(AssertSqlSafe(stmt.clone())).execute(&mut c).await.unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
}

/// Run a script of `;`-separated statements on a MariaDB/MySQL database.
pub async fn mysql_exec_script(url: &str, script: &str) {
    let mut c = sqlx::MySqlConnection::connect(url).await.unwrap_or_else(|e| unreachable(Server::MySql, url, e));
    for stmt in split_script(script) {
        sqlx::query(AssertSqlSafe(stmt.clone())).execute(&mut c).await.unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
}

fn split_script(script: &str) -> Vec<String> {
    let without_comments: String =
        script.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    without_comments.split(';').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// A SQLite metastore at `db` with Airflow 3's schema and `n` Fernet-encrypted variables
/// `{prefix}{i:05}` (values `value-{i}-` plus `i % pad` x's); returns the key.
pub async fn seed_variables(
    db: &std::path::Path,
    n: usize,
    prefix: &str,
    pad: usize,
) -> airflow_secrets_sync::secret::SecretValue {
    use airflow_secrets_sync::airflow::fernet::AirflowFernet;
    use airflow_secrets_sync::secret::SecretValue;
    let key = airflow_secrets_sync::demo::generate_fernet_key();
    let fernet = AirflowFernet::from_key_string(&key).unwrap();
    let pool = airflow_secrets_sync::demo::create_empty_metastore(db).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        let val = fernet.encrypt(&SecretValue::from(format!("value-{i}-{}", "x".repeat(i % pad.max(1))))).unwrap();
        sqlx::query(r#"INSERT INTO variable ("key", val, is_encrypted) VALUES (?, ?, 1)"#)
            .bind(format!("{prefix}{i:05}"))
            .bind(val)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
    key
}
