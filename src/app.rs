//! One function per command; glue between config, stores, plan, render and apply.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use tracing::info;

use crate::apply::{self, ApplyOptions, NoJournal};
use crate::cli::{Cli, Command, ConfigAction, MigrateArgs};
use crate::config::Config;
use crate::error::{AppError, Exit};
use crate::plan::{self, Policy, Selection};
use crate::render;
use crate::store::{self, DynStore, registry};

pub fn init_tracing(verbose: u8, json: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info,airflow_secrets_sync=debug",
        _ => "debug,airflow_secrets_sync=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.with_target(false).try_init();
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Migrate(args) => {
            let cfg = crate::insight::load_config(&cli)?;
            migrate(&cfg, args, &mut std::io::stdout()).await
        }
        Command::Demo(args) => crate::demo::run(args.dir.as_deref(), &mut std::io::stdout()).await,
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
    }
}

async fn open_both(cfg: &Config) -> anyhow::Result<(DynStore, DynStore)> {
    let source = registry::open(&cfg.source).await.context("opening the source")?;
    let target = registry::open(&cfg.target).await.context("opening the target")?;
    Ok((source, target))
}

/// The effective policy: the config file, overridden by flags.
pub fn policy(cfg: &Config, args: &MigrateArgs) -> Result<(Policy, ApplyOptions), AppError> {
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
    let policy = Policy::new(Selection::from_config(&select)?, &apply_cfg);
    let opts = ApplyOptions {
        concurrency: apply_cfg.concurrency,
        max_attempts: apply_cfg.max_attempts.max(1),
        verify: apply_cfg.verify,
        ..ApplyOptions::default()
    };
    Ok((policy, opts))
}

/// `migrate --plan | --apply`.
pub async fn migrate(cfg: &Config, args: &MigrateArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let (mut policy, opts) = policy(cfg, args)?;
    let source = registry::open(&cfg.source).await.context("opening the source")?;
    let mut target_cfg = registry::parse(&cfg.target).context("opening the target")?;
    // Adoption is one decision: the flag or [apply] adopt reaches the store's own guard, and a
    // store configured with `adopt = true` lets the plan update what it did not write.
    if policy.adopt {
        target_cfg.set_adopt(true);
    }
    policy.adopt |= target_cfg.adopt();
    let target = registry::open_config(target_cfg).await.context("opening the target")?;
    migrate_between(source, target, &policy, &opts, args, out).await
}

pub async fn migrate_between(
    source: DynStore,
    target: DynStore,
    policy: &Policy,
    opts: &ApplyOptions,
    args: &MigrateArgs,
    out: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let kinds = policy.selection.kinds().to_vec();
    let src_inv = store::scan_all(source.as_ref(), &kinds).await.with_context(|| format!("reading {source}"))?;
    let tgt_inv = store::scan_all(target.as_ref(), &kinds).await.with_context(|| format!("reading {target}"))?;
    info!(source = %source, items = src_inv.len(), errors = src_inv.error_count(), "source read");
    info!(target = %target, items = tgt_inv.len(), errors = tgt_inv.error_count(), "target read");
    let plan = plan::diff(source.as_ref(), &src_inv, target.as_ref(), &tgt_inv, policy);

    if args.json {
        writeln!(out, "{}", render::json(&plan))?;
    } else {
        write!(out, "{}", render::table(&plan, args.show_unchanged))?;
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
    let report = apply::execute(&plan, target.clone(), opts, Arc::new(NoJournal)).await;
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
    match report.exit() {
        Exit::Ok => Ok(item_errors.unwrap_or(Exit::Ok)),
        Exit::VerifyFailed => Err(AppError::Verify(format!(
            "{} item(s) read back differently from what was written",
            report.verify_mismatches.len()
        ))
        .into()),
        exit => Err(AppError::Items {
            message: format!("{} of {} writes failed; re-run to resume", report.failures.len(), plan.writes().count()),
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
