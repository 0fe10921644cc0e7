//! docker-compose.yml, docker/daemon.toml and the Dockerfile cannot run here (no Docker engine):
//! this checks that they are wired the way README.md and docs/daemon.md promise — every service,
//! every variable, the daemon writing exactly where Airflow's VaultBackend reads — and that
//! docs/daemon.md documents every metric the daemon exports.

use std::collections::BTreeMap;

use airflow_secrets_sync::airflow::fernet::AirflowFernet;
use airflow_secrets_sync::config::Config;
use airflow_secrets_sync::daemon::JobMode;
use airflow_secrets_sync::secret::SecretValue;
use airflow_secrets_sync::store::registry;
use serde_yaml_ng::Value;

const COMPOSE: &str = include_str!("../docker-compose.yml");
const DAEMON_TOML: &str = include_str!("../docker/daemon.toml");
const DOCKERFILE: &str = include_str!("../Dockerfile");
const README: &str = include_str!("../README.md");
const DAEMON_DOC: &str = include_str!("../docs/daemon.md");
const CARGO_TOML: &str = include_str!("../Cargo.toml");

fn compose() -> Value {
    let mut v: Value = serde_yaml_ng::from_str(COMPOSE).expect("docker-compose.yml is YAML");
    v.apply_merge().expect("merge keys resolve");
    v
}

fn env(service: &Value) -> BTreeMap<String, String> {
    let map = service["environment"].as_mapping().expect("environment is a mapping");
    map.iter().map(|(k, v)| (k.as_str().unwrap().to_string(), scalar(v))).collect()
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// `${NAME:-default}` → default (what `docker compose up` uses with nothing set).
fn compose_default(v: &str) -> String {
    match v.strip_prefix("${").and_then(|r| r.strip_suffix('}')).and_then(|r| r.split_once(":-")) {
        Some((_, default)) => default.to_string(),
        None => v.to_string(),
    }
}

fn daemon_config() -> Config {
    Config::from_toml(DAEMON_TOML).expect("docker/daemon.toml parses")
}

#[test]
fn every_service_the_readme_promises_is_there() {
    let c = compose();
    let services = c["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    for s in [
        "postgres",
        "openbao",
        "moto",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-secrets-sync",
    ] {
        assert!(names.contains(&s), "service {s} missing: {names:?}");
    }
    // Images are pinned, never `latest`; ports are published on loopback only.
    for (name, svc) in services {
        if let Some(image) = svc["image"].as_str() {
            assert!(image.contains(':') && !image.ends_with(":latest"), "{name:?}: unpinned image {image}");
        }
        if let Some(ports) = svc["ports"].as_sequence() {
            for p in ports {
                assert!(p.as_str().unwrap().starts_with("127.0.0.1:"), "{name:?} publishes {p:?} beyond loopback");
            }
        }
    }
    assert!(README.contains("docker compose up"), "README explains the stack");
}

#[test]
fn airflow_reads_vault_exactly_where_the_daemon_writes() {
    let c = compose();
    let cfg = daemon_config();
    let vault = cfg.stores.get("vault").expect("[stores.vault]");
    registry::parse(vault).expect("the daemon's vault store is valid");
    let daemon_env = env(&c["services"]["airflow-secrets-sync"]);
    let openbao_cmd: Vec<String> =
        c["services"]["openbao"]["command"].as_sequence().unwrap().iter().map(scalar).collect();
    let root_token = openbao_cmd.iter().find_map(|a| a.strip_prefix("-dev-root-token-id=")).expect("a dev root token");
    assert_eq!(daemon_env["VAULT_TOKEN"], root_token);

    for svc in ["airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"] {
        let s = &c["services"][svc];
        assert!(s["image"].as_str().unwrap().starts_with("apache/airflow:3."), "{svc}");
        let e = env(s);
        assert_eq!(e["AIRFLOW__SECRETS__BACKEND"], "airflow.providers.hashicorp.secrets.vault.VaultBackend", "{svc}");
        let kwargs: serde_json::Value = serde_json::from_str(&e["AIRFLOW__SECRETS__BACKEND_KWARGS"]).expect("kwargs are JSON");
        assert_eq!(kwargs["token"], root_token, "{svc}");
        // The same Vault, mount, paths and engine as the daemon's store.
        for (kw, key) in [("url", "url"), ("mount_point", "mount_point"), ("connections_path", "connections_path"), ("variables_path", "variables_path")] {
            assert_eq!(kwargs[kw].as_str(), vault.0[key].as_str(), "{svc}: {kw}");
        }
        assert_eq!(kwargs["kv_engine_version"].as_i64(), vault.0["kv_engine_version"].as_integer(), "{svc}");
        // The daemon decrypts with Airflow's key and reads Airflow's database.
        assert_eq!(e["AIRFLOW__CORE__FERNET_KEY"], daemon_env["AIRFLOW__CORE__FERNET_KEY"], "{svc}");
        assert_eq!(e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], daemon_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], "{svc}");
        // Depends on OpenBao being up (VaultBackend is consulted first on every lookup).
        assert!(s["depends_on"]["openbao"].is_mapping(), "{svc} waits for openbao");
    }
    let url = vault.0["url"].as_str().unwrap();
    assert!(url.starts_with("http://openbao:8200"), "{url}");

    // The Fernet key the stack uses by default is a real one.
    let key = compose_default(&daemon_env["AIRFLOW__CORE__FERNET_KEY"]);
    AirflowFernet::from_key_string(&SecretValue::from(key.as_str())).expect("the default FERNET_KEY is a valid key");
    // The metastore URL points at the postgres service with its credentials.
    let pg = env(&c["services"]["postgres"]);
    let conn = &daemon_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"];
    assert_eq!(
        conn,
        &format!("postgresql+psycopg2://{}:{}@postgres:5432/{}", pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    );
}

