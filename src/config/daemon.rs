//! `[daemon]` and `[[jobs]]`: what the daemon runs and how it is observed.

use serde::Deserialize;

use super::{Config, ConfigError, OnlyKind};
use crate::schedule::{Schedule, parse_tz};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9477";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where `/healthz`, `/readyz`, `/metrics` and `/status` are served. Loopback by default;
    /// `0.0.0.0:9477` in a container. An empty string turns the HTTP server off.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The time zone of every job's schedule unless the job names its own (IANA name).
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// On SIGTERM/SIGINT, how long an in-flight run may take to finish before it is cut off
    /// (its journal makes the next run resume it).
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// `/readyz`: how long each reachability check may take.
    #[serde(default = "default_ready_timeout")]
    pub readyz_timeout_secs: u64,
    /// `/readyz`: how long one evaluation is served to every caller before the backends are asked
    /// again (concurrent requests share one evaluation): probes cannot burn a backend's quota.
    #[serde(default = "default_ready_cache")]
    pub readyz_cache_secs: u64,
    /// `/readyz`: store checks run at once within one evaluation.
    #[serde(default = "default_ready_concurrency")]
    pub readyz_concurrency: usize,
    /// A bearer token `/status` and `/metrics` require (`Authorization: Bearer …`); `/healthz` and
    /// `/readyz` stay open for probes. Without one, a non-loopback `listen` logs a warning.
    #[serde(default, deserialize_with = "deserialize_secret")]
    pub http_token: Option<crate::secret::SecretValue>,
    /// The same token read from a file (a mounted secret), trimmed; re-read on every request.
    #[serde(default)]
    pub http_token_file: Option<std::path::PathBuf>,
}

fn deserialize_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<crate::secret::SecretValue>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(crate::secret::SecretValue::from))
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            timezone: default_tz(),
            shutdown_grace_secs: default_grace(),
            readyz_timeout_secs: default_ready_timeout(),
            readyz_cache_secs: default_ready_cache(),
            readyz_concurrency: default_ready_concurrency(),
            http_token: None,
            http_token_file: None,
        }
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}
fn default_tz() -> String {
    "UTC".into()
}
fn default_grace() -> u64 {
    30
}
fn default_ready_timeout() -> u64 {
    5
}
fn default_ready_cache() -> u64 {
    5
}
fn default_ready_concurrency() -> usize {
    4
}
fn default_source() -> String {
    "source".into()
}
fn default_target() -> String {
    "target".into()
}
fn default_true() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    /// Drift detection: read both sides, report what differs, write nothing.
    #[default]
    Plan,
    /// Keep the target in step: plan, then apply (snapshotted, journaled, resumable).
    Apply,
}

/// What happens to scheduled occurrences that pass while the job's previous run is still going
/// (a job never overlaps itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Drop them; the next run is the next occurrence after the slow run ends.
    #[default]
    Skip,
    /// Start one catch-up run as soon as the slow run ends (never more than one).
    RunOnce,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Unique; names the job in logs, metrics labels, `/status` and its replica lock.
    pub name: String,
    /// A store name: `source`, `target`, or a `[stores.NAME]` table.
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default = "default_target")]
    pub target: String,
    /// Crontab: 5 fields (`*/5 * * * *`), or 6 with seconds first; `@hourly` and friends.
    pub schedule: String,
    /// IANA time zone of the schedule; default `[daemon] timezone` (UTC).
    pub timezone: Option<String>,
    #[serde(default)]
    pub mode: JobMode,
    /// Overrides `[apply] prune` / `adopt` / `max_deletes` for this job.
    pub prune: Option<bool>,
    pub adopt: Option<bool>,
    pub max_deletes: Option<usize>,
    /// Adds to `[select]`: only one kind, more include/exclude globs.
    pub only: Option<OnlyKind>,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Apply the items that can be migrated even when others cannot (they are logged, counted
    /// and make the run a failure). Default true: one bad row must not stop the sync.
    #[serde(default = "default_true")]
    pub skip_errored: bool,
    /// Start each run up to this many seconds after its occurrence (random), so replicas and
    /// many daemons do not hit a backend at the same second.
    #[serde(default)]
    pub jitter_secs: u64,
    #[serde(default)]
    pub missed: MissedPolicy,
    /// Also run once right after start (and after a reload).
    #[serde(default)]
    pub run_on_start: bool,
    /// Apply without rollback snapshots (no snapshot key needed). Not recommended.
    #[serde(default)]
    pub no_snapshot: bool,
}

impl JobConfig {
    pub fn schedule(&self, daemon: &DaemonConfig) -> Result<Schedule, String> {
        Schedule::parse(&self.schedule, self.timezone.as_deref().unwrap_or(&daemon.timezone))
    }
}

/// Check `[daemon]` and `[[jobs]]` without I/O: unique names, schedules, time zones, store names.
pub fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let bad = |m: String| ConfigError(format!("invalid configuration: {m}"));
    parse_tz(&cfg.daemon.timezone).map_err(|e| bad(format!("[daemon] timezone: {e}")))?;
    if !cfg.daemon.listen.is_empty() && cfg.daemon.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(bad(format!("[daemon] listen = {:?} is not an address:port", cfg.daemon.listen)));
    }
    let mut seen = std::collections::BTreeSet::new();
    for job in &cfg.jobs {
        let name = &job.name;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(bad(format!("job name {name:?}: use letters, digits, '-', '_' and '.'")));
        }
        if !seen.insert(name.clone()) {
            return Err(bad(format!("two jobs are named {name:?}")));
        }
        job.schedule(&cfg.daemon).map_err(|e| bad(format!("job {name}: {e}")))?;
        if job.source == job.target {
            return Err(bad(format!("job {name}: source and target are both {:?}", job.source)));
        }
        for store in [&job.source, &job.target] {
            cfg.store(store).map_err(|e| ConfigError(format!("invalid configuration: job {name}: {e}")))?;
        }
        super::SelectConfig { only: job.only, include: job.include.clone(), exclude: job.exclude.clone() }
            .globs()
            .map_err(|e| ConfigError(format!("invalid configuration: job {name}: {e}")))?;
    }
    Ok(())
}
