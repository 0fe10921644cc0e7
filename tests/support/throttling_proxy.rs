//! A loopback HTTP proxy in front of a real server that answers the requests a rule picks itself,
//! with `429 Too Many Requests` (as Vault's rate-limit quotas do), and forwards every other one.
//!
//! One request per client connection: the request is read whole (headers, then `Content-Length`
//! bytes), forwarded on a fresh upstream connection with `Connection: close`, and the answer relayed
//! until the upstream closes; the proxy closes the client connection after each answer, so the
//! client opens a new one for its next request. Only request lines are recorded, never a header or
//! a body.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

type Rule = Box<dyn Fn(&str, &str) -> bool + Send>;

struct State {
    upstream: u16,
    rule: Mutex<Rule>,
    /// Every request line, and whether the proxy answered it with 429.
    lines: Mutex<Vec<(String, bool)>>,
}

pub struct ThrottlingProxy {
    port: u16,
    state: Arc<State>,
}

impl ThrottlingProxy {
    /// Forward 127.0.0.1:<free port> to 127.0.0.1:`upstream`, throttling nothing yet.
    pub fn start(upstream: u16) -> ThrottlingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State { upstream, rule: Mutex::new(Box::new(|_, _| false)), lines: Mutex::default() });
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(client, &st));
            }
        });
        ThrottlingProxy { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, answer with 429 every request for which `rule(method, path)` holds.
    pub fn throttle(&self, rule: impl Fn(&str, &str) -> bool + Send + 'static) {
        *self.state.rule.lock().unwrap() = Box::new(rule);
    }

    /// The request lines (`METHOD /path HTTP/1.1`) seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lines.lock().unwrap().iter().map(|(l, _)| l.clone()).collect()
    }

    /// The request lines the proxy answered with 429.
    pub fn throttled(&self) -> Vec<String> {
        self.state.lines.lock().unwrap().iter().filter(|(_, t)| *t).map(|(l, _)| l.clone()).collect()
    }
}

fn serve(client: TcpStream, st: &State) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let line = line.trim_end().to_string();
    let mut headers = Vec::new();
    let mut len = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            headers.push(h);
        }
    }
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let throttle = (st.rule.lock().unwrap())(method, path);
    st.lines.lock().unwrap().push((line.clone(), throttle));
    let mut client = client;
    if throttle {
        let body = r#"{"errors":["request path \"secret/\": rate limit quota exceeded"]}"#;
        let _ = write!(
            client,
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    } else if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", st.upstream)) {
        let mut request = format!("{line}\r\n").into_bytes();
        for h in &headers {
            request.extend_from_slice(h.as_bytes());
        }
        request.extend_from_slice(b"Connection: close\r\n\r\n");
        request.extend_from_slice(&body);
        if upstream.write_all(&request).is_ok() {
            let mut answer = Vec::new();
            let _ = upstream.read_to_end(&mut answer);
            let _ = client.write_all(&answer);
        }
    }
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);
}
