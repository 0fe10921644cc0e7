//! Kill the real binary (abort, like kill -9) at random points of a multi-thousand-item apply to a
//! real Vault (`bao server -dev`), resume until it completes, check every item; then roll the
//! run back and check every item is gone. No item is lost or left half-written.

mod support;
#[path = "support/vault_server.rs"]
mod vault_server;

use std::path::Path;
use std::process::{Command, Output};

use airflow_secrets_sync::config::Config;
use airflow_secrets_sync::demo;
use airflow_secrets_sync::model::{Kind, SecretValue};
use airflow_secrets_sync::store::{registry, scan_all};
use rand::{Rng, SeedableRng};

const ITEMS: usize = 2000;

async fn seed(db: &Path) -> SecretValue {
    support::seed_variables(db, ITEMS, "crash_var_", 200).await
}

/// The random kill points come from a seed that is printed, so a failure can be replayed:
/// `AIRFLOW_SECRETS_SYNC_CRASH_SEED=<seed> cargo test --test crash`.
fn seeded_rng() -> rand::rngs::StdRng {
    let seed = match std::env::var(SEED_ENV) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("{SEED_ENV}={s:?} is not a u64")),
        Err(_) => rand::rng().random(),
    };
    eprintln!("crash test seed: {seed} (replay with {SEED_ENV}={seed})");
    rand::rngs::StdRng::seed_from_u64(seed)
}

const SEED_ENV: &str = "AIRFLOW_SECRETS_SYNC_CRASH_SEED";

/// Kill points inside the tool (abort, like kill -9), named by this variable.
const KILL_AT_ENV: &str = "AIRFLOW_SECRETS_SYNC_FAULT_KILL_AT";

fn run(dir: &Path, args: &[&str], abort_after: Option<u64>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airflow-secrets-sync"));
    c.args(args).current_dir(dir).env_remove("AIRFLOW__CORE__FERNET_KEY");
    if let Some(n) = abort_after {
        c.env("AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER", n.to_string());
    }
    c.output().unwrap()
}

