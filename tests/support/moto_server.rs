//! A real `moto_server` (the AWS emulator) on a free 127.0.0.1 port, killed when the guard drops.
//!
//! Install with `pip install 'moto[server]'`. Readiness is polled (TCP connect + a `/moto-api/`
//! HTTP answer), never assumed after a sleep.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MotoServer {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local addr").port()
}

fn answers_http(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 9 && buf.starts_with(b"HTTP/"))
}

impl MotoServer {
    /// Start a fresh server (own state) and wait until it answers HTTP.
    pub fn start() -> Self {
        for _attempt in 0..3 {
            let port = free_port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "moto_server is not on PATH: install it with `pip install 'moto[server]'` to run the AWS tests"
                ),
                Err(e) => panic!("cannot start moto_server: {e}"),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    // Most likely the port was taken between our probe and its bind: try another.
                    eprintln!("moto_server exited early ({status}); retrying on another port");
                    break;
                }
                if answers_http(port) {
                    return Self { child, port };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("moto_server did not answer on 127.0.0.1:{port} within 60 s");
                }
                std::thread::sleep(Duration::from_millis(50)); // poll interval, not synchronisation
            }
        }
        panic!("moto_server failed to start three times");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
