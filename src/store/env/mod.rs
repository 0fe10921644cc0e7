//! Airflow's `EnvironmentVariablesBackend` as a store: `AIRFLOW_VAR_<KEY>` and `AIRFLOW_CONN_<ID>`
//! read from the process environment (read-only) or from a `.env` file (read and written).
//!
//! Naming (spec §3.1): Airflow looks up `AIRFLOW_VAR_ + key.upper()` / `AIRFLOW_CONN_ + id.upper()`
//! with an exact dict lookup. The mapping is not reversible (spec §9 item 14):
//! - `scan` cannot know an id's original case, so it reports the **lower-cased** suffix
//!   (`AIRFLOW_VAR_MY_KEY` → `my_key`); `read(ids)` resolves each asked id exactly as Airflow does
//!   (upper-cased lookup), so an id asked as `My_Key` comes back as `My_Key`.
//! - `foo` and `FOO` are the same variable: [`collisions`] finds such groups in an inventory, and a
//!   write of a second id onto a name already written in this run is refused (`Collision`).
//! - A name with lower-case letters in its suffix (`AIRFLOW_VAR_foo`) is never read by Airflow; it is
//!   reported as an `Unreachable` item error, not silently dropped.
//!
//! Values (spec §3.1, §9 item 19): `AIRFLOW_VAR_X=` is a hit (an empty variable). `AIRFLOW_CONN_X=`
//! (empty) is a miss and is skipped, as Airflow's `if value:` does. Any other connection value is
//! parsed by [`deserialize`] (strip; `{` → JSON, else URI); a value Airflow cannot parse is a
//! per-item `Unparseable` error, never the value. Note: a whitespace-only connection value is truthy
//! in Python, so Airflow deserializes it; we do the same rather than skip it.
//!
//! `.env` files are read with dotenvy's rules (quotes, `export`, comments), because such files are
//! sourced by docker compose or a shell, not by Airflow; `$VAR` / `${VAR}` resolve only against
//! names the file defines earlier, and any other substitution is refused by item: the file's
//! reader has its own environment, and this tool's (its credentials) must never fill it in. Writes are buffered and land
//! atomically on [`Store::flush`] (temp file + rename, mode 0600); every line we do not manage is
//! kept byte for byte. A value is written so that `set -a; . ./file` (POSIX sh), dotenvy and docker
//! compose read it back byte-identical (see [`quote_env_value`]); what cannot be quoted that way is
//! refused by name. Multi-team names (`AIRFLOW_VAR__TEAM___KEY`, 3.2+) are not interpreted: they
//! show up as ids starting with `_`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::atomic::{self, FileMode};
use super::{Capabilities, ConnectionFormat, Placement, Precondition, Store, StoreError};
use crate::airflow::connection::{self, Reader};
use crate::model::{
    Connection, Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, SecretValue, Value, Variable,
};

mod dotenv_file;
use dotenv_file::*;

pub use crate::airflow::env::{CONN_PREFIX, EnvName, VAR_PREFIX, collisions, env_var_name, id_from_env_name, is_shell_name};

/// Where the environment comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvSource {
    /// This process's environment: read-only.
    #[default]
    Process,
    /// A `.env` file at `path`: read and written.
    File,
}

/// How connections are written into the environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvConnectionFormat {
    /// `Connection.as_json()` form, read by Airflow >= 2.3: lossless, keeps the description.
    #[default]
    Json,
    /// Our safe `get_uri()` form, for Airflow < 2.3: loses the description.
    Uri,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    #[serde(default)]
    pub source: EnvSource,
    /// The `.env` file (required with `source = "file"`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub connection_format: EnvConnectionFormat,
    /// Also refuse values docker compose (compose-go) misreads: one ending in a backslash (read as an
    /// escaped closing quote) or needing double quotes and ending in `"` (older compose-go trims it).
    /// Off by default: sh and dotenvy read them fine.
    #[serde(default)]
    pub compose_safe: bool,
    /// The mode of a file the tool creates (`"0640"`); default 0600. An existing file keeps its own.
    #[serde(default)]
    pub file_mode: Option<FileMode>,
}

