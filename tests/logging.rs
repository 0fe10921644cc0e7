//! Logs in a careless environment: `RUST_LOG=trace` (plus the AWS signer's own body-logging switch,
//! `LOG_SIGNABLE_BODY=true`) cannot raise the HTTP/SDK crates above `warn`, so a real migrate to
//! bao dev and to moto prints none of the secrets — the values, the Vault token, the AWS secret
//! key — and no dependency's debug/trace line at all. And colour only on a terminal, honouring
//! `NO_COLOR`.

mod support;
#[path = "support/moto_server.rs"]
mod moto_server;
#[path = "support/vault_server.rs"]
mod vault_server;

use std::path::Path;
use std::process::{Command, Output};

use airflow_secrets_sync::demo;
use airflow_secrets_sync::secret::SecretValue;

/// Values `demo::seed_metastore` writes (plaintext, before encryption).
const VALUES: &[&str] = &["xoxb-demo-not-a-real-token", "p@ss:w/rd#?%&= +", "api-secret", "Bearer demo"];
const AWS_SECRET_KEY: &str = "aws-secret-key-canary-7c1d9e";
const AWS_SESSION_TOKEN: &str = "aws-session-token-canary-2b8f4a";
const SNAPSHOT_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn bin(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airflow-secrets-sync"));
    c.args(args)
        .current_dir(dir)
        .env_remove("AIRFLOW__CORE__FERNET_KEY")
        .env_remove("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        .env_remove("NO_COLOR")
        .env_remove("VAULT_TOKEN");
    c
}

/// A demo metastore as `[source]`, `target` as `[target]`, state beside them.
async fn setup(dir: &Path, target: &str) -> SecretValue {
    let db = dir.join("airflow.db");
    let key = demo::seed_metastore(&db).await.unwrap();
    let text = format!(
        "[source]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n\n{target}\n\
         [apply]\nmax_writes_per_second = 0\n\n[state]\npath = {}\nsnapshot_key = \"{SNAPSHOT_KEY}\"\n",
        toml::Value::String(format!("sqlite:///{}", db.display())),
        toml::Value::String(key.expose_plaintext().to_string()),
        toml::Value::String(dir.join("state.db").display().to_string()),
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
    key
}

/// Run `args` with every logging switch turned up; the combined output.
fn careless(dir: &Path, args: &[&str]) -> (Output, String) {
    let o = bin(dir, args).env("RUST_LOG", "trace").env("LOG_SIGNABLE_BODY", "true").output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o, all)
}

/// No canary anywhere; every JSON log line from another crate is a warning or an error; and
/// `RUST_LOG=trace` did reach this crate (the check is not vacuous).
fn assert_safe_logs(what: &str, stderr: &str, all: &str, canaries: &[&str]) {
    for c in canaries {
        assert!(!all.contains(c), "{what}: the output contains the secret {c:?}");
        // A `Debug` of a byte buffer (the AWS signer's body) prints `[120, 111, …]`.
        let bytes = c.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
        assert!(!all.contains(&bytes), "{what}: the output contains the bytes of the secret {c:?}");
    }
    let (mut ours, mut theirs) = (0, Vec::new());
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"));
        let target = v["target"].as_str().unwrap_or_default();
        let level = v["level"].as_str().unwrap_or_default();
        if target == "airflow_secrets_sync" || target.starts_with("airflow_secrets_sync::") {
            ours += 1;
        } else if !matches!(level, "WARN" | "ERROR") {
            theirs.push(format!("{level} {target}"));
        }
    }
    theirs.dedup();
    assert!(theirs.is_empty(), "{what}: RUST_LOG=trace raised dependencies above warn: {} lines, e.g. {:?}", theirs.len(), &theirs[..theirs.len().min(10)]);
    assert!(ours > 0, "{what}: RUST_LOG=trace produced no log line of this crate:\n{stderr}");
    // The cap drops other crates' events, never ours: both reads are always logged.
    for message in ["source read", "target read"] {
        assert!(stderr.contains(&format!("\"message\":\"{message}\"")), "{what}: the {message:?} event was lost:\n{stderr}");
    }
}

/// apply (JSON logs), then plan (JSON logs, reading every value back): both clean.
fn migrate_carelessly(dir: &Path, canaries: &[&str]) {
    let (o, all) = careless(dir, &["--log-json", "migrate", "--apply"]);
    assert!(o.status.success(), "apply: {all}");
    assert_safe_logs("migrate --apply", &String::from_utf8_lossy(&o.stderr), &all, canaries);
    let (o, all) = careless(dir, &["--log-json", "migrate", "--plan"]);
    assert_eq!(o.status.code(), Some(0), "a second plan has no changes: {all}");
    assert_safe_logs("migrate --plan", &String::from_utf8_lossy(&o.stderr), &all, canaries);
    let (o, all) = careless(dir, &["-vv", "migrate", "--plan"]);
    assert_eq!(o.status.code(), Some(0), "{all}");
    for c in canaries {
        assert!(!all.contains(c), "text logs: the output contains the secret {c:?}");
    }
}

