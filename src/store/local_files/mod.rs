//! Airflow's `LocalFilesystemBackend` (`airflow.secrets.local_filesystem`) as a store: one file of
//! variables and one of connections, each `.json`, `.yaml`/`.yml` or `.env` (spec §5.6).
//!
//! Config uses Airflow's kwarg names, `variables_file_path` and `connections_file_path`; an absent
//! path disables that kind, as in Airflow. The parser is picked by extension; anything else is a
//! configuration error. A missing file reads as empty (Airflow raises; we create it on first write).
//!
//! Reading mirrors Airflow, and is strict where Airflow is:
//! - `.env`: Python `splitlines()` (so `\r \v \f \x1c-\x1e \x85 \u2028 \u2029` end a line), blank
//!   lines and `\s*#` comments skipped, split at the first `=`, no trimming, quotes or `export`. A line
//!   without `=`, an empty value or a key seen twice makes Airflow reject the whole file, so it is a
//!   file-level error here too (naming the line, never its text). Connection values are always URIs.
//! - `.json` / `.yaml`: a top-level mapping. Variables must be strings (Airflow returns other types
//!   as-is; we report them `Unparseable` rather than guess a stringification). A connection is a
//!   string (always a URI, JSON is not detected) or a field dict (`Connection(**dict)`, with
//!   `extra_dejson` and a matching `conn_id` allowed).
//! - YAML is read the way PyYAML's `safe_load` (YAML 1.1) types plain scalars: `yes`, `on`, `0123`,
//!   `2001-12-14` are not strings there, while `1e3` and `1.5e3` are. [`crate::airflow::python::yaml11`] reads
//!   libyaml's events (keeping each plain scalar's text) and resolves them with PyYAML's resolver
//!   rules ([`yaml11_type`]).
//!
//! Writing is buffered and lands atomically on [`Store::flush`] ([`super::atomic`]: temp file +
//! rename, the existing file's mode and owner kept, new files 0600 or `file_mode`, symlinks
//! refused); with both files configured, both are staged before either is renamed.
//! JSON: one object, sorted keys, connections as field dicts (`to_fields`). YAML: edited in place
//! (entries the run does not touch, comments and blank lines stay byte-identical; a flow-style file
//! is written anew with its plain scalars' text kept), what we write by hand with every string
//! double-quoted with escapes valid in YAML 1.1, so no value is ever retyped. `.env`:
//! `id=<value>` lines, connections as our URI; refused per item, before anything is written: empty
//! variables, values with a Python line-break character, ids with `=`, a line break, or a leading
//! `#`. Entries we do not touch are kept (reformatted for JSON, byte for byte for YAML and `.env`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::atomic::{self, FileMode, Staged};
use super::env::{check_uri_losses, read_text};
use super::{Capabilities, ConnectionFormat, Placement, Precondition, Store, StoreError};
use crate::airflow::connection::{self, Reader};
use crate::airflow::python::yaml11::{self, YNode, emit_map, json_to_yaml, parse_yaml, wipe_ynode, yaml_to_json};
use crate::model::{
    Connection, Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, SecretValue, Value,
};

mod env_format;
mod json_file;
mod yaml_file;
pub use crate::airflow::local_filesystem::FileFormat;
use crate::airflow::local_filesystem::{self, Raw, RawKey, parse_file, py_isspace};
use crate::airflow::is_py_line_break;
use env_format::*;
use json_file::*;
use yaml_file::*;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalFilesConfig {
    #[serde(default)]
    pub variables_file_path: Option<PathBuf>,
    #[serde(default)]
    pub connections_file_path: Option<PathBuf>,
    /// The mode of a file the tool creates (`"0640"`); default 0600. An existing file keeps its own.
    #[serde(default)]
    pub file_mode: Option<FileMode>,
}

struct FileSide {
    path: PathBuf,
    format: FileFormat,
}

/// The bytes of a connection's fields before encoding.
fn raw_len(c: &Connection) -> usize {
    let s = |v: &Option<String>| v.as_ref().map_or(0, String::len);
    let x = |v: &Option<SecretValue>| v.as_ref().map_or(0, |v| v.len());
    s(&c.conn_type) + s(&c.description) + s(&c.host) + s(&c.login) + s(&c.schema) + x(&c.password) + x(&c.extra)
}

/// The largest value written to a local file (64 MiB), refused by the plan beyond it.
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// The LocalFilesystemBackend; see the module docs.
pub struct LocalFilesStore {
    variables: Option<FileSide>,
    connections: Option<FileSide>,
    file_mode: Option<FileMode>,
    reader: Reader,
    /// Buffered changes: `None` deletes.
    pending: Mutex<BTreeMap<ItemId, Option<Entry>>>,
}

