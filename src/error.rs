//! Exit codes: one table, decided in one place.
//!
//! | code | meaning |
//! |-----:|---------|
//! | 0  | success; for `--plan`, no changes |
//! | 1  | any other error |
//! | 2  | `--plan`: changes pending (Terraform's `-detailed-exitcode` convention) |
//! | 3  | usage or configuration error |
//! | 4  | the Fernet key is malformed (cannot build Airflow's MultiFernet) |
//! | 5  | an item does not decrypt with the configured key(s) (wrong or missing key) |
//! | 6  | an item's Fernet token is corrupt |
//! | 7  | the metastore schema is missing or not an Airflow schema |
//! | 8  | a store is unreachable (nothing was written) |
//! | 9  | permission denied by a backend |
//! | 10 | an item cannot be stored in the target (invalid name, too large, not representable, collision, blocked by the target's state) |
//! | 11 | throttled or unavailable mid-run: safe to re-run (resumable) |
//! | 12 | drift: a saved plan no longer matches the stores |
//! | 13 | partial apply: some items were written, others failed |
//! | 14 | read-back verification failed after apply, or `verify` found items Airflow would read differently |
//! | 15 | an existing item is not owned by this tool (pass `--adopt` to take it over) |
//! | 16 | the target is locked by another apply (nothing was written; retry when it finishes) |

use crate::apply::{ApplyReport, ItemFailure};
use crate::config::ConfigError;
use crate::model::ItemErrorKind;
use crate::plan::{Plan, SelectionError};
use crate::planfile::PlanFileError;
use crate::state::StateError;
use crate::store::{StoreError, StoreErrorKind};

/// The class of a failure, which decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Error = 1,
    ChangesPending = 2,
    Usage = 3,
    FernetKey = 4,
    WrongKey = 5,
    CorruptToken = 6,
    Schema = 7,
    Unreachable = 8,
    PermissionDenied = 9,
    InvalidItem = 10,
    Throttled = 11,
    Drift = 12,
    PartialApply = 13,
    VerifyFailed = 14,
    NotOwned = 15,
    Locked = 16,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn for_item(kind: ItemErrorKind) -> Exit {
        match kind {
            ItemErrorKind::WrongKey | ItemErrorKind::NoKey => Exit::WrongKey,
            ItemErrorKind::CorruptToken => Exit::CorruptToken,
            ItemErrorKind::Unreadable => Exit::PermissionDenied,
            ItemErrorKind::NotOwned => Exit::NotOwned,
            ItemErrorKind::Unparseable
            | ItemErrorKind::InvalidName
            | ItemErrorKind::TooLarge
            | ItemErrorKind::NotRepresentable
            | ItemErrorKind::Unreachable
            | ItemErrorKind::Collision
            | ItemErrorKind::Blocked => Exit::InvalidItem,
        }
    }

    pub fn for_store(err: &StoreError) -> Exit {
        Exit::for_store_kind(err.kind())
    }

    pub fn for_store_kind(kind: StoreErrorKind) -> Exit {
        match kind {
            StoreErrorKind::Unreachable => Exit::Unreachable,
            StoreErrorKind::PermissionDenied => Exit::PermissionDenied,
            StoreErrorKind::Throttled | StoreErrorKind::Unavailable => Exit::Throttled,
            StoreErrorKind::Conflict => Exit::Drift,
            StoreErrorKind::Item(kind) => Exit::for_item(kind),
            StoreErrorKind::Schema => Exit::Schema,
            StoreErrorKind::FernetKey => Exit::FernetKey,
            StoreErrorKind::Config | StoreErrorKind::ReadOnly => Exit::Usage,
            _ => Exit::Error,
        }
    }

    pub fn for_state(err: &StateError) -> Exit {
        match err {
            StateError::Key(_) | StateError::NoRun(_) => Exit::Usage,
            StateError::Locked { .. } => Exit::Locked,
            StateError::Run { .. } => Exit::PartialApply,
            StateError::Sealed { .. } => Exit::Usage,
            StateError::Db { .. } => Exit::Error,
        }
    }
}

// The exit class of the library's results. Library modules (`plan`, `apply`, `state`, `store`)
// report what happened as data and never name an exit code; these impls, at the edge, do.

impl StateError {
    pub fn exit(&self) -> Exit {
        Exit::for_state(self)
    }
}

impl ItemFailure {
    pub fn exit(&self) -> Exit {
        Exit::for_store_kind(self.kind)
    }
}

impl Plan {
    /// The exit class of the worst per-item error, if any.
    pub fn error_exit(&self) -> Option<Exit> {
        if !self.refusals.is_empty() {
            return Some(Exit::InvalidItem);
        }
        self.errored().filter_map(|c| c.error.as_ref()).map(|e| Exit::for_item(e.kind)).min()
    }
}

impl ApplyReport {
    /// The exit class: partial apply, throttled or unavailable (resumable), or the single failure
    /// class.
    pub fn exit(&self) -> Exit {
        let connectivity = |f: &ItemFailure| f.retryable || f.kind == StoreErrorKind::Unreachable;
        if !self.failures.is_empty() || !self.not_attempted.is_empty() {
            if self.failures.iter().all(|f| f.retryable) {
                return Exit::Throttled;
            }
            // The backend went away mid-run: nothing is wrong with the items; re-run to resume.
            if self.interrupted.is_some() && self.written() > 0 && self.failures.iter().all(connectivity) {
                return Exit::Throttled;
            }
            if self.written() > 0 {
                return Exit::PartialApply;
            }
            return self.failures.iter().map(ItemFailure::exit).min().unwrap_or(Exit::Error);
        }
        if !self.verify_mismatches.is_empty() {
            return Exit::VerifyFailed;
        }
        if !self.unverified.is_empty() {
            // Not read back because the backend could not answer: a re-run re-reads and re-plans.
            return Exit::Throttled;
        }
        Exit::Ok
    }
}

/// Failures the application itself decides (not a store's), each with its exit class.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(String),
    #[error("{message}")]
    Items { message: String, exit: Exit },
    #[error("{0}")]
    Drift(String),
    #[error("{0}")]
    Partial(String),
    #[error("{0}")]
    Verify(String),
}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        AppError::Config(e.0)
    }
}

impl From<SelectionError> for AppError {
    fn from(e: SelectionError) -> Self {
        AppError::Usage(e.0)
    }
}

impl AppError {
    pub fn exit(&self) -> Exit {
        match self {
            AppError::Usage(_) | AppError::Config(_) => Exit::Usage,
            AppError::Items { exit, .. } => *exit,
            AppError::Drift(_) => Exit::Drift,
            AppError::Partial(_) => Exit::PartialApply,
            AppError::Verify(_) => Exit::VerifyFailed,
        }
    }
}

/// The exit class of an error chain: the first error in it that we know.
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<AppError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return Exit::for_store(e);
        }
        if let Some(e) = cause.downcast_ref::<StateError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<PlanFileError>() {
            return match e {
                PlanFileError::Usage(_) => Exit::Usage,
                PlanFileError::Drift(_) => Exit::Drift,
            };
        }
        if cause.downcast_ref::<SelectionError>().is_some() || cause.downcast_ref::<ConfigError>().is_some() {
            return Exit::Usage;
        }
    }
    Exit::Error
}
