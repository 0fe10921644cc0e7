//! The conformance suite (`src/store/conformance.rs`) against every store: one line per store
//! setup below, one `#[tokio::test]` per (store × rule), so every broken rule shows
//! (`cargo test --test conformance vault_kv1::` runs one store, `-- ::large_values` one rule).
//!
//! Each setup gives `(guard, store)`: the guard (a server, a temporary directory, a database)
//! lives as long as the test. Servers are per test, as in the rest of the suite: `bao server -dev`
//! (Vault), `moto_server` (AWS), the in-repo GCP and Azure fakes, the local PostgreSQL and MariaDB.
//! Adding a backend adds one line here.

mod support;
#[path = "support/vault_server.rs"]
mod vault_server;
#[path = "support/moto_server.rs"]
mod moto_server;
#[path = "support/fake_gcp.rs"]
mod fake_gcp;
#[path = "support/fake_azure.rs"]
mod fake_azure;

use std::path::Path;

use airflow_secrets_sync::store::Store;

airflow_secrets_sync::conformance_suite! {
    // Test-only stores (src/store/registry.rs: TEST_ONLY_KINDS).
    memory => setup::memory();
    memory_limited => setup::memory_limited();
    memory_read_only => setup::memory_read_only();
    dir => setup::dir();
    snapshot => setup::snapshot();
    // Airflow's own stores.
    env_file_json => setup::env_file(airflow_secrets_sync::store::env::EnvConnectionFormat::Json);
    env_file_uri => setup::env_file(airflow_secrets_sync::store::env::EnvConnectionFormat::Uri);
    env_process => setup::env_process();
    env_from_vars => setup::env_from_vars();
    local_files_json => setup::local_files("variables.json", Some("connections.json"));
    local_files_yaml => setup::local_files("variables.yaml", Some("connections.yml"));
    local_files_env_connections => setup::local_files("variables.json", Some("connections.env"));
    local_files_env_variables => setup::local_env_variables();
    metastore_sqlite => setup::metastore_sqlite();
    metastore_postgres => setup::metastore_postgres();
    metastore_mysql => setup::metastore_mysql();
    // Vault (OpenBao dev server).
    vault_kv2 => setup::vault_kv2();
    vault_kv2_uri => setup::vault_kv2_uri();
    vault_kv1 => setup::vault_kv1();
    vault_mount_point_none => setup::vault_mount_point_none();
    vault_least_privilege => setup::vault_least_privilege();
    // AWS (moto_server).
    aws_secrets_manager => setup::secrets_manager(serde_json::json!({}));
    aws_secrets_manager_custom => setup::secrets_manager(
        serde_json::json!({"connections_prefix": "team1/conns/", "variables_prefix": "team1/vars", "sep": "-"}));
    aws_secrets_manager_uri => setup::secrets_manager(
        serde_json::json!({"connections_prefix": "uri/conns", "variables_prefix": "uri/vars", "connection_format": "uri"}));
    aws_ssm => setup::ssm(serde_json::json!({}));
    aws_ssm_custom => setup::ssm(serde_json::json!({"connections_prefix": "team1/conns/", "variables_prefix": "/"}));
    aws_ssm_advanced => setup::ssm(serde_json::json!({"variables_prefix": "/adv", "allow_advanced_tier": true}));
    aws_ssm_uri => setup::ssm(
        serde_json::json!({"connections_prefix": "/uri/conns", "variables_prefix": "/uri/vars", "connection_format": "uri"}));
    // GCP and Azure (in-repo fakes behind the production SDK clients).
    gcp_secret_manager => setup::gcp();
    azure_key_vault => setup::azure();
}

/// The suite above covers every registered backend and every test-only kind: a backend added to
/// the registry without a line here fails this test.
#[test]
fn every_registered_backend_has_a_suite_line() {
    let src = include_str!("conformance.rs");
    // A store's lines are named after its kind: `vault_kv1`, `aws_ssm_uri`, `local_files_yaml`, …
    let lines: Vec<&str> = src.lines().filter(|l| l.contains(" => setup::")).map(str::trim_start).collect();
    let kinds = airflow_secrets_sync::store::registry::BACKENDS.iter().map(|b| b.kind);
    for kind in kinds.chain(airflow_secrets_sync::store::registry::TEST_ONLY_KINDS.iter().copied()) {
        assert!(lines.iter().any(|l| l.starts_with(kind)), "no conformance line for {kind} (a line `{kind}… => setup::…`)");
    }
}

mod setup {
    use std::sync::Arc;

