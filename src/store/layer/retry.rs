//! The one retry loop. A throttled or briefly unavailable call ([`StoreError::is_retryable`]) is
//! sent again after an exponential backoff with full jitter, at least the backend's Retry-After
//! ([`StoreError::retry_after`]), until it succeeds, fails otherwise, or `max_attempts` attempts in
//! all were made. Stores never retry: they classify.
//!
//! **Loops never nest.** While a retry loop is sending a call, any other retry loop reached inside
//! it (a layer stacked twice, [`crate::store::scan_all`] over a retrying store) sends once and
//! leaves the repeating to the outer one, so a call is tried at most `max_attempts` times however
//! the layers are put together. (A task-local marks "inside a retry"; stores do not spawn tasks
//! for the calls they make.)
//!
//! Retried: scans, reads, writes and deletes. Not retried: a read-back after an apply (an item
//! not read back is reported unverified, and a re-run re-plans it), a flush (a buffered store's
//! commit is not known to be repeatable) and a health check.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;

use super::{Attempt, Call, Hook};
use crate::store::{DynStore, StoreError};

tokio::task_local! {
    /// Set while a retry loop sends a call: loops reached inside it send once.
    static RETRYING: ();
}

/// How often and how patiently a call is retried (`[apply] max_attempts`; the backoff bounds).
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The first backoff's upper bound; it doubles per attempt.
    pub base_backoff: Duration,
    /// The largest backoff (before a Retry-After hint, which is honoured as given).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 6, base_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 2` (after the `attempt + 1`-th failed): full jitter over
    /// `base × 2^attempt` (capped at `max_backoff`), and never less than the backend's hint. Full
    /// jitter keeps many workers from retrying in lockstep.
    pub fn backoff(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let exp = self.base_backoff.saturating_mul(1u32 << attempt.min(16)).min(self.max_backoff);
        let jittered = Duration::from_millis(rand::rng().random_range(0..=exp.as_millis() as u64));
        hint.map_or(jittered, |h| h.max(jittered))
    }

    /// Send `call` (each attempt is `attempt()`) until it succeeds, fails for good, `stop` is set, or
    /// `max_attempts` attempts were made; inside another loop, send it once.
    pub async fn run<S, T, F, Fut>(&self, store: &S, call: Call<'_>, stop: Option<&AtomicBool>, attempt: F) -> Result<T, StoreError>
    where
        S: fmt::Display + Sync + ?Sized,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        if RETRYING.try_with(|_| ()).is_ok() {
            return attempt().await;
        }
        let mut failed = 0;
        loop {
            match RETRYING.scope((), attempt()).await {
                Err(e)
                    if e.is_retryable()
                        && failed + 1 < self.max_attempts
                        && !stop.is_some_and(|s| s.load(Ordering::SeqCst)) =>
                {
                    let wait = self.backoff(failed, e.retry_after());
                    tracing::debug!(
                        store = %store,
                        op = call.op(),
                        item = call.item().map(tracing::field::display),
                        attempt = failed + 1,
                        wait_ms = wait.as_millis() as u64,
                        "retrying after a retryable error"
                    );
                    tokio::time::sleep(wait).await;
                    failed += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

/// Whether the retry layer sends `call` again (see the module docs).
pub fn retried(call: Call<'_>) -> bool {
    matches!(call, Call::Scan(_) | Call::Read(_) | Call::Write(_) | Call::Delete(_))
}

/// The retry layer's hook: [`RetryPolicy::run`] around every call [`retried`] names.
#[derive(Debug)]
pub struct Retry {
    policy: RetryPolicy,
    stop: Option<Arc<AtomicBool>>,
}

impl Retry {
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, stop: None }
    }

    /// Send nothing again once `stop` is set (the apply's circuit breaker opened).
    pub fn until(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl Hook for Retry {
    fn around<'a, T: Send + 'a>(
        &'a self,
        store: &'a DynStore,
        call: Call<'a>,
        attempt: Attempt<'a, T>,
    ) -> BoxFuture<'a, Result<T, StoreError>> {
        if !retried(call) {
            return attempt();
        }
        Box::pin(self.policy.run(store, call, self.stop.as_deref(), attempt))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::model::{Entry, Kind};
    use crate::store::layer::Layer;
    use crate::store::memory::MemoryStore;
    use crate::store::Precondition;

    /// Throttles every call it sees, counting them.
    #[derive(Default)]
    struct AlwaysThrottled(AtomicU32);

    impl Hook for AlwaysThrottled {
        fn before(&self, store: &dyn fmt::Display, call: Call<'_>) -> Result<(), StoreError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Throttled { store: store.to_string(), op: call.op(), retry_after: None })
        }
    }

    fn fast(max_attempts: u32) -> RetryPolicy {
        RetryPolicy { max_attempts, base_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(2) }
    }

    #[test]
    fn backoff_is_bounded_and_honours_the_hint() {
        let p = RetryPolicy::default();
        for attempt in 0..40 {
            assert!(p.backoff(attempt, None) <= p.max_backoff);
        }
        assert!(p.backoff(0, None) <= p.base_backoff);
        assert!(p.backoff(0, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn layers_stacked_twice_still_try_a_call_max_attempts_times() {
        let throttled = Arc::new(Layer::new(Arc::new(MemoryStore::new("m")), AlwaysThrottled::default()));
        let once: DynStore = Arc::new(Layer::new(throttled.clone(), Retry::new(fast(4))));
        let twice: DynStore = Arc::new(Layer::new(once, Retry::new(fast(3))));
        let e = twice.write(&Entry::variable("a", "1"), &Precondition::Any).await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert_eq!(throttled.hook().0.load(Ordering::SeqCst), 3, "the outer loop alone retried");

        // A scan through `scan_all` (a loop of its own) over a retrying store: the same.
        throttled.hook().0.store(0, Ordering::SeqCst);
        let retrying: DynStore = Arc::new(Layer::new(throttled.clone(), Retry::new(fast(4))));
        assert!(crate::store::scan_all(retrying.as_ref(), &[Kind::Variable]).await.is_err());
        assert_eq!(throttled.hook().0.load(Ordering::SeqCst), RetryPolicy::default().max_attempts);
    }

    #[tokio::test(start_paused = true)]
    async fn a_set_stop_flag_ends_the_retries_and_read_backs_are_sent_once() {
        let throttled = Arc::new(Layer::new(Arc::new(MemoryStore::new("m")), AlwaysThrottled::default()));
        let stop = Arc::new(AtomicBool::new(true));
        let store: DynStore = Arc::new(Layer::new(throttled.clone(), Retry::new(fast(5)).until(stop.clone())));
        assert!(store.write(&Entry::variable("a", "1"), &Precondition::Any).await.is_err());
        assert_eq!(throttled.hook().0.load(Ordering::SeqCst), 1);
        stop.store(false, Ordering::SeqCst);
        assert!(store.read_back(&[crate::model::ItemId::variable("a")]).await.is_err());
        assert_eq!(throttled.hook().0.load(Ordering::SeqCst), 2, "a read-back is not retried");
        assert!(store.delete(&crate::model::ItemId::variable("a")).await.is_err());
        assert_eq!(throttled.hook().0.load(Ordering::SeqCst), 7);
    }
}
