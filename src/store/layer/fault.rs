//! Fault injection, as [`Hook`]s:
//!
//! - [`AbortAfter`]: `AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER=N` makes the process `abort()` right
//!   after the N-th successful write reaches the target and before the journal records it: the
//!   worst moment to die, which the resume/rollback tests aim at. Honoured only in builds with the
//!   `fault-injection` cargo feature (`cargo test --all-features`); any other build ignores the
//!   variable with a warning.
//! - [`Throttling`]: answers the first write of every `every`-th item with `Throttled` (a
//!   Retry-After hint), so the retry and pacing layers are exercised without a real backend's rate
//!   limiter. Which items are throttled depends on arrival order, but each is throttled at most
//!   once, so the outcome does not depend on how concurrent writers interleave.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Call, Hook, Layer};
use crate::model::ItemId;
use crate::store::{DynStore, StoreError};

/// The fault-injection environment variable (see the module docs).
pub const FAULT_ABORT_AFTER_ENV: &str = "AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER";

/// Whether this build honours [`FAULT_ABORT_AFTER_ENV`] (the `fault-injection` feature).
pub const FAULT_INJECTION: bool = cfg!(feature = "fault-injection");

/// Wrap `target` in the layers the environment asks for (fault injection in test builds).
pub fn from_env(target: DynStore) -> DynStore {
    with_fault_injection(target, std::env::var(FAULT_ABORT_AFTER_ENV).ok().as_deref(), FAULT_INJECTION)
}

/// [`from_env`] over an explicit value of the variable and whether the build honours it.
pub fn with_fault_injection(target: DynStore, abort_after: Option<&str>, enabled: bool) -> DynStore {
    match abort_after.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) if enabled => std::sync::Arc::new(Layer::new(target, AbortAfter::new(n))),
        Some(_) => {
            tracing::warn!("{FAULT_ABORT_AFTER_ENV} is set but ignored: this build has no fault injection");
            target
        }
        None => target,
    }
}

/// Aborts the process right after the `n`-th successful write or delete reached the store.
pub struct AbortAfter {
    n: u64,
    done: AtomicU64,
}

impl AbortAfter {
    pub fn new(n: u64) -> Self {
        Self { n, done: AtomicU64::new(0) }
    }
}

impl Hook for AbortAfter {
    fn after(&self, _store: &dyn fmt::Display, call: Call<'_>, outcome: Result<(), &StoreError>) {
        if matches!(call, Call::Write(_) | Call::Delete(_))
            && outcome.is_ok()
            && self.done.fetch_add(1, Ordering::SeqCst) + 1 >= self.n
        {
            // Like `kill -9`: no destructors, no flush, no journal entry for this write.
            std::process::abort();
        }
    }
}

/// Refuses the first write of every `every`-th item as throttled (retries of that item go through).
pub struct Throttling {
    every: u64,
    seen: std::sync::Mutex<std::collections::HashSet<ItemId>>,
    pub throttled: AtomicU64,
}

impl Throttling {
    pub fn new(every: u64) -> Self {
        Self { every: every.max(1), seen: Default::default(), throttled: AtomicU64::new(0) }
    }
}

impl Hook for Throttling {
    fn before(&self, store: &dyn fmt::Display, call: Call<'_>) -> Result<(), StoreError> {
        let Call::Write(entry) = call else { return Ok(()) };
        let throttle = {
            let mut seen = self.seen.lock().expect("throttling set poisoned");
            seen.insert(entry.id.clone()) && (seen.len() as u64).is_multiple_of(self.every)
        };
        if throttle {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Throttled {
                store: store.to_string(),
                op: "write",
                retry_after: Some(Duration::from_millis(5)),
            });
        }
        Ok(())
    }
}

