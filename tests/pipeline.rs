//! Plan and apply end to end over the in-memory reference store: actions, ownership, pruning,
//! selection, collisions, capability refusals, retries, exit classes, and that no value ever
//! reaches a rendered plan.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use airflow_secrets_sync::apply::{self, ApplyOptions, NoJournal};
use airflow_secrets_sync::config::{ApplyConfig, OnlyKind, SelectConfig};
use airflow_secrets_sync::error::Exit;
use airflow_secrets_sync::model::{Connection, Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, SecretValue};
use airflow_secrets_sync::plan::{self, Action, Plan, Policy, Selection};
use airflow_secrets_sync::render;
use airflow_secrets_sync::store::memory::MemoryStore;
use airflow_secrets_sync::store::{Capabilities, Placement, Precondition, Store, StoreError, scan_all};

const CANARY_VAR: &str = "canary-var-7f3a9c";
const CANARY_PW: &str = "canary-pw-1b2c3d";

fn policy() -> Policy {
    Policy::new(Selection::all(), &ApplyConfig::default())
}

async fn seed(store: &MemoryStore, entries: &[Entry]) {
    for e in entries {
        store.write(e, &Precondition::Any).await.unwrap();
    }
}

fn conn(pw: &str) -> Connection {
    Connection {
        conn_type: Some("postgres".into()),
        host: Some("db".into()),
        password: Some(SecretValue::from(pw)),
        ..Default::default()
    }
}

async fn make_plan(source: &dyn Store, target: &dyn Store, policy: &Policy) -> Plan {
    let s = scan_all(source, &Kind::ALL).await.unwrap();
    let t = scan_all(target, &Kind::ALL).await.unwrap();
    plan::diff(source, &s, target, &t, policy)
}

fn action_of(plan: &Plan, id: &ItemId) -> Action {
    plan.changes.iter().find(|c| &c.id == id).unwrap_or_else(|| panic!("{id} not in plan")).action
}

