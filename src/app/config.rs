//! `config check | print`.

use std::io::Write;

use anyhow::Context;

use crate::cli::{Cli, ConfigAction, ConfigArgs};
use crate::error::Exit;
use crate::store::registry;

pub async fn run(cli: &Cli, args: &ConfigArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    match args.action {
        ConfigAction::Check => {
            let cfg = crate::insight::load_config(cli)?;
            let source = registry::open(&cfg.source).await.context("opening the source")?;
            let target = registry::open(&cfg.target).await.context("opening the target")?;
            writeln!(out, "source: {source}\ntarget: {target}\nconfiguration OK")?;
            Ok(Exit::Ok)
        }
        ConfigAction::Print => crate::insight::run_config_print(cli, out),
    }
}
