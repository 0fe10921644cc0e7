//! The seam: one small, object-safe [`Store`] trait that every source and target implements.
//!
//! The metastore, env vars, Airflow's local files, Vault, AWS, GCP, Azure and snapshots are all
//! stores; a migration, a sync, a rollback and a restore are the same pipeline between two of them.
//! Only this module and its children talk to a backend. What a store can and cannot hold is data
//! ([`Capabilities`]), checked by the planner and by the conformance suite alike.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::airflow::connection::Reader;
use crate::model::{Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Value};

pub mod atomic;
pub mod env;
pub mod local_files;
pub mod memory;
pub mod metastore;
pub(crate) mod sql_conn;
pub mod registry;
pub mod dir;
pub mod layer;
/// The old name of [`layer`], kept while callers move.
pub use layer as layered;
pub mod limit;
pub mod snapshot;
#[cfg(feature = "vault")]
pub mod vault;
#[cfg(any(feature = "aws_secrets_manager", feature = "aws_ssm"))]
pub mod aws;
#[cfg(feature = "gcp_secret_manager")]
pub mod gcp;
/// The GCP store's module under its kind's name (`kind = "gcp_secret_manager"`).
#[cfg(feature = "gcp_secret_manager")]
pub use gcp as gcp_secret_manager;
#[cfg(feature = "azure_key_vault")]
pub mod azure_key_vault;
#[cfg(any(feature = "gcp_secret_manager", feature = "azure_key_vault"))]
mod prefixed;

/// The suite every store passes; public so integration tests and third-party stores run it.
pub mod conformance;

/// How a store encodes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionFormat {
    /// Airflow's JSON form (`Connection.as_json()`), read by `from_json` (Airflow >= 2.3).
    Json,
    /// Airflow's URI form (`get_uri()`): loses description, port 0, host case, ...
    Uri,
    /// Native fields (metastore columns, Vault field dicts, local-file dicts): lossless.
    Fields,
}

/// What a store can hold, as data: the planner checks it before any write.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// Never written to.
    pub read_only: bool,
    /// Kinds this store holds; a disabled kind (Airflow's `None` prefix) is absent.
    pub variables: bool,
    pub connections: bool,
    /// Largest stored value in bytes (the encoded form), if the backend has a limit.
    pub max_value_bytes: Option<usize>,
    /// Whether an empty variable value can be stored and read back as found.
    pub empty_variables: bool,
    /// Whether a variable value may contain line breaks (Airflow's `.env` format cannot hold them).
    pub variable_line_breaks: bool,
    pub connection_format: ConnectionFormat,
    /// Whether a connection's description survives a round trip.
    pub connection_description: bool,
    /// Whether a variable's description is stored (the metastore only).
    pub variable_description: bool,
    /// Whether the store marks what this tool wrote (tags, labels, custom metadata).
    pub can_tag: bool,
    pub can_delete: bool,
    /// Whether `Precondition::Version` / `Absent` are enforced by the backend.
    pub conditional_writes: bool,
    /// Items per batched read call.
    pub read_batch: usize,
    /// Writes in flight at most. A quota-paced target (`write_rate`) keeps this many in flight;
    /// for an unpaced one it is the cap of the apply's latency-following limit
    /// (`crate::store::limit`). `[apply] concurrency` overrides both with a fixed number.
    pub write_concurrency: usize,
    /// The backend's published write quota (requests per second, per account/project/vault):
    /// applies pace themselves to it instead of discovering it by being throttled, and so leave
    /// the rest of the quota's users alone. `[apply] max_writes_per_second` overrides it.
    pub write_rate: Option<f64>,
    /// Writes are buffered and made durable together by `flush` (files, a metastore
    /// transaction): nothing reaches the backend before it, so the journal records the run's
    /// intents at once and the outcomes after the flush.
    pub buffered_writes: bool,
    /// Names that differ only in case are the same item (Azure Key Vault).
    pub case_insensitive_names: bool,
    /// Existing items are never replaced, only missing ones written (a metastore target with
    /// `on_conflict = "skip"`); the plan keeps them.
    pub keep_existing: bool,
}