#[tokio::test]
async fn create_update_unchanged_then_converges() {
    let source = MemoryStore::new("src");
    let target = MemoryStore::new("dst");
    seed(&source, &[Entry::variable("a", CANARY_VAR), Entry::variable("b", "same"), Entry::connection("pg", conn(CANARY_PW))]).await;
    seed(&target, &[Entry::variable("a", "old"), Entry::variable("b", "same")]).await;

    let p = make_plan(&source, &target, &policy()).await;
    assert_eq!(action_of(&p, &ItemId::variable("a")), Action::Update);
    assert_eq!(action_of(&p, &ItemId::variable("b")), Action::Unchanged);
    assert_eq!(action_of(&p, &ItemId::connection("pg")), Action::Create);
    assert!(p.has_changes());
    let upd = p.changes.iter().find(|c| c.id == ItemId::variable("a")).unwrap();
    assert_eq!(upd.changed_fields, vec!["value"]);

    let target: Arc<dyn Store> = Arc::new(target);
    let report = apply::execute(&p, target.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
    assert_eq!((report.created, report.updated, report.failures.len()), (1, 1, 0));
    assert_eq!(report.verified, 2);
    assert_eq!(report.exit(), Exit::Ok);

    let again = make_plan(&source, target.as_ref(), &policy()).await;
    assert!(!again.has_changes(), "a second plan after apply must be empty");
}

#[tokio::test]
async fn a_foreign_item_needs_adopt() {
    let source = MemoryStore::new("src");
    let target = MemoryStore::new("dst");
    seed(&source, &[Entry::variable("shared", "ours")]).await;
    target.seed_foreign(Entry::variable("shared", "theirs"));

    let p = make_plan(&source, &target, &policy()).await;
    let c = &p.changes[0];
    assert_eq!(c.action, Action::Error);
    assert_eq!(c.error.as_ref().unwrap().kind, ItemErrorKind::NotOwned);
    assert_eq!(p.error_exit(), Some(Exit::NotOwned));

    let mut adopt = policy();
    adopt.adopt = true;
    let p = make_plan(&source, &target, &adopt).await;
    assert_eq!(p.changes[0].action, Action::Update);
    assert!(p.changes[0].note.as_deref().unwrap().contains("adopted"));
}

#[tokio::test]
async fn prune_deletes_only_what_we_own_and_is_capped() {
    let source = MemoryStore::new("src");
    let target = MemoryStore::new("dst");
    seed(&target, &[Entry::variable("ours1", "x"), Entry::variable("ours2", "y")]).await;
    target.seed_foreign(Entry::variable("theirs", "z"));

    let p = make_plan(&source, &target, &policy()).await;
    assert!(p.changes.iter().all(|c| c.action == Action::Kept), "without --prune nothing is deleted");

    let mut prune = policy();
    prune.prune = true;
    let p = make_plan(&source, &target, &prune).await;
    assert_eq!(action_of(&p, &ItemId::variable("ours1")), Action::Delete);
    assert_eq!(action_of(&p, &ItemId::variable("theirs")), Action::Kept);
    assert!(p.refusals.is_empty());

    prune.max_deletes = 1;
    let p = make_plan(&source, &target, &prune).await;
    assert_eq!(p.refusals.len(), 1, "two deletes over max_deletes = 1 must be refused");
    assert_eq!(p.error_exit(), Some(Exit::InvalidItem));
}

#[tokio::test]
async fn selection_by_kind_and_globs() {
    let source = MemoryStore::new("src");
    let target = MemoryStore::new("dst");
    seed(&source, &[
        Entry::variable("team_a/x", "1"),
        Entry::variable("team_b/y", "2"),
        Entry::connection("team_a_db", conn("p")),
    ])
    .await;
    let sel = Selection::from_config(&SelectConfig {
        only: Some(OnlyKind::Variables),
        include: vec!["team_a*".into()],
        exclude: vec![],
    })
    .unwrap();
    let p = make_plan(&source, &target, &Policy::new(sel, &ApplyConfig::default())).await;
    let ids: Vec<_> = p.changes.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, vec![ItemId::variable("team_a/x")]);

    let sel = Selection::from_config(&SelectConfig { only: None, include: vec![], exclude: vec!["team_b/*".into()] }).unwrap();
    assert!(!sel.matches(&ItemId::variable("team_b/y")));
    assert!(sel.matches(&ItemId::connection("team_a_db")));
    assert!(Selection::from_config(&SelectConfig { only: None, include: vec!["[".into()], exclude: vec![] }).is_err());
}

/// A target that folds names like Azure Key Vault (`_` -> `-`, case-insensitive), with a 300-byte
/// limit and no empty variables.
struct Folding(MemoryStore);

impl fmt::Display for Folding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "folding")
    }
}

#[async_trait]
impl Store for Folding {
    fn capabilities(&self) -> Capabilities {
        let mut c = self.0.capabilities();
        c.case_insensitive_names = true;
        c.max_value_bytes = Some(300);
        c.empty_variables = false;
        c.connection_description = false;
        c
    }
    fn locate(&self, id: &ItemId) -> Placement {
        if id.id.contains('.') {
            return Placement::Invalid("'.' is not allowed".into());
        }
        Placement::At(id.id.replace('_', "-"))
    }
    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        self.0.scan(kind).await
    }
    async fn write(&self, e: &Entry, p: &Precondition) -> Result<(), StoreError> {
        self.0.write(e, p).await
    }
    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        self.0.delete(id).await
    }
}

