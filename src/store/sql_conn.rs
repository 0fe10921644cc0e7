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
    /// What `opts` connects through, kept as long as the connection may be reopened.
    #[cfg(unix)]
    relay: Option<NoDelayRelay>,
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
        Self {
            opts,
            connect_timeout,
            suspect: AtomicBool::new(false),
            slot: tokio::sync::Mutex::new(slot),
            #[cfg(unix)]
            relay: None,
        }
    }

    /// Keep `relay` (which `opts` connects through) alive with the connection.
    #[cfg(unix)]
    pub(crate) fn with_relay(mut self, relay: Option<NoDelayRelay>) -> Self {
        self.relay = relay;
        self
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

/// A relay in this process that puts `TCP_NODELAY` on the driver's connections: sqlx 0.9 does
/// not set it (launchbadge/sqlx#4335), and a TLS handshake then stalls twice on Nagle's algorithm
/// against the server's delayed ACK (~40 ms each on Linux: the handshake's CCS and ClientHello,
/// then its Finished and the startup message, leave as separate small writes). The driver
/// connects to a Unix socket in a private temporary directory; each connection there is relayed
/// to a TCP connection to the database with `TCP_NODELAY` set. TLS stays end to end (the driver
/// still negotiates it, verifying the host it was given); the relay only copies bytes.
#[cfg(unix)]
pub(crate) struct NoDelayRelay {
    // Removed (with the socket) when the relay is dropped.
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

#[cfg(unix)]
impl NoDelayRelay {
    /// Connect to `host:port` once (so that "connection refused" and the like are reported as
    /// themselves), then listen for the driver on `socket_name` in a new private directory
    /// (PostgreSQL's drivers take a directory and look for `.s.PGSQL.<port>` in it).
    /// `Ok(None)` when no local socket can be made (say, a `TMPDIR` too long for a socket
    /// path): the driver then connects directly, only slower.
    pub(crate) async fn start(host: &str, port: u16, socket_name: &str) -> std::io::Result<Option<Self>> {
        let first = Self::dial(host, port).await?;
        let listen = || -> std::io::Result<(tempfile::TempDir, std::path::PathBuf, tokio::net::UnixListener)> {
            // $XDG_RUNTIME_DIR (per user, never aged) when there is one, else the temp dir.
            let base = std::env::var_os("XDG_RUNTIME_DIR")
                .map(std::path::PathBuf::from)
                .filter(|d| d.is_absolute() && d.is_dir())
                .unwrap_or_else(std::env::temp_dir);
            let dir = tempfile::Builder::new().prefix("airflow-secrets-sync-db-").tempdir_in(base)?;
            // Only this user may connect (the relay hands out a connection to the database).
            std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
            let path = dir.path().join(socket_name);
            let listener = tokio::net::UnixListener::bind(&path)?;
            Ok((dir, path, listener))
        };
        let (dir, path, listener) = match listen() {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "no local socket for the TCP_NODELAY relay; connecting directly");
                return Ok(None);
            }
        };
        let host = host.to_string();
        let (keep_dir, keep_path) = (dir.path().to_path_buf(), path.clone());
        let accept = tokio::spawn(async move {
            let mut first = Some(first);
            // A daemon keeps its stores for weeks: refresh the ctime of the directory and the
            // socket now and then, so that /tmp cleaners that age files (systemd-tmpfiles: 10
            // days) never take the socket from under a store that may have to reconnect.
            let mut refresh = tokio::time::interval(Duration::from_secs(3600));
            refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = refresh.tick() => {
                        for (p, mode) in [(&keep_dir, 0o700), (&keep_path, 0o600)] {
                            let _ = std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode));
                        }
                        continue;
                    }
                };
                let Ok((mut local, _)) = accepted else { break };
                let remote = match first.take() {
                    Some(s) => Ok(s),
                    None => Self::dial(&host, port).await,
                };
                tokio::spawn(async move {
                    // Unreachable now: dropping `local` closes the driver's connection (its error).
                    let Ok(mut remote) = remote else { return };
                    let _ = tokio::io::copy_bidirectional_with_sizes(&mut local, &mut remote, 64 * 1024, 64 * 1024).await;
                });
            }
        });
        Ok(Some(Self { _dir: dir, path, accept }))
    }

    async fn dial(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// The socket the driver connects to.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The directory holding it.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

#[cfg(unix)]
impl Drop for NoDelayRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `opts` through a [`NoDelayRelay`] when they connect over TCP and may negotiate TLS (sslmode
/// is not `disable`); the relay must live as long as connections are made with the options.
#[cfg(unix)]
pub(crate) async fn postgres_nodelay(
    opts: sqlx::postgres::PgConnectOptions,
) -> std::io::Result<(sqlx::postgres::PgConnectOptions, Option<NoDelayRelay>)> {
    if opts.get_socket().is_some() || matches!(opts.get_ssl_mode(), sqlx::postgres::PgSslMode::Disable) {
        return Ok((opts, None));
    }
    let name = format!(".s.PGSQL.{}", opts.get_port());
    match NoDelayRelay::start(opts.get_host(), opts.get_port(), &name).await? {
        Some(relay) => Ok((opts.socket(relay.dir()), Some(relay))),
        None => Ok((opts, None)),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn relay_reports_refused_then_copies_both_ways_over_new_connections() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = NoDelayRelay::start("127.0.0.1", free, "s").await.err().expect("nobody listens");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

        // An echo server that counts the connections it accepts.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let relay = NoDelayRelay::start("127.0.0.1", port, ".s.PGSQL.5432").await.unwrap().expect("a socket in TMPDIR");
        assert_eq!(relay.path(), relay.dir().join(".s.PGSQL.5432"));
        assert_eq!(std::fs::metadata(relay.dir()).unwrap().permissions().mode() & 0o777, 0o700, "a private directory");
        for round in 0..2 {
            let mut local = tokio::net::UnixStream::connect(relay.path()).await.unwrap();
            let msg = format!("round {round}");
            local.write_all(msg.as_bytes()).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            local.read_exact(&mut back).await.unwrap();
            assert_eq!(back, msg.as_bytes());
        }
        // The connection made at start served the first driver connection; the second dialled anew.
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let dir = relay.dir().to_path_buf();
        drop(relay);
        assert!(!dir.exists(), "the socket's directory is removed with the relay");
    }
}
