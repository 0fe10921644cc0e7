//! The stages after [`super::prepare`]: lock, scan, plan, render, and for an apply snapshot,
//! write (through [`apply::execute`] with the run's `[apply]` options), verify and record. One
//! code path for every operation.

use std::collections::HashSet;
use std::io::Write;

use anyhow::Context;
use tracing::info;

use super::{Prepared, RunOutcome, rollback};
use crate::apply::{self, ApplyReport};
use crate::error::{AppError, Exit};
use crate::model::{Inventory, ItemId};
use crate::plan::{self, Plan};
use crate::planfile::Prints;
use crate::render;
use crate::state::{RunKind, RunStatus};
use crate::store;

pub(super) async fn execute(mut p: Prepared, out: &mut (dyn Write + Send), outcome: &mut RunOutcome) -> anyhow::Result<Exit> {
    let (source, target) = (p.source.clone(), p.target.clone());
    outcome.source = Some(source.to_string());
    outcome.target = Some(target.to_string());
    let apply = p.flags.apply;
    // An apply locks its target before reading it: another apply can neither change it between
    // this plan and its writes nor make the snapshot describe a state that is already gone.
    let mut lock = match (p.lock.take(), &p.safety, &p.locker) {
        (Some(l), _, _) => Some(l),
        (None, Some(s), _) if apply => Some(s.lock(target.as_ref()).await?),
        (None, None, Some(db)) if apply => Some(db.lock_target(&target.identity(), "(apply without snapshot)").await?),
        _ => None,
    };
    let (plan, tgt_inv, prints) = scan_and_plan(&mut p).await?;
    outcome.plan = Some(plan.summary.clone());
    outcome.item_errors = plan
        .errored()
        .map(|c| (c.id.clone(), c.error.as_ref().map_or_else(|| "error".to_string(), ToString::to_string)))
        .collect();

    check_saved_plan(&p, &plan, prints.as_ref(), out)?;
    show(&p, &plan, out)?;
    if let (Some(path), Some(s), Some(sp)) = (&p.flags.save_plan, &p.safety, &p.saved.policy) {
        let prints = prints.as_ref().expect("fingerprints are taken when a plan is saved");
        let pf = crate::planfile::PlanFile::with_prints(&plan, &s.key, sp.clone(), prints);
        pf.save(path)?;
        // Keep stdout machine-readable with --json.
        if !p.flags.json {
            writeln!(out, "Saved the plan to {} (fingerprints only, no values).", path.display())?;
        }
    }

    if !apply {
        if let Some(exit) = plan.error_exit() {
            return Err(AppError::Items { message: errored_summary(&plan), exit }.into());
        }
        return Ok(if plan.has_changes() { Exit::ChangesPending } else { Exit::Ok });
    }

    if !plan.refusals.is_empty() {
        return Err(AppError::Items { message: format!("plan refused: {}", plan.refusals.join("; ")), exit: Exit::InvalidItem }.into());
    }
    let item_errors = plan.error_exit();
    if let Some(exit) = item_errors
        && !p.flags.skip_errored
    {
        // A rollback puts back all of its run or nothing: it has no selection to narrow.
        let hint = if p.rollback.is_some() { "fix them and re-run" } else { "fix them, narrow the selection, or pass --skip-errored" };
        return Err(AppError::Items { message: format!("{}; nothing was written ({hint})", errored_summary(&plan)), exit }.into());
    }
    // A rollback with nothing left to write still goes on: it finishes an interrupted rollback
    // of the same run and marks the run rolled back.
    if !plan.has_changes() && p.rollback.is_none() {
        writeln!(out, "Nothing to apply.")?;
        return Ok(item_errors.unwrap_or(Exit::Ok));
    }
    let run = match &p.safety {
        Some(s) => {
            let lock = lock.take().expect("a snapshotted apply holds the target lock");
            let run = match &p.rollback {
                Some(rb) => {
                    let resume = rollback::resumable(s, &rb.run).await?;
                    s.begin(&plan, target.as_ref(), &tgt_inv, RunKind::Rollback, Some(&rb.run.id), resume.as_deref(), lock).await?
                }
                None => {
                    let run = s.begin(&plan, target.as_ref(), &tgt_inv, RunKind::Migrate, None, p.flags.resume.as_deref(), lock).await?;
                    writeln!(
                        out,
                        "Run {}{}: an encrypted snapshot of the {} item(s) it touches is recorded; undo with `rollback {}`.",
                        run.run_id,
                        if run.resumed { " (resumed)" } else { "" },
                        plan.writes().count(),
                        run.run_id
                    )?;
                    run
                }
            };
            Some(run)
        }
        None => None,
    };
    outcome.run_id = run.as_ref().map(|r| r.run_id.clone());
    let journal = run.as_ref().map_or_else(crate::safety::no_journal, |r| r.journal.clone());
    let report = apply::execute(&plan, target.clone(), &p.options, journal).await;
    if let (Some(s), Some(run)) = (&p.safety, &run) {
        s.finish(run, &report).await?;
    }
    let report = &*outcome.report.insert(report);
    match &p.rollback {
        Some(_) => writeln!(
            out,
            "Rolled back: {} restored, {} deleted, {} failed (run {}).",
            report.created + report.updated,
            report.deleted,
            report.failures.len(),
            outcome.run_id.as_deref().unwrap_or("-")
        )?,
        None => writeln!(
            out,
            "Applied: {} created, {} updated, {} deleted, {} failed; {} verified by read-back.",
            report.created,
            report.updated,
            report.deleted,
            report.failures.len(),
            report.verified
        )?,
    }
    details(report, out)?;
    let exit = exit_of(report, &plan, outcome.run_id.as_deref())?;
    if let (Some(rb), Some(s)) = (&p.rollback, &p.safety) {
        s.db.set_run_status(&rb.run.id, RunStatus::RolledBack).await?;
    }
    Ok(item_errors.unwrap_or(exit))
}

