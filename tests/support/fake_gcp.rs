//! An in-process fake of Google Cloud Secret Manager v1, speaking the REST API the official Rust
//! client uses (`google-cloud-secretmanager-v1`, `transport.rs`): the same paths
//! (`/v1/projects/{p}/secrets[/{s}[:addVersion]]`, `/v1/{name}/versions[/{v}[:access|:enable|
//! :disable|:destroy]]`), the same JSON field names (camelCase, base64 `payload.data`, enum states
//! as integers when `$alt=json;enum-encoding=int`), Google's JSON error body
//! (`{"error":{"code","message","status"}}`) and paging (`pageSize`, `pageToken`, `nextPageToken`).
//!
//! Semantics kept from the real service: `latest` is the most recently *created* version whatever
//! its state; accessing a disabled or destroyed version is FAILED_PRECONDITION; a secret without
//! versions is NOT_FOUND on access; secret ids are `[A-Za-z0-9_-]{1,255}`; payloads are 1 byte to
//! 64 KiB; create needs a replication policy; list returns versions newest first. Throttling is
//! injectable (429 RESOURCE_EXHAUSTED with `Retry-After`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value as J, json};

const MAX_PAYLOAD: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VState {
    Enabled,
    Disabled,
    Destroyed,
}

impl VState {
    fn int(self) -> i64 {
        match self {
            VState::Enabled => 1,
            VState::Disabled => 2,
            VState::Destroyed => 3,
        }
    }
    fn word(self) -> &'static str {
        match self {
            VState::Enabled => "ENABLED",
            VState::Disabled => "DISABLED",
            VState::Destroyed => "DESTROYED",
        }
    }
}

#[derive(Clone, Debug)]
struct FVersion {
    number: u64,
    state: VState,
    data: Option<Vec<u8>>,
    create_time: String,
}

#[derive(Clone, Debug)]
struct FSecret {
    name: String,
    labels: serde_json::Map<String, J>,
    annotations: serde_json::Map<String, J>,
    replication: J,
    create_time: String,
    versions: Vec<FVersion>,
}

#[derive(Default)]
struct State {
    secrets: BTreeMap<String, FSecret>,
    throttle_remaining: usize,
    throttle_retry_after: u64,
    throttled: usize,
    page_cap: Option<usize>,
    requests: Vec<String>,
    clock: u64,
}

impl State {
    fn now(&mut self) -> String {
        self.clock += 1;
        let t = chrono::DateTime::from_timestamp(1_700_000_000 + self.clock as i64, 0).unwrap();
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// A running fake; dropped with the test's runtime.
pub struct FakeGcp {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl FakeGcp {
    /// Bind 127.0.0.1:0 and serve. The listener is bound before this returns, so it is ready.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { endpoint: format!("http://{addr}"), state }
    }

    /// Answer the next `n` requests with 429 RESOURCE_EXHAUSTED and `Retry-After: secs`.
    pub fn throttle_next(&self, n: usize, retry_after_secs: u64) {
        let mut s = self.state.lock().unwrap();
        s.throttle_remaining = n;
        s.throttle_retry_after = retry_after_secs;
    }

    /// How many requests were answered with 429 so far.
    pub fn throttled(&self) -> usize {
        self.state.lock().unwrap().throttled
    }

    /// Cap every page at `n` items whatever `pageSize` asks for (the service caps too).
    pub fn set_page_cap(&self, n: usize) {
        self.state.lock().unwrap().page_cap = Some(n);
    }

    /// Every request seen, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// Secret ids of `project`, sorted.
    pub fn secret_ids(&self, project: &str) -> Vec<String> {
        let prefix = format!("projects/{project}/secrets/");
        self.state.lock().unwrap().secrets.keys().filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)).collect()
    }

    /// `(number, state)` of each version, oldest first.
    pub fn versions(&self, project: &str, secret_id: &str) -> Vec<(u64, VState)> {
        let s = self.state.lock().unwrap();
        s.secrets
            .get(&format!("projects/{project}/secrets/{secret_id}"))
            .map(|x| x.versions.iter().map(|v| (v.number, v.state)).collect())
            .unwrap_or_default()
    }

