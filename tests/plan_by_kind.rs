//! The pipeline plans one kind at a time and drops each kind's values once they are compared (the
//! 100k-item memory bound, issue #18). What that relies on, proven here:
//! - a kind-at-a-time diff ([`plan::Differ`], the parts split with `Inventory::take_kind`) is the
//!   whole diff, change for change, on randomised inventories: actions, names, errors, notes,
//!   losses, the entries to write, preconditions, the summary and the `max_deletes` refusal;
//! - an apply still snapshots exactly what it overwrites or deletes, of both kinds, with the values
//!   the target held, and its rollback puts them back;
//! - a saved plan still fingerprints every item of every kind: drift in either kind is refused.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use airflow_secrets_sync::config::{ApplyConfig, Config, SelectConfig};
use airflow_secrets_sync::error::{Exit, classify};
use airflow_secrets_sync::model::{
    Connection, Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Ownership, SecretValue, Value, Variable,
};
use airflow_secrets_sync::pipeline::{self, Endpoint, Mode, Operation, RunOutcome, RunRequest};
use airflow_secrets_sync::plan::{self, Plan, Policy, Selection};
use airflow_secrets_sync::safety::Safety;
use airflow_secrets_sync::store::memory::MemoryStore;
use airflow_secrets_sync::store::{DynStore, Precondition, Store};

const SNAPSHOT_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const CANARY: &str = "canary-by-kind-41d7";

// ---- kind at a time = the whole diff ------------------------------------------------------------

/// Few names, so that ids meet on both sides, differ only by case (collisions in a
/// case-insensitive target) and match by the target's name for them.
const NAMES: [&str; 8] = ["a", "A", "b", "B", "c", "conn_x", "CONN_X", "d/e"];

fn random_value(rng: &mut StdRng, kind: Kind) -> Value {
    let pick = |rng: &mut StdRng, options: &[&str]| options[rng.random_range(0..options.len())].to_string();
    match kind {
        Kind::Variable => Value::Variable(Variable {
            value: SecretValue::from(pick(rng, &["1", "2", "", "x".repeat(40).as_str(), "line\nbreak"])),
            description: rng.random_bool(0.3).then(|| pick(rng, &["d1", "d2"])),
        }),
        Kind::Connection => Value::Connection(Connection {
            conn_type: Some(pick(rng, &["postgres", "http"])),
            host: rng.random_bool(0.7).then(|| pick(rng, &["db", "h2"])),
            password: rng.random_bool(0.6).then(|| SecretValue::from(pick(rng, &["p1", "p@2"]))),
            port: rng.random_bool(0.4).then_some(5432),
            extra: rng.random_bool(0.4).then(|| SecretValue::from(pick(rng, &["{\"a\": 1}", "{\"a\":1}", "not json"]))),
            description: rng.random_bool(0.2).then(|| "desc".to_string()),
            ..Connection::default()
        }),
    }
}

fn random_inventory(rng: &mut StdRng, target: bool) -> Inventory {
    let mut inv = Inventory::new();
    for kind in Kind::ALL {
        for name in NAMES {
            if !rng.random_bool(0.6) {
                continue;
            }
            let id = ItemId::new(kind, name);
            if rng.random_bool(0.12) {
                let error = if target && rng.random_bool(0.5) { ItemErrorKind::Blocked } else { ItemErrorKind::WrongKey };
                inv.insert_error(id, ItemError::new(error, "unreadable"));
                continue;
            }
            let ownership = if target {
                [Ownership::Ours, Ownership::Foreign, Ownership::Untracked][rng.random_range(0..3)]
            } else {
                Ownership::Untracked
            };
            // A target entry whose own name is another id's (an env var upper-cased): matched by name.
            let name_of = if target && rng.random_bool(0.2) { name.to_lowercase() } else { name.to_string() };
            let version = rng.random_bool(0.5).then(|| rng.random_range(1..9u32).to_string());
            inv.insert(Entry { id, value: random_value(rng, kind), meta: Meta { ownership, version, name: Some(name_of) } });
        }
    }
    inv
}

fn random_policy(rng: &mut StdRng) -> Policy {
    let select = SelectConfig {
        only: None,
        include: if rng.random_bool(0.2) { vec!["[a-c]*".into(), "conn*".into()] } else { Vec::new() },
        exclude: if rng.random_bool(0.2) { vec!["B".into()] } else { Vec::new() },
    };
    let apply = ApplyConfig {
        prune: rng.random_bool(0.6),
        adopt: rng.random_bool(0.4),
        max_deletes: rng.random_range(0..4),
        ..ApplyConfig::default()
    };
    Policy::new(Selection::from_config(&select).unwrap(), &apply)
}

