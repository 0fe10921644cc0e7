//! Command-line definitions (clap derive). Nothing here does work: `app` does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::OnlyKind;

#[derive(Debug, Parser)]
#[command(name = "airflow-secrets-sync", version, about = "Move Airflow Variables and Connections into a secrets backend, exactly as Airflow reads them.")]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, env = "AIRFLOW_SECRETS_SYNC_CONFIG", default_value = "config.toml")]
    pub config: PathBuf,
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log as JSON lines on stderr.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Build [source] and [target] from the Airflow deployment's settings (AIRFLOW__… env vars and
    /// airflow.cfg) instead of the config file. See docs/insight.md.
    #[arg(long, global = true)]
    pub from_airflow_env: bool,
    /// The airflow.cfg to read with --from-airflow-env (default: $AIRFLOW_CONFIG, else
    /// $AIRFLOW_HOME/airflow.cfg, else ~/airflow/airflow.cfg, when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub airflow_cfg: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan (dry run, values masked) or apply a migration from [source] to [target].
    Migrate(MigrateArgs),
    /// Undo a run: restore the snapshot it took (updated items get their old values back, items
    /// it created are deleted), planned and shown masked first; itself snapshotted.
    Rollback(RollbackArgs),
    /// List the runs recorded in the state database, newest first, with each run's journal
    /// (writes done, failed, still pending); no values.
    Runs(RunsArgs),
    /// Incident recovery: plan or apply copying every item from one configured store into
    /// another (typically a backend or a snapshot into a fresh metastore, re-encrypted with the
    /// target's fernet_key). Names are `source`, `target` or a `[stores.NAME]` table.
    Restore(RestoreArgs),
    /// Run the embedded demo: a seeded, encrypted SQLite metastore migrated to local files.
    Demo(DemoArgs),
    /// Check the configuration file and say what it means (no credentials shown).
    Config(ConfigArgs),
    /// Do what `airflow rotate-fernet-key` does on a metastore: with fernet_key = "NEW,OLD",
    /// re-encrypt every encrypted field with NEW (timestamps kept, plaintext rows untouched),
    /// in one transaction.
    RotateFernetKey(RotateArgs),
    /// Read every target item back with each Airflow reader (2.x ORM, 3.x ORM, task-sdk) and report
    /// what Airflow would read differently or never find. Exit 0: all well; 14: problems found.
    Verify(VerifyArgs),
    /// Which copy of each item Airflow serves (backend, env var, metastore) and which it shadows.
    Resolve(ResolveArgs),
    /// Run the config file's [[jobs]] on their schedules (plan = drift detection, or apply), one
    /// runner per job across replicas, with /healthz, /readyz, /metrics and /status. SIGTERM or
    /// SIGINT stops it gracefully; SIGHUP reloads the config. Logs are JSON lines.
    Daemon(DaemonArgs),
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Run every job once, now, and exit with the worst exit code (a Kubernetes CronJob, a test).
    #[arg(long)]
    pub once: bool,
    /// Check the configuration (jobs, schedules, stores, snapshot key) and exit.
    #[arg(long, conflicts_with = "once")]
    pub check: bool,
    /// Human-readable logs instead of JSON lines.
    #[arg(long)]
    pub log_text: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// How many runs to list.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// JSON lines, one run per line (for scripts and monitoring).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Rotate the [target] metastore instead of the [source] one.
    #[arg(long)]
    pub target: bool,
    /// Count what would be rotated; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Default, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["plan", "apply"])))]
