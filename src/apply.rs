//! Execute a [`Plan`] against the target. This module alone writes.
//!
//! Writes run with bounded concurrency, through the target's layers ([`crate::store::layer::stack`]):
//! retryable errors (throttling, 5xx) are retried there, with exponential backoff and jitter
//! honouring a backend's `Retry-After`, and writes are paced there; every write goes through a
//! [`Journal`] hook so the safety engine (snapshots, journal, resume) slots in; after the writes
//! every written item is read back and compared as Airflow would read it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::model::ItemId;
use crate::plan::{Action, Change, Plan};
use crate::store::layer::{self, Layer, RetryPolicy, StackOptions};
use crate::store::{Store, StoreError, StoreErrorKind};

/// The in-flight limiter lives with the stores (the Vault store's reads use it too).
pub use crate::store::limit;
use limit::{Feedback, Limiter};

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Writes in flight, fixed. `None`: the target's `write_concurrency` for a quota-paced target;
    /// for an unpaced one a limit that follows the measured latency up to it ([`limit`]).
    pub concurrency: Option<usize>,
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub verify: bool,
    /// Writes per second: `None` paces to the target's published quota
    /// ([`crate::store::Capabilities::write_rate`]), `Some(0.0)` does not pace.
    pub max_writes_per_second: Option<f64>,
    /// After this many consecutive writes that found the backend unreachable or unavailable (after
    /// their retries), the apply stops writing (a circuit breaker): the rest is left for a re-run.
    pub max_consecutive_unavailable: usize,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            concurrency: None,
            max_attempts: 6,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            verify: true,
            max_writes_per_second: None,
            max_consecutive_unavailable: 3,
        }
    }
}

impl ApplyOptions {
    /// The retry policy of these options (`max_attempts`, the backoff bounds).
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy { max_attempts: self.max_attempts.max(1), base_backoff: self.base_backoff, max_backoff: self.max_backoff }
    }

    /// The layers these options put over a target ([`layer::stack`]).
    pub fn layers(&self) -> StackOptions {
        StackOptions { retry: self.retry(), max_writes_per_second: self.max_writes_per_second, stop: None }
    }
}