/// Quote `value` for a `.env` line so that POSIX sh (`set -a; . file`), dotenvy and docker compose
/// all read back exactly `value`. Returns why it cannot, never the value.
///
/// - Single quotes when the value has no `'` and does not end in `\`: literal in all three readers.
///   (A trailing `\` would read as an escaped closing quote in dotenvy's line joiner and compose.)
/// - Otherwise double quotes, escaping only `\`, `"` and `$` (the three escapes sh, dotenvy and compose
///   all undo). A backtick cannot be written there: sh runs it, and `` \` `` is an error in dotenvy.
/// - NUL can never be in an environment.
///
/// docker compose (compose-go) reads all of these the same, except a value ending in `\` (and, in
/// older releases, a double-quoted one ending in `"`); `compose_safe` refuses those.
pub fn quote_env_value(value: &str, compose_safe: bool) -> Result<String, &'static str> {
    if value.contains('\0') {
        return Err("it contains a NUL character, which no environment variable can hold");
    }
    if compose_safe && value.ends_with('\\') {
        return Err("it ends with a backslash, which docker compose reads as an escaped closing quote");
    }
    if compose_safe && value.contains('\'') && value.ends_with('"') {
        // Needs double quotes, and older compose-go trims every trailing `"` of a quoted value.
        return Err("it has a single quote and ends with a double quote, which docker compose misreads");
    }
    if !value.contains('\'') && !value.ends_with('\\') {
        return Ok(format!("'{value}'"));
    }
    if value.contains('`') {
        return Err("it contains a backtick and a single quote (or a trailing backslash): no quoting reads back \
                    the same in sh and dotenvy");
    }
    let mut out = String::with_capacity(value.len() + 8);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

enum Source {
    /// `std::env::vars_os()` at each scan.
    Process,
    /// A fixed snapshot of an environment (another process's, or a test's).
    Vars(Vec<(OsString, OsString)>),
    File(PathBuf),
}

/// Linux's `MAX_ARG_STRLEN` (32 pages): the largest single `NAME=value` string `execve` accepts.
pub const MAX_ENV_STRING_BYTES: usize = 131_072;

/// A pending change to a `.env` file, keyed by variable name.
enum Pending {
    Set { id: ItemId, value: SecretValue },
    Remove,
}

/// The environment backend; see the module docs.
pub struct EnvStore {
    source: Source,
    format: EnvConnectionFormat,
    compose_safe: bool,
    file_mode: Option<FileMode>,
    reader: Reader,
    pending: Mutex<BTreeMap<String, Pending>>,
}

impl EnvStore {
    pub fn new(cfg: &EnvConfig) -> Result<Self, StoreError> {
        let source = match (cfg.source, &cfg.path) {
            (EnvSource::Process, None) => Source::Process,
            (EnvSource::Process, Some(_)) => {
                return Err(StoreError::Config {
                    store: "env:process".into(),
                    message: "`path` is only used with source = \"file\"".into(),
                });
            }
            (EnvSource::File, Some(p)) => Source::File(p.clone()),
            (EnvSource::File, None) => {
                return Err(StoreError::Config {
                    store: "env-file".into(),
                    message: "source = \"file\" needs a `path`".into(),
                });
            }
        };
        let mut store = Self::build(source, cfg.connection_format, cfg.compose_safe);
        store.file_mode = cfg.file_mode;
        Ok(store)
    }

    /// This process's environment, read-only.
    pub fn process() -> Self {
        Self::build(Source::Process, EnvConnectionFormat::Json, false)
    }

