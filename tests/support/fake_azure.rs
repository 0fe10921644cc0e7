//! An in-process fake of Azure Key Vault (secrets, REST API 7.x / 2025-07-01), installed as the
//! SDK's transport (`Transport::with_policy`): every request the production `SecretClient` builds
//! (its auth policy, retry policy and challenge flow included) arrives here as method, URL,
//! headers and body, and gets a Key Vault HTTP response back. Only the transport differs from
//! production; `azure_core` refuses authorized requests over plain http, so there is no socket.
//!
//! Kept from the real service: challenge-based bearer auth (a request without a token gets 401 +
//! `WWW-Authenticate: Bearer authorization=…, resource="https://vault.azure.net"`; the SDK then
//! asks its credential for that resource and retries with the token), `api-version` required,
//! names `[0-9a-zA-Z-]{1,127}` and case-insensitive, values ≤ 25 KB, versions (the latest is
//! what `GET /secrets/{name}/` returns), attributes per version (`enabled`), 403 `SecretDisabled`
//! for a disabled secret's value, paging with `nextLink` and at most 25 items a page, soft delete
//! (`DELETE` moves a secret to `/deletedsecrets`, `GET` then 404s, `PUT` 409s with
//! `ObjectIsDeletedButRecoverable`), recover and purge, and 429 with `Retry-After`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::headers::Headers;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{AsyncRawResponse, Body, Context, Method, Request, StatusCode, Transport};
use serde_json::{Value as J, json};

pub const VAULT_URL: &str = "https://fakevault.vault.azure.net";
pub const TOKEN: &str = "fake-kv-token";
const MAX_VALUE: usize = 25 * 1024;
const PAGE: usize = 25;

#[derive(Clone, Debug)]
struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    tags: BTreeMap<String, String>,
    enabled: bool,
    created: i64,
    updated: i64,
}

#[derive(Clone, Debug)]
struct KvSecret {
    name: String,
    versions: Vec<Version>,
}

#[derive(Clone, Debug)]
struct Deleted {
    secret: KvSecret,
    deleted: i64,
}

#[derive(Debug, Default)]
struct State {
    /// Keyed by the lower-cased name: Key Vault names are case-insensitive.
    secrets: BTreeMap<String, KvSecret>,
    deleted: BTreeMap<String, Deleted>,
    throttle_remaining: usize,
    throttle_retry_after: u64,
    throttled: usize,
    challenges: usize,
    requests: Vec<String>,
    clock: i64,
    seq: u64,
}

/// The fake vault. Clone it freely; clones share state.
#[derive(Clone, Debug, Default)]
pub struct FakeAzure {
    state: Arc<Mutex<State>>,
}

/// A credential that hands out the token the fake accepts, for the scope the challenge named.
#[derive(Debug)]
pub struct FakeCredential;

#[async_trait]
impl TokenCredential for FakeCredential {
    async fn get_token(&self, scopes: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://vault.azure.net/.default"], "the SDK must ask for the challenged resource");
        Ok(AccessToken::new(TOKEN, azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1)))
    }
}

#[derive(Debug)]
struct FakePolicy(Arc<Mutex<State>>);

impl FakeAzure {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn transport(&self) -> Transport {
        Transport::with_policy(Arc::new(FakePolicy(self.state.clone())))
    }

    /// Answer one request as the vault does (tests/support/azure_https.rs serves this over HTTPS).
    pub async fn handle(&self, request: &mut Request) -> AsyncRawResponse {
        FakePolicy(self.state.clone()).send(&Context::new(), request, &[]).await.expect("the fake always answers")
    }

    /// Answer the next `n` requests with 429 and `Retry-After: secs`.
    pub fn throttle_next(&self, n: usize, retry_after_secs: u64) {
        let mut s = self.state.lock().unwrap();
        s.throttle_remaining = n;
        s.throttle_retry_after = retry_after_secs;
    }

    pub fn throttled(&self) -> usize {
        self.state.lock().unwrap().throttled
    }

