//! The safety engine through the real binary: snapshots before every write, rollback of updates
//! and creations, resume after a crash (fault injection aborts the process mid-apply), the
//! snapshot key requirement, and no plaintext anywhere in the state database.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use airflow_secrets_sync::demo;

const BIN: &str = env!("CARGO_BIN_EXE_airflow-secrets-sync");
const CANARIES: &[&str] = &["xoxb-demo-not-a-real-token", "p@ss:w/rd#?%&= +", "api-secret", "Bearer demo", "production"];

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir).env_remove("AIRFLOW__CORE__FERNET_KEY").env_remove("AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn run_id(o: &Output) -> String {
    let t = text(o);
    let line = t.lines().find(|l| l.starts_with("Run ")).unwrap_or_else(|| panic!("no run id in:\n{t}"));
    line.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string()
}

fn variables(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("variables.json")).unwrap()).unwrap()
}

async fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = demo::seed_metastore(&dir.path().join("airflow.db")).await.unwrap();
    std::fs::write(dir.path().join("config.toml"), demo::demo_config(dir.path(), &key)).unwrap();
    dir
}

#[tokio::test]
async fn rollback_restores_updates_and_removes_creations() {
    let dir = seeded().await;
    let d = dir.path();
    let first = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&first), 0, "{}", text(&first));
    let run1 = run_id(&first);

    // Someone edits the target; the next apply puts the source's value back (run 2).
    let mut vars = variables(d);
    vars["environment"] = "staging".into();
    std::fs::write(d.join("variables.json"), serde_json::to_string(&vars).unwrap()).unwrap();
    let second = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&second), 0, "{}", text(&second));
    let run2 = run_id(&second);
    assert_ne!(run1, run2);
    assert_eq!(variables(d)["environment"], "production");

    let plan = run(d, &["rollback", &run2, "--plan"], &[]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    assert!(text(&plan).contains("environment"));
    let undo = run(d, &["rollback", &run2, "--apply"], &[]);
    assert_eq!(code(&undo), 0, "{}", text(&undo));
    assert_eq!(variables(d)["environment"], "staging", "rollback restored the value run 2 overwrote");

    // Undoing the first run deletes everything it created.
    let undo1 = run(d, &["rollback", &run1, "--apply"], &[]);
    assert_eq!(code(&undo1), 0, "{}", text(&undo1));
    assert_eq!(variables(d).as_object().map_or(0, |m| m.len()), 0, "{}", text(&undo1));

    let runs = run(d, &["runs"], &[]);
    assert_eq!(code(&runs), 0);
    let listed = text(&runs);
    assert!(listed.contains(&run1) && listed.contains(&run2) && listed.contains("rolled_back"), "{listed}");

    for o in [&first, &second, &plan, &undo, &undo1, &runs] {
        for c in CANARIES {
            assert!(!text(o).contains(c), "{c:?} printed:\n{}", text(o));
        }
    }
    // The state database holds sealed snapshots only: no plaintext in its raw bytes.
    for entry in std::fs::read_dir(d).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("state.db") {
            let raw = std::fs::read(&p).unwrap();
            for c in CANARIES {
                assert!(!raw.windows(c.len()).any(|w| w == c.as_bytes()), "{c:?} in {}", p.display());
            }
        }
    }
}