#[tokio::test]
async fn collisions_and_capability_refusals_are_per_item_errors() {
    let source = MemoryStore::new("src");
    let target = Folding(MemoryStore::new("dst"));
    let mut described = conn("p");
    described.description = Some("kept in the metastore".into());
    seed(&source, &[
        Entry::variable("my_var", "1"),
        Entry::variable("my-var", "2"),
        Entry::variable("My-Var", "3"),
        Entry::variable("empty", ""),
        Entry::variable("big", "x".repeat(301)),
        Entry::variable("a.b", "x"),
        Entry::variable("fine", "ok"),
        Entry::connection("c", described),
    ])
    .await;
    let p = make_plan(&source, &target, &policy()).await;
    let kind = |id: &str| p.changes.iter().find(|c| c.id == ItemId::variable(id)).unwrap().error.as_ref().map(|e| e.kind);
    assert_eq!(kind("my_var"), Some(ItemErrorKind::Collision));
    assert_eq!(kind("my-var"), Some(ItemErrorKind::Collision));
    assert_eq!(kind("My-Var"), Some(ItemErrorKind::Collision));
    assert_eq!(kind("empty"), Some(ItemErrorKind::NotRepresentable));
    assert_eq!(kind("big"), Some(ItemErrorKind::TooLarge));
    assert_eq!(kind("a.b"), Some(ItemErrorKind::InvalidName));
    assert_eq!(kind("fine"), None);
    let c = p.changes.iter().find(|c| c.id == ItemId::connection("c")).unwrap();
    assert_eq!(c.action, Action::Create);
    assert!(c.losses.iter().any(|l| l.field == "description"), "the lossiness report names the dropped description");
    assert_eq!(p.error_exit(), Some(Exit::InvalidItem));
}

#[tokio::test]
async fn unreadable_source_rows_are_reported_by_name() {
    let target = MemoryStore::new("dst");
    let mut source_inv = Inventory::new();
    source_inv.insert_error(ItemId::variable("locked"), ItemError::new(ItemErrorKind::WrongKey, "no configured key decrypts it"));
    source_inv.insert(Entry::variable("open", "v"));
    let source = MemoryStore::new("src");
    let t = scan_all(&target, &Kind::ALL).await.unwrap();
    let p = plan::diff(&source, &source_inv, &target, &t, &policy());
    let locked = p.changes.iter().find(|c| c.id == ItemId::variable("locked")).unwrap();
    assert_eq!(locked.action, Action::Error);
    assert_eq!(locked.error.as_ref().unwrap().side, "source");
    assert_eq!(p.error_exit(), Some(Exit::WrongKey));
    assert!(render::table(&p, true).contains("locked"));
}

#[tokio::test]
async fn rendered_plans_never_contain_values() {
    let source = MemoryStore::new("src");
    let target = MemoryStore::new("dst");
    seed(&source, &[Entry::variable("v", CANARY_VAR), Entry::connection("c", conn(CANARY_PW))]).await;
    seed(&target, &[Entry::connection("c", conn("another-canary-9d8e"))]).await;
    let p = make_plan(&source, &target, &policy()).await;
    for text in [render::table(&p, true), render::json(&p), format!("{p:?}")] {
        for canary in [CANARY_VAR, CANARY_PW, "another-canary-9d8e"] {
            assert!(!text.contains(canary), "a value leaked into the plan output:\n{text}");
        }
    }
    let json: serde_json::Value = serde_json::from_str(&render::json(&p)).unwrap();
    assert_eq!(json["summary"]["create"], 1);
    assert_eq!(json["summary"]["update"], 1);
    let c = json["changes"].as_array().unwrap().iter().find(|c| c["id"]["id"] == "c").unwrap();
    assert_eq!(c["changed_fields"], serde_json::json!(["password"]));
}

/// Throttles the first `n` writes, then delegates.
struct Throttling {
    inner: MemoryStore,
    left: AtomicUsize,
    fail_always: Option<String>,
}

impl fmt::Display for Throttling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "throttling")
    }
}

