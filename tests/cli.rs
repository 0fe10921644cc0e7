//! Drive the real binary as a user does: the demo, each exit code of the table in README.md, and
//! leak canaries on every path (no seeded secret ever reaches stdout or stderr).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airflow_secrets_sync::demo;

const BIN: &str = env!("CARGO_BIN_EXE_airflow-secrets-sync");

/// Every value the demo seeds: none may ever be printed.
const DEMO_SECRETS: &[&str] = &[
    "production",
    "xoxb-demo-not-a-real-token",
    "batch_size",
    "gr\u{fc}\u{df}e",
    "written before a fernet key was set",
    "p@ss:w/rd#?%&= +",
    "p%40ss",
    "sslmode",
    "api-secret",
    "Bearer demo",
    "eu-west-1",
];

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("AIRFLOW__CORE__FERNET_KEY")
        .env_remove("AIRFLOW__CORE__FERNET_KEY_CMD")
        .env_remove("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        .env_remove("AIRFLOW_SECRETS_SYNC_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run the binary")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn assert_no_secrets(o: &Output) {
    let all = text(o);
    for s in DEMO_SECRETS {
        assert!(!all.contains(s), "a seeded secret ({s:?}) was printed:\n{all}");
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// A seeded demo metastore plus a config pointing at local JSON files; returns (dir, key).
async fn seeded() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = demo::seed_metastore(&dir.path().join("airflow.db")).await.unwrap();
    let cfg = demo::demo_config(dir.path(), &key);
    std::fs::write(dir.path().join("config.toml"), &cfg).unwrap();
    (dir, key.expose_plaintext().to_string())
}

fn set_key(dir: &Path, key: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    let line = cfg.lines().find(|l| l.starts_with("fernet_key")).unwrap().to_string();
    std::fs::write(&path, cfg.replace(&line, &format!("fernet_key = {}", toml::Value::String(key.into())))).unwrap();
    path
}

fn sqlite(dir: &Path, sql: &str) {
    let status = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()"])
        .arg(dir.join("airflow.db"))
        .arg(sql)
        .status()
        .expect("python3");
    assert!(status.success());
}

#[test]
fn the_demo_runs_end_to_end_without_printing_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["demo", "--dir", dir.path().join("d").to_str().unwrap()], dir.path());
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("9 to create"), "{out}");
    assert!(out.contains("No changes. The target is up to date."), "{out}");
    assert_no_secrets(&o);
    let vars: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("d/variables.json")).unwrap()).unwrap();
    assert_eq!(vars["slack_webhook_token"], "xoxb-demo-not-a-real-token");
}

#[tokio::test]
async fn plan_apply_plan_exit_codes() {
    let (dir, _) = seeded().await;
    let o = run(&["migrate", "--plan"], dir.path());
    assert_eq!(code(&o), 2, "changes pending: {}", text(&o));
    assert_no_secrets(&o);
    let o = run(&["migrate", "--plan", "--json"], dir.path());
    assert_eq!(code(&o), 2);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    assert_eq!(plan["summary"]["create"], 9);
    assert_no_secrets(&o);
    let o = run(&["migrate", "--apply"], dir.path());
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_no_secrets(&o);
    let o = run(&["migrate", "--plan"], dir.path());
    assert_eq!(code(&o), 0, "no changes: {}", text(&o));
    let o = run(&["migrate", "--plan", "--only", "variables", "--include", "slack*"], dir.path());
    assert_eq!(code(&o), 0);
}

#[tokio::test]
async fn usage_and_configuration_errors_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["migrate", "--plan"], dir.path());
    assert_eq!(code(&o), 3, "missing config: {}", text(&o));
    assert!(text(&o).contains("config.toml"));
    let o = run(&["migrate"], dir.path());
    assert_eq!(code(&o), 3, "neither --plan nor --apply: {}", text(&o));
    std::fs::write(dir.path().join("config.toml"), "[source]\nkind = \"nope\"\n[target]\nkind = \"nope\"\n").unwrap();
    let o = run(&["migrate", "--plan"], dir.path());
    assert_eq!(code(&o), 3, "{}", text(&o));
    let o = run(&["--version"], dir.path());
    assert_eq!(code(&o), 0);
}

#[tokio::test]
async fn a_malformed_fernet_key_exits_4() {
    let (dir, key) = seeded().await;
    set_key(dir.path(), &format!("{key},"));
    let o = run(&["migrate", "--plan"], dir.path());
    assert_eq!(code(&o), 4, "{}", text(&o));
    assert!(!text(&o).contains(&key), "the key was printed");
    assert_eq!(text(&o).lines().filter(|l| l.starts_with("error:")).count(), 1);
}

