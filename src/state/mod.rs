//! The tool's own state database: runs, their journal, encrypted rollback snapshots and the
//! per-target apply lock. It owns `migrations/{sqlite,postgres}` and all SQL against them.
//!
//! SQLite at a path by default (one operator, one machine); PostgreSQL when `[state] url` is given
//! (a daemon with replicas). Queries are runtime `sqlx::query` with `$N` placeholders, which both
//! drivers accept (dependencies.md: no `query!`, no build-time database).
//!
//! It must never hold plaintext: item ids (shown in every plan anyway) and keyed HMAC fingerprints
//! are stored as they are; values exist only sealed (`snapshots.rs`). The snapshot key is never
//! written here.

use std::path::{Path, PathBuf};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::config::StateConfig;

pub mod journal;
pub mod runs;
pub mod snapshots;

pub use journal::RunJournal;
pub use runs::{JournalState, RunKind, RunRecord, RunStatus};
pub use snapshots::{SnapshotKey, SNAPSHOT_KEY_ENV};

/// The default SQLite location, relative to the config file's directory.
pub const DEFAULT_STATE_PATH: &str = ".airflow-secrets-sync/state.db";

/// Failures of the safety engine. None carries a value; database errors keep sqlx's message,
/// which names tables and constraints, never bound parameters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("state database {db}: {op}: {reason}")]
    Db { db: String, op: &'static str, reason: String },
    #[error("snapshot key: {0}")]
    Key(String),
    #[error("{target} is locked by another apply ({holder}); wait for it to finish")]
    Locked { target: String, holder: String },
    #[error("no run {0} in the state database (see `runs`)")]
    NoRun(String),
    #[error("run {run}: {message}")]
    Run { run: String, message: String },
    #[error("snapshot of run {run}: {id} does not decrypt ({why})")]
    Sealed { run: String, id: String, why: &'static str },
}


pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Run one body against whichever pool the state lives in (the body is compiled per driver).
macro_rules! on_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match &$db.pool {
            $crate::state::Pool::Sqlite($p) => $body,
            $crate::state::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// An open state database.
pub struct StateDb {
    pub(crate) pool: Pool,
    label: String,
    /// SQLite only: where per-target OS lock files live.
    lock_dir: Option<PathBuf>,
    /// PostgreSQL over TCP: what the pool connects through (sets TCP_NODELAY).
    _relay: Option<crate::store::sql_conn::NoDelayRelay>,
}

impl std::fmt::Display for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateDb({})", self.label)
    }
}

impl StateDb {
    /// Open (creating and migrating) the state database `cfg` names.
    pub async fn open(cfg: &StateConfig) -> Result<StateDb, StateError> {
        match &cfg.url {
            Some(url) => Self::open_postgres(url).await,
            None => Self::open_sqlite(&Self::sqlite_path(cfg)).await,
        }
    }

