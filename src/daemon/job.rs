//! One run of one job: take the job's replica lock, plan (and apply) through the same pipeline
//! as `migrate`, then record the outcome in metrics, `/status` and one JSON log event.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::config::daemon::{JobConfig, JobMode};
use super::schedule::Clock;
use super::metrics::{ItemLabels, Metrics, RunLabels};
use crate::config::Config;
use crate::error::{AppError, Exit, classify};
use crate::pipeline::{self, Endpoint, Mode, Operation, Overrides, RunOutcome, RunRequest};
use crate::state::{StateDb, StateError};

/// The last run of a job, as `/status` shows it (counts and messages, never a value).
#[derive(Clone, Debug, Serialize)]
pub struct RunStatus {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    /// success | drift | failure | skipped
    pub result: &'static str,
    pub exit_code: u8,
    #[serde(skip)]
    pub exit: Exit,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::plan::Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
    /// Ids of items that could not be migrated or written (at most 20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_items: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub failed: usize,
    pub verified: usize,
}

/// The run this job asks for: the config file's [select]/[apply], then the job's own overrides.
pub fn request(cfg: &Config, job: &JobConfig) -> Result<RunRequest, AppError> {
    let source = Endpoint::Spec(cfg.store(&job.source)?.clone());
    let target = Endpoint::Spec(cfg.store(&job.target)?.clone());
    let mode = if job.mode == JobMode::Apply { Mode::Apply } else { Mode::Plan };
    let mut req = RunRequest::new(cfg, Operation::Migrate, source, target, mode).with_overrides(Overrides {
        only: job.only,
        include: job.include.clone(),
        exclude: job.exclude.clone(),
        prune: job.prune.unwrap_or(false),
        adopt: job.adopt.unwrap_or(false),
        max_deletes: job.max_deletes,
    });
    req.skip_errored = job.skip_errored;
    req.no_snapshot = job.no_snapshot;
    Ok(req)
}

/// Run `job` once. Never panics on a store or state failure: the outcome says what happened.
pub async fn run_once(cfg: &Config, job: &JobConfig, db: &Arc<StateDb>, metrics: &Arc<Metrics>, clock: &dyn Clock) -> RunStatus {
    let started_at = clock.now();
    let labels = Metrics::job(&job.name);

    // One runner per job across replicas: the job's lock in the state database (an OS file lock
    // next to a SQLite state, a session advisory lock in PostgreSQL). Held by another replica:
    // this occurrence is theirs.
    let lock_name = format!("job:{}", job.name);
    let lock = db.lock_target(&lock_name, "daemon").await;
    let _lock = match lock {
        Ok(lock) => lock,
        Err(StateError::Locked { holder, .. }) => {
            metrics.runs.get_or_create(&RunLabels { job: job.name.clone(), result: "skipped".into() }).inc();
            info!(job = %job.name, result = "skipped", holder = %holder, "job run skipped: another replica is running it");
            let error = Some(format!("running elsewhere: {holder}"));
            return status_of(started_at, clock.now(), "skipped", Exit::Locked, error, None);
        }
        Err(e) => {
            let status = status_of(started_at, clock.now(), "failure", e.exit(), Some(e.to_string()), None);
            record(metrics, job, &status, None);
            return status;
        }
    };

    metrics.running.get_or_create(&labels).set(1);
    let outcome = match request(cfg, job) {
        Ok(mut req) => {
            req.observer = Some(metrics.clone());
            // The run records itself in the daemon's state database (no pool of its own per run).
            req.state = Some(db.clone());
            // The masked plan table goes nowhere: the run is reported by counts.
            assert_send(pipeline::run(cfg, req, &mut std::io::sink())).await
        }
        Err(e) => RunOutcome::failed(e.into()),
    };
    metrics.running.get_or_create(&labels).set(0);
    let status = status_of_outcome(started_at, clock.now(), &outcome);
    record(metrics, job, &status, Some(&outcome));
    status
}

/// How a finished run reads in `/status`: success, drift (a plan with changes) or failure.
pub fn status_of_outcome(started_at: DateTime<Utc>, finished_at: DateTime<Utc>, outcome: &RunOutcome) -> RunStatus {
    let stats = Some(outcome);
    match &outcome.result {
        Ok(Exit::Ok) => status_of(started_at, finished_at, "success", Exit::Ok, None, stats),
        Ok(Exit::ChangesPending) => status_of(started_at, finished_at, "drift", Exit::ChangesPending, None, stats),
        Ok(exit) => {
            let error = Some(format!("finished with exit code {}", exit.code()));
            status_of(started_at, finished_at, "failure", *exit, error, stats)
        }
        Err(e) => status_of(started_at, finished_at, "failure", classify(e), Some(format!("{e:#}")), stats),
    }
}

/// Compile-time guard: a job run is spawned on the runtime, so the pipeline future must be `Send`.
fn assert_send<T: Send>(t: T) -> T {
    t
}

