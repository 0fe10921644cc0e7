//! Store layers that wrap another store without changing what it holds, and the one place the
//! application opens a configured store (the registry, plus the layers a test asks for).
//!
//! - [`Faulty`]: fault injection. `AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER=N` makes the process
//!   `abort()` right after the N-th successful write reaches the target and before the journal
//!   records it: the worst moment to die, which the resume/rollback tests aim at.
//! - [`Throttling`]: answers the first write of every `every`-th item with `Throttled` (a
//!   Retry-After hint), so the engine's retry and shared slow-down are exercised without a real
//!   backend's rate limiter. Which items are throttled depends on arrival order, but each is
//!   throttled at most once, so the outcome does not depend on how concurrent writers interleave.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{Capabilities, DynStore, Placement, Precondition, Store, StoreError};
use crate::config::StoreSpec;
use crate::model::{Entry, Inventory, ItemId, Kind};

/// The fault-injection environment variable (see the module docs).
pub const FAULT_ABORT_AFTER_ENV: &str = "AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER";

/// Open a configured store: `kind = "dir"` here, everything else through the registry.
pub async fn open(spec: &StoreSpec) -> Result<DynStore, StoreError> {
    if spec.0.get("kind").and_then(|k| k.as_str()) == Some("dir") {
        let cfg: super::dir::DirConfig = super::registry::native("dir", spec)?;
        return Ok(std::sync::Arc::new(super::dir::DirStore::new(cfg.path)));
    }
    super::registry::open(spec).await
}

/// Wrap `target` in the layers the environment asks for (fault injection in tests).
pub fn from_env(target: DynStore) -> DynStore {
    match std::env::var(FAULT_ABORT_AFTER_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) => std::sync::Arc::new(Faulty::abort_after(target, n)),
        None => target,
    }
}

/// Forwards everything; aborts the process after `abort_after` successful writes/deletes.
pub struct Faulty {
    inner: DynStore,
    abort_after: u64,
    writes: AtomicU64,
}

impl Faulty {
    pub fn abort_after(inner: DynStore, n: u64) -> Self {
        Self { inner, abort_after: n, writes: AtomicU64::new(0) }
    }

    fn count(&self, r: &Result<(), StoreError>) {
        if r.is_ok() && self.writes.fetch_add(1, Ordering::SeqCst) + 1 >= self.abort_after {
            // Like `kill -9`: no destructors, no flush, no journal entry for this write.
            std::process::abort();
        }
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl Store for Faulty {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
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
    async fn read_back(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        self.inner.read_back(ids).await
    }
    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        let r = self.inner.write(entry, pre).await;
        self.count(&r);
        r
    }
    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        let r = self.inner.delete(id).await;
        self.count(&r);
        r
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
}

/// Forwards everything; the first write attempt of every `every`-th item is refused as throttled
/// (retries of that item go through).
pub struct Throttling<S> {
    inner: S,
    every: u64,
    seen: std::sync::Mutex<std::collections::HashSet<ItemId>>,
    pub throttled: AtomicU64,
}

impl<S: Store> Throttling<S> {
    pub fn new(inner: S, every: u64) -> Self {
        Self { inner, every: every.max(1), seen: Default::default(), throttled: AtomicU64::new(0) }
    }

    /// Whether this attempt is the first of an item whose arrival number is a multiple of `every`.
    fn throttle(&self, id: &ItemId) -> bool {
        let mut seen = self.seen.lock().expect("throttling set poisoned");
        if !seen.insert(id.clone()) {
            return false;
        }
        (seen.len() as u64).is_multiple_of(self.every)
    }
}

impl<S: Store> fmt::Display for Throttling<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl<S: Store> Store for Throttling<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
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
    async fn read_back(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        self.inner.read_back(ids).await
    }
    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        if self.throttle(&entry.id) {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Throttled {
                store: self.to_string(),
                op: "write",
                retry_after: Some(Duration::from_millis(5)),
            });
        }
        self.inner.write(entry, pre).await
    }
    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
}

/// What a [`Metered`] layer reports: one call per store operation, with its outcome.
pub trait ApiObserver: Send + Sync {
    /// `store` is the store's display name, `op` one of scan/read/write/delete/flush/check.
    fn observe(&self, store: &str, op: &'static str, result: Result<(), &StoreError>);
}

/// Forwards everything and tells an [`ApiObserver`] about every call and its outcome: the daemon's
/// backend error and throttle metrics. Retries are separate calls, so each throttled attempt counts.
pub struct Metered {
    inner: DynStore,
    name: String,
    observer: std::sync::Arc<dyn ApiObserver>,
}

impl Metered {
    pub fn wrap(inner: DynStore, observer: std::sync::Arc<dyn ApiObserver>) -> DynStore {
        let name = inner.to_string();
        std::sync::Arc::new(Self { inner, name, observer })
    }

    fn seen<T>(&self, op: &'static str, r: Result<T, StoreError>) -> Result<T, StoreError> {
        self.observer.observe(&self.name, op, r.as_ref().map(|_| ()));
        r
    }
}

impl fmt::Display for Metered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl Store for Metered {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn locate(&self, id: &ItemId) -> Placement {
        self.inner.locate(id)
    }
    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        self.seen("scan", self.inner.scan(kind).await)
    }
    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        self.seen("read", self.inner.read(ids).await)
    }
    async fn read_back(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        self.seen("read", self.inner.read_back(ids).await)
    }
    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        self.seen("write", self.inner.write(entry, pre).await)
    }
    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        self.seen("delete", self.inner.delete(id).await)
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.seen("flush", self.inner.flush().await)
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.seen("check", self.inner.check().await)
    }
}