#[test]
fn the_daemon_service_runs_the_mounted_config_with_what_it_needs() {
    let c = compose();
    let d = &c["services"]["airflow-secrets-sync"];
    assert_eq!(d["build"].as_str(), Some("."));
    let cmd: Vec<String> = d["command"].as_sequence().unwrap().iter().map(scalar).collect();
    assert_eq!(cmd[0], "daemon");
    let config_at = &cmd[cmd.iter().position(|a| a == "--config").expect("--config") + 1];
    let volumes: Vec<String> = d["volumes"].as_sequence().unwrap().iter().map(scalar).collect();
    assert!(volumes.iter().any(|v| v == &format!("./docker/daemon.toml:{config_at}:ro")), "{volumes:?}");

    let cfg = daemon_config();
    // Apply jobs need a snapshot key: the service sets one, and its default is 32 bytes.
    assert!(cfg.jobs.iter().any(|j| j.mode == JobMode::Apply));
    let e = env(d);
    let snapshot_key = compose_default(&e["AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY"]);
    use base64::Engine;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(snapshot_key).unwrap().len(), 32);
    for var in ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY", "VAULT_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(e.contains_key(var), "the daemon service lacks {var}");
    }
    // Every job names stores that exist and parse.
    for job in &cfg.jobs {
        for store in [&job.source, &job.target] {
            registry::parse(cfg.store(store).unwrap()).unwrap_or_else(|e| panic!("job {}: {e}", job.name));
        }
    }
    // The state lives on the service's volume; the HTTP port is the one published.
    let state = cfg.state.path.as_ref().unwrap().display().to_string();
    assert!(volumes.iter().any(|v| v.ends_with(":/var/lib/airflow-secrets-sync") && state.starts_with("/var/lib/airflow-secrets-sync/")));
    let port = cfg.daemon.listen.rsplit(':').next().unwrap();
    let published: Vec<String> = d["ports"].as_sequence().unwrap().iter().map(scalar).collect();
    assert!(published.iter().any(|p| p.ends_with(&format!(":{port}"))), "{published:?}");
    // The AWS store talks to the moto service on its port.
    let aws = cfg.stores.get("aws").unwrap();
    let moto_port = env(&c["services"]["moto"])["MOTO_PORT"].clone();
    assert_eq!(aws.0["endpoint_url"].as_str(), Some(format!("http://moto:{moto_port}").as_str()));
}