pub struct MigrateArgs {
    /// Read both sides and show what would change. Exit 0: no changes; 2: changes pending.
    #[arg(long)]
    pub plan: bool,
    /// Make the changes, then read every written item back and compare.
    #[arg(long)]
    pub apply: bool,
    /// Print the plan as JSON (no values) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also list unchanged items.
    #[arg(long)]
    pub show_unchanged: bool,
    /// Only variables or only connections (overrides [select] only).
    #[arg(long, value_enum)]
    pub only: Option<OnlyKind>,
    /// Only ids matching this glob (repeatable; adds to [select] include).
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip ids matching this glob (repeatable; adds to [select] exclude).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Delete target items this tool wrote that the source no longer has.
    #[arg(long)]
    pub prune: bool,
    /// Take over existing target items this tool did not write.
    #[arg(long)]
    pub adopt: bool,
    /// Refuse a plan that deletes more than N items.
    #[arg(long, value_name = "N")]
    pub max_deletes: Option<usize>,
    /// Apply the rest of the plan even when some items have errors (they are reported, and the
    /// exit code says so).
    #[arg(long)]
    pub skip_errored: bool,
    /// Accepted for Terraform users: `--plan` always uses the detailed exit codes.
    #[arg(long, hide = true)]
    pub detailed_exitcode: bool,
    /// With --plan: also save the plan (fingerprints, never values) to FILE for a later
    /// `--apply --plan-file FILE`.
    #[arg(long, value_name = "FILE", requires = "plan")]
    pub out: Option<std::path::PathBuf>,
    /// With --apply: apply the plan saved in FILE, under the policy it was made with; refused
    /// (exit 12) if either store changed since.
    #[arg(long, value_name = "FILE", requires = "apply")]
    pub plan_file: Option<std::path::PathBuf>,
    /// Apply without recording a rollback snapshot (no snapshot key needed; no `rollback`).
    #[arg(long)]
    pub no_snapshot: bool,
    /// Continue the interrupted run RUN (its original snapshot is kept). An interrupted run of the
    /// same source and target is resumed automatically.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The store to read from (`source`, `target`, or a `[stores.NAME]` table).
    #[arg(long, value_name = "NAME", required_unless_present = "snapshot", conflicts_with = "snapshot")]
    pub from: Option<String>,
    /// Read from the snapshot run RUN recorded of its target before writing (see `runs`).
    #[arg(long, value_name = "RUN")]
    pub snapshot: Option<String>,
    /// The store to write to.
    #[arg(long, value_name = "NAME")]
    pub to: String,
    #[command(flatten)]
    pub run: MigrateArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("rollback_mode").required(true).args(["plan", "apply"])))]
pub struct RollbackArgs {
    /// The run to undo (see `runs`).
    pub run: String,
    #[arg(long)]
    pub plan: bool,
    #[arg(long)]
    pub apply: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to create the demo metastore, config and output files (default: a new temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Parse the config file and open both stores; print what they are.
    Check,
    /// Print the effective configuration as TOML, credentials masked.
    Print,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the report as JSON (no values) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only variables or only connections (overrides [select] only).
    #[arg(long, value_enum)]
    pub only: Option<OnlyKind>,
    /// Check only the readers of this Airflow major version (2: 2.x ORM; 3: 3.x ORM and task-sdk).
    /// Default: all three.
    #[arg(long, value_name = "2|3")]
    pub airflow_version: Option<u8>,
    /// Do not read the source: check only how Airflow reads the target.
    #[arg(long)]
    pub no_source: bool,
    /// With --from-airflow-env: check the 3.x workers' backend (`[workers] secrets_backend`, else
    /// `[secrets] backend`) with the task-sdk reader, instead of [target].
    #[arg(long)]
    pub workers: bool,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Ids to resolve, tried as both a variable key and a conn_id.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// A variable key (repeatable).
    #[arg(long = "variable", value_name = "KEY")]
    pub variable: Vec<String>,
    /// A conn_id (repeatable).
    #[arg(long = "connection", value_name = "ID")]
    pub connection: Vec<String>,
    /// List every item that is shadowed, or served differently to workers and the scheduler.
    #[arg(long)]
    pub all: bool,
    /// With --all: only variables or only connections.
    #[arg(long, value_enum)]
    pub only: Option<OnlyKind>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
