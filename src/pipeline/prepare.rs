//! The first stage: from a [`RunRequest`] to a [`Prepared`] run. Opens the stores (with the
//! metrics and fault-injection layers), the state database and the snapshot key, and decides the
//! policy and the apply options, the same way for every operation.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use tracing::info;

use super::{Endpoint, Flags, Mode, Operation, Prepared, RunRequest, Saved, apply_options};
use crate::config::Config;
use crate::error::AppError;
use crate::plan::{Policy, Selection};
use crate::safety::Safety;
use crate::state::StateDb;
use crate::store::layered::{self, ApiObserver};
use crate::store::{DynStore, registry};

pub(super) async fn prepare(cfg: &Config, req: RunRequest, out: &mut (dyn Write + Send)) -> anyhow::Result<Prepared> {
    if let Operation::Rollback { run } = &req.operation {
        let run = run.clone();
        return super::rollback::prepare(cfg, &run, req).await;
    }
    let apply = req.mode == Mode::Apply;
    // The snapshot a run recorded of its target before writing: what that target held.
    let snapshot_source = match &req.source {
        Endpoint::Snapshot(run_id) => Some(snapshot_source(cfg, run_id, req.state.clone(), out).await?),
        _ => None,
    };
    let mut policy = Policy::new(Selection::from_config(&req.select)?, &req.apply);
    let options = apply_options(&req.apply);
    let mut saved = Saved {
        policy: Some(crate::planfile::SavedPolicy::new(&req.select, &req.apply)),
        file: None,
        notes: Vec::new(),
    };
    let needs_key = (apply && !req.no_snapshot) || req.save_plan.is_some() || req.plan_file.is_some();
    let safety = if needs_key {
        match Safety::open_with(&cfg.state, req.state.clone()).await? {
            Some(s) => Some(s),
            None => {
                return Err(AppError::Usage(
                    "--apply records an encrypted snapshot of everything it overwrites, and saved plans carry keyed \
                     fingerprints: both need a snapshot key: set [state] snapshot_key or snapshot_key_cmd, or \
                     AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY (or pass --no-snapshot to apply without the ability to roll back)"
                        .into(),
                )
                .into());
            }
        }
    } else {
        None
    };
    // An apply without a snapshot still takes the target's lock in the state database, so it
    // never writes under a snapshotted apply (or another one of its kind).
    let locker = match (&safety, apply) {
        (None, true) => lock_db(cfg, req.state.clone()).await?,
        _ => None,
    };
    if let (Some(path), Some(s)) = (&req.plan_file, &safety) {
        // A saved plan is applied under the policy it was made with, not today's flags, and only
        // if its MAC shows nobody edited that policy (or anything else in it).
        let pf = crate::planfile::PlanFile::load(path)?;
        pf.verify(&s.key)?;
        let p = &pf.policy;
        policy = Policy {
            selection: Selection::from_config(&p.select())?,
            prune: p.prune,
            adopt: p.adopt,
            max_deletes: p.max_deletes,
            fidelity: policy.fidelity,
        };
        saved.file = Some(pf);
    }
    let source = match (req.source, snapshot_source) {
        (_, Some(snapshot)) => snapshot,
        (Endpoint::Spec(spec), None) => {
            let source_cfg = registry::parse(&spec).context("opening the source")?;
            saved.notes.extend(source_cfg.key_note("source"));
            registry::open_config(source_cfg).await.context("opening the source")?
        }
        (Endpoint::Open(store), None) => store,
        (Endpoint::Snapshot(_), None) => unreachable!("opened above"),
    };
    let source = observed(source, req.observer.as_ref());
    let target = match req.target {
        Endpoint::Spec(spec) => {
            let mut target_cfg = registry::parse(&spec).context("opening the target")?;
            // Adoption is one decision: the flag or [apply] adopt reaches the store's own guard,
            // and a store configured with `adopt = true` lets the plan update what it did not write.
            if policy.adopt {
                target_cfg.set_adopt(true);
            }
            policy.adopt |= target_cfg.adopt();
            target_cfg.mark_target();
            saved.notes.extend(target_cfg.key_note("target"));
            policy.fidelity = registry::fidelity(&spec).context("opening the target")?;
            if policy.fidelity.auto_readers
                && let Some(version) = source.airflow_version()
            {
                policy.fidelity.readers = crate::airflow::fidelity::Readers::for_airflow_version(version);
                info!(airflow = version, readers = %policy.fidelity.readers.describe(), "readers from the source metastore's schema");
            }
            let target = registry::open_config_with_reader(target_cfg, policy.fidelity.readers.primary())
                .await
                .context("opening the target")?;
            // Fault injection for the crash tests (AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER); a no-op otherwise.
            layered::from_env(target)
        }
        Endpoint::Open(store) => store,
        Endpoint::Snapshot(_) => return Err(AppError::Usage("a snapshot is read-only: it cannot be a target".into()).into()),
    };
    let target = observed(target, req.observer.as_ref());
    let flags = Flags {
        apply,
        json: req.json,
        show_unchanged: req.show_unchanged,
        save_plan: req.save_plan,
        skip_errored: req.skip_errored,
        resume: req.resume,
    };
    Ok(Prepared {
        source,
        target,
        source_inventory: None,
        only_ids: None,
        policy,
        options,
        safety,
        locker,
        lock: None,
        saved,
        flags,
        rollback: None,
    })
}

/// `store` behind the metrics layer when the caller observes store calls (the daemon).
pub(super) fn observed(store: DynStore, observer: Option<&Arc<dyn ApiObserver>>) -> DynStore {
    match observer {
        Some(o) => layered::Metered::wrap(store, o.clone()),
        None => store,
    }
}

/// The snapshot run `run_id` recorded of its target, as a read-only store; items that were
/// unreadable then are named on `out`.
async fn snapshot_source(
    cfg: &Config,
    run_id: &str,
    db: Option<Arc<StateDb>>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<DynStore> {
    let Some(safety) = Safety::open_with(&cfg.state, db).await? else {
        return Err(AppError::Usage("--snapshot needs the snapshot key the run was recorded with ([state] snapshot_key)".into()).into());
    };
    let run = safety.db.run(run_id).await?;
    let (present, _, unreadable) = safety.snapshot_of(&run).await?;
    for id in &unreadable {
        writeln!(out, "  not in the snapshot: {id} was unreadable before run {run_id}")?;
    }
    Ok(Arc::new(crate::store::snapshot::SnapshotStore::new(&run.id, &run.target, present)))
}

/// The state database an apply without a snapshot locks its target in: the caller's (the
/// daemon's), else the configured one. A configured PostgreSQL state that cannot be reached is
/// an error; a SQLite state that cannot be opened (say, a read-only directory) is warned about.
async fn lock_db(cfg: &Config, db: Option<Arc<StateDb>>) -> anyhow::Result<Option<Arc<StateDb>>> {
    if let Some(db) = db {
        return Ok(Some(db));
    }
    match StateDb::open(&cfg.state).await {
        Ok(db) => Ok(Some(Arc::new(db))),
        Err(e) if cfg.state.url.is_some() => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "no state database: applying without the target lock");
            Ok(None)
        }
    }
}
