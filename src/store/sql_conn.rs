//! One database connection for every query of a store: what a pool of one gives, without its
//! costs. `sqlx`'s pool opens its own connection (a second TCP connect, TLS handshake and login
//! after the one `open` made to report errors at once) and pings before every acquire (one round
//! trip per query). Here the connection `open` made is the one the queries use; it is pinged only
//! after it sat idle (the daemon keeps stores open between runs) or a query on it failed, and
//! reopened when it is gone.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};

/// After this long unused, a connection is pinged before it is handed out (and reopened if the
/// ping fails). Queries of one run follow each other closely and pay nothing.
const IDLE_PING: Duration = Duration::from_secs(1);

pub(crate) struct SingleConn<C: Connection> {
    opts: C::Options,
    connect_timeout: Duration,
    /// A query failed: ping before the next use.
    suspect: AtomicBool,
    slot: tokio::sync::Mutex<Slot<C>>,
}

struct Slot<C> {
    conn: Option<C>,
    last_used: Instant,
}

/// The connection, held exclusively until dropped.
pub(crate) struct ConnGuard<'a, C> {
    slot: tokio::sync::MutexGuard<'a, Slot<C>>,
}

impl<C> Deref for ConnGuard<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.slot.conn.as_ref().expect("a guard always holds a connection")
    }
}

impl<C> DerefMut for ConnGuard<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.slot.conn.as_mut().expect("a guard always holds a connection")
    }
}

impl<C> Drop for ConnGuard<'_, C> {
    fn drop(&mut self) {
        self.slot.last_used = Instant::now();
    }
}

impl<C: Connection> SingleConn<C> {
    /// Start with `conn`, already open with `opts`.
    pub(crate) fn new(opts: C::Options, conn: C, connect_timeout: Duration) -> Self {
        let slot = Slot { conn: Some(conn), last_used: Instant::now() };
        Self { opts, connect_timeout, suspect: AtomicBool::new(false), slot: tokio::sync::Mutex::new(slot) }
    }

    /// A query failed (perhaps because the connection is gone): check it before the next use.
    pub(crate) fn suspect(&self) {
        self.suspect.store(true, Ordering::Relaxed);
    }

    /// The connection (waiting while another query holds it), reopened if it was lost.
    pub(crate) async fn get(&self) -> Result<ConnGuard<'_, C>, sqlx::Error> {
        let mut slot = self.slot.lock().await;
        let suspect = self.suspect.swap(false, Ordering::Relaxed);
        if (suspect || slot.last_used.elapsed() >= IDLE_PING)
            && let Some(conn) = slot.conn.as_mut()
            && conn.ping().await.is_err()
        {
            slot.conn = None;
        }
        if slot.conn.is_none() {
            let conn = tokio::time::timeout(self.connect_timeout, self.opts.connect())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
            slot.conn = Some(conn);
        }
        Ok(ConnGuard { slot })
    }
}