/// Called around every write; the safety engine records journal entries here.
///
/// `before` must be durable before the write is sent (a run killed right after the write then
/// knows it may have happened). Outcomes (`after`) may be buffered until `flush`: an outcome lost
/// to a crash leaves the conservative "intent", and a resumed run re-plans from the target anyway.
#[async_trait]
pub trait Journal: Send + Sync {
    async fn before(&self, change: &Change) -> Result<(), StoreError>;
    async fn after(&self, change: &Change, ok: bool) -> Result<(), StoreError>;
    /// The intents of many writes at once (a buffering target, before its first write).
    async fn before_all(&self, changes: &[&Change]) -> Result<(), StoreError> {
        for c in changes {
            self.before(c).await?;
        }
        Ok(())
    }
    /// Make buffered outcomes durable (end of the apply).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// No journal (plain `migrate --apply` until the state database is configured).
pub struct NoJournal;

#[async_trait]
impl Journal for NoJournal {
    async fn before(&self, _: &Change) -> Result<(), StoreError> {
        Ok(())
    }
    async fn after(&self, _: &Change, _: bool) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One item that was not written.
#[derive(Debug)]
pub struct ItemFailure {
    pub id: ItemId,
    /// The class of the error (its exit code: `ItemFailure::exit` in `error.rs`).
    pub kind: StoreErrorKind,
    pub retryable: bool,
    /// The error's message: names the store and item, never a value.
    pub message: String,
}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub failures: Vec<ItemFailure>,
    pub verified: usize,
    /// Read back and found different from what was written.
    pub verify_mismatches: Vec<ItemId>,
    /// Written, but not read back (the read-back failed, or the backend went away): unknown, not
    /// different. A re-run re-plans them from the target.
    pub unverified: Vec<ItemId>,
    /// Planned writes never sent because the circuit breaker had opened.
    pub not_attempted: Vec<ItemId>,
    /// Why the apply stopped writing early (the backend became unreachable), if it did.
    pub interrupted: Option<String>,
}

impl ApplyReport {
    pub fn written(&self) -> usize {
        self.created + self.updated + self.deleted
    }

}

/// Stops an apply that keeps meeting a dead backend: `limit` consecutive outcomes that found it
/// unreachable or unavailable open the breaker, after which no further write is sent. Any success
/// closes the count again.
#[derive(Debug)]
struct Breaker {
    consecutive: AtomicUsize,
    /// Shared with the retry layer, which sends nothing again once it is set.
    open: Arc<AtomicBool>,
    limit: usize,
    reason: std::sync::Mutex<Option<String>>,
}

impl Breaker {
    fn new(limit: usize) -> Self {
        Self { consecutive: AtomicUsize::new(0), open: Arc::default(), limit: limit.max(1), reason: Default::default() }
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    fn record(&self, r: &Result<(), StoreError>) {
        match r {
            Ok(()) => self.consecutive.store(0, Ordering::SeqCst),
            Err(e @ (StoreError::Unreachable { .. } | StoreError::Unavailable { .. })) => {
                if self.consecutive.fetch_add(1, Ordering::SeqCst) + 1 >= self.limit && !self.open.swap(true, Ordering::SeqCst) {
                    warn!(error = %e, after = self.limit, "the target keeps failing to answer; no further writes are sent");
                    *self.reason.lock().expect("breaker") = Some(e.to_string());
                }
            }
            Err(_) => {}
        }
    }
}

/// Send one change through the target's layers (which retry and pace it); `None` when the breaker
/// had opened before it was sent.
async fn write_one(target: &dyn Store, change: &Change, breaker: &Breaker) -> Option<Result<(), StoreError>> {
    if breaker.is_open() {
        return None;
    }
    let result = match change.action {
        Action::Delete => target.delete(&change.id).await,
        Action::Create | Action::Update => {
            let entry = change.desired.as_ref().expect("create/update carries its entry");
            target.write(entry, &change.precondition).await
        }
        _ => return Some(Ok(())),
    };
    breaker.record(&result);
    Some(result)
}

/// Where an adaptive in-flight limit starts (at most the target's cap): today's fixed default, so
/// the first window behaves as before and a latency-bound target grows from there.
pub const ADAPTIVE_START: usize = 8;
/// The throughput an adaptive limit is sized for: it grows no further than this many writes per
/// second need at the measured latency (more in flight would only load the backend). A Vault
/// write 10 ms away is four calls, ~44 ms: ~36 in flight.
pub const ADAPTIVE_WRITES_PER_SECOND: f64 = 800.0;

/// Every write of `plan` failed with `e` before any was sent.
fn all_failed(plan: &Plan, e: &StoreError) -> ApplyReport {
    let failures = plan
        .writes()
        .map(|c| ItemFailure { id: c.id.clone(), kind: e.kind(), retryable: e.is_retryable(), message: format!("{} (not written: {e})", c.id) })
        .collect();
    ApplyReport { failures, ..ApplyReport::default() }
}

/// Apply every write of `plan` to `target`. The writes go through `target` under the layers of
/// `opts` ([`ApplyOptions::layers`]: retry over pacing), over this apply's in-flight limit, which
/// hears how each attempt went.
pub async fn execute(plan: &Plan, target: Arc<dyn Store>, opts: &ApplyOptions, journal: Arc<dyn Journal>) -> ApplyReport {
    let caps = target.capabilities();
    let writes: Vec<&Change> = plan.writes().collect();
    let rate = layer::pace::rate_for(&caps, opts.max_writes_per_second);
    let limiter = Arc::new(match (opts.concurrency, rate) {
        (Some(n), _) => Limiter::fixed(n),
        (None, Some(_)) => Limiter::fixed(caps.write_concurrency),
        (None, None) => Limiter::adaptive(ADAPTIVE_START, caps.write_concurrency, ADAPTIVE_WRITES_PER_SECOND),
    });
    let (concurrency, adaptive) = (limiter.limit(), limiter.is_adaptive());
    info!(target = %target, items = writes.len(), concurrency, adaptive, max = limiter.cap(), "applying plan");
    let breaker = &Breaker::new(opts.max_consecutive_unavailable);
    let measured: Arc<dyn Store> = Arc::new(Layer::new(target.clone(), Feedback::new(limiter.clone())));
    let layered = layer::stack(measured, &StackOptions { stop: Some(breaker.open.clone()), ..opts.layers() });
    let limiter = limiter.as_ref();

    let writes = &writes;
    // By index, not by `&Change`: a closure over references is higher-ranked, and rustc then
    // cannot prove the whole apply future `Send` (which the daemon's spawned jobs need).
    // A buffering target makes nothing durable before `flush`: its intents are journaled in one
    // go, and its outcomes once the flush has said what landed.
    let buffered = caps.buffered_writes;
    if buffered && let Err(e) = journal.before_all(writes).await {
        return all_failed(plan, &e);
    }
    // `None`: not attempted (the breaker had opened); its journal entry stays "planned".
    let results: Vec<(&Change, Option<Result<(), StoreError>>)> = futures::stream::iter(0..writes.len())
        .map(|i| {
            let change: &Change = writes[i];
            let target = layered.clone();
            let journal = journal.clone();
            async move {
                // Held from the journal's intent to its outcome, as one slot of the pipeline.
                let _slot = limiter.acquire().await;
                if breaker.is_open() {
                    return (change, None);
                }
                if !buffered && let Err(e) = journal.before(change).await {
                    return (change, Some(Err(e)));
                }
                let r = match write_one(target.as_ref(), change, breaker).await {
                    Some(r) => r,
                    // Journaled as attempted and failed: it may not be left for a rollback to skip.
                    None => Err(StoreError::Unavailable {
                        store: target.to_string(),
                        op: "write",
                        reason: "not sent: the target stopped answering".into(),
                    }),
                };
                if !buffered && let Err(e) = journal.after(change, r.is_ok()).await {
                    return (change, Some(Err(e)));
                }
                (change, Some(r))
            }
        })
        .buffer_unordered(limiter.cap())
        .collect()
        .await;
    if adaptive {
        debug!(target = %target, limit = limiter.limit(), peak = limiter.peak(), "writes done; in-flight limit at the end");
    }

    let mut report = ApplyReport::default();
    for (change, r) in &results {
        let Some(r) = r else {
            report.not_attempted.push(change.id.clone());
            continue;
        };
        match r {
            Ok(()) => match change.action {
                Action::Create => report.created += 1,
                Action::Update => report.updated += 1,
                Action::Delete => report.deleted += 1,
                _ => {}
            },
            Err(e) => {
                warn!(id = %change.id, error = %e, "write failed");
                // One line naming the item: store-level errors (a lost connection) do not.
                let message = match e {
                    StoreError::Item { .. } | StoreError::Conflict { .. } => e.to_string(),
                    _ => format!("{}: {e}", change.id),
                };
                report.failures.push(ItemFailure {
                    id: change.id.clone(),
                    kind: e.kind(),
                    retryable: e.is_retryable(),
                    message,
                });
            }
        }
    }
    let flushed = target.flush().await;
    if buffered {
        for (change, r) in results.iter().filter_map(|(c, r)| r.as_ref().map(|r| (c, r))) {
            let ok = r.is_ok() && flushed.is_ok();
            if let Err(e) = journal.after(change, ok).await {
                warn!(id = %change.id, error = %e, "journal: outcome not recorded");
            }
        }
    }
    if let Err(e) = journal.flush().await {
        warn!(error = %e, "journal: outcomes not recorded (the run re-plans them when resumed)");
    }
    if let Err(e) = flushed {
        // A buffering store (files, a metastore transaction) made nothing durable: every write
        // of this run failed with the flush's error.
        warn!(target = %target, error = %e, "flush failed; nothing was written");
        let done: std::collections::BTreeSet<ItemId> =
            report.failures.iter().map(|f| f.id.clone()).chain(report.not_attempted.iter().cloned()).collect();
        for change in plan.writes().filter(|c| !done.contains(&c.id)) {
            report.failures.push(ItemFailure {
                id: change.id.clone(),
                kind: e.kind(),
                retryable: e.is_retryable(),
                message: format!("{} (not written: {e})", change.id),
            });
        }
        report.created = 0;
        report.updated = 0;
        report.deleted = 0;
        report.failures.sort_by(|a, b| a.id.cmp(&b.id));
        return report;
    }
    report.interrupted = breaker.reason.lock().expect("breaker").take();
    if opts.verify {
        verify(plan, target.as_ref(), &mut report).await;
    }
    report.failures.sort_by(|a, b| a.id.cmp(&b.id));
    report.not_attempted.sort();
    report
}

/// Read back every item written and compare it the way Airflow would read it. An item that could
/// not be read back is *unverified* (unknown), never "differs": after the breaker opened nothing is
/// read, and a few failed read-back chunks in a row stop the reading too.
async fn verify(plan: &Plan, target: &dyn Store, report: &mut ApplyReport) {
    let caps = target.capabilities();
    let skipped: std::collections::BTreeSet<&ItemId> =
        report.failures.iter().map(|f| &f.id).chain(report.not_attempted.iter()).collect();
    let done: Vec<&Change> = plan.writes().filter(|c| !skipped.contains(&c.id)).collect();
    let ids: Vec<ItemId> = done.iter().map(|c| c.id.clone()).collect();
    if report.interrupted.is_some() {
        warn!(items = ids.len(), "the target went away: what was written is not read back (unverified)");
        report.unverified = ids;
        return;
    }
    let batch = caps.read_batch.max(1) * 50;
    let mut back = crate::model::Inventory::new();
    let mut unread: std::collections::BTreeSet<&ItemId> = std::collections::BTreeSet::new();
    let mut failed_in_a_row = 0;
    for chunk in ids.chunks(batch) {
        if failed_in_a_row >= 3 {
            unread.extend(chunk.iter());
            continue;
        }
        match target.read_back(chunk).await {
            Ok(inv) => {
                failed_in_a_row = 0;
                back.extend(inv);
            }
            Err(e) => {
                warn!(error = %e, items = chunk.len(), "read-back failed; these items are unverified");
                failed_in_a_row += 1;
                unread.extend(chunk.iter());
            }
        }
    }
    report.unverified.extend(unread.iter().map(|id| (*id).clone()));
    for change in done.into_iter().filter(|c| !unread.contains(&c.id)) {
        let ok = match change.action {
            Action::Delete => back.get(&change.id).is_none(),
            _ => {
                let desired = change.desired.as_ref().expect("write carries its entry");
                // What the plan predicted the target's reader reads back (the same model).
                let want = target.read_as(desired, &[plan.primary_reader]).ok().and_then(|mut v| v.pop()).and_then(Result::ok);
                back.get(&change.id).is_some_and(|got| {
                    want.is_some_and(|w| crate::airflow::fidelity::differences(&w, &got.value).is_empty())
                })
            }
        };
        if ok {
            report.verified += 1;
        } else {
            warn!(id = %change.id, "read-back differs from what was written");
            report.verify_mismatches.push(change.id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;

    #[tokio::test]
    async fn throttled_writes_are_retried_and_all_land() {
        use crate::model::{Entry, Inventory};
        use crate::store::layered::{Layer, Throttling};
        use crate::store::memory::MemoryStore;
        let src: Inventory = (0..40).map(|i| Entry::variable(format!("v{i}"), format!("x{i}"))).collect();
        let target = Arc::new(Layer::new(Arc::new(MemoryStore::new("t")), Throttling::new(3)));
        let policy = crate::plan::Policy::new(crate::plan::Selection::all(), &crate::config::ApplyConfig::default());
        let plan = crate::plan::diff(&MemoryStore::new("s"), &src, target.as_ref(), &Inventory::new(), &policy);
        let opts = ApplyOptions { base_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(20), ..Default::default() };
        let report = execute(&plan, target.clone(), &opts, Arc::new(NoJournal)).await;
        assert_eq!(report.exit(), Exit::Ok, "{:?}", report.failures);
        assert_eq!(report.created, 40);
        // Every third item's first attempt was refused and retried once.
        assert_eq!(target.hook().throttled.load(Ordering::SeqCst), 13);
    }

    /// Refuses the first read-back call.
    struct FirstReadBackFails(std::sync::atomic::AtomicBool);

    impl crate::store::layered::Hook for FirstReadBackFails {
        fn before(&self, store: &dyn std::fmt::Display, call: crate::store::layered::Call<'_>) -> Result<(), StoreError> {
            if matches!(call, crate::store::layered::Call::ReadBack(_)) && !self.0.swap(true, Ordering::SeqCst) {
                return Err(StoreError::Unavailable { store: store.to_string(), op: "read", reason: "connection reset".into() });
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_read_back_chunk_leaves_the_others_verified() {
        use crate::model::{Entry, Inventory};
        use crate::store::layered::Layer;
        use crate::store::memory::MemoryStore;
        // Read back 50 at a time (read_batch 1 × 50): 120 items are three chunks.
        let caps = crate::store::Capabilities { read_batch: 1, ..MemoryStore::new("t").capabilities() };
        let src: Inventory = (0..120).map(|i| Entry::variable(format!("v{i:03}"), format!("x{i}"))).collect();
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::with_capabilities("t", caps));
        let target = Arc::new(Layer::new(inner, FirstReadBackFails(Default::default())));
        let policy = crate::plan::Policy::new(crate::plan::Selection::all(), &crate::config::ApplyConfig::default());
        let plan = crate::plan::diff(&MemoryStore::new("s"), &src, target.as_ref(), &Inventory::new(), &policy);
        let report = execute(&plan, target, &ApplyOptions::default(), Arc::new(NoJournal)).await;
        assert_eq!(report.created, 120);
        assert_eq!(report.unverified.len(), 50, "the chunk whose read-back failed is unverified");
        assert!(report.verify_mismatches.is_empty(), "an unread item is unverified, not different");
        assert_eq!(report.verified, 70, "the other two chunks were read back and compared");
        assert_eq!(report.exit(), Exit::Throttled, "unverified: safe to re-run");
    }

    /// Accepts `n` writes, then the backend is gone: every call is refused as unreachable.
    struct DiesAfter(usize, std::sync::atomic::AtomicUsize);

    impl crate::store::layered::Hook for DiesAfter {
        fn before(&self, store: &dyn std::fmt::Display, call: crate::store::layered::Call<'_>) -> Result<(), StoreError> {
            let dead = match call {
                crate::store::layered::Call::Write(_) => self.1.fetch_add(1, Ordering::SeqCst) >= self.0,
                crate::store::layered::Call::Flush => false,
                _ => self.1.load(Ordering::SeqCst) >= self.0,
            };
            if dead {
                return Err(StoreError::Unreachable { store: store.to_string(), reason: "connection refused".into() });
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_backend_that_dies_mid_apply_opens_the_breaker() {
        use crate::model::{Entry, Inventory};
        use crate::store::layered::Layer;
        use crate::store::memory::MemoryStore;
        let caps = crate::store::Capabilities { write_concurrency: 4, ..MemoryStore::new("t").capabilities() };
        let src: Inventory = (0..500).map(|i| Entry::variable(format!("v{i:03}"), format!("x{i}"))).collect();
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::with_capabilities("t", caps));
        let target = Arc::new(Layer::new(inner, DiesAfter(100, Default::default())));
        let policy = crate::plan::Policy::new(crate::plan::Selection::all(), &crate::config::ApplyConfig::default());
        let plan = crate::plan::diff(&MemoryStore::new("s"), &src, target.as_ref(), &Inventory::new(), &policy);
        let report = execute(&plan, target.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
        assert_eq!(report.created, 100);
        assert!(report.interrupted.is_some());
        // The breaker opens after 3 consecutive failures; at most the writes already in flight follow.
        assert!(report.failures.len() <= 3 + 4, "{} writes were sent to a dead backend", report.failures.len());
        assert_eq!(report.failures.len() + report.not_attempted.len(), 400);
        assert_eq!(report.unverified.len(), 100, "written but never read back: unverified");
        assert!(report.verify_mismatches.is_empty(), "nothing was read back, so nothing differs");
        assert_eq!(report.exit(), Exit::Throttled, "unavailable: safe to re-run");
        assert!(target.hook().1.load(Ordering::SeqCst) <= 100 + 3 + 4);
    }
}
