//! The commands: one file each. A command that runs (`migrate`, `restore`, `rollback`) only turns
//! its arguments into a [`crate::pipeline::RunRequest`]; the others are small glue over the
//! library (`runs`, `config`, `rotate-fernet-key`, `daemon`; `verify` and `resolve` live in
//! [`crate::insight`]).

mod config;
mod daemon;
mod migrate;
mod restore;
mod rollback;
mod rotate;
mod runs;

use std::io::Write;

use crate::apply::ApplyOptions;
use crate::cli::{Cli, Command, MigrateArgs};
use crate::error::Exit;
use crate::plan::Policy;
use crate::store::DynStore;

pub use migrate::{migrate, request};
pub use restore::restore;
pub use rollback::rollback;

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
    let stdout = &mut std::io::stdout();
    match &cli.command {
        Command::Migrate(args) => migrate(&crate::insight::load_config(&cli)?, args, stdout).await,
        Command::Rollback(args) => rollback(&crate::config::Config::load(&cli.config)?, args, stdout).await,
        Command::Runs(args) => runs::run(&cli, args, stdout).await,
        Command::Restore(args) => restore(&crate::config::Config::load(&cli.config)?, args, stdout).await,
        Command::Demo(args) => crate::demo::run(args.dir.as_deref(), stdout).await,
        Command::RotateFernetKey(args) => rotate::run(&cli, args, stdout).await,
        Command::Config(c) => config::run(&cli, c, stdout).await,
        Command::Verify(args) => crate::insight::run_verify(&cli, args, stdout).await,
        Command::Resolve(args) => crate::insight::run_resolve(&cli, args, stdout).await,
        Command::Daemon(args) => daemon::run(&cli, args).await,
    }
}

/// Plan (and apply) between two open stores without the safety engine (library use, tests): the
/// pipeline's [`crate::pipeline::between`] with the flags of `args`.
pub async fn migrate_between(
    source: DynStore,
    target: DynStore,
    policy: &Policy,
    opts: &ApplyOptions,
    args: &MigrateArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Exit> {
    let flags = crate::pipeline::Flags {
        apply: args.apply,
        json: args.json,
        show_unchanged: args.show_unchanged,
        save_plan: None,
        skip_errored: args.skip_errored,
        resume: None,
    };
    crate::pipeline::between(source, target, policy, opts, flags, out).await.into_result()
}