impl LocalFilesStore {
    pub fn new(cfg: &LocalFilesConfig) -> Result<Self, StoreError> {
        let display = describe(cfg.variables_file_path.as_deref(), cfg.connections_file_path.as_deref());
        let side = |p: &Option<PathBuf>, kwarg: &str| -> Result<Option<FileSide>, StoreError> {
            let Some(path) = p else { return Ok(None) };
            let format = FileFormat::from_path(path).ok_or_else(|| StoreError::Config {
                store: display.clone(),
                message: format!(
                    "{kwarg} {}: unsupported extension (Airflow reads .env, .json, .yaml, .yml)",
                    path.display()
                ),
            })?;
            Ok(Some(FileSide { path: path.clone(), format }))
        };
        let variables = side(&cfg.variables_file_path, "variables_file_path")?;
        let connections = side(&cfg.connections_file_path, "connections_file_path")?;
        if let (Some(v), Some(c)) = (&variables, &connections)
            && v.path == c.path
        {
            return Err(StoreError::Config {
                store: display,
                message: "variables_file_path and connections_file_path are the same file".into(),
            });
        }
        for side in variables.iter().chain(&connections) {
            // Plaintext an interrupted write (kill -9) left beside the file.
            atomic::remove_stale(&side.path, false);
        }
        Ok(Self {
            variables,
            connections,
            file_mode: cfg.file_mode,
            reader: Reader::default(),
            pending: Mutex::new(BTreeMap::new()),
        })
    }

    /// Which Airflow reader's connection semantics to reproduce (default: Airflow 3 ORM); `verify`
    /// reads with each.
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    fn side(&self, kind: Kind) -> Option<&FileSide> {
        match kind {
            Kind::Variable => self.variables.as_ref(),
            Kind::Connection => self.connections.as_ref(),
        }
    }

    fn item_err(&self, id: &ItemId, kind: ItemErrorKind, detail: impl Into<String>) -> StoreError {
        StoreError::item(self, id, ItemError::new(kind, detail))
    }

    fn schema(&self, path: &Path, message: impl fmt::Display) -> StoreError {
        StoreError::Schema { store: self.to_string(), message: format!("{}: {message}", path.display()) }
    }

    /// The file's top-level entries, as Airflow parses them.
    fn load(&self, side: &FileSide) -> Result<Vec<(RawKey, Raw)>, StoreError> {
        let Some(text) = read_text(self, &side.path)? else { return Ok(Vec::new()) };
        parse_file(side.format, &text).map_err(|e| self.schema(&side.path, e))
    }

    fn decode(&self, kind: Kind, side: &FileSide, key: String, raw: Raw) -> (ItemId, Result<Entry, ItemError>) {
        decode_as(self.reader, kind, side, key, raw)
    }
}

/// One file entry as `reader` builds it from the file's parsed value.
fn decode_as(reader: Reader, kind: Kind, side: &FileSide, key: String, raw: Raw) -> (ItemId, Result<Entry, ItemError>) {
    let id = ItemId::new(kind, key);
    let meta = Meta { name: Some(id.id.clone()), ..Meta::default() };
    let result = local_filesystem::decode(reader, kind, side.format, &id.id, raw)
        .map(|value| Entry { id: id.clone(), value, meta })
        .map_err(|d| ItemError::new(ItemErrorKind::Unparseable, d));
    (id, result)
}

impl LocalFilesStore {
    /// What the file will hold for `entry` (JSON/YAML), or the `.env` value; refusals by item.
    fn render(&self, side: &FileSide, entry: &Entry) -> Result<Rendered, StoreError> {
        let id = &entry.id;
        let size = match &entry.value {
            Value::Variable(v) => v.value.len(),
            // Encoding grows a field at most 6× (`\uXXXX`): encode only when that could pass the cap.
            Value::Connection(c) if raw_len(c).saturating_mul(6) + 256 < MAX_VALUE_BYTES => 0,
            Value::Connection(c) => connection::to_json(c).len(),
        };
        if size > MAX_VALUE_BYTES {
            return Err(self.item_err(id, ItemErrorKind::TooLarge, format!("{size} bytes; the local-files limit is {MAX_VALUE_BYTES}")));
        }
        match (side.format, &entry.value) {
            (FileFormat::Env, Value::Variable(v)) => {
                if v.value.is_empty() {
                    return Err(self.item_err(
                        id,
                        ItemErrorKind::NotRepresentable,
                        "an empty value is a syntax error in Airflow's .env format",
                    ));
                }
                self.check_env_value(id, v.value.expose_plaintext())?;
                Ok(Rendered::Line(v.value.clone()))
            }
            (FileFormat::Env, Value::Connection(c)) => {
                check_uri_losses(self, id, c)?;
                let uri = connection::to_uri(c);
                if uri.is_empty() {
                    return Err(self.item_err(id, ItemErrorKind::NotRepresentable, "the connection has no URI form"));
                }
                self.check_env_value(id, uri.expose_plaintext())?;
                Ok(Rendered::Line(uri))
            }
            (_, Value::Variable(v)) => Ok(Rendered::Tree(Json::String(v.value.expose_plaintext().to_string()))),
            (_, Value::Connection(c)) => Ok(Rendered::Tree(Json::Object(connection::to_fields(c)))),
        }
    }

