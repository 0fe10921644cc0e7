//! A loopback TCP proxy that can be killed: after `kill_after` requests (a read from the client
//! that starts with an HTTP method) it closes its listener and every open connection, so the
//! backend behind it is gone (connections reset, new ones refused) exactly as when a proxy or a
//! load balancer dies mid-run. `restart` listens again on the same port.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

struct State {
    upstream: u16,
    kill_after: usize,
    requests: AtomicUsize,
    /// The request line (`METHOD /path HTTP/1.1`) of every counted request, in arrival order.
    lines: Mutex<Vec<String>>,
    killed: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

pub struct TcpProxy {
    port: u16,
    state: Arc<State>,
}

const METHODS: [&[u8]; 6] = [b"GET ", b"PUT ", b"POST ", b"LIST ", b"DELETE ", b"PATCH "];

impl TcpProxy {
    /// Forward 127.0.0.1:<free port> to 127.0.0.1:`upstream`; die after `kill_after` requests.
    pub fn start(upstream: u16, kill_after: usize) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        Self::serve(listener, upstream, kill_after)
    }

    /// Listen on the same port again, forwarding everything (never dies).
    pub fn restart(&self) -> TcpProxy {
        let addr = format!("127.0.0.1:{}", self.port);
        // The old accept loop drops its listener once it has seen the kill: poll until it has.
        let start = std::time::Instant::now();
        let listener = loop {
            match TcpListener::bind(&addr) {
                Ok(l) => break l,
                Err(e) if start.elapsed() > std::time::Duration::from_secs(10) => panic!("re-bind {addr}: {e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        Self::serve(listener, self.state.upstream, usize::MAX)
    }

    fn serve(listener: TcpListener, upstream: u16, kill_after: usize) -> TcpProxy {
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream,
            kill_after,
            requests: AtomicUsize::new(0),
            lines: Mutex::new(Vec::new()),
            killed: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.killed.load(Ordering::SeqCst) {
                    break; // dropping the listener: new connections are refused
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", st.upstream)) else {
                    continue;
                };
                {
                    let mut conns = st.conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(server.try_clone().unwrap());
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = st.clone();
                std::thread::spawn(move || pump(client, server, Some(up)));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        TcpProxy { port, state }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The request lines seen so far (method and path; never a header or a body).
    pub fn request_lines(&self) -> Vec<String> {
        self.state.lines.lock().unwrap().clone()
    }

    pub fn killed(&self) -> bool {
        self.state.killed.load(Ordering::SeqCst)
    }

    /// Die now (idempotent).
    pub fn kill(&self) {
        kill(&self.state, self.port);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill(st: &State, port: u16) {
    if st.killed.swap(true, Ordering::SeqCst) {
        return;
    }
    for c in st.conns.lock().unwrap().drain(..) {
        let _ = c.shutdown(Shutdown::Both);
    }
    // Wake the accept loop so it sees the flag and drops the listener.
    let _ = TcpStream::connect(("127.0.0.1", port));
}

/// Copy `from` → `to`; with `count`, count requests and kill the proxy at the limit.
fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<State>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(st) = &count {
            if METHODS.iter().any(|m| buf[..n].starts_with(m)) {
                let line = buf[..n].split(|b| *b == b'\r').next().unwrap_or_default();
                st.lines.lock().unwrap().push(String::from_utf8_lossy(line).into_owned());
                let seen = st.requests.fetch_add(1, Ordering::SeqCst) + 1;
                if seen > st.kill_after {
                    // The accepted socket's local port is the proxy's.
                    let local = from.local_addr().map(|a| a.port()).unwrap_or(0);
                    kill(st, local);
                    break;
                }
            }
        }
        if st_killed(&count) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn st_killed(count: &Option<Arc<State>>) -> bool {
    count.as_ref().is_some_and(|s| s.killed.load(Ordering::SeqCst))
}
