//! `restore --from NAME | --snapshot RUN --to NAME`: incident recovery, the same pipeline between
//! two named stores (or a run's snapshot and a store).

use std::io::Write;

use crate::cli::RestoreArgs;
use crate::config::Config;
use crate::error::{AppError, Exit};
use crate::pipeline::{self, Endpoint, Operation};

pub async fn restore(cfg: &Config, args: &RestoreArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<Exit> {
    let target = Endpoint::Spec(cfg.store(&args.to)?.clone());
    let source = match (&args.snapshot, args.from.as_deref()) {
        (Some(run_id), _) => Endpoint::Snapshot(run_id.clone()),
        (None, None) => return Err(AppError::Usage("restore needs --from NAME or --snapshot RUN".into()).into()),
        (None, Some(from)) if from == args.to => {
            return Err(AppError::Usage("--from and --to name the same store".into()).into());
        }
        (None, Some(from)) => Endpoint::Spec(cfg.store(from)?.clone()),
    };
    let req = super::request(cfg, Operation::Restore, source, target, &args.run);
    pipeline::run(cfg, req, out).await.into_result()
}
