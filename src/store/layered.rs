//! Store layers that wrap another store without changing what it holds, and the one place the
//! application opens a configured store (the registry, plus the layers a test asks for).
//!
//! - [`Faulty`]: fault injection. `AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER=N` makes the process
//!   `abort()` right after the N-th successful write reaches the target and before the journal
//!   records it: the worst moment to die, which the resume/rollback tests aim at.
//! - [`Throttling`]: answers every `every`-th write with `Throttled` (a Retry-After hint), so the
//!   engine's retry and shared slow-down are exercised without a real backend's rate limiter.

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

/// Forwards everything; every `every`-th write attempt is refused as throttled.
pub struct Throttling<S> {
    inner: S,
    every: u64,
    attempts: AtomicU64,
    pub throttled: AtomicU64,
}

impl<S: Store> Throttling<S> {
    pub fn new(inner: S, every: u64) -> Self {
        Self { inner, every: every.max(1), attempts: AtomicU64::new(0), throttled: AtomicU64::new(0) }
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
    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        if (self.attempts.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(self.every) {
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
}