fn status_of(
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    result: &'static str,
    exit: Exit,
    error: Option<String>,
    stats: Option<&RunOutcome>,
) -> RunStatus {
    let duration = (finished_at - started_at).to_std().unwrap_or_default().as_secs_f64();
    let mut failed_items: Vec<String> = Vec::new();
    if let Some(s) = stats {
        failed_items.extend(s.item_errors.iter().map(|(id, _)| id.to_string()));
        if let Some(r) = &s.report {
            failed_items.extend(r.failures.iter().map(|f| f.id.to_string()));
        }
    }
    failed_items.truncate(20);
    RunStatus {
        started_at,
        finished_at,
        duration_seconds: duration,
        result,
        exit_code: exit.code(),
        exit,
        run_id: stats.and_then(|s| s.run_id.clone()),
        plan: stats.and_then(|s| s.plan.clone()),
        applied: stats.and_then(|s| s.report.as_ref()).map(|r| Applied {
            created: r.created,
            updated: r.updated,
            deleted: r.deleted,
            failed: r.failures.len(),
            verified: r.verified,
        }),
        failed_items,
        error,
    }
}

/// Metrics and the JSON log events of one finished run.
fn record(metrics: &Metrics, job: &JobConfig, status: &RunStatus, stats: Option<&RunOutcome>) {
    let labels = Metrics::job(&job.name);
    metrics.runs.get_or_create(&RunLabels { job: job.name.clone(), result: status.result.into() }).inc();
    metrics.duration.get_or_create(&labels).observe(status.duration_seconds);
    let finished = status.finished_at.timestamp_millis() as f64 / 1000.0;
    metrics.last_run.get_or_create(&labels).set(finished);
    if matches!(status.result, "success" | "drift") {
        metrics.last_success.get_or_create(&labels).set(finished);
    }
    let count = |action: &str, n: usize| {
        if n > 0 {
            metrics.items.get_or_create(&ItemLabels { job: job.name.clone(), action: action.into() }).inc_by(n as u64);
        }
    };
    if let Some(plan) = &status.plan {
        count("unchanged", plan.unchanged);
        count("error", plan.errors);
        match &status.applied {
            Some(a) => {
                count("create", a.created);
                count("update", a.updated);
                count("delete", a.deleted);
                count("failed", a.failed);
                metrics.drift.get_or_create(&labels).set(a.failed as i64);
            }
            None => {
                count("create", plan.create);
                count("update", plan.update);
                count("delete", plan.delete);
                let pending = plan.create + plan.update + plan.delete;
                // An apply that wrote nothing (nothing to do, or refused) leaves what the plan saw.
                metrics.drift.get_or_create(&labels).set(pending as i64);
            }
        }
    }
    if let Some(stats) = stats {
        for (id, error) in &stats.item_errors {
            warn!(job = %job.name, item = %id, error = %error, "item cannot be migrated");
        }
        if let Some(report) = &stats.report {
            for f in &report.failures {
                warn!(job = %job.name, item = %f.id, error = %f.message, exit_code = f.exit().code(), "item write failed");
            }
        }
    }
    let plan = status.plan.clone().unwrap_or_default();
    let applied = status.applied.clone();
    info!(
        job = %job.name,
        mode = ?job.mode,
        result = status.result,
        exit_code = status.exit_code,
        run_id = status.run_id.as_deref().unwrap_or(""),
        started_at = %status.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at = %status.finished_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        duration_ms = (status.duration_seconds * 1000.0) as u64,
        create = plan.create,
        update = plan.update,
        delete = plan.delete,
        unchanged = plan.unchanged,
        errors = plan.errors,
        created = applied.as_ref().map_or(0, |a| a.created),
        updated = applied.as_ref().map_or(0, |a| a.updated),
        deleted = applied.as_ref().map_or(0, |a| a.deleted),
        failed = applied.as_ref().map_or(0, |a| a.failed),
        error = status.error.as_deref().unwrap_or(""),
        "job run finished"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job's run is the config file's [select]/[apply] with the job's keys on top, as the same
    /// flags would make it from the CLI.
    #[test]
    fn a_job_request_layers_its_keys_over_the_config_file() {
        let cfg = Config::from_toml(
            "[source]\nkind = \"memory\"\n[target]\nkind = \"memory\"\n\
             [select]\ninclude = [\"a*\"]\n[apply]\nconcurrency = 3\nmax_deletes = 7\n\
             [[jobs]]\nname = \"j\"\nschedule = \"0 * * * *\"\nmode = \"apply\"\nno_snapshot = true\n\
             include = [\"b*\"]\nprune = true\nmax_deletes = 2\nskip_errored = true\n",
        )
        .unwrap();
        let req = request(&cfg, &cfg.jobs[0]).unwrap();
        assert_eq!(req.mode, Mode::Apply);
        assert_eq!(req.operation, Operation::Migrate);
        assert_eq!(req.select.include, ["a*", "b*"]);
        assert!(req.apply.prune && !req.apply.adopt);
        assert_eq!((req.apply.max_deletes, req.apply.concurrency), (2, Some(3)));
        assert!(req.no_snapshot && req.skip_errored);
        assert!(matches!((&req.source, &req.target), (Endpoint::Spec(_), Endpoint::Spec(_))));
    }
}
