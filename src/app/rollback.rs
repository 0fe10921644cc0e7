//! `rollback RUN --plan | --apply`: the snapshot of RUN as the source, the configured target as
//! the target, restricted to the items RUN touched: updated items get their old values back,
//! items RUN created are deleted. Applying it is itself a snapshotted run, under `[apply]` like
//! any other.

use std::io::Write;

use crate::cli::RollbackArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::pipeline::{self, Mode, RunRequest};

pub async fn rollback(cfg: &Config, args: &RollbackArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<Exit> {
    let mut req = RunRequest::rollback(cfg, &args.run, if args.apply { Mode::Apply } else { Mode::Plan });
    req.json = args.json;
    pipeline::run(cfg, req, out).await.into_result()
}
