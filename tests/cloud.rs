//! GCP Secret Manager and Azure Key Vault stores, with the production SDK clients talking to
//! in-repo REST fakes: the conformance suite, Airflow's golden backend names, throttling,
//! paging, versions, soft delete, disabled secrets, collisions and id recovery.

#[path = "support/fake_gcp.rs"]
mod fake_gcp;

use std::sync::Arc;
use std::time::Duration;

use airflow_secrets_sync::apply::{self, ApplyOptions, NoJournal};
use airflow_secrets_sync::config::ApplyConfig;
use airflow_secrets_sync::model::{Entry, ItemErrorKind, ItemId, Kind, Ownership, Value};
use airflow_secrets_sync::plan::{self, Action, Policy, Selection};
use airflow_secrets_sync::store::gcp_secret_manager::{
    GcpSecretManagerConfig, GcpSecretManagerStore, MANAGED_BY_LABEL, Replication,
};
use airflow_secrets_sync::store::memory::MemoryStore;
use airflow_secrets_sync::store::{Placement, Precondition, Store, StoreError, conformance, scan_all};

use fake_gcp::{FakeGcp, VState};

const PROJECT: &str = "test-project";
const CANARY: &str = "canary-cloud-5e8d1a";

fn testdata(name: &str) -> serde_json::Value {
    let path = format!("{}/../shared/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn fast_apply() -> ApplyOptions {
    ApplyOptions { base_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(50), ..Default::default() }
}

fn policy() -> Policy {
    Policy::new(Selection::all(), &ApplyConfig::default())
}

fn variable_value(e: &Entry) -> &str {
    match &e.value {
        Value::Variable(v) => v.value.expose_plaintext(),
        Value::Connection(_) => panic!("{} is a connection", e.id),
    }
}

// ---------------------------------------------------------------------------------------------
// GCP
// ---------------------------------------------------------------------------------------------

async fn gcp_store(fake: &FakeGcp, cfg: GcpSecretManagerConfig) -> GcpSecretManagerStore {
    let cfg = GcpSecretManagerConfig { project_id: Some(PROJECT.into()), endpoint: Some(fake.endpoint.clone()), ..cfg };
    let creds = google_cloud_auth::credentials::anonymous::Builder::new().build();
    GcpSecretManagerStore::connect_with_credentials(cfg, creds).await.expect("gcp store")
}

#[tokio::test]
async fn gcp_passes_the_conformance_suite() {
    let fake = FakeGcp::start().await;
    let store = gcp_store(&fake, GcpSecretManagerConfig::default()).await;
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn gcp_backend_names_match_airflow() {
    let data = testdata("backend_names.json");
    let mut checked = 0;
    for case in data["names"].as_array().unwrap() {
        if case["backend"] != "CloudSecretManagerBackend" {
            continue;
        }
        let config = case["config"].as_str().unwrap();
        let mut kwargs = case["kwargs"].as_object().unwrap().clone();
        kwargs.insert("project_id".into(), PROJECT.into());
        let parsed = GcpSecretManagerConfig::from_airflow_kwargs(&kwargs);
        if case.get("init").is_some() {
            assert!(parsed.is_err(), "{config}: Airflow's constructor raised, ours accepted");
            checked += 1;
            continue;
        }
        let cfg = parsed.unwrap_or_else(|e| panic!("{config}: {e}"));
        for (id, per_kind) in case["ids"].as_object().unwrap() {
            for (kind, key) in [(Kind::Connection, "connection"), (Kind::Variable, "variable")] {
                for (label, result) in per_kind[key].as_object().unwrap() {
                    let item = ItemId::new(kind, id.as_str());
                    let requested = &result["requested"];
                    if requested == "no request" {
                        assert_eq!(cfg.secret_id(kind, id), None, "{config}/{label}: {item}");
                        assert!(matches!(cfg.locate(&item), Placement::Unreachable(_)), "{config}: {item}");
                    } else {
                        let want = requested[0].as_str().unwrap();
                        let name = cfg.secret_id(kind, id).unwrap_or_else(|| panic!("{config}: {item} disabled"));
                        assert_eq!(format!("projects/{PROJECT}/secrets/{name}/versions/latest"), want, "{config}/{label}: {item}");
                        // What GCP can hold is a placement; the rest are per-item errors.
                        let holdable = name.len() <= 255 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                        match cfg.locate(&item) {
                            Placement::At(n) => assert!(holdable && n == name, "{config}: {item}"),
                            Placement::Invalid(_) => assert!(!holdable, "{config}: {item} refused but GCP holds {name}"),
                            Placement::Unreachable(w) => panic!("{config}: {item} unreachable: {w}"),
                        }
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 150, "only {checked} vectors checked");
}

/// The request the real client sends for a read is the exact name Airflow requests.
#[tokio::test]
async fn gcp_reads_request_airflows_resource_names() {
    let fake = FakeGcp::start().await;
    for (kwargs, id, want) in [
        (serde_json::json!({}), "smtp_default", "airflow-connections-smtp_default"),
        (serde_json::json!({"connections_prefix": ""}), "a__b", "-a__b"),
        (serde_json::json!({"sep": "_"}), "my_var", "airflow-connections_my_var"),
    ] {
        let cfg = GcpSecretManagerConfig::from_airflow_kwargs(kwargs.as_object().unwrap()).unwrap();
        let store = gcp_store(&fake, cfg).await;
        let entry = Entry::connection(id, airflow_secrets_sync::model::Connection { conn_type: Some("http".into()), ..Default::default() });
        store.write(&entry, &Precondition::Any).await.unwrap();
        fake.clear_requests();
        let inv = store.read(std::slice::from_ref(&entry.id)).await.unwrap();
        assert!(inv.get(&entry.id).is_some(), "{id} not read back");
        let access = format!("GET /v1/projects/{PROJECT}/secrets/{want}/versions/latest:access");
        assert!(fake.requests().iter().any(|r| r.starts_with(&access)), "{access} not in {:?}", fake.requests());
    }
}

#[tokio::test]
async fn gcp_writes_label_annotate_replicate_and_only_add_versions() {
    let fake = FakeGcp::start().await;
    let cfg = GcpSecretManagerConfig {
        replication: Replication::UserManaged(vec!["us-east1".into(), "europe-west1".into()]),
        ..Default::default()
    };
    let store = gcp_store(&fake, cfg).await;
    store.write(&Entry::variable("my_var", "one"), &Precondition::Any).await.unwrap();
    store.write(&Entry::variable("my_var", "two"), &Precondition::Any).await.unwrap();
    let sid = "airflow-variables-my_var";
    assert_eq!(fake.versions(PROJECT, sid), vec![(1, VState::Enabled), (2, VState::Enabled)]);
    assert_eq!(fake.payload(PROJECT, sid, 2).as_deref(), Some(&b"two"[..]));
    assert_eq!(fake.labels(PROJECT, sid)[MANAGED_BY_LABEL], "airflow-secrets-sync");
    assert_eq!(fake.annotations(PROJECT, sid)["airflow-secrets-sync/id"], "my_var");
    let replication = fake.replication(PROJECT, sid);
    let locs: Vec<&str> = replication["userManaged"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["location"].as_str().unwrap())
        .collect();
    assert_eq!(locs, ["us-east1", "europe-west1"]);
    let got = store.read(&[ItemId::variable("my_var")]).await.unwrap();
    let e = got.get(&ItemId::variable("my_var")).unwrap();
    assert_eq!(variable_value(e), "two");
    assert_eq!(e.meta.version.as_deref(), Some("2"));
    assert_eq!(e.meta.ownership, Ownership::Ours);
}

#[tokio::test]
async fn gcp_prune_keeps_the_newest_versions() {
    let fake = FakeGcp::start().await;
    let store = gcp_store(&fake, GcpSecretManagerConfig { prune_versions: Some(2), ..Default::default() }).await;
    for v in ["1", "2", "3", "4"] {
        store.write(&Entry::variable("k", v), &Precondition::Any).await.unwrap();
    }
    use VState::*;
    assert_eq!(
        fake.versions(PROJECT, "airflow-variables-k"),
        vec![(1, Destroyed), (2, Destroyed), (3, Enabled), (4, Enabled)]
    );
    let got = store.read(&[ItemId::variable("k")]).await.unwrap();
    assert_eq!(variable_value(got.get(&ItemId::variable("k")).unwrap()), "4");
}

#[tokio::test]
async fn gcp_disabled_or_destroyed_latest_is_a_per_item_error_and_a_write_fixes_it() {
    let fake = FakeGcp::start().await;
    let store = gcp_store(&fake, GcpSecretManagerConfig::default()).await;
    store.write(&Entry::variable("dis", "v1"), &Precondition::Any).await.unwrap();
    store.write(&Entry::variable("ok", "fine"), &Precondition::Any).await.unwrap();
    // Someone disables the newest version with the real client (the fake's REST endpoint).
    let client = google_cloud_secretmanager_v1::client::SecretManagerService::builder()
        .with_endpoint(fake.endpoint.clone())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    client
        .disable_secret_version()
        .set_name(format!("projects/{PROJECT}/secrets/airflow-variables-dis/versions/1"))
        .send()
        .await
        .unwrap();
    let inv = store.scan(Kind::Variable).await.unwrap();
    let err = inv.error(&ItemId::variable("dis")).expect("a per-item error");
    assert_eq!(err.kind, ItemErrorKind::Unreadable);
    assert!(err.detail.contains("disabled or destroyed"), "{err}");
    assert_eq!(variable_value(inv.get(&ItemId::variable("ok")).unwrap()), "fine");

    // The plan replaces it with a new enabled version; the disabled one is left alone.
    let source = MemoryStore::new("src");
    source.write(&Entry::variable("dis", "v2"), &Precondition::Any).await.unwrap();
    let src = scan_all(&source, &[Kind::Variable]).await.unwrap();
    let p = plan::diff(&source, &src, &store, &inv, &policy());
    let ch = p.changes.iter().find(|c| c.id == ItemId::variable("dis")).unwrap();
    assert_eq!(ch.action, Action::Update);
    let store: Arc<dyn Store> = Arc::new(store);
    let report = apply::execute(&p, store.clone(), &fast_apply(), Arc::new(NoJournal)).await;
    assert!(report.failures.is_empty() && report.verify_mismatches.is_empty(), "{report:?}");
    assert_eq!(fake.versions(PROJECT, "airflow-variables-dis"), vec![(1, VState::Disabled), (2, VState::Enabled)]);
}

#[tokio::test]
async fn gcp_scan_pages_and_keeps_kinds_apart() {
    let fake = FakeGcp::start().await;
    fake.set_page_cap(3);
    let store = gcp_store(&fake, GcpSecretManagerConfig::default()).await;
    for i in 0..11 {
        store.write(&Entry::variable(format!("v{i:02}"), format!("val{i}")), &Precondition::Any).await.unwrap();
    }
    store
        .write(&Entry::connection("c1", airflow_secrets_sync::model::Connection { conn_type: Some("http".into()), ..Default::default() }), &Precondition::Any)
        .await
        .unwrap();
    fake.clear_requests();
    let vars = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(vars.len(), 11);
    assert_eq!(variable_value(vars.get(&ItemId::variable("v07")).unwrap()), "val7");
    let pages = fake.requests().iter().filter(|r| r.starts_with(&format!("GET /v1/projects/{PROJECT}/secrets?"))).count();
    assert!(pages >= 4, "expected several list pages, saw {pages}");
    assert!(!vars.contains(&ItemId::variable("c1")));
    assert_eq!(store.scan(Kind::Connection).await.unwrap().ids().count(), 1);
}

#[tokio::test]
async fn gcp_throttled_apply_completes_after_retries() {
    let fake = FakeGcp::start().await;
    let store: Arc<dyn Store> = Arc::new(gcp_store(&fake, GcpSecretManagerConfig::default()).await);
    let source = MemoryStore::new("src");
    for i in 0..4 {
        source.write(&Entry::variable(format!("t{i}"), format!("{CANARY}-{i}")), &Precondition::Any).await.unwrap();
    }
    let src = scan_all(&source, &Kind::ALL).await.unwrap();
    let tgt = scan_all(store.as_ref(), &Kind::ALL).await.unwrap();
    let p = plan::diff(&source, &src, store.as_ref(), &tgt, &policy());
    assert_eq!(p.summary.create, 4);
    fake.throttle_next(5, 0);
    let report = apply::execute(&p, store.clone(), &fast_apply(), Arc::new(NoJournal)).await;
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.created, 4);
    assert_eq!(report.verified, 4);
    assert_eq!(fake.throttled(), 5);
    // A throttled scan is retried inside the store.
    fake.throttle_next(2, 0);
    assert_eq!(scan_all(store.as_ref(), &[Kind::Variable]).await.unwrap().len(), 4);
}

#[tokio::test]
async fn gcp_throttling_surfaces_as_retryable_with_retry_after() {
    let fake = FakeGcp::start().await;
    let store = gcp_store(&fake, GcpSecretManagerConfig::default()).await;
    fake.throttle_next(1, 7);
    let err = store.write(&Entry::variable("x", CANARY), &Precondition::Any).await.unwrap_err();
    assert!(matches!(err, StoreError::Throttled { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(!err.to_string().contains(CANARY));
}

#[tokio::test]
async fn gcp_foreign_secrets_need_adopt_and_invalid_ids_are_refused_before_any_request() {
    let fake = FakeGcp::start().await;
    let store = gcp_store(&fake, GcpSecretManagerConfig::default()).await;
    // A secret someone else created (no label), through the real client.
    let client = google_cloud_secretmanager_v1::client::SecretManagerService::builder()
        .with_endpoint(fake.endpoint.clone())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    use google_cloud_secretmanager_v1::model as gsm;
    client
        .create_secret()
        .set_parent(format!("projects/{PROJECT}"))
        .set_secret_id("airflow-variables-theirs")
        .set_secret(gsm::Secret::new().set_replication(gsm::Replication::new().set_automatic(gsm::replication::Automatic::new())))
        .send()
        .await
        .unwrap();
    client
        .add_secret_version()
        .set_parent(format!("projects/{PROJECT}/secrets/airflow-variables-theirs"))
        .set_payload(gsm::SecretPayload::new().set_data(bytes::Bytes::from_static(b"old")))
        .send()
        .await
        .unwrap();
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(inv.get(&ItemId::variable("theirs")).unwrap().meta.ownership, Ownership::Foreign);

    let source = MemoryStore::new("src");
    source.write(&Entry::variable("theirs", "new"), &Precondition::Any).await.unwrap();
    source.write(&Entry::variable("team/db", "x"), &Precondition::Any).await.unwrap();
    let src = scan_all(&source, &[Kind::Variable]).await.unwrap();
    let p = plan::diff(&source, &src, &store, &inv, &policy());
    let kind_of = |id: &str| p.changes.iter().find(|c| c.id == ItemId::variable(id)).unwrap().error.as_ref().map(|e| e.kind);
    assert_eq!(kind_of("theirs"), Some(ItemErrorKind::NotOwned));
    assert_eq!(kind_of("team/db"), Some(ItemErrorKind::InvalidName));

    fake.clear_requests();
    let err = store.write(&Entry::variable("team/db", "x"), &Precondition::Any).await.unwrap_err();
    assert!(matches!(&err, StoreError::Item { error, .. } if error.kind == ItemErrorKind::InvalidName), "{err}");
    assert!(fake.requests().is_empty(), "an invalid id reached GCP: {:?}", fake.requests());

    // With --adopt the write goes through and the secret becomes ours.
    let adopt = Policy { adopt: true, ..policy() };
    let p = plan::diff(&source, &src, &store, &inv, &adopt);
    let store: Arc<dyn Store> = Arc::new(store);
    let report = apply::execute(&p, store.clone(), &fast_apply(), Arc::new(NoJournal)).await;
    assert_eq!(report.updated, 1, "{report:?}");
    assert_eq!(fake.labels(PROJECT, "airflow-variables-theirs")[MANAGED_BY_LABEL], "airflow-secrets-sync");
    let back = store.read(&[ItemId::variable("theirs")]).await.unwrap();
    assert_eq!(back.get(&ItemId::variable("theirs")).unwrap().meta.ownership, Ownership::Ours);
}

#[tokio::test]
async fn gcp_config_from_toml_and_kwargs() {
    let cfg: GcpSecretManagerConfig = toml::from_str(
        r#"
        project_id = "p"
        connections_prefix = false
        variables_prefix = "vars"
        sep = "_"
        replication = "automatic"
        prune_versions = 3
        impersonation_chain = ["a@p.iam.gserviceaccount.com", "b@p.iam.gserviceaccount.com"]
        adopt = true
        "#,
    )
    .unwrap();
    assert_eq!(cfg.connections_prefix, None);
    assert_eq!(cfg.secret_id(Kind::Variable, "k").as_deref(), Some("vars_k"));
    let kw = serde_json::json!({
        "connections_prefix": null,
        "gcp_keyfile_dict": {"type": "service_account", "private_key": CANARY},
        "impersonation_chain": "sa@p.iam.gserviceaccount.com",
        "project_id": "p2",
        "config_prefix": "ignored",
    });
    let cfg = GcpSecretManagerConfig::from_airflow_kwargs(kw.as_object().unwrap()).unwrap();
    assert_eq!(cfg.connections_prefix, None);
    assert_eq!(cfg.impersonation_chain, ["sa@p.iam.gserviceaccount.com"]);
    assert!(!format!("{cfg:?}").contains(CANARY));
    let bad = serde_json::json!({"connections_prefix": "a/b"});
    assert!(GcpSecretManagerConfig::from_airflow_kwargs(bad.as_object().unwrap()).is_err());
}
