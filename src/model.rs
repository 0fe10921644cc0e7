//! The data every store speaks: [`ItemId`], [`Connection`], [`Entry`] and [`Inventory`].
//!
//! Backends map an `ItemId` to their own names; that mapping lives in the backend, nowhere else.
//! Plaintext lives only in [`SecretValue`]; every other field here is something Airflow itself
//! stores unencrypted (conn_type, host, login, schema, port, description).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::secret::SecretValue;

/// What Airflow calls the two kinds of secret this tool moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Variable,
    Connection,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Variable, Kind::Connection];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Variable => "variable",
            Kind::Connection => "connection",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Variable => "variables",
            Kind::Connection => "connections",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Airflow's own identity of an item: a variable key or a conn_id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemId {
    pub kind: Kind,
    pub id: String,
}

impl ItemId {
    pub fn new(kind: Kind, id: impl Into<String>) -> Self {
        Self { kind, id: id.into() }
    }

    pub fn variable(id: impl Into<String>) -> Self {
        Self::new(Kind::Variable, id)
    }

    pub fn connection(id: impl Into<String>) -> Self {
        Self::new(Kind::Connection, id)
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} '{}'", self.kind, self.id.escape_debug())
    }
}

/// A parsed Airflow connection. `password` and `extra` are the fields Airflow encrypts.
///
/// `extra` is the raw string Airflow stores (normally a JSON object); compare connections with
/// [`crate::airflow::connection::equivalent`], never with `==`, when the two sides may have come
/// through different encodings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    pub conn_type: Option<String>,
    pub description: Option<String>,
    pub host: Option<String>,
    pub login: Option<String>,
    pub password: Option<SecretValue>,
    pub schema: Option<String>,
    pub port: Option<u16>,
    pub extra: Option<SecretValue>,
}

/// A variable's value and (metastore only) its description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variable {
    pub value: SecretValue,
    pub description: Option<String>,
}

impl Variable {
    pub fn new(value: impl Into<SecretValue>) -> Self {
        Self { value: value.into(), description: None }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Variable(Variable),
    Connection(Connection),
}

impl Value {
    pub fn kind(&self) -> Kind {
        match self {
            Value::Variable(_) => Kind::Variable,
            Value::Connection(_) => Kind::Connection,
        }
    }
}

/// Whether the tool wrote an item, as far as the store can tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// The store cannot mark ownership (a file, the metastore): every item may be written.
    #[default]
    Untracked,
    /// Marked as written by this tool.
    Ours,
    /// Exists, but this tool did not create it: never overwritten or deleted without `--adopt`.
    Foreign,
}

/// What a store knows about an item besides its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub ownership: Ownership,
    /// An opaque version for check-and-set writes (Vault KV v2 version, ...).
    pub version: Option<String>,
    /// The backend's own name for the item (a path, a secret name), for display.
    pub name: Option<String>,
}

/// One item as a store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: ItemId,
    pub value: Value,
    pub meta: Meta,
}

impl Entry {
    pub fn variable(id: impl Into<String>, value: impl Into<SecretValue>) -> Self {
        Self {
            id: ItemId::variable(id),
            value: Value::Variable(Variable::new(value)),
            meta: Meta::default(),
        }
    }

    pub fn connection(id: impl Into<String>, conn: Connection) -> Self {
        Self { id: ItemId::connection(id), value: Value::Connection(conn), meta: Meta::default() }
    }

    pub fn as_variable(&self) -> Option<&Variable> {
        match &self.value {
            Value::Variable(v) => Some(v),
            Value::Connection(_) => None,
        }
    }

    pub fn as_connection(&self) -> Option<&Connection> {
        match &self.value {
            Value::Connection(c) => Some(c),
            Value::Variable(_) => None,
        }
    }
}

/// Why one item could not be read or placed. The detail names the cause, never a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemErrorKind {
    /// No configured Fernet key verifies the token (a wrong or missing key).
    WrongKey,
    /// The token is not a Fernet token at all (corrupt, truncated, not base64).
    CorruptToken,
    /// The row is flagged encrypted but no Fernet key is configured.
    NoKey,
    /// The stored value cannot be parsed the way Airflow parses it.
    Unparseable,
    /// The id cannot be a name in this store.
    InvalidName,
    /// The value is over the store's size limit.
    TooLarge,
    /// The store cannot hold this value (an empty variable, a description, ...).
    NotRepresentable,
    /// Airflow would never look the item up in this store (lookup pattern, disabled kind).
    Unreachable,
    /// The store refused to read it (permission denied on the item).
    Unreadable,
    /// Several ids map to the same name in this store.
    Collision,
    /// The target holds this item but this tool did not write it.
    NotOwned,
    /// The target's state blocks the name (pending deletion, soft-deleted, disabled).
    Blocked,
}