#[test]
fn the_dockerfile_builds_the_crate_and_runs_unprivileged() {
    let lines: Vec<&str> = DOCKERFILE.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let from: Vec<&str> = lines.iter().filter(|l| l.starts_with("FROM ")).copied().collect();
    assert_eq!(from.len(), 2, "a build stage and a runtime stage");
    // The builder's Rust is at least the crate's rust-version.
    let msrv: toml::Table = toml::from_str(CARGO_TOML).unwrap();
    let msrv = msrv["package"]["rust-version"].as_str().unwrap();
    let rust = from[0].strip_prefix("FROM rust:").unwrap().split('-').next().unwrap();
    let v = |s: &str| s.split('.').map(|p| p.parse::<u32>().unwrap()).collect::<Vec<_>>();
    assert!(v(rust) >= v(msrv)[..2].to_vec(), "rust:{rust} < rust-version {msrv}");
    // Everything Cargo.toml needs is copied: the lock file, sources, migrations (sqlx::migrate!)
    // and every [[bench]] target it declares.
    for path in ["Cargo.toml", "Cargo.lock", "src", "migrations", "benches"] {
        assert!(lines.iter().any(|l| l.starts_with("COPY ") && l.contains(path)), "the Dockerfile does not copy {path}");
    }
    assert!(lines.iter().any(|l| l.contains("cargo build --release --locked")));
    assert!(lines.iter().any(|l| l.starts_with("USER ") && !l.ends_with(" root") && !l.ends_with(" 0")));
    assert!(lines.contains(&"EXPOSE 9477"));
    assert!(lines.iter().any(|l| l.starts_with("ENTRYPOINT") && l.contains("tini") && l.contains("airflow-secrets-sync")));
}

#[test]
fn docs_name_every_metric_and_endpoint() {
    use airflow_secrets_sync::daemon::metrics::*;
    // A family is exported once it has a series: give each one.
    let m = Metrics::new();
    let job = Metrics::job("j");
    let store = StoreLabels { store: "s".into(), op: "write".into() };
    m.runs.get_or_create(&RunLabels { job: "j".into(), result: "success".into() }).inc();
    m.items.get_or_create(&ItemLabels { job: "j".into(), action: "create".into() }).inc();
    m.drift.get_or_create(&job).set(0);
    m.last_success.get_or_create(&job).set(1.0);
    m.last_run.get_or_create(&job).set(1.0);
    m.duration.get_or_create(&job).observe(1.0);
    m.running.get_or_create(&job).set(0);
    m.missed.get_or_create(&job).inc();
    m.api_calls.get_or_create(&store).inc();
    m.api_errors.get_or_create(&StoreErrorLabels { store: "s".into(), op: "write".into(), error: "throttled".into() }).inc();
    m.throttles.get_or_create(&store).inc();
    m.reloads.get_or_create(&ReloadLabels { result: "ok".into() }).inc();
    let exported = m.encode();
    let names: Vec<&str> =
        exported.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert!(names.len() >= 10, "{exported}");
    for name in names {
        assert!(DAEMON_DOC.contains(name), "docs/daemon.md does not document {name}");
    }
    for endpoint in ["/healthz", "/readyz", "/metrics", "/status"] {
        assert!(DAEMON_DOC.contains(endpoint) && README.contains(endpoint), "{endpoint} undocumented");
    }
    assert!(README.contains("docs/daemon.md"));
    assert!(DAEMON_DOC.contains("Kubernetes"));
}
