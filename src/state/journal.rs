//! The write journal: [`crate::apply::Journal`] backed by the state database. Every write is
//! recorded as an intent (committed) before it is sent and as done/failed after, so a run killed
//! at any point can tell what it may have written. Also drives the progress bar.

use std::sync::Arc;

use async_trait::async_trait;
use indicatif::ProgressBar;

use super::{JournalState, StateDb};
use crate::apply::Journal;
use crate::plan::Change;
use crate::store::StoreError;

pub struct RunJournal {
    db: Arc<StateDb>,
    run_id: String,
    progress: ProgressBar,
}

impl RunJournal {
    pub fn new(db: Arc<StateDb>, run_id: impl Into<String>, progress: ProgressBar) -> Self {
        Self { db, run_id: run_id.into(), progress }
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
        self.progress.inc(1);
        let state = if ok { JournalState::Done } else { JournalState::Failed };
        self.db.set_journal_state(&self.run_id, &change.id, state).await.map_err(|e| self.err(e))
    }
}