    use airflow_secrets_sync::model::{Entry, Inventory, ItemId};
    use airflow_secrets_sync::store::dir::DirStore;
    use airflow_secrets_sync::store::env::{EnvConfig, EnvConnectionFormat, EnvSource, EnvStore};
    use airflow_secrets_sync::store::local_files::{LocalFilesConfig, LocalFilesStore};
    use airflow_secrets_sync::store::memory::MemoryStore;
    use airflow_secrets_sync::store::metastore::{MetastoreConfig, MetastoreStore, OnConflict};
    use airflow_secrets_sync::store::snapshot::SnapshotStore;
    use airflow_secrets_sync::store::{Capabilities, Placement, Store};
    use tempfile::TempDir;

    use super::*;

    pub async fn memory() -> ((), MemoryStore) {
        ((), MemoryStore::new("conformance"))
    }

    pub async fn memory_limited() -> ((), MemoryStore) {
        let mut caps = Capabilities::full();
        caps.max_value_bytes = Some(4096);
        caps.empty_variables = false;
        caps.connection_description = true;
        ((), MemoryStore::with_capabilities("limited", caps))
    }

    pub async fn memory_read_only() -> ((), MemoryStore) {
        let mut caps = Capabilities::full();
        caps.read_only = true;
        ((), MemoryStore::with_capabilities("read-only", caps))
    }

