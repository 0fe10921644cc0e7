//! The safety engine around one apply: lock the target, record the run with a sealed snapshot of
//! every item the plan touches (committed before the first write), journal each write, resume an
//! interrupted run of the same target instead of re-snapshotting it, and roll a run back through
//! the ordinary plan/apply pipeline with its snapshot as the source.

use std::sync::Arc;

use crate::apply::{ApplyReport, Journal, NoJournal};
use crate::config::StateConfig;
use crate::error::{AppError, Exit};
use crate::model::{Inventory, ItemId};
use crate::plan::Plan;
use crate::state::runs::{NewRun, PlannedWrite, SealedRow, new_run_id};
use crate::state::snapshots::{self, Prior};
use crate::state::{RunJournal, RunKind, RunRecord, RunStatus, SnapshotKey, StateDb, StateError, TargetLock};
use crate::store::Store;

/// The state database and the snapshot key, when configured.
pub struct Safety {
    pub db: Arc<StateDb>,
    pub key: SnapshotKey,
}

/// A run in progress: its id, whether it resumed an earlier one, and the target lock.
pub struct ActiveRun {
    pub run_id: String,
    pub resumed: bool,
    pub journal: Arc<dyn Journal>,
    _lock: TargetLock,
}

impl Safety {
    /// `None` when no snapshot key is configured (the caller decides whether that is allowed).
    pub async fn open(cfg: &StateConfig) -> Result<Option<Safety>, StateError> {
        Self::open_with(cfg, None).await
    }

    /// As [`Safety::open`], on `db` when the caller already holds the state database open.
    pub async fn open_with(cfg: &StateConfig, db: Option<Arc<StateDb>>) -> Result<Option<Safety>, StateError> {
        let Some(key) = SnapshotKey::resolve(cfg)? else { return Ok(None) };
        let db = match db {
            Some(db) => db,
            None => Arc::new(StateDb::open(cfg).await?),
        };
        Ok(Some(Safety { db, key }))
    }

    fn planned(&self, plan: &Plan) -> Vec<PlannedWrite> {
        plan.writes()
            .map(|c| PlannedWrite {
                id: c.id.clone(),
                action: c.action,
                desired_fp: self.key.value_fingerprint(&c.id, c.desired.as_ref().map(|e| &e.value)),
            })
            .collect()
    }

    /// Take `target`'s apply lock (failing fast when another apply holds it). Taken before the
    /// target is read, so the plan, the snapshot and the writes all see a target no other apply
    /// changes meanwhile; held until the run ends.
    pub async fn lock(&self, target: &dyn Store) -> Result<TargetLock, StateError> {
        self.db.lock_target(&target.identity(), "(planning)").await
    }

