//! `/healthz`, `/readyz`, `/metrics`, `/status` (axum). Nothing here shows a value or a credential:
//! store names are their Display (kind and location), errors are the stores' own messages.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(shared)
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
/// state database answers, and every store a job reads or writes is reachable.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let generation = shared.current();
    let timeout = Duration::from_secs(generation.cfg.daemon.readyz_timeout_secs.max(1));
    let mut checks = vec![Check { name: "config".into(), ok: true, error: None }];
    let state = tokio::time::timeout(timeout, generation.db.ping()).await;
    checks.push(match state {
        Ok(Ok(())) => Check { name: "state".into(), ok: true, error: None },
        Ok(Err(e)) => Check { name: "state".into(), ok: false, error: Some(e.to_string()) },
        Err(_) => Check { name: "state".into(), ok: false, error: Some(format!("no answer within {timeout:?}")) },
    });
    for name in generation.store_names() {
        let r = tokio::time::timeout(timeout, generation.check_store(&name)).await;
        checks.push(match r {
            Ok(Ok(())) => Check { name: format!("store {name}"), ok: true, error: None },
            Ok(Err(e)) => Check { name: format!("store {name}"), ok: false, error: Some(e) },
            Err(_) => Check { name: format!("store {name}"), ok: false, error: Some(format!("no answer within {timeout:?}")) },
        });
    }
    let ready = checks.iter().all(|c| c.ok);
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(code, &Ready { ready, generation: generation.number, checks })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    json(StatusCode::OK, &shared.status())
}