#[tokio::test]
async fn an_aborted_apply_resumes_with_its_original_snapshot() {
    let dir = seeded().await;
    let d = dir.path();
    // Dies (abort, like kill -9) right after the 4th write reaches the target.
    let crashed = run(d, &["migrate", "--apply"], &[("AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER", "4")]);
    assert_ne!(code(&crashed), 0, "the fault must kill the process: {}", text(&crashed));
    let crashed_run = run_id(&crashed);
    let runs = text(&run(d, &["runs"], &[]));
    assert!(runs.contains(&crashed_run) && runs.contains("applying"), "{runs}");
    // `runs --json`: one JSON object per run, with where its journal stands.
    let json = run(d, &["runs", "--json"], &[]);
    assert_eq!(code(&json), 0, "{}", text(&json));
    let listed: Vec<serde_json::Value> =
        String::from_utf8_lossy(&json.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let crashed = listed.iter().find(|r| r["id"] == crashed_run.as_str()).expect("the crashed run is listed");
    assert_eq!(crashed["status"], "applying");
    let journal = crashed["journal"].as_object().unwrap();
    let total: i64 = journal.values().map(|n| n.as_i64().unwrap()).sum();
    assert_eq!(total, crashed["writes_planned"].as_i64().unwrap(), "{crashed}");
    assert!(journal.get("intent").and_then(|n| n.as_i64()).unwrap_or(0) >= 1, "the write it died in is an intent: {crashed}");

    // Re-applying the same plan resumes the same run.
    let resumed = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&resumed), 0, "{}", text(&resumed));
    assert_eq!(run_id(&resumed), crashed_run);
    assert!(text(&resumed).contains("(resumed)"));
    assert_eq!(variables(d)["environment"], "production");
    let plan = run(d, &["migrate", "--plan"], &[]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));

    // Its snapshot is the state before the crash: rolling back removes everything.
    let undo = run(d, &["rollback", &crashed_run, "--apply"], &[]);
    assert_eq!(code(&undo), 0, "{}", text(&undo));
    assert_eq!(variables(d).as_object().map_or(0, |m| m.len()), 0);
}