    fn check_env_value(&self, id: &ItemId, value: &str) -> Result<(), StoreError> {
        if value.contains(is_py_line_break) {
            return Err(self.item_err(
                id,
                ItemErrorKind::NotRepresentable,
                "the value has a line-break character (Python splitlines), which Airflow's .env format cannot hold",
            ));
        }
        Ok(())
    }

    /// Render `changes` into a temp file beside the side's file, ready to be renamed over it.
    fn stage_side(
        &self,
        kind: Kind,
        side: &FileSide,
        changes: &BTreeMap<String, Option<Entry>>,
    ) -> Result<Staged, StoreError> {
        let text = read_text(self, &side.path)?.unwrap_or_default();
        let mut rendered: BTreeMap<String, Option<Rendered>> = BTreeMap::new();
        for (key, change) in changes {
            let r = match change {
                Some(entry) => Some(self.render(side, entry)?),
                None => None,
            };
            rendered.insert(key.clone(), r);
        }
        let new_text = zeroize::Zeroizing::new(match side.format {
            FileFormat::Env => rewrite_airflow_env(&text, &rendered).map_err(|e| self.schema(&side.path, e))?,
            FileFormat::Json => rewrite_json(&text, &rendered).map_err(|e| self.schema(&side.path, e))?,
            FileFormat::Yaml => rewrite_yaml(&text, &rendered).map_err(|e| self.schema(&side.path, e))?,
        });
        drop(rendered);
        tracing::debug!(store = %self, kind = %kind, changes = changes.len(), "rewriting file");
        atomic::remove_stale(&side.path, true);
        atomic::stage(self, &side.path, &new_text, self.file_mode)
    }

    /// Both files or neither: every side is rendered and staged before the first rename, and a
    /// failed rename puts back what was already replaced.
    fn flush_pending(&self, pending: &mut BTreeMap<ItemId, Option<Entry>>) -> Result<(), StoreError> {
        let mut staged = Vec::new();
        for kind in Kind::ALL {
            let changes: BTreeMap<String, Option<Entry>> =
                pending.iter().filter(|(id, _)| id.kind == kind).map(|(id, e)| (id.id.clone(), e.clone())).collect();
            if let (false, Some(side)) = (changes.is_empty(), self.side(kind)) {
                staged.push(self.stage_side(kind, side, &changes)?);
            }
        }
        if !staged.is_empty() {
            atomic::commit(self, staged)?;
        }
        pending.clear();
        Ok(())
    }
}

/// A rendered value waiting to be written.
enum Rendered {
    /// A JSON/YAML value (a string, or a connection's field dict).
    Tree(Json),
    /// A `.env` value.
    Line(SecretValue),
}

impl Drop for Rendered {
    fn drop(&mut self) {
        // Best effort: the tree holds plaintext; overwrite its strings before freeing them.
        fn wipe(v: &mut Json) {
            match v {
                Json::String(s) => zeroize::Zeroize::zeroize(s),
                Json::Array(a) => a.iter_mut().for_each(wipe),
                Json::Object(m) => m.values_mut().for_each(wipe),
                _ => {}
            }
        }
        if let Rendered::Tree(v) = self {
            wipe(v);
        }
    }
}

fn describe(vars: Option<&Path>, conns: Option<&Path>) -> String {
    let show = |p: Option<&Path>| p.map_or_else(|| "-".to_string(), |p| p.display().to_string());
    format!("local-files(variables={}, connections={})", show(vars), show(conns))
}

impl fmt::Display for LocalFilesStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(
            self.variables.as_ref().map(|s| s.path.as_path()),
            self.connections.as_ref().map(|s| s.path.as_path()),
        ))
    }
}

