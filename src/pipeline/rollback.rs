//! What makes a rollback a rollback, and nothing else: its source is the snapshot run RUN recorded
//! of its target, it covers only the items RUN may have written, it puts back exactly what the
//! target held as the target's own reader read it (prune and adopt on, no delete limit), and it
//! is itself a snapshotted run. Everything after this (lock, scan, plan, render, apply under
//! `[apply]`, verify, metrics, exit codes) is the common pipeline.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context;

use super::prepare::observed;
use super::{Endpoint, Flags, Mode, Prepared, RollbackOf, RunRequest, Saved, apply_options};
use crate::airflow::fidelity::{Fidelity, Readers};
use crate::config::Config;
use crate::error::AppError;
use crate::model::ItemId;
use crate::plan::{Policy, Selection};
use crate::safety::Safety;
use crate::state::{JournalState, StateDb};
use crate::store::{DynStore, layered, registry};

pub(super) async fn prepare(cfg: &Config, run_id: &str, req: RunRequest) -> anyhow::Result<Prepared> {
    let Some(safety) = Safety::open_with(&cfg.state, req.state.clone()).await? else {
        return Err(AppError::Usage("rollback needs the snapshot key the run was recorded with ([state] snapshot_key)".into()).into());
    };
    let run = safety.db.run(run_id).await?;
    let (target, plan_reader) = match req.target {
        Endpoint::Spec(spec) => {
            let mut target_cfg = registry::parse(&spec).context("opening the target")?;
            // A rollback restores what the target held, whoever wrote it.
            target_cfg.set_adopt(true);
            target_cfg.mark_target();
            let plan_reader = registry::fidelity(&spec).context("opening the target")?.readers.primary();
            let target = registry::open_config_with_reader(target_cfg, plan_reader).await.context("opening the target")?;
            (layered::from_env(target), plan_reader)
        }
        Endpoint::Open(store) => (store, Fidelity::default().readers.primary()),
        Endpoint::Snapshot(_) => return Err(AppError::Usage("a snapshot is read-only: it cannot be a target".into()).into()),
    };
    if target.identity() != run.target {
        return Err(AppError::Usage(format!(
            "run {} was applied to {}, but [target] is {}",
            run.id,
            run.target,
            target.identity()
        ))
        .into());
    }
    // Locked before the run's journal is read: nobody resumes the run under this rollback.
    let lock = if req.mode == Mode::Apply { Some(safety.lock(target.as_ref()).await?) } else { None };
    let (present, absent, unreadable) = safety.snapshot_of(&run).await?;
    // Only what the run may have written is restored: an item it planned but never attempted
    // (the run was cut off first) is left as it is now, whoever changed it since.
    let never_attempted = never_attempted(&safety.db, &run.id).await?;
    let touched: BTreeSet<ItemId> =
        present.ids().cloned().chain(absent.iter().cloned()).filter(|id| !never_attempted.contains(id)).collect();
    let source: DynStore = Arc::new(crate::store::snapshot::SnapshotStore::new(&run.id, &run.target, present.clone()));
    // Put back exactly what the target held, as its own reader read it.
    let policy = Policy {
        selection: Selection::all(),
        prune: true,
        adopt: true,
        max_deletes: usize::MAX,
        fidelity: Fidelity { readers: Readers::only(&[plan_reader]), ..Default::default() },
    };
    let flags = Flags { apply: req.mode == Mode::Apply, json: req.json, ..Flags::default() };
    Ok(Prepared {
        source: observed(source, req.observer.as_ref()),
        target: observed(target, req.observer.as_ref()),
        source_inventory: Some(present),
        only_ids: Some(touched),
        policy,
        options: apply_options(&req.apply),
        safety: Some(safety),
        locker: None,
        lock,
        saved: Saved::default(),
        flags,
        rollback: Some(RollbackOf { run, never_attempted: never_attempted.len(), unreadable }),
    })
}

async fn never_attempted(db: &StateDb, run_id: &str) -> anyhow::Result<BTreeSet<ItemId>> {
    Ok(db.journal(run_id).await?.into_iter().filter(|r| r.state == JournalState::Pending).map(|r| r.id).collect())
}

/// The run an interrupted rollback of `of` left on its target, to continue (its snapshot kept)
/// rather than restart; another unfinished run on the target must be finished first.
pub(super) async fn resumable(safety: &Safety, of: &crate::state::RunRecord) -> anyhow::Result<Option<String>> {
    match safety.db.incomplete_run(&of.target).await? {
        Some(p) if p.rollback_of.as_deref() == Some(of.id.as_str()) => Ok(Some(p.id)),
        Some(p) if p.id != of.id => Err(AppError::Usage(format!(
            "run {} on this target did not finish: resume or roll it back first",
            p.id
        ))
        .into()),
        _ => Ok(None),
    }
}
