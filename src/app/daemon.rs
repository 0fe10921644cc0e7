//! `daemon [--check | --once]`: check the jobs, run each once, or run them on their schedules
//! until SIGTERM/SIGINT (SIGHUP reloads). The scheduling is [`crate::daemon`]'s.

use std::sync::Arc;

use crate::cli::{Cli, DaemonArgs};
use crate::daemon::schedule::SystemClock;
use crate::error::{AppError, Exit};

pub async fn run(cli: &Cli, args: &DaemonArgs) -> anyhow::Result<Exit> {
    if args.check {
        let cfg = crate::daemon::load(&cli.config)?;
        for job in &cfg.jobs {
            let schedule = job.schedule(&cfg.daemon).map_err(AppError::Config)?;
            println!(
                "job {}: {:?} {} -> {}, {} ({}, {})",
                job.name,
                job.mode,
                job.source,
                job.target,
                schedule.pattern(),
                schedule.describe(),
                schedule.timezone()
            );
        }
        println!("configuration OK");
        return Ok(Exit::Ok);
    }
    if args.once {
        return crate::daemon::run_once_all(&cli.config, Arc::new(SystemClock)).await;
    }
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    #[cfg(unix)]
    let shutdown = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = reload_tx.try_send(());
            }
        });
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let shutdown = {
        drop(reload_tx);
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    let opts = crate::daemon::Options { clock: Arc::new(SystemClock), shutdown, reload: reload_rx, on_listen: None };
    crate::daemon::run(&cli.config, opts).await?;
    Ok(Exit::Ok)
}