#[async_trait]
impl Store for LocalFilesStore {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::full();
        caps.variables = self.variables.is_some();
        caps.connections = self.connections.is_some();
        caps.empty_variables = self.variables.as_ref().is_none_or(|s| s.format != FileFormat::Env);
        caps.variable_line_breaks = caps.empty_variables;
        let conn_env = self.connections.as_ref().is_some_and(|s| s.format == FileFormat::Env);
        caps.connection_format = if conn_env { ConnectionFormat::Uri } else { ConnectionFormat::Fields };
        caps.connection_description = !conn_env;
        caps.can_tag = false;
        caps.can_delete = true;
        caps.conditional_writes = false;
        caps.read_batch = 10_000;
        // Airflow parses the whole file on every lookup: one value this large is already a file
        // no deployment should load. The same cap as the metastore's.
        caps.max_value_bytes = Some(MAX_VALUE_BYTES);
        caps.buffered_writes = true;
        caps
    }

    fn read_as(&self, entry: &Entry, readers: &[Reader]) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
        let Some(side) = self.side(entry.id.kind) else {
            return Err(ItemError::new(ItemErrorKind::NotRepresentable, "no file is configured for this kind"));
        };
        let rendered = self.render(side, entry).map_err(|e| match e {
            StoreError::Item { error, .. } => error,
            other => ItemError::new(ItemErrorKind::NotRepresentable, other.to_string()),
        })?;
        if let (Kind::Connection, Rendered::Tree(Json::Object(m))) = (entry.id.kind, &rendered)
            && side.format != FileFormat::Env
        {
            return Ok(local_filesystem::connection_from_dict_for(&entry.id.id, m, readers)
                .into_iter()
                .map(|c| {
                    c.map(Value::Connection)
                        .map_err(|e| ItemError::new(ItemErrorKind::Unparseable, format!("{e} (Airflow then rejects the whole file)")))
                })
                .collect());
        }
        Ok(readers
            .iter()
            .map(|r| {
                let raw = match &rendered {
                    Rendered::Tree(v) => Raw::from_json(v.clone()),
                    Rendered::Line(l) => Raw::Str(l.expose_plaintext().to_string()),
                };
                decode_as(*r, entry.id.kind, side, entry.id.id.clone(), raw).1.map(|e| e.value)
            })
            .collect())
    }

    fn locate(&self, id: &ItemId) -> Placement {
        let Some(side) = self.side(id.kind) else {
            return Placement::Unreachable(format!(
                "no {}_file_path is configured, so Airflow never looks {} up here",
                id.kind,
                id.kind.plural()
            ));
        };
        if side.format == FileFormat::Env {
            if id.id.contains('=') {
                return Placement::Invalid("an id with '=' cannot be a key in Airflow's .env format".into());
            }
            if id.id.contains(is_py_line_break) {
                return Placement::Invalid("an id with a line-break character cannot be a .env key".into());
            }
            if id.id.trim_start_matches(py_isspace).starts_with('#') {
                return Placement::Invalid(
                    "an id starting with '#' reads as a comment in Airflow's .env format".into(),
                );
            }
        }
        Placement::At(id.id.clone())
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let mut inv = Inventory::new();
        let Some(side) = self.side(kind) else { return Ok(inv) };
        for (key, raw) in self.load(side)? {
            match key {
                RawKey::Str(key) => match self.decode(kind, side, key, raw) {
                    (_, Ok(entry)) => inv.insert(entry),
                    (id, Err(e)) => inv.insert_error(id, e),
                },
                RawKey::Other(shown, what) => inv.insert_error(
                    ItemId::new(kind, shown),
                    ItemError::new(
                        ItemErrorKind::Unreachable,
                        format!("the key is {what} under YAML 1.1, not a string: Airflow cannot look it up"),
                    ),
                ),
            }
        }
        Ok(inv)
    }

    async fn write(&self, entry: &Entry, _pre: &Precondition) -> Result<(), StoreError> {
        let side = match (self.locate(&entry.id), self.side(entry.id.kind)) {
            (Placement::At(_), Some(side)) => side,
            (Placement::Unreachable(why), _) => return Err(self.item_err(&entry.id, ItemErrorKind::Unreachable, why)),
            (Placement::Invalid(why), _) => return Err(self.item_err(&entry.id, ItemErrorKind::InvalidName, why)),
            (Placement::At(_), None) => unreachable!("locate returns Unreachable for a disabled kind"),
        };
        // Validate now, so a refusal names the item before anything is written.
        drop(self.render(side, entry)?);
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(entry.id.clone(), Some(entry.clone()));
        Ok(())
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        if self.side(id.kind).is_some() {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), None);
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.flush_pending(&mut pending)
    }
}
