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
//!   ([`crate::store::Capabilities::write_concurrency`]);
//! - the mean rose beyond that: the extra writes only queue at a saturated backend, so the limit
//!   shrinks by 10 %;
//! - a throttled, unavailable or unreachable answer halves the limit at once, at most once per
//!   window (the writes already in flight when it shrank answer in the same window).
//!
//! A backend a network round trip away (latency flat as writes are added) so climbs to the cap
//! within a few windows, while a loopback server that is CPU-bound stays near the concurrency it
//! can serve.

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

/// The AIMD state of an adaptive limit (no clock: the caller measures latencies).
#[derive(Debug)]
struct Aimd {
    limit: f64,
    cap: f64,
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

    fn new(start: usize, cap: usize) -> Self {
        let cap = cap.max(1);
        let start = start.clamp(1, cap);
        Self { limit: start as f64, cap: cap as f64, slow_start: true, base: None, window: Window::new(start) }
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
            } else if self.slow_start {
                self.limit = (self.limit * 2.0).min(self.cap);
            } else {
                self.limit = (self.limit + 1.0).min(self.cap);
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

    /// Starts at `start` in flight and follows the measured latency, never above `cap`.
    pub fn adaptive(start: usize, cap: usize) -> Self {
        let aimd = Aimd::new(start, cap);
        let n = aimd.current();
        Self::with(Some(aimd), n)
    }

    fn with(aimd: Option<Aimd>, n: usize) -> Self {
        let state = State { aimd, fixed: n, granted: n, peak: 0, held: 0 };
        Self { permits: Semaphore::new(n), state: Mutex::new(state) }
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
            tracing::debug!(from = before, to = after, "in-flight write limit changed");
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

    #[test]
    fn under_constant_latency_the_limit_climbs_to_the_cap_and_stays() {
        let mut a = Aimd::new(8, 64);
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
        let mut a = Aimd::new(32, 64);
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
        let mut a = Aimd::new(8, 64);
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
        let mut a = Aimd::new(8, 64);
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
        let l = Limiter::adaptive(4, 16);
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

    fn flat(_: usize) -> Duration {
        Duration::from_millis(40)
    }

    #[tokio::test(start_paused = true)]
    async fn an_apply_to_a_remote_backend_grows_to_the_cap_and_a_configured_concurrency_pins_it() {
        let remote = Remote::new(64, flat, usize::MAX);
        let report = apply(remote.clone(), 2000, None).await;
        assert_eq!(report.created, 2000, "{:?}", report.failures);
        assert_eq!(remote.peak(), 64, "constant latency: the limit reached the target's cap");

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
