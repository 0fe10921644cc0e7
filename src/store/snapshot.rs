//! A rollback snapshot as a read-only [`Store`]: what a run's target held before the run, so
//! `rollback RUN` (and an incident restore) is the ordinary plan/apply pipeline with the snapshot
//! as its source. Built by the state database after decryption; holds the values in memory only.

use std::fmt;

use async_trait::async_trait;

use super::{Capabilities, Precondition, Store, StoreError};
use crate::model::{Entry, Inventory, ItemId, Kind};

pub struct SnapshotStore {
    run_id: String,
    target: String,
    items: Inventory,
}

impl SnapshotStore {
    /// `items`: the entries present before run `run_id` on `target` (absent items are not in it).
    pub fn new(run_id: impl Into<String>, target: impl Into<String>, items: Inventory) -> Self {
        Self { run_id: run_id.into(), target: target.into(), items }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }
}

impl fmt::Display for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snapshot:{} (before run {})", self.target, self.run_id)
    }
}

#[async_trait]
impl Store for SnapshotStore {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::full();
        caps.read_only = true;
        caps.can_delete = false;
        caps.variable_description = true;
        caps.read_batch = usize::MAX / 64;
        caps
    }

    fn identity(&self) -> String {
        format!("snapshot:{}@{}", self.run_id, self.target)
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        Ok(self.items.entries().filter(|e| e.id.kind == kind).cloned().map(strip_meta).collect())
    }

    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        Ok(ids.iter().filter_map(|id| self.items.get(id)).cloned().map(strip_meta).collect())
    }

    async fn write(&self, _: &Entry, _: &Precondition) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly { store: self.to_string() })
    }

    async fn delete(&self, _: &ItemId) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly { store: self.to_string() })
    }
}

/// As a source, a snapshot entry is a value to write back: the old ownership and version belong
/// to the target, not to the snapshot.
fn strip_meta(mut e: Entry) -> Entry {
    e.meta = Default::default();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_snapshot_is_a_read_only_store() {
        let s = SnapshotStore::new("r1", "memory:t", [Entry::variable("a", "1")].into_iter().collect());
        assert!(s.capabilities().read_only);
        assert_eq!(s.scan(Kind::Variable).await.unwrap().len(), 1);
        assert!(s.scan(Kind::Connection).await.unwrap().is_empty());
        assert!(matches!(s.write(&Entry::variable("b", "2"), &Precondition::Any).await, Err(StoreError::ReadOnly { .. })));
        assert!(s.identity().contains("r1"));
    }
}
