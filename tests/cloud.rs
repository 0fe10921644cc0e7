//! GCP Secret Manager and Azure Key Vault stores, with the production SDK clients talking to
//! in-repo REST fakes (the conformance suite: tests/conformance.rs): Airflow's golden backend names, throttling,
//! paging, versions, soft delete, disabled secrets, collisions and id recovery.

#[path = "support/fake_azure.rs"]
mod fake_azure;
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

use airflow_secrets_sync::model::{Connection, Inventory};
use airflow_secrets_sync::store::azure_key_vault::{AzureKeyVaultConfig, AzureKeyVaultStore};
use azure_core::http::{ClientOptions, RetryOptions};
use azure_security_keyvault_secrets::SecretClientOptions;
use fake_azure::{FakeAzure, FakeCredential, VAULT_URL};
use fake_gcp::{FakeGcp, VState};

const PROJECT: &str = "test-project";
const CANARY: &str = "canary-cloud-5e8d1a";

fn testdata(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
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

// ---------------------------------------------------------------------------------------------
// Azure
// ---------------------------------------------------------------------------------------------

fn azure_options(fake: &FakeAzure) -> SecretClientOptions {
    // Only the transport differs from production; SDK retries are off so that throttling reaches
    // the store's error mapping and apply's own retry.
    SecretClientOptions {
        client_options: ClientOptions { transport: Some(fake.transport()), retry: RetryOptions::none(), ..Default::default() },
        ..Default::default()
    }
}

fn azure_store(fake: &FakeAzure, cfg: AzureKeyVaultConfig) -> AzureKeyVaultStore {
    let cfg = AzureKeyVaultConfig { vault_url: format!("{VAULT_URL}/"), ..cfg };
    AzureKeyVaultStore::with_credential(cfg, Arc::new(FakeCredential), azure_options(fake)).expect("azure store")
}

fn azure_client(fake: &FakeAzure) -> azure_security_keyvault_secrets::SecretClient {
    azure_security_keyvault_secrets::SecretClient::new(&format!("{VAULT_URL}/"), Arc::new(FakeCredential), Some(azure_options(fake))).unwrap()
}

fn http() -> Connection {
    Connection { conn_type: Some("http".into()), host: Some("h.example.com".into()), ..Default::default() }
}

/// The conformance suite runs in tests/conformance.rs (azure_key_vault); here, that a round trip
/// goes through the bearer challenge.
#[tokio::test]
async fn azure_round_trip_exercises_the_bearer_challenge() {
    let fake = FakeAzure::new();
    let store = azure_store(&fake, AzureKeyVaultConfig::default());
    conformance::variable_round_trip(&store).await;
    assert!(fake.challenges() >= 1, "the bearer challenge was never exercised");
}

#[tokio::test]
async fn azure_backend_names_match_airflow() {
    let data = testdata("backend_names.json");
    let mut checked = 0;
    for case in data["names"].as_array().unwrap() {
        if case["backend"] != "AzureKeyVaultBackend" {
            continue;
        }
        let config = case["config"].as_str().unwrap();
        let mut kwargs = case["kwargs"].as_object().unwrap().clone();
        kwargs.insert("vault_url".into(), "https://example.vault.azure.net/".into());
        let cfg = AzureKeyVaultConfig::from_airflow_kwargs(&kwargs).unwrap_or_else(|e| panic!("{config}: {e}"));
        for (id, per_kind) in case["ids"].as_object().unwrap() {
            for (kind, key) in [(Kind::Connection, "connection"), (Kind::Variable, "variable")] {
                let item = ItemId::new(kind, id.as_str());
                // Provider 15.2.1 (Airflow 3.3.2) validates names before any request: our rule.
                let new = &per_kind[key]["airflow_3.3.2"]["requested"];
                match cfg.locate(&item) {
                    Placement::At(name) => assert_eq!(new[0], name.as_str(), "{config}: {item}"),
                    Placement::Invalid(_) | Placement::Unreachable(_) => assert_eq!(new, "no request", "{config}: {item}"),
                }
                // Provider 12.8.1 (Airflow 2.10.5) requests the raw name: same construction.
                let old = &per_kind[key]["airflow_2.10.5"]["requested"];
                match cfg.secret_name(kind, id) {
                    Some(name) => assert_eq!(old[0], name.as_str(), "{config}: {item} (2.10.5)"),
                    None => assert_eq!(old, "no request", "{config}: {item} (2.10.5)"),
                }
                checked += 2;
            }
        }
    }
    assert!(checked >= 190, "only {checked} vectors checked");
}

#[tokio::test]
async fn azure_ids_come_back_from_tags_with_content_types() {
    let fake = FakeAzure::new();
    let store = azure_store(&fake, AzureKeyVaultConfig::default());
    store.write(&Entry::variable("my_var", "v"), &Precondition::Absent).await.unwrap();
    store.write(&Entry::connection("smtp_default", http()), &Precondition::Absent).await.unwrap();
    assert_eq!(fake.names(), ["airflow-connections-smtp-default", "airflow-variables-my-var"]);
    assert_eq!(fake.content_type("airflow-variables-my-var").as_deref(), Some("text/plain"));
    assert_eq!(fake.content_type("airflow-connections-smtp-default").as_deref(), Some("application/json"));
    let tags = fake.tags("airflow-variables-my-var");
    assert_eq!(tags["airflow-id"], "my_var");
    assert_eq!(tags["managed-by"], "airflow-secrets-sync");

    // Someone else's secret under the prefix: no tags, reported under the name's tail, foreign.
    let client = azure_client(&fake);
    let foreign = azure_security_keyvault_secrets::models::SetSecretParameters { value: Some("x".into()), ..Default::default() };
    client.set_secret("airflow-variables-Their-Key", foreign.try_into().unwrap(), None).await.unwrap();

    let vars = store.scan(Kind::Variable).await.unwrap();
    let mine = vars.get(&ItemId::variable("my_var")).expect("id recovered from the tag, not the name");
    assert_eq!(mine.meta.ownership, Ownership::Ours);
    assert_eq!(mine.meta.name.as_deref(), Some("airflow-variables-my-var"));
    assert!(!vars.contains(&ItemId::variable("my-var")));
    assert_eq!(vars.get(&ItemId::variable("Their-Key")).unwrap().meta.ownership, Ownership::Foreign);
    let conns = store.scan(Kind::Connection).await.unwrap();
    assert!(conns.contains(&ItemId::connection("smtp_default")));
    assert!(!conns.contains(&ItemId::connection("my_var")));

    // Writing an id that folds onto a name another id holds is a collision, not an overwrite.
    let err = store.write(&Entry::variable("MY-var", "clobber"), &Precondition::Any).await.unwrap_err();
    assert!(matches!(&err, StoreError::Item { error, .. } if error.kind == ItemErrorKind::Collision), "{err}");
    assert_eq!(fake.value("airflow-variables-my-var").as_deref(), Some("v"));
    // And an untagged secret is not overwritten without adopt.
    let err = store.write(&Entry::variable("their_key", "mine now"), &Precondition::Any).await.unwrap_err();
    assert!(matches!(&err, StoreError::Item { error, .. } if error.kind == ItemErrorKind::NotOwned), "{err}");
}

#[tokio::test]
async fn azure_collisions_are_reported_by_the_planner_before_any_write() {
    let fake = FakeAzure::new();
    let store = azure_store(&fake, AzureKeyVaultConfig::default());
    let source = MemoryStore::new("src");
    for id in ["my_conn", "my-conn", "My-Conn", "other_conn"] {
        source.write(&Entry::connection(id, http()), &Precondition::Any).await.unwrap();
    }
    source.write(&Entry::variable("my_conn", "a variable does not collide with a connection"), &Precondition::Any).await.unwrap();
    let src = scan_all(&source, &Kind::ALL).await.unwrap();
    let tgt = scan_all(&store, &Kind::ALL).await.unwrap();
    let p = plan::diff(&source, &src, &store, &tgt, &policy());
    let change = |id: &ItemId| p.changes.iter().find(|c| &c.id == id).unwrap();
    for id in ["my_conn", "my-conn", "My-Conn"] {
        let c = change(&ItemId::connection(id));
        assert_eq!(c.action, Action::Error, "{id}");
        assert_eq!(c.error.as_ref().unwrap().kind, ItemErrorKind::Collision, "{id}");
    }
    assert_eq!(change(&ItemId::connection("other_conn")).action, Action::Create);
    assert_eq!(change(&ItemId::variable("my_conn")).action, Action::Create);
    let store: Arc<dyn Store> = Arc::new(store);
    let report = apply::execute(&p, store.clone(), &fast_apply(), Arc::new(NoJournal)).await;
    assert_eq!(report.created, 2, "{report:?}");
    assert_eq!(fake.names(), ["airflow-connections-other-conn", "airflow-variables-my-conn"]);
}

#[tokio::test]
async fn azure_scan_follows_next_links_25_at_a_time() {
    let fake = FakeAzure::new();
    let store = azure_store(&fake, AzureKeyVaultConfig::default());
    for i in 0..60 {
        store.write(&Entry::variable(format!("k_{i:02}"), format!("v{i}")), &Precondition::Absent).await.unwrap();
    }
    fake.clear_requests();
    let vars = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(vars.len(), 60);
    assert_eq!(variable_value(vars.get(&ItemId::variable("k_42")).unwrap()), "v42");
    let pages = fake.requests().iter().filter(|r| r.as_str() == "Get /secrets").count();
    assert_eq!(pages, 3, "{:?}", fake.requests());
}

#[tokio::test]
async fn azure_soft_deleted_names_are_recovered_only_when_asked() {
    let fake = FakeAzure::new();
    let store = azure_store(&fake, AzureKeyVaultConfig::default());
    store.write(&Entry::variable("gone", "v1"), &Precondition::Any).await.unwrap();
    store.delete(&ItemId::variable("gone")).await.unwrap();
    assert_eq!(fake.deleted_names(), ["airflow-variables-gone"]);
    // Airflow reads a soft-deleted secret as absent.
    assert!(store.read(&[ItemId::variable("gone")]).await.unwrap().is_empty());
    let err = store.write(&Entry::variable("gone", "v2"), &Precondition::Any).await.unwrap_err();
    match &err {
        StoreError::Item { error, .. } => {
            assert_eq!(error.kind, ItemErrorKind::NotRepresentable);
            assert!(error.detail.contains("recover_soft_deleted"), "{error}");
        }
        other => panic!("expected a per-item error, got {other}"),
    }
    let recovering = azure_store(&fake, AzureKeyVaultConfig { recover_soft_deleted: true, ..Default::default() });
    recovering.write(&Entry::variable("gone", "v2"), &Precondition::Any).await.unwrap();
    assert!(fake.deleted_names().is_empty());
    assert_eq!(fake.version_count("airflow-variables-gone"), 2);
    let back = recovering.read(&[ItemId::variable("gone")]).await.unwrap();
    assert_eq!(variable_value(back.get(&ItemId::variable("gone")).unwrap()), "v2");
}

#[tokio::test]
async fn azure_disabled_secrets_are_reported_not_overwritten() {
    let fake = FakeAzure::new();
    let store = azure_store(&fake, AzureKeyVaultConfig::default());
    store.write(&Entry::variable("off", "v1"), &Precondition::Any).await.unwrap();
    store.write(&Entry::variable("on", "v1"), &Precondition::Any).await.unwrap();
    // Disabled with the production client (PATCH attributes).
    let client = azure_client(&fake);
    let params = azure_security_keyvault_secrets::models::UpdateSecretPropertiesParameters {
        secret_attributes: Some(azure_security_keyvault_secrets::models::SecretAttributes { enabled: Some(false), ..Default::default() }),
        ..Default::default()
    };
    client.update_secret_properties("airflow-variables-off", params.try_into().unwrap(), None).await.unwrap();

    let inv: Inventory = store.scan(Kind::Variable).await.unwrap();
    let err = inv.error(&ItemId::variable("off")).expect("a per-item error");
    assert_eq!(err.kind, ItemErrorKind::Blocked);
    assert!(err.detail.contains("disabled"));
    assert!(inv.get(&ItemId::variable("on")).is_some());
    let read = store.read(&[ItemId::variable("off")]).await.unwrap();
    assert_eq!(read.error(&ItemId::variable("off")).unwrap().kind, ItemErrorKind::Blocked);

    let err = store.write(&Entry::variable("off", "v2"), &Precondition::Any).await.unwrap_err();
    assert!(matches!(&err, StoreError::Item { error, .. } if error.detail.contains("disabled")), "{err}");
    assert_eq!(fake.version_count("airflow-variables-off"), 1);
}

#[tokio::test]
async fn azure_throttled_apply_completes_after_retries() {
    let fake = FakeAzure::new();
    let store: Arc<dyn Store> = Arc::new(azure_store(&fake, AzureKeyVaultConfig::default()));
    let source = MemoryStore::new("src");
    for i in 0..3 {
        source.write(&Entry::variable(format!("t_{i}"), format!("{CANARY}-{i}")), &Precondition::Any).await.unwrap();
    }
    let src = scan_all(&source, &Kind::ALL).await.unwrap();
    let tgt = scan_all(store.as_ref(), &Kind::ALL).await.unwrap();
    let p = plan::diff(&source, &src, store.as_ref(), &tgt, &policy());
    fake.throttle_next(4, 0);
    let report = apply::execute(&p, store.clone(), &fast_apply(), Arc::new(NoJournal)).await;
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!((report.created, report.verified), (3, 3));
    assert_eq!(fake.throttled(), 4);

    fake.throttle_next(1, 9);
    let err = store.write(&Entry::variable("x", CANARY), &Precondition::Any).await.unwrap_err();
    assert!(matches!(err, StoreError::Throttled { .. }), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(9)));
    assert!(!format!("{err} {err:?}").contains(CANARY));
}