fn random_target(rng: &mut StdRng) -> MemoryStore {
    let mut caps = MemoryStore::new("t").capabilities();
    caps.case_insensitive_names = rng.random_bool(0.4);
    caps.empty_variables = rng.random_bool(0.7);
    caps.variable_line_breaks = rng.random_bool(0.7);
    caps.variable_description = rng.random_bool(0.5);
    caps.connection_description = rng.random_bool(0.5);
    caps.conditional_writes = rng.random_bool(0.5);
    caps.can_delete = rng.random_bool(0.8);
    caps.keep_existing = rng.random_bool(0.15);
    caps.max_value_bytes = rng.random_bool(0.3).then_some(30);
    caps.variables = rng.random_bool(0.9);
    caps.connections = rng.random_bool(0.9);
    MemoryStore::with_capabilities("t", caps)
}

/// Everything a plan carries, the masked part and the skipped one (entries to write, preconditions).
fn fingerprint(plan: &Plan) -> (serde_json::Value, Vec<(ItemId, Option<Entry>, Precondition)>) {
    let hidden = plan.changes.iter().map(|c| (c.id.clone(), c.desired.as_deref().cloned(), c.precondition.clone())).collect();
    (serde_json::to_value(plan).unwrap(), hidden)
}

#[test]
fn a_kind_at_a_time_diff_is_the_whole_diff() {
    let mut rng = StdRng::seed_from_u64(0x18_100_000);
    let source_store = MemoryStore::new("s");
    let (mut deletes, mut refused, mut collided, mut writes) = (0, 0, 0, 0);
    for case in 0..400 {
        let target_store = random_target(&mut rng);
        let policy = random_policy(&mut rng);
        let (source, target) = (random_inventory(&mut rng, false), random_inventory(&mut rng, true));
        let whole = plan::diff(&source_store, &source, &target_store, &target, &policy);

        let (mut s, mut t) = (source.clone(), target.clone());
        let mut differ = plan::Differ::new(&source_store, &target_store, &policy);
        let mut added = 0;
        for kind in Kind::ALL {
            let (sk, tk) = (s.take_kind(kind), t.take_kind(kind));
            assert!(sk.ids().chain(tk.ids()).all(|id| id.kind == kind));
            added += differ.add(&sk, &tk).len();
        }
        assert!(s.is_empty() && t.is_empty(), "take_kind leaves nothing behind");
        let parts = differ.finish();
        assert_eq!(added, parts.changes.len());
        assert_eq!(fingerprint(&parts), fingerprint(&whole), "case {case}");

        deletes += whole.summary.delete;
        writes += whole.writes().count();
        refused += usize::from(!whole.refusals.is_empty());
        collided += whole.errored().filter(|c| c.error.as_ref().is_some_and(|e| e.kind == ItemErrorKind::Collision)).count();
    }
    // The cases reach what the split could get wrong.
    assert!(deletes > 0 && refused > 0 && collided > 0 && writes > 0, "{deletes} {refused} {collided} {writes}");
}

#[test]
#[should_panic(expected = "a kind was diffed in two parts")]
fn a_kind_split_over_two_parts_is_refused() {
    let store = MemoryStore::new("s");
    let policy = Policy::new(Selection::all(), &ApplyConfig::default());
    let mut differ = plan::Differ::new(&store, &store, &policy);
    let one: Inventory = [Entry::variable("a", "1")].into_iter().collect();
    let other: Inventory = [Entry::variable("b", "1")].into_iter().collect();
    differ.add(&one, &Inventory::new());
    differ.add(&other, &Inventory::new());
}

// ---- the pipeline: snapshot and saved plans over both kinds ---------------------------------------

fn config(dir: &std::path::Path) -> Config {
    Config::from_toml(&format!(
        "[source]\nkind = \"memory\"\n\n[target]\nkind = \"memory\"\n\n[apply]\nprune = true\n\n[state]\npath = {:?}\nsnapshot_key = \"{SNAPSHOT_KEY}\"\n",
        dir.join("state.db").display().to_string()
    ))
    .unwrap()
}

fn open(store: &Arc<MemoryStore>) -> Endpoint {
    let s: DynStore = store.clone();
    Endpoint::Open(s)
}

fn conn(password: &str) -> Connection {
    Connection { conn_type: Some("postgres".into()), host: Some("db".into()), password: Some(password.into()), ..Connection::default() }
}

async fn run(cfg: &Config, req: RunRequest) -> RunOutcome {
    let mut out = Vec::new();
    let outcome = pipeline::run(cfg, req, &mut out).await;
    assert!(!String::from_utf8_lossy(&out).contains(CANARY), "a value was printed");
    outcome
}

fn exit(outcome: &RunOutcome) -> Exit {
    outcome.result.as_ref().map_or_else(classify, |e| *e)
}