    /// A fixed environment (e.g. another process's), read-only.
    pub fn from_vars(vars: impl IntoIterator<Item = (impl Into<OsString>, impl Into<OsString>)>) -> Self {
        let vars = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self::build(Source::Vars(vars), EnvConnectionFormat::Json, false)
    }

    /// A `.env` file, written with connections in `format`.
    pub fn file(path: impl Into<PathBuf>, format: EnvConnectionFormat) -> Self {
        Self::build(Source::File(path.into()), format, false)
    }

    /// Which Airflow reader's connection semantics to reproduce (default: Airflow 3 ORM); `verify`
    /// reads with each.
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    fn build(source: Source, format: EnvConnectionFormat, compose_safe: bool) -> Self {
        if let Source::File(path) = &source {
            // Plaintext an interrupted write (kill -9) left beside the file.
            atomic::remove_stale(path, false);
        }
        Self {
            source,
            format,
            compose_safe,
            file_mode: None,
            reader: Reader::default(),
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) => Some(p),
            _ => None,
        }
    }

    fn item_err(&self, id: &ItemId, kind: ItemErrorKind, detail: impl Into<String>) -> StoreError {
        StoreError::item(self, id, ItemError::new(kind, detail))
    }

    /// Every environment name with its value (or why the value is unreadable). Last one wins.
    fn load(&self) -> Result<HashMap<String, Result<SecretValue, ItemError>>, StoreError> {
        let mut out = HashMap::new();
        let mut add = |name: OsString, value: OsString| {
            // Non-UTF-8 names cannot be an id we can name; Airflow (surrogateescape) would see garbage.
            let Ok(name) = name.into_string() else { return };
            let value = value
                .into_string()
                .map(SecretValue::from)
                .map_err(|_| ItemError::new(ItemErrorKind::Unparseable, "the value is not valid UTF-8"));
            out.insert(name, value);
        };
        match &self.source {
            Source::Process => std::env::vars_os().for_each(|(k, v)| add(k, v)),
            Source::Vars(vars) => vars.iter().for_each(|(k, v)| add(k.clone(), v.clone())),
            Source::File(path) => {
                let Some(text) = read_text(self, path)? else { return Ok(out) };
                return dotenv_values(self, &text);
            }
        }
        Ok(out)
    }

    /// Turn one environment value into an entry, as Airflow would read it. `None`: Airflow's miss.
    fn decode(&self, id: ItemId, name: &str, value: &SecretValue) -> Option<Result<Entry, ItemError>> {
        decode_with(self.reader, id, name, value)
    }

    /// The value `write` records for `entry` (unquoted), after every check a write makes: the
    /// planner calls the same function, so a refusal shows in the plan, not mid-apply.
    fn encode(&self, entry: &Entry) -> Result<SecretValue, ItemError> {
        let value = self.render(entry).map_err(|e| match e {
            StoreError::Item { error, .. } => error,
            other => ItemError::new(ItemErrorKind::NotRepresentable, other.to_string()),
        })?;
        if entry.id.kind == Kind::Connection && value.expose_plaintext().trim().is_empty() {
            // Airflow's `if value:` treats an empty connection value as absent.
            return Err(ItemError::new(ItemErrorKind::NotRepresentable, "the connection encodes to an empty value"));
        }
        if self.path().is_some() {
            quote_env_value(value.expose_plaintext(), self.compose_safe).map_err(|why| {
                ItemError::new(ItemErrorKind::NotRepresentable, format!("the value cannot be written to a .env file: {why}"))
            })?;
            // Linux refuses to exec with one environment string ("NAME=value\0") over
            // MAX_ARG_STRLEN: whoever loads this file into Airflow's environment could not start it.
            let size = env_var_name(&entry.id).len() + 1 + value.len() + 1;
            if size > MAX_ENV_STRING_BYTES {
                return Err(ItemError::new(
                    ItemErrorKind::TooLarge,
                    format!("{size} bytes as NAME=value; an environment variable holds at most {MAX_ENV_STRING_BYTES}"),
                ));
            }
        }
        Ok(value)
    }

    /// The `.env` value text for `entry` (unquoted), or why it cannot be stored.
    fn render(&self, entry: &Entry) -> Result<SecretValue, StoreError> {
        match &entry.value {
            Value::Variable(v) => Ok(v.value.clone()),
            Value::Connection(c) => match self.format {
                EnvConnectionFormat::Json => Ok(connection::to_json(c)),
                EnvConnectionFormat::Uri => {
                    check_uri_losses(self, &entry.id, c)?;
                    Ok(connection::to_uri(c))
                }
            },
        }
    }
}