#[tokio::test]
async fn a_wrong_fernet_key_exits_5_naming_the_items() {
    let (dir, _) = seeded().await;
    let other = demo::generate_fernet_key();
    set_key(dir.path(), other.expose_plaintext());
    let o = run(&["migrate", "--plan"], dir.path());
    assert_eq!(code(&o), 5, "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("slack_webhook_token"), "the error names the item: {out}");
    assert!(!out.contains(other.expose_plaintext()));
    assert_no_secrets(&o);
    // Nothing is written when items cannot be read.
    let o = run(&["migrate", "--apply"], dir.path());
    assert_eq!(code(&o), 5);
    assert!(!dir.path().join("variables.json").exists());
}

#[tokio::test]
async fn a_corrupt_token_exits_6() {
    let (dir, _) = seeded().await;
    sqlite(dir.path(), "UPDATE variable SET val = 'gAAAAAB-not-a-token' WHERE \"key\" = 'environment';");
    let o = run(&["migrate", "--plan"], dir.path());
    assert_eq!(code(&o), 6, "{}", text(&o));
    assert!(text(&o).contains("environment"));
    assert_no_secrets(&o);
    // The rest can still be moved, deliberately.
    let o = run(&["migrate", "--apply", "--skip-errored"], dir.path());
    assert_eq!(code(&o), 6, "{}", text(&o));
    assert!(dir.path().join("variables.json").exists());
}

#[tokio::test]
async fn a_metastore_without_airflow_tables_exits_7() {
    let (dir, _) = seeded().await;
    sqlite(dir.path(), "DROP TABLE variable; DROP TABLE connection;");
    let o = run(&["migrate", "--plan"], dir.path());
    assert_eq!(code(&o), 7, "{}", text(&o));
    assert!(text(&o).contains("airflow db migrate"), "{}", text(&o));
}

#[tokio::test]
async fn an_unreachable_database_exits_8() {
    let (dir, key) = seeded().await;
    let cfg = format!(
        "[source]\nkind = \"metastore\"\nsql_alchemy_conn = \"postgresql+psycopg2://airflow:hunter2-canary@127.0.0.1:1/airflow\"\nfernet_key = {}\n\n[target]\nkind = \"local_files\"\nvariables_file_path = \"v.json\"\n",
        toml::Value::String(key)
    );
    std::fs::write(dir.path().join("config.toml"), cfg).unwrap();
    let o = run(&["migrate", "--plan"], dir.path());
    assert_eq!(code(&o), 8, "{}", text(&o));
    assert!(!text(&o).contains("hunter2-canary"), "the DB password was printed: {}", text(&o));
    assert!(text(&o).contains("127.0.0.1:1"));
}

#[tokio::test]
async fn values_a_target_cannot_hold_exit_10() {
    let (dir, key) = seeded().await;
    sqlite(dir.path(), "INSERT INTO variable (id, \"key\", val, is_encrypted) VALUES (99, 'empty_var', '', 0);");
    let cfg = format!(
        "[source]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n\n[target]\nkind = \"local_files\"\nvariables_file_path = \"vars.env\"\n",
        toml::Value::String(format!("sqlite:///{}", dir.path().join("airflow.db").display())),
        toml::Value::String(key)
    );
    std::fs::write(dir.path().join("config.toml"), cfg).unwrap();
    let o = run(&["migrate", "--plan", "--only", "variables"], dir.path());
    assert_eq!(code(&o), 10, "an empty variable cannot live in a .env file: {}", text(&o));
    assert!(text(&o).contains("empty_var"));
    assert_no_secrets(&o);
}

/// The incident runbook in one test: the metastore is lost; its secrets live in the target; a
/// fresh metastore (new Fernet key) is restored from it and reads back every item.
#[tokio::test]
async fn restore_a_fresh_metastore_from_the_backend() {
    let (dir, _) = seeded().await;
    assert_eq!(code(&run(&["migrate", "--apply"], dir.path())), 0);
    demo::create_empty_metastore(&dir.path().join("fresh.db")).await.unwrap().close().await;
    let new_key = demo::generate_fernet_key();
    let mut cfg = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    cfg.push_str(&format!(
        "\n[stores.fresh]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n",
        toml::Value::String(format!("sqlite:///{}", dir.path().join("fresh.db").display())),
        toml::Value::String(new_key.expose_plaintext().into())
    ));
    std::fs::write(dir.path().join("config.toml"), cfg).unwrap();

    let o = run(&["restore", "--from", "target", "--to", "fresh", "--plan"], dir.path());
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert_no_secrets(&o);
    let o = run(&["restore", "--from", "target", "--to", "fresh", "--apply"], dir.path());
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_no_secrets(&o);
    let o = run(&["restore", "--from", "target", "--to", "fresh", "--plan"], dir.path());
    assert_eq!(code(&o), 0, "restored: {}", text(&o));
    // The restored metastore matches the original source, encrypted with the new key.
    let o = run(&["restore", "--from", "source", "--to", "fresh", "--plan", "--json"], dir.path());
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["summary"]["create"], 0, "{plan}");
    let o = run(&["restore", "--from", "nope", "--to", "fresh", "--plan"], dir.path());
    assert_eq!(code(&o), 3);
}