/// Source and target with unchanged, updated, created and pruned items of both kinds.
async fn stores() -> (Arc<MemoryStore>, Arc<MemoryStore>) {
    let (source, target) = (Arc::new(MemoryStore::new("src")), Arc::new(MemoryStore::new("dst")));
    let put = |s: &Arc<MemoryStore>, e: Entry| {
        let s = s.clone();
        async move { s.write(&e, &Precondition::Any).await.unwrap() }
    };
    for i in 0..20 {
        put(&source, Entry::variable(format!("same{i:02}"), format!("v{i}"))).await;
        put(&target, Entry::variable(format!("same{i:02}"), format!("v{i}"))).await;
        put(&source, Entry::connection(format!("same_c{i:02}"), conn(&format!("p{i}")))).await;
        put(&target, Entry::connection(format!("same_c{i:02}"), conn(&format!("p{i}")))).await;
    }
    put(&source, Entry::variable("upd", format!("{CANARY}-new"))).await;
    put(&target, Entry::variable("upd", "old-var")).await;
    put(&source, Entry::connection("upd_c", conn(&format!("{CANARY}-pw")))).await;
    put(&target, Entry::connection("upd_c", conn("old-pw"))).await;
    put(&source, Entry::variable("new", CANARY)).await;
    put(&source, Entry::connection("new_c", conn(CANARY))).await;
    put(&target, Entry::variable("gone", "old-gone")).await;
    put(&target, Entry::connection("gone_c", conn("old-gone-pw"))).await;
    (source, target)
}

#[tokio::test]
async fn an_apply_planned_a_kind_at_a_time_snapshots_exactly_what_it_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (source, target) = stores().await;
    let before = airflow_secrets_sync::store::scan_all(target.as_ref(), &Kind::ALL).await.unwrap();
    let outcome = run(&cfg, RunRequest::new(&cfg, Operation::Migrate, open(&source), open(&target), Mode::Apply)).await;
    assert_eq!(exit(&outcome), Exit::Ok, "{:?}", outcome.result);
    let summary = outcome.plan.as_ref().unwrap();
    assert_eq!((summary.create, summary.update, summary.delete, summary.unchanged), (2, 2, 2, 40));

    let safety = Safety::open_with(&cfg.state, None).await.unwrap().unwrap();
    let record = safety.db.run(outcome.run_id.as_deref().unwrap()).await.unwrap();
    let (present, mut absent, unreadable) = safety.snapshot_of(&record).await.unwrap();
    absent.sort();
    assert_eq!(absent, vec![ItemId::variable("new"), ItemId::connection("new_c")]);
    assert!(unreadable.is_empty());
    let mut snapshotted: Vec<&ItemId> = present.ids().collect();
    snapshotted.sort();
    let overwritten = [ItemId::variable("gone"), ItemId::variable("upd"), ItemId::connection("gone_c"), ItemId::connection("upd_c")];
    assert_eq!(snapshotted, overwritten.iter().collect::<Vec<_>>(), "only what the run overwrites is snapshotted");
    for id in &overwritten {
        assert_eq!(present.get(id).unwrap().value, before.get(id).unwrap().value, "{id}: the value the target held");
    }

    // The rollback's target is the configured one: point it at ours.
    let mut req = RunRequest::rollback(&cfg, outcome.run_id.as_deref().unwrap(), Mode::Apply);
    req.target = open(&target);
    let back = run(&cfg, req).await;
    assert_eq!(exit(&back), Exit::Ok, "{:?}", back.result);
    let after = airflow_secrets_sync::store::scan_all(target.as_ref(), &Kind::ALL).await.unwrap();
    let values = |inv: &Inventory| inv.entries().map(|e| (e.id.clone(), e.value.clone())).collect::<Vec<_>>();
    assert_eq!(values(&after), values(&before), "the rollback puts back both kinds");
}

#[tokio::test]
async fn a_saved_plan_made_a_kind_at_a_time_refuses_drift_in_either_kind() {
    for drifted in Kind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (source, target) = stores().await;
        let path = dir.path().join("plan.json");
        let mut req = RunRequest::new(&cfg, Operation::Migrate, open(&source), open(&target), Mode::Plan);
        req.save_plan = Some(path.clone());
        assert_eq!(exit(&run(&cfg, req).await), Exit::ChangesPending);
        let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(saved["items"].as_array().unwrap().len(), 46, "every item of both kinds is fingerprinted");

        // An unchanged item (dropped from memory once compared) changes in the target.
        let changed = match drifted {
            Kind::Variable => Entry::variable("same07", "changed"),
            Kind::Connection => Entry::connection("same_c07", conn("changed")),
        };
        target.write(&changed, &Precondition::Any).await.unwrap();
        let mut req = RunRequest::new(&cfg, Operation::Migrate, open(&source), open(&target), Mode::Apply);
        req.plan_file = Some(path.clone());
        let refused = run(&cfg, req).await;
        assert_eq!(exit(&refused), Exit::Drift, "{drifted}: {:?}", refused.result);
        assert!(refused.report.is_none(), "nothing is written");
    }
}
