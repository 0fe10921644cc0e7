//! Logging on stderr, safe against a careless environment.
//!
//! - `RUST_LOG` (or `-v`/`-vv`) chooses what this crate logs. It cannot raise any other crate:
//!   every dependency — the HTTP and SDK stacks above all (`aws-smithy*`, `aws-sdk*`, `aws-config`,
//!   `aws-sigv4`, `hyper*`, `reqwest`, `h2`, `rustls`, `azure_*`, `google_cloud*`, `gax*`, `sqlx`,
//!   …), whose debug and trace levels describe requests and can print their bodies — is capped at
//!   `warn` whatever `RUST_LOG` says, and `vaultrs`/`rustify` (which log every Vault "absent"
//!   answer as an error) are off. The cap is a second filter after `RUST_LOG`'s, so no directive
//!   (a target, a span, a field) can lift it. There is no escape hatch: to look inside an SDK,
//!   run it under a debugger or behind a recording proxy, never with secrets in the logs.
//! - ANSI colour only when stderr is a terminal, and never when `NO_COLOR` is set to a non-empty
//!   value (<https://no-color.org>): logs redirected to a file or read by CI carry no escape codes.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The target prefix of this crate's own events (the library and the binary).
pub const OWN_TARGET: &str = "airflow_secrets_sync";

/// The most verbose level any other crate may log at.
pub const DEPENDENCY_CAP: Level = Level::WARN;

/// Crates that are never logged at all (see the module docs).
pub const SILENCED: &[&str] = &["vaultrs", "rustify"];

/// Whether `target` is `krate` or one of its modules (`hyper` matches `hyper::proto`, not `hyperx`).
fn is_crate(target: &str, krate: &str) -> bool {
    target.strip_prefix(krate).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// The cap: this crate's events pass (`RUST_LOG` decides), every other crate only at
/// [`DEPENDENCY_CAP`] or less verbose, the [`SILENCED`] ones never.
pub fn allowed(target: &str, level: &Level) -> bool {
    if is_crate(target, OWN_TARGET) {
        return true;
    }
    if SILENCED.iter().any(|k| is_crate(target, k)) {
        return false;
    }
    *level <= DEPENDENCY_CAP
}

/// Colour on stderr: only a terminal, and `NO_COLOR` (non-empty) turns it off.
pub fn use_color(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The filter when `RUST_LOG` is unset (or unparseable).
fn default_directives(verbose: u8, daemon: bool) -> &'static str {
    match verbose {
        1 if daemon => "info",
        0 => "warn",
        1 => "info,airflow_secrets_sync=debug",
        _ => "debug,airflow_secrets_sync=trace",
    }
}

/// Install the stderr subscriber: JSON lines (`json`) or text; see the module docs for the cap.
pub fn init(verbose: u8, json: bool, daemon: bool) {
    let color = !json && use_color(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let wanted = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directives(verbose, daemon)));
    let _ = subscriber(wanted, json, color, std::io::stderr).try_init();
}

/// The subscriber [`init`] installs, writing to `writer`.
///
/// Both filters are global (layers), not per-layer filters: a per-layer filter keeps a
/// thread-local "disabled" mark from an `enabled!` check that no event follows (sqlx and the `log`
/// bridge make such checks), and the next event of a cached callsite on that thread — one of ours
/// — was silently dropped (`tests/logging.rs`, `capping_dependencies_never_loses_an_event_of_ours`).
fn subscriber<W>(wanted: EnvFilter, json: bool, color: bool, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let cap = filter_fn(|m: &Metadata<'_>| allowed(m.target(), m.level()));
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let layer: Box<dyn Layer<Registry> + Send + Sync> =
        if json { fmt.json().with_ansi(false).boxed() } else { fmt.with_target(false).with_ansi(color).boxed() };
    tracing_subscriber::registry().with(layer).with(wanted).with(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_capped_at_warn_and_this_crate_is_not() {
        for level in [Level::TRACE, Level::DEBUG, Level::INFO, Level::WARN, Level::ERROR] {
            assert!(allowed("airflow_secrets_sync", &level));
            assert!(allowed("airflow_secrets_sync::store::vault", &level));
            assert!(!allowed("vaultrs::api", &level), "vaultrs is off");
            assert!(!allowed("rustify", &level), "rustify is off");
        }
        for target in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_sdk_secretsmanager::operation",
            "aws_config",
            "aws_sigv4::http_request::sign",
            "hyper_util::client::legacy::pool",
            "hyper::proto::h1::io",
            "reqwest::connect",
            "h2::codec::framed_write",
            "rustls::client::hs",
            "azure_core::http::policies",
            "azure_identity",
            "google_cloud_gax_internal::http",
            "gaxi::http",
            "sqlx::query",
            "log",
            "airflow_secrets_sync_fake",
        ] {
            assert!(!allowed(target, &Level::TRACE), "{target} at trace");
            assert!(!allowed(target, &Level::DEBUG), "{target} at debug");
            assert!(!allowed(target, &Level::INFO), "{target} at info");
            assert!(allowed(target, &Level::WARN), "{target} at warn");
            assert!(allowed(target, &Level::ERROR), "{target} at error");
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_color(true, None));
        assert!(use_color(true, Some(OsStr::new(""))), "an empty NO_COLOR does not count (no-color.org)");
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(!use_color(false, None));
        assert!(!use_color(false, Some(OsStr::new("1"))));
    }
}