    /// The raw bytes of a version, as stored.
    pub fn payload(&self, project: &str, secret_id: &str, number: u64) -> Option<Vec<u8>> {
        let s = self.state.lock().unwrap();
        s.secrets
            .get(&format!("projects/{project}/secrets/{secret_id}"))
            .and_then(|x| x.versions.iter().find(|v| v.number == number))
            .and_then(|v| v.data.clone())
    }

    pub fn labels(&self, project: &str, secret_id: &str) -> serde_json::Map<String, J> {
        let s = self.state.lock().unwrap();
        s.secrets.get(&format!("projects/{project}/secrets/{secret_id}")).map(|x| x.labels.clone()).unwrap_or_default()
    }

    pub fn annotations(&self, project: &str, secret_id: &str) -> serde_json::Map<String, J> {
        let s = self.state.lock().unwrap();
        s.secrets
            .get(&format!("projects/{project}/secrets/{secret_id}"))
            .map(|x| x.annotations.clone())
            .unwrap_or_default()
    }

    pub fn replication(&self, project: &str, secret_id: &str) -> J {
        let s = self.state.lock().unwrap();
        s.secrets.get(&format!("projects/{project}/secrets/{secret_id}")).map(|x| x.replication.clone()).unwrap_or(J::Null)
    }
}

fn error(code: u16, status: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into(), "status": status}});
    (StatusCode::from_u16(code).unwrap(), [("content-type", "application/json")], body.to_string()).into_response()
}

fn ok(body: J) -> Response {
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn valid_secret_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

struct Ctx {
    int_enums: bool,
}

fn secret_json(s: &FSecret) -> J {
    json!({
        "name": s.name,
        "replication": s.replication,
        "createTime": s.create_time,
        "labels": s.labels,
        "annotations": s.annotations,
        "etag": format!("\"{}\"", s.versions.len()),
    })
}

fn version_json(ctx: &Ctx, s: &FSecret, v: &FVersion) -> J {
    let mut j = json!({
        "name": format!("{}/versions/{}", s.name, v.number),
        "createTime": v.create_time,
        "state": if ctx.int_enums { json!(v.state.int()) } else { json!(v.state.word()) },
        "etag": format!("\"{}-{}\"", v.number, v.state.int()),
    });
    if v.state == VState::Destroyed {
        j["destroyTime"] = json!(v.create_time);
    }
    j
}

/// `pageSize`/`pageToken` over `items`: the token is the offset of the next page.
fn page<T: Clone>(st: &State, q: &BTreeMap<String, String>, items: &[T]) -> Result<(Vec<T>, String), Response> {
    let asked = q.get("pageSize").and_then(|s| s.parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(25_000);
    let size = st.page_cap.map_or(asked, |c| asked.min(c));
    let start = match q.get("pageToken").map(String::as_str) {
        None | Some("") => 0,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n <= items.len() => n,
            _ => return Err(error(400, "INVALID_ARGUMENT", "Invalid page token.")),
        },
    };
    let end = (start + size).min(items.len());
    let next = if end < items.len() { end.to_string() } else { String::new() };
    Ok((items[start..end].to_vec(), next))
}

async fn handle(
    AxState(state): AxState<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = state.lock().unwrap();
    st.requests.push(format!("{method} {}{}", decode(uri.path()), uri.query().map(|q| format!("?{}", decode(q))).unwrap_or_default()));
    if st.throttle_remaining > 0 {
        st.throttle_remaining -= 1;
        st.throttled += 1;
        let mut r = error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Access requests' (fake).");
        r.headers_mut().insert("retry-after", HeaderValue::from(st.throttle_retry_after));
        return r;
    }
    let q = query(&uri);
    let ctx = Ctx { int_enums: q.get("$alt").is_some_and(|a| a.contains("enum-encoding=int")) };
    let path = decode(uri.path());
    let Some(rest) = path.strip_prefix("/v1/") else {
        return error(404, "NOT_FOUND", "unknown path");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let body: J = if body.is_empty() { J::Null } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(_) => return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
        }
    };
    match parts.as_slice() {
        ["projects", p, "secrets"] => {
            let parent = format!("projects/{p}");
            match method {
                Method::GET => list_secrets(&st, &ctx, &parent, &q),
                Method::POST => create_secret(&mut st, &parent, &q, &body),
                _ => error(405, "UNIMPLEMENTED", "method"),
            }
        }
        ["projects", p, "secrets", s] => {
            let (sid, verb) = s.split_once(':').map_or((*s, None), |(a, b)| (a, Some(b)));
            let name = format!("projects/{p}/secrets/{sid}");
            match (method, verb) {
                (Method::GET, None) => match st.secrets.get(&name) {
                    Some(sec) => ok(secret_json(sec)),
                    None => error(404, "NOT_FOUND", format!("Secret [{name}] not found.")),
                },
                (Method::PATCH, None) => update_secret(&mut st, &name, &q, &body),
                (Method::DELETE, None) => match st.secrets.remove(&name) {
                    Some(_) => ok(json!({})),
                    None => error(404, "NOT_FOUND", format!("Secret [{name}] not found.")),
                },
                (Method::POST, Some("addVersion")) => add_version(&mut st, &ctx, &name, &body),
                _ => error(405, "UNIMPLEMENTED", "method"),
            }
        }
        ["projects", p, "secrets", s, "versions"] if method == Method::GET => {
            let name = format!("projects/{p}/secrets/{s}");
            let Some(sec) = st.secrets.get(&name) else {
                return error(404, "NOT_FOUND", format!("Secret [{name}] not found."));
            };
            let filter = q.get("filter").cloned().unwrap_or_default();
            let mut vs: Vec<FVersion> = sec.versions.iter().rev().cloned().collect();
            if let Some(want) = filter.strip_prefix("state:") {
                vs.retain(|v| v.state.word() == want);
            } else if !filter.is_empty() {
                return error(400, "INVALID_ARGUMENT", "unsupported filter (fake)");
            }
            let (items, next) = match page(&st, &q, &vs) {
                Ok(x) => x,
                Err(r) => return r,
            };
            let mut out = json!({"versions": items.iter().map(|v| version_json(&ctx, sec, v)).collect::<Vec<_>>(), "totalSize": vs.len()});
            if !next.is_empty() {
                out["nextPageToken"] = json!(next);
            }
            ok(out)
        }
        ["projects", p, "secrets", s, "versions", v] => {
            let (vid, verb) = v.split_once(':').map_or((*v, None), |(a, b)| (a, Some(b)));
            let name = format!("projects/{p}/secrets/{s}");
            version_op(&mut st, &ctx, &name, vid, method, verb)
        }
        _ => error(404, "NOT_FOUND", "unknown resource"),
    }
}

