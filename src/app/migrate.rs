//! `migrate --plan | --apply`: `[source]` to `[target]`.

use std::io::Write;

use crate::cli::MigrateArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::pipeline::{self, Endpoint, Mode, Operation, Overrides, RunRequest};

pub async fn migrate(cfg: &Config, args: &MigrateArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<Exit> {
    let req = request(cfg, Operation::Migrate, Endpoint::Spec(cfg.source.clone()), Endpoint::Spec(cfg.target.clone()), args);
    pipeline::run(cfg, req, out).await.into_result()
}

/// The run `args` ask for between `source` and `target` (`migrate`, `restore`): the config file's
/// `[select]` and `[apply]`, overridden by the flags.
pub fn request(cfg: &Config, operation: Operation, source: Endpoint, target: Endpoint, args: &MigrateArgs) -> RunRequest {
    let mode = if args.apply { Mode::Apply } else { Mode::Plan };
    let mut req = RunRequest::new(cfg, operation, source, target, mode).with_overrides(Overrides {
        only: args.only,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        prune: args.prune,
        adopt: args.adopt,
        max_deletes: args.max_deletes,
    });
    req.json = args.json;
    req.show_unchanged = args.show_unchanged;
    req.save_plan = args.out.clone();
    req.plan_file = args.plan_file.clone();
    req.no_snapshot = args.no_snapshot;
    req.resume = args.resume.clone();
    req.skip_errored = args.skip_errored;
    req
}