impl ItemErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemErrorKind::WrongKey => "wrong fernet key",
            ItemErrorKind::CorruptToken => "corrupt fernet token",
            ItemErrorKind::NoKey => "encrypted but no fernet key configured",
            ItemErrorKind::Unparseable => "unparseable",
            ItemErrorKind::InvalidName => "invalid name",
            ItemErrorKind::TooLarge => "too large",
            ItemErrorKind::NotRepresentable => "not representable",
            ItemErrorKind::Unreachable => "unreachable by Airflow",
            ItemErrorKind::Unreadable => "unreadable",
            ItemErrorKind::Collision => "name collision",
            ItemErrorKind::NotOwned => "not owned by this tool",
            ItemErrorKind::Blocked => "blocked by the target's state",
        }
    }
}

/// A per-item failure. `detail` is written by this crate and never contains a secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", kind.as_str())]
pub struct ItemError {
    pub kind: ItemErrorKind,
    pub detail: String,
}

impl ItemError {
    pub fn new(kind: ItemErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }
}

/// Everything read from one store: entries, plus the items that could not be read.
///
/// A row that fails to decrypt is an error entry here: never a crash, never silently skipped.
///
/// Entries are shared (`Arc`): a plan refers to the source's entries instead of copying every
/// value it will write.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    entries: BTreeMap<ItemId, std::sync::Arc<Entry>>,
    errors: BTreeMap<ItemId, ItemError>,
}

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, entry: Entry) {
        self.insert_shared(std::sync::Arc::new(entry));
    }

    fn insert_shared(&mut self, entry: std::sync::Arc<Entry>) {
        self.errors.remove(&entry.id);
        self.entries.insert(entry.id.clone(), entry);
    }

    pub fn insert_error(&mut self, id: ItemId, error: ItemError) {
        self.entries.remove(&id);
        self.errors.insert(id, error);
    }

    pub fn get(&self, id: &ItemId) -> Option<&Entry> {
        self.entries.get(id).map(|e| &**e)
    }

    /// The entry for `id`, shared rather than copied.
    pub fn get_shared(&self, id: &ItemId) -> Option<std::sync::Arc<Entry>> {
        self.entries.get(id).cloned()
    }

    pub fn error(&self, id: &ItemId) -> Option<&ItemError> {
        self.errors.get(id)
    }

    pub fn contains(&self, id: &ItemId) -> bool {
        self.entries.contains_key(id) || self.errors.contains_key(id)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().map(|e| &**e)
    }

    pub fn errors(&self) -> impl Iterator<Item = (&ItemId, &ItemError)> {
        self.errors.iter()
    }

    /// Every id, readable or not, in order.
    pub fn ids(&self) -> impl Iterator<Item = &ItemId> {
        let mut all: Vec<&ItemId> = self.entries.keys().chain(self.errors.keys()).collect();
        all.sort();
        all.into_iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.errors.is_empty()
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub fn extend(&mut self, other: Inventory) {
        for (id, err) in other.errors {
            self.insert_error(id, err);
        }
        for (_, e) in other.entries {
            self.insert_shared(e);
        }
    }

    /// Whether any entry or error is of `kind`.
    pub fn has_kind(&self, kind: Kind) -> bool {
        let first = ItemId::new(kind, "");
        self.entries.range(&first..).next().is_some_and(|(id, _)| id.kind == kind)
            || self.errors.range(&first..).next().is_some_and(|(id, _)| id.kind == kind)
    }

    /// Move the entries and errors of `kind` out into an inventory of their own (a pipeline that
    /// plans one kind at a time; no entry is copied).
    pub fn take_kind(&mut self, kind: Kind) -> Inventory {
        fn take<V>(map: &mut BTreeMap<ItemId, V>, kind: Kind) -> BTreeMap<ItemId, V> {
            // Ids order by kind first, and `""` is the smallest id of a kind.
            let mut part = map.split_off(&ItemId::new(kind, ""));
            if let Some(next) = Kind::ALL.into_iter().filter(|k| *k > kind).min() {
                let mut later = part.split_off(&ItemId::new(next, ""));
                map.append(&mut later);
            }
            part
        }
        Inventory { entries: take(&mut self.entries, kind), errors: take(&mut self.errors, kind) }
    }

    /// Keep only the ids `keep` accepts (entries and errors alike).
    pub fn retain(&mut self, mut keep: impl FnMut(&ItemId) -> bool) {
        self.entries.retain(|id, _| keep(id));
        self.errors.retain(|id, _| keep(id));
    }
}

impl FromIterator<Entry> for Inventory {
    fn from_iter<T: IntoIterator<Item = Entry>>(iter: T) -> Self {
        let mut inv = Inventory::new();
        for e in iter {
            inv.insert(e);
        }
        inv
    }
}
