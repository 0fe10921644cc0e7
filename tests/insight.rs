//! Operator insight: `config print` (masked, from a file or from an Airflow deployment), `verify`
//! (every reader, against the source) and `resolve` (precedence chains, keyed fingerprints),
//! against the seeded SQLite metastore, env vars, local files, and AWS Secrets Manager on moto.
//! Canary secrets are asserted absent from every output.

#[path = "support/moto_server.rs"]
mod moto_server;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use airflow_secrets_sync::airflow::connection::Reader;
use airflow_secrets_sync::config::SelectConfig;
use airflow_secrets_sync::demo::seed_metastore;
use airflow_secrets_sync::insight::deployment::Deployment;
use airflow_secrets_sync::insight::resolve::{self, Chains, CopyState, Fingerprinter, Layer};
use airflow_secrets_sync::insight::verify::{self, FindingKind, Severity};
use airflow_secrets_sync::insight::open_per_reader;
use airflow_secrets_sync::model::{ItemId, Kind, SecretValue, Value, Variable};
#[cfg(feature = "aws_secrets_manager")]
use airflow_secrets_sync::store::aws::common::{self as aws_common, AwsConnectionConfig};
use airflow_secrets_sync::plan::Selection;
use airflow_secrets_sync::store::env::EnvStore;
use airflow_secrets_sync::store::local_files::{LocalFilesConfig, LocalFilesStore};
use airflow_secrets_sync::store::metastore::{MetastoreConfig, MetastoreStore};
use airflow_secrets_sync::store::{DynStore, Precondition, registry, scan_all};
use serde_json::{Value as Json, json};

const BIN: &str = env!("CARGO_BIN_EXE_airflow-secrets-sync");

/// Plaintext in the demo metastore, and canaries planted in targets and settings.
const CANARIES: &[&str] = &[
    "xoxb-demo-not-a-real-token",
    "p@ss:w/rd#?%&= +",
    "api-secret",
    "Bearer demo",
    "written before a fernet key was set",
    "staging-canary-77",
    "canary-db-pw-31",
    "canary-aws-secret-42",
    "canary-vault-token-53",
];

fn assert_no_canary(out: &str, extra: &[&str]) {
    for c in CANARIES.iter().chain(extra) {
        assert!(!out.contains(c), "canary {c:?} leaked:\n{out}");
    }
}

/// The binary with none of the caller's Airflow settings.
fn bin(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd).env("NO_COLOR", "1").env_remove("AIRFLOW_SECRETS_SYNC_CONFIG").env("AIRFLOW_HOME", cwd);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("AIRFLOW__") || k.starts_with("AIRFLOW_VAR_") || k.starts_with("AIRFLOW_CONN_") || k == "AIRFLOW_CONFIG" {
            c.env_remove(k);
        }
    }
    c
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

async fn seeded(dir: &Path) -> (String, String) {
    let db = dir.join("airflow.db");
    let key = seed_metastore(&db).await.expect("seed");
    (format!("sqlite:///{}", db.display()), key.expose_plaintext().to_string())
}

async fn metastore(url: &str, key: &str) -> MetastoreStore {
    let cfg = MetastoreConfig {
        sql_alchemy_conn: Some(url.into()),
        fernet_key: Some(key.into()),
        ..Default::default()
    };
    MetastoreStore::open_with_env(&cfg, &|_| None).await.expect("open metastore")
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.into()).to_string()
}

// ------------------------------------------------------------------------------------------
// config print
// ------------------------------------------------------------------------------------------