impl Capabilities {
    /// A permissive baseline that stores adjust.
    pub fn full() -> Self {
        Self {
            read_only: false,
            variables: true,
            connections: true,
            max_value_bytes: None,
            empty_variables: true,
            variable_line_breaks: true,
            connection_format: ConnectionFormat::Fields,
            connection_description: true,
            variable_description: false,
            can_tag: false,
            can_delete: true,
            conditional_writes: false,
            read_batch: 1,
            write_concurrency: 1,
            write_rate: None,
            buffered_writes: false,
            case_insensitive_names: false,
            keep_existing: false,
        }
    }

    pub fn holds(&self, kind: Kind) -> bool {
        match kind {
            Kind::Variable => self.variables,
            Kind::Connection => self.connections,
        }
    }
}

/// Where an item lives in a store, or why it cannot live there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The backend's name for it (path, secret name, env var name).
    At(String),
    /// The id cannot be a name here (characters, length, reserved prefix, collision).
    Invalid(String),
    /// A name exists, but Airflow would never look it up (lookup pattern, kind disabled).
    Unreachable(String),
}

/// A condition on a write, enforced by stores with `conditional_writes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    Any,
    /// Fail with [`StoreError::Conflict`] if the item exists.
    Absent,
    /// Fail with [`StoreError::Conflict`] unless the item is at this version.
    Version(String),
}

/// Errors from a store. Each names the store and, where it applies, the item; never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{store}: cannot connect: {reason}")]
    Unreachable { store: String, reason: String },
    #[error("{store}: permission denied: {what}")]
    PermissionDenied { store: String, what: String },
    #[error("{store}: throttled during {op}")]
    Throttled { store: String, op: &'static str, retry_after: Option<Duration> },
    #[error("{store}: unavailable during {op}: {reason}")]
    Unavailable { store: String, op: &'static str, reason: String },
    #[error("{store}: {id} changed since it was read (check-and-set failed)")]
    Conflict { store: String, id: ItemId },
    #[error("{store}: {id}: {error}")]
    Item { store: String, id: ItemId, error: ItemError },
    #[error("{store}: is read-only")]
    ReadOnly { store: String },
    #[error("{store}: {message}")]
    Schema { store: String, message: String },
    #[error("{store}: fernet key: {reason}")]
    FernetKey { store: String, reason: String },
    #[error("{store}: configuration: {message}")]
    Config { store: String, message: String },
    #[error("{store}: {op} failed: {reason}")]
    Backend { store: String, op: &'static str, reason: String },
}

/// The class of a [`StoreError`], as data (what an apply report keeps of a failure; the binary's
/// edge maps it to an exit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    Unreachable,
    PermissionDenied,
    Throttled,
    Unavailable,
    Conflict,
    Item(ItemErrorKind),
    ReadOnly,
    Schema,
    FernetKey,
    Config,
    Backend,
}

impl StoreError {
    /// The class of this error.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Unreachable { .. } => StoreErrorKind::Unreachable,
            StoreError::PermissionDenied { .. } => StoreErrorKind::PermissionDenied,
            StoreError::Throttled { .. } => StoreErrorKind::Throttled,
            StoreError::Unavailable { .. } => StoreErrorKind::Unavailable,
            StoreError::Conflict { .. } => StoreErrorKind::Conflict,
            StoreError::Item { error, .. } => StoreErrorKind::Item(error.kind),
            StoreError::ReadOnly { .. } => StoreErrorKind::ReadOnly,
            StoreError::Schema { .. } => StoreErrorKind::Schema,
            StoreError::FernetKey { .. } => StoreErrorKind::FernetKey,
            StoreError::Config { .. } => StoreErrorKind::Config,
            StoreError::Backend { .. } => StoreErrorKind::Backend,
        }
    }

    /// Whether trying again later may succeed (throttling, 5xx, a dropped connection).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Throttled { .. } | StoreError::Unavailable { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StoreError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn item(store: &dyn fmt::Display, id: &ItemId, error: ItemError) -> Self {
        StoreError::Item { store: store.to_string(), id: id.clone(), error }
    }
}

/// One place secrets live.
///
/// Contract (each sentence is a function in [`conformance`]):
/// - `scan(kind)` returns every item of `kind` the store holds, each with its value, or a per-item
///   error for an item it found but could not read; it must never skip an item silently.
/// - `read(ids)` returns those of `ids` that exist (absent ids are simply not in the inventory).
/// - `write` must store the entry so that Airflow reads back an equivalent value, or fail with an
///   error naming the item; a read-only store returns [`StoreError::ReadOnly`].
/// - `delete` removes an item; deleting an absent item is not an error.
/// - `flush` makes buffered writes durable (files); after it returns, `scan` sees them.
/// - `Display` names the instance (kind and location), never a credential.
#[async_trait]
pub trait Store: fmt::Display + Send + Sync {
    fn capabilities(&self) -> Capabilities;

