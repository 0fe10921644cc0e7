//! [`Metered`]: every call a store answers, told to an [`ApiObserver`] (the daemon's metrics).

use std::fmt;

use super::{Call, Hook, Layer};
use crate::store::{DynStore, StoreError};

/// What a [`Metered`] layer reports: one call per store operation, with its outcome.
pub trait ApiObserver: Send + Sync {
    /// `store` is the store's display name, `op` one of scan/read/write/delete/flush/check.
    fn observe(&self, store: &str, op: &'static str, result: Result<(), &StoreError>);
}

/// Tells an [`ApiObserver`] about every call and its outcome: the daemon's backend error and
/// throttle metrics. Retries are separate calls, so each throttled attempt counts.
pub struct Metered {
    name: String,
    observer: std::sync::Arc<dyn ApiObserver>,
}

impl Metered {
    pub fn wrap(inner: DynStore, observer: std::sync::Arc<dyn ApiObserver>) -> DynStore {
        let name = inner.to_string();
        std::sync::Arc::new(Layer::new(inner, Self { name, observer }))
    }
}

impl Hook for Metered {
    fn after(&self, _store: &dyn fmt::Display, call: Call<'_>, outcome: Result<(), &StoreError>) {
        self.observer.observe(&self.name, call.op(), outcome);
    }
}

