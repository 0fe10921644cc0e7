//! `/healthz`, `/readyz`, `/metrics`, `/status` (axum). Nothing here shows a value or a credential:
//! store names are their Display (kind and location), errors are the stores' own messages.
//!
//! `/readyz` asks the backends at most once per `readyz_cache_secs` whoever calls it (concurrent
//! callers share one evaluation), with at most `readyz_concurrency` checks at once, each bounded
//! by `readyz_timeout_secs`: an open port cannot be used to burn the quota Airflow shares.
//! `/status` and `/metrics` require `[daemon] http_token` when one is configured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde::Serialize;

use super::Shared;
use crate::config::daemon::DaemonConfig;

/// What the handlers share: the daemon's state and the last `/readyz` evaluation.
pub struct Http {
    shared: Arc<Shared>,
    ready: tokio::sync::Mutex<Option<Evaluated>>,
}

struct Evaluated {
    at: Instant,
    generation: u64,
    code: StatusCode,
    body: String,
}

pub fn router(shared: Arc<Shared>) -> Router {
    let state = Arc::new(Http { shared, ready: tokio::sync::Mutex::new(None) });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
}

/// The warning a `listen` address deserves: off loopback without a token, `/status` and `/metrics`
/// are open to the network.
pub fn exposure_warning(addr: std::net::SocketAddr, cfg: &DaemonConfig) -> Option<String> {
    let has_token = cfg.http_token.is_some() || cfg.http_token_file.is_some();
    (!addr.ip().is_loopback() && !has_token).then(|| {
        format!(
            "[daemon] listen = {addr} is reachable off this host and no http_token is set: anyone who can reach \
             it can read /status and /metrics; set [daemon] http_token or http_token_file"
        )
    })
}

/// `Err(response)` unless the request carries the configured bearer token (or none is configured).
fn authorize(cfg: &DaemonConfig, headers: &HeaderMap) -> Result<(), Response> {
    let from_file;
    let token: &str = match (&cfg.http_token, &cfg.http_token_file) {
        (Some(t), _) => t.expose_plaintext(),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(t) => {
                from_file = crate::secret::SecretValue::new(t.trim().to_string());
                from_file.expose_plaintext()
            }
            Err(_) => {
                let why = format!("http_token_file {} cannot be read\n", path.display());
                return Err((StatusCode::INTERNAL_SERVER_ERROR, why).into_response());
            }
        },
        (None, None) => return Ok(()),
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token.is_empty() && constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Ok(());
    }
    Err((StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is required\n").into_response())
}

/// Compare without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json(code: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".into());
    (code, [(header::CONTENT_TYPE, "application/json")], text + "\n").into_response()
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize)]
struct Check {
    name: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Ready {
    ready: bool,
    generation: u64,
    checks: Vec<Check>,
}

/// Ready: the running configuration is valid (a rejected reload keeps the last good one), the
/// state database answers, and every store a job reads or writes is reachable. One evaluation is
/// reused for `readyz_cache_secs`; callers arriving meanwhile wait for it instead of starting
/// their own.
async fn readyz(State(http): State<Arc<Http>>) -> Response {
    let generation = http.shared.current();
    let ttl = Duration::from_secs(generation.cfg.daemon.readyz_cache_secs);
    let mut cached = http.ready.lock().await;
    if let Some(e) = cached.as_ref()
        && e.generation == generation.number
        && e.at.elapsed() < ttl
    {
        return (e.code, [(header::CONTENT_TYPE, "application/json")], e.body.clone()).into_response();
    }
    let (code, body) = evaluate(&generation).await;
    *cached = Some(Evaluated { at: Instant::now(), generation: generation.number, code, body: body.clone() });
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn evaluate(generation: &super::Generation) -> (StatusCode, String) {
    let timeout = Duration::from_secs(generation.cfg.daemon.readyz_timeout_secs.max(1));
    let mut checks = vec![Check { name: "config".into(), ok: true, error: None }];
    let state = tokio::time::timeout(timeout, generation.db.ping()).await;
    checks.push(match state {
        Ok(Ok(())) => Check { name: "state".into(), ok: true, error: None },
        Ok(Err(e)) => Check { name: "state".into(), ok: false, error: Some(e.to_string()) },
        Err(_) => Check { name: "state".into(), ok: false, error: Some(format!("no answer within {timeout:?}")) },
    });
    let names = generation.store_names();
    let stores: Vec<Check> = futures::stream::iter(names)
        .map(|name| async move {
            let r = tokio::time::timeout(timeout, generation.check_store(&name)).await;
            match r {
                Ok(Ok(())) => Check { name: format!("store {name}"), ok: true, error: None },
                Ok(Err(e)) => Check { name: format!("store {name}"), ok: false, error: Some(e) },
                Err(_) => Check { name: format!("store {name}"), ok: false, error: Some(format!("no answer within {timeout:?}")) },
            }
        })
        .buffered(generation.cfg.daemon.readyz_concurrency.max(1))
        .collect()
        .await;
    checks.extend(stores);
    let ready = checks.iter().all(|c| c.ok);
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::to_string_pretty(&Ready { ready, generation: generation.number, checks }).unwrap_or_else(|_| "{}".into());
    (code, body + "\n")
}

async fn metrics(State(http): State<Arc<Http>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&http.shared.current().cfg.daemon, &headers) {
        return denied;
    }
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        http.shared.metrics.encode(),
    )
        .into_response()
}

async fn status(State(http): State<Arc<Http>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&http.shared.current().cfg.daemon, &headers) {
        return denied;
    }
    json(StatusCode::OK, &http.shared.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_without_a_token_is_warned() {
        let mut cfg = DaemonConfig::default();
        assert!(exposure_warning("0.0.0.0:9477".parse().unwrap(), &cfg).is_some());
        assert!(exposure_warning("[::]:9477".parse().unwrap(), &cfg).is_some());
        assert!(exposure_warning("127.0.0.1:9477".parse().unwrap(), &cfg).is_none());
        cfg.http_token = Some("t".into());
        assert!(exposure_warning("0.0.0.0:9477".parse().unwrap(), &cfg).is_none());
    }

    #[test]
    fn the_token_is_compared_whole() {
        let cfg = DaemonConfig { http_token: Some("s3cret-token".into()), ..DaemonConfig::default() };
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(authorize(&cfg, &HeaderMap::new()).is_err());
        assert!(authorize(&cfg, &with("Bearer s3cret")).is_err());
        assert!(authorize(&cfg, &with("Bearer s3cret-token-and-more")).is_err());
        assert!(authorize(&cfg, &with("Basic s3cret-token")).is_err());
        assert!(authorize(&cfg, &with("Bearer s3cret-token")).is_ok());
        assert!(authorize(&DaemonConfig::default(), &HeaderMap::new()).is_ok(), "no token configured: open");
        assert!(!format!("{cfg:?}").contains("s3cret-token"), "Debug shows the token");
    }
}
