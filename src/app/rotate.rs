//! `rotate-fernet-key`: what `airflow rotate-fernet-key` does, on the source (or target) metastore.

use std::io::Write;

use crate::cli::{Cli, RotateArgs};
use crate::config::Config;
use crate::error::{AppError, Exit};
use crate::store::registry;

pub async fn run(cli: &Cli, args: &RotateArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let cfg = Config::load(&cli.config)?;
    let spec = if args.target { &cfg.target } else { &cfg.source };
    let Some(mcfg) = registry::parse(spec)?.downcast::<crate::store::metastore::MetastoreConfig>() else {
        return Err(AppError::Usage("rotate-fernet-key works on a metastore store".into()).into());
    };
    let store = crate::store::metastore::MetastoreStore::open(&mcfg).await?;
    let r = store.rotate_fernet_key(args.dry_run).await?;
    let verb = if args.dry_run { "would re-encrypt" } else { "re-encrypted" };
    writeln!(out, "{store}: {verb} {} variable(s) and {} connection(s) with the first key", r.variables, r.connections)?;
    Ok(Exit::Ok)
}
