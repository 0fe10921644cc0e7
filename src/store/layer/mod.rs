//! Store layers: wrappers over any store that change how calls reach it, never what it holds (a
//! configured store is opened by [`super::registry`]; these wrap it).
//!
//! Every layer is a [`Layer`]: it forwards each [`Store`] method to the inner store and lets a
//! [`Hook`] see, refuse, pace or repeat the calls, so no layer can forget to forward a method. As
//! in OpenDAL, stores only *classify* their errors ([`StoreError::is_retryable`],
//! [`StoreError::retry_after`]); what to do about them is a layer's:
//!
//! - [`retry`]: the one retry loop: throttled or unavailable calls are sent again with exponential
//!   backoff and full jitter, honouring Retry-After, at most `max_attempts` times in all. Loops
//!   never nest: inside a call a retry loop is already repeating, every other loop sends once.
//! - [`pace`]: writes spaced to the target's quota (`max_writes_per_second`), or slowed down
//!   adaptively once the target throttles; shared by every writer of one apply.
//! - [`metered`]: every call told to an [`ApiObserver`] (the daemon's metrics).
//! - [`fault`]: fault injection ([`AbortAfter`], [`Throttling`]) for the crash and retry tests.
//!
//! [`stack`] puts retry over pacing over a target, from the `[apply]` options.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::store::{Capabilities, DynStore, Placement, Precondition, Store, StoreError};
use crate::model::{Entry, Inventory, ItemId, Kind};

pub mod fault;
pub mod metered;
pub mod pace;
pub mod retry;

pub use fault::{AbortAfter, FAULT_ABORT_AFTER_ENV, FAULT_INJECTION, Throttling, from_env, with_fault_injection};
pub use metered::{ApiObserver, Metered};
pub use pace::Pace;
pub use retry::{Retry, RetryPolicy};

/// One call a [`Layer`] forwards, as its [`Hook`] sees it.
#[derive(Clone, Copy, Debug)]
pub enum Call<'a> {
    Scan(Kind),
    Read(&'a [ItemId]),
    ReadBack(&'a [ItemId]),
    Write(&'a Entry),
    Delete(&'a ItemId),
    Flush,
    Check,
}

impl Call<'_> {
    /// The operation's name in metrics and errors: scan, read, write, delete, flush or check
    /// (a read-back is a read).
    pub fn op(&self) -> &'static str {
        match self {
            Call::Scan(_) => "scan",
            Call::Read(_) | Call::ReadBack(_) => "read",
            Call::Write(_) => "write",
            Call::Delete(_) => "delete",
            Call::Flush => "flush",
            Call::Check => "check",
        }
    }

    /// The item the call is about, if it is about one (for logs: an id, never a value).
    pub fn item(&self) -> Option<&ItemId> {
        match self {
            Call::Write(e) => Some(&e.id),
            Call::Delete(id) => Some(id),
            Call::Read([id]) | Call::ReadBack([id]) => Some(id),
            _ => None,
        }
    }
}

/// One attempt at a call, as a [`Hook`] gets it: the inner store's method, ready to be sent (a
/// retry sends it again).
pub type Attempt<'a, T> = Box<dyn Fn() -> BoxFuture<'a, Result<T, StoreError>> + Send + Sync + 'a>;

/// What a [`Layer`] does around the calls it forwards. A hook never forwards anything itself, so a
/// method added to [`Store`] reaches the inner store through every layer without touching a hook.
pub trait Hook: Send + Sync + 'static {
    /// Before `call` goes to `store`: an error is answered instead, and `store` never sees the call.
    fn before(&self, _store: &dyn fmt::Display, _call: Call<'_>) -> Result<(), StoreError> {
        Ok(())
    }
    /// After `store` answered `call`.
    fn after(&self, _store: &dyn fmt::Display, _call: Call<'_>, _outcome: Result<(), &StoreError>) {}
    /// The whole of one call: by default [`Hook::before`], one attempt, [`Hook::after`]. A hook that
    /// waits before sending (pacing), times the answer or sends again (retry) overrides this.
    fn around<'a, T: Send + 'a>(
        &'a self,
        store: &'a DynStore,
        call: Call<'a>,
        attempt: Attempt<'a, T>,
    ) -> BoxFuture<'a, Result<T, StoreError>> {
        Box::pin(async move {
            self.before(store, call)?;
            let outcome = attempt().await;
            self.after(store, call, outcome.as_ref().map(|_| ()));
            outcome
        })
    }
}

/// A store that forwards every [`Store`] method to `inner`, letting its [`Hook`] see (and refuse)
/// the calls that reach a backend. Names, capabilities and placement are the inner store's.
pub struct Layer<H> {
    inner: DynStore,
    hook: H,
}

impl<H: Hook> Layer<H> {
    pub fn new(inner: DynStore, hook: H) -> Self {
        Self { inner, hook }
    }

    pub fn hook(&self) -> &H {
        &self.hook
    }

    async fn call<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        attempt: impl Fn() -> BoxFuture<'a, Result<T, StoreError>> + Send + Sync + 'a,
    ) -> Result<T, StoreError> {
        self.hook.around(&self.inner, call, Box::new(attempt)).await
    }
}

