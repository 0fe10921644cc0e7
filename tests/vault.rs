//! The Vault store against a real OpenBao dev server (`bao server -dev`, one per test).
//!
//! Airflow is the judge: the request lines in `backend_names.json` are replayed byte for byte
//! against what the store wrote, and the stored dicts in its `payloads` must read as Airflow read
//! them.

#[path = "support/vault_server.rs"]
mod vault_server;

use airflow_secrets_sync::airflow::connection::{self, equivalent};
use airflow_secrets_sync::model::{
    Connection, Entry, Inventory, ItemErrorKind, ItemId, Kind, Ownership, SecretValue,
};
use airflow_secrets_sync::store::vault::{
    VaultAuth, VaultConfig, VaultStore, python_quote,
};
use airflow_secrets_sync::store::{Placement, Precondition, Store, StoreError};
use serde_json::{Value as Json, json};
use vault_server::{ROOT_TOKEN, VaultServer};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
const POLICY_TOOL: &str = include_str!("../docs/vault-policy-airflow-secrets-sync.hcl");
const POLICY_AIRFLOW: &str = include_str!("../docs/vault-policy-airflow.hcl");

fn token_config(server: &VaultServer, token: &str) -> VaultConfig {
    VaultConfig {
        url: Some(server.url()),
        auth: VaultAuth::Token { token: Some(token.into()), token_path: None },
        ..VaultConfig::default()
    }
}

async fn open(config: &VaultConfig) -> VaultStore {
    VaultStore::open(config).await.unwrap_or_else(|e| panic!("open: {e}"))
}

fn backend_names() -> Json {
    let text = std::fs::read_to_string(format!("{TESTDATA}/backend_names.json")).expect("backend_names.json");
    serde_json::from_str(&text).unwrap()
}

/// Write a KV v2 secret as someone else would (root, no custom_metadata).
fn put_foreign(server: &VaultServer, api_path: &str, data: Json) {
    server.root_ok("POST", &format!("/v1/{}", python_quote(api_path)), Some(json!({ "data": data })));
}

fn set_policy(server: &VaultServer, name: &str, hcl: &str) {
    server.root_ok("PUT", &format!("/v1/sys/policies/acl/{name}"), Some(json!({ "policy": hcl })));
}

fn token_with_policies(server: &VaultServer, policies: &[&str]) -> String {
    let body = server.root_ok("POST", "/v1/auth/token/create", Some(json!({ "policies": policies, "ttl": "1h" })));
    body["auth"]["client_token"].as_str().unwrap().to_string()
}

