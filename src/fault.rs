//! Named kill points for the crash tests (tests/crash.rs), in the style of
//! `AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER`: `AIRFLOW_SECRETS_SYNC_FAULT_KILL_AT=NAME` aborts the
//! process (like `kill -9`: no destructors, no flush, no rollback) when it reaches the kill point
//! NAME. Only in builds with the `fault-injection` cargo feature (`cargo test --all-features`),
//! like `AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER`: any other build ignores the variable.

pub const FAULT_KILL_AT_ENV: &str = "AIRFLOW_SECRETS_SYNC_FAULT_KILL_AT";

/// Inside the state database transaction that records a new run, before it commits.
pub const BEGIN_RUN: &str = "begin_run";
/// In a local-files flush, after the first file was renamed into place, before the second.
pub const LOCAL_FILES_FLUSH: &str = "local_files_flush";
/// Inside a metastore target's write transaction, before it commits.
pub const METASTORE_TX: &str = "metastore_tx";

/// Abort here if the environment names this kill point (`fault-injection` builds only).
#[inline]
pub fn kill_point(name: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var(FAULT_KILL_AT_ENV).is_ok_and(|v| v.trim() == name) {
        std::process::abort();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
}