    pub async fn dir() -> (TempDir, DirStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path());
        (dir, store)
    }

    pub async fn snapshot() -> ((), SnapshotStore) {
        let items: Inventory = [Entry::variable("a", "1")].into_iter().collect();
        ((), SnapshotStore::new("r1", "memory:t", items))
    }

    // ---- env and local files (tests/stores_files.rs has the format rules) ----

    pub async fn env_file(format: EnvConnectionFormat) -> (TempDir, EnvStore) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EnvConfig {
            source: EnvSource::File,
            path: Some(dir.path().join("airflow.env")),
            connection_format: format,
            ..Default::default()
        };
        let store = EnvStore::new(&cfg).expect("valid config");
        (dir, store)
    }

    pub async fn env_process() -> ((), EnvStore) {
        ((), EnvStore::process())
    }

    pub async fn env_from_vars() -> ((), EnvStore) {
        ((), EnvStore::from_vars([("AIRFLOW_VAR_X", "1")]))
    }

    fn local(dir: &Path, vars: Option<&str>, conns: Option<&str>) -> LocalFilesStore {
        LocalFilesStore::new(&LocalFilesConfig {
            variables_file_path: vars.map(|v| dir.join(v)),
            connections_file_path: conns.map(|c| dir.join(c)),
            ..Default::default()
        })
        .expect("valid config")
    }

    pub async fn local_files(vars: &str, conns: Option<&str>) -> (TempDir, LocalFilesStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path(), Some(vars), conns);
        (dir, store)
    }

    /// Variables in `.env`, with the format's limits declared as capabilities (no empty values, no
    /// line breaks: both are refused by name).
    pub async fn local_env_variables() -> (TempDir, LocalFilesStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path(), Some("variables.env"), None);
        assert!(!store.capabilities().empty_variables);
        assert!(!store.capabilities().variable_line_breaks);
        (dir, store)
    }

    // ---- the metastore as a target (tests/restore.rs has the rest) ----

    /// A key the restored metastore is encrypted with.
    const RESTORE_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn ddl(name: &str) -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/airflow_schema").join(name)).unwrap()
    }

    async fn metastore(url: &str) -> MetastoreStore {
        let cfg = MetastoreConfig {
            sql_alchemy_conn: Some(url.to_string()),
            fernet_key: Some(RESTORE_KEY.into()),
            on_conflict: OnConflict::Overwrite,
            ..Default::default()
        };
        MetastoreStore::open_with_env(&cfg, &|_| None).await.unwrap_or_else(|e| panic!("open {url}: {e}"))
    }

    /// An empty SQLite metastore of Airflow 3.3.2: the Airflow-made file with its rows gone.
    pub async fn metastore_sqlite() -> (TempDir, MetastoreStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty-airflow-3.3.2.db");
        std::fs::copy(support::testdata_dir().join("metastore").join("airflow-3.3.2.db"), &path).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).unwrap();
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query("DELETE FROM variable").execute(&pool).await.unwrap();
        sqlx::query("DELETE FROM connection").execute(&pool).await.unwrap();
        pool.close().await;
        let store = metastore(&format!("sqlite:///{}", path.display())).await;
        (dir, store)
    }

    pub async fn metastore_postgres() -> (support::TestDb, MetastoreStore) {
        let pg = support::fresh_postgres().await;
        support::pg_exec_script(&pg.url, &ddl("postgres_3x.sql")).await;
        let store = metastore(&pg.sqlalchemy_url()).await;
        (pg, store)
    }

    pub async fn metastore_mysql() -> (support::TestDb, MetastoreStore) {
        let my = support::fresh_mysql().await;
        support::mysql_exec_script(&my.url, &ddl("mysql_2x.sql")).await;
        let store = metastore(&my.sqlalchemy_url()).await;
        (my, store)
    }

    // ---- Vault (tests/vault.rs has the rest) ----

    use airflow_secrets_sync::store::vault::{KvVersion, VaultAuth, VaultConfig, VaultConnectionFormat, VaultStore};
    use serde_json::json;
    use vault_server::{ROOT_TOKEN, VaultServer};

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

    pub async fn vault_kv2() -> (VaultServer, VaultStore) {
        let server = VaultServer::start();
        let store = open(&token_config(&server, ROOT_TOKEN)).await;
        let caps = store.capabilities();
        assert!(caps.can_tag && caps.conditional_writes && caps.connection_description);
        let shown = format!("{store} {store:?} {}", store.identity());
        assert!(!shown.contains(ROOT_TOKEN), "{shown}");
        (server, store)
    }

    pub async fn vault_kv2_uri() -> (VaultServer, VaultStore) {
        let server = VaultServer::start();
        let store =
            open(&VaultConfig { connection_format: VaultConnectionFormat::Uri, ..token_config(&server, ROOT_TOKEN) }).await;
        assert!(!store.capabilities().connection_description);
        (server, store)
    }

    pub async fn vault_kv1() -> (VaultServer, VaultStore) {
        let server = VaultServer::start();
        server.mount_kv("kv1", 1);
        let store = open(&VaultConfig {
            mount_point: Some("kv1".into()),
            kv_engine_version: KvVersion::V1,
            ..token_config(&server, ROOT_TOKEN)
        })
        .await;
        let caps = store.capabilities();
        assert!(!caps.can_tag && !caps.conditional_writes);
        (server, store)
    }

    /// With `mount_point = None` Airflow reads only ids of the form `<mount>/<rest>`; the suite
    /// runs with its ids under the `secret/` mount.
    pub async fn vault_mount_point_none() -> (VaultServer, MountPrefixed) {
        let server = VaultServer::start();
        let store = open(&VaultConfig { mount_point: None, ..token_config(&server, ROOT_TOKEN) }).await;
        assert!(matches!(store.locate(&ItemId::variable("no_slash")), Placement::Unreachable(_)));
        assert_eq!(store.locate(&ItemId::variable("secret/a/b")), Placement::At("secret/data/variables/a/b".into()));
        (server, MountPrefixed { inner: store, prefix: "secret/" })
    }

    /// The tool's documented least-privilege AppRole policy (`docs/`) is enough for the suite.
    pub async fn vault_least_privilege() -> (VaultServer, VaultStore) {
        const POLICY_TOOL: &str = include_str!("../docs/vault-policy-airflow-secrets-sync.hcl");
        let server = VaultServer::start();
        server.root_ok("PUT", "/v1/sys/policies/acl/airflow-secrets-sync", Some(json!({ "policy": POLICY_TOOL })));
        server.root_ok("POST", "/v1/sys/auth/approle", Some(json!({ "type": "approle" })));
        let role = "/v1/auth/approle/role/airflow-secrets-sync";
        server.root_ok("POST", role, Some(json!({ "token_policies": ["airflow-secrets-sync"], "token_ttl": "1h" })));
        let role_id = server.root_ok("GET", &format!("{role}/role-id"), None)["data"]["role_id"].as_str().unwrap().to_string();
        let secret_id =
            server.root_ok("POST", &format!("{role}/secret-id"), None)["data"]["secret_id"].as_str().unwrap().to_string();
        let store = open(&VaultConfig {
            url: Some(server.url()),
            auth: VaultAuth::Approle { role_id, secret_id: Some(secret_id.into()), auth_mount_point: "approle".into() },
            ..VaultConfig::default()
        })
        .await;
        store.check().await.unwrap();
        (server, store)
    }

    // ---- AWS (tests/aws.rs has the rest) ----

    use airflow_secrets_sync::store::aws::secrets_manager::{AwsSecretsManagerConfig, AwsSecretsManagerStore};
    use airflow_secrets_sync::store::aws::ssm::{AwsSsmConfig, AwsSsmStore};
    use moto_server::MotoServer;
    use serde_json::{Map, Value as Json};

    /// Our config keys plus dummy static credentials, a region and the endpoint.
    fn aws_config<T: serde::de::DeserializeOwned>(moto: &MotoServer, extra: Json) -> T {
        let mut m: Map<String, Json> = json!({
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "endpoint_url": moto.endpoint(),
        })
        .as_object()
        .unwrap()
        .clone();
        m.extend(extra.as_object().unwrap().clone());
        serde_json::from_value(Json::Object(m)).expect("config")
    }

    pub async fn secrets_manager(extra: Json) -> (MotoServer, AwsSecretsManagerStore) {
        let moto = MotoServer::start();
        let cfg: AwsSecretsManagerConfig = aws_config(&moto, extra);
        let store = AwsSecretsManagerStore::new(cfg).await.expect("store");
        (moto, store)
    }

    pub async fn ssm(extra: Json) -> (MotoServer, AwsSsmStore) {
        let moto = MotoServer::start();
        let cfg: AwsSsmConfig = aws_config(&moto, extra);
        let store = AwsSsmStore::new(cfg).await.expect("store");
        (moto, store)
    }

    // ---- GCP and Azure (tests/cloud.rs has the rest) ----

    use airflow_secrets_sync::store::azure_key_vault::{AzureKeyVaultConfig, AzureKeyVaultStore};
    use airflow_secrets_sync::store::gcp_secret_manager::{GcpSecretManagerConfig, GcpSecretManagerStore};
    use fake_azure::{FakeAzure, FakeCredential, VAULT_URL};
    use fake_gcp::FakeGcp;

    pub async fn gcp() -> (FakeGcp, GcpSecretManagerStore) {
        let fake = FakeGcp::start().await;
        let cfg = GcpSecretManagerConfig {
            project_id: Some("test-project".into()),
            endpoint: Some(fake.endpoint.clone()),
            ..GcpSecretManagerConfig::default()
        };
        let creds = google_cloud_auth::credentials::anonymous::Builder::new().build();
        let store = GcpSecretManagerStore::connect_with_credentials(cfg, creds).await.expect("gcp store");
        (fake, store)
    }

    pub async fn azure() -> (FakeAzure, AzureKeyVaultStore) {
        use azure_core::http::{ClientOptions, RetryOptions};
        let fake = FakeAzure::new();
        // Only the transport differs from production; SDK retries are off, as in tests/cloud.rs.
        let options = azure_security_keyvault_secrets::SecretClientOptions {
            client_options: ClientOptions { transport: Some(fake.transport()), retry: RetryOptions::none(), ..Default::default() },
            ..Default::default()
        };
        let cfg = AzureKeyVaultConfig { vault_url: format!("{VAULT_URL}/"), ..AzureKeyVaultConfig::default() };
        let store = AzureKeyVaultStore::with_credential(cfg, Arc::new(FakeCredential), options).expect("azure store");
        (fake, store)
    }
}