    /// How many 401 challenges were sent.
    pub fn challenges(&self) -> usize {
        self.state.lock().unwrap().challenges
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// Names as created (original case), sorted case-insensitively.
    pub fn names(&self) -> Vec<String> {
        self.state.lock().unwrap().secrets.values().map(|s| s.name.clone()).collect()
    }

    pub fn deleted_names(&self) -> Vec<String> {
        self.state.lock().unwrap().deleted.values().map(|d| d.secret.name.clone()).collect()
    }

    pub fn version_count(&self, name: &str) -> usize {
        self.state.lock().unwrap().secrets.get(&name.to_lowercase()).map_or(0, |s| s.versions.len())
    }

    pub fn tags(&self, name: &str) -> BTreeMap<String, String> {
        let s = self.state.lock().unwrap();
        s.secrets.get(&name.to_lowercase()).and_then(|s| s.versions.last()).map(|v| v.tags.clone()).unwrap_or_default()
    }

    pub fn content_type(&self, name: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.secrets.get(&name.to_lowercase()).and_then(|s| s.versions.last()).and_then(|v| v.content_type.clone())
    }

    pub fn value(&self, name: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.secrets.get(&name.to_lowercase()).and_then(|s| s.versions.last()).map(|v| v.value.clone())
    }
}

fn response(status: StatusCode, body: Option<J>) -> AsyncRawResponse {
    let mut h = Headers::new();
    let bytes = match body {
        Some(b) => {
            h.insert("content-type", "application/json; charset=utf-8");
            b.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    AsyncRawResponse::from_bytes(status, h, bytes)
}

fn kv_error(status: StatusCode, code: &str, message: String, inner: Option<&str>) -> AsyncRawResponse {
    let mut e = json!({"error": {"code": code, "message": message}});
    if let Some(i) = inner {
        e["error"]["innererror"] = json!({"code": i});
    }
    response(status, Some(e))
}

fn not_found(name: &str) -> AsyncRawResponse {
    kv_error(
        StatusCode::NotFound,
        "SecretNotFound",
        format!("A secret with (name/id) {name} was not found in this key vault."),
        None,
    )
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 127 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn attributes(v: &Version) -> J {
    json!({"enabled": v.enabled, "created": v.created, "updated": v.updated, "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90})
}

fn bundle(s: &KvSecret, v: &Version, with_value: bool) -> J {
    let mut j = json!({
        "id": format!("{VAULT_URL}/secrets/{}/{}", s.name, v.id),
        "attributes": attributes(v),
        "tags": v.tags,
    });
    if let Some(ct) = &v.content_type {
        j["contentType"] = json!(ct);
    }
    if with_value {
        j["value"] = json!(v.value);
    }
    j
}

fn properties(s: &KvSecret) -> J {
    let v = s.versions.last().expect("a secret has a version");
    let mut j = json!({"id": format!("{VAULT_URL}/secrets/{}", s.name), "attributes": attributes(v), "tags": v.tags});
    if let Some(ct) = &v.content_type {
        j["contentType"] = json!(ct);
    }
    j
}

fn deleted_bundle(d: &Deleted, with_value: bool) -> J {
    let v = d.secret.versions.last().unwrap();
    let mut j = bundle(&d.secret, v, with_value);
    j["recoveryId"] = json!(format!("{VAULT_URL}/deletedsecrets/{}", d.secret.name));
    j["deletedDate"] = json!(d.deleted);
    j["scheduledPurgeDate"] = json!(d.deleted + 90 * 86400);
    j
}

fn query(req: &Request) -> BTreeMap<String, String> {
    req.url().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// One page of `items` starting at `$skiptoken`, with a `nextLink` when more remain.
fn paged(items: Vec<J>, q: &BTreeMap<String, String>, path: &str) -> AsyncRawResponse {
    let size = q.get("maxresults").and_then(|m| m.parse::<usize>().ok()).unwrap_or(PAGE).clamp(1, PAGE);
    let start = q.get("$skiptoken").and_then(|t| t.parse::<usize>().ok()).unwrap_or(0).min(items.len());
    let end = (start + size).min(items.len());
    let next = (end < items.len())
        .then(|| format!("{VAULT_URL}{path}?api-version=2025-07-01&$skiptoken={end}&maxresults={size}"));
    response(StatusCode::Ok, Some(json!({"value": items[start..end], "nextLink": next})))
}

#[async_trait]
impl Policy for FakePolicy {
    async fn send(&self, _ctx: &Context, request: &mut Request, _next: &[Arc<dyn Policy>]) -> PolicyResult {
        let mut st = self.0.lock().unwrap();
        let method = request.method();
        let url = request.url().clone();
        st.requests.push(format!("{method:?} {}", url.path()));
        assert_eq!(url.host_str(), Some("fakevault.vault.azure.net"), "the SDK talks to the configured vault");
        let auth = request.headers().get_optional_str(&"authorization".into()).map(str::to_string);
        if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            // Key Vault's challenge: the SDK learns the resource from here.
            st.challenges += 1;
            let mut h = Headers::new();
            h.insert(
                "www-authenticate",
                "Bearer authorization=\"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000\", resource=\"https://vault.azure.net\"",
            );
            return Ok(AsyncRawResponse::from_bytes(StatusCode::Unauthorized, h, Vec::<u8>::new()));
        }
        let q = query(request);
        if !q.contains_key("api-version") {
            return Ok(kv_error(StatusCode::BadRequest, "BadParameter", "The api-version query parameter is required.".into(), None));
        }
        if st.throttle_remaining > 0 {
            st.throttle_remaining -= 1;
            st.throttled += 1;
            let mut h = Headers::new();
            h.insert("content-type", "application/json; charset=utf-8");
            h.insert("retry-after", st.throttle_retry_after.to_string());
            let body = json!({"error": {"code": "Throttled", "message": "Request was not processed because too many requests were received."}});
            return Ok(AsyncRawResponse::from_bytes(StatusCode::TooManyRequests, h, body.to_string().into_bytes()));
        }
        let body: J = match request.body() {
            Body::Bytes(b) if !b.is_empty() => serde_json::from_slice(b).unwrap_or(J::Null),
            _ => J::Null,
        };
        st.clock += 1;
        let now = 1_700_000_000 + st.clock;
        let segs: Vec<String> = url.path_segments().map(|s| s.map(str::to_string).collect()).unwrap_or_default();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        Ok(match (method, segs.as_slice()) {
            (Method::Get, ["secrets"]) => {
                let items: Vec<J> = st.secrets.values().map(properties).collect();
                paged(items, &q, "/secrets")
            }
            (Method::Put, ["secrets", name]) => set_secret(&mut st, name, &body, now),
            (Method::Get, ["secrets", name] | ["secrets", name, ""]) => get_secret(&st, name, None),
            (Method::Get, ["secrets", name, version]) => get_secret(&st, name, Some(version)),
            (Method::Patch, ["secrets", name] | ["secrets", name, ""]) => update(&mut st, name, None, &body, now),
            (Method::Patch, ["secrets", name, version]) => update(&mut st, name, Some(version), &body, now),
            (Method::Delete, ["secrets", name]) => match st.secrets.remove(&name.to_lowercase()) {
                Some(secret) => {
                    let d = Deleted { secret, deleted: now };
                    let out = deleted_bundle(&d, false);
                    st.deleted.insert(name.to_lowercase(), d);
                    response(StatusCode::Ok, Some(out))
                }
                None => not_found(name),
            },
            (Method::Get, ["deletedsecrets"]) => {
                let items: Vec<J> = st.deleted.values().map(|d| deleted_bundle(d, false)).collect();
                paged(items, &q, "/deletedsecrets")
            }
            (Method::Get, ["deletedsecrets", name]) => match st.deleted.get(&name.to_lowercase()) {
                Some(d) => response(StatusCode::Ok, Some(deleted_bundle(d, false))),
                None => kv_error(StatusCode::NotFound, "SecretNotFound", format!("Deleted Secret not found: {name}"), None),
            },
            (Method::Post, ["deletedsecrets", name, "recover"]) => match st.deleted.remove(&name.to_lowercase()) {
                Some(d) => {
                    let out = bundle(&d.secret, d.secret.versions.last().unwrap(), false);
                    st.secrets.insert(name.to_lowercase(), d.secret);
                    response(StatusCode::Ok, Some(out))
                }
                None => kv_error(StatusCode::NotFound, "SecretNotFound", format!("Deleted Secret not found: {name}"), None),
            },
            (Method::Delete, ["deletedsecrets", name]) => match st.deleted.remove(&name.to_lowercase()) {
                Some(_) => response(StatusCode::NoContent, None),
                None => kv_error(StatusCode::NotFound, "SecretNotFound", format!("Deleted Secret not found: {name}"), None),
            },
            _ => kv_error(StatusCode::BadRequest, "BadParameter", format!("unsupported request (fake): {} ", url.path()), None),
        })
    }
}

fn set_secret(st: &mut State, name: &str, body: &J, now: i64) -> AsyncRawResponse {
    if !valid_name(name) {
        return kv_error(
            StatusCode::BadRequest,
            "BadParameter",
            "The request URI contains an invalid name: names match ^[0-9a-zA-Z-]+$ and are at most 127 characters.".into(),
            None,
        );
    }
    let Some(value) = body.get("value").and_then(|v| v.as_str()) else {
        return kv_error(StatusCode::BadRequest, "BadParameter", "Property value is required.".into(), None);
    };
    if value.len() > MAX_VALUE {
        return kv_error(StatusCode::BadRequest, "BadParameter", "Secret value is too large (25 KB maximum).".into(), None);
    }
    if st.deleted.contains_key(&name.to_lowercase()) {
        return kv_error(
            StatusCode::Conflict,
            "Conflict",
            format!("Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."),
            Some("ObjectIsDeletedButRecoverable"),
        );
    }
    st.seq += 1;
    let tags: BTreeMap<String, String> = body
        .get("tags")
        .and_then(|t| t.as_object())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    let v = Version {
        id: format!("{:032x}", st.seq),
        value: value.to_string(),
        content_type: body.get("contentType").and_then(|c| c.as_str()).map(str::to_string),
        tags,
        enabled: body.pointer("/attributes/enabled").and_then(|e| e.as_bool()).unwrap_or(true),
        created: now,
        updated: now,
    };
    let entry = st.secrets.entry(name.to_lowercase()).or_insert_with(|| KvSecret { name: name.to_string(), versions: Vec::new() });
    entry.versions.push(v);
    response(StatusCode::Ok, Some(bundle(entry, entry.versions.last().unwrap(), true)))
}

fn get_secret(st: &State, name: &str, version: Option<&str>) -> AsyncRawResponse {
    let Some(s) = st.secrets.get(&name.to_lowercase()) else { return not_found(name) };
    let v = match version {
        None => s.versions.last(),
        Some(id) => s.versions.iter().find(|v| v.id == id),
    };
    let Some(v) = v else { return not_found(name) };
    if !v.enabled {
        return kv_error(
            StatusCode::Forbidden,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.".into(),
            Some("SecretDisabled"),
        );
    }
    response(StatusCode::Ok, Some(bundle(s, v, true)))
}

fn update(st: &mut State, name: &str, version: Option<&str>, body: &J, now: i64) -> AsyncRawResponse {
    let Some(s) = st.secrets.get_mut(&name.to_lowercase()) else { return not_found(name) };
    let idx = match version {
        None => s.versions.len() - 1,
        Some(id) => match s.versions.iter().position(|v| v.id == id) {
            Some(i) => i,
            None => return not_found(name),
        },
    };
    let v = &mut s.versions[idx];
    if let Some(e) = body.pointer("/attributes/enabled").and_then(|e| e.as_bool()) {
        v.enabled = e;
    }
    if let Some(t) = body.get("tags").and_then(|t| t.as_object()) {
        v.tags = t.iter().map(|(k, x)| (k.clone(), x.as_str().unwrap_or_default().to_string())).collect();
    }
    if let Some(ct) = body.get("contentType").and_then(|c| c.as_str()) {
        v.content_type = Some(ct.to_string());
    }
    v.updated = now;
    let out = bundle(s, &s.versions[idx], false);
    response(StatusCode::Ok, Some(out))
}
