//! One function per command; glue between config, stores, plan, render and apply.

use std::io::Write;

use std::sync::Arc;

use anyhow::Context;
use tracing::info;

use crate::apply::{self, ApplyOptions};
use crate::safety::Safety;
use crate::state::RunKind;
use crate::cli::{Cli, Command, ConfigAction, MigrateArgs};
use crate::config::Config;
use crate::error::{AppError, Exit};
use crate::plan::{self, Policy, Selection};
use crate::render;
use crate::store::{self, DynStore, registry};

/// Logging on stderr. The daemon logs JSON lines at info (one event per run and per failed item);
/// the CLI logs plain warnings unless asked for more.
pub fn init_tracing_for(cli: &Cli) {
    match &cli.command {
        Command::Daemon(args) => init_tracing(cli.verbose.saturating_add(1), !args.log_text || cli.log_json, true),
        _ => init_tracing(cli.verbose, cli.log_json, false),
    }
}

/// See [`crate::logging`]: `RUST_LOG` raises only this crate; colour only on a terminal.
pub fn init_tracing(verbose: u8, json: bool, daemon: bool) {
    crate::logging::init(verbose, json, daemon)
}

pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Migrate(args) => {
            let cfg = crate::insight::load_config(&cli)?;
            migrate(&cfg, args, &mut std::io::stdout()).await
        }
        Command::Rollback(args) => {
            let cfg = Config::load(&cli.config)?;
            rollback(&cfg, args, &mut std::io::stdout()).await
        }
        Command::Runs(args) => {
            let cfg = Config::load(&cli.config)?;
            let db = crate::state::StateDb::open(&cfg.state).await?;
            for r in db.runs(args.limit.into()).await? {
                let journal = db.journal_counts(&r.id).await?;
                let count = |s: &str| journal.get(s).copied().unwrap_or(0);
                if args.json {
                    let mut v = serde_json::to_value(&r)?;
                    v["journal"] = serde_json::to_value(&journal)?;
                    println!("{v}");
                    continue;
                }
                println!(
                    "{}  {:<8} {:<11} {} -> {}  ({} writes: {} done, {} failed, {} not finished){}",
                    r.id,
                    r.kind,
                    r.status.as_str(),
                    r.source,
                    r.target,
                    r.writes_planned,
                    count("done"),
                    count("failed"),
                    count("pending") + count("intent"),
                    r.rollback_of.map(|o| format!(", rolls back {o}")).unwrap_or_default()
                );
            }
            Ok(Exit::Ok)
        }
        Command::Restore(args) => {
            let cfg = Config::load(&cli.config)?;
            restore(&cfg, args, &mut std::io::stdout()).await
        }
        Command::Demo(args) => crate::demo::run(args.dir.as_deref(), &mut std::io::stdout()).await,
        Command::RotateFernetKey(args) => {
            let cfg = Config::load(&cli.config)?;
            let spec = if args.target { &cfg.target } else { &cfg.source };
            let Some(mcfg) = registry::parse(spec)?.downcast::<crate::store::metastore::MetastoreConfig>() else {
                return Err(AppError::Usage("rotate-fernet-key works on a metastore store".into()).into());
            };
            let store = crate::store::metastore::MetastoreStore::open(&mcfg).await?;
            let r = store.rotate_fernet_key(args.dry_run).await?;
            let verb = if args.dry_run { "would re-encrypt" } else { "re-encrypted" };
            println!("{store}: {verb} {} variable(s) and {} connection(s) with the first key", r.variables, r.connections);
            Ok(Exit::Ok)
        }
        Command::Config(c) => match c.action {
            ConfigAction::Check => {
                let cfg = crate::insight::load_config(&cli)?;
                let (source, target) = open_both(&cfg).await?;
                println!("source: {source}\ntarget: {target}\nconfiguration OK");
                Ok(Exit::Ok)
            }
            ConfigAction::Print => crate::insight::run_config_print(&cli, &mut std::io::stdout()),
        },
        Command::Verify(args) => crate::insight::run_verify(&cli, args, &mut std::io::stdout()).await,
        Command::Resolve(args) => crate::insight::run_resolve(&cli, args, &mut std::io::stdout()).await,
        Command::Daemon(args) => daemon(&cli, args).await,
    }
}

