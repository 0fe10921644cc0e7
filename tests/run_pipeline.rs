//! The one run pipeline (`pipeline::run`): a rollback and a restore go through the same stages as
//! a migrate, so they honour `[apply]` (concurrency, pacing), report plan failures with the same
//! exit codes, and are observed by the same metrics layer.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use airflow_secrets_sync::config::Config;
use airflow_secrets_sync::daemon::metrics::{Metrics, StoreLabels};
use airflow_secrets_sync::error::{Exit, classify};
use airflow_secrets_sync::model::{Entry, Inventory, ItemId, Kind};
use airflow_secrets_sync::pipeline::{self, Endpoint, Mode, Operation, RunOutcome, RunRequest};
use airflow_secrets_sync::store::memory::MemoryStore;
use airflow_secrets_sync::store::{Capabilities, DynStore, Placement, Precondition, Store, StoreError};

const SNAPSHOT_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const CANARY: &str = "canary-value-5e1d";

/// A config whose stores the tests pass in open (`Endpoint::Open`); `[state]` in `dir`.
fn config(dir: &std::path::Path, apply: &str) -> Config {
    let state = dir.join("state.db");
    Config::from_toml(&format!(
        "[source]\nkind = \"memory\"\n\n[target]\nkind = \"memory\"\n\n[apply]\n{apply}\n\n[state]\npath = {:?}\nsnapshot_key = \"{SNAPSHOT_KEY}\"\n",
        state.display().to_string()
    ))
    .unwrap()
}

/// A store over a shared [`MemoryStore`] that counts the writes and deletes in flight, records
/// when each was sent (tokio's clock), and optionally answers with other capabilities. Each
/// write takes `latency`, as a backend a round trip away would.
struct Instrumented {
    inner: Arc<MemoryStore>,
    caps: Option<Capabilities>,
    latency: Duration,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
    sent: Mutex<Vec<tokio::time::Instant>>,
}

impl Instrumented {
    fn new(inner: Arc<MemoryStore>, latency: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner,
            caps: None,
            latency,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            sent: Mutex::new(Vec::new()),
        })
    }

    fn with_capabilities(inner: Arc<MemoryStore>, caps: Capabilities) -> Arc<Self> {
        let mut s = Self::new(inner, Duration::ZERO);
        Arc::get_mut(&mut s).unwrap().caps = Some(caps);
        s
    }

    async fn counted<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.sent.lock().unwrap().push(tokio::time::Instant::now());
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let r = f.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// Time from the first write sent to the last.
    fn spread(&self) -> Duration {
        let sent = self.sent.lock().unwrap();
        sent.last().unwrap().duration_since(*sent.first().unwrap())
    }
}

impl fmt::Display for Instrumented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl Store for Instrumented {
    fn capabilities(&self) -> Capabilities {
        self.caps.clone().unwrap_or_else(|| self.inner.capabilities())
    }
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn locate(&self, id: &ItemId) -> Placement {
        self.inner.locate(id)
    }
    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        self.inner.scan(kind).await
    }
    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        self.inner.read(ids).await
    }
    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        self.counted(self.inner.write(entry, pre)).await
    }
    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        self.counted(self.inner.delete(id)).await
    }
}

fn open(store: Arc<impl Store + 'static>) -> Endpoint {
    let s: DynStore = store;
    Endpoint::Open(s)
}

/// A target holding `n` variables `v00..` ("old"), a source with new values for them: `migrate
/// --apply` records run 1, whose rollback writes the `n` old values back.
async fn applied_run(cfg: &Config, n: usize) -> (Arc<MemoryStore>, String) {
    let target = Arc::new(MemoryStore::new("dst"));
    let source = Arc::new(MemoryStore::new("src"));
    for i in 0..n {
        target.write(&Entry::variable(format!("v{i:02}"), format!("old-{i}")), &Precondition::Any).await.unwrap();
        source.write(&Entry::variable(format!("v{i:02}"), format!("{CANARY}-{i}")), &Precondition::Any).await.unwrap();
    }
    let req = RunRequest::new(cfg, Operation::Migrate, open(source), open(target.clone()), Mode::Apply);
    let outcome = run(cfg, req).await;
    assert_eq!(exit(&outcome), Exit::Ok);
    assert_eq!(outcome.report.as_ref().unwrap().updated, n);
    (target, outcome.run_id.expect("a snapshotted apply records its run"))
}

