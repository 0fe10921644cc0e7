//! A loopback TCP proxy in front of a database that counts what the client costs: connections
//! accepted, and (PostgreSQL) how many of them opened with an SSLRequest, i.e. asked for a TLS
//! handshake. `kill_all` resets every open connection, as a database restart does.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    ssl_requests: AtomicUsize,
    open: Mutex<Vec<TcpStream>>,
}

pub struct CountingProxy {
    port: u16,
    counts: Arc<Counts>,
}

impl CountingProxy {
    /// Forward 127.0.0.1:<free port> to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                c.connections.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                c.open.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let counts = c.clone();
                std::thread::spawn(move || pump(client, server, Some(counts)));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        CountingProxy { port, counts }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Connections whose first client bytes were a PostgreSQL SSLRequest.
    pub fn ssl_requests(&self) -> usize {
        self.counts.ssl_requests.load(Ordering::SeqCst)
    }

    /// Reset every connection open so far (new ones are still accepted).
    pub fn kill_all(&self) {
        for s in self.counts.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// `url` (`scheme://auth@127.0.0.1:PORT/db?…`) with its port; panics on another shape.
pub fn port_of(url: &str) -> u16 {
    let authority = url.split("://").nth(1).and_then(|r| r.split('/').next()).expect("a URL");
    let hostport = authority.rsplit('@').next().unwrap();
    hostport.rsplit_once(':').map(|(_, p)| p.parse().expect("a port")).expect("the URL names its port")
}

/// `url` pointed at `port` instead of its own.
pub fn with_port(url: &str, port: u16) -> String {
    let old = port_of(url);
    url.replacen(&format!(":{old}/"), &format!(":{port}/"), 1)
}

fn pump(mut from: TcpStream, mut to: TcpStream, client: Option<Arc<Counts>>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(c) = client.as_ref().filter(|_| first) {
            if buf[..n].starts_with(&PG_SSL_REQUEST) {
                c.ssl_requests.fetch_add(1, Ordering::SeqCst);
            }
        }
        first = false;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
