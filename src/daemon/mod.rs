//! `daemon`: cron-scheduled one-way syncs, one runner per job across replicas, observable over
//! HTTP, stopped and reloaded by signals.
//!
//! - Each `[[jobs]]` entry runs on its crontab schedule ([`schedule`]), in its time zone, through
//!   the same pipeline as `migrate` ([`job`]): plan only (drift detection) or apply (snapshotted,
//!   journaled, resumable).
//! - A job never overlaps itself: one task per job runs its occurrences in order, and across
//!   replicas a lock in the state database decides who runs (the others count a `skipped` run).
//!   Occurrences that pass during a slow run follow the job's [`MissedPolicy`].
//! - Every run opens its stores afresh, so credentials are fresh per run (a Vault login, the AWS,
//!   GCP and Azure SDKs' own token refresh); inside a long run the Vault store renews or re-logs in.
//! - [`run`] takes the shutdown future and the reload channel, so tests drive it without signals;
//!   with [`schedule::TokioClock`] and a paused tokio clock schedules run in virtual time.

mod http;
pub mod job;
pub mod metrics;
/// `[daemon]` and `[[jobs]]` (`crate::config::daemon`), and cron schedules and clocks
/// (`crate::schedule`), at the paths the daemon has always exposed them under.
pub use crate::config::daemon as config;
pub use crate::schedule;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

pub use crate::config::daemon::{DaemonConfig, JobConfig, JobMode, MissedPolicy, validate};
use metrics::{Metrics, ReloadLabels};
use schedule::{Clock, Schedule};

use crate::config::Config;
use crate::error::{AppError, Exit};
use crate::state::StateDb;
use crate::store::{DynStore, registry};

/// Load the file and check what the daemon needs beyond parsing: at least one job, and a
/// snapshot key for every job that applies (unless it opts out with `no_snapshot`).
pub fn load(path: &Path) -> Result<Config, AppError> {
    let cfg = Config::load(path)?;
    if cfg.jobs.is_empty() {
        return Err(AppError::Config(format!("{}: no [[jobs]] to run (see docs/daemon.md)", path.display())));
    }
    let needs_key = cfg.jobs.iter().any(|j| j.mode == JobMode::Apply && !j.no_snapshot);
    if needs_key {
        match crate::state::SnapshotKey::resolve(&cfg.state) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(AppError::Config(format!(
                    "{}: jobs with mode = \"apply\" record rollback snapshots and need a snapshot key: set [state] \
                     snapshot_key or snapshot_key_cmd, or {} (or no_snapshot = true on the job)",
                    path.display(),
                    crate::state::SNAPSHOT_KEY_ENV
                )));
            }
            Err(e) => return Err(AppError::Config(format!("{}: {e}", path.display()))),
        }
    }
    Ok(cfg)
}

/// A job as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct JobView {
    pub name: String,
    pub mode: JobMode,
    pub source: String,
    pub target: String,
    pub schedule: String,
    pub timezone: String,
    pub describe: String,
    pub missed: MissedPolicy,
    pub running: bool,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<job::RunStatus>,
}

/// One loaded configuration and everything opened for it.
pub struct Generation {
    pub number: u64,
    pub cfg: Arc<Config>,
    pub db: Arc<StateDb>,
    jobs: Mutex<BTreeMap<String, JobView>>,
    /// Stores opened for `/readyz`, by config name (kept: a Vault login per probe is wasteful).
    stores: tokio::sync::Mutex<HashMap<String, DynStore>>,
}

