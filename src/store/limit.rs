//! How many writes an apply keeps in flight: a fixed number, or a limit that follows the
//! target's measured latency.
//!
//! A quota-paced target (its writes are spaced to a published rate) and an explicit
//! `[apply] concurrency` get a [`Limiter::fixed`] limit. An unpaced target (Vault, files, the
//! metastore) gets [`Limiter::adaptive`]: the limit starts small and moves in *windows* of as many
//! completed writes as the limit allows in flight (one "round trip" of the pipeline), AIMD as TCP
//! does:
//!
//! - the window's mean write latency stays within 1.5× (plus 1 ms) of the lowest window mean seen:
//!   more in flight is not queueing at the backend, so the limit doubles (slow start, until the
//!   first sign of congestion) or grows by one (after it), up to the target's cap
//!   ([`crate::store::Capabilities::write_concurrency`]) and no further than the in-flight count
//!   a target rate needs at that base latency (Little's law: in flight = rate × latency; 800
//!   writes/s for an apply): a backend that answers in 5 ms gets no more than the start, one a
//!   10 ms round trip away (~44 ms per Vault write: four calls) about 36;
//! - the mean rose beyond that: the extra writes only queue at a saturated backend, so the limit
//!   shrinks by 10 %;
//! - a throttled, unavailable or unreachable answer halves the limit at once, at most once per
//!   window (the writes already in flight when it shrank answer in the same window).
//!
//! A backend a network round trip away (latency flat as writes are added) so climbs to the cap
//! within a few windows, while a loopback server that is CPU-bound stays near the concurrency it
//! can serve.
//!
//! The Vault store's reads during plans (scans and GETs, `read_concurrency`) use the same limiter,
//! which is why it lives under `store/` (`crate::apply::limit` re-exports it).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;

/// What one write attempt told the limiter.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// Answered, in this long.
    Answered(Duration),
    /// Throttled, unavailable or unreachable: the backend wants less.
    Overloaded,
    /// Refused for a reason of the item's own (a conflict, a bad value): no signal.
    Other,
}

impl Outcome {
    /// What a store call that was sent at `sent` told the limiter.
    pub fn of<T>(result: &Result<T, crate::store::StoreError>, sent: tokio::time::Instant) -> Self {
        use crate::store::StoreError as E;
        match result {
            Ok(_) => Outcome::Answered(sent.elapsed()),
            Err(E::Throttled { .. } | E::Unavailable { .. } | E::Unreachable { .. }) => Outcome::Overloaded,
            Err(_) => Outcome::Other,
        }
    }
}

/// A hook that tells a write [`Limiter`] how each write or delete attempt went (a retry is an
/// attempt of its own), timed from when it was sent: put it under the retry and pacing layers.
pub struct Feedback(std::sync::Arc<Limiter>);

impl Feedback {
    pub fn new(limiter: std::sync::Arc<Limiter>) -> Self {
        Self(limiter)
    }
}

impl crate::store::layer::Hook for Feedback {
    fn around<'a, T: Send + 'a>(
        &'a self,
        _store: &'a crate::store::DynStore,
        call: crate::store::layer::Call<'a>,
        attempt: crate::store::layer::Attempt<'a, T>,
    ) -> futures::future::BoxFuture<'a, Result<T, crate::store::StoreError>> {
        use crate::store::layer::Call;
        if !matches!(call, Call::Write(_) | Call::Delete(_)) {
            return attempt();
        }
        Box::pin(async move {
            let sent = tokio::time::Instant::now();
            let outcome = attempt().await;
            self.0.record(Outcome::of(&outcome, sent));
            outcome
        })
    }
}

/// The AIMD state of an adaptive limit (no clock: the caller measures latencies).
#[derive(Debug)]
struct Aimd {
    limit: f64,
    cap: f64,
    start: f64,
    /// Operations per second the limit is sized for: it never grows beyond rate × base latency.
    rate: f64,
    slow_start: bool,
    /// The lowest window mean latency seen: the backend's latency when nothing queues.
    base: Option<Duration>,
    window: Window,
}

