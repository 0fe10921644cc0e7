//! End to end: the real Airflow-made metastores in `tests/data/metastore/` migrated to each
//! backend (AWS through the real binary against `moto_server`; GCP and Azure through the library
//! pipeline against the REST fakes and the production SDK clients). Every item is either written
//! and read back as Airflow reads it, or reported by name with the reason the backend cannot
//! hold it; a second plan shows no changes.

#[path = "support/moto_server.rs"]
mod moto_server;
#[path = "support/vault_server.rs"]
mod vault_server;
#[path = "support/fake_gcp.rs"]
mod fake_gcp;
#[path = "support/fake_azure.rs"]
mod fake_azure;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use airflow_secrets_sync::app;
use airflow_secrets_sync::apply::ApplyOptions;
use airflow_secrets_sync::cli::MigrateArgs;
use airflow_secrets_sync::config::{ApplyConfig, Config};
use airflow_secrets_sync::error::Exit;
use airflow_secrets_sync::model::{ItemErrorKind, Kind};
use airflow_secrets_sync::plan::{self, Policy, Selection};
use airflow_secrets_sync::store::metastore::{MetastoreConfig, MetastoreStore};
use airflow_secrets_sync::store::{DynStore, Store, registry, scan_all};

const DBS: [&str; 2] = ["airflow-3.3.2.db", "airflow-2.10.5.db"];

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metastore").join(name)
}

fn manifest_key(db: &str) -> String {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata(&format!("{db}.MANIFEST.json"))).unwrap()).unwrap();
    m["fernet_key"].as_str().unwrap().to_string()
}

/// A writable copy of a testdata metastore, and the `[source]` table for it.
fn source_table(dir: &Path, db: &str) -> String {
    let copy = dir.join(db);
    std::fs::copy(testdata(db), &copy).unwrap();
    format!(
        "[source]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n\n[state]\npath = {}\nsnapshot_key = \"{}\"\n\n",
        toml::Value::String(format!("sqlite:///{}", copy.display())),
        toml::Value::String(manifest_key(db)),
        toml::Value::String(dir.join("state.db").display().to_string()),
        "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
    )
}

async fn open_source(dir: &Path, db: &str) -> DynStore {
    let copy = dir.join(format!("lib-{db}"));
    std::fs::copy(testdata(db), &copy).unwrap();
    let cfg = MetastoreConfig {
        sql_alchemy_conn: Some(format!("sqlite:///{}", copy.display())),
        fernet_key: Some(manifest_key(db).into()),
        ..Default::default()
    };
    Arc::new(MetastoreStore::open_with_env(&cfg, &|_| None).await.unwrap())
}

/// Every source item that the target can hold reads back as Airflow would read what was written;
/// every other one is a per-item error of an expected kind, never a silent skip.
async fn assert_migrated(source: &dyn Store, target: &dyn Store) {
    let src = scan_all(source, &Kind::ALL).await.unwrap();
    assert_eq!(src.error_count(), 0, "the testdata metastore reads cleanly with NEW,OLD");
    assert!(src.len() >= 30, "expected the manifest's 33 items, got {}", src.len());
    let tgt = scan_all(target, &Kind::ALL).await.unwrap();
    let p = plan::diff(source, &src, target, &tgt, &Policy::new(Selection::all(), &ApplyConfig::default()));
    assert!(!p.has_changes(), "{target}: a second plan still has changes: {:?}", p.summary);
    let caps = target.capabilities();
    let mut written = 0;
    for c in &p.changes {
        if let Some(e) = &c.error {
            assert!(
                matches!(e.kind, ItemErrorKind::InvalidName | ItemErrorKind::NotRepresentable | ItemErrorKind::TooLarge),
                "{target}: {}: unexpected error {e}",
                c.id
            );
            continue;
        }
        let want = plan::projected(&caps, src.get(&c.id).unwrap());
        let got = tgt.get(&c.id).unwrap_or_else(|| panic!("{target}: {} missing after apply", c.id));
        assert!(plan::same_value(&want, &got.value), "{target}: {} reads back differently", c.id);
        written += 1;
    }
    assert!(written >= 25, "{target}: only {written} items were migrated");
}