    /// A stable identity of what this store points at (kind + location, never credentials);
    /// saved plans record it so a plan cannot be applied to another store.
    fn identity(&self) -> String {
        self.to_string()
    }

    /// Where `id` lives here. Pure: no I/O. The default is the bare id.
    fn locate(&self, id: &ItemId) -> Placement {
        Placement::At(id.id.clone())
    }

    /// What each of `readers` reads if `entry` is written here (the reader model, spec §4.4):
    /// the store's own encoding, the function `write` uses, so its refusals are the write's,
    /// decoded as Airflow's backend class decodes it. Pure: no I/O.
    ///
    /// `Err`: the store would refuse the write (a value it cannot encode, a quoting rule); otherwise
    /// one result per reader, `Err` where that reader refuses the item (it raises, so Airflow falls
    /// through to its next backend). The default follows [`Capabilities::connection_format`].
    fn read_as(&self, entry: &Entry, readers: &[Reader]) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
        Ok(read_as_by_format(&self.capabilities(), entry, readers))
    }

    /// The Airflow release this store's contents were last migrated by, where the store knows
    /// (a metastore's alembic revision); `airflow_readers = ["auto"]` picks readers from it.
    fn airflow_version(&self) -> Option<&'static str> {
        None
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError>;

    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        let wanted: std::collections::HashSet<&ItemId> = ids.iter().collect();
        let mut out = Inventory::new();
        for kind in Kind::ALL {
            if !ids.iter().any(|i| i.kind == kind) {
                continue;
            }
            let mut all = self.scan(kind).await?;
            all.retain(|id| wanted.contains(id));
            out.extend(all);
        }
        Ok(out)
    }

    /// Read back what `ids` hold right after this tool wrote them, to verify the writes: the
    /// values Airflow would read (ownership marks need not be filled in). Default: [`Store::read`];
    /// a store overrides it when values alone are cheaper to read (one batched call).
    async fn read_back(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        self.read(ids).await
    }

    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError>;

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError>;

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A cheap reachability check for `/readyz` and early, clear errors.
    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

pub type DynStore = Arc<dyn Store>;

/// The item error inside a store's refusal of one item (any other error, named as it is).
pub fn item_error_of(e: StoreError) -> ItemError {
    match e {
        StoreError::Item { error, .. } => error,
        other => ItemError::new(ItemErrorKind::NotRepresentable, other.to_string()),
    }
}

/// [`Store::read_as`] for a backend that stores one string per item: `encoded` is the store's own
/// encoding (what `write` sends), `decode` the store's own reading of it for a reader (`None`:
/// Airflow treats the value as absent).
pub fn read_as_string(
    encoded: Result<crate::model::SecretValue, StoreError>,
    readers: &[Reader],
    decode: impl Fn(&str, Reader) -> Result<Option<Value>, ItemError>,
) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
    let value = encoded.map_err(item_error_of)?;
    Ok(readers
        .iter()
        .map(|r| {
            decode(value.expose_plaintext(), *r)?
                .ok_or_else(|| ItemError::new(ItemErrorKind::NotRepresentable, "Airflow reads the stored value as absent"))
        })
        .collect())
}

/// [`Store::read_as`] for a store that writes a connection in `caps.connection_format` with this
/// crate's codecs (Airflow's JSON form, our URI writer, or native fields read as given) and reads it
/// back with Airflow's `deserialize_connection` (the string backends) or field for field.
pub fn read_as_by_format(caps: &Capabilities, entry: &Entry, readers: &[Reader]) -> Vec<Result<Value, ItemError>> {
    use crate::airflow::connection;
    match &entry.value {
        Value::Variable(v) => {
            let mut v = v.clone();
            if !caps.variable_description {
                v.description = None;
            }
            readers.iter().map(|_| Ok(Value::Variable(v.clone()))).collect()
        }
        Value::Connection(c) => {
            let payload = match caps.connection_format {
                ConnectionFormat::Fields => None,
                ConnectionFormat::Json => Some(connection::to_json(c)),
                ConnectionFormat::Uri => Some(connection::to_uri(c)),
            };
            let read: Vec<Result<crate::model::Connection, connection::ParseError>> = match &payload {
                None => readers.iter().map(|_| Ok(c.clone())).collect(),
                Some(p) => connection::deserialize_for(p.expose_plaintext(), readers),
            };
            read.into_iter()
                .map(|r| {
                    let mut out = r.map_err(|e| ItemError::new(ItemErrorKind::Unparseable, e.to_string()))?;
                    if !caps.connection_description {
                        out.description = None;
                    }
                    Ok(Value::Connection(out))
                })
                .collect()
        }
    }
}