/// One environment value as `reader` builds it. `None`: Airflow's miss.
fn decode_with(reader: Reader, id: ItemId, name: &str, value: &SecretValue) -> Option<Result<Entry, ItemError>> {
    let meta = Meta { name: Some(name.to_string()), ..Meta::default() };
    match id.kind {
        Kind::Variable => Some(Ok(Entry { id, value: Value::Variable(Variable::new(value.clone())), meta })),
        Kind::Connection => {
            if value.is_empty() {
                return None;
            }
            Some(match connection::deserialize(value.expose_plaintext(), reader) {
                Ok(c) => Ok(Entry { id, value: Value::Connection(c), meta }),
                Err(e) => Err(ItemError::new(ItemErrorKind::Unparseable, e.to_string())),
            })
        }
    }
}

/// Refuse a connection whose URI form Airflow would read back differently, beyond the description
/// (which `connection_description = false` already tells the planner about). Names fields only.
pub(crate) fn check_uri_losses(store: &dyn fmt::Display, id: &ItemId, c: &Connection) -> Result<(), StoreError> {
    let lost: Vec<&str> =
        connection::uri_losses(c).into_iter().map(|l| l.field).filter(|f| *f != "description").collect();
    if lost.is_empty() {
        return Ok(());
    }
    Err(StoreError::item(
        store,
        id,
        ItemError::new(
            ItemErrorKind::NotRepresentable,
            format!("the URI form would change {}; use a JSON or field store", lost.join(", ")),
        ),
    ))
}

/// Read a text file; `None` when it does not exist yet (we create it on the first write).
pub(crate) fn read_text(store: &dyn fmt::Display, path: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| StoreError::Schema {
            store: store.to_string(),
            message: format!("{} is not valid UTF-8", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(StoreError::PermissionDenied { store: store.to_string(), what: format!("read {}", path.display()) })
        }
        Err(e) => Err(StoreError::Backend { store: store.to_string(), op: "read", reason: e.kind().to_string() }),
    }
}

impl fmt::Display for EnvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Process => f.write_str("env:process"),
            Source::Vars(_) => f.write_str("env:snapshot"),
            Source::File(p) => write!(f, "env-file:{}", p.display()),
        }
    }
}

#[async_trait]
impl Store for EnvStore {
    fn capabilities(&self) -> Capabilities {
        let writable = self.path().is_some();
        let mut caps = Capabilities::full();
        caps.read_only = !writable;
        caps.can_delete = writable;
        caps.empty_variables = true;
        (caps.connection_format, caps.connection_description) = match self.format {
            EnvConnectionFormat::Json => (ConnectionFormat::Json, true),
            EnvConnectionFormat::Uri => (ConnectionFormat::Uri, false),
        };
        caps.can_tag = false;
        caps.conditional_writes = false;
        caps.read_batch = 10_000;
        caps.buffered_writes = writable;
        caps
    }