#[tokio::test]
async fn azure_config_from_toml_and_kwargs() {
    let cfg: AzureKeyVaultConfig = toml::from_str(
        r#"
        vault_url = "https://v.vault.azure.net/"
        variables_prefix = false
        credential = "managed_identity"
        managed_identity_client_id = "00000000-0000-0000-0000-000000000001"
        recover_soft_deleted = true
        "#,
    )
    .unwrap();
    assert_eq!(cfg.variables_prefix, None);
    assert!(matches!(cfg.locate(&ItemId::variable("x")), Placement::Unreachable(_)));
    assert!(toml::from_str::<AzureKeyVaultConfig>("vault_url = \"x\"\nnope = 1").is_err());
    let kw = serde_json::json!({
        "vault_url": "https://v.vault.azure.net/",
        "connections_prefix": "conns_",
        "tenant_id": "t", "client_id": "c", "client_secret": CANARY,
        "api_version": "7.4",
    });
    let cfg = AzureKeyVaultConfig::from_airflow_kwargs(kw.as_object().unwrap()).unwrap();
    assert_eq!(cfg.secret_name(Kind::Connection, "a_b").as_deref(), Some("conns--a-b"), "rstrip(sep) leaves the `_`, which then folds to sep");
    assert!(!format!("{cfg:?}").contains(CANARY));
    assert!(AzureKeyVaultConfig::from_airflow_kwargs(&serde_json::Map::new()).is_err(), "vault_url is required");
    // A real credential chain builds without I/O.
    let store = AzureKeyVaultStore::connect(cfg).unwrap();
    assert_eq!(store.to_string(), "azure-key-vault:https://v.vault.azure.net");
}
