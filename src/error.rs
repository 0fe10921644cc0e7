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

use crate::model::ItemErrorKind;
use crate::store::StoreError;

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
        match err {
            StoreError::Unreachable { .. } => Exit::Unreachable,
            StoreError::PermissionDenied { .. } => Exit::PermissionDenied,
            StoreError::Throttled { .. } | StoreError::Unavailable { .. } => Exit::Throttled,
            StoreError::Conflict { .. } => Exit::Drift,
            StoreError::Item { error, .. } => Exit::for_item(error.kind),
            StoreError::Schema { .. } => Exit::Schema,
            StoreError::FernetKey { .. } => Exit::FernetKey,
            StoreError::Config { .. } | StoreError::ReadOnly { .. } => Exit::Usage,
            _ => Exit::Error,
        }
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
        if let Some(e) = cause.downcast_ref::<crate::state::StateError>() {
            return e.exit();
        }
    }
    Exit::Error
}
