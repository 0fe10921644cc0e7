//! The thin binary: install the TLS provider, parse arguments, set up logging, run, map the
//! outcome to an exit code (see `error.rs` for the table).

use std::process::ExitCode;

use clap::Parser;

use airflow_secrets_sync::{app, cli::Cli, error};

fn main() -> ExitCode {
    // One rustls provider for every client (AWS SDK, reqwest, sqlx): see dependencies.md pitfall 1.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { error::Exit::Usage.code() } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    app::init_tracing(cli.verbose, cli.log_json);
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