/// The last lines of an output (a rollback table of thousands of rows is too long to print).
fn tail(o: &Output) -> String {
    let t = text(o);
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A metastore source, the Vault dev server as the target, a SQLite state database.
fn vault_config(d: &Path, key: &SecretValue, vault: &vault_server::VaultServer) -> String {
    format!(
        "[source]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n\n\
         [target]\nkind = \"vault\"\nurl = \"{}\"\nauth = {{ type = \"token\", token = \"{}\" }}\n\n\
         [state]\npath = \"state.db\"\nsnapshot_key = \"{}\"\n",
        toml::Value::String(format!("sqlite:///{}", d.join("airflow.db").display())),
        toml::Value::String(key.expose_plaintext().into()),
        vault.url(),
        vault_server::ROOT_TOKEN,
        demo::generate_fernet_key().expose_plaintext(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_applies_resume_then_roll_back_with_every_item_accounted_for() {
    let vault = vault_server::VaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = seed(&d.join("airflow.db")).await;
    let cfg = vault_config(d, &key, &vault);
    std::fs::write(d.join("config.toml"), &cfg).unwrap();

    // Two crashes at random points, then a clean finish: always the same run, resumed.
    let mut rng = seeded_rng();
    let mut run_ids = Vec::new();
    for abort in [Some(rng.random_range(1..ITEMS as u64 / 2)), Some(rng.random_range(1..ITEMS as u64 / 2)), None] {
        let o = run(d, &["migrate", "--apply"], abort);
        let t = text(&o);
        match abort {
            Some(n) => assert!(!o.status.success(), "abort after {n} must kill the process: {t}"),
            None => assert!(o.status.success(), "{t}"),
        }
        if let Some(line) = t.lines().find(|l| l.starts_with("Run ")) {
            run_ids.push(line.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string());
        }
    }
    run_ids.dedup();
    assert_eq!(run_ids.len(), 1, "every attempt continued the same run: {run_ids:?}");

    let config = Config::from_toml(&cfg).unwrap();
    let source = registry::open(&config.source).await.unwrap();
    let target = registry::open(&config.target).await.unwrap();
    let src = scan_all(source.as_ref(), &[Kind::Variable]).await.unwrap();
    let tgt = scan_all(target.as_ref(), &[Kind::Variable]).await.unwrap();
    assert_eq!(tgt.error_count(), 0, "half-written items");
    assert_eq!(tgt.len(), ITEMS, "items lost");
    for e in src.entries() {
        assert_eq!(tgt.get(&e.id).map(|t| &t.value), Some(&e.value), "{} differs", e.id);
    }
    let o = run(d, &["migrate", "--plan"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Rolling the run back (interrupted once too) restores the state before it: nothing.
    let o = run(d, &["rollback", &run_ids[0], "--apply"], Some(rng.random_range(1..ITEMS as u64 / 2)));
    assert!(!o.status.success(), "{}", tail(&o));
    let o = run(d, &["rollback", &run_ids[0], "--apply"], None);
    assert!(o.status.success(), "{}", tail(&o));
    let tgt = scan_all(target.as_ref(), &[Kind::Variable]).await.unwrap();
    assert_eq!(tgt.len() + tgt.error_count(), 0, "rollback left {} items", tgt.len());
}

/// A run cut off early planned far more than it attempted. Rolling it back undoes what it may
/// have written and leaves the rest alone: an item someone else created after the crash (the run
/// had planned to create it, but never got to it) survives the rollback.
#[tokio::test(flavor = "multi_thread")]
async fn rolling_back_a_cut_off_run_leaves_what_it_never_attempted() {
    use airflow_secrets_sync::state::{JournalState, StateDb};
    let vault = vault_server::VaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = support::seed_variables(&d.join("airflow.db"), 60, "cut_", 20).await;
    let cfg = vault_config(d, &key, &vault);
    std::fs::write(d.join("config.toml"), &cfg).unwrap();

    let o = run(d, &["migrate", "--apply"], Some(3));
    assert!(!o.status.success(), "the fault must kill the process: {}", text(&o));
    let t = text(&o);
    let run_id = t.lines().find(|l| l.starts_with("Run ")).unwrap().split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string();

    let state = StateDb::open_sqlite(&d.join("state.db")).await.unwrap();
    let journal = state.journal(&run_id).await.unwrap();
    let pending: Vec<_> = journal.iter().filter(|r| r.state == JournalState::Pending).collect();
    let attempted: Vec<_> = journal.iter().filter(|r| r.state != JournalState::Pending).collect();
    assert!(attempted.len() >= 3 && !pending.is_empty(), "{journal:?}");
    // Someone else creates an item the run never got to.
    let foreign = &pending[0].id.id;
    vault.root_ok("POST", &format!("/v1/secret/data/variables/{foreign}"), Some(serde_json::json!({"data": {"value": "made by hand"}})));

    let plan = run(d, &["rollback", &run_id, "--plan"], None);
    assert!(text(&plan).contains(&format!("left alone: {} planned items the run never attempted", pending.len())), "{}", text(&plan));
    assert!(!text(&plan).contains(foreign.as_str()), "the rollback plan must not touch {foreign}: {}", text(&plan));
    let o = run(d, &["rollback", &run_id, "--apply"], None);
    assert!(o.status.success(), "{}", text(&o));

    let config = Config::from_toml(&cfg).unwrap();
    let target = registry::open(&config.target).await.unwrap();
    let tgt = scan_all(target.as_ref(), &[Kind::Variable]).await.unwrap();
    let left: Vec<&str> = tgt.ids().map(|id| id.id.as_str()).collect();
    assert_eq!(left, [foreign.as_str()], "only the hand-made item is left; everything the run wrote is gone");
    let (_, body) = vault.root("GET", &format!("/v1/secret/data/variables/{foreign}"), None);
    assert_eq!(body["data"]["data"]["value"], "made by hand");
}

// ---- kill points inside the tool: the state database, a two-file flush, a metastore transaction

fn run_killed_at(dir: &Path, args: &[&str], point: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airflow-secrets-sync"));
    c.args(args).current_dir(dir).env_remove("AIRFLOW__CORE__FERNET_KEY").env_remove("AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY");
    if let Some(p) = point {
        c.env(KILL_AT_ENV, p);
    }
    c.output().unwrap()
}

fn run_id_of(o: &Output) -> Option<String> {
    text(o).lines().find(|l| l.starts_with("Run ")).map(|l| l.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string())
}

/// The demo: an Airflow 3 SQLite metastore to Airflow's local-filesystem JSON files.
async fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = demo::seed_metastore(&dir.path().join("airflow.db")).await.unwrap();
    std::fs::write(dir.path().join("config.toml"), demo::demo_config(dir.path(), &key)).unwrap();
    dir
}

fn killed(o: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal() == Some(6)
}

#[tokio::test]
async fn killed_inside_begin_run_records_no_run_and_writes_nothing() {
    use airflow_secrets_sync::state::StateDb;
    let dir = demo_dir().await;
    let d = dir.path();
    let o = run_killed_at(d, &["migrate", "--apply"], Some("begin_run"));
    assert!(killed(&o), "the kill point must abort the process: {}", text(&o));
    assert!(run_id_of(&o).is_none(), "no run was announced: {}", text(&o));
    assert!(!d.join("variables.json").exists() && !d.join("connections.json").exists(), "nothing may be written");
    // The run's transaction never committed: no half-recorded run, no journal, no snapshot.
    let state = StateDb::open_sqlite(&d.join("state.db")).await.unwrap();
    assert!(state.runs(10).await.unwrap().is_empty());
    // The lock died with the process; the next apply is a fresh, complete run.
    let o = run_killed_at(d, &["migrate", "--apply"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("(resumed)"), "{}", text(&o));
    let runs = state.runs(10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status.as_str(), "done");
    let o = run_killed_at(d, &["migrate", "--plan"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[tokio::test]
async fn killed_between_the_two_renames_of_a_local_files_flush() {
    use airflow_secrets_sync::state::{JournalState, StateDb};
    let dir = demo_dir().await;
    let d = dir.path();
    let o = run_killed_at(d, &["migrate", "--apply"], Some("local_files_flush"));
    assert!(killed(&o), "the kill point must abort the process: {}", text(&o));
    let run = run_id_of(&o).expect("the run was recorded before the flush");
    // One file replaced, the other not yet.
    assert!(d.join("variables.json").exists() != d.join("connections.json").exists(), "exactly one file replaced");
    // Every write of the run is still an intent: the journal cannot claim either file landed.
    let state = StateDb::open_sqlite(&d.join("state.db")).await.unwrap();
    let journal = state.journal(&run).await.unwrap();
    assert!(!journal.is_empty() && journal.iter().all(|r| r.state == JournalState::Intent), "{journal:?}");
    // Re-running resumes the run; both files then hold everything.
    let o = run_killed_at(d, &["migrate", "--apply"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(run_id_of(&o).as_deref(), Some(run.as_str()), "{}", text(&o));
    let o = run_killed_at(d, &["migrate", "--plan"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Its snapshot is the state before the kill: rolling back empties both files.
    let o = run_killed_at(d, &["rollback", &run, "--apply"], None);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["variables.json", "connections.json"] {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join(f)).unwrap()).unwrap();
        assert_eq!(v.as_object().map_or(0, |m| m.len()), 0, "{f}: {v}");
    }
}

#[tokio::test]
async fn killed_inside_a_metastore_target_transaction() {
    use airflow_secrets_sync::state::StateDb;
    let dir = demo_dir().await;
    let d = dir.path();
    demo::create_empty_metastore(&d.join("fresh.db")).await.unwrap().close().await;
    let mut cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
    cfg.push_str(&format!(
        "\n[stores.fresh]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n",
        toml::Value::String(format!("sqlite:///{}", d.join("fresh.db").display())),
        toml::Value::String(demo::generate_fernet_key().expose_plaintext().into())
    ));
    std::fs::write(d.join("config.toml"), cfg).unwrap();
    let rows = || async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", d.join("fresh.db").display())).await.unwrap();
        let (v,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM variable").fetch_one(&pool).await.unwrap();
        let (c,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM connection").fetch_one(&pool).await.unwrap();
        pool.close().await;
        v + c
    };

    let restore = ["restore", "--from", "source", "--to", "fresh", "--apply"];
    let o = run_killed_at(d, &restore, Some("metastore_tx"));
    assert!(killed(&o), "the kill point must abort the process: {}", text(&o));
    let run = run_id_of(&o).expect("the run was recorded before the transaction");
    assert_eq!(rows().await, 0, "the uncommitted transaction left rows behind");
    let state = StateDb::open_sqlite(&d.join("state.db")).await.unwrap();
    assert_eq!(state.run(&run).await.unwrap().status.as_str(), "applying");

    let o = run_killed_at(d, &restore, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(run_id_of(&o).as_deref(), Some(run.as_str()), "the interrupted run is resumed: {}", text(&o));
    assert!(rows().await > 0);
    let o = run_killed_at(d, &["restore", "--from", "source", "--to", "fresh", "--plan"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
