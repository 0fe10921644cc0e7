//! The reference store: an in-memory map with ownership and versions, configurable limits.
//! Fast default for plan/apply tests, and the first store to pass the conformance suite.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Capabilities, Placement, Precondition, Store, StoreError};
use crate::model::{Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Ownership};

pub struct MemoryStore {
    name: String,
    caps: Capabilities,
    items: Mutex<BTreeMap<ItemId, (Entry, u64)>>,
}

impl MemoryStore {
    pub fn new(name: impl Into<String>) -> Self {
        let mut caps = Capabilities::full();
        caps.can_tag = true;
        caps.conditional_writes = true;
        caps.variable_description = true;
        caps.read_batch = 100;
        caps.write_concurrency = 8;
        Self::with_capabilities(name, caps)
    }

    pub fn with_capabilities(name: impl Into<String>, caps: Capabilities) -> Self {
        Self { name: name.into(), caps, items: Mutex::new(BTreeMap::new()) }
    }

    /// Seed an item as if someone else had written it (ownership `Foreign` when tagging).
    pub fn seed_foreign(&self, mut entry: Entry) {
        entry.meta.ownership =
            if self.caps.can_tag { Ownership::Foreign } else { Ownership::Untracked };
        self.items.lock().unwrap().insert(entry.id.clone(), (entry, 1));
    }

    fn snapshot(&self, e: &Entry, version: u64) -> Entry {
        let mut e = e.clone();
        e.meta.version = Some(version.to_string());
        e.meta.name = Some(e.id.id.clone());
        if !self.caps.variable_description
            && let crate::model::Value::Variable(v) = &mut e.value
        {
            v.description = None;
        }
        e
    }
}

impl fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "memory:{}", self.name)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    fn locate(&self, id: &ItemId) -> Placement {
        if id.id.is_empty() {
            return Placement::Invalid("an empty id".into());
        }
        Placement::At(id.id.clone())
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let items = self.items.lock().unwrap();
        Ok(items
            .values()
            .filter(|(e, _)| e.id.kind == kind)
            .map(|(e, v)| self.snapshot(e, *v))
            .collect())
    }

    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        let items = self.items.lock().unwrap();
        Ok(ids.iter().filter_map(|id| items.get(id)).map(|(e, v)| self.snapshot(e, *v)).collect())
    }

    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        if self.caps.read_only {
            return Err(StoreError::ReadOnly { store: self.to_string() });
        }
        if let Placement::Invalid(why) = self.locate(&entry.id) {
            return Err(StoreError::item(self, &entry.id, ItemError::new(ItemErrorKind::InvalidName, why)));
        }
        if let Some(v) = entry.as_variable() {
            if v.value.is_empty() && !self.caps.empty_variables {
                return Err(StoreError::item(
                    self,
                    &entry.id,
                    ItemError::new(ItemErrorKind::NotRepresentable, "an empty variable cannot be stored here"),
                ));
            }
            if let Some(limit) = self.caps.max_value_bytes
                && v.value.len() > limit
            {
                return Err(StoreError::item(
                    self,
                    &entry.id,
                    ItemError::new(ItemErrorKind::TooLarge, format!("{} bytes; the limit is {limit}", v.value.len())),
                ));
            }
        }
        let mut items = self.items.lock().unwrap();
        let current = items.get(&entry.id).map(|(_, v)| *v);
        match (pre, current) {
            (Precondition::Absent, Some(_)) => {
                return Err(StoreError::Conflict { store: self.to_string(), id: entry.id.clone() });
            }
            (Precondition::Version(want), Some(have)) if *want != have.to_string() => {
                return Err(StoreError::Conflict { store: self.to_string(), id: entry.id.clone() });
            }
            (Precondition::Version(_), None) => {
                return Err(StoreError::Conflict { store: self.to_string(), id: entry.id.clone() });
            }
            _ => {}
        }
        let mut stored = entry.clone();
        stored.meta.ownership = if self.caps.can_tag { Ownership::Ours } else { Ownership::Untracked };
        items.insert(entry.id.clone(), (stored, current.unwrap_or(0) + 1));
        Ok(())
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        if self.caps.read_only {
            return Err(StoreError::ReadOnly { store: self.to_string() });
        }
        self.items.lock().unwrap().remove(id);
        Ok(())
    }
}