impl<H> fmt::Display for Layer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl<H: Hook> Store for Layer<H> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn locate(&self, id: &ItemId) -> Placement {
        self.inner.locate(id)
    }
    fn read_as(
        &self,
        entry: &Entry,
        readers: &[crate::airflow::connection::Reader],
    ) -> Result<Vec<Result<crate::model::Value, crate::model::ItemError>>, crate::model::ItemError> {
        self.inner.read_as(entry, readers)
    }
    fn airflow_version(&self) -> Option<&'static str> {
        self.inner.airflow_version()
    }
    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        self.call(Call::Scan(kind), move || self.inner.scan(kind)).await
    }
    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        self.call(Call::Read(ids), move || self.inner.read(ids)).await
    }
    async fn read_back(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        self.call(Call::ReadBack(ids), move || self.inner.read_back(ids)).await
    }
    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        self.call(Call::Write(entry), move || self.inner.write(entry, pre)).await
    }
    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        self.call(Call::Delete(id), move || self.inner.delete(id)).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.call(Call::Flush, move || self.inner.flush()).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.call(Call::Check, move || self.inner.check()).await
    }
}

/// What the layers over an apply's target are built from (the `[apply]` options).
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    pub retry: RetryPolicy,
    /// Writes per second: `None` paces to the target's published quota
    /// ([`Capabilities::write_rate`]), `Some(0.0)` does not pace.
    pub max_writes_per_second: Option<f64>,
    /// Once set, no call is sent again (the apply's circuit breaker opened).
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// `target` under the layers every write goes through: retry (outermost: each attempt is paced
/// anew) over pacing.
pub fn stack(target: DynStore, opts: &StackOptions) -> DynStore {
    let pace = Pace::for_target(&target.capabilities(), opts.max_writes_per_second, opts.retry.max_backoff);
    if let Some(rate) = pace.rate() {
        tracing::info!(target = %target, writes_per_second = rate, "pacing writes to the target's quota");
    }
    let paced: DynStore = Arc::new(Layer::new(target, pace));
    let mut retry = Retry::new(opts.retry.clone());
    if let Some(stop) = &opts.stop {
        retry = retry.until(stop.clone());
    }
    Arc::new(Layer::new(paced, retry))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::store::memory::MemoryStore;

    /// A store that answers `read_back` its own way (as AWS Secrets Manager does with a batch read).
    struct OwnReadBack(MemoryStore, AtomicU64);

    impl fmt::Display for OwnReadBack {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }

    #[async_trait]
    impl Store for OwnReadBack {
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
            self.0.scan(kind).await
        }
        async fn read_back(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.read(ids).await
        }
        async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
            self.0.write(entry, pre).await
        }
        async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
            self.0.delete(id).await
        }
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, &'static str, bool)>>);

    impl ApiObserver for Seen {
        fn observe(&self, store: &str, op: &'static str, result: Result<(), &StoreError>) {
            self.0.lock().unwrap().push((store.to_string(), op, result.is_ok()));
        }
    }

    #[tokio::test]
    async fn layers_reach_the_inner_stores_own_methods_and_see_every_call() {
        let inner = Arc::new(OwnReadBack(MemoryStore::new("mem"), AtomicU64::new(0)));
        let seen = Arc::new(Seen::default());
        // Three layers deep: metered over throttled over metered.
        let throttled: DynStore = Arc::new(Layer::new(Metered::wrap(inner.clone(), seen.clone()), Throttling::new(1)));
        let outer = Metered::wrap(throttled, seen.clone());
        assert_eq!(outer.to_string(), inner.to_string());
        assert_eq!(outer.identity(), inner.identity());

        let e = Entry::variable("a", "1");
        let first = outer.write(&e, &Precondition::Absent).await;
        assert!(matches!(first, Err(StoreError::Throttled { op: "write", .. })), "{first:?}");
        outer.write(&e, &Precondition::Absent).await.unwrap();
        let back = outer.read_back(std::slice::from_ref(&e.id)).await.unwrap();
        assert_eq!(back.get(&e.id).map(|x| &x.value), Some(&e.value));
        assert_eq!(inner.1.load(Ordering::SeqCst), 1, "read_back reached the store's own override");

        let calls = seen.0.lock().unwrap().clone();
        let ops: Vec<(&str, bool)> = calls.iter().map(|(_, op, ok)| (*op, *ok)).collect();
        // The throttled write never reached the inner layer; the outer one saw it refused.
        assert_eq!(ops, [("write", false), ("write", true), ("write", true), ("read", true), ("read", true)]);
        assert!(calls.iter().all(|(store, _, _)| store == "memory:mem"), "{calls:?}");
    }

    #[tokio::test]
    async fn the_abort_variable_is_honoured_only_where_fault_injection_is_built_in() {
        let store: DynStore = Arc::new(MemoryStore::new("mem"));
        let ignored = with_fault_injection(store.clone(), Some("1"), false);
        assert!(Arc::ptr_eq(&ignored, &store), "without the feature the variable changes nothing");
        // Writing through it does not abort the test process.
        ignored.write(&Entry::variable("a", "1"), &Precondition::Absent).await.unwrap();
        assert!(!Arc::ptr_eq(&with_fault_injection(store.clone(), Some("1"), true), &store), "with it, the layer is added");
        assert!(Arc::ptr_eq(&with_fault_injection(store.clone(), None, true), &store));
        assert!(Arc::ptr_eq(&with_fault_injection(store.clone(), Some("not a number"), true), &store));
        assert_eq!(FAULT_INJECTION, cfg!(feature = "fault-injection"));
    }
}