#[tokio::test]
async fn rust_log_trace_leaks_nothing_migrating_to_bao() {
    let vault = vault_server::VaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let target = format!(
        "[target]\nkind = \"vault\"\nurl = \"{}\"\nauth = {{ type = \"token\", token = \"{}\" }}\n",
        vault.url(),
        vault_server::ROOT_TOKEN
    );
    let key = setup(dir.path(), &target).await;
    let mut canaries = VALUES.to_vec();
    canaries.extend([vault_server::ROOT_TOKEN, key.expose_plaintext(), SNAPSHOT_KEY]);
    migrate_carelessly(dir.path(), &canaries);
}

#[tokio::test]
async fn rust_log_trace_leaks_nothing_migrating_to_moto() {
    let moto = moto_server::MotoServer::start();
    for kind in ["aws_secrets_manager", "aws_ssm"] {
        let dir = tempfile::tempdir().unwrap();
        let target = format!(
            "[target]\nkind = \"{kind}\"\nregion_name = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             aws_access_key_id = \"testing\"\naws_secret_access_key = \"{AWS_SECRET_KEY}\"\naws_session_token = \"{AWS_SESSION_TOKEN}\"\n",
            moto.endpoint()
        );
        let key = setup(dir.path(), &target).await;
        let mut canaries = VALUES.to_vec();
        canaries.extend([AWS_SECRET_KEY, AWS_SESSION_TOKEN, key.expose_plaintext(), SNAPSHOT_KEY]);
        migrate_carelessly(dir.path(), &canaries);
    }
}

/// A demo directory whose plan logs at least one line at `-v`.
async fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = demo::seed_metastore(&dir.path().join("airflow.db")).await.unwrap();
    std::fs::write(dir.path().join("config.toml"), demo::demo_config(dir.path(), &key)).unwrap();
    dir
}

#[tokio::test]
async fn logs_to_a_pipe_or_file_carry_no_ansi_escapes() {
    let dir = demo_dir().await;
    let o = bin(dir.path(), &["-vv", "migrate", "--plan"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.lines().count() > 2, "-vv logs something: {err}");
    assert!(!err.contains('\u{1b}'), "stderr is a pipe, yet the logs carry ANSI escapes: {err:?}");
}

/// On a terminal (a pty from util-linux `script`) the logs are coloured, unless `NO_COLOR` is set.
#[tokio::test]
async fn a_terminal_gets_colour_unless_no_color_is_set() {
    let dir = demo_dir().await;
    let exe = env!("CARGO_BIN_EXE_airflow-secrets-sync");
    let on_tty = |no_color: Option<&str>| {
        let mut c = Command::new("script");
        // `script` runs the command on a new pty and copies what it printed to its own stdout.
        c.args(["-qec", &format!("'{exe}' -vv migrate --plan"), "/dev/null"])
            .current_dir(dir.path())
            .env_remove("NO_COLOR")
            .env_remove("AIRFLOW__CORE__FERNET_KEY")
            .env_remove("RUST_LOG");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let o = c.output().expect("`script` (util-linux) runs the binary on a pty");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let coloured = on_tty(None);
    assert!(coloured.lines().count() > 2, "{coloured}");
    assert!(coloured.contains("\u{1b}["), "a terminal gets colour: {coloured:?}");
    let plain = on_tty(Some("1"));
    assert!(plain.lines().count() > 2, "{plain}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR=1 turns colour off: {plain:?}");
}

/// The cap drops other crates' events and never one of ours. A per-layer filter did: sqlx's
/// `enabled!` checks (refused by the cap) left a thread-local mark that swallowed this crate's next
/// event on that thread, so with a PostgreSQL state database `source read` went missing.
#[tokio::test]
async fn capping_dependencies_never_loses_an_event_of_ours() {
    let db = support::fresh_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let key = demo::seed_metastore(&dir.path().join("airflow.db")).await.unwrap();
    let config = demo::demo_config(dir.path(), &key);
    let state_path = format!("path = {}", toml::Value::String(dir.path().join("state.db").display().to_string()));
    assert!(config.contains(&state_path), "{config}");
    let config = config.replace(&state_path, &format!("url = {}", toml::Value::String(db.url.clone())));
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    for args in [&["-v", "--log-json", "migrate", "--apply"][..], &["-v", "--log-json", "migrate", "--plan"][..]] {
        let o = bin(dir.path(), args).env_remove("RUST_LOG").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code().is_some_and(|c| c == 0 || c == 2), "{args:?}: {err}");
        for message in ["source read", "target read"] {
            assert!(err.contains(&format!("\"message\":\"{message}\"")), "{args:?}: the {message:?} event was lost:\n{err}");
        }
    }
}