#[test]
fn config_print_from_airflow_env_masks_credentials_and_honours_precedence() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("airflow.cfg"),
        "[core]\nfernet_key = canary-cfg-fernet-64\n[database]\nsql_alchemy_conn = postgresql://cfg:canary-cfg-pw@cfg-host/db\n\
         [secrets]\nbackend = airflow.secrets.local_filesystem.LocalFilesystemBackend\n\
         [workers]\nsecrets_backend = airflow.contrib.secrets.hashicorp_vault.VaultBackend\n\
         secrets_backend_kwargs = {\"url\": \"http://vault:8200\", \"token\": \"canary-vault-token-53\"}\n",
    )
    .unwrap();
    let out = bin(dir.path())
        .args(["--from-airflow-env", "config", "print"])
        .env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://airflow:canary-db-pw-31@db.internal:5432/airflow")
        .env("AIRFLOW__CORE__FERNET_KEY", "canary-env-fernet-75")
        .env("AIRFLOW__SECRETS__BACKEND", "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend")
        .env(
            "AIRFLOW__SECRETS__BACKEND_KWARGS",
            r#"{"connections_prefix": "airflow/connections", "variables_prefix": null, "aws_secret_access_key": "canary-aws-secret-42"}"#,
        )
        .env("AIRFLOW__SECRETS__BACKEND_KWARG__CONNECTIONS_PREFIX", "team/conns")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // env wins over airflow.cfg; per-kwarg override wins over the JSON; null survives.
    assert!(t.contains("SecretsManagerBackend"), "{t}");
    assert!(t.contains("team/conns") && !t.contains("airflow/connections"), "{t}");
    assert!(t.contains(r#""variables_prefix":null"#), "{t}");
    assert!(t.contains("postgresql+psycopg2://airflow:***@db.internal:5432/airflow"), "{t}");
    assert!(t.contains("fernet_key = \"***\""), "{t}");
    assert!(t.contains("from env AIRFLOW__CORE__FERNET_KEY"), "{t}");
    // The workers backend (legacy contrib path) is shown, commented, masked.
    assert!(t.contains("# workers_backend") || t.contains("[workers_backend]"), "{t}");
    assert!(t.contains("http://vault:8200"), "{t}");
    assert_no_canary(&t, &["canary-env-fernet-75", "canary-cfg-fernet-64", "canary-cfg-pw"]);

    // --airflow-cfg names the file; a `_cmd` option is run (no shell) and its output masked.
    let other = dir.path().join("other.cfg");
    std::fs::write(&other, "[database]\nsql_alchemy_conn_cmd = echo postgresql://u:canary-cmd-pw-97@cmd-host/db\n").unwrap();
    let out = bin(dir.path()).args(["--from-airflow-env", "--airflow-cfg", other.to_str().unwrap(), "config", "print"]).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("postgresql://u:***@cmd-host/db") && t.contains("sql_alchemy_conn_cmd"), "{t}");
    assert_no_canary(&t, &["canary-cmd-pw-97"]);

    // Without the env, the file is used (found through $AIRFLOW_HOME).
    let out = bin(dir.path()).args(["--from-airflow-env", "config", "print"]).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("LocalFilesystemBackend") && t.contains("postgresql://cfg:***@cfg-host/db"), "{t}");
    assert_no_canary(&t, &["canary-cfg-fernet-64", "canary-cfg-pw"]);
}