async fn daemon(cli: &Cli, args: &crate::cli::DaemonArgs) -> anyhow::Result<Exit> {
    use crate::daemon::schedule::SystemClock;
    if args.check {
        let cfg = crate::daemon::load(&cli.config)?;
        for job in &cfg.jobs {
            let schedule = job.schedule(&cfg.daemon).map_err(AppError::Config)?;
            println!(
                "job {}: {:?} {} -> {}, {} ({}, {})",
                job.name,
                job.mode,
                job.source,
                job.target,
                schedule.pattern(),
                schedule.describe(),
                schedule.timezone()
            );
        }
        println!("configuration OK");
        return Ok(Exit::Ok);
    }
    if args.once {
        return crate::daemon::run_once_all(&cli.config, Arc::new(SystemClock)).await;
    }
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    #[cfg(unix)]
    let shutdown = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = reload_tx.try_send(());
            }
        });
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let shutdown = {
        drop(reload_tx);
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    let opts = crate::daemon::Options { clock: Arc::new(SystemClock), shutdown, reload: reload_rx, on_listen: None };
    crate::daemon::run(&cli.config, opts).await?;
    Ok(Exit::Ok)
}

async fn open_both(cfg: &Config) -> anyhow::Result<(DynStore, DynStore)> {
    let source = registry::open(&cfg.source).await.context("opening the source")?;
    let target = registry::open(&cfg.target).await.context("opening the target")?;
    Ok((source, target))
}

/// The effective policy: the config file, overridden by flags.
pub fn policy(cfg: &Config, args: &MigrateArgs) -> Result<(Policy, ApplyOptions), AppError> {
    let (select, apply_cfg) = effective(cfg, args);
    let policy = Policy::new(Selection::from_config(&select)?, &apply_cfg);
    let opts = ApplyOptions {
        concurrency: apply_cfg.concurrency,
        max_attempts: apply_cfg.max_attempts.max(1),
        verify: apply_cfg.verify,
        max_writes_per_second: apply_cfg.max_writes_per_second,
        ..ApplyOptions::default()
    };
    Ok((policy, opts))
}

/// The config file's [select] and [apply], overridden by flags.
fn effective(cfg: &Config, args: &MigrateArgs) -> (crate::config::SelectConfig, crate::config::ApplyConfig) {
    let mut select = cfg.select.clone();
    if args.only.is_some() {
        select.only = args.only;
    }
    select.include.extend(args.include.iter().cloned());
    select.exclude.extend(args.exclude.iter().cloned());
    let mut apply_cfg = cfg.apply.clone();
    apply_cfg.prune |= args.prune;
    apply_cfg.adopt |= args.adopt;
    if let Some(n) = args.max_deletes {
        apply_cfg.max_deletes = n;
    }
    (select, apply_cfg)
}

/// Saved-plan inputs of one run: the policy to record with `--out`, the plan to check with
/// `--plan-file`.
#[derive(Default)]
struct Saved {
    policy: Option<crate::planfile::SavedPolicy>,
    file: Option<crate::planfile::PlanFile>,
    /// Plan-header lines about the two stores (where a metastore side takes its Fernet key from).
    notes: Vec<String>,
}

/// What one run did, for callers that report it (the daemon's logs and metrics). Holds no values:
/// counts, item ids and error messages that name items only.
#[derive(Default)]
pub struct RunStats {
    /// Told about every store call and its outcome when set (backend error and throttle metrics).
    pub observer: Option<Arc<dyn crate::store::layered::ApiObserver>>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub plan: Option<plan::Summary>,
    /// Items the plan could not migrate: id and the error (never a value).
    pub item_errors: Vec<(crate::model::ItemId, String)>,
    pub report: Option<apply::ApplyReport>,
    pub run_id: Option<String>,
    /// The state database when the caller already holds it open (the daemon): an apply records
    /// its run there instead of opening its own connection pool.
    pub state: Option<Arc<crate::state::StateDb>>,
}

