//! The real-Airflow tier: metastores seeded by Airflow 3.3.2 and 2.10.5 through their own models
//! (`tests/airflow/generate.py`, randomised, seed printed), migrated by the BINARY to every target
//! (plan → apply --skip-errored → plan), then read back through Airflow's own backend classes with
//! each reader (`tests/airflow/readback.py`: airflow2, airflow3, task-sdk) and compared with the
//! source as Airflow reads it (MetastoreBackend).
//!
//! Fails on: a read-back that differs from the source without the first plan naming it (an `error`
//! action, or a loss on that field for that reader); an errored item found in the target; a local
//! file Airflow rejects whole; a second plan with pending writes.
//!
//! Needs the pinned venvs (`tests/airflow/setup.sh`, `~/.cache/airflow-venvs/{af2,af3}`, or
//! `AIRFLOW_TIER_VENVS`). Without them it skips with a message, except under `CI=true`, where it
//! fails. `AIRFLOW_TIER_SEED` replays a run. Run alone: `cargo test --all-features --test real_airflow`.

#[path = "support/azure_https.rs"]
mod azure_https;
#[path = "support/fake_azure.rs"]
mod fake_azure;
#[path = "support/fake_gcp.rs"]
mod fake_gcp;
#[path = "support/moto_server.rs"]
mod moto_server;
#[path = "support/vault_server.rs"]
mod vault_server;
#[path = "support/real_airflow_check.rs"]
mod check;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value as J, json};

const BIN: &str = env!("CARGO_BIN_EXE_airflow-secrets-sync");
const HERE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/airflow");

/// The venvs, or None (skip) when they are missing outside CI.
fn venvs() -> Option<(PathBuf, PathBuf)> {
    let root = std::env::var_os("AIRFLOW_TIER_VENVS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/airflow-venvs"));
    let (af2, af3) = (root.join("af2"), root.join("af3"));
    let ok = |v: &Path| {
        Command::new(v.join("bin/python")).args(["-c", "import airflow"]).output().is_ok_and(|o| o.status.success())
    };
    if ok(&af2) && ok(&af3) {
        return Some((af2, af3));
    }
    let msg = format!(
        "the pinned Airflow venvs are missing under {} (build them with tests/airflow/setup.sh)",
        root.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}: CI must run the real-Airflow tier");
    }
    eprintln!("SKIPPED real_airflow: {msg}");
    None
}

/// One metastore made by one Airflow version.
struct Metastore {
    tag: &'static str,
    /// The reader that reads this metastore as its own Airflow does.
    reader: &'static str,
    manifest: J,
}

impl Metastore {
    fn ids(&self, kind: &str) -> Vec<String> {
        let key = if kind == "variable" { "variables" } else { "connections" };
        self.manifest[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    }
    fn url(&self) -> &str {
        self.manifest["sql_alchemy_conn"].as_str().unwrap()
    }
    fn fernet_key(&self) -> &str {
        self.manifest["fernet_key"].as_str().unwrap()
    }
}

fn python(venv: &Path, script: &str, args: &[&str], env: &[(&str, String)], home: &Path) -> Output {
    let mut c = Command::new(venv.join("bin/python"));
    c.arg(Path::new(HERE).join(script)).args(args).env("AIRFLOW_HOME", home).env("AIRFLOW__CORE__LOAD_EXAMPLES", "False");
    for k in ["VAULT_ADDR", "VAULT_TOKEN", "AIRFLOW__SECRETS__BACKEND", "AIRFLOW__SECRETS__BACKEND_KWARGS"] {
        c.env_remove(k);
    }
    c.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run the venv's python")
}

fn generate(dir: &Path, tag: &'static str, venv: PathBuf, reader: &'static str, seed: u64, extra: &[&str]) -> Metastore {
    let db = dir.join(format!("{tag}.db"));
    let out = dir.join(format!("{tag}.manifest.json"));
    let home = dir.join(format!("home-gen-{tag}"));
    let seed_s = seed.to_string();
    let mut args = vec!["--db", db.to_str().unwrap(), "--out", out.to_str().unwrap(), "--seed", &seed_s];
    args.extend_from_slice(extra);
    let o = python(&venv, "generate.py", &args, &[], &home);
    // Airflow's own output may quote values (tracebacks): it stays in a file.
    let log = dir.join(format!("generate-{tag}.log"));
    std::fs::write(&log, [o.stdout.as_slice(), o.stderr.as_slice()].concat()).unwrap();
    assert!(o.status.success(), "generator ({tag}, seed {seed}) failed; its output is in {}", log.display());
    for line in String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("seed=") || l.starts_with("seeded ")) {
        eprintln!("{tag}: {line}");
    }
    let manifest = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    Metastore { tag, reader, manifest }
}