fn run_bin(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_airflow-secrets-sync"))
        .args(args)
        .current_dir(dir)
        .env_remove("AIRFLOW__CORE__FERNET_KEY")
        .env_remove("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        .output()
        .unwrap();
    (o.status.code().unwrap(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// Incident recovery from `backend`: restore it into an empty metastore of the same Airflow
/// version (the Airflow-made file with its rows deleted), re-encrypted with another key, and
/// check every item the backend holds reads back as the backend serves it.
async fn assert_restorable(dir: &Path, db: &str, backend: DynStore) {
    let path = dir.join(format!("restored-{db}"));
    std::fs::copy(testdata(db), &path).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("DELETE FROM variable").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM connection").execute(&pool).await.unwrap();
    pool.close().await;
    let cfg = MetastoreConfig {
        sql_alchemy_conn: Some(format!("sqlite:///{}", path.display())),
        fernet_key: Some("ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=".into()),
        ..Default::default()
    };
    let restored: DynStore = Arc::new(MetastoreStore::open_with_env(&cfg, &|_| None).await.unwrap());
    let policy = Policy::new(Selection::all(), &ApplyConfig::default());
    let mut out = Vec::new();
    let exit = app::migrate_between(backend.clone(), restored.clone(), &policy, &ApplyOptions::default(), &migrate_args(), &mut out)
        .await
        .unwrap_or_else(|e| panic!("restore from {backend}: {e:#}\n{}", String::from_utf8_lossy(&out)));
    assert_eq!(exit, Exit::Ok, "{}", String::from_utf8_lossy(&out));
    let from = scan_all(backend.as_ref(), &Kind::ALL).await.unwrap();
    let back = scan_all(restored.as_ref(), &Kind::ALL).await.unwrap();
    assert_eq!(back.error_count(), 0);
    assert_eq!(from.len(), back.len(), "restore from {backend}: item count");
    for e in from.entries() {
        let got = back.get(&e.id).unwrap_or_else(|| panic!("restore from {backend}: {} missing", e.id));
        assert!(plan::same_value(&e.value, &got.value), "restore from {backend}: {} differs", e.id);
    }
}

/// plan (changes and per-item errors) → apply --skip-errored → plan (no changes, same errors).
fn binary_round(dir: &Path) {
    let (code, out, err) = run_bin(dir, &["migrate", "--plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("exit {code}: {out}{err}"));
    assert!(plan["summary"]["create"].as_u64().unwrap() >= 25, "{out}");
    let errors = plan["summary"]["errors"].as_u64().unwrap();
    assert_eq!(code, if errors > 0 { Exit::InvalidItem.code() as i32 } else { 2 }, "{err}");
    let (code, out, err) = run_bin(dir, &["migrate", "--apply", "--skip-errored"]);
    assert!(out.contains("0 failed"), "exit {code}: {out}{err}");
    let (_, out, _) = run_bin(dir, &["migrate", "--plan", "--json"]);
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["summary"]["create"], 0, "{out}");
    assert_eq!(again["summary"]["update"], 0, "{out}");
    assert_eq!(again["summary"]["errors"].as_u64().unwrap(), errors);
}

async fn aws_round(kind: &str) {
    let moto = moto_server::MotoServer::start();
    for db in DBS {
        let dir = tempfile::tempdir().unwrap();
        // One prefix per database so both rounds share the emulator without seeing each other.
        let tag = db.replace(['.', '-'], "_");
        let (cp, vp) = if kind == "aws_ssm" {
            (format!("/{tag}/connections"), format!("/{tag}/variables"))
        } else {
            (format!("{tag}/connections"), format!("{tag}/variables"))
        };
        let target = format!(
            "[target]\nkind = \"{kind}\"\nconnections_prefix = \"{cp}\"\nvariables_prefix = \"{vp}\"\n\
             region_name = \"us-east-1\"\nendpoint_url = \"{}\"\naws_access_key_id = \"testing\"\naws_secret_access_key = \"testing\"\n",
            moto.endpoint()
        );
        // Secrets Manager runs paced at its 50 writes/s quota (the default); SSM's default of
        // 3 writes/s would make this round minutes long against an emulator: unpaced.
        let pace = if kind == "aws_ssm" { "\n[apply]\nmax_writes_per_second = 0\n" } else { "" };
        let cfg_text = format!("{}\n{target}{pace}", source_table(dir.path(), db));
        std::fs::write(dir.path().join("config.toml"), &cfg_text).unwrap();
        binary_round(dir.path());
        let cfg = Config::from_toml(&cfg_text).unwrap();
        let source = registry::open(&cfg.source).await.unwrap();
        let target = registry::open(&cfg.target).await.unwrap();
        assert_migrated(source.as_ref(), target.as_ref()).await;
        assert_restorable(dir.path(), db, target).await;
    }
}

#[tokio::test]
async fn testdata_metastores_to_aws_secrets_manager() {
    aws_round("aws_secrets_manager").await;
}

#[tokio::test]
async fn testdata_metastores_to_aws_ssm() {
    aws_round("aws_ssm").await;
}

#[tokio::test]
async fn testdata_metastores_to_vault_kv2_and_kv1() {
    let vault = vault_server::VaultServer::start();
    vault.mount_kv("kv1", 1);
    for (db, mount, version) in [(DBS[0], "secret", 2), (DBS[1], "kv1", 1)] {
        let dir = tempfile::tempdir().unwrap();
        // The seed guide's setting, written the way users already have it in airflow.cfg.
        let kwargs = serde_json::json!({
            "url": vault.url(), "mount_point": mount, "kv_engine_version": version,
            "connections_path": "connections", "variables_path": "variables",
            "auth_type": "token", "token": vault_server::ROOT_TOKEN,
        });
        let target = format!(
            "[target]\nairflow_backend = \"airflow.providers.hashicorp.secrets.vault.VaultBackend\"\nbackend_kwargs = {}\n",
            toml::Value::String(kwargs.to_string())
        );
        let cfg_text = format!("{}\n{target}", source_table(dir.path(), db));
        std::fs::write(dir.path().join("config.toml"), &cfg_text).unwrap();
        binary_round(dir.path());
        let cfg = Config::from_toml(&cfg_text).unwrap();
        let source = registry::open(&cfg.source).await.unwrap();
        let target = registry::open(&cfg.target).await.unwrap();
        assert_migrated(source.as_ref(), target.as_ref()).await;
        assert_restorable(dir.path(), db, target).await;
    }
}

fn migrate_args() -> MigrateArgs {
    MigrateArgs {
        plan: false,
        apply: true,
        json: true,
        show_unchanged: false,
        only: None,
        include: vec![],
        exclude: vec![],
        prune: false,
        adopt: false,
        max_deletes: None,
        skip_errored: true,
        detailed_exitcode: false,
        ..Default::default()
    }
}

async fn library_round(source: DynStore, target: DynStore) {
    let policy = Policy::new(Selection::all(), &ApplyConfig::default());
    // The REST fakes have no quota; pacing to the real services' quotas is tested in apply.rs.
    let opts = ApplyOptions {
        base_backoff: std::time::Duration::from_millis(1),
        max_writes_per_second: Some(0.0),
        ..ApplyOptions::default()
    };
    let mut out = Vec::new();
    let result = app::migrate_between(source.clone(), target.clone(), &policy, &opts, &migrate_args(), &mut out).await;
    match result {
        Ok(exit) => assert!(matches!(exit, Exit::Ok | Exit::InvalidItem), "{exit:?}"),
        Err(e) => panic!("apply failed: {e:#}\n{}", String::from_utf8_lossy(&out)),
    }
    assert_migrated(source.as_ref(), target.as_ref()).await;
}

#[tokio::test]
async fn testdata_metastores_to_gcp_secret_manager() {
    use airflow_secrets_sync::store::gcp_secret_manager::{GcpSecretManagerConfig, GcpSecretManagerStore};
    for db in DBS {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_gcp::FakeGcp::start().await;
        // Throttle the first writes: the run completes through apply's retries.
        fake.throttle_next(3, 0);
        let cfg = GcpSecretManagerConfig {
            project_id: Some("e2e".into()),
            endpoint: Some(fake.endpoint.clone()),
            ..Default::default()
        };
        let creds = google_cloud_auth::credentials::anonymous::Builder::new().build();
        let target: DynStore = Arc::new(GcpSecretManagerStore::connect_with_credentials(cfg, creds).await.unwrap());
        library_round(open_source(dir.path(), db).await, target.clone()).await;
        assert!(fake.throttled() >= 3, "the throttled path was exercised");
        assert_restorable(dir.path(), db, target).await;
    }
}

#[tokio::test]
async fn testdata_metastores_to_azure_key_vault() {
    use airflow_secrets_sync::store::azure_key_vault::{AzureKeyVaultConfig, AzureKeyVaultStore};
    use azure_core::http::{ClientOptions, RetryOptions};
    use azure_security_keyvault_secrets::SecretClientOptions;
    for db in DBS {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_azure::FakeAzure::new();
        fake.throttle_next(3, 0);
        let options = SecretClientOptions {
            client_options: ClientOptions { transport: Some(fake.transport()), retry: RetryOptions::none(), ..Default::default() },
            ..Default::default()
        };
        let cfg = AzureKeyVaultConfig { vault_url: "https://fakevault.vault.azure.net/".into(), ..Default::default() };
        let target: DynStore =
            Arc::new(AzureKeyVaultStore::with_credential(cfg, Arc::new(fake_azure::FakeCredential), options).unwrap());
        library_round(open_source(dir.path(), db).await, target.clone()).await;
        assert!(fake.throttled() >= 3);
        assert_restorable(dir.path(), db, target).await;
    }
}

/// A target that goes away after `limit` successful writes (a lost connection mid-run).
struct Interrupting {
    inner: DynStore,
    left: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Display for Interrupting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl Store for Interrupting {
    fn capabilities(&self) -> airflow_secrets_sync::store::Capabilities {
        self.inner.capabilities()
    }
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn locate(&self, id: &airflow_secrets_sync::model::ItemId) -> airflow_secrets_sync::store::Placement {
        self.inner.locate(id)
    }
    async fn scan(&self, kind: Kind) -> Result<airflow_secrets_sync::model::Inventory, airflow_secrets_sync::store::StoreError> {
        self.inner.scan(kind).await
    }
    async fn write(
        &self,
        e: &airflow_secrets_sync::model::Entry,
        p: &airflow_secrets_sync::store::Precondition,
    ) -> Result<(), airflow_secrets_sync::store::StoreError> {
        use std::sync::atomic::Ordering;
        if self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
            return Err(airflow_secrets_sync::store::StoreError::Unavailable {
                store: self.to_string(),
                op: "write",
                reason: "connection reset".into(),
            });
        }
        self.inner.write(e, p).await
    }
    async fn delete(&self, id: &airflow_secrets_sync::model::ItemId) -> Result<(), airflow_secrets_sync::store::StoreError> {
        self.inner.delete(id).await
    }
}

/// An apply interrupted by a lost connection exits "throttled/unavailable" (resumable) having
/// written part of the plan; running it again writes exactly the rest.
async fn interrupted_then_resumed(source: DynStore, target: DynStore) {
    let policy = Policy::new(Selection::all(), &ApplyConfig::default());
    let opts = ApplyOptions {
        max_attempts: 2,
        base_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(5),
        concurrency: Some(1),
        max_writes_per_second: Some(0.0),
        ..ApplyOptions::default()
    };
    let flaky: DynStore = Arc::new(Interrupting { inner: target.clone(), left: 10.into() });
    let mut out = Vec::new();
    let err = app::migrate_between(source.clone(), flaky, &policy, &opts, &migrate_args(), &mut out).await.unwrap_err();
    assert_eq!(airflow_secrets_sync::error::classify(&err), Exit::Throttled, "{err:#}");
    let after_crash = scan_all(target.as_ref(), &Kind::ALL).await.unwrap().len();
    assert_eq!(after_crash, 10, "exactly the writes before the interruption landed");
    library_round(source, target).await;
}

#[tokio::test]
async fn interrupted_runs_resume_on_gcp_and_azure() {
    use airflow_secrets_sync::store::azure_key_vault::{AzureKeyVaultConfig, AzureKeyVaultStore};
    use airflow_secrets_sync::store::gcp_secret_manager::{GcpSecretManagerConfig, GcpSecretManagerStore};
    use azure_core::http::{ClientOptions, RetryOptions};
    use azure_security_keyvault_secrets::SecretClientOptions;
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_gcp::FakeGcp::start().await;
    let cfg = GcpSecretManagerConfig { project_id: Some("e2e".into()), endpoint: Some(fake.endpoint.clone()), ..Default::default() };
    let creds = google_cloud_auth::credentials::anonymous::Builder::new().build();
    let gcp: DynStore = Arc::new(GcpSecretManagerStore::connect_with_credentials(cfg, creds).await.unwrap());
    interrupted_then_resumed(open_source(dir.path(), DBS[0]).await, gcp).await;

    let fake = fake_azure::FakeAzure::new();
    let options = SecretClientOptions {
        client_options: ClientOptions { transport: Some(fake.transport()), retry: RetryOptions::none(), ..Default::default() },
        ..Default::default()
    };
    let cfg = AzureKeyVaultConfig { vault_url: "https://fakevault.vault.azure.net/".into(), ..Default::default() };
    let azure: DynStore = Arc::new(AzureKeyVaultStore::with_credential(cfg, Arc::new(fake_azure::FakeCredential), options).unwrap());
    interrupted_then_resumed(open_source(dir.path(), DBS[1]).await, azure).await;
}
