//! The one run path: a [`RunRequest`] in, a [`RunOutcome`] out. `migrate`, `restore`, `rollback`
//! and every daemon job are the same pipeline; the CLI (`app`) and the daemon only build
//! the request.
//!
//! ```text
//!   prepare  open the stores (layers: metrics, fault injection), the state database and the
//!            snapshot key; the policy and the ApplyOptions from [select] / [apply]
//!   lock     an apply takes the target's lock before reading it
//!   scan     both sides (a rollback: the snapshot it recorded), restricted to what the run covers
//!   plan     plan::diff; a saved plan is checked for drift; rendered masked (table or JSON)
//!   apply    snapshot + journal (safety), apply::execute, read-back verify, the run's record
//! ```
//!
//! The stages differ by [`Operation`] only where the operation means something different (a
//! rollback's source is a snapshot, it covers only the items its run touched and marks that run
//! rolled back); concurrency, pacing, retries, verify, metrics and exit codes are one code path.

mod execute;
mod prepare;
mod rollback;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::apply::{ApplyOptions, ApplyReport};
use crate::config::{ApplyConfig, Config, OnlyKind, SelectConfig, StoreSpec};
use crate::error::Exit;
use crate::model::{Inventory, ItemId};
use crate::plan::{self, Policy};
use crate::safety::Safety;
use crate::state::StateDb;
use crate::store::DynStore;
use crate::store::layered::ApiObserver;

/// What a run does to its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Bring the target in line with the source (`migrate`, a daemon job).
    Migrate,
    /// Incident recovery between two named stores (`restore`): a migrate by another name.
    Restore,
    /// Undo run `run`: its snapshot is the source, restricted to the items it may have written.
    Rollback { run: String },
}

/// One side of a run.
#[derive(Clone)]
pub enum Endpoint {
    /// A configured store, opened by the pipeline (`[source]`, `[target]`, `[stores.NAME]`).
    Spec(StoreSpec),
    /// A store the caller already opened (library use, tests).
    Open(DynStore),
    /// The snapshot run RUN recorded of its target before writing (`restore --snapshot RUN`).
    Snapshot(String),
}

/// Plan only (`--plan`: exit 2 when changes are pending) or apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// What the caller overrides of the config file's `[select]` and `[apply]` (flags, a job's keys).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub only: Option<OnlyKind>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub prune: bool,
    pub adopt: bool,
    pub max_deletes: Option<usize>,
}

/// Everything one run needs to know. Build it with [`RunRequest::new`] (the config file's
/// `[select]` and `[apply]`) and adjust the fields.
pub struct RunRequest {
    pub operation: Operation,
    /// Ignored by a rollback, whose source is always its run's snapshot.
    pub source: Endpoint,
    pub target: Endpoint,
    pub mode: Mode,
    /// The effective `[select]` (the config file's, with overrides).
    pub select: SelectConfig,
    /// The effective `[apply]`: the policy's prune/adopt/max_deletes and the apply's concurrency,
    /// attempts, verify and pacing.
    pub apply: ApplyConfig,
    /// Print the plan as JSON instead of a table.
    pub json: bool,
    pub show_unchanged: bool,
    /// Also save the plan (fingerprints only) to this file (`--out`).
    pub save_plan: Option<PathBuf>,
    /// Apply the plan saved in this file, under its policy, refusing drift (`--plan-file`).
    pub plan_file: Option<PathBuf>,
    /// Apply without a rollback snapshot (the target lock is still taken).
    pub no_snapshot: bool,
    /// Continue this interrupted run.
    pub resume: Option<String>,
    /// Apply the rest of a plan some of whose items have errors.
    pub skip_errored: bool,
    /// Told about every store call (the daemon's backend metrics).
    pub observer: Option<Arc<dyn ApiObserver>>,
    /// The state database when the caller holds it open (the daemon): the run records itself there.
    pub state: Option<Arc<StateDb>>,
}

impl RunRequest {
    /// A run between `source` and `target` under the config file's `[select]` and `[apply]`.
    pub fn new(cfg: &Config, operation: Operation, source: Endpoint, target: Endpoint, mode: Mode) -> Self {
        Self {
            operation,
            source,
            target,
            mode,
            select: cfg.select.clone(),
            apply: cfg.apply.clone(),
            json: false,
            show_unchanged: false,
            save_plan: None,
            plan_file: None,
            no_snapshot: false,
            resume: None,
            skip_errored: false,
            observer: None,
            state: None,
        }
    }

    /// `rollback RUN`: the configured `[target]`, back to what run `run` found there.
    pub fn rollback(cfg: &Config, run: impl Into<String>, mode: Mode) -> Self {
        let target = Endpoint::Spec(cfg.target.clone());
        // The source is the run's snapshot; the pipeline opens it once it has the state database.
        Self::new(cfg, Operation::Rollback { run: run.into() }, target.clone(), target, mode)
    }