    /// Record the run and its snapshot (or continue an incomplete run of this target), under the
    /// target lock `lock` (from [`Safety::lock`]), before anything is written.
    #[allow(clippy::too_many_arguments)] // two call sites (migrate, rollback), each a different run kind
    pub async fn begin(
        &self,
        plan: &Plan,
        target: &dyn Store,
        target_inv: &Inventory,
        kind: RunKind,
        rollback_of: Option<&str>,
        resume: Option<&str>,
        lock: TargetLock,
    ) -> Result<ActiveRun, anyhow::Error> {
        let target_id = target.identity();
        let writes = self.planned(plan);
        let digest = {
            let parts: Vec<Vec<u8>> =
                writes.iter().map(|w| format!("{}\0{}\0{}", w.id.kind, w.id.id, w.desired_fp).into_bytes()).collect();
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            self.key.fingerprint(&refs)
        };
        // Only an interrupted run (status `applying`: killed, or stopped by an unavailable
        // backend) is continued. A finished, failed or rolled-back run is history: resuming it
        // would stretch one snapshot over days of later changes.
        let previous: Option<RunRecord> = match resume {
            Some(r) => {
                let prev = self.db.run(r).await?;
                if prev.status != RunStatus::Applying {
                    return Err(AppError::Usage(format!(
                        "run {r} is {}: only an interrupted (applying) run can be resumed; apply without --resume to start a new run",
                        prev.status.as_str()
                    ))
                    .into());
                }
                if prev.kind != kind.as_str() {
                    return Err(AppError::Usage(format!("run {r} is a {} run, not a {} run", prev.kind, kind.as_str())).into());
                }
                Some(prev)
            }
            None if kind == RunKind::Migrate => self.db.incomplete_run(&target_id).await?,
            None => None,
        };
        if let Some(prev) = &previous {
            if prev.target != target_id {
                return Err(AppError::Usage(format!("run {} was applied to {}, not to {target_id}", prev.id, prev.target)).into());
            }
            // One run, one key: its snapshot rows must all open with the key rollback will use.
            if prev.key_id != self.key.id() {
                return Err(AppError::Usage(format!(
                    "run {} on {target_id} did not finish and was recorded under another snapshot key (key id {}; this key is {}): \
                     configure the key it was recorded with to resume it or to roll it back",
                    prev.id,
                    prev.key_id,
                    self.key.id()
                ))
                .into());
            }
            if resume.is_none() && prev.source != plan.source {
                return Err(AppError::Usage(format!(
                    "run {} on {target_id} (from {}) did not finish: resume it with `--resume {}` or undo it with `rollback {} --apply` first",
                    prev.id, prev.source, prev.id, prev.id
                ))
                .into());
            }
        }
        let run_id = previous.as_ref().map_or_else(new_run_id, |p| p.id.clone());
        self.db.record_lock_holder(&target_id, &run_id).await?;
        // A resumed run keeps the snapshot it took before its first write: re-snapshotting items it
        // already changed would make rollback restore half-written values.
        let already = match &previous {
            Some(_) => self.db.snapshotted(&run_id).await?,
            None => Default::default(),
        };
        let sealed: Vec<SealedRow> = writes
            .iter()
            .filter(|w| !already.contains(&w.id))
            .map(|w| {
                let (nonce, sealed) = snapshots::seal(
                    &self.key,
                    &run_id,
                    &target_id,
                    &w.id,
                    target_inv.get(&w.id),
                    target_inv.error(&w.id).is_some(),
                );
                SealedRow { id: w.id.clone(), nonce, sealed }
            })
            .collect();
        if previous.is_some() {
            self.db.extend_run(&run_id, &writes, &sealed).await?;
            tracing::info!(run = %run_id, "resuming an interrupted run; its original snapshot is kept");
        } else {
            self.db
                .begin_run(
                    &NewRun {
                        id: &run_id,
                        kind,
                        source: &plan.source,
                        target: &target_id,
                        plan_digest: &digest,
                        key_id: self.key.id(),
                        snapshot: true,
                        rollback_of,
                    },
                    &writes,
                    &sealed,
                )
                .await?;
        }
        // A progress bar on a terminal only; logs and pipes stay quiet.
        let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            indicatif::ProgressBar::new(writes.len() as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let journal: Arc<dyn Journal> =
            Arc::new(WithProgress { inner: RunJournal::new(self.db.clone(), run_id.clone()), progress });
        Ok(ActiveRun { run_id, resumed: previous.is_some(), journal, _lock: lock })
    }

    /// Record how the run ended: done; interrupted (still `applying`, resumed by the next apply)
    /// when it stopped on throttled or unavailable writes, which are safe to re-run; else failed.
    pub async fn finish(&self, run: &ActiveRun, report: &ApplyReport) -> Result<(), StateError> {
        let status = match report.exit() {
            Exit::Ok => RunStatus::Done,
            Exit::Throttled => return Ok(()),
            // The target went away mid-run (the apply's breaker opened) before anything landed:
            // interrupted as well, not failed; it resumes.
            _ if report.interrupted.is_some() => return Ok(()),
            _ => RunStatus::Failed,
        };
        self.db.set_run_status(&run.run_id, status).await
    }

    /// The snapshot of `run_id` as (what was present, ids that were absent, ids unreadable then).
    pub async fn snapshot_of(&self, run: &RunRecord) -> Result<(Inventory, Vec<ItemId>, Vec<ItemId>), StateError> {
        if run.snapshot && run.key_id != self.key.id() {
            return Err(StateError::Key(format!(
                "run {} was recorded under another snapshot key (key id {}; this key is {}): configure that key",
                run.id,
                run.key_id,
                self.key.id()
            )));
        }
        let priors = self.db.load_snapshot(&self.key, &run.id, &run.target).await?;
        let mut present = Inventory::new();
        let (mut absent, mut unreadable) = (Vec::new(), Vec::new());
        for (id, p) in priors {
            match p {
                Prior::Present(e) => present.insert(e),
                Prior::Absent => absent.push(id),
                Prior::Unreadable => unreadable.push(id),
            }
        }
        Ok((present, absent, unreadable))
    }
}

/// A journal for runs without a state database (`--no-snapshot`).
pub fn no_journal() -> Arc<dyn Journal> {
    Arc::new(NoJournal)
}

/// A journal that also moves the progress bar, one step per recorded outcome.
struct WithProgress<J> {
    inner: J,
    progress: indicatif::ProgressBar,
}

#[async_trait::async_trait]
impl<J: Journal> Journal for WithProgress<J> {
    async fn before(&self, change: &crate::plan::Change) -> Result<(), crate::store::StoreError> {
        self.inner.before(change).await
    }
    async fn after(&self, change: &crate::plan::Change, ok: bool) -> Result<(), crate::store::StoreError> {
        self.progress.inc(1);
        self.inner.after(change, ok).await
    }
    async fn before_all(&self, changes: &[&crate::plan::Change]) -> Result<(), crate::store::StoreError> {
        self.inner.before_all(changes).await
    }
    async fn flush(&self) -> Result<(), crate::store::StoreError> {
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::ItemFailure;
    use crate::config::ApplyConfig;
    use crate::model::Entry;
    use crate::plan::{Policy, Selection, diff};
    use crate::store::memory::MemoryStore;

    fn failed(retryable: bool, kind: crate::store::StoreErrorKind) -> ApplyReport {
        let failure = ItemFailure { id: ItemId::variable("a"), kind, retryable, message: "write failed".into() };
        ApplyReport { failures: vec![failure], ..ApplyReport::default() }
    }

    /// A run cut off by throttling or an unavailable backend (exit 11) is interrupted, and the
    /// next apply resumes it; a run that finished with other failures is done with: the next
    /// apply starts a run (and a snapshot) of its own.
    #[tokio::test]
    async fn only_a_run_cut_off_by_an_unavailable_backend_stays_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(StateDb::open_sqlite(&dir.path().join("state.db")).await.unwrap());
        let s = Safety { db, key: SnapshotKey::parse(&"ab".repeat(32)).unwrap() };
        let (src, tgt) = (MemoryStore::new("s"), MemoryStore::new("t"));
        let src_inv: Inventory = [Entry::variable("a", "1")].into_iter().collect();
        let tgt_inv = Inventory::new();
        let plan = diff(&src, &src_inv, &tgt, &tgt_inv, &Policy::new(Selection::all(), &ApplyConfig::default()));
        let begin = || async { s.begin(&plan, &tgt, &tgt_inv, RunKind::Migrate, None, None, s.lock(&tgt).await.unwrap()).await.unwrap() };

        let run = begin().await;
        s.finish(&run, &failed(true, crate::store::StoreErrorKind::Throttled)).await.unwrap();
        let id = run.run_id.clone();
        drop(run);
        assert_eq!(s.db.run(&id).await.unwrap().status, RunStatus::Applying);
        let again = begin().await;
        assert!(again.resumed && again.run_id == id);

        s.finish(&again, &failed(false, crate::store::StoreErrorKind::PermissionDenied)).await.unwrap();
        drop(again);
        assert_eq!(s.db.run(&id).await.unwrap().status, RunStatus::Failed);
        let third = begin().await;
        assert!(!third.resumed && third.run_id != id, "a failed run is not resumed");
    }
}