#[tokio::test]
async fn apply_needs_a_snapshot_key_unless_told_otherwise() {
    let dir = seeded().await;
    let d = dir.path();
    let cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
    let without: String = cfg.lines().filter(|l| !l.starts_with("snapshot_key")).map(|l| format!("{l}\n")).collect();
    std::fs::write(d.join("config.toml"), without).unwrap();
    let o = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(text(&o).contains("snapshot key"), "{}", text(&o));
    assert!(!d.join("variables.json").exists(), "nothing may be written without a snapshot");
    let o = run(d, &["migrate", "--apply", "--no-snapshot"], &[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // The key can come from the environment too.
    let key = demo::generate_fernet_key();
    let o = run(d, &["migrate", "--apply"], &[("AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY", key.expose_plaintext())]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[tokio::test]
async fn a_saved_plan_applies_only_while_nothing_drifted() {
    let dir = seeded().await;
    let d = dir.path();
    let plan_path = d.join("plan.json");
    let p = plan_path.to_str().unwrap();
    let o = run(d, &["migrate", "--plan", "--out", p, "--only", "variables"], &[]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let saved = std::fs::read(&plan_path).unwrap();
    for c in CANARIES {
        assert!(!saved.windows(c.len()).any(|w| w == c.as_bytes()), "{c:?} in the saved plan");
    }
    // The saved plan carries its own policy (only variables), whatever today's flags say.
    let o = run(d, &["migrate", "--apply", "--plan-file", p], &[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(variables(d).get("environment").is_some());
    assert!(!d.join("connections.json").exists(), "connections were outside the saved plan");

    // A new plan, then someone changes the target before it is applied: refused, exit 12.
    let o = run(d, &["migrate", "--plan", "--out", p], &[]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let mut vars = variables(d);
    vars["environment"] = "changed-by-hand".into();
    std::fs::write(d.join("variables.json"), serde_json::to_string(&vars).unwrap()).unwrap();
    let o = run(d, &["migrate", "--apply", "--plan-file", p], &[]);
    assert_eq!(code(&o), 12, "{}", text(&o));
    assert!(text(&o).contains("environment") && !text(&o).contains("changed-by-hand"), "{}", text(&o));
    assert!(!d.join("connections.json").exists(), "nothing is written when the plan drifted");
}

#[tokio::test]
async fn two_applies_never_run_on_one_target_at_once() {
    use airflow_secrets_sync::config::Config;
    use airflow_secrets_sync::state::StateDb;
    use airflow_secrets_sync::store::registry;
    let dir = seeded().await;
    let d = dir.path();
    let cfg = Config::load(&d.join("config.toml")).unwrap();
    let target = registry::open(&cfg.target).await.unwrap();
    let db = StateDb::open(&cfg.state).await.unwrap();
    // Another apply holds the target's lock...
    let held = db.lock_target(&target.identity(), "other-run").await.unwrap();
    let o = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&o), 16, "{}", text(&o));
    assert!(text(&o).contains("other-run"), "the error names the holder: {}", text(&o));
    assert!(!d.join("variables.json").exists());
    // The lock comes before the target is even read (a plan made while another apply writes
    // would be stale): a target that cannot be read still gives "locked", not a read error.
    std::fs::write(d.join("variables.json"), "{ half-written by the other apply").unwrap();
    let o = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&o), 16, "{}", text(&o));
    std::fs::remove_file(d.join("variables.json")).unwrap();
    // A plan takes no lock.
    let o = run(d, &["migrate", "--plan"], &[]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    // ...until it lets go.
    drop(held);
    let o = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[tokio::test]
async fn restore_from_a_snapshot_into_a_fresh_metastore() {
    let dir = seeded().await;
    let d = dir.path();
    assert_eq!(code(&run(d, &["migrate", "--apply"], &[])), 0);
    let mut vars = variables(d);
    vars["environment"] = "staging".into();
    std::fs::write(d.join("variables.json"), serde_json::to_string(&vars).unwrap()).unwrap();
    let second = run(d, &["migrate", "--apply"], &[]);
    let run2 = run_id(&second);

    demo::create_empty_metastore(&d.join("fresh.db")).await.unwrap().close().await;
    let mut cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
    cfg.push_str(&format!(
        "\n[stores.fresh]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n",
        toml::Value::String(format!("sqlite:///{}", d.join("fresh.db").display())),
        toml::Value::String(demo::generate_fernet_key().expose_plaintext().into())
    ));
    std::fs::write(d.join("config.toml"), cfg).unwrap();

    let o = run(d, &["restore", "--snapshot", &run2, "--to", "fresh", "--plan"], &[]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("environment") && !text(&o).contains("staging"), "{}", text(&o));
    let o = run(d, &["restore", "--snapshot", &run2, "--to", "fresh", "--apply", "--no-snapshot"], &[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // The fresh metastore now holds what the target held before run 2: the hand-edited value.
    let fresh = run(d, &["restore", "--from", "fresh", "--to", "target", "--plan", "--json", "--only", "variables", "--include", "environment"], &[]);
    let plan: serde_json::Value = serde_json::from_slice(&fresh.stdout).unwrap_or_else(|_| panic!("{}", text(&fresh)));
    assert_eq!(plan["summary"]["update"], 1, "target has production, the snapshot had staging: {plan}");
    let o = run(d, &["restore", "--to", "fresh", "--plan"], &[]);
    assert_eq!(code(&o), 3, "--from or --snapshot is required: {}", text(&o));
}

/// The state database on PostgreSQL (a daemon with replicas): the same apply, lock and rollback.
#[tokio::test]
async fn the_state_database_can_be_postgresql() {
    let pg = support::fresh_postgres().await;
    let dir = seeded().await;
    let d = dir.path();
    let cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
    let cfg = cfg.replace(
        &format!("path = {}", toml::Value::String(d.join("state.db").display().to_string())),
        &format!("url = {}", toml::Value::String(pg.url.clone())),
    );
    assert!(cfg.contains("url = "), "{cfg}");
    std::fs::write(d.join("config.toml"), cfg).unwrap();
    let first = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&first), 0, "{}", text(&first));
    let r = run_id(&first);
    assert!(!d.join("state.db").exists(), "the SQLite state file must not be used");
    let runs = run(d, &["runs"], &[]);
    assert!(text(&runs).contains(&r), "{}", text(&runs));
    let undo = run(d, &["rollback", &r, "--apply"], &[]);
    assert_eq!(code(&undo), 0, "{}", text(&undo));
    assert_eq!(variables(d).as_object().map_or(0, |m| m.len()), 0);
}

// ---- issue 16: a saved plan is authenticated; resume picks only interrupted runs; --no-snapshot locks

/// Replace the `snapshot_key = ...` line of the config in `dir` with a fresh key.
fn change_snapshot_key(dir: &Path) {
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let key = demo::generate_fernet_key();
    let new: String = cfg
        .lines()
        .map(|l| if l.starts_with("snapshot_key") { format!("snapshot_key = \"{}\"\n", key.expose_plaintext()) } else { format!("{l}\n") })
        .collect();
    assert_ne!(cfg, new);
    std::fs::write(dir.join("config.toml"), new).unwrap();
}

async fn state_db(dir: &Path) -> airflow_secrets_sync::state::StateDb {
    airflow_secrets_sync::state::StateDb::open_sqlite(&dir.join("state.db")).await.unwrap()
}

#[tokio::test]
async fn an_edited_saved_plan_is_refused_and_the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = seeded().await;
    let d = dir.path();
    let plan_path = d.join("plan.json");
    let p = plan_path.to_str().unwrap();
    let o = run(d, &["migrate", "--plan", "--out", p, "--only", "variables"], &[]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let mode = std::fs::metadata(&plan_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a saved plan is written mode 0600, not {mode:o}");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("plan.json") && n != "plan.json")
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // Someone widens the reviewed policy (only variables -> everything): not the plan that was reviewed.
    let original = std::fs::read_to_string(&plan_path).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&original).unwrap();
    assert_eq!(edited["policy"]["only"], "variable", "{original}");
    edited["policy"]["only"] = serde_json::Value::Null;
    std::fs::write(&plan_path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let o = run(d, &["migrate", "--apply", "--plan-file", p], &[]);
    assert_eq!(code(&o), 12, "{}", text(&o));
    assert!(text(&o).contains("does not verify"), "{}", text(&o));
    assert!(!d.join("variables.json").exists() && !d.join("connections.json").exists(), "nothing is written");

    // Cosmetic edits (whitespace, key order) keep the canonical content, hence the MAC.
    let compact = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&original).unwrap()).unwrap();
    std::fs::write(&plan_path, compact).unwrap();
    let o = run(d, &["migrate", "--apply", "--plan-file", p], &[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!d.join("connections.json").exists(), "connections were outside the saved plan");
}

#[tokio::test]
async fn a_saved_plan_applies_only_the_write_set_it_saved() {
    use airflow_secrets_sync::config::Config;
    use airflow_secrets_sync::planfile::PlanFile;
    use airflow_secrets_sync::state::SnapshotKey;
    let dir = seeded().await;
    let d = dir.path();
    let plan_path = d.join("plan.json");
    let p = plan_path.to_str().unwrap();
    let o = run(d, &["migrate", "--plan", "--out", p, "--only", "variables"], &[]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    // The saved list of changes loses one line, and the file is re-signed with the right key (a
    // holder of the key, or a bug): the fingerprints still match, but the write set does not.
    let cfg = Config::load(&d.join("config.toml")).unwrap();
    let key = SnapshotKey::resolve(&cfg.state).unwrap().unwrap();
    let mut pf = PlanFile::load(&plan_path).unwrap();
    pf.verify(&key).unwrap();
    let dropped = pf.changes.remove(0);
    pf.sign(&key);
    pf.save(&plan_path).unwrap();
    let o = run(d, &["migrate", "--apply", "--plan-file", p], &[]);
    assert_eq!(code(&o), 12, "{}", text(&o));
    assert!(text(&o).contains(&format!("not in the saved plan: {} {}", dropped.action, dropped.id)), "{}", text(&o));
    for c in CANARIES {
        assert!(!text(&o).contains(c), "{c:?} printed:\n{}", text(&o));
    }
    assert!(!d.join("variables.json").exists(), "nothing is written");
}

#[tokio::test]
async fn a_failed_run_is_not_resumed_by_a_later_apply() {
    use airflow_secrets_sync::state::RunStatus;
    let dir = seeded().await;
    let d = dir.path();
    let crashed = run(d, &["migrate", "--apply"], &[("AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER", "2")]);
    assert_ne!(code(&crashed), 0, "{}", text(&crashed));
    let first = run_id(&crashed);
    // The run finished with failures (not interrupted): a later apply starts a run of its own.
    state_db(d).await.set_run_status(&first, RunStatus::Failed).await.unwrap();
    let again = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    assert_ne!(run_id(&again), first, "a failed run must not be resumed: {}", text(&again));
    assert!(!text(&again).contains("(resumed)"), "{}", text(&again));
}

#[tokio::test]
async fn resume_refuses_finished_failed_and_rolled_back_runs() {
    use airflow_secrets_sync::state::RunStatus;
    let dir = seeded().await;
    let d = dir.path();
    let first = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&first), 0, "{}", text(&first));
    let done = run_id(&first);
    let mut vars = variables(d);
    vars["environment"] = "staging".into();
    std::fs::write(d.join("variables.json"), serde_json::to_string(&vars).unwrap()).unwrap();

    let o = run(d, &["migrate", "--apply", "--resume", &done], &[]);
    assert_eq!(code(&o), 3, "a finished run cannot be resumed: {}", text(&o));
    assert!(text(&o).contains(&done) && text(&o).contains("done"), "{}", text(&o));
    assert_eq!(variables(d)["environment"], "staging", "nothing is written");

    let db = state_db(d).await;
    db.set_run_status(&done, RunStatus::Failed).await.unwrap();
    let o = run(d, &["migrate", "--apply", "--resume", &done], &[]);
    assert_eq!(code(&o), 3, "a failed run cannot be resumed: {}", text(&o));
    db.set_run_status(&done, RunStatus::RolledBack).await.unwrap();
    let o = run(d, &["migrate", "--apply", "--resume", &done], &[]);
    assert_eq!(code(&o), 3, "a rolled-back run cannot be resumed: {}", text(&o));
    assert!(text(&o).contains("rolled_back"), "{}", text(&o));
    assert_eq!(variables(d)["environment"], "staging", "nothing is written");
    assert_eq!(db.runs(10).await.unwrap().len(), 1, "no run was started");
}

#[tokio::test]
async fn an_interrupted_run_is_not_resumed_under_another_snapshot_key() {
    let dir = seeded().await;
    let d = dir.path();
    let crashed = run(d, &["migrate", "--apply"], &[("AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER", "2")]);
    assert_ne!(code(&crashed), 0, "{}", text(&crashed));
    let first = run_id(&crashed);
    let before = std::fs::read(d.join("variables.json")).ok();
    let original_cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
    change_snapshot_key(d);
    for args in [&["migrate", "--apply"][..], &["migrate", "--apply", "--resume", &first]] {
        let o = run(d, args, &[]);
        assert_eq!(code(&o), 3, "{}", text(&o));
        assert!(text(&o).contains(&first) && text(&o).contains("another snapshot key"), "{}", text(&o));
        assert_eq!(std::fs::read(d.join("variables.json")).ok(), before, "nothing is written");
    }
    // Its snapshot opens with its own key only, and the refusal says so.
    let o = run(d, &["rollback", &first, "--plan"], &[]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(text(&o).contains("another snapshot key"), "{}", text(&o));
    // With its own key it resumes.
    std::fs::write(d.join("config.toml"), original_cfg).unwrap();
    let o = run(d, &["migrate", "--apply"], &[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(run_id(&o), first);
}

#[tokio::test]
async fn no_snapshot_applies_and_jobs_take_the_target_lock() {
    use airflow_secrets_sync::config::Config;
    use airflow_secrets_sync::store::registry;
    let dir = seeded().await;
    let d = dir.path();
    let cfg = Config::load(&d.join("config.toml")).unwrap();
    let target = registry::open(&cfg.target).await.unwrap();
    let db = state_db(d).await;
    let held = db.lock_target(&target.identity(), "other-run").await.unwrap();
    let o = run(d, &["migrate", "--apply", "--no-snapshot"], &[]);
    assert_eq!(code(&o), 16, "{}", text(&o));
    assert!(text(&o).contains("other-run"), "{}", text(&o));
    assert!(!d.join("variables.json").exists());

    // A daemon job with no_snapshot = true, run once.
    let mut daemon_cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
    daemon_cfg.push_str("\n[[jobs]]\nname = \"sync\"\nschedule = \"0 * * * *\"\nmode = \"apply\"\nno_snapshot = true\n");
    std::fs::write(d.join("daemon.toml"), daemon_cfg).unwrap();
    let o = run(d, &["daemon", "--once", "--config", "daemon.toml"], &[]);
    assert_eq!(code(&o), 16, "{}", text(&o));
    assert!(!d.join("variables.json").exists());

    drop(held);
    let o = run(d, &["migrate", "--apply", "--no-snapshot"], &[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}