    /// Apply flag or job overrides on top of the config file's `[select]` and `[apply]`.
    pub fn with_overrides(mut self, o: Overrides) -> Self {
        if o.only.is_some() {
            self.select.only = o.only;
        }
        self.select.include.extend(o.include);
        self.select.exclude.extend(o.exclude);
        self.apply.prune |= o.prune;
        self.apply.adopt |= o.adopt;
        if let Some(n) = o.max_deletes {
            self.apply.max_deletes = n;
        }
        self
    }
}

/// What one run did, whatever its result. Holds no values: store names, counts, item ids and
/// error messages that name items only.
pub struct RunOutcome {
    /// The run's exit class, or the error that ended it (mapped to an exit code by
    /// [`crate::error::classify`]).
    pub result: anyhow::Result<Exit>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub plan: Option<plan::Summary>,
    /// Items the plan could not migrate: id and the error (never a value).
    pub item_errors: Vec<(ItemId, String)>,
    /// The apply's report, when it got as far as writing.
    pub report: Option<ApplyReport>,
    /// The run recorded in the state database (a snapshotted apply).
    pub run_id: Option<String>,
}

impl RunOutcome {
    fn new() -> Self {
        Self { result: Ok(Exit::Ok), source: None, target: None, plan: None, item_errors: Vec::new(), report: None, run_id: None }
    }

    /// A run that ended before it started (its request could not be built).
    pub fn failed(error: anyhow::Error) -> Self {
        Self { result: Err(error), ..Self::new() }
    }

    pub fn into_result(self) -> anyhow::Result<Exit> {
        self.result
    }
}

/// Run `req`: open, lock, scan, plan, render to `out`, and with [`Mode::Apply`] snapshot, write,
/// verify and record the run.
pub async fn run(cfg: &Config, req: RunRequest, out: &mut (dyn Write + Send)) -> RunOutcome {
    let mut outcome = RunOutcome::new();
    outcome.result = match prepare::prepare(cfg, req, out).await {
        Ok(prepared) => execute::execute(prepared, out, &mut outcome).await,
        Err(e) => Err(e),
    };
    outcome
}

/// The `[apply]` options an apply runs with: the same for every operation.
pub fn apply_options(apply: &ApplyConfig) -> ApplyOptions {
    ApplyOptions {
        concurrency: apply.concurrency,
        max_attempts: apply.max_attempts.max(1),
        verify: apply.verify,
        max_writes_per_second: apply.max_writes_per_second,
        ..ApplyOptions::default()
    }
}

/// Plan (and apply) between two open stores under an explicit policy and options, without the
/// state database (library use, tests): no snapshot, no lock, no run record.
pub async fn between(
    source: DynStore,
    target: DynStore,
    policy: &Policy,
    options: &ApplyOptions,
    flags: Flags,
    out: &mut (dyn Write + Send),
) -> RunOutcome {
    let prepared = Prepared {
        source,
        target,
        source_inventory: None,
        only_ids: None,
        policy: policy.clone(),
        options: options.clone(),
        safety: None,
        locker: None,
        lock: None,
        saved: Saved::default(),
        flags,
        rollback: None,
    };
    let mut outcome = RunOutcome::new();
    outcome.result = execute::execute(prepared, out, &mut outcome).await;
    outcome
}

/// The per-run switches the stages read (from the request).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub apply: bool,
    pub json: bool,
    pub show_unchanged: bool,
    pub save_plan: Option<PathBuf>,
    pub skip_errored: bool,
    pub resume: Option<String>,
}

/// Saved-plan inputs of one run: the policy to record with `--out`, the plan to check with
/// `--plan-file`, and plan-header lines about the two stores (where a metastore side takes its
/// Fernet key from).
#[derive(Default)]
struct Saved {
    policy: Option<crate::planfile::SavedPolicy>,
    file: Option<crate::planfile::PlanFile>,
    notes: Vec<String>,
}

/// A rollback's facts the later stages need.
struct RollbackOf {
    run: crate::state::RunRecord,
    /// Items the run never attempted (left alone).
    never_attempted: usize,
    /// Items unreadable before the run (not restorable).
    unreadable: Vec<ItemId>,
}

/// A run whose stores are open and whose policy and options are decided.
struct Prepared {
    source: DynStore,
    target: DynStore,
    /// The source as already read (a rollback's snapshot, as recorded); else the source is scanned.
    source_inventory: Option<Inventory>,
    /// Only these items are planned (a rollback: what its run may have written).
    only_ids: Option<BTreeSet<ItemId>>,
    policy: Policy,
    options: ApplyOptions,
    safety: Option<Safety>,
    /// The state database an apply without a snapshot locks its target in.
    locker: Option<Arc<StateDb>>,
    /// The target's lock when a stage before the scan already took it (a rollback).
    lock: Option<crate::state::TargetLock>,
    saved: Saved,
    flags: Flags,
    rollback: Option<RollbackOf>,
}