#[derive(Debug, Default)]
struct Window {
    len: usize,
    completed: usize,
    answered: usize,
    total: Duration,
    shrunk: bool,
}

impl Window {
    fn new(len: usize) -> Self {
        Self { len: len.max(1), ..Self::default() }
    }
}

impl Aimd {
    /// Within this factor (plus [`Self::SLACK`]) of the base latency, nothing is queueing.
    const TOLERANCE: f64 = 1.5;
    /// Absolute slack, so near-zero latencies (files, memory) count as flat.
    const SLACK: Duration = Duration::from_millis(1);

    fn new(start: usize, cap: usize, rate: f64) -> Self {
        let cap = cap.max(1);
        let start = start.clamp(1, cap);
        let (limit, cap, rate) = (start as f64, cap as f64, rate.max(0.0));
        Self { limit, cap, start: limit, rate, slow_start: true, base: None, window: Window::new(start) }
    }

    /// The most the limit may grow to: what `rate` needs at the base latency, within start..cap.
    fn ceiling(&self) -> f64 {
        let need = self.base.map_or(0.0, |b| (b.as_secs_f64() * self.rate).ceil());
        need.clamp(self.start, self.cap)
    }

    fn current(&self) -> usize {
        (self.limit.floor() as usize).max(1)
    }

    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Answered(latency) => {
                self.window.answered += 1;
                self.window.total += latency;
            }
            Outcome::Overloaded if !self.window.shrunk => {
                self.window.shrunk = true;
                self.slow_start = false;
                self.limit = (self.limit / 2.0).max(1.0);
            }
            Outcome::Overloaded | Outcome::Other => {}
        }
        self.window.completed += 1;
        if self.window.completed >= self.window.len {
            self.end_window();
        }
    }

    fn end_window(&mut self) {
        let w = std::mem::take(&mut self.window);
        if !w.shrunk && w.answered > 0 {
            let mean = w.total / w.answered as u32;
            let base = *self.base.get_or_insert(mean);
            let base = base.min(mean);
            self.base = Some(base);
            if mean > base.mul_f64(Self::TOLERANCE) + Self::SLACK {
                self.slow_start = false;
                self.limit = (self.limit * 0.9).max(1.0);
            } else if self.limit < self.ceiling() {
                let grown = if self.slow_start { self.limit * 2.0 } else { self.limit + 1.0 };
                self.limit = grown.min(self.ceiling());
            }
        }
        self.window = Window::new(self.current());
    }
}

/// The in-flight limit shared by every worker of one apply.
#[derive(Debug)]
pub struct Limiter {
    permits: Semaphore,
    state: Mutex<State>,
    /// What is limited, for the logs: "write" or "read".
    what: &'static str,
}

#[derive(Debug)]
struct State {
    /// `None`: a fixed limit.
    aimd: Option<Aimd>,
    fixed: usize,
    /// Permits in existence (held or available); moves toward the limit as permits return.
    granted: usize,
    /// The most held at once (for logs and tests).
    peak: usize,
    held: usize,
}

impl State {
    fn limit(&self) -> usize {
        self.aimd.as_ref().map_or(self.fixed, Aimd::current)
    }
}

/// One write's slot; returned when dropped.
pub struct Permit<'a>(&'a Limiter);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().expect("limiter");
        s.held -= 1;
        if s.granted > s.limit() {
            // Shrinking: this slot is retired instead of returned.
            s.granted -= 1;
        } else {
            self.0.permits.add_permits(1);
        }
        self.0.grow(&mut s);
    }
}

impl Limiter {
    /// Always `n` in flight (`[apply] concurrency`, a quota-paced target).
    pub fn fixed(n: usize) -> Self {
        let n = n.max(1);
        Self::with(None, n)
    }

    /// Starts at `start` in flight and follows the measured latency, never above `cap` nor above
    /// what `rate` operations per second need at the measured base latency.
    pub fn adaptive(start: usize, cap: usize, rate: f64) -> Self {
        let aimd = Aimd::new(start, cap, rate);
        let n = aimd.current();
        Self::with(Some(aimd), n)
    }