async fn run(cfg: &Config, req: RunRequest) -> RunOutcome {
    let mut out = Vec::new();
    let outcome = pipeline::run(cfg, req, &mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains(CANARY), "a value was printed:\n{text}");
    if let Err(e) = &outcome.result {
        assert!(!format!("{e:#}").contains(CANARY), "a value in the error: {e:#}");
    }
    outcome
}

fn exit(outcome: &RunOutcome) -> Exit {
    match &outcome.result {
        Ok(exit) => *exit,
        Err(e) => classify(e),
    }
}

async fn value(store: &MemoryStore, id: &str) -> String {
    let inv = store.read(&[ItemId::variable(id)]).await.unwrap();
    match &inv.get(&ItemId::variable(id)).unwrap().value {
        airflow_secrets_sync::model::Value::Variable(v) => v.value.expose_plaintext().to_string(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_rollback_honours_apply_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "concurrency = 2\nmax_writes_per_second = 0");
    let (target, run1) = applied_run(&cfg, 24).await;

    let counted = Instrumented::new(target.clone(), Duration::from_millis(3));
    let mut req = RunRequest::rollback(&cfg, &run1, Mode::Apply);
    req.target = open(counted.clone());
    let outcome = run(&cfg, req).await;
    assert_eq!(exit(&outcome), Exit::Ok, "{:?}", outcome.result);
    assert_eq!(outcome.report.as_ref().unwrap().updated, 24);
    assert_eq!(counted.calls.load(Ordering::SeqCst), 24);
    let peak = counted.peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "[apply] concurrency = 2, but {peak} rollback writes were in flight at once");
    assert_eq!(value(&target, "v07").await, "old-7");
}

#[tokio::test]
async fn a_rollback_honours_apply_max_writes_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "max_writes_per_second = 40");
    let (target, run1) = applied_run(&cfg, 9).await;

    let counted = Instrumented::new(target.clone(), Duration::ZERO);
    let mut req = RunRequest::rollback(&cfg, &run1, Mode::Apply);
    req.target = open(counted.clone());
    let outcome = run(&cfg, req).await;
    assert_eq!(exit(&outcome), Exit::Ok, "{:?}", outcome.result);
    assert_eq!(counted.calls.load(Ordering::SeqCst), 9);
    // Paced at 40/s, the 9th write is sent at least 8 × 25 ms after the pacer's first slot; allow
    // the first write one slot of scheduling delay. A lower bound only: it never waits on timing.
    let spread = counted.spread();
    assert!(spread >= Duration::from_millis(175), "9 writes at 40/s were sent within {spread:?}");
}