impl Generation {
    fn store_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.cfg.jobs.iter().flat_map(|j| [j.source.clone(), j.target.clone()]).collect();
        names.sort();
        names.dedup();
        names
    }

    async fn check_store(&self, name: &str) -> Result<(), String> {
        let store = {
            let mut open = self.stores.lock().await;
            match open.get(name) {
                Some(s) => s.clone(),
                None => {
                    let spec = self.cfg.store(name).map_err(|e| e.to_string())?;
                    let s = registry::open(spec).await.map_err(|e| e.to_string())?;
                    open.insert(name.to_string(), s.clone());
                    s
                }
            }
        };
        store.check().await.map_err(|e| e.to_string())
    }

    fn update(&self, job: &str, f: impl FnOnce(&mut JobView)) {
        if let Some(v) = self.jobs.lock().expect("job views").get_mut(job) {
            f(v);
        }
    }
}

/// What the HTTP handlers see.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    current: RwLock<Arc<Generation>>,
    config_path: PathBuf,
    started_at: DateTime<Utc>,
    last_reload: Mutex<Option<Reload>>,
}

/// The last SIGHUP and what came of it.
#[derive(Clone, Debug, Serialize)]
pub struct Reload {
    pub at: DateTime<Utc>,
    /// ok | rejected
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Status {
    pub config: String,
    pub started_at: DateTime<Utc>,
    pub generation: u64,
    /// The last reload: a rejected one means the file on disk is not what runs.
    pub last_reload: Option<Reload>,
    pub jobs: Vec<JobView>,
}

impl Shared {
    pub fn current(&self) -> Arc<Generation> {
        self.current.read().expect("generation").clone()
    }

    pub fn status(&self) -> Status {
        let g = self.current();
        let jobs = g.jobs.lock().expect("job views").values().cloned().collect();
        Status {
            config: self.config_path.display().to_string(),
            started_at: self.started_at,
            generation: g.number,
            last_reload: self.last_reload.lock().expect("reload").clone(),
            jobs,
        }
    }
}

/// How the daemon is driven: its clock, when to stop, when to reload, and where it listens.
pub struct Options<S> {
    pub clock: Arc<dyn Clock>,
    /// Resolves when the daemon should stop (SIGTERM/SIGINT in the binary).
    pub shutdown: S,
    /// Each message reloads the configuration file (SIGHUP in the binary).
    pub reload: mpsc::Receiver<()>,
    /// Told the HTTP address once it listens (`None` when `[daemon] listen = ""`).
    pub on_listen: Option<oneshot::Sender<Option<SocketAddr>>>,
}

/// Run the daemon until `opts.shutdown` resolves. Returns after in-flight runs finished (or were
/// cut off after `[daemon] shutdown_grace_secs`, their journals making the next run resume them).
pub async fn run<S: Future<Output = ()> + Send>(config_path: &Path, opts: Options<S>) -> anyhow::Result<()> {
    let Options { clock, shutdown, mut reload, on_listen } = opts;
    let mut cfg = Arc::new(load(config_path)?);
    let metrics = Metrics::new();
    let mut db = Arc::new(StateDb::open(&cfg.state).await?);
    let mut number = 1;
    let generation = new_generation(number, cfg.clone(), db.clone());
    let shared = Arc::new(Shared {
        metrics: metrics.clone(),
        current: RwLock::new(generation.clone()),
        config_path: config_path.to_path_buf(),
        started_at: clock.now(),
        last_reload: Mutex::new(None),
    });

    let (http_stop, http_stopped) = watch::channel(false);
    let server = if cfg.daemon.listen.is_empty() {
        if let Some(tx) = on_listen {
            let _ = tx.send(None);
        }
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&cfg.daemon.listen)
            .await
            .map_err(|e| AppError::Config(format!("[daemon] listen = {:?}: cannot listen: {e}", cfg.daemon.listen)))?;
        let addr = listener.local_addr()?;
        info!(address = %addr, "serving /healthz /readyz /metrics /status");
        if let Some(w) = http::exposure_warning(addr, &cfg.daemon) {
            warn!("{w}");
        }
        if let Some(tx) = on_listen {
            let _ = tx.send(Some(addr));
        }
        let mut stopped = http_stopped.clone();
        let app = http::router(shared.clone());
        Some(tokio::spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                error!(error = %e, "HTTP server failed");
            }
        }))
    };

    tokio::pin!(shutdown);
    let mut reload_open = true;
    let mut generation = generation;
    'generations: loop {
        info!(generation = number, jobs = cfg.jobs.len(), "starting jobs");
        let (stop_tx, tasks) = start_jobs(&generation, &clock, &metrics);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    info!("shutdown requested: no new runs; waiting for in-flight runs");
                    let grace = Duration::from_secs(cfg.daemon.shutdown_grace_secs);
                    stop_jobs(stop_tx, tasks, Some(grace)).await;
                    break 'generations;
                }
                msg = reload.recv(), if reload_open => {
                    if msg.is_none() {
                        reload_open = false;
                        continue;
                    }
                    match load(config_path) {
                        Ok(new) => {
                            *shared.last_reload.lock().expect("reload") = Some(Reload { at: clock.now(), result: "ok", error: None });
                            info!("configuration reloaded; restarting jobs after in-flight runs finish");
                            metrics.reloads.get_or_create(&ReloadLabels { result: "ok".into() }).inc();
                            stop_jobs(stop_tx, tasks, None).await;
                            let new = Arc::new(new);
                            if !same_state(&cfg, &new) {
                                match StateDb::open(&new.state).await {
                                    Ok(d) => db = Arc::new(d),
                                    Err(e) => error!(error = %e, "the reloaded [state] does not open; keeping the previous state database"),
                                }
                            }
                            cfg = new;
                            number += 1;
                            generation = new_generation(number, cfg.clone(), db.clone());
                            *shared.current.write().expect("generation") = generation.clone();
                            continue 'generations;
                        }
                        Err(e) => {
                            metrics.reloads.get_or_create(&ReloadLabels { result: "rejected".into() }).inc();
                            // Recorded before the log line: whoever reads the log then sees it in /status.
                            *shared.last_reload.lock().expect("reload") =
                                Some(Reload { at: clock.now(), result: "rejected", error: Some(e.to_string()) });
                            warn!(error = %e, "configuration reload rejected; the running configuration stays");
                        }
                    }
                }
            }
        }
    }
    let _ = http_stop.send(true);
    if let Some(server) = server {
        let _ = server.await;
    }
    info!("daemon stopped");
    Ok(())
}