/// Scan both sides and diff them one kind at a time: a kind's values are dropped once compared,
/// so both sides of every kind are never held at once. Kept: the target entries the plan
/// overwrites or deletes (the snapshot records them), and with a saved plan (`--out`,
/// `--plan-file`) every item's fingerprints.
async fn scan_and_plan(p: &mut Prepared) -> anyhow::Result<(Plan, Inventory, Option<Prints>)> {
    let (source, target) = (p.source.clone(), p.target.clone());
    let mut preread = p.source_inventory.take();
    let key = match &p.safety {
        Some(s) if p.flags.save_plan.is_some() || p.saved.file.is_some() => Some(&s.key),
        _ => None,
    };
    let mut prints = key.map(|_| Prints::default());
    let mut differ = plan::Differ::new(source.as_ref(), target.as_ref(), &p.policy);
    let mut overwritten = Inventory::new();
    let (mut src_counts, mut tgt_counts) = ((0, 0), (0, 0));
    for &kind in p.policy.selection.kinds() {
        // Both sides of a kind at once: a remote target's round trips overlap the source's query
        // and decryption (one kind at a time still bounds what is held).
        let given = preread.as_mut().map(|inv| inv.take_kind(kind));
        let (src_read, tgt_read) = futures::join!(
            async {
                match given {
                    Some(inv) => Ok(inv),
                    None => store::scan_kind(source.as_ref(), kind).await,
                }
            },
            store::scan_kind(target.as_ref(), kind)
        );
        let mut tgt = tgt_read.with_context(|| format!("reading {target}"))?;
        let mut src = src_read.with_context(|| format!("reading {source}"))?;
        if let Some(only) = &p.only_ids {
            src.retain(|id| only.contains(id));
            tgt.retain(|id| only.contains(id));
        }
        src_counts = (src_counts.0 + src.len(), src_counts.1 + src.error_count());
        tgt_counts = (tgt_counts.0 + tgt.len(), tgt_counts.1 + tgt.error_count());
        let changes = differ.add(&src, &tgt);
        let written: HashSet<&ItemId> = changes.iter().filter(|c| c.action.is_write()).map(|c| &c.id).collect();
        if let (Some(prints), Some(key)) = (&mut prints, key) {
            prints.add(key, &src, &tgt, &p.policy.selection);
        }
        tgt.retain(|id| written.contains(id));
        overwritten.extend(tgt);
        // `src` goes here: the plan holds (shares) only the entries it writes.
    }
    info!(source = %source, items = src_counts.0, errors = src_counts.1, "source read");
    info!(target = %target, items = tgt_counts.0, errors = tgt_counts.1, "target read");
    Ok((differ.finish(), overwritten, prints))
}

/// A saved plan (`--plan-file`) applies only to the stores it was made for, unchanged since, and
/// only the writes it lists.
fn check_saved_plan(p: &Prepared, plan: &Plan, prints: Option<&Prints>, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let (Some(pf), Some(s)) = (&p.saved.file, &p.safety) else { return Ok(()) };
    pf.check_context(&s.key, &p.source.identity(), &p.target.identity())?;
    let drift = pf.drift_of(prints.expect("fingerprints are taken when a saved plan is applied"));
    if !drift.is_empty() {
        for d in &drift {
            writeln!(out, "  drifted: {d}")?;
        }
        return Err(AppError::Drift(format!("saved plan refused: {} item(s) changed since it was made; make a new plan", drift.len())).into());
    }
    // What would be written now must be exactly what the saved plan lists.
    let unplanned = pf.unplanned(plan);
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
    Ok(())
}

/// The plan, masked: JSON or a table (a rollback's under its own header, with its notes).
fn show(p: &Prepared, plan: &Plan, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match (&p.rollback, p.flags.json) {
        (_, true) => render::write_json(plan, out)?,
        (Some(rb), false) => {
            writeln!(out, "Rollback of run {} ({}):", rb.run.id, rb.run.status.as_str())?;
            render::write_table(plan, false, out)?;
        }
        (None, false) => render::write_table_noted(plan, &p.saved.notes, p.flags.show_unchanged, out)?,
    }
    let Some(rb) = &p.rollback else { return Ok(()) };
    // Notes go beside the plan; with --json, to stderr so stdout stays one JSON document.
    let mut notes: Vec<String> =
        rb.unreadable.iter().map(|id| format!("  not restorable: {id} was unreadable before the run")).collect();
    if rb.never_attempted > 0 {
        notes.push(format!("  left alone: {} planned items the run never attempted", rb.never_attempted));
    }
    for note in notes {
        if p.flags.json {
            eprintln!("{note}");
        } else {
            writeln!(out, "{note}")?;
        }
    }
    Ok(())
}

/// The lines under an apply's summary: what failed, read back differently, or was not attempted.
fn details(report: &ApplyReport, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
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
    Ok(())
}

/// The exit of an apply: `Ok(Exit::Ok)` when every write landed and read back; otherwise the
/// error that says what to do (its exit class is the report's).
fn exit_of(report: &ApplyReport, plan: &Plan, run_id: Option<&str>) -> anyhow::Result<Exit> {
    if let Some(why) = &report.interrupted {
        return Err(AppError::Items {
            message: format!(
                "unavailable: safe to re-run{}: the target stopped answering ({why}); {} written ({} unverified), {} failed, {} not attempted",
                run_id.map_or_else(String::new, |r| format!(" (the next apply resumes run {r})")),
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
        Exit::Ok => Ok(Exit::Ok),
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

fn errored_summary(plan: &Plan) -> String {
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