    fn read_as(&self, entry: &Entry, readers: &[Reader]) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
        let value = self.encode(entry)?;
        let name = env_var_name(&entry.id);
        Ok(readers
            .iter()
            .map(|r| {
                match decode_with(*r, entry.id.clone(), &name, &value) {
                    Some(Ok(e)) => Ok(e.value),
                    Some(Err(e)) => Err(e),
                    None => Err(ItemError::new(ItemErrorKind::NotRepresentable, "Airflow reads an empty value as absent")),
                }
            })
            .collect())
    }

    fn locate(&self, id: &ItemId) -> Placement {
        let name = env_var_name(id);
        if is_shell_name(&name) {
            Placement::At(name)
        } else {
            Placement::Invalid(format!(
                "{name} is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*), so it cannot be exported"
            ))
        }
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let values = self.load()?;
        let mut inv = Inventory::new();
        let mut unreachable = Vec::new();
        for (name, value) in &values {
            let id = match id_from_env_name(name) {
                Some(EnvName::Item(id)) if id.kind == kind => id,
                Some(EnvName::Unreachable(id)) if id.kind == kind => {
                    unreachable.push((id, name));
                    continue;
                }
                _ => continue,
            };
            match value {
                Err(e) => inv.insert_error(id, e.clone()),
                Ok(v) => match self.decode(id.clone(), name, v) {
                    None => {}
                    Some(Ok(entry)) => inv.insert(entry),
                    Some(Err(e)) => inv.insert_error(id, e),
                },
            }
        }
        for (id, name) in unreachable {
            if !inv.contains(&id) {
                let detail =
                    format!("{name} has lower-case letters; Airflow looks up the upper-cased id and never reads it");
                inv.insert_error(id, ItemError::new(ItemErrorKind::Unreachable, detail));
            }
        }
        Ok(inv)
    }

    /// Airflow's own lookup: the upper-cased name, exactly; the entry keeps the id as asked.
    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        let values = self.load()?;
        let mut inv = Inventory::new();
        for id in ids {
            let name = env_var_name(id);
            match values.get(&name) {
                None => {}
                Some(Err(e)) => inv.insert_error(id.clone(), e.clone()),
                Some(Ok(v)) => match self.decode(id.clone(), &name, v) {
                    None => {}
                    Some(Ok(entry)) => inv.insert(entry),
                    Some(Err(e)) => inv.insert_error(id.clone(), e),
                },
            }
        }
        Ok(inv)
    }

    async fn write(&self, entry: &Entry, _pre: &Precondition) -> Result<(), StoreError> {
        if self.path().is_none() {
            return Err(StoreError::ReadOnly { store: self.to_string() });
        }
        let name = match self.locate(&entry.id) {
            Placement::At(name) => name,
            Placement::Invalid(why) | Placement::Unreachable(why) => {
                return Err(self.item_err(&entry.id, ItemErrorKind::InvalidName, why));
            }
        };
        let value = self.encode(entry).map_err(|e| StoreError::item(self, &entry.id, e))?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Pending::Set { id, .. }) = pending.get(&name)
            && *id != entry.id
        {
            return Err(self.item_err(
                &entry.id,
                ItemErrorKind::Collision,
                format!("{id} was already written to {name} in this run (ids differing only in case share a variable)"),
            ));
        }
        pending.insert(name, Pending::Set { id: entry.id.clone(), value });
        Ok(())
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        if self.path().is_none() {
            return Err(StoreError::ReadOnly { store: self.to_string() });
        }
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(env_var_name(id), Pending::Remove);
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let Some(path) = self.path() else { return Ok(()) };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.is_empty() {
            return Ok(());
        }
        let text = read_text(self, path)?.unwrap_or_default();
        let mut changes: BTreeMap<String, Option<SecretValue>> = BTreeMap::new();
        for (name, p) in pending.iter() {
            let line = match p {
                Pending::Set { id, value } => Some(SecretValue::from(
                    quote_env_value(value.expose_plaintext(), self.compose_safe)
                        .map_err(|why| self.item_err(id, ItemErrorKind::NotRepresentable, why))?,
                )),
                Pending::Remove => None,
            };
            changes.insert(name.clone(), line);
        }
        let new_text = zeroize::Zeroizing::new(rewrite_dotenv(&text, &changes));
        drop(changes);
        // Self-check before the rename: dotenvy must read back every value we set, byte for byte.
        let back = dotenv_values(self, &new_text)?;
        for (name, p) in pending.iter() {
            if let Pending::Set { id, value } = p
                && !matches!(back.get(name), Some(Ok(v)) if v == value)
            {
                return Err(self.item_err(
                    id,
                    ItemErrorKind::NotRepresentable,
                    "the written line does not read back the same",
                ));
            }
        }
        atomic::remove_stale(path, true);
        atomic::write_atomically(self, path, &new_text, self.file_mode)?;
        pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_python_upper() {
        assert_eq!(env_var_name(&ItemId::variable("my_var")), "AIRFLOW_VAR_MY_VAR");
        assert_eq!(env_var_name(&ItemId::connection("café_ß")), "AIRFLOW_CONN_CAFÉ_SS");
        assert_eq!(env_var_name(&ItemId::connection("team/db")), "AIRFLOW_CONN_TEAM/DB");
        assert!(is_shell_name("AIRFLOW_VAR_A__B"));
        assert!(!is_shell_name("AIRFLOW_VAR_MY_CONN.V2"));
        assert!(!is_shell_name("AIRFLOW_CONN_CAFÉ"));
    }

    #[test]
    fn env_names_map_back_to_lower_case_ids() {
        assert_eq!(id_from_env_name("AIRFLOW_VAR_MY_KEY"), Some(EnvName::Item(ItemId::variable("my_key"))));
        assert_eq!(id_from_env_name("AIRFLOW_CONN_X"), Some(EnvName::Item(ItemId::connection("x"))));
        assert_eq!(id_from_env_name("AIRFLOW_VAR_foo"), Some(EnvName::Unreachable(ItemId::variable("foo"))));
        assert_eq!(id_from_env_name("PATH"), None);
    }

    #[test]
    fn collisions_group_ids_that_share_a_name() {
        let ids =
            [ItemId::variable("foo"), ItemId::variable("FOO"), ItemId::variable("bar"), ItemId::connection("foo")];
        assert_eq!(collisions(&ids), vec![vec![ItemId::variable("FOO"), ItemId::variable("foo")]]);
    }

    #[test]
    fn rewrite_keeps_other_lines_and_drops_duplicates() {
        let text = "# keep\nOTHER=1\nAIRFLOW_VAR_A='old\nvalue'\nAIRFLOW_VAR_A=dup\nexport  KEEP2=\"x\"";
        let mut ch = BTreeMap::new();
        ch.insert("AIRFLOW_VAR_A".to_string(), Some(SecretValue::from("'new'")));
        ch.insert("AIRFLOW_VAR_B".to_string(), Some(SecretValue::from("'b'")));
        ch.insert("AIRFLOW_VAR_GONE".to_string(), None);
        let out = rewrite_dotenv(text, &ch);
        assert_eq!(out, "# keep\nOTHER=1\nAIRFLOW_VAR_A='new'\nexport  KEEP2=\"x\"\nAIRFLOW_VAR_B='b'\n");
    }

    #[test]
    fn quoting_picks_single_then_double_quotes() {
        assert_eq!(quote_env_value("a $b", false).unwrap(), "'a $b'");
        assert_eq!(quote_env_value("it's $x \\", false).unwrap(), "\"it's \\$x \\\\\"");
        assert_eq!(quote_env_value("x\\", false).unwrap(), "\"x\\\\\"");
        assert!(quote_env_value("x\\", true).is_err());
        assert!(quote_env_value("it's \"q\"", true).is_err());
        assert!(quote_env_value("plain \"q\"", true).is_ok());
        assert!(quote_env_value("it's `cmd`", false).is_err());
        assert!(quote_env_value("nul\0", false).is_err());
    }
}