fn same_state(a: &Config, b: &Config) -> bool {
    a.state.url == b.state.url && a.state.path == b.state.path
}

fn new_generation(number: u64, cfg: Arc<Config>, db: Arc<StateDb>) -> Arc<Generation> {
    let mut jobs = BTreeMap::new();
    for j in &cfg.jobs {
        let schedule = j.schedule(&cfg.daemon).expect("validated when loaded");
        jobs.insert(
            j.name.clone(),
            JobView {
                name: j.name.clone(),
                mode: j.mode,
                source: j.source.clone(),
                target: j.target.clone(),
                schedule: schedule.pattern().to_string(),
                timezone: schedule.timezone().to_string(),
                describe: schedule.describe(),
                missed: j.missed,
                running: false,
                next_run: None,
                last_run: None,
            },
        );
    }
    Arc::new(Generation { number, cfg, db, jobs: Mutex::new(jobs), stores: tokio::sync::Mutex::new(HashMap::new()) })
}

fn start_jobs(generation: &Arc<Generation>, clock: &Arc<dyn Clock>, metrics: &Arc<Metrics>) -> (watch::Sender<bool>, JoinSet<()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for job in generation.cfg.jobs.clone() {
        let schedule = job.schedule(&generation.cfg.daemon).expect("validated when loaded");
        tasks.spawn(job_loop(job, schedule, generation.clone(), clock.clone(), metrics.clone(), stop_rx.clone()));
    }
    (stop_tx, tasks)
}