    fn with(aimd: Option<Aimd>, n: usize) -> Self {
        let state = State { aimd, fixed: n, granted: n, peak: 0, held: 0 };
        Self { permits: Semaphore::new(n), state: Mutex::new(state), what: "write" }
    }

    /// Name what is limited in the logs ("read").
    pub fn limiting(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }

    /// Whether the limit adapts.
    pub fn is_adaptive(&self) -> bool {
        self.state.lock().expect("limiter").aimd.is_some()
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.state.lock().expect("limiter").limit()
    }

    /// The most slots held at once so far.
    pub fn peak(&self) -> usize {
        self.state.lock().expect("limiter").peak
    }

    /// The most the limit can ever be (for sizing the worker pool).
    pub fn cap(&self) -> usize {
        let s = self.state.lock().expect("limiter");
        s.aimd.as_ref().map_or(s.fixed, |a| a.cap as usize)
    }

    /// Wait for a slot (first come, first served).
    pub async fn acquire(&self) -> Permit<'_> {
        self.permits.acquire().await.expect("the limiter's semaphore is never closed").forget();
        let mut s = self.state.lock().expect("limiter");
        s.held += 1;
        s.peak = s.peak.max(s.held);
        Permit(self)
    }

    /// What one attempt found; an adaptive limit moves on it, a fixed one ignores it.
    pub fn record(&self, outcome: Outcome) {
        let mut s = self.state.lock().expect("limiter");
        let Some(aimd) = s.aimd.as_mut() else { return };
        let before = aimd.current();
        aimd.record(outcome);
        let after = aimd.current();
        if after != before {
            tracing::debug!(op = self.what, from = before, to = after, "in-flight limit changed");
        }
        self.grow(&mut s);
    }

    /// Add the slots a higher limit allows.
    fn grow(&self, s: &mut State) {
        let limit = s.limit();
        if s.granted < limit {
            self.permits.add_permits(limit - s.granted);
            s.granted = limit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    const RTT: Duration = Duration::from_millis(40);
    /// A rate no latency here limits: the AIMD alone.
    const UNSIZED: f64 = 1e9;

    #[test]
    fn the_limit_grows_only_as_far_as_the_target_rate_needs_at_the_measured_latency() {
        for (latency_ms, settles) in [(2, 8), (12, 12), (40, 40), (100, 64)] {
            let mut a = Aimd::new(8, 64, 1000.0);
            for _ in 0..1000 {
                a.record(Outcome::Answered(Duration::from_millis(latency_ms)));
            }
            assert_eq!(a.current(), settles, "{latency_ms} ms per write at 1000 writes/s");
        }
    }

    #[test]
    fn under_constant_latency_the_limit_climbs_to_the_cap_and_stays() {
        let mut a = Aimd::new(8, 64, UNSIZED);
        let mut seen = vec![a.current()];
        for _ in 0..1000 {
            a.record(Outcome::Answered(RTT));
            if *seen.last().unwrap() != a.current() {
                seen.push(a.current());
            }
        }
        // Slow start: doubling once per window (8, 16 then 32 writes).
        assert_eq!(seen, [8, 16, 32, 64]);
        assert_eq!(a.current(), 64, "capped");
    }

    #[test]
    fn a_throttle_halves_the_limit_once_per_window_and_it_climbs_back_by_one() {
        let mut a = Aimd::new(32, 64, UNSIZED);
        for _ in 0..5 {
            a.record(Outcome::Overloaded);
        }
        assert_eq!(a.current(), 16, "a burst of throttles in one window halves once");
        // Finish that window (32 long), then one clean window of 16 adds one.
        for _ in 0..(32 - 5) {
            a.record(Outcome::Answered(RTT));
        }
        assert_eq!(a.current(), 16, "the window that shrank does not grow");
        for _ in 0..16 {
            a.record(Outcome::Answered(RTT));
        }
        assert_eq!(a.current(), 17, "after a throttle: additive increase, no more doubling");
        for _ in 0..20 {
            a.record(Outcome::Overloaded);
            for _ in 0..a.current() {
                a.record(Outcome::Other);
            }
        }
        assert_eq!(a.current(), 1, "never below one");
    }

    #[test]
    fn rising_latency_stops_the_growth_and_shrinks_the_limit() {
        // A saturated backend: every extra write in flight only queues (latency ∝ in flight).
        let mut a = Aimd::new(8, 64, UNSIZED);
        let per_write = Duration::from_millis(5);
        let mut highest = 0;
        for _ in 0..5000 {
            let in_flight = a.current() as u32;
            a.record(Outcome::Answered(per_write * in_flight));
            highest = highest.max(a.current());
        }
        assert_eq!(highest, 16, "one doubling showed the queueing; no further");
        assert!((10..=13).contains(&a.current()), "settles where latency stays within 1.5× of the base: {}", a.current());
    }

    #[test]
    fn other_failures_carry_no_signal_and_a_fixed_limit_never_moves() {
        let mut a = Aimd::new(8, 64, UNSIZED);
        for _ in 0..8 {
            a.record(Outcome::Other);
        }
        assert_eq!(a.current(), 8, "a window without answers changes nothing");
        let fixed = Limiter::fixed(4);
        for _ in 0..100 {
            fixed.record(Outcome::Answered(RTT));
            fixed.record(Outcome::Overloaded);
        }
        assert_eq!(fixed.limit(), 4);
        assert!(!fixed.is_adaptive());
    }

    #[tokio::test(start_paused = true)]
    async fn slots_follow_the_limit_both_ways() {
        let l = Limiter::adaptive(4, 16, UNSIZED);
        let held: Vec<Permit<'_>> = futures::future::join_all((0..4).map(|_| l.acquire())).await;
        // A fifth waits while four are held.
        assert!(tokio::time::timeout(Duration::from_secs(1), l.acquire()).await.is_err());
        for _ in 0..4 {
            l.record(Outcome::Answered(RTT));
        }
        assert_eq!(l.limit(), 8, "one clean window doubled it");
        let more: Vec<Permit<'_>> = futures::future::join_all((0..4).map(|_| l.acquire())).await;
        assert_eq!(l.peak(), 8, "the new slots are usable at once, before any is returned");
        l.record(Outcome::Overloaded);
        assert_eq!(l.limit(), 4);
        drop(held);
        drop(more);
        let again: Vec<Permit<'_>> = futures::future::join_all((0..4).map(|_| l.acquire())).await;
        assert!(tokio::time::timeout(Duration::from_secs(1), l.acquire()).await.is_err(), "retired slots stay retired");
        drop(again);
    }

    /// A backend a round trip away: every write takes `latency(in flight)`, and a write sent
    /// while more than `throttle_above` are in flight is refused as throttled.
    struct Remote {
        inner: crate::store::memory::MemoryStore,
        latency: fn(usize) -> Duration,
        throttle_above: usize,
        in_flight: std::sync::atomic::AtomicUsize,
        peak: std::sync::atomic::AtomicUsize,
        throttled: std::sync::atomic::AtomicUsize,
    }

    impl Remote {
        fn new(cap: usize, latency: fn(usize) -> Duration, throttle_above: usize) -> std::sync::Arc<Self> {
            let caps = crate::store::Capabilities { write_concurrency: cap, ..crate::store::memory::MemoryStore::new("t").capabilities() };
            std::sync::Arc::new(Self {
                inner: crate::store::memory::MemoryStore::with_capabilities("remote", caps),
                latency,
                throttle_above,
                in_flight: Default::default(),
                peak: Default::default(),
                throttled: Default::default(),
            })
        }
        fn peak(&self) -> usize {
            self.peak.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl std::fmt::Display for Remote {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.inner.fmt(f)
        }
    }

    #[async_trait::async_trait]
    impl crate::store::Store for Remote {
        fn capabilities(&self) -> crate::store::Capabilities {
            self.inner.capabilities()
        }
        async fn scan(&self, kind: crate::model::Kind) -> Result<crate::model::Inventory, crate::store::StoreError> {
            self.inner.scan(kind).await
        }
        async fn write(&self, entry: &crate::model::Entry, pre: &crate::store::Precondition) -> Result<(), crate::store::StoreError> {
            use std::sync::atomic::Ordering::SeqCst;
            let n = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.peak.fetch_max(n, SeqCst);
            tokio::time::sleep((self.latency)(n)).await;
            self.in_flight.fetch_sub(1, SeqCst);
            if n > self.throttle_above {
                self.throttled.fetch_add(1, SeqCst);
                return Err(crate::store::StoreError::Throttled { store: self.to_string(), op: "write", retry_after: None });
            }
            self.inner.write(entry, pre).await
        }
        async fn delete(&self, id: &crate::model::ItemId) -> Result<(), crate::store::StoreError> {
            self.inner.delete(id).await
        }
    }

    async fn apply(target: std::sync::Arc<Remote>, items: usize, concurrency: Option<usize>) -> crate::apply::ApplyReport {
        use crate::model::{Entry, Inventory};
        let src: Inventory = (0..items).map(|i| Entry::variable(format!("v{i:05}"), format!("x{i}"))).collect();
        let policy = crate::plan::Policy::new(crate::plan::Selection::all(), &crate::config::ApplyConfig::default());
        let source = crate::store::memory::MemoryStore::new("s");
        let plan = crate::plan::diff(&source, &src, target.as_ref(), &Inventory::new(), &policy);
        let opts = crate::apply::ApplyOptions {
            concurrency,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        };
        crate::apply::execute(&plan, target, &opts, std::sync::Arc::new(crate::apply::NoJournal)).await
    }

    /// A write 100 ms away (a Vault write is four calls): 800 writes/s need more than the cap.
    fn flat(_: usize) -> Duration {
        Duration::from_millis(100)
    }

    #[tokio::test(start_paused = true)]
    async fn an_apply_to_a_remote_backend_grows_to_the_cap_and_a_configured_concurrency_pins_it() {
        let remote = Remote::new(64, flat, usize::MAX);
        let report = apply(remote.clone(), 2000, None).await;
        assert_eq!(report.created, 2000, "{:?}", report.failures);
        assert_eq!(remote.peak(), 64, "constant latency: the limit reached the target's cap");

        // On loopback (2 ms a write) 8 in flight already exceed 800 writes/s: it stays at the start.
        let near = Remote::new(64, |_| Duration::from_millis(2), usize::MAX);
        assert_eq!(apply(near.clone(), 2000, None).await.created, 2000);
        assert_eq!(near.peak(), 8);

        let pinned = Remote::new(64, flat, usize::MAX);
        let report = apply(pinned.clone(), 500, Some(4)).await;
        assert_eq!(report.created, 500);
        assert_eq!(pinned.peak(), 4, "[apply] concurrency is a fixed limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttling_backend_gets_fewer_writes_in_flight() {
        // The backend refuses what it receives beyond 20 in flight.
        let remote = Remote::new(64, flat, 20);
        let report = apply(remote.clone(), 2000, None).await;
        assert_eq!(report.created, 2000, "{:?}", report.failures);
        let throttled = remote.throttled.load(std::sync::atomic::Ordering::SeqCst);
        // The same at a fixed 64 in flight: most of every wave is refused, and some writes run
        // out of attempts.
        let fixed = Remote::new(64, flat, 20);
        let hammered_report = apply(fixed.clone(), 2000, Some(64)).await;
        assert!(hammered_report.created < 2000, "at a fixed 64 some writes ran out of attempts");
        let hammered = fixed.throttled.load(std::sync::atomic::Ordering::SeqCst);
        assert!(throttled * 10 < hammered, "adaptive: {throttled} throttled answers; fixed at 64: {hammered}");
        assert!(throttled < 100, "{throttled} throttled answers for 2000 writes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_saturated_backend_keeps_the_limit_near_what_it_serves() {
        // Each write in flight adds 5 ms: more in flight only queues.
        let remote = Remote::new(64, |n| Duration::from_millis(5) * n as u32, usize::MAX);
        let report = apply(remote.clone(), 2000, None).await;
        assert_eq!(report.created, 2000);
        assert!(remote.peak() <= 16, "latency rose, the limit stopped growing: peak {}", remote.peak());
    }
}