/// An AppRole `role` with `policies`; returns (role_id, secret_id).
fn approle(server: &VaultServer, role: &str, policies: &[&str]) -> (String, String) {
    if server.root_ok("GET", "/v1/sys/auth", None)["data"]["approle/"].is_null() {
        server.root_ok("POST", "/v1/sys/auth/approle", Some(json!({ "type": "approle" })));
    }
    server.root_ok(
        "POST",
        &format!("/v1/auth/approle/role/{role}"),
        Some(json!({ "token_policies": policies, "token_ttl": "1h" })),
    );
    let role_id = server.root_ok("GET", &format!("/v1/auth/approle/role/{role}/role-id"), None)["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = server.root_ok("POST", &format!("/v1/auth/approle/role/{role}/secret-id"), None)["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    (role_id, secret_id)
}

fn approle_config(server: &VaultServer, role_id: String, secret_id: String) -> VaultConfig {
    VaultConfig {
        url: Some(server.url()),
        auth: VaultAuth::Approle {
            role_id,
            secret_id: Some(secret_id.into()),
            auth_mount_point: "approle".into(),
        },
        ..VaultConfig::default()
    }
}

fn http_conn(host: &str) -> Connection {
    Connection { conn_type: Some("http".into()), host: Some(host.into()), port: Some(8080), ..Default::default() }
}

fn variable_value(inv: &Inventory, id: &ItemId) -> Option<String> {
    inv.get(id).and_then(|e| e.as_variable()).map(|v| v.value.expose_plaintext().to_string())
}

// ---- Airflow's vectors ------------------------------------------------------------------

/// For every Vault config in `backend_names.json`: the store places each id where Airflow
/// requests it, and Airflow's exact request line (replayed byte for byte) finds what the store
/// wrote. Where Airflow sends no request, the store reports the id as unreachable.
#[tokio::test]
async fn airflow_request_lines_find_what_the_store_wrote() {
    let server = VaultServer::start();
    let doc = backend_names();
    let mut replayed = 0;
    for config in doc["names"].as_array().unwrap().iter().filter(|n| n["backend"] == "VaultBackend") {
        let name = config["config"].as_str().unwrap();
        let mut kwargs = config["kwargs"].as_object().unwrap().clone();
        kwargs.insert("url".into(), json!(server.url()));
        kwargs.insert("token".into(), json!(ROOT_TOKEN));
        let cfg = VaultConfig::from_airflow_kwargs(&kwargs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let version = cfg.kv_engine_version.number();
        let mount = cfg.mount_point.clone().unwrap_or_else(|| "team".into());
        server.mount_kv(&mount, version);
        let store = open(&cfg).await;

        for (id, kinds) in config["ids"].as_object().unwrap() {
            for (kind, key) in [(Kind::Variable, "variable"), (Kind::Connection, "connection")] {
                let item = ItemId::new(kind, id.clone());
                let want = &kinds[key]["airflow_3.3.2"]["requested"];
                let placement = store.locate(&item);
                let entry = match kind {
                    Kind::Variable => Entry::variable(id.clone(), format!("value of {id}")),
                    Kind::Connection => Entry::connection(id.clone(), http_conn("h.example.com")),
                };
                let Some(line) = want.as_array().and_then(|l| l[0].as_str()) else {
                    assert!(matches!(placement, Placement::Unreachable(_)), "{name} {item}: {placement:?}");
                    let err = store.write(&entry, &Precondition::Any).await.expect_err("unreachable id written");
                    assert!(
                        matches!(&err, StoreError::Item { error, .. } if error.kind == ItemErrorKind::Unreachable),
                        "{name} {item}: {err}"
                    );
                    continue;
                };
                let Placement::At(at) = &placement else { panic!("{name} {item}: {placement:?}") };
                assert_eq!(format!("GET /v1/{}", python_quote(at)), line, "{name} {item}");

                store.write(&entry, &Precondition::Any).await.unwrap_or_else(|e| panic!("{name} {item}: {e}"));
                let path = line.strip_prefix("GET ").unwrap();
                let (status, body) = server.root("GET", path, None);
                assert_eq!(status, 200, "{name}: Airflow's `{line}` did not find {item}");
                let data = if version == 2 { &body["data"]["data"] } else { &body["data"] };
                let expected = match kind {
                    Kind::Variable => json!({ "value": format!("value of {id}") }),
                    Kind::Connection => Json::Object(connection::to_fields(entry.as_connection().unwrap())),
                };
                assert_eq!(data, &expected, "{name} {item}");
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 2 * 8 * 4 + 2, "only {replayed} request lines replayed");
}

fn expected_connection(returned: &Json) -> Connection {
    let s = |k: &str| returned[k].as_str().map(str::to_string);
    Connection {
        conn_type: s("conn_type"),
        description: s("description"),
        host: s("host"),
        login: s("login"),
        password: s("password").map(SecretValue::from),
        schema: s("schema"),
        port: returned["port"].as_u64().map(|p| p as u16),
        extra: s("extra").map(SecretValue::from),
    }
}

/// Each stored dict of `payloads[]` reads as Airflow 3.3.2 (hashicorp 4.8.4) read it: a value
/// where Airflow returned one, a per-item error where Airflow raised or returned nothing.
#[tokio::test]
async fn payload_vectors_read_as_airflow_reads_them() {
    let server = VaultServer::start();
    let store = open(&token_config(&server, ROOT_TOKEN)).await;
    let var = ItemId::variable("my_var");
    let conn = ItemId::connection("my_conn");
    let mut failures = Vec::new();
    for p in backend_names()["payloads"].as_array().unwrap().iter().filter(|p| p["backend"] == "VaultBackend") {
        let name = p["payload_name"].as_str().unwrap();
        put_foreign(&server, "secret/data/variables/my_var", p["stored"].clone());
        put_foreign(&server, "secret/data/connections/my_conn", p["stored"].clone());
        let inv = store.read(&[var.clone(), conn.clone()]).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = &p["results"]["airflow_3.3.2"];

        match &want["variable"]["returned"] {
            Json::String(s) => {
                if variable_value(&inv, &var).as_deref() != Some(s.as_str()) {
                    failures.push(format!("{name}: variable"));
                }
            }
            _ => {
                if inv.error(&var).map(|e| e.kind) != Some(ItemErrorKind::Unparseable) {
                    failures.push(format!("{name}: variable should be a per-item error"));
                }
            }
        }
        if want["connection"].get("error").is_some() {
            if inv.error(&conn).map(|e| e.kind) != Some(ItemErrorKind::Unparseable) {
                failures.push(format!("{name}: connection should be a per-item error"));
            }
        } else {
            let expected = expected_connection(&want["connection"]["returned"]);
            match inv.get(&conn).and_then(|e| e.as_connection()) {
                Some(got) if equivalent(&expected, got) => {}
                Some(_) => failures.push(format!("{name}: connection differs from Airflow's reading")),
                None => failures.push(format!("{name}: connection not read ({:?})", inv.error(&conn))),
            }
        }
        // What someone else wrote is never ours.
        if let Some(e) = inv.get(&var).or(inv.get(&conn)) {
            assert_eq!(e.meta.ownership, Ownership::Foreign, "{name}");
        }
    }
    assert!(failures.is_empty(), "payload vectors that disagree with Airflow:\n{}", failures.join("\n"));
}

// ---- ownership and check-and-set ---------------------------------------------------------

#[tokio::test]
async fn check_and_set_never_overwrites_a_concurrent_writer() {
    let server = VaultServer::start();
    let store = open(&token_config(&server, ROOT_TOKEN)).await;
    let id = ItemId::variable("cas_var");
    store.write(&Entry::variable("cas_var", "mine"), &Precondition::Absent).await.unwrap();
    let seen = store.read(std::slice::from_ref(&id)).await.unwrap();
    let version = seen.get(&id).unwrap().meta.version.clone().unwrap();
    assert_eq!(version, "1");

    // Someone else writes in between (a new version, same path).
    put_foreign(&server, "secret/data/variables/cas_var", json!({ "value": "theirs" }));

    let err = store.write(&Entry::variable("cas_var", "stale"), &Precondition::Version(version)).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict { id: got, .. } if *got == id), "{err}");
    let err = store.write(&Entry::variable("cas_var", "again"), &Precondition::Absent).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let now = store.read(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(variable_value(&now, &id).as_deref(), Some("theirs"), "the concurrent write was overwritten");
}

#[tokio::test]
async fn foreign_secrets_are_marked_and_never_blindly_replaced() {
    let server = VaultServer::start();
    put_foreign(&server, "secret/data/variables/foreign_var", json!({ "value": "theirs" }));
    let store = open(&token_config(&server, ROOT_TOKEN)).await;
    let id = ItemId::variable("foreign_var");

    let inv = store.scan(Kind::Variable).await.unwrap();
    let e = inv.get(&id).expect("foreign secret scanned");
    assert_eq!(e.meta.ownership, Ownership::Foreign);
    assert_eq!(e.meta.name.as_deref(), Some("secret/data/variables/foreign_var"));

    let err = store.write(&Entry::variable("foreign_var", "ours"), &Precondition::Any).await.unwrap_err();
    assert!(matches!(&err, StoreError::Item { error, .. } if error.kind == ItemErrorKind::NotOwned), "{err}");
    assert!(err.to_string().contains("secret/data/variables/foreign_var") && err.to_string().contains("adopt"), "{err}");
    let err = store.delete(&id).await.unwrap_err();
    assert!(err.to_string().contains("adopt"), "{err}");
    assert_eq!(variable_value(&store.read(std::slice::from_ref(&id)).await.unwrap(), &id).as_deref(), Some("theirs"));

    // A failed conditional write leaves a foreign secret foreign (our mark is never left behind)
    // and its value untouched.
    let err = store.write(&Entry::variable("foreign_var", "ours"), &Precondition::Absent).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let err = store.write(&Entry::variable("foreign_var", "ours"), &Precondition::Version("7".into())).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let still = store.read(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(still.get(&id).unwrap().meta.ownership, Ownership::Foreign);
    assert_eq!(variable_value(&still, &id).as_deref(), Some("theirs"));

    // The planner adopts explicitly, with the version it saw.
    let v = e.meta.version.clone().unwrap();
    store.write(&Entry::variable("foreign_var", "adopted"), &Precondition::Version(v)).await.unwrap();
    let after = store.read(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(after.get(&id).unwrap().meta.ownership, Ownership::Ours);
    let custom = server.root_ok("GET", "/v1/secret/metadata/variables/foreign_var", None)["data"]["custom_metadata"].clone();
    assert_eq!(custom, json!({ "managed-by": "airflow-secrets-sync", "airflow-id": "foreign_var" }));

    // A store configured with adopt = true may replace and delete foreign secrets blindly.
    put_foreign(&server, "secret/data/variables/other_foreign", json!({ "value": "x" }));
    let adopting = open(&VaultConfig { adopt: true, ..token_config(&server, ROOT_TOKEN) }).await;
    adopting.write(&Entry::variable("other_foreign", "y"), &Precondition::Any).await.unwrap();
    adopting.delete(&ItemId::variable("other_foreign")).await.unwrap();
    let (status, _) = server.root("GET", "/v1/secret/metadata/variables/other_foreign", None);
    assert_eq!(status, 404, "delete removes every version and the metadata");
}

// ---- permissions, policies, tokens -------------------------------------------------------

#[tokio::test]
async fn permission_denied_names_the_path_never_the_value() {
    let server = VaultServer::start();
    set_policy(
        &server,
        "read-one",
        r#"path "secret/data/variables/allowed" { capabilities = ["read"] }"#,
    );
    let root = open(&token_config(&server, ROOT_TOKEN)).await;
    root.write(&Entry::variable("allowed", "ok"), &Precondition::Any).await.unwrap();
    root.write(&Entry::variable("hidden", "canary-value-3f9a"), &Precondition::Any).await.unwrap();

    let token = token_with_policies(&server, &["read-one"]);
    let store = open(&token_config(&server, &token)).await;
    let canary = "canary-value-3f9a";

    let err = store.write(&Entry::variable("denied_var", canary), &Precondition::Absent).await.unwrap_err();
    assert!(matches!(err, StoreError::PermissionDenied { .. }), "{err}");
    let shown = format!("{err} {err:?}");
    // The first request refused names its path: the ownership mark (metadata) is written first.
    assert!(shown.contains("secret/metadata/variables/denied_var") || shown.contains("secret/data/variables/denied_var"), "{shown}");
    assert!(!shown.contains(canary), "{shown}");

    let err = store.scan(Kind::Variable).await.unwrap_err();
    assert!(matches!(&err, StoreError::PermissionDenied { what, .. } if what.contains("secret/metadata/variables/")), "{err}");

    let inv = store.read(&[ItemId::variable("allowed"), ItemId::variable("hidden")]).await.unwrap();
    assert_eq!(variable_value(&inv, &ItemId::variable("allowed")).as_deref(), Some("ok"));
    let e = inv.error(&ItemId::variable("hidden")).expect("denied read is a per-item error, not absent");
    assert_eq!(e.kind, ItemErrorKind::Unreadable);
    assert!(e.detail.contains("secret/data/variables/hidden") && !e.detail.contains(canary), "{e}");
}

/// The least-privilege policies in `docs/`: the tool passes the whole suite with its AppRole
/// policy, and Airflow's read policy reads what it wrote with Airflow's own requests.
#[tokio::test]
async fn documented_least_privilege_policies_work() {
    let server = VaultServer::start();
    set_policy(&server, "airflow-secrets-sync", POLICY_TOOL);
    set_policy(&server, "airflow", POLICY_AIRFLOW);
    let (role_id, secret_id) = approle(&server, "airflow-secrets-sync", &["airflow-secrets-sync"]);
    let store = open(&approle_config(&server, role_id, secret_id)).await;
    store.check().await.unwrap();
    // The conformance suite under this policy: tests/conformance.rs (vault_least_privilege).

    store.write(&Entry::variable("team/shared_var", "v1"), &Precondition::Absent).await.unwrap();
    store.write(&Entry::connection("warehouse", http_conn("db.internal")), &Precondition::Absent).await.unwrap();
    let airflow_token = token_with_policies(&server, &["airflow"]);
    let (status, body) =
        server.request("GET", "/v1/secret/data/variables/team/shared_var", Some(&airflow_token), None).unwrap();
    assert_eq!((status, &body["data"]["data"]), (200, &json!({ "value": "v1" })));
    let (status, _) =
        server.request("GET", "/v1/secret/data/connections/warehouse", Some(&airflow_token), None).unwrap();
    assert_eq!(status, 200);
    // Airflow's policy is read-only.
    let (status, _) = server
        .request("POST", "/v1/secret/data/variables/x", Some(&airflow_token), Some(&json!({ "data": { "value": "x" } })))
        .unwrap();
    assert_eq!(status, 403);
    // The tool's policy reaches nothing outside Airflow's paths.
    let other = open(&VaultConfig { variables_path: vec!["elsewhere".into()], ..store.config().clone() }).await;
    let err = other.write(&Entry::variable("x", "y"), &Precondition::Absent).await.unwrap_err();
    assert!(matches!(err, StoreError::PermissionDenied { .. }), "{err}");
}

#[tokio::test]
async fn approle_token_revoked_mid_run_is_replaced_by_a_new_login() {
    let server = VaultServer::start();
    set_policy(&server, "airflow-secrets-sync", POLICY_TOOL);
    let (role_id, secret_id) = approle(&server, "sync", &["airflow-secrets-sync"]);
    let store = open(&approle_config(&server, role_id, secret_id)).await;
    let id = ItemId::variable("survives_revocation");
    store.write(&Entry::variable(id.id.clone(), "v"), &Precondition::Absent).await.unwrap();
    assert_eq!(store.reauthentications(), 0);

    // Revoke every token AppRole has issued (the store's included).
    server.root_ok("PUT", "/v1/sys/leases/revoke-prefix/auth/approle/login", None);

    let inv = store.read(std::slice::from_ref(&id)).await.expect("read after revocation");
    assert_eq!(variable_value(&inv, &id).as_deref(), Some("v"));
    assert_eq!(store.reauthentications(), 1, "the store logged in again exactly once");
    // A genuine policy denial is not retried with a new login.
    let other = open(&VaultConfig { variables_path: vec!["elsewhere".into()], ..store.config().clone() }).await;
    let err = other.write(&Entry::variable("x", "y"), &Precondition::Absent).await.unwrap_err();
    assert!(matches!(err, StoreError::PermissionDenied { .. }), "{err}");
    assert_eq!(other.reauthentications(), 0);
}

#[tokio::test]
async fn renewable_token_is_renewed_before_it_expires() {
    let server = VaultServer::start();
    set_policy(&server, "airflow-secrets-sync", POLICY_TOOL);
    // A 30 s renewable token is inside the renewal window from the start.
    let body = server.root_ok(
        "POST",
        "/v1/auth/token/create",
        Some(json!({ "policies": ["airflow-secrets-sync"], "ttl": "30s", "renewable": true })),
    );
    let token = body["auth"]["client_token"].as_str().unwrap().to_string();
    let store = open(&token_config(&server, &token)).await;
    store.write(&Entry::variable("renewed", "v"), &Precondition::Absent).await.unwrap();
    assert!(store.reauthentications() >= 1, "a renewable token near expiry was not renewed");

    // A non-renewable token is used as is.
    let body = server.root_ok(
        "POST",
        "/v1/auth/token/create",
        Some(json!({ "policies": ["airflow-secrets-sync"], "ttl": "30s", "renewable": false })),
    );
    let fixed = open(&token_config(&server, body["auth"]["client_token"].as_str().unwrap())).await;
    fixed.read(&[ItemId::variable("renewed")]).await.unwrap();
    assert_eq!(fixed.reauthentications(), 0);
}

// ---- failures ----------------------------------------------------------------------------

#[tokio::test]
async fn a_sealed_vault_is_one_clear_unavailable_error() {
    let server = VaultServer::start();
    let store = open(&token_config(&server, ROOT_TOKEN)).await;
    store.check().await.unwrap();
    server.root_ok("PUT", "/v1/sys/seal", None);
    let err = store.check().await.unwrap_err();
    assert!(matches!(&err, StoreError::Unavailable { reason, .. } if reason == "vault is sealed"), "{err}");
    let err = store.read(&[ItemId::variable("x")]).await.unwrap_err();
    assert!(err.to_string().contains("vault is sealed") && !err.to_string().contains('\n'), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_unreachable_vault_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store = open(&VaultConfig {
        url: Some(format!("http://127.0.0.1:{port}")),
        auth: VaultAuth::Token { token: Some("t".into()), token_path: None },
        ..VaultConfig::default()
    })
    .await;
    let err = store.scan(Kind::Variable).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    let err = store.check().await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn a_failed_login_is_permission_denied_without_the_secret() {
    let server = VaultServer::start();
    let (role_id, _) = approle(&server, "sync", &["default"]);
    let err = VaultStore::open(&approle_config(&server, role_id, "canary-wrong-secret-id".into())).await.unwrap_err();
    assert!(matches!(err, StoreError::PermissionDenied { .. }), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("approle") && !shown.contains("canary"), "{shown}");
}

// ---- layout ------------------------------------------------------------------------------

#[tokio::test]
async fn scan_recurses_and_keeps_kinds_apart() {
    let server = VaultServer::start();
    // Variables at the mount root, connections below it: the variable scan must not pick up
    // `connections/...` (Airflow looks those up as connections).
    let store = open(&VaultConfig {
        variables_path: vec![String::new()],
        connections_path: vec!["connections".into()],
        ..token_config(&server, ROOT_TOKEN)
    })
    .await;
    assert_eq!(store.locate(&ItemId::variable("a/b/c")), Placement::At("secret/data/a/b/c".into()));
    store.write(&Entry::variable("a/b/c", "deep"), &Precondition::Absent).await.unwrap();
    store.write(&Entry::variable("top", "t"), &Precondition::Absent).await.unwrap();
    store.write(&Entry::connection("c1", http_conn("h")), &Precondition::Absent).await.unwrap();
    let vars = store.scan(Kind::Variable).await.unwrap();
    let ids: Vec<String> = vars.ids().map(|i| i.id.clone()).collect();
    assert_eq!(ids, ["a/b/c", "top"]);
    let conns = store.scan(Kind::Connection).await.unwrap();
    assert!(conns.contains(&ItemId::connection("c1")));
    assert!(matches!(store.locate(&ItemId::variable("a//b")), Placement::Invalid(_)));
}

#[tokio::test]
async fn a_list_of_paths_is_read_in_order_and_written_to_the_first() {
    let server = VaultServer::start();
    put_foreign(&server, "secret/data/legacy/only_old", json!({ "value": "old" }));
    put_foreign(&server, "secret/data/legacy/both", json!({ "value": "shadowed" }));
    put_foreign(&server, "secret/data/variables/both", json!({ "value": "first" }));
    let store = open(&VaultConfig {
        variables_path: vec!["variables".into(), "legacy".into()],
        ..token_config(&server, ROOT_TOKEN)
    })
    .await;
    let vars = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&vars, &ItemId::variable("both")).as_deref(), Some("first"));
    assert_eq!(variable_value(&vars, &ItemId::variable("only_old")).as_deref(), Some("old"));
    let read = store.read(&[ItemId::variable("only_old")]).await.unwrap();
    assert_eq!(read.get(&ItemId::variable("only_old")).unwrap().meta.name.as_deref(), Some("secret/data/legacy/only_old"));
    assert_eq!(store.locate(&ItemId::variable("new")), Placement::At("secret/data/variables/new".into()));
}

#[tokio::test]
async fn disabled_kinds_are_unreachable_and_not_scanned() {
    let server = VaultServer::start();
    let store = open(&VaultConfig { connections_path: Vec::new(), ..token_config(&server, ROOT_TOKEN) }).await;
    assert!(!store.capabilities().connections);
    assert!(matches!(store.locate(&ItemId::connection("c")), Placement::Unreachable(_)));
    assert!(store.scan(Kind::Connection).await.unwrap().is_empty());
}

/// Ids with characters the two encoders treat differently (`%`, space, `?`, `#`, `+`, `:`,
/// unicode): Airflow's request, encoded as hvac encodes it, finds what the store wrote.
#[tokio::test]
async fn awkward_ids_land_where_airflow_reads_them() {
    let server = VaultServer::start();
    let store = open(&token_config(&server, ROOT_TOKEN)).await;
    for id in ["pct%41", "sp ace", "q?x#y", "plus+sign", "x:y", "caf\u{e9}/na\u{ef}ve", "semi;colon", "tilde~dash-dot."] {
        store.write(&Entry::variable(id, format!("v-{id}")), &Precondition::Absent).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        let line = format!("/v1/secret/data/variables/{}", python_quote(id));
        let (status, body) = server.root("GET", &line, None);
        assert_eq!(status, 200, "{id}: GET {line}");
        assert_eq!(body["data"]["data"]["value"], json!(format!("v-{id}")), "{id}");
    }
    let scanned = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(scanned.len(), 8, "{:?}", scanned.ids().collect::<Vec<_>>());
    assert_eq!(variable_value(&scanned, &ItemId::variable("q?x#y")).as_deref(), Some("v-q?x#y"));
}

// ---- retries, against a scripted fake (a real Vault will not fail on demand) --------------

/// A one-thread HTTP server answering requests for `path` from `script` in order (`None` = drop
/// the connection without answering); anything else gets 403. Returns its URL and a log of the
/// request lines.
fn scripted_vault(
    path: &'static str,
    script: Vec<Option<(u16, Json)>>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
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
            let target = line.split_whitespace().nth(1).unwrap_or("");
            let answer = if target.split('?').next() == Some(path) {
                match script.next() {
                    Some(Some(a)) => Some(a),
                    Some(None) => None,
                    None => Some((500, json!({ "errors": ["script exhausted"] }))),
                }
            } else {
                Some((403, json!({ "errors": ["permission denied"] })))
            };
            if let Some((status, json)) = answer {
                let body = json.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            // Dropping `stream` closes the connection (without an answer for `None`).
        }
    });
    (url, log)
}

fn kv2_read_body(value: &str, version: u64) -> Json {
    json!({
        "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": {
            "data": { "value": value },
            "metadata": { "created_time": "t", "custom_metadata": null, "deletion_time": "", "destroyed": false, "version": version }
        },
        "wrap_info": null, "warnings": null, "auth": null
    })
}

/// `store` under the retry layer with 5 attempts in all (the store itself sends each request once).
fn retrying(store: VaultStore) -> airflow_secrets_sync::store::DynStore {
    use airflow_secrets_sync::store::layer::{Layer, Retry, RetryPolicy};
    let policy = RetryPolicy { max_attempts: 5, ..RetryPolicy::default() };
    std::sync::Arc::new(Layer::new(std::sync::Arc::new(store), Retry::new(policy)))
}

#[tokio::test]
async fn retryable_failures_are_retried_and_404_is_absent() {
    let path = "/v1/secret/data/variables/flaky";
    let (url, log) = scripted_vault(
        path,
        vec![
            Some((503, json!({ "errors": ["upstream unavailable"] }))),
            None, // a dropped connection
            Some((429, json!({ "errors": ["rate limited"] }))),
            Some((200, kv2_read_body("finally", 3))),
            Some((404, json!({ "errors": [] }))),
        ],
    );
    let store = retrying(open(&VaultConfig {
        url: Some(url),
        auth: VaultAuth::Token { token: Some("t".into()), token_path: None },
        ..VaultConfig::default()
    })
    .await);
    let id = ItemId::variable("flaky");
    let inv = store.read(std::slice::from_ref(&id)).await.expect("retried to success");
    assert_eq!(variable_value(&inv, &id).as_deref(), Some("finally"), "{:?}", log.lock().unwrap());
    assert_eq!(inv.get(&id).unwrap().meta.version.as_deref(), Some("3"));
    assert_eq!(log.lock().unwrap().iter().filter(|l| l.contains(path)).count(), 4);
    // Only 404 means absent.
    assert!(store.read(std::slice::from_ref(&id)).await.unwrap().is_empty());
}

#[tokio::test]
async fn retries_are_bounded() {
    let path = "/v1/secret/data/variables/down";
    let (url, log) = scripted_vault(path, vec![Some((502, json!({ "errors": ["bad gateway <html>canary-body</html>"] }))); 10]);
    let store = retrying(open(&VaultConfig {
        url: Some(url),
        auth: VaultAuth::Token { token: Some("t".into()), token_path: None },
        ..VaultConfig::default()
    })
    .await);
    let err = store.read(&[ItemId::variable("down")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }) && err.is_retryable(), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("HTTP 502") && !shown.contains("canary-body"), "the body leaked: {shown}");
    assert_eq!(log.lock().unwrap().iter().filter(|l| l.contains(path)).count(), 5);
}

/// Our mark goes on before the data (crash safety); if the data write then fails, a secret that
/// was someone else's gets its own custom_metadata back instead of keeping ours.
#[tokio::test]
async fn a_failed_adoption_leaves_no_mark_behind() {
    let server = VaultServer::start();
    put_foreign(&server, "secret/data/variables/theirs", json!({ "value": "theirs" }));
    server.root_ok(
        "POST",
        "/v1/secret/metadata/variables/theirs",
        Some(json!({ "custom_metadata": { "owner": "team-a" } })),
    );
    // May mark, may not write data.
    set_policy(
        &server,
        "mark-only",
        r#"
        path "secret/metadata/variables/*" { capabilities = ["create", "read", "update", "list"] }
        path "secret/data/variables/*" { capabilities = ["read"] }
        "#,
    );
    let token = token_with_policies(&server, &["mark-only"]);
    let store = open(&VaultConfig { adopt: true, ..token_config(&server, &token) }).await;
    let err = store.write(&Entry::variable("theirs", "ours"), &Precondition::Any).await.unwrap_err();
    assert!(matches!(&err, StoreError::PermissionDenied { what, .. } if what.contains("secret/data/variables/theirs")), "{err}");
    let custom = server.root_ok("GET", "/v1/secret/metadata/variables/theirs", None)["data"]["custom_metadata"].clone();
    assert_eq!(custom, json!({ "owner": "team-a" }), "the failed write left our mark");
    let inv = store.read(&[ItemId::variable("theirs")]).await.unwrap();
    assert_eq!(inv.get(&ItemId::variable("theirs")).unwrap().meta.ownership, Ownership::Foreign);
}
