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
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().random());
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
