//! `runs`: the runs recorded in the state database, newest first, with where each journal stands.

use std::io::Write;

use crate::cli::{Cli, RunsArgs};
use crate::config::Config;
use crate::error::Exit;

pub async fn run(cli: &Cli, args: &RunsArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let cfg = Config::load(&cli.config)?;
    let db = crate::state::StateDb::open(&cfg.state).await?;
    for r in db.runs(args.limit.into()).await? {
        let journal = db.journal_counts(&r.id).await?;
        let count = |s: &str| journal.get(s).copied().unwrap_or(0);
        if args.json {
            let mut v = serde_json::to_value(&r)?;
            v["journal"] = serde_json::to_value(&journal)?;
            writeln!(out, "{v}")?;
            continue;
        }
        writeln!(
            out,
            "{}  {:<8} {:<11} {} -> {}  ({} writes: {} done, {} failed, {} not finished){}",
            r.id,
            r.kind,
            r.status.as_str(),
            r.source,
            r.target,
            r.writes_planned,
            count("done"),
            count("failed"),
            count("pending") + count("intent"),
            r.rollback_of.map(|o| format!(", rolls back {o}")).unwrap_or_default()
        )?;
    }
    Ok(Exit::Ok)
}