/// Read every kind in `kinds` into one inventory, the kinds at the same time (a remote store's
/// listing round trips overlap). A throttled or briefly unavailable backend is retried by the one
/// retry loop ([`layer::retry`], its default policy: 6 attempts, exponential backoff with full
/// jitter, honouring Retry-After) before the read counts as failed: a plan should not die on one
/// 429. Over a store that retries already (a [`layer::stack`]), the loops do not nest.
pub async fn scan_all(store: &dyn Store, kinds: &[Kind]) -> Result<Inventory, StoreError> {
    scan_all_with(store, kinds, &layer::RetryPolicy::default()).await
}

/// [`scan_all`] with an explicit retry policy.
pub async fn scan_all_with(store: &dyn Store, kinds: &[Kind], retry: &layer::RetryPolicy) -> Result<Inventory, StoreError> {
    let scans = kinds.iter().map(|&kind| scan_kind_with(store, kind, retry));
    // All of them to the end, so a failure is the first kind's, as when they ran one by one.
    let mut inv = Inventory::new();
    for part in futures::future::join_all(scans).await {
        inv.extend(part?);
    }
    Ok(inv)
}

/// [`scan_all`] of one kind: empty when the store does not hold it; retryable errors retried by
/// the one retry loop (its default policy).
pub async fn scan_kind(store: &dyn Store, kind: Kind) -> Result<Inventory, StoreError> {
    scan_kind_with(store, kind, &layer::RetryPolicy::default()).await
}

/// [`scan_kind`] with an explicit retry policy.
pub async fn scan_kind_with(store: &dyn Store, kind: Kind, retry: &layer::RetryPolicy) -> Result<Inventory, StoreError> {
    if !store.capabilities().holds(kind) {
        return Ok(Inventory::new());
    }
    retry.run(store, layer::Call::Scan(kind), None, || store.scan(kind)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    /// Its variable scan answers only once its connection scan has started: read one kind after
    /// the other, `scan_all` would wait forever. `fail` makes both scans fail (after the gate).
    struct Gated {
        connections_started: tokio::sync::Notify,
        fail: bool,
    }

    impl fmt::Display for Gated {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("gated")
        }
    }

    #[async_trait]
    impl Store for Gated {
        fn capabilities(&self) -> Capabilities {
            MemoryStore::new("caps").capabilities()
        }
        async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
            let failed = |what: &str| StoreError::Config { store: format!("gated {what}"), message: "refused".into() };
            match kind {
                Kind::Variable => {
                    self.connections_started.notified().await;
                    if self.fail {
                        return Err(failed("variables"));
                    }
                    Ok([Entry::variable("v", "1")].into_iter().collect())
                }
                Kind::Connection => {
                    self.connections_started.notify_one();
                    if self.fail { Err(failed("connections")) } else { Ok(Inventory::new()) }
                }
            }
        }
        async fn write(&self, _: &Entry, _: &Precondition) -> Result<(), StoreError> {
            unreachable!("scans only")
        }
        async fn delete(&self, _: &ItemId) -> Result<(), StoreError> {
            unreachable!("scans only")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scan_all_reads_the_kinds_at_the_same_time() {
        let store = Gated { connections_started: Default::default(), fail: false };
        // Paused clock: if the scans ran one after the other, the idle runtime jumps to the deadline.
        let inv = tokio::time::timeout(Duration::from_secs(3600), scan_all(&store, &Kind::ALL))
            .await
            .expect("the variable scan waited for a connection scan that never started")
            .unwrap();
        assert_eq!(inv.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn scan_all_reports_the_first_kinds_failure() {
        let store = Gated { connections_started: Default::default(), fail: true };
        let err = tokio::time::timeout(Duration::from_secs(3600), scan_all(&store, &Kind::ALL)).await.unwrap().unwrap_err();
        // The connection scan fails first in time; the variables' failure is the one reported.
        assert!(err.to_string().contains("gated variables"), "{err}");
    }
}