/// One target a metastore is migrated to: the binary's `[target]` and Airflow's class + kwargs.
struct Target {
    name: String,
    toml: String,
    class: String,
    kwargs: J,
    patch: Option<&'static str>,
    env_file: Option<PathBuf>,
    files: Vec<PathBuf>,
    /// Environment of the binary for this target.
    env: Vec<(&'static str, String)>,
}

struct Servers {
    vault: vault_server::VaultServer,
    moto: moto_server::MotoServer,
    gcp: fake_gcp::FakeGcp,
    gcp_token_uri: String,
    /// HTTPS_PROXY, the CA bundle and a PATH with the fake `az`, for clients of the Azure fake.
    azure_env: Vec<(&'static str, String)>,
}

const AZURE_VAULT: &str = "https://fakevault.vault.azure.net/";

fn tv(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn targets(m: &Metastore, dir: &Path, s: &Servers) -> Vec<Target> {
    let tag = m.tag;
    let mut out = Vec::new();
    for (name, version, format) in [("vault-kv2", 2, "fields"), ("vault-kv2-uri", 2, "uri"), ("vault-kv1", 1, "fields")] {
        let mount = format!("{tag}-{name}");
        s.vault.mount_kv(&mount, version);
        out.push(Target {
            name: name.into(),
            toml: format!(
                "[target]\nkind = \"vault\"\nurl = {}\nmount_point = {}\nkv_engine_version = {version}\n\
                 connections_path = \"connections\"\nvariables_path = \"variables\"\nconnection_format = \"{format}\"\n\
                 auth = {{ type = \"token\", token = {} }}\n",
                tv(&s.vault.url()),
                tv(&mount),
                tv(vault_server::ROOT_TOKEN)
            ),
            class: "airflow.providers.hashicorp.secrets.vault.VaultBackend".into(),
            kwargs: json!({"url": s.vault.url(), "token": vault_server::ROOT_TOKEN, "auth_type": "token",
                "mount_point": mount, "kv_engine_version": version,
                "connections_path": "connections", "variables_path": "variables"}),
            patch: None,
            env_file: None,
            files: vec![],
            env: vec![],
        });
    }
    for (name, kind, class, cp, vp) in [
        ("aws-secrets-manager", "aws_secrets_manager", "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend",
            format!("{tag}/connections"), format!("{tag}/variables")),
        ("aws-ssm", "aws_ssm", "airflow.providers.amazon.aws.secrets.systems_manager.SystemsManagerParameterStoreBackend",
            format!("/{tag}/connections"), format!("/{tag}/variables")),
    ] {
        out.push(Target {
            name: name.into(),
            toml: format!(
                "[target]\nkind = \"{kind}\"\nconnections_prefix = {}\nvariables_prefix = {}\nregion_name = \"us-east-1\"\n\
                 endpoint_url = {}\naws_access_key_id = \"testing\"\naws_secret_access_key = \"testing\"\n",
                tv(&cp),
                tv(&vp),
                tv(&s.moto.endpoint())
            ),
            class: class.into(),
            kwargs: json!({"connections_prefix": cp, "variables_prefix": vp, "region_name": "us-east-1"}),
            patch: None,
            env_file: None,
            files: vec![],
            env: vec![],
        });
    }
    for ext in ["json", "yaml", "env"] {
        let d = dir.join(format!("{tag}-local-{ext}"));
        std::fs::create_dir_all(&d).unwrap();
        let (v, c) = (d.join(format!("variables.{ext}")), d.join(format!("connections.{ext}")));
        out.push(Target {
            name: format!("local-files-{ext}"),
            toml: format!(
                "[target]\nkind = \"local_files\"\nvariables_file_path = {}\nconnections_file_path = {}\n",
                tv(v.to_str().unwrap()),
                tv(c.to_str().unwrap())
            ),
            class: "airflow.secrets.local_filesystem.LocalFilesystemBackend".into(),
            kwargs: json!({"variables_file_path": v, "connections_file_path": c}),
            patch: None,
            env_file: None,
            files: vec![v, c],
            env: vec![],
        });
    }
    let env_path = dir.join(format!("{tag}-airflow.env"));
    out.push(Target {
        name: "dotenv".into(),
        toml: format!("[target]\nkind = \"env\"\nsource = \"file\"\npath = {}\n", tv(env_path.to_str().unwrap())),
        class: "airflow.secrets.environment_variables.EnvironmentVariablesBackend".into(),
        kwargs: json!({}),
        patch: None,
        env_file: Some(env_path),
        files: vec![],
        env: vec![],
    });
    let key = json!({"type": "authorized_user", "client_id": "tier", "client_secret": "tier", "refresh_token": "tier",
        "token_uri": s.gcp_token_uri});
    let (cp, vp) = (format!("{tag}-connections"), format!("{tag}-variables"));
    out.push(Target {
        name: "gcp-secret-manager".into(),
        toml: format!(
            "[target]\nkind = \"gcp_secret_manager\"\nproject_id = \"tier\"\nconnections_prefix = {}\nvariables_prefix = {}\n\
             endpoint = {}\ngcp_keyfile_dict = {}\n",
            tv(&cp),
            tv(&vp),
            tv(&s.gcp.endpoint),
            tv(&key.to_string())
        ),
        class: "airflow.providers.google.cloud.secrets.secret_manager.CloudSecretManagerBackend".into(),
        kwargs: json!({"project_id": "tier", "connections_prefix": cp, "variables_prefix": vp}),
        patch: Some("gcp"),
        env_file: None,
        files: vec![],
        env: vec![],
    });
    let (cp, vp) = (format!("{tag}-connections"), format!("{tag}-variables"));
    out.push(Target {
        name: "azure-key-vault".into(),
        toml: format!(
            "[target]\nkind = \"azure_key_vault\"\nvault_url = {}\nconnections_prefix = {}\nvariables_prefix = {}\n\
             credential = \"azure_cli\"\n",
            tv(AZURE_VAULT),
            tv(&cp),
            tv(&vp)
        ),
        class: "airflow.providers.microsoft.azure.secrets.key_vault.AzureKeyVaultBackend".into(),
        kwargs: json!({"vault_url": AZURE_VAULT, "connections_prefix": cp, "variables_prefix": vp}),
        patch: Some("azure"),
        env_file: None,
        files: vec![],
        env: s.azure_env.clone(),
    });
    out
}

fn run_bin(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .env_remove("AIRFLOW__CORE__FERNET_KEY")
        .env_remove("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// plan → apply --skip-errored → plan. Returns the first plan (JSON) and problems found.
fn migrate(m: &Metastore, t: &Target, dir: &Path, findings: &mut Vec<check::Finding>) -> J {
    let run_dir = dir.join(format!("run-{}-{}", m.tag, t.name));
    std::fs::create_dir_all(&run_dir).unwrap();
    let cfg = format!(
        "[source]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n\n[state]\npath = {}\n\
         snapshot_key = \"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\"\n\n[apply]\nmax_writes_per_second = 0\n\n{}",
        tv(m.url()),
        tv(m.fernet_key()),
        tv(run_dir.join("state.db").to_str().unwrap()),
        t.toml
    );
    std::fs::write(run_dir.join("config.toml"), cfg).unwrap();
    let target = format!("{}@{}", t.name, m.tag);
    let (code, out, err) = run_bin(&run_dir, &["migrate", "--plan", "--json"], &t.env);
    let Ok(plan) = serde_json::from_str::<J>(&out) else {
        panic!("{target}: the first plan is not JSON (exit {code}): {}", err.trim());
    };
    let (code, out, err) = run_bin(&run_dir, &["migrate", "--apply", "--skip-errored"], &t.env);
    if ![0, 10, 13, 14].contains(&code) {
        findings.push(check::Finding::new(&target, "-", "-", "apply", format!("exit {code}: {}", one_line(&out, &err))));
    }
    let (code, out, err) = run_bin(&run_dir, &["migrate", "--plan", "--json"], &t.env);
    match serde_json::from_str::<J>(&out) {
        Ok(again) => {
            for c in again["changes"].as_array().into_iter().flatten() {
                let action = c["action"].as_str().unwrap_or_default();
                if matches!(action, "create" | "update" | "delete") {
                    let id = c["id"]["id"].as_str().unwrap_or_default();
                    let fields = c["changed_fields"].to_string();
                    findings.push(check::Finding::new(&target, id, "-", "second plan", format!("{action} {fields}")));
                }
            }
            // What could not be migrated stays an error, with the same message.
            let errors = |p: &J| -> BTreeMap<String, String> {
                p["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["action"] == "error")
                    .map(|c| (c["id"]["id"].as_str().unwrap_or_default().to_string(), c["error"]["detail"].to_string()))
                    .collect()
            };
            let (first, second) = (errors(&plan), errors(&again));
            for (id, detail) in &first {
                if second.get(id) != Some(detail) {
                    let what = if second.contains_key(id) { "error message changed" } else { "no longer an error" };
                    findings.push(check::Finding::new(&target, id, "-", "second plan", what.into()));
                }
            }
            for id in second.keys().filter(|id| !first.contains_key(*id)) {
                findings.push(check::Finding::new(&target, id, "-", "second plan", "new error".into()));
            }
        }
        Err(_) => findings.push(check::Finding::new(&target, "-", "-", "second plan", format!("not JSON, exit {code}: {}", err.trim()))),
    }
    plan
}

fn one_line(out: &str, err: &str) -> String {
    let s = format!("{} {}", out.trim(), err.trim());
    s.lines().rev().take(2).collect::<Vec<_>>().join(" / ")
}

/// Run one reader over every job; returns its records.
fn read_back(venv: &Path, reader: &str, jobs: &J, env: &[(&str, String)], dir: &Path) -> Vec<J> {
    let jobs_path = dir.join(format!("jobs-{reader}.json"));
    let out_path = dir.join(format!("results-{reader}.jsonl"));
    std::fs::write(&jobs_path, jobs.to_string()).unwrap();
    let home = dir.join(format!("home-{reader}"));
    let args = ["--reader", reader, "--jobs", jobs_path.to_str().unwrap(), "--out", out_path.to_str().unwrap()];
    let o = python(venv, "readback.py", &args, env, &home);
    let log = dir.join(format!("readback-{reader}.stderr"));
    std::fs::write(&log, &o.stderr).unwrap();
    // Airflow 3 logs to stdout: keep it in a file; echo only the harness's own `tier:` lines
    // (counts and timings).
    std::fs::write(dir.join(format!("readback-{reader}.stdout")), &o.stdout).unwrap();
    for line in String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("tier: ")) {
        eprintln!("{line}");
    }
    // stderr may quote values (Airflow's own tracebacks): it stays in the file, never in the output.
    assert!(o.status.success(), "the {reader} read-back harness failed (exit {:?}); its stderr is in {}", o.status.code(), log.display());
    std::fs::read_to_string(&out_path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A token endpoint for the binary's `authorized_user` GCP credential (the fake does not check it).
async fn gcp_token_server() -> String {
    let app = axum::Router::new().fallback(|| async {
        let body = json!({"access_token": "tier-token", "expires_in": 3600, "token_type": "Bearer"});
        ([("content-type", "application/json")], body.to_string())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_airflow_reads_back_what_the_plan_promised() {
    let Some((af2, af3)) = venvs() else { return };
    let seed: u64 = std::env::var("AIRFLOW_TIER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::random::<u32>() as u64);
    eprintln!("real_airflow: seed {seed} (replay with AIRFLOW_TIER_SEED={seed})");
    // Kept when the test fails (metastores, configs, harness logs); removed when it passes.
    let kept = tempfile::Builder::new().prefix("real-airflow-").tempdir().unwrap().keep();
    let dir = kept.as_path();
    let started = std::time::Instant::now();

    let m3 = generate(dir, "af3", af3.clone(), "airflow3", seed, &["--variables", "150", "--connections", "200"]);
    let m2 = generate(dir, "af2", af2.clone(), "airflow2", seed, &["--variables", "50", "--connections", "80", "--legacy"]);

    // Azure: the fake behind an HTTPS CONNECT proxy with a test CA made by the venv's cryptography.
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let o = python(&af3, "make_ca.py", &[tls.to_str().unwrap(), "fakevault.vault.azure.net"], &[], &dir.join("home-ca"));
    assert!(o.status.success(), "make_ca.py failed: {}", String::from_utf8_lossy(&o.stderr));
    let proxy = azure_https::start(fake_azure::FakeAzure::new(), &tls.join("server.pem"), &tls.join("server.key")).await;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    azure_https::fake_az(&bin);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let ca = tls.join("ca.pem").display().to_string();
    let azure_env = vec![("HTTPS_PROXY", proxy.clone()), ("SSL_CERT_FILE", ca.clone()), ("PATH", path)];
    let servers = Servers {
        azure_env,
        vault: vault_server::VaultServer::start(),
        moto: moto_server::MotoServer::start(),
        gcp: fake_gcp::FakeGcp::start().await,
        gcp_token_uri: gcp_token_server().await,
    };

    let mut findings = Vec::new();
    let mut plans = BTreeMap::new();
    let mut jobs = Vec::new();
    for m in [&m3, &m2] {
        for t in targets(m, dir, &servers) {
            let plan = migrate(m, &t, dir, &mut findings);
            let name = format!("{}@{}", t.name, m.tag);
            jobs.push(json!({"name": name, "class": t.class, "kwargs": t.kwargs, "patch": t.patch,
                "gcp_endpoint": servers.gcp.endpoint, "env_file": t.env_file, "files": t.files,
                "variables": m.ids("variable"), "connections": m.ids("connection")}));
            plans.insert(name, (m.tag, plan));
        }
    }
    eprintln!("real_airflow: migrated in {:?}", started.elapsed());

    let aws = |v: &mut Vec<(&str, String)>| {
        v.push(("HTTPS_PROXY", proxy.clone()));
        v.push(("REQUESTS_CA_BUNDLE", ca.clone()));
        v.push(("AWS_ENDPOINT_URL", servers.moto.endpoint()));
        v.push(("AWS_ACCESS_KEY_ID", "testing".into()));
        v.push(("AWS_SECRET_ACCESS_KEY", "testing".into()));
        v.push(("AWS_DEFAULT_REGION", "us-east-1".into()));
    };
    let source = |m: &Metastore| json!({"variables": m.ids("variable"), "connections": m.ids("connection")});
    let env_for = |m: Option<&Metastore>, server: bool| {
        let mut v: Vec<(&str, String)> = Vec::new();
        aws(&mut v);
        if let Some(m) = m {
            v.push(("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", m.url().to_string()));
            v.push(("AIRFLOW__CORE__FERNET_KEY", m.fernet_key().to_string()));
        }
        if server {
            v.push(("_AIRFLOW_PROCESS_CONTEXT", "server".into()));
        }
        v
    };
    let (d2, d3, dsdk) = (dir.join("r2"), dir.join("r3"), dir.join("rsdk"));
    for d in [&d2, &d3, &dsdk] {
        std::fs::create_dir_all(d).unwrap();
    }
    let jobs2 = json!({"source": source(&m2), "jobs": jobs});
    let jobs3 = json!({"source": source(&m3), "jobs": jobs});
    let jobs_sdk = json!({"source": null, "jobs": jobs});
    let (env2, env3, env_sdk) = (env_for(Some(&m2), false), env_for(Some(&m3), true), env_for(None, false));
    let (r2, r3, rsdk) = std::thread::scope(|s| {
        let a = s.spawn(|| read_back(&af2, "airflow2", &jobs2, &env2, &d2));
        let b = s.spawn(|| read_back(&af3, "airflow3", &jobs3, &env3, &d3));
        let c = s.spawn(|| read_back(&af3, "task-sdk", &jobs_sdk, &env_sdk, &dsdk));
        (a.join().unwrap(), b.join().unwrap(), c.join().unwrap())
    });
    eprintln!("real_airflow: read back in {:?}", started.elapsed());

    let records: Vec<J> = r2.into_iter().chain(r3).chain(rsdk).collect();
    let sources = BTreeMap::from([("af3", m3.reader), ("af2", m2.reader)]);
    check::compare(&records, &plans, &sources, &mut findings);
    eprintln!("real_airflow: {} items per reader, done in {:?}", m3.ids("variable").len() + m3.ids("connection").len()
        + m2.ids("variable").len() + m2.ids("connection").len(), started.elapsed());
    if !findings.is_empty() {
        let table = check::table(&findings);
        check::assert_no_secrets(&table, &records);
        panic!("real_airflow (seed {seed}; files kept in {}):\n{table}", kept.display());
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(dir);
}

/// The comparison rules themselves (no venvs needed): None and '' alike for blankable fields, port
/// 0 vs None and conn_type normalisation are differences, extra compared as parsed JSON, a loss
/// covers only the readers it names (all when it names none), an error covers everything.
#[test]
fn comparison_rules() {
    let conn = |reader: &str, job: &str, c: J| json!({"job": job, "reader": reader, "kind": "connection", "id": "c", "found": true, "conn": c});
    let src = json!({"conn_type": "postgresql", "host": "", "login": null, "password": "", "schema": null,
        "port": 0, "extra": "{\"a\": 1, \"b\": [1, 2]}", "description": null});
    let back = json!({"conn_type": "postgres", "host": null, "login": "", "password": null, "schema": "",
        "port": null, "extra": "{\"b\": [1, 2], \"a\": 1}", "description": ""});
    let plan = |losses: J| json!({"changes": [{"id": {"kind": "connection", "id": "c"}, "action": "create", "losses": losses}]});
    let run = |losses: J, reader: &str| {
        let records = vec![conn("airflow3", "source", src.clone()), conn(reader, "t@af3", back.clone())];
        let plans = BTreeMap::from([("t@af3".to_string(), ("af3", plan(losses)))]);
        let mut f = Vec::new();
        check::compare(&records, &plans, &BTreeMap::from([("af3", "airflow3")]), &mut f);
        let mut fields: Vec<String> = f.iter().map(|f| f.field.clone()).collect();
        fields.sort();
        fields
    };
    assert_eq!(run(json!([]), "airflow3"), ["conn_type", "port"]);
    let losses = json!([{"field": "port", "what": "-", "readers": ["airflow3"]}, {"field": "conn_type", "what": "-"}]);
    assert!(run(losses.clone(), "airflow3").is_empty());
    assert_eq!(run(losses, "task-sdk"), ["port"], "a loss names its readers");
    let errored = json!({"changes": [{"id": {"kind": "connection", "id": "c"}, "action": "error"}]});
    let records = vec![conn("airflow3", "source", src.clone()), conn("airflow2", "t@af3", back.clone())];
    let mut f = Vec::new();
    check::compare(&records, &BTreeMap::from([("t@af3".to_string(), ("af3", errored))]), &BTreeMap::from([("af3", "airflow3")]), &mut f);
    assert_eq!(f.len(), 1, "an errored item must not be in the target");
    assert!(f[0].got.contains("errored"));
    let mut other = back.clone();
    other["extra"] = json!("this is not json");
    let records = vec![conn("airflow3", "source", src.clone()), conn("airflow3", "t@af3", other)];
    let mut f2 = Vec::new();
    let plans = BTreeMap::from([("t@af3".to_string(), ("af3", plan(json!([]))))]);
    check::compare(&records, &plans, &BTreeMap::from([("af3", "airflow3")]), &mut f2);
    assert!(f2.iter().any(|f| f.field == "extra"), "a raw extra differs from the parsed object");
    let table = check::table(&f);
    assert!(table.contains("t@af3 | c | airflow2 | *"), "{table}");
}