/// Stop scheduling, then wait for in-flight runs: up to `grace` (shutdown), or until they finish
/// (reload). A run cut off by the grace period keeps its journal: the next start resumes it.
async fn stop_jobs(stop: watch::Sender<bool>, mut tasks: JoinSet<()>, grace: Option<Duration>) {
    let _ = stop.send(true);
    let all = async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r
                && e.is_panic()
            {
                error!("a job task panicked (message withheld)");
            }
        }
    };
    match grace {
        None => all.await,
        Some(g) => {
            if tokio::time::timeout(g, all).await.is_err() {
                warn!(grace_secs = g.as_secs(), "in-flight runs did not finish within the grace period; cut off (their journals resume them next time)");
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        }
    }
}

/// One job in a running generation: its schedule loop, with runs through the real pipeline.
async fn job_loop(
    job: JobConfig,
    schedule: Schedule,
    generation: Arc<Generation>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let name = job.name.clone();
    let on_next = |at| generation.update(&name, |v| v.next_run = Some(at));
    let run = || {
        let (generation, job, clock, metrics) = (generation.clone(), job.clone(), clock.clone(), metrics.clone());
        async move {
            generation.update(&job.name, |v| v.running = true);
            let status = job::run_once(&generation.cfg, &job, &generation.db, &metrics, clock.as_ref()).await;
            generation.update(&job.name, |v| {
                v.running = false;
                v.last_run = Some(status);
            });
        }
    };
    schedule_loop(&job, &schedule, clock.as_ref(), &mut stop, &metrics, on_next, run).await;
}

/// When a job runs, whatever a run does: sleep to the next occurrence (plus jitter), run it to
/// the end (a job never overlaps itself), count the occurrences that passed meanwhile and apply
/// the missed-run policy. Returns when `stop` turns true (between runs, never inside one).
pub(crate) async fn schedule_loop<R, Fut>(
    job: &JobConfig,
    schedule: &Schedule,
    clock: &dyn Clock,
    stop: &mut watch::Receiver<bool>,
    metrics: &Metrics,
    mut on_next: impl FnMut(DateTime<Utc>),
    mut run: R,
) where
    R: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut next = if job.run_on_start { Some(clock.now()) } else { schedule.next_after(clock.now()) };
    loop {
        let Some(at) = next else {
            info!(job = %job.name, "the schedule has no further occurrences");
            return;
        };
        let jitter = if job.jitter_secs > 0 {
            Duration::from_millis(rand::rng().random_range(0..=job.jitter_secs * 1000))
        } else {
            Duration::ZERO
        };
        let start = at + chrono::Duration::from_std(jitter).unwrap_or_default();
        on_next(start);
        tokio::select! {
            _ = schedule::sleep_until(clock, start) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if *stop.borrow() {
            return;
        }
        run().await;
        if *stop.borrow() {
            return;
        }
        let now = clock.now();
        let missed = schedule.occurrences_between(at, now, 10_000);
        if missed > 0 {
            metrics.missed.get_or_create(&Metrics::job(&job.name)).inc_by(missed as u64);
            info!(job = %job.name, missed, policy = ?job.missed, "scheduled occurrences passed while the run was going");
        }
        next = match job.missed {
            MissedPolicy::RunOnce if missed > 0 => Some(now),
            _ => schedule.next_after(now),
        };
    }
}

