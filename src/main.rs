//! The thin binary: install the TLS provider, parse arguments, set up logging, run, map the
//! outcome to an exit code (see `error.rs` for the table).

use std::process::ExitCode;

use clap::Parser;

use airflow_secrets_sync::{app, cli::Cli, error};

fn main() -> ExitCode {
    // One rustls provider for every client (AWS SDK, reqwest, sqlx): see dependencies.md pitfall 1.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { error::Exit::Usage.code() } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    app::init_tracing_for(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::Exit::Error.code());
        }
    };
    match runtime.block_on(app::run(cli)) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(error::classify(&e).code())
        }
    }
}

/// A panic message could carry data from deep inside a dependency; print only where it happened
/// unless the operator asks for the payload (`AIRFLOW_SECRETS_SYNC_PANIC_DETAILS=1`).
fn install_panic_hook() {
    if std::env::var_os("AIRFLOW_SECRETS_SYNC_PANIC_DETAILS").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!(
            "error: internal error at {at} (a bug; message withheld in case it holds data; \
             re-run with AIRFLOW_SECRETS_SYNC_PANIC_DETAILS=1 to see it)"
        );
    }));
}