fn list_secrets(st: &State, _ctx: &Ctx, parent: &str, q: &BTreeMap<String, String>) -> Response {
    let prefix = format!("{parent}/secrets/");
    let filter = q.get("filter").cloned().unwrap_or_default();
    let name_has = if filter.is_empty() {
        None
    } else if let Some(x) = filter.strip_prefix("name:") {
        Some(x.to_string())
    } else {
        return error(400, "INVALID_ARGUMENT", "unsupported filter (fake)");
    };
    let all: Vec<&FSecret> = st
        .secrets
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| name_has.as_ref().is_none_or(|n| k[prefix.len()..].contains(n.as_str())))
        .map(|(_, v)| v)
        .collect();
    let (items, next) = match page(st, q, &all) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut out = json!({"secrets": items.iter().map(|s| secret_json(s)).collect::<Vec<_>>(), "totalSize": all.len()});
    if !next.is_empty() {
        out["nextPageToken"] = json!(next);
    }
    ok(out)
}

fn create_secret(st: &mut State, parent: &str, q: &BTreeMap<String, String>, body: &J) -> Response {
    let sid = q.get("secretId").cloned().unwrap_or_default();
    if !valid_secret_id(&sid) {
        return error(400, "INVALID_ARGUMENT", format!("The secret ID [{sid}] is not valid: it must match [a-zA-Z0-9_-]{{1,255}}."));
    }
    let name = format!("{parent}/secrets/{sid}");
    if st.secrets.contains_key(&name) {
        return error(409, "ALREADY_EXISTS", format!("Secret [{name}] already exists."));
    }
    let replication = body.get("replication").cloned().unwrap_or(J::Null);
    let valid_replication = replication.get("automatic").is_some()
        || replication
            .get("userManaged")
            .and_then(|u| u.get("replicas"))
            .and_then(|r| r.as_array())
            .is_some_and(|r| !r.is_empty() && r.iter().all(|x| x.get("location").and_then(|l| l.as_str()).is_some_and(|l| !l.is_empty())));
    if !valid_replication {
        return error(400, "INVALID_ARGUMENT", "Field [replication] is required.");
    }
    let obj = |k: &str| body.get(k).and_then(|v| v.as_object()).cloned().unwrap_or_default();
    let sec = FSecret {
        name: name.clone(),
        labels: obj("labels"),
        annotations: obj("annotations"),
        replication,
        create_time: st.now(),
        versions: Vec::new(),
    };
    let out = secret_json(&sec);
    st.secrets.insert(name, sec);
    ok(out)
}