/// `daemon --once`: run every job once, in order, and exit with the worst outcome.
pub async fn run_once_all(config_path: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Exit> {
    let cfg = load(config_path)?;
    let db = Arc::new(StateDb::open(&cfg.state).await?);
    let metrics = Metrics::new();
    let mut worst = Exit::Ok;
    for job in &cfg.jobs {
        let status = job::run_once(&cfg, job, &db, &metrics, clock.as_ref()).await;
        let exit = match status.result {
            "success" | "drift" => Exit::Ok,
            _ => status.exit,
        };
        worst = worst.max(exit);
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schedule::TokioClock;

    fn job(toml_text: &str) -> JobConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().with_timezone(&Utc)
    }

    /// Drive `schedule_loop` in virtual time: each run takes `run_secs`; stop at `stop_secs`.
    /// Returns the run start times, in seconds after t0, and the metrics.
    async fn drive(job: JobConfig, run_secs: u64, stop_secs: u64) -> (Vec<f64>, Arc<Metrics>) {
        let clock = TokioClock::starting_at(t0());
        let schedule = job.schedule(&DaemonConfig::default()).unwrap();
        let metrics = Metrics::new();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let starts = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(stop_secs)).await;
            let _ = stop_tx.send(true);
            // Keep the sender alive so `wait_for` sees `true`, not a closed channel.
            std::future::pending::<()>().await;
        });
        let run = || {
            let (clock, starts) = (clock.clone(), starts.clone());
            async move {
                let t = (clock.now() - t0()).num_milliseconds() as f64 / 1000.0;
                starts.lock().unwrap().push(t);
                tokio::time::sleep(Duration::from_secs(run_secs)).await;
            }
        };
        schedule_loop(&job, &schedule, clock.as_ref(), &mut stop_rx, &metrics, |_| {}, run).await;
        let v = starts.lock().unwrap().clone();
        (v, metrics)
    }

    fn missed(metrics: &Metrics, job: &str) -> u64 {
        metrics.missed.get_or_create(&Metrics::job(job)).get()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_run_skips_the_occurrences_it_overlaps() {
        let j = job("name = \"j\"\nschedule = \"*/10 * * * * *\"\n");
        let (starts, metrics) = drive(j, 25, 99).await;
        // 10 -> runs to 35 (20, 30 missed) -> 40 -> 65 (50, 60 missed) -> 70 -> 95 (80, 90 missed).
        assert_eq!(starts, vec![10.0, 40.0, 70.0]);
        assert_eq!(missed(&metrics, "j"), 6);
        for w in starts.windows(2) {
            assert!(w[1] - w[0] >= 25.0, "runs overlap: {starts:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_once_catches_up_once_right_after_a_slow_run() {
        let j = job("name = \"j\"\nschedule = \"*/10 * * * * *\"\nmissed = \"run_once\"\n");
        let (starts, _) = drive(j, 25, 99).await;
        assert_eq!(starts, vec![10.0, 35.0, 60.0, 85.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn run_on_start_runs_at_once_then_on_schedule() {
        let j = job("name = \"j\"\nschedule = \"* * * * *\"\nrun_on_start = true\n");
        let (starts, _) = drive(j, 1, 150).await;
        assert_eq!(starts, vec![0.0, 60.0, 120.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_each_run_within_its_bound() {
        let j = job("name = \"j\"\nschedule = \"*/10 * * * * *\"\njitter_secs = 4\n");
        let (starts, _) = drive(j, 0, 205).await;
        assert_eq!(starts.len(), 20, "{starts:?}");
        for (i, t) in starts.iter().enumerate() {
            let occurrence = 10.0 * (i as f64 + 1.0);
            assert!(*t >= occurrence && *t <= occurrence + 4.0, "run {i} at {t}s, occurrence {occurrence}s");
        }
        assert!(starts.iter().enumerate().any(|(i, t)| *t > 10.0 * (i as f64 + 1.0)), "no run was jittered: {starts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn stop_while_waiting_returns_without_running() {
        let j = job("name = \"j\"\nschedule = \"0 3 * * *\"\n");
        let (starts, _) = drive(j, 0, 5).await;
        assert!(starts.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_zone_moves_the_run() {
        // 01:00 in Tokyo (UTC+9) is 16:00 UTC the day before: from t0 (00:00 UTC) that is 16 h.
        let j = job("name = \"j\"\nschedule = \"0 1 * * *\"\ntimezone = \"Asia/Tokyo\"\n");
        let (starts, _) = drive(j, 0, 20 * 3600).await;
        assert_eq!(starts, vec![16.0 * 3600.0]);
    }
}