impl RunStats {
    fn layer(&self, store: DynStore) -> DynStore {
        match &self.observer {
            Some(o) => crate::store::layered::Metered::wrap(store, o.clone()),
            None => store,
        }
    }
}

/// `migrate --plan | --apply`.
pub async fn migrate(cfg: &Config, args: &MigrateArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<Exit> {
    migrate_specs(cfg, &cfg.source, &cfg.target, args, out, &mut RunStats::default()).await
}

/// `restore --from NAME --to NAME`: the same pipeline between two named stores.
pub async fn restore(cfg: &Config, args: &crate::cli::RestoreArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<Exit> {
    let target = cfg.store(&args.to)?;
    if let Some(run_id) = &args.snapshot {
        // The snapshot a run recorded of its target before writing: what that target held.
        let Some(safety) = Safety::open(&cfg.state).await? else {
            return Err(AppError::Usage("--snapshot needs the snapshot key the run was recorded with ([state] snapshot_key)".into()).into());
        };
        let run = safety.db.run(run_id).await?;
        let (present, _, unreadable) = safety.snapshot_of(&run).await?;
        for id in &unreadable {
            writeln!(out, "  not in the snapshot: {id} was unreadable before run {run_id}")?;
        }
        let snapshot: DynStore = Arc::new(crate::store::snapshot::SnapshotStore::new(&run.id, &run.target, present));
        return migrate_from(cfg, SourceOf::Open(snapshot), target, &args.run, out, &mut RunStats::default()).await;
    }
    let from = args.from.as_deref().ok_or_else(|| AppError::Usage("restore needs --from NAME or --snapshot RUN".into()))?;
    if from == args.to {
        return Err(AppError::Usage("--from and --to name the same store".into()).into());
    }
    migrate_specs(cfg, cfg.store(from)?, target, &args.run, out, &mut RunStats::default()).await
}

/// Where a run reads from: a configured store, or an already-open one (a snapshot).
enum SourceOf<'a> {
    Spec(&'a crate::config::StoreSpec),
    Open(DynStore),
}

/// Plan or apply from one configured store to another (the CLI, `restore`, and each daemon job).
pub async fn migrate_specs(
    cfg: &Config,
    source: &crate::config::StoreSpec,
    target: &crate::config::StoreSpec,
    args: &MigrateArgs,
    out: &mut (dyn Write + Send),
    stats: &mut RunStats,
) -> anyhow::Result<Exit> {
    migrate_from(cfg, SourceOf::Spec(source), target, args, out, stats).await
}

async fn migrate_from(
    cfg: &Config,
    source: SourceOf<'_>,
    target: &crate::config::StoreSpec,
    args: &MigrateArgs,
    out: &mut (dyn Write + Send),
    stats: &mut RunStats,
) -> anyhow::Result<Exit> {
    let (mut policy, opts) = policy(cfg, args)?;
    let (select_cfg, apply_cfg) = effective(cfg, args);
    let mut saved =
        Saved { policy: Some(crate::planfile::SavedPolicy::new(&select_cfg, &apply_cfg)), file: None, notes: Vec::new() };
    let needs_key = (args.apply && !args.no_snapshot) || args.out.is_some() || args.plan_file.is_some();
    let safety = if needs_key {
        match Safety::open_with(&cfg.state, stats.state.clone()).await? {
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
    let locker = match (&safety, args.apply) {
        (None, true) => lock_db(cfg, stats).await?,
        _ => None,
    };
    if let (Some(path), Some(s)) = (&args.plan_file, &safety) {
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
    let source = match source {
        SourceOf::Spec(spec) => {
            let source_cfg = registry::parse(spec).context("opening the source")?;
            saved.notes.extend(source_cfg.key_note("source"));
            registry::open_config(source_cfg).await.context("opening the source")?
        }
        SourceOf::Open(store) => store,
    };
    let source = stats.layer(source);
    let mut target_cfg = registry::parse(target).context("opening the target")?;
    // Adoption is one decision: the flag or [apply] adopt reaches the store's own guard, and a
    // store configured with `adopt = true` lets the plan update what it did not write.
    if policy.adopt {
        target_cfg.set_adopt(true);
    }
    policy.adopt |= target_cfg.adopt();
    target_cfg.mark_target();
    saved.notes.extend(target_cfg.key_note("target"));
    policy.fidelity = registry::fidelity(target).context("opening the target")?;
    if policy.fidelity.auto_readers
        && let Some(version) = source.airflow_version()
    {
        policy.fidelity.readers = crate::airflow::fidelity::Readers::for_airflow_version(version);
        info!(airflow = version, readers = %policy.fidelity.readers.describe(), "readers from the source metastore's schema");
    }
    let target =
        registry::open_config_with_reader(target_cfg, policy.fidelity.readers.primary()).await.context("opening the target")?;
    // Fault injection for the crash tests (AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER); a no-op otherwise.
    let target = stats.layer(crate::store::layered::from_env(target));
    run_pipeline(source, target, &policy, &opts, args, out, safety.as_ref(), locker.as_deref(), &saved, stats).await
}

/// The state database an apply without a snapshot locks its target in: the caller's (the
/// daemon's), else the configured one. A configured PostgreSQL state that cannot be reached is
/// an error; a SQLite state that cannot be opened (say, a read-only directory) is warned about.
async fn lock_db(cfg: &Config, stats: &RunStats) -> anyhow::Result<Option<Arc<crate::state::StateDb>>> {
    if let Some(db) = &stats.state {
        return Ok(Some(db.clone()));
    }
    match crate::state::StateDb::open(&cfg.state).await {
        Ok(db) => Ok(Some(Arc::new(db))),
        Err(e) if cfg.state.url.is_some() => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "no state database: applying without the target lock");
            Ok(None)
        }
    }
}

/// Plan (and apply) between two open stores without the safety engine (library use, tests).
pub async fn migrate_between(
    source: DynStore,
    target: DynStore,
    policy: &Policy,
    opts: &ApplyOptions,
    args: &MigrateArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Exit> {
    run_pipeline(source, target, policy, opts, args, out, None, None, &Saved::default(), &mut RunStats::default()).await
}

#[allow(clippy::too_many_arguments)] // one call site per command; a struct would only rename them
async fn run_pipeline(
    source: DynStore,
    target: DynStore,
    policy: &Policy,
    opts: &ApplyOptions,
    args: &MigrateArgs,
    out: &mut (dyn Write + Send),
    safety: Option<&Safety>,
    locker: Option<&crate::state::StateDb>,
    saved: &Saved,
    stats: &mut RunStats,
) -> anyhow::Result<Exit> {
    stats.source = Some(source.to_string());
    stats.target = Some(target.to_string());
    // An apply locks its target before reading it: another apply can neither change it between
    // this plan and its writes nor make the snapshot describe a state that is already gone.
    let mut lock = match (safety, locker) {
        (Some(s), _) if args.apply => Some(s.lock(target.as_ref()).await?),
        (None, Some(db)) if args.apply => Some(db.lock_target(&target.identity(), "(apply without snapshot)").await?),
        _ => None,
    };
    let kinds = policy.selection.kinds().to_vec();
    let src_inv = store::scan_all(source.as_ref(), &kinds).await.with_context(|| format!("reading {source}"))?;
    let tgt_inv = store::scan_all(target.as_ref(), &kinds).await.with_context(|| format!("reading {target}"))?;
    info!(source = %source, items = src_inv.len(), errors = src_inv.error_count(), "source read");
    info!(target = %target, items = tgt_inv.len(), errors = tgt_inv.error_count(), "target read");
    let plan = plan::diff(source.as_ref(), &src_inv, target.as_ref(), &tgt_inv, policy);
    stats.plan = Some(plan.summary.clone());
    stats.item_errors = plan
        .errored()
        .map(|c| (c.id.clone(), c.error.as_ref().map_or_else(|| "error".to_string(), ToString::to_string)))
        .collect();

    if let (Some(pf), Some(s)) = (&saved.file, safety) {
        pf.check_context(&s.key, &source.identity(), &target.identity())?;
        let drift = pf.drift(&s.key, &src_inv, &tgt_inv, &policy.selection);
        if !drift.is_empty() {
            for d in &drift {
                writeln!(out, "  drifted: {d}")?;
            }
            return Err(AppError::Drift(format!(
                "saved plan refused: {} item(s) changed since it was made; make a new plan",
                drift.len()
            ))
            .into());
        }
        // What would be written now must be exactly what the saved plan lists.
        let unplanned = pf.unplanned(&plan);
        if !unplanned.is_empty() {
            for line in &unplanned {
                writeln!(out, "  {line}")?;
            }
            return Err(AppError::Drift(format!(
                "saved plan refused: {} write(s) differ from the ones it lists; make a new plan",
                unplanned.len()
            ))
            .into());
        }
    }

    if args.json {
        render::write_json(&plan, out)?;
    } else {
        render::write_table_noted(&plan, &saved.notes, args.show_unchanged, out)?;
    }

    if let (Some(path), Some(s), Some(sp)) = (&args.out, safety, &saved.policy) {
        let pf = crate::planfile::PlanFile::new(&plan, &s.key, sp.clone(), &src_inv, &tgt_inv, &policy.selection);
        pf.save(path)?;
        // Keep stdout machine-readable with --json.
        if !args.json {
            writeln!(out, "Saved the plan to {} (fingerprints only, no values).", path.display())?;
        }
    }

    if args.plan {
        if let Some(exit) = plan.error_exit() {
            return Err(AppError::Items { message: errored_summary(&plan), exit }.into());
        }
        return Ok(if plan.has_changes() { Exit::ChangesPending } else { Exit::Ok });
    }

    // --apply
    if !plan.refusals.is_empty() {
        return Err(AppError::Items { message: format!("plan refused: {}", plan.refusals.join("; ")), exit: Exit::InvalidItem }.into());
    }
    let item_errors = plan.error_exit();
    if let Some(exit) = item_errors
        && !args.skip_errored
    {
        return Err(AppError::Items {
            message: format!("{}; nothing was written (fix them, narrow the selection, or pass --skip-errored)", errored_summary(&plan)),
            exit,
        }
        .into());
    }
    if !plan.has_changes() {
        writeln!(out, "Nothing to apply.")?;
        return Ok(item_errors.unwrap_or(Exit::Ok));
    }
    let run = match safety {
        Some(s) => {
            let lock = lock.take().expect("a snapshotted apply holds the target lock");
            let run =
                s.begin(&plan, target.as_ref(), &tgt_inv, RunKind::Migrate, None, args.resume.as_deref(), lock).await?;
            writeln!(
                out,
                "Run {}{}: an encrypted snapshot of the {} item(s) it touches is recorded; undo with `rollback {}`.",
                run.run_id,
                if run.resumed { " (resumed)" } else { "" },
                plan.writes().count(),
                run.run_id
            )?;
            Some(run)
        }
        None => None,
    };
    stats.run_id = run.as_ref().map(|r| r.run_id.clone());
    let journal = run.as_ref().map_or_else(crate::safety::no_journal, |r| r.journal.clone());
    let report = apply::execute(&plan, target.clone(), opts, journal).await;
    if let (Some(s), Some(run)) = (safety, &run) {
        s.finish(run, &report).await?;
    }
    let report = &*stats.report.insert(report);
    writeln!(
        out,
        "Applied: {} created, {} updated, {} deleted, {} failed; {} verified by read-back.",
        report.created,
        report.updated,
        report.deleted,
        report.failures.len(),
        report.verified
    )?;
    for f in &report.failures {
        writeln!(out, "  failed: {}", f.message)?;
    }
    for id in &report.verify_mismatches {
        writeln!(out, "  read-back differs: {id}")?;
    }
    for id in &report.unverified {
        writeln!(out, "  unverified (written, not read back): {id}")?;
    }
    if !report.not_attempted.is_empty() {
        writeln!(out, "  not attempted: {} item(s); a re-run writes them", report.not_attempted.len())?;
    }
    if let Some(why) = &report.interrupted {
        return Err(AppError::Items {
            message: format!(
                "unavailable: safe to re-run{}: the target stopped answering ({why}); {} written ({} unverified), {} failed, {} not attempted",
                run.as_ref().map_or_else(String::new, |r| format!(" (the next apply resumes run {})", r.run_id)),
                report.written(),
                report.unverified.len(),
                report.failures.len(),
                report.not_attempted.len()
            ),
            exit: report.exit(),
        }
        .into());
    }
    match report.exit() {
        Exit::Ok => Ok(item_errors.unwrap_or(Exit::Ok)),
        Exit::VerifyFailed => Err(AppError::Verify(format!(
            "{} item(s) read back differently from what was written",
            report.verify_mismatches.len()
        ))
        .into()),
        Exit::Throttled if report.failures.is_empty() => Err(AppError::Items {
            message: format!("unavailable: safe to re-run: {} written item(s) could not be read back (unverified)", report.unverified.len()),
            exit: Exit::Throttled,
        }
        .into()),
        exit => Err(AppError::Items {
            message: format!(
                "{} of {} writes failed; {}",
                report.failures.len(),
                plan.writes().count(),
                // Throttled/unavailable runs stay interrupted and resume; others are finished.
                if exit == Exit::Throttled { "re-run to resume" } else { "re-run to retry them in a new run" }
            ),
            exit,
        }
        .into()),
    }
}

fn errored_summary(plan: &plan::Plan) -> String {
    let mut names: Vec<String> = plan.errored().take(5).map(|c| c.id.to_string()).collect();
    let n = plan.errored().count();
    if n > names.len() {
        names.push(format!("and {} more", n - names.len()));
    }
    if n == 0 {
        return plan.refusals.join("; ");
    }
    format!("{n} item(s) cannot be migrated: {}", names.join(", "))
}

/// `rollback RUN --plan | --apply`: the snapshot of RUN as the source, the configured target as
/// the target, restricted to the items RUN touched: updated items get their old values back,
/// items RUN created are deleted. Applying it is itself a snapshotted run.
pub async fn rollback(cfg: &Config, args: &crate::cli::RollbackArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<Exit> {
    let Some(safety) = Safety::open(&cfg.state).await? else {
        return Err(AppError::Usage("rollback needs the snapshot key the run was recorded with ([state] snapshot_key)".into()).into());
    };
    let run = safety.db.run(&args.run).await?;
    let mut target_cfg = registry::parse(&cfg.target).context("opening the target")?;
    target_cfg.set_adopt(true);
    target_cfg.mark_target();
    let plan_reader = registry::fidelity(&cfg.target).context("opening the target")?.readers.primary();
    let target = registry::open_config_with_reader(target_cfg, plan_reader).await.context("opening the target")?;
    let target = crate::store::layered::from_env(target);
    if target.identity() != run.target {
        return Err(AppError::Usage(format!(
            "run {} was applied to {}, but [target] is {}",
            run.id,
            run.target,
            target.identity()
        ))
        .into());
    }
    let lock = if args.plan { None } else { Some(safety.lock(target.as_ref()).await?) };
    let (present, absent, unreadable) = safety.snapshot_of(&run).await?;
    // Only what the run may have written is restored: an item it planned but never attempted
    // (the run was cut off first) is left as it is now, whoever changed it since.
    let never_attempted: std::collections::BTreeSet<crate::model::ItemId> = safety
        .db
        .journal(&run.id)
        .await?
        .into_iter()
        .filter(|r| r.state == crate::state::JournalState::Pending)
        .map(|r| r.id)
        .collect();
    let touched: std::collections::BTreeSet<crate::model::ItemId> =
        present.ids().cloned().chain(absent.iter().cloned()).filter(|id| !never_attempted.contains(id)).collect();
    let source: DynStore = Arc::new(crate::store::snapshot::SnapshotStore::new(&run.id, &run.target, present.clone()));
    let kinds = [crate::model::Kind::Variable, crate::model::Kind::Connection];
    let mut tgt_inv = store::scan_all(target.as_ref(), &kinds).await.with_context(|| format!("reading {target}"))?;
    tgt_inv.retain(|id| touched.contains(id));
    let mut src_inv = present;
    src_inv.retain(|id| touched.contains(id));
    // Put back exactly what the target held, as its own reader read it.
    let readers = crate::airflow::fidelity::Readers::only(&[plan_reader]);
    let policy = Policy {
        selection: Selection::all(),
        prune: true,
        adopt: true,
        max_deletes: usize::MAX,
        fidelity: crate::airflow::fidelity::Fidelity { readers, ..Default::default() },
    };
    let plan = plan::diff(source.as_ref(), &src_inv, target.as_ref(), &tgt_inv, &policy);
    if args.json {
        render::write_json(&plan, out)?;
    } else {
        writeln!(out, "Rollback of run {} ({}):", run.id, run.status.as_str())?;
        render::write_table(&plan, false, out)?;
    }
    // Notes go beside the plan; with --json, to stderr so stdout stays one JSON document.
    let mut notes: Vec<String> =
        unreadable.iter().map(|id| format!("  not restorable: {id} was unreadable before the run")).collect();
    if !never_attempted.is_empty() {
        notes.push(format!("  left alone: {} planned items the run never attempted", never_attempted.len()));
    }
    for note in notes {
        if args.json {
            eprintln!("{note}");
        } else {
            writeln!(out, "{note}")?;
        }
    }
    if args.plan {
        return Ok(if plan.has_changes() { Exit::ChangesPending } else { Exit::Ok });
    }
    if let Some(exit) = plan.error_exit() {
        return Err(AppError::Items { message: errored_summary(&plan), exit }.into());
    }
    // An interrupted rollback of the same run is continued (its snapshot kept), not restarted.
    let resume = match safety.db.incomplete_run(&run.target).await? {
        Some(p) if p.rollback_of.as_deref() == Some(run.id.as_str()) => Some(p.id),
        Some(p) if p.id != run.id => {
            return Err(AppError::Usage(format!(
                "run {} on this target did not finish: resume or roll it back first",
                p.id
            ))
            .into());
        }
        _ => None,
    };
    let active =
        safety.begin(&plan, target.as_ref(), &tgt_inv, RunKind::Rollback, Some(&run.id), resume.as_deref(), lock.expect("taken for --apply")).await?;
    let report = apply::execute(&plan, target.clone(), &ApplyOptions::default(), active.journal.clone()).await;
    safety.finish(&active, &report).await?;
    writeln!(
        out,
        "Rolled back: {} restored, {} deleted, {} failed (run {}).",
        report.created + report.updated,
        report.deleted,
        report.failures.len(),
        active.run_id
    )?;
    if report.exit() == Exit::Ok {
        safety.db.set_run_status(&run.id, crate::state::RunStatus::RolledBack).await?;
        Ok(Exit::Ok)
    } else {
        Err(AppError::Items { message: format!("{} rollback writes failed; re-run to finish", report.failures.len()), exit: report.exit() }.into())
    }
}
