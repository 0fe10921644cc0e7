//! Vault HTTP calls per item, counted on the wire (issue 18: calls per item at the floor).
//!
//! A loopback proxy in front of a real `bao server -dev` records every request line; each apply
//! is a real plan (`scan` of the target, `diff`) and `apply::execute` with read-back, and only the
//! requests of the apply are counted. The numbers asserted here are the ones docs/benchmarks.md
//! documents per operation.

#[path = "support/tcp_proxy.rs"]
mod tcp_proxy;
#[path = "support/vault_server.rs"]
mod vault_server;

use std::sync::Arc;

use airflow_secrets_sync::apply::{self, ApplyOptions, ApplyReport, NoJournal};
use airflow_secrets_sync::config::ApplyConfig;
use airflow_secrets_sync::model::{Connection, Entry, Inventory, ItemId, Kind, Ownership};
use airflow_secrets_sync::plan::{self, Plan, Policy, Selection};
use airflow_secrets_sync::store::memory::MemoryStore;
use airflow_secrets_sync::store::vault::{VaultAuth, VaultConfig, VaultStore};
use airflow_secrets_sync::store::{self, Store, layer};
use serde_json::json;
use tcp_proxy::TcpProxy;
use vault_server::{ROOT_TOKEN, VaultServer};

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

async fn open_through(proxy: &TcpProxy) -> Arc<VaultStore> {
    let config = VaultConfig {
        url: Some(proxy.url()),
        auth: VaultAuth::Token { token: Some(ROOT_TOKEN.into()), token_path: None },
        ..VaultConfig::default()
    };
    Arc::new(VaultStore::open(&config).await.unwrap_or_else(|e| panic!("open: {e}")))
}

fn source(values: &str, n_vars: usize) -> Inventory {
    let mut inv: Inventory = (0..n_vars).map(|i| Entry::variable(format!("var_{i}"), format!("{values}-{i}"))).collect();
    for i in 0..2 {
        let conn = Connection {
            conn_type: Some("postgres".into()),
            host: Some(format!("db{i}.example.com")),
            login: Some("airflow".into()),
            password: Some(format!("{values}-pw-{i}").into()),
            port: Some(5432),
            ..Default::default()
        };
        inv.insert(Entry::connection(format!("conn_{i}"), conn));
    }
    inv
}

/// Plan `src` against the store as `migrate` does (scan, diff).
async fn plan_for(target: &Arc<VaultStore>, src: &Inventory, prune: bool) -> Plan {
    let tgt = store::scan_all(target.as_ref(), &[Kind::Variable, Kind::Connection]).await.unwrap();
    let policy = Policy::new(Selection::all(), &ApplyConfig { prune, ..ApplyConfig::default() });
    plan::diff(&MemoryStore::new("source"), src, target.as_ref(), &tgt, &policy)
}

/// Apply `plan`; the report and the request lines the apply (writes and read-back) sent.
async fn apply_counted(proxy: &TcpProxy, target: &Arc<VaultStore>, plan: &Plan) -> (ApplyReport, Vec<String>) {
    let before = proxy.request_lines().len();
    let target: Arc<dyn Store> = target.clone();
    let report = apply::execute(plan, target, &ApplyOptions::default(), Arc::new(NoJournal)).await;
    (report, proxy.request_lines()[before..].to_vec())
}