#[async_trait]
impl Store for Throttling {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        self.inner.scan(kind).await
    }
    async fn write(&self, e: &Entry, p: &Precondition) -> Result<(), StoreError> {
        if self.fail_always.as_deref() == Some(e.id.id.as_str()) {
            return Err(StoreError::PermissionDenied { store: self.to_string(), what: e.id.to_string() });
        }
        if self.left.load(Ordering::SeqCst) > 0 {
            self.left.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Throttled { store: self.to_string(), op: "write", retry_after: Some(Duration::from_secs(2)) });
        }
        self.inner.write(e, p).await
    }
    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
}

#[tokio::test(start_paused = true)]
async fn throttled_writes_are_retried_with_backoff() {
    let source = MemoryStore::new("src");
    seed(&source, &[Entry::variable("a", "1"), Entry::variable("b", "2")]).await;
    let target = Arc::new(Throttling { inner: MemoryStore::new("dst"), left: AtomicUsize::new(3), fail_always: None });
    let p = make_plan(&source, target.as_ref(), &policy()).await;
    let started = tokio::time::Instant::now();
    let sequential = ApplyOptions { concurrency: Some(1), ..ApplyOptions::default() };
    let report = apply::execute(&p, target.clone(), &sequential, Arc::new(NoJournal)).await;
    assert_eq!(report.failures.len(), 0, "{:?}", report.failures);
    assert_eq!(report.created, 2);
    // Retry-After of 2 s was honoured three times (virtual time: no real waiting).
    assert!(started.elapsed() >= Duration::from_secs(6), "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_are_resumable_and_mixed_failures_are_partial() {
    let source = MemoryStore::new("src");
    seed(&source, &[Entry::variable("a", "1"), Entry::variable("b", "2")]).await;
    let target = Arc::new(Throttling { inner: MemoryStore::new("dst"), left: AtomicUsize::new(1000), fail_always: None });
    let p = make_plan(&source, target.as_ref(), &policy()).await;
    let opts = ApplyOptions { max_attempts: 3, ..ApplyOptions::default() };
    let report = apply::execute(&p, target.clone(), &opts, Arc::new(NoJournal)).await;
    assert_eq!(report.failures.len(), 2);
    assert_eq!(report.exit(), Exit::Throttled);

    let target = Arc::new(Throttling { inner: MemoryStore::new("dst"), left: AtomicUsize::new(0), fail_always: Some("b".into()) });
    let report = apply::execute(&p, target.clone(), &opts, Arc::new(NoJournal)).await;
    assert_eq!((report.created, report.failures.len()), (1, 1));
    assert_eq!(report.exit(), Exit::PartialApply);
    assert!(report.failures[0].message.contains("'b'"), "{}", report.failures[0].message);
}

#[tokio::test]
async fn a_large_plan_prints_as_streamed_tab_separated_lines_without_values() {
    let source = MemoryStore::new("src");
    let target = MemoryStore::new("dst");
    let entries: Vec<Entry> = (0..2500).map(|i| Entry::variable(format!("v{i:05}"), format!("{CANARY_VAR}-{i}"))).collect();
    seed(&source, &entries).await;
    let p = make_plan(&source, &target, &policy()).await;
    let text = render::table(&p, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], "action\tkind\tid\ttarget name\tdetails", "{}", &text[..200]);
    assert_eq!(lines.iter().filter(|l| l.starts_with("create\tvariable\tv")).count(), 2500);
    assert!(text.contains("2500 to create"));
    assert!(!text.contains(CANARY_VAR));
    // A small plan keeps the bordered table.
    let small = make_plan(&source, &MemoryStore::new("dst2"), &Policy::new(
        Selection::from_config(&SelectConfig { include: vec!["v0000?".into()], ..Default::default() }).unwrap(),
        &ApplyConfig::default(),
    ))
    .await;
    let text = render::table(&small, false);
    assert!(text.contains('│') || text.contains('─'), "{text}");
    // JSON streams to a writer and reads back.
    let mut out = Vec::new();
    render::write_json(&p, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["summary"]["create"], 2500);
}