fn update_secret(st: &mut State, name: &str, q: &BTreeMap<String, String>, body: &J) -> Response {
    let Some(sec) = st.secrets.get_mut(name) else {
        return error(404, "NOT_FOUND", format!("Secret [{name}] not found."));
    };
    let mask = q.get("updateMask").cloned().unwrap_or_default();
    if mask.is_empty() {
        return error(400, "INVALID_ARGUMENT", "Field [update_mask] is required.");
    }
    for path in mask.split(',') {
        let val = body.get(path).and_then(|v| v.as_object()).cloned().unwrap_or_default();
        match path {
            "labels" => sec.labels = val,
            "annotations" => sec.annotations = val,
            other => return error(400, "INVALID_ARGUMENT", format!("unsupported update mask path {other} (fake)")),
        }
    }
    ok(secret_json(sec))
}

fn add_version(st: &mut State, ctx: &Ctx, name: &str, body: &J) -> Response {
    let data = body.pointer("/payload/data").and_then(|d| d.as_str()).unwrap_or("");
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else {
        return error(400, "INVALID_ARGUMENT", "Invalid value at 'payload.data' (TYPE_BYTES).");
    };
    if bytes.is_empty() {
        return error(400, "INVALID_ARGUMENT", "Field [payload] is required.");
    }
    if bytes.len() > MAX_PAYLOAD {
        return error(400, "INVALID_ARGUMENT", "Secret Payload cannot exceed 65536 bytes.");
    }
    let now = st.now();
    let Some(sec) = st.secrets.get_mut(name) else {
        return error(404, "NOT_FOUND", format!("Secret [{name}] not found."));
    };
    let number = sec.versions.last().map_or(1, |v| v.number + 1);
    sec.versions.push(FVersion { number, state: VState::Enabled, data: Some(bytes), create_time: now });
    ok(version_json(ctx, sec, sec.versions.last().unwrap()))
}

fn version_op(st: &mut State, ctx: &Ctx, name: &str, vid: &str, method: Method, verb: Option<&str>) -> Response {
    let Some(sec) = st.secrets.get_mut(name) else {
        return error(404, "NOT_FOUND", format!("Secret [{name}] not found or has no versions."));
    };
    let idx = if vid == "latest" {
        // The most recently created version, whatever its state.
        sec.versions.len().checked_sub(1)
    } else {
        vid.parse::<u64>().ok().and_then(|n| sec.versions.iter().position(|v| v.number == n))
    };
    let Some(idx) = idx else {
        return error(404, "NOT_FOUND", format!("Secret Version [{name}/versions/{vid}] not found."));
    };
    let vname = format!("{name}/versions/{}", sec.versions[idx].number);
    match (method, verb) {
        (Method::GET, None) => ok(version_json(ctx, sec, &sec.versions[idx])),
        (Method::GET, Some("access")) => {
            let v = &sec.versions[idx];
            if v.state != VState::Enabled {
                return error(400, "FAILED_PRECONDITION", format!("Secret Version [{vname}] is in {} state.", v.state.word()));
            }
            let data = base64::engine::general_purpose::STANDARD.encode(v.data.as_deref().unwrap_or_default());
            ok(json!({"name": vname, "payload": {"data": data}}))
        }
        (Method::POST, Some(op @ ("enable" | "disable" | "destroy"))) => {
            let v = &mut sec.versions[idx];
            if v.state == VState::Destroyed {
                return error(400, "FAILED_PRECONDITION", format!("Secret Version [{vname}] is in DESTROYED state."));
            }
            match op {
                "enable" => v.state = VState::Enabled,
                "disable" => v.state = VState::Disabled,
                _ => {
                    v.state = VState::Destroyed;
                    v.data = None;
                }
            }
            let out = version_json(ctx, sec, &sec.versions[idx]);
            ok(out)
        }
        _ => error(405, "UNIMPLEMENTED", "method"),
    }
}