    /// Where the SQLite state lives for `cfg`.
    pub fn sqlite_path(cfg: &StateConfig) -> PathBuf {
        let p = cfg.path.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH));
        match (&cfg.base_dir, p.is_relative()) {
            (Some(base), true) => base.join(p),
            _ => p,
        }
    }

    pub async fn open_sqlite(path: &Path) -> Result<StateDb, StateError> {
        let label = format!("sqlite:{}", path.display());
        let err = |op, e: &dyn std::fmt::Display| StateError::Db { db: label.clone(), op, reason: e.to_string() };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err("create its directory", &e))?;
        }
        // WAL + synchronous=FULL: every commit (a run with its snapshot, each write's intent) is
        // fsynced before the call returns, so it survives a power loss as well as a killed
        // process; under NORMAL a power loss could roll back a committed snapshot or intent after
        // the remote write it covers had landed. Outcomes are committed in batches (journal.rs),
        // so the cost is about one fsync per write. busy_timeout lets the CLI and a daemon share it.
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(30))
            .foreign_keys(true);
        // Creating the file, switching it to WAL and migrating it take locks sqlx does not wait
        // for: two processes opening a fresh state at once (daemon replicas on one volume) would
        // fail with "database is locked" or both apply the migrations. An OS lock beside the file
        // serialises the opening; it is released when the guard drops or the process dies.
        let guard_path = {
            let mut p = path.as_os_str().to_owned();
            p.push(".migrate-lock");
            PathBuf::from(p)
        };
        let guard = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&guard_path)
            .map_err(|e| err("open the migration lock", &e))?;
        let guard = tokio::task::spawn_blocking(move || guard.lock().map(|()| guard))
            .await
            .map_err(|e| err("lock for migration", &e))?
            .map_err(|e| err("lock for migration", &e))?;
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await.map_err(|e| err("open", &e))?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|e| err("migrate", &e))?;
        drop(guard);
        let lock_dir = path.parent().map(|d| d.join("locks"));
        Ok(StateDb { pool: Pool::Sqlite(pool), label, lock_dir, _relay: None })
    }

    pub async fn open_postgres(url: &str) -> Result<StateDb, StateError> {
        let opts: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| StateError::Db {
            db: "postgres".into(),
            op: "parse the url",
            reason: e.to_string(),
        })?;
        // Name the database without the password.
        let label = format!("postgres://{}:{}/{}", opts.get_host(), opts.get_port(), opts.get_database().unwrap_or(""));
        let err = |op, e: &dyn std::fmt::Display| StateError::Db { db: label.clone(), op, reason: e.to_string() };
        // TLS handshakes without Nagle stalls (src/store/sql_conn.rs).
        let (opts, relay) = crate::store::sql_conn::postgres_nodelay(opts).await.map_err(|e| err("connect", &e))?;
        let pool = PgPoolOptions::new().max_connections(4).connect_with(opts).await.map_err(|e| err("connect", &e))?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(|e| err("migrate", &e))?;
        Ok(StateDb { pool: Pool::Postgres(pool), label, lock_dir: None, _relay: relay })
    }

    /// A cheap round trip, for the daemon's `/readyz`.
    pub async fn ping(&self) -> Result<(), StateError> {
        on_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(drop)).map_err(|e| self.db_err("ping", e))
    }

    pub(crate) fn db_err(&self, op: &'static str, e: impl std::fmt::Display) -> StateError {
        StateError::Db { db: self.label.clone(), op, reason: e.to_string() }
    }

    /// Take the apply lock on `target` for `run_id`: fails fast (no waiting) when another apply
    /// holds it. Released when the guard drops or the process dies (an OS file lock for SQLite, a
    /// session advisory lock for PostgreSQL), so a killed run never leaves a stale lock.
    pub async fn lock_target(&self, target: &str, run_id: &str) -> Result<TargetLock, StateError> {
        let digest = sha256(target.as_bytes());
        let inner = match &self.pool {
            Pool::Sqlite(_) => {
                let dir = self.lock_dir.as_ref().expect("sqlite state has a lock dir");
                std::fs::create_dir_all(dir).map_err(|e| self.db_err("create the lock directory", e))?;
                let path = dir.join(format!("{}.lock", hex(&digest[..16])));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| self.db_err("open the lock file", e))?;
                match file.try_lock() {
                    Ok(()) => LockInner::File(file),
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(StateError::Locked { target: target.to_string(), holder: self.lock_holder(target).await });
                    }
                    Err(std::fs::TryLockError::Error(e)) => return Err(self.db_err("lock", e)),
                }
            }
            Pool::Postgres(pool) => {
                let key = i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
                let mut conn = pool.acquire().await.map_err(|e| self.db_err("lock", e))?;
                let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| self.db_err("lock", e))?;
                if !got {
                    return Err(StateError::Locked { target: target.to_string(), holder: self.lock_holder(target).await });
                }
                // The session holds the lock: keep this connection out of the pool until release.
                LockInner::Pg(Some(conn.detach()), key)
            }
        };
        self.record_lock_holder(target, run_id).await?;
        Ok(TargetLock { _inner: inner })
    }

    /// Record who holds `target`'s lock (shown to anyone refused it): a lock taken before the
    /// run had an id is re-recorded under the run once it has one.
    pub async fn record_lock_holder(&self, target: &str, run_id: &str) -> Result<(), StateError> {
        let holder = format!("run {run_id}, pid {} on {}", std::process::id(), hostname());
        let now = now();
        on_pool!(self, p => sqlx::query(
            "INSERT INTO target_locks (target, run_id, holder, acquired_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (target) DO UPDATE SET run_id = excluded.run_id, holder = excluded.holder, acquired_at = excluded.acquired_at")
            .bind(target).bind(run_id).bind(&holder).bind(&now)
            .execute(p).await.map(|_| ()))
        .map_err(|e| self.db_err("record the lock", e))
    }

    async fn lock_holder(&self, target: &str) -> String {
        let row: Result<Option<(String, String)>, _> = on_pool!(self, p =>
            sqlx::query_as("SELECT holder, acquired_at FROM target_locks WHERE target = $1").bind(target).fetch_optional(p).await);
        match row {
            Ok(Some((holder, at))) => format!("{holder}, since {at}"),
            _ => "holder unknown".into(),
        }
    }
}

/// Held while a run writes to its target.
pub struct TargetLock {
    _inner: LockInner,
}

enum LockInner {
    /// Dropping the file releases the OS lock.
    File(#[allow(dead_code)] std::fs::File),
    Pg(Option<sqlx::PgConnection>, i64),
}

impl Drop for LockInner {
    fn drop(&mut self) {
        if let LockInner::Pg(conn, _key) = self
            && let Some(conn) = conn.take()
        {
            // Closing the session releases its advisory locks; no query needed.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = sqlx::Connection::close(conn).await;
                });
            }
        }
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power loss: every connection of the SQLite state fsyncs each commit (synchronous = FULL = 2).
    #[tokio::test]
    async fn the_sqlite_state_commits_with_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open_sqlite(&dir.path().join("state.db")).await.unwrap();
        let Pool::Sqlite(pool) = &db.pool else { unreachable!() };
        // Every pooled connection, not just the first one.
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(pool.acquire().await.unwrap());
        }
        for conn in &mut conns {
            let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous").fetch_one(&mut **conn).await.unwrap();
            assert_eq!(sync, 2, "synchronous must be FULL");
            let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&mut **conn).await.unwrap();
            assert_eq!(mode, "wal");
        }
    }
}