// ---- a wrapper for Vault's `mount_point = None` ----

use std::fmt;

use airflow_secrets_sync::model::{Entry, Inventory, ItemId, Kind};
use airflow_secrets_sync::store::vault::VaultStore;
use airflow_secrets_sync::store::{Capabilities, Placement, Precondition, StoreError};
use async_trait::async_trait;

/// Presents `inner` (a `mount_point = None` store) with every id prefixed by a mount.
pub struct MountPrefixed {
    pub inner: VaultStore,
    pub prefix: &'static str,
}

impl MountPrefixed {
    fn wrap(&self, id: &ItemId) -> ItemId {
        ItemId::new(id.kind, format!("{}{}", self.prefix, id.id))
    }
    fn unwrap_id(&self, id: &ItemId) -> Option<ItemId> {
        id.id.strip_prefix(self.prefix).map(|rest| ItemId::new(id.kind, rest))
    }
    fn unwrap_inv(&self, inv: Inventory) -> Inventory {
        let mut out = Inventory::new();
        for e in inv.entries() {
            if let Some(id) = self.unwrap_id(&e.id) {
                out.insert(Entry { id, ..e.clone() });
            }
        }
        for (id, err) in inv.errors() {
            if let Some(id) = self.unwrap_id(id) {
                out.insert_error(id, err.clone());
            }
        }
        out
    }
    fn unwrap_err(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Item { store, id, error } => {
                StoreError::Item { id: self.unwrap_id(&id).unwrap_or(id), store, error }
            }
            StoreError::Conflict { store, id } => StoreError::Conflict { id: self.unwrap_id(&id).unwrap_or(id), store },
            other => other,
        }
    }
}

impl fmt::Display for MountPrefixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (ids under {})", self.inner, self.prefix)
    }
}

#[async_trait]
impl Store for MountPrefixed {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn locate(&self, id: &ItemId) -> Placement {
        self.inner.locate(&self.wrap(id))
    }
    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        Ok(self.unwrap_inv(self.inner.scan(kind).await?))
    }
    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        let ids: Vec<ItemId> = ids.iter().map(|i| self.wrap(i)).collect();
        Ok(self.unwrap_inv(self.inner.read(&ids).await?))
    }
    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        let e = Entry { id: self.wrap(&entry.id), ..entry.clone() };
        self.inner.write(&e, pre).await.map_err(|e| self.unwrap_err(e))
    }
    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        self.inner.delete(&self.wrap(id)).await.map_err(|e| self.unwrap_err(e))
    }
}