#[tokio::test]
async fn a_rollback_plan_fails_the_way_a_migrate_plan_does() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    // Run 1 replaced a 300-byte value; the target now takes at most 100 bytes per value, so the
    // rollback cannot put the old one back: an item error in the plan, found before any write.
    let target = Arc::new(MemoryStore::new("dst"));
    target.write(&Entry::variable("big", "x".repeat(300)), &Precondition::Any).await.unwrap();
    let source = Arc::new(MemoryStore::new("src"));
    source.write(&Entry::variable("big", "small"), &Precondition::Any).await.unwrap();
    let req = RunRequest::new(&cfg, Operation::Migrate, open(source), open(target.clone()), Mode::Apply);
    let first = run(&cfg, req).await;
    assert_eq!(exit(&first), Exit::Ok);
    let run1 = first.run_id.unwrap();
    let mut caps = target.capabilities();
    caps.max_value_bytes = Some(100);
    let limited = Instrumented::with_capabilities(target.clone(), caps);

    // migrate --plan of the same value into the same target.
    let old = Arc::new(MemoryStore::new("old"));
    old.write(&Entry::variable("big", "x".repeat(300)), &Precondition::Any).await.unwrap();
    let req = RunRequest::new(&cfg, Operation::Migrate, open(old), open(limited.clone()), Mode::Plan);
    let migrate_plan = run(&cfg, req).await;
    assert_eq!(exit(&migrate_plan), Exit::InvalidItem, "{:?}", migrate_plan.result);

    let mut req = RunRequest::rollback(&cfg, &run1, Mode::Plan);
    req.target = open(limited.clone());
    let rollback_plan = run(&cfg, req).await;
    assert_eq!(exit(&rollback_plan), exit(&migrate_plan), "rollback --plan: {:?}", rollback_plan.result);
    assert_eq!(rollback_plan.plan.as_ref().unwrap().errors, 1);
    assert_eq!(rollback_plan.item_errors.len(), 1);
    assert_eq!(limited.calls.load(Ordering::SeqCst), 0, "a plan writes nothing");

    // --apply refuses the same plan before writing, with the same exit.
    let mut req = RunRequest::rollback(&cfg, &run1, Mode::Apply);
    req.target = open(limited.clone());
    let rollback_apply = run(&cfg, req).await;
    assert_eq!(exit(&rollback_apply), Exit::InvalidItem, "{:?}", rollback_apply.result);
    assert_eq!(limited.calls.load(Ordering::SeqCst), 0, "nothing is written");
    assert_eq!(value(&target, "big").await, "small");
}

fn calls(metrics: &Metrics, store: &str, op: &str) -> u64 {
    metrics.api_calls.get_or_create(&StoreLabels { store: store.into(), op: op.into() }).get()
}

#[tokio::test]
async fn rollback_and_restore_runs_are_metered_and_reported_as_migrate_runs_are() {
    use airflow_secrets_sync::daemon::job::status_of_outcome;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let metrics = Metrics::new();
    let now = chrono::Utc::now();
    let (target, run1) = applied_run(&cfg, 5).await;

    let mut req = RunRequest::rollback(&cfg, &run1, Mode::Apply);
    req.target = open(target.clone());
    req.observer = Some(metrics.clone());
    let rollback = run(&cfg, req).await;
    assert_eq!(exit(&rollback), Exit::Ok, "{:?}", rollback.result);
    assert_eq!(calls(&metrics, "memory:dst", "write"), 5, "{}", metrics.encode());
    assert_eq!(calls(&metrics, "memory:dst", "scan"), 2, "{}", metrics.encode());
    let status = status_of_outcome(now, now, &rollback);
    assert_eq!((status.result, status.exit_code), ("success", 0));
    let applied = status.applied.expect("the rollback's writes are reported");
    assert_eq!((applied.updated, applied.failed), (5, 0));
    assert!(status.run_id.is_some() && status.run_id.as_deref() != Some(run1.as_str()));

    // Restore what run 1 found into a fresh store, through the same layer.
    let fresh = Arc::new(MemoryStore::new("fresh"));
    let mut req =
        RunRequest::new(&cfg, Operation::Restore, Endpoint::Snapshot(run1.clone()), open(fresh.clone()), Mode::Apply);
    req.observer = Some(metrics.clone());
    let restore = run(&cfg, req).await;
    assert_eq!(exit(&restore), Exit::Ok, "{:?}", restore.result);
    assert_eq!(calls(&metrics, "memory:fresh", "write"), 5, "{}", metrics.encode());
    let status = status_of_outcome(now, now, &restore);
    assert_eq!(status.applied.map(|a| a.created), Some(5));
    assert_eq!(value(&fresh, "v03").await, "old-3");
    assert!(!metrics.encode().contains(CANARY));
}