fn count(lines: &[String], methods: &[&str], prefix: &str) -> usize {
    lines
        .iter()
        .filter(|l| {
            let mut parts = l.split_whitespace();
            let (m, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            methods.contains(&m) && p.starts_with(prefix)
        })
        .count()
}

#[tokio::test]
async fn calls_per_item_are_at_the_floor() {
    let server = VaultServer::start();
    let proxy = TcpProxy::start(port_of(&server.url()), usize::MAX);
    let target = open_through(&proxy).await;
    let n = 6; // 4 variables, 2 connections

    // Create: mark, check-and-set 0 write, read-back. No metadata read: the plan listed the folder.
    let src = source("one", 4);
    let plan = plan_for(&target, &src, false).await;
    assert_eq!(plan.summary.create, n);
    let (report, lines) = apply_counted(&proxy, &target, &plan).await;
    assert_eq!((report.created, report.verified), (n, n), "{:?}", report.failures);
    assert_eq!(lines.len(), 3 * n, "3 calls per created item: {lines:#?}");
    assert_eq!(count(&lines, &["POST", "PUT"], "/v1/secret/metadata/"), n, "{lines:#?}");
    assert_eq!(count(&lines, &["POST", "PUT"], "/v1/secret/data/"), n, "{lines:#?}");
    assert_eq!(count(&lines, &["GET"], "/v1/secret/data/"), n, "{lines:#?}");
    // Marked as ours, with the id: the next plan sees them owned.
    let custom = server.root_ok("GET", "/v1/secret/metadata/variables/var_0", None)["data"]["custom_metadata"].clone();
    assert_eq!(custom, json!({ "managed-by": "airflow-secrets-sync", "airflow-id": "var_0" }));

    // Update of an owned item: check-and-set at the version the plan saw, read-back.
    let src = source("two", 4);
    let plan = plan_for(&target, &src, false).await;
    assert_eq!(plan.summary.update, n);
    let (report, lines) = apply_counted(&proxy, &target, &plan).await;
    assert_eq!((report.updated, report.verified), (n, n), "{:?}", report.failures);
    assert_eq!(lines.len(), 2 * n, "2 calls per updated owned item: {lines:#?}");
    assert_eq!(count(&lines, &["POST", "PUT"], "/v1/secret/data/"), n, "{lines:#?}");
    assert_eq!(count(&lines, &["GET"], "/v1/secret/data/"), n, "{lines:#?}");
    let seen = target.read(&[ItemId::variable("var_1")]).await.unwrap();
    let e = seen.get(&ItemId::variable("var_1")).unwrap();
    assert_eq!(e.meta.ownership, Ownership::Ours);
    assert_eq!(e.meta.version.as_deref(), Some("2"));

    // Unchanged: nothing is sent.
    let plan = plan_for(&target, &src, false).await;
    assert_eq!(plan.summary.unchanged, n);
    let (report, lines) = apply_counted(&proxy, &target, &plan).await;
    assert_eq!(report.written(), 0);
    assert!(lines.is_empty(), "{lines:#?}");

    // Delete (prune) of an owned item: ownership re-check, delete, read-back.
    let src = source("two", 2);
    let plan = plan_for(&target, &src, true).await;
    assert_eq!(plan.summary.delete, 2);
    let (report, lines) = apply_counted(&proxy, &target, &plan).await;
    assert_eq!((report.deleted, report.verified), (2, 2), "{:?}", report.failures);
    assert_eq!(lines.len(), 3 * 2, "3 calls per deleted item: {lines:#?}");
    assert_eq!(count(&lines, &["GET"], "/v1/secret/metadata/"), 2, "{lines:#?}");
    assert_eq!(count(&lines, &["DELETE"], "/v1/secret/metadata/"), 2, "{lines:#?}");
}

/// The plan saw the path absent; before the apply someone else creates a secret there. The
/// check-and-set 0 write fails: a clean conflict, their value untouched and no mark of ours left.
#[tokio::test]
async fn a_secret_created_since_the_plan_is_never_overwritten_nor_marked() {
    let server = VaultServer::start();
    let proxy = TcpProxy::start(port_of(&server.url()), usize::MAX);
    let target = open_through(&proxy).await;
    let src: Inventory = [Entry::variable("raced", "ours-canary-value"), Entry::variable("calm", "fine")].into_iter().collect();
    let plan = plan_for(&target, &src, false).await;
    assert_eq!(plan.summary.create, 2);

    server.root_ok("POST", "/v1/secret/data/variables/raced", Some(json!({ "data": { "value": "theirs" } })));
    let (report, _) = apply_counted(&proxy, &target, &plan).await;
    assert_eq!(report.created, 1, "{:?}", report.failures);
    assert_eq!(report.failures.len(), 1);
    let failure = &report.failures[0];
    assert_eq!(failure.id, ItemId::variable("raced"));
    assert!(failure.message.contains("changed since it was read"), "{}", failure.message);
    assert!(!failure.message.contains("canary") && !failure.message.contains("theirs"), "{}", failure.message);

    let body = server.root_ok("GET", "/v1/secret/data/variables/raced", None);
    assert_eq!(body["data"]["data"], json!({ "value": "theirs" }), "the foreign secret was overwritten");
    let custom = &body["data"]["metadata"]["custom_metadata"];
    assert!(custom.is_null() || *custom == json!({}), "our mark was left on a foreign secret: {custom}");
    let inv = target.read(&[ItemId::variable("raced")]).await.unwrap();
    assert_eq!(inv.get(&ItemId::variable("raced")).unwrap().meta.ownership, Ownership::Foreign);
}

/// A foreign secret whose latest version is soft-deleted reads as absent (Airflow reads nothing),
/// so the plan creates it; the path was listed, so the write reads its metadata first and refuses
/// it without touching its custom_metadata (a blind mark would replace it).
#[tokio::test]
async fn a_soft_deleted_foreign_secret_keeps_its_metadata() {
    let server = VaultServer::start();
    server.root_ok("POST", "/v1/secret/data/variables/gone", Some(json!({ "data": { "value": "theirs" } })));
    server.root_ok("POST", "/v1/secret/metadata/variables/gone", Some(json!({ "custom_metadata": { "owner": "team-a" } })));
    server.root_ok("DELETE", "/v1/secret/data/variables/gone", None);
    let proxy = TcpProxy::start(port_of(&server.url()), usize::MAX);
    let target = open_through(&proxy).await;
    let src: Inventory = [Entry::variable("gone", "ours")].into_iter().collect();
    let plan = plan_for(&target, &src, false).await;
    assert_eq!(plan.summary.create, 1);
    let (report, _) = apply_counted(&proxy, &target, &plan).await;
    assert_eq!(report.created, 0);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let custom = server.root_ok("GET", "/v1/secret/metadata/variables/gone", None)["data"]["custom_metadata"].clone();
    assert_eq!(custom, json!({ "owner": "team-a" }), "the refused write changed the foreign custom_metadata");
}

/// A scripted Vault: each request is answered by the first unused script entry for its method
/// and path (`None`: the connection is dropped unanswered), anything else 404. Returns its URL
/// and the request lines.
fn scripted(script: Vec<(&'static str, String, Option<(u16, serde_json::Value)>)>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut script: Vec<Option<(&str, String, Option<(u16, serde_json::Value)>)>> = script.into_iter().map(Some).collect();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let line = line.trim_end().to_string();
            seen.lock().unwrap().push(line.clone());
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").split('?').next().unwrap_or(""));
            let hit = script.iter_mut().find(|s| s.as_ref().is_some_and(|(m, p, _)| *m == method && p == path));
            let answer = match hit.and_then(Option::take) {
                Some((_, _, answer)) => answer,
                None => Some((404, json!({ "errors": [] }))),
            };
            if let Some((status, json)) = answer {
                let body = if status == 204 { String::new() } else { json.to_string() };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    (url, log)
}

fn kv2_body(value: &str, custom: serde_json::Value) -> serde_json::Value {
    json!({
        "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": {
            "data": { "value": value },
            "metadata": { "created_time": "t", "custom_metadata": custom, "deletion_time": "", "destroyed": false, "version": 1 }
        },
        "wrap_info": null, "warnings": null, "auth": null
    })
}

/// A create whose data write is retried after its answer was lost finds check-and-set 0 refused
/// by its own first attempt: reading the secret shows our value under our mark, so the write
/// succeeded and the mark stays. A secret someone else wrote there instead is a conflict, and our
/// mark's keys come off it.
#[tokio::test]
async fn a_create_retried_after_a_lost_answer_keeps_its_own_mark() {
    let mark = |id: &str| json!({ "managed-by": "airflow-secrets-sync", "airflow-id": id });
    let cas_failed = || Some((400, json!({ "errors": ["check-and-set parameter did not match the current version"] })));
    let data = |id: &str| format!("/v1/secret/data/variables/{id}");
    let meta = |id: &str| format!("/v1/secret/metadata/variables/{id}");
    let metadata_body = |custom: serde_json::Value| {
        json!({ "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
                "wrap_info": null, "warnings": null, "auth": null,
                "data": { "cas_required": false, "created_time": "t", "current_version": 1, "custom_metadata": custom,
                          "delete_version_after": "0s", "max_versions": 0, "oldest_version": 0, "updated_time": "t",
                          "versions": { "1": { "created_time": "t", "deletion_time": "", "destroyed": false } } } })
    };
    let (url, log) = scripted(vec![
        ("POST", meta("landed"), Some((204, json!(null)))),
        ("POST", data("landed"), None),
        ("POST", data("landed"), cas_failed()),
        ("GET", data("landed"), Some((200, kv2_body("mine", mark("landed"))))),
        ("POST", meta("raced"), Some((204, json!(null)))),
        ("POST", data("raced"), cas_failed()),
        ("GET", data("raced"), Some((200, kv2_body("theirs", mark("raced"))))),
        ("GET", meta("raced"), Some((200, metadata_body(mark("raced"))))),
        ("POST", meta("raced"), Some((204, json!(null)))),
    ]);
    let config = VaultConfig {
        url: Some(url),
        auth: VaultAuth::Token { token: Some("t".into()), token_path: None },
        ..VaultConfig::default()
    };
    let store = VaultStore::open(&config).await.unwrap_or_else(|e| panic!("open: {e}"));
    // The store sends each request once; the retry layer sends the write again.
    let store = layer::Layer::new(Arc::new(store), layer::Retry::new(layer::RetryPolicy::default()));
    // The plan's scan: the folder lists nothing (404).
    assert!(store.scan(Kind::Variable).await.unwrap().is_empty());

    store.write(&Entry::variable("landed", "mine"), &airflow_secrets_sync::store::Precondition::Absent).await.unwrap();
    let lines = log.lock().unwrap().clone();
    assert_eq!(lines.iter().filter(|l| l.starts_with("POST") && l.contains(&meta("landed"))).count(), 1, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.starts_with("GET") && l.contains(&meta("landed"))), "{lines:#?}");

    let err = store.write(&Entry::variable("raced", "mine"), &airflow_secrets_sync::store::Precondition::Absent).await.unwrap_err();
    assert!(matches!(err, airflow_secrets_sync::store::StoreError::Conflict { .. }), "{err}");
    let lines = log.lock().unwrap().clone();
    assert_eq!(lines.iter().filter(|l| l.starts_with("POST") && l.contains(&meta("raced"))).count(), 2, "unmarked: {lines:#?}");
}
