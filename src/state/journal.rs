//! The write journal: [`crate::apply::Journal`] backed by the state database. Every write is
//! recorded as an intent (committed) before it is sent, so a run killed at any point can tell
//! what it may have written; outcomes (done/failed) are committed in batches, since one lost to a
//! crash leaves the conservative "intent". Progress display is not its business: the caller wraps
//! it (see `safety.rs`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{JournalState, StateDb};
use crate::apply::Journal;
use crate::model::ItemId;
use crate::plan::Change;
use crate::store::StoreError;

/// Outcomes committed together (one transaction per this many writes).
const OUTCOME_BATCH: usize = 256;

pub struct RunJournal {
    db: Arc<StateDb>,
    run_id: String,
    outcomes: std::sync::Mutex<Vec<(ItemId, JournalState)>>,
}

impl RunJournal {
    pub fn new(db: Arc<StateDb>, run_id: impl Into<String>) -> Self {
        Self { db, run_id: run_id.into(), outcomes: std::sync::Mutex::new(Vec::new()) }
    }

    async fn commit_outcomes(&self, at_least: usize) -> Result<(), StoreError> {
        let batch = {
            let mut pending = self.outcomes.lock().expect("journal outcomes");
            if pending.len() < at_least.max(1) {
                return Ok(());
            }
            std::mem::take(&mut *pending)
        };
        self.db.set_journal_states(&self.run_id, &batch).await.map_err(|e| self.err(e))
    }

    fn err(&self, e: super::StateError) -> StoreError {
        // A write whose intent cannot be journaled must not happen: fail the item, say why.
        StoreError::Backend { store: self.db.to_string(), op: "journal", reason: e.to_string() }
    }
}

#[async_trait]
impl Journal for RunJournal {
    async fn before(&self, change: &Change) -> Result<(), StoreError> {
        self.db.set_journal_state(&self.run_id, &change.id, JournalState::Intent).await.map_err(|e| self.err(e))
    }

    async fn after(&self, change: &Change, ok: bool) -> Result<(), StoreError> {
        let state = if ok { JournalState::Done } else { JournalState::Failed };
        self.outcomes.lock().expect("journal outcomes").push((change.id.clone(), state));
        self.commit_outcomes(OUTCOME_BATCH).await
    }

    async fn before_all(&self, changes: &[&Change]) -> Result<(), StoreError> {
        let rows: Vec<(ItemId, JournalState)> = changes.iter().map(|c| (c.id.clone(), JournalState::Intent)).collect();
        self.db.set_journal_states(&self.run_id, &rows).await.map_err(|e| self.err(e))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.commit_outcomes(1).await
    }
}