#[test]
fn config_print_masks_a_config_file_and_refuses_an_invalid_one_without_echoing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[source]\nkind = \"metastore\"\nsql_alchemy_conn = \"mysql://u:canary-db-pw-31@h/db\"\nfernet_key = \"canary-fk-86\"\n\
         [target]\nairflow_backend = \"airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend\"\n\
         backend_kwargs = '{\"aws_secret_access_key\": \"canary-aws-secret-42\", \"region_name\": \"eu-west-1\"}'\n",
    )
    .unwrap();
    let out = bin(dir.path()).args(["-c", cfg.to_str().unwrap(), "config", "print"]).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("mysql://u:***@h/db") && t.contains("eu-west-1"), "{t}");
    assert_no_canary(&t, &["canary-fk-86"]);

    std::fs::write(&cfg, "[source]\nkind = \"metastore\"\nfernet_key = \"canary-fk-86\n").unwrap();
    let out = bin(dir.path()).args(["-c", cfg.to_str().unwrap(), "config", "print"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_no_canary(&text(&out), &["canary-fk-86"]);
}

// ------------------------------------------------------------------------------------------
// verify
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn verify_after_the_demo_migration_is_clean_and_from_airflow_env_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let out = bin(dir.path()).args(["demo", "--dir", d.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let cfg = d.join("config.toml");
    let out = bin(dir.path()).args(["-c", cfg.to_str().unwrap(), "verify"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("0 problem(s)"), "{t}");
    assert_no_canary(&t, &[]);

    // The same deployment described the way Airflow is configured.
    let key = toml::from_str::<toml::Table>(&std::fs::read_to_string(&cfg).unwrap()).unwrap()["source"]["fernet_key"]
        .as_str()
        .unwrap()
        .to_string();
    let kwargs = json!({
        "variables_file_path": d.join("variables.json"),
        "connections_file_path": d.join("connections.json"),
    });
    let deploy = |c: &mut Command| {
        c.env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", format!("sqlite:///{}", d.join("airflow.db").display()))
            .env("AIRFLOW__CORE__FERNET_KEY", &key)
            .env("AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend")
            .env("AIRFLOW__SECRETS__BACKEND_KWARGS", kwargs.to_string());
    };
    let mut c = bin(dir.path());
    deploy(&mut c);
    let out = c.args(["--from-airflow-env", "verify", "--json"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["compared"], 9, "{t}");
    assert_no_canary(&t, &[&key]);

    // The workers' view: no [workers] backend, so [secrets] backend, read by the task-sdk.
    let mut c = bin(dir.path());
    deploy(&mut c);
    let out = c.args(["--from-airflow-env", "verify", "--workers", "--json"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["readers"], json!(["task-sdk"]), "{t}");

    // resolve through the binary: an empty AIRFLOW_VAR_ is a hit that shadows both copies;
    // an empty AIRFLOW_CONN_ is a miss.
    let mut c = bin(dir.path());
    deploy(&mut c);
    let out = c
        .args(["--from-airflow-env", "resolve", "--json", "--variable", "environment", "aws_default"])
        .env("AIRFLOW_VAR_ENVIRONMENT", "")
        .env("AIRFLOW_CONN_AWS_DEFAULT", "")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let r: Json = serde_json::from_slice(&out.stdout).unwrap();
    let by_id = |kind: &str, id: &str| r.as_array().unwrap().iter().find(|x| x["id"]["kind"] == kind && x["id"]["id"] == id).cloned();
    // The backend (local files) is asked first and holds `environment`: it wins, and env's ""
    // (a hit, not a miss) and the metastore's copy are shadowed.
    let env_var = by_id("variable", "environment").expect("environment resolved");
    let server = &env_var["chains"][0];
    assert!(server["served_by"].as_str().unwrap().starts_with("secrets backend"), "{t}");
    let copies = server["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 3, "{t}");
    assert_eq!(copies[1]["source"], "env");
    assert_eq!(copies[1]["same_as_served"], false, "an empty env value is a copy that differs: {t}");
    assert_eq!(copies[2]["same_as_served"], true, "{t}");
    let conn = by_id("connection", "aws_default").expect("aws_default resolved");
    assert_eq!(conn["chains"][0]["copies"].as_array().unwrap().iter().filter(|c| c["source"] == "env").count(), 0, "{t}");
    assert!(by_id("variable", "aws_default").is_none(), "a bare id found only as a connection: {t}");
    assert_no_canary(&t, &[&key]);
}

/// A local-files target that Airflow would read differently in several ways, checked through the
/// binary: table and JSON, exit 14.
#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_what_airflow_reads_differently_or_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = seeded(dir.path()).await;
    let vars = dir.path().join("variables.json");
    let conns = dir.path().join("connections.json");
    std::fs::write(&vars, json!({"environment": "staging-canary-77", "slack_webhook_token": "xoxb-demo-not-a-real-token"}).to_string()).unwrap();
    std::fs::write(
        &conns,
        json!({
            "aws_default": {"conn_type": "aws", "extra": {"region_name": "eu-west-1"}},
            // `user` is not a Connection() parameter: TypeError, Airflow falls through.
            "http_api": {"user": "svc", "conn_type": "http", "password": "api-secret"},
            // Not in the source: the 3.1+ ORM decodes "5" to 5, the task-sdk keeps "5".
            "json_looking": "http://h.example/?timeout=5",
            // An empty password: None to the ORM, '' to the task-sdk.
            "empty_pw": "http://user:@h.example",
        })
        .to_string(),
    )
    .unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n[target]\nkind = \"local_files\"\nvariables_file_path = {}\nconnections_file_path = {}\n",
            toml_str(&url),
            toml_str(&key),
            toml_str(&vars.display().to_string()),
            toml_str(&conns.display().to_string())
        ),
    )
    .unwrap();
    let out = bin(dir.path()).args(["-c", cfg.to_str().unwrap(), "verify", "--json"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(14), "{t}");
    assert_no_canary(&t, &[&key]);
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let has = |kind: &str, id: &str| findings.iter().any(|f| f["kind"] == kind && f["id"]["id"] == id);
    assert!(has("differs_from_source", "environment"), "{t}");
    assert!(!findings.iter().any(|f| f["id"]["id"] == "slack_webhook_token"), "{t}");
    assert!(has("missing", "etl_config") && has("missing", "warehouse_db"), "{t}");
    assert!(has("unreadable", "http_api"), "{t}");
    let unreadable = findings.iter().find(|f| f["kind"] == "unreadable" && f["id"]["id"] == "http_api").unwrap();
    assert!(unreadable["detail"].as_str().unwrap().contains("falls through"), "{t}");
    assert_eq!(unreadable["readers"].as_array().unwrap().len(), 3, "{t}");
    let w = findings.iter().find(|f| f["kind"] == "workers_differ" && f["id"]["id"] == "json_looking").expect("json_looking");
    assert_eq!(w["fields"], json!(["extra"]), "{t}");
    assert!(has("versions_differ", "json_looking"), "{t}");
    let p = findings.iter().find(|f| f["kind"] == "workers_differ" && f["id"]["id"] == "empty_pw").expect("empty_pw");
    assert_eq!(p["fields"], json!(["password"]), "{t}");
    assert!(!findings.iter().any(|f| f["id"]["id"] == "aws_default"), "{t}");

    // The table says the same without values.
    let out = bin(dir.path()).args(["-c", cfg.to_str().unwrap(), "verify"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(14), "{t}");
    assert!(t.contains("workers_differ") && t.contains("json_looking") && t.contains("problem(s)"), "{t}");
    assert_no_canary(&t, &[&key]);

    // Airflow 2 only: no task-sdk, so the empty password is no longer a worker difference.
    let out = bin(dir.path()).args(["-c", cfg.to_str().unwrap(), "verify", "--json", "--airflow-version", "2"]).output().unwrap();
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!report["findings"].as_array().unwrap().iter().any(|f| f["kind"] == "workers_differ"), "{}", text(&out));
}

// ------------------------------------------------------------------------------------------
// resolve (library)
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn resolve_follows_the_chain_and_fingerprints_are_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = seeded(dir.path()).await;
    let vars = dir.path().join("variables.json");
    std::fs::write(
        &vars,
        json!({"slack_webhook_token": "xoxb-demo-not-a-real-token", "etl_config": "staging-canary-77"}).to_string(),
    )
    .unwrap();
    let backend: DynStore = Arc::new(
        LocalFilesStore::new(&LocalFilesConfig { variables_file_path: Some(vars.clone()), ..Default::default() }).unwrap(),
    );
    let env: DynStore = Arc::new(EnvStore::from_vars([
        ("AIRFLOW_VAR_ENVIRONMENT", ""),
        ("AIRFLOW_VAR_SLACK_WEBHOOK_TOKEN", "xoxb-demo-not-a-real-token"),
        ("AIRFLOW_CONN_NO_PASSWORD", ""),
    ]));
    let meta: DynStore = Arc::new(metastore(&url, &key).await);
    let chains = Chains {
        layers: vec![
            Layer { name: "backend".into(), store: backend },
            Layer { name: "env".into(), store: env },
            Layer { name: "metastore".into(), store: meta },
        ],
        server: vec![0, 1, 2],
        workers: None,
    };
    let fp = Fingerprinter::new();
    let ids = resolve::ids_from_args(&[], &["environment".into(), "slack_webhook_token".into(), "etl_config".into()], &["no_password".into()]);
    let res = resolve::resolve(&chains, &ids, &fp).await.unwrap();
    let get = |id: &ItemId| res.iter().find(|r| &r.id == id).unwrap();

    // §9.19: AIRFLOW_VAR_X="" is a hit that shadows the metastore.
    let env_var = &get(&ItemId::variable("environment")).chains[0];
    assert_eq!(env_var.served_by.as_deref(), Some("env"));
    assert_eq!(env_var.copies[1].state, CopyState::Shadowed);
    assert_eq!(env_var.copies[1].same_as_served, Some(false));
    assert_ne!(env_var.copies[1].fingerprint, env_var.fingerprint);
    // ... and AIRFLOW_CONN_X="" is a miss.
    let conn = &get(&ItemId::connection("no_password")).chains[0];
    assert_eq!(conn.served_by.as_deref(), Some("metastore"));
    assert_eq!(conn.copies.len(), 1);

    // Same value in three places: one fingerprint, shadowed copies marked same.
    let slack = &get(&ItemId::variable("slack_webhook_token")).chains[0];
    assert_eq!(slack.served_by.as_deref(), Some("backend"));
    assert_eq!(slack.copies.len(), 3);
    assert!(slack.copies.iter().all(|c| c.fingerprint == slack.fingerprint));
    assert!(slack.copies[1..].iter().all(|c| c.same_as_served == Some(true)));
    // A diverging copy.
    let etl = &get(&ItemId::variable("etl_config")).chains[0];
    assert_eq!(etl.copies[1].same_as_served, Some(false));

    // Keyed: not a plain SHA-256 of the value, and a new run gives a new fingerprint.
    let f = slack.fingerprint.clone().unwrap();
    assert_eq!(f.len(), 12);
    use sha2::Digest;
    let plain: String = sha2::Sha256::digest(b"xoxb-demo-not-a-real-token").iter().map(|b| format!("{b:02x}")).collect();
    assert!(!plain.contains(&f));
    let v = Value::Variable(Variable::new("xoxb-demo-not-a-real-token"));
    let id = ItemId::variable("slack_webhook_token");
    assert_eq!(fp.fingerprint(&id, &v), f);
    assert_ne!(Fingerprinter::new().fingerprint(&id, &v), f);

    let shown = format!("{}{}", resolve::table(&res), serde_json::to_string(&res).unwrap());
    assert!(shown.contains("DIFFERS"), "{shown}");
    assert_no_canary(&shown, &[&key]);

    // --all: every shadowed item, nothing else.
    let all = resolve::resolve_all(&chains, &Kind::ALL, &fp).await.unwrap();
    let all_ids: Vec<&str> = all.iter().map(|r| r.id.id.as_str()).collect();
    assert_eq!(all_ids, ["environment", "etl_config", "slack_webhook_token"]);
}

// ------------------------------------------------------------------------------------------
// AWS Secrets Manager on moto
// ------------------------------------------------------------------------------------------

#[cfg(feature = "aws_secrets_manager")]
#[tokio::test(flavor = "multi_thread")]
async fn aws_secrets_manager_verify_and_resolve_from_deployment_settings() {
    let moto = moto_server::MotoServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = seeded(dir.path()).await;
    let env: BTreeMap<String, String> = [
        ("AIRFLOW__SECRETS__BACKEND", "airflow.contrib.secrets.aws_secrets_manager.SecretsManagerBackend".to_string()),
        (
            "AIRFLOW__SECRETS__BACKEND_KWARGS",
            json!({"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                   "variables_lookup_pattern": "^(slack|etl)"})
            .to_string(),
        ),
        ("AIRFLOW__SECRETS__BACKEND_KWARG__ENDPOINT_URL", moto.endpoint()),
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", url.clone()),
        ("AIRFLOW__CORE__FERNET_KEY", key.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let d = Deployment::from_parts(&env, None, &|_| Err("no commands".into())).unwrap();
    let target_spec = d.target_spec().unwrap();
    let masked = d.to_masked_toml();
    assert!(masked.contains(&moto.endpoint()) && masked.contains("variables_lookup_pattern"), "{masked}");
    assert_no_canary(&masked, &[&key]);

    // Seed the target: the migrated slack token, and connections written the way people do by hand.
    let store = registry::open(&target_spec).await.unwrap();
    let source = metastore(&url, &key).await;
    let src = scan_all(&source, &Kind::ALL).await.unwrap();
    let slack = src.get(&ItemId::variable("slack_webhook_token")).unwrap().clone();
    store.write(&slack, &Precondition::Any).await.unwrap();
    let c = AwsConnectionConfig {
        region_name: Some("us-east-1".into()),
        aws_access_key_id: Some("testing".into()),
        aws_secret_access_key: Some(SecretValue::from("testing")),
        ..Default::default()
    };
    let conf = aws_common::sdk_config(&c).await.to_builder().endpoint_url(moto.endpoint()).build();
    let raw = aws_sdk_secretsmanager::Client::new(&conf);
    for (name, value) in [
        // Same as the source's aws_default, as a URI.
        ("airflow/connections/aws_default", "aws://?region_name=eu-west-1"),
        // JSON-looking extra in a URI: scheduler and workers disagree.
        ("airflow/connections/warehouse_db", "postgres://etl_user:canary-db-pw-31@WAREHOUSE.internal:5432/analytics?connect_timeout=10"),
        // A non-object extra: the 3.1+ ORM refuses it (Airflow falls through), the task-sdk keeps it.
        ("airflow/connections/odd_extra", r#"{"conn_type": "http", "extra": "canary-aws-secret-42"}"#),
    ] {
        raw.create_secret().name(name).secret_string(value).send().await.unwrap();
    }

    let targets = open_per_reader(&target_spec, &Reader::ALL).await.unwrap();
    let selection = Selection::from_config(&SelectConfig::default()).unwrap();
    let report = verify::verify(&targets, Some(&src), &selection).await.unwrap();
    let f = |kind: FindingKind, id: &str| report.findings.iter().find(|f| f.kind == kind && f.id.id == id);
    // `environment` does not match variables_lookup_pattern: Airflow never looks it up there.
    assert!(f(FindingKind::Unreachable, "environment").is_some(), "{}", report.table());
    assert!(f(FindingKind::Missing, "etl_config").is_some());
    assert!(report.findings.iter().all(|x| x.id.id != "slack_webhook_token" && x.id.id != "aws_default"), "{}", report.table());
    let wh = f(FindingKind::DiffersFromSource, "warehouse_db").expect("warehouse_db differs");
    // The upper-case host reads back lower-cased, as the source has it: not a difference.
    assert_eq!(wh.fields, ["description", "password", "extra"]);
    assert!(f(FindingKind::WorkersDiffer, "warehouse_db").is_some_and(|x| x.fields == ["extra"]), "{}", report.table());
    let odd = f(FindingKind::Unreadable, "odd_extra").expect("odd_extra");
    assert_eq!(odd.readers, ["airflow3"]);
    assert_eq!(odd.severity, Severity::Problem);
    assert!(!report.is_ok());
    let shown = format!("{}{}", report.table(), serde_json::to_string(&report).unwrap());
    assert_no_canary(&shown, &[&key]);

    // resolve: the backend shadows the metastore's copies.
    let chains = Chains {
        layers: vec![
            Layer { name: "secrets backend".into(), store },
            Layer { name: "env".into(), store: Arc::new(EnvStore::from_vars(Vec::<(String, String)>::new())) },
            Layer { name: "metastore".into(), store: Arc::new(source) },
        ],
        server: vec![0, 1, 2],
        workers: None,
    };
    let all = resolve::resolve_all(&chains, &Kind::ALL, &Fingerprinter::new()).await.unwrap();
    let wh = all.iter().find(|r| r.id == ItemId::connection("warehouse_db")).expect("warehouse_db shadowed");
    assert_eq!(wh.chains[0].served_by.as_deref(), Some("secrets backend"));
    assert_eq!(wh.chains[0].copies[1].same_as_served, Some(false));
    let aws = all.iter().find(|r| r.id == ItemId::connection("aws_default")).expect("aws_default shadowed");
    assert_eq!(aws.chains[0].copies[1].same_as_served, Some(true));
    let shown = format!("{}{}", resolve::table(&all), serde_json::to_string(&all).unwrap());
    assert_no_canary(&shown, &[&key]);
}
