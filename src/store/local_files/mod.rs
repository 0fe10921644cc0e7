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
//!   `2001-12-14` are not strings there, while `1e3` and `1.5e3` are. [`super::yaml11`] reads
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
use super::yaml11::{self, YNode, parse_yaml};
use super::{Capabilities, ConnectionFormat, Placement, Precondition, Store, StoreError};
use crate::airflow::connection::{self, Reader};
use crate::model::{
    Connection, Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, SecretValue, Value, Variable,
};

mod env_format;
mod json_file;
mod yaml_file;
pub use env_format::{is_py_line_break, parse_airflow_env};
use env_format::*;
use json_file::*;
pub use yaml_file::yaml11_type;
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

/// A file format, chosen by extension as Airflow does (`rsplit(".")[-1].lower()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Json,
    Yaml,
    Env,
}

impl FileFormat {
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        let (_, ext) = name.rsplit_once('.')?;
        match ext.to_ascii_lowercase().as_str() {
            "json" => Some(FileFormat::Json),
            "yaml" | "yml" => Some(FileFormat::Yaml),
            "env" => Some(FileFormat::Env),
            _ => None,
        }
    }
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
        match side.format {
            FileFormat::Env => Ok(parse_airflow_env(&text)
                .map_err(|e| self.schema(&side.path, e))?
                .into_iter()
                .map(|(k, v)| (RawKey::Str(k), Raw::Str(v)))
                .collect()),
            FileFormat::Json => Ok(parse_json(&text)
                .map_err(|e| self.schema(&side.path, e))?
                .into_iter()
                .map(|(k, v)| (RawKey::Str(k), Raw::from_json(v)))
                .collect()),
            FileFormat::Yaml => Ok(parse_yaml(&text)
                .map_err(|e| self.schema(&side.path, e))?
                .into_iter()
                .map(|(k, v)| (RawKey::from_yaml(&k), Raw::from_yaml(v)))
                .collect()),
        }
    }

    fn decode(&self, kind: Kind, side: &FileSide, key: String, raw: Raw) -> (ItemId, Result<Entry, ItemError>) {
        decode_as(self.reader, kind, side, key, raw)
    }
}

/// One file entry as `reader` builds it from the file's parsed value.
fn decode_as(reader: Reader, kind: Kind, side: &FileSide, key: String, raw: Raw) -> (ItemId, Result<Entry, ItemError>) {
    {
        let id = ItemId::new(kind, key);
        let meta = Meta { name: Some(id.id.clone()), ..Meta::default() };
        let unparseable = |d: String| Err(ItemError::new(ItemErrorKind::Unparseable, d));
        let result = match (kind, raw) {
            (Kind::Variable, Raw::Str(s)) => {
                Ok(Entry { id: id.clone(), value: Value::Variable(Variable::new(s)), meta })
            }
            (Kind::Variable, Raw::Json(v)) => unparseable(format!(
                "{} is not a string; Airflow returns it as-is, so it is not read as a variable value",
                json_type(&v)
            )),
            (Kind::Connection, Raw::Str(s)) => match connection::parse_uri(&s, reader) {
                Ok(c) => Ok(Entry { id: id.clone(), value: Value::Connection(c), meta }),
                Err(e) => unparseable(format!("not a connection URI Airflow can read: {e}")),
            },
            (Kind::Connection, Raw::Json(Json::Object(m))) if side.format != FileFormat::Env => {
                match connection_from_dict(&id.id, &m, reader) {
                    Ok(c) => Ok(Entry { id: id.clone(), value: Value::Connection(c), meta }),
                    Err(e) => unparseable(format!("{e} (Airflow then rejects the whole file)")),
                }
            }
            (Kind::Connection, Raw::Json(v)) => unparseable(format!(
                "{}; Airflow accepts only a string (URI) or an object, and rejects the whole file",
                json_type(&v)
            )),
            (_, Raw::Bad(what)) => unparseable(what),
        };
        (id, result)
    }
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
            return Ok(connection_from_dict_for(&entry.id.id, m, readers)
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

// ---- what a file holds ------------------------------------------------------------------------

enum RawKey {
    Str(String),
    /// A YAML key that is not a string under YAML 1.1: its text and type.
    Other(String, &'static str),
}

impl RawKey {
    fn from_yaml(node: &YNode) -> Self {
        match node {
            YNode::Str(s) => RawKey::Str(s.clone()),
            YNode::Plain(s) => RawKey::Other(s.clone(), yaml11_type(s).unwrap_or("a scalar")),
            YNode::Bool(b) => RawKey::Other(b.to_string(), "a bool"),
            YNode::Int(i) => RawKey::Other(i.to_string(), "an int"),
            YNode::Float(f) => RawKey::Other(f.to_string(), "a float"),
            YNode::Null => RawKey::Other("null".into(), "null"),
            YNode::Unsupported(what) => RawKey::Other("<tagged key>".into(), what),
            YNode::Seq(_) | YNode::Map(_) => RawKey::Other("<complex key>".into(), "a collection"),
        }
    }
}

enum Raw {
    Str(String),
    /// Any other JSON-representable value.
    Json(Json),
    /// Something JSON cannot represent (a YAML timestamp, `.inf`, ...): why.
    Bad(String),
}

impl Raw {
    fn from_json(v: Json) -> Self {
        match v {
            Json::String(s) => Raw::Str(s),
            other => Raw::Json(other),
        }
    }

    fn from_yaml(node: YNode) -> Self {
        match node {
            YNode::Str(s) => Raw::Str(s),
            other => match yaml_to_json(&other) {
                Ok(v) => Raw::Json(v),
                Err(why) => Raw::Bad(format!("{why}, not a string")),
            },
        }
    }
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// Airflow's `_create_connection` for a dict: `extra_dejson` (exclusive with `extra`) becomes
/// `extra`; a `conn_id` key must equal the file's key; a `uri` key alone is a URI; the rest is
/// `Connection(**dict)`, read by the codec's field reader (which refuses unknown keys).
/// [`connection_from_dict`] for several readers: the dict this tool writes is converted once.
fn connection_from_dict_for(key: &str, m: &Map<String, Json>, readers: &[Reader]) -> Vec<Result<Connection, String>> {
    if !["conn_id", "extra_dejson", "uri"].iter().any(|k| m.contains_key(*k)) {
        return connection::from_kwargs_for(m, readers)
            .into_iter()
            .map(|c| c.map_err(|e| format!("not a connection Airflow can build: {e}")))
            .collect();
    }
    readers.iter().map(|r| connection_from_dict(key, m, *r)).collect()
}

fn connection_from_dict(key: &str, m: &Map<String, Json>, reader: Reader) -> Result<Connection, String> {
    // What this tool writes has none of these keys: read it as it is, without a copy.
    if !["conn_id", "extra_dejson", "uri"].iter().any(|k| m.contains_key(*k)) {
        return connection::from_kwargs(m, reader).map_err(|e| format!("not a connection Airflow can build: {e}"));
    }
    let mut m = m.clone();
    if let Some(conn_id) = m.remove("conn_id")
        && conn_id.as_str() != Some(key)
    {
        return Err("its conn_id differs from its key".into());
    }
    if let Some(dejson) = m.remove("extra_dejson") {
        if m.contains_key("extra") {
            return Err("extra and extra_dejson are mutually exclusive".into());
        }
        m.insert("extra".into(), dejson);
    }
    if let Some(uri) = m.remove("uri") {
        if !m.is_empty() {
            return Err("uri cannot be combined with other fields".into());
        }
        let Json::String(uri) = uri else { return Err("uri is not a string".into()) };
        return connection::parse_uri(&uri, reader).map_err(|e| format!("not a connection URI Airflow can read: {e}"));
    }
    connection::from_kwargs(&m, reader).map_err(|e| format!("not a connection Airflow can build: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(FileFormat::from_path(Path::new("/a/b.JSON")), Some(FileFormat::Json));
        assert_eq!(FileFormat::from_path(Path::new("v.yml")), Some(FileFormat::Yaml));
        assert_eq!(FileFormat::from_path(Path::new("v.env")), Some(FileFormat::Env));
        assert_eq!(FileFormat::from_path(Path::new("v.toml")), None);
        assert_eq!(FileFormat::from_path(Path::new("env")), None);
    }

    #[test]
    fn airflow_env_follows_python_splitlines() {
        let err = parse_airflow_env("d=\u{85}e=5").unwrap_err();
        assert!(err.contains("line 1") && err.contains("empty value"), "{err}");
        let ok = parse_airflow_env("a=1\r\nb= spaced \x0bc=x=y\n# comment\n \t# x\n\u{2028}e=5").unwrap();
        assert_eq!(
            ok,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".into(), " spaced ".into()),
                ("c".into(), "x=y".into()),
                ("e".into(), "5".into())
            ]
        );
        assert!(parse_airflow_env("novalue\n").unwrap_err().contains("no '='"));
        assert!(parse_airflow_env("k=1\nk=2\n").unwrap_err().contains("more than once"));
    }

    #[test]
    fn yaml11_resolver_matches_pyyaml_rules() {
        for s in ["yes", "No", "ON", "off", "~", "null", "", "0123", "0b101", "0x1F", "1_000", "190:20:30", "-12"] {
            assert!(yaml11_type(s).is_some(), "{s:?} should not be a string");
        }
        for s in [
            "1.5",
            "1.",
            "-1.5e+3",
            ".5",
            "190:20:30.15",
            ".inf",
            "-.Inf",
            ".NaN",
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10 -5",
            "<<",
            "=",
        ] {
            assert!(yaml11_type(s).is_some(), "{s:?} should not be a string");
        }
        for s in [
            "1e3", "1E3", "0o17", "y", "n", "089", "1.5e3", "abc", ".", "._1", "+.5", "+.nan", "2001-1-1", "12:70",
            "0x", "True1",
        ] {
            assert_eq!(yaml11_type(s), None, "{s:?} should be a string");
        }
        assert_eq!(yaml11_int_value("0123"), Some(83));
        assert_eq!(yaml11_int_value("190:20:30"), Some(685230));
        assert_eq!(yaml11_int_value("-0x1_F"), Some(-31));
    }

    #[test]
    fn yaml_reading_tells_quoted_from_plain() {
        let text = "a: yes\nb: \"yes\"\nc: 'on'\nd: 0123\ne: 1e3\nf: ~\ng: |\n  yes\nh: {port: 0123, x: \"5\"}\n";
        let m = parse_yaml(text).unwrap();
        let get = |k: &str| m.iter().find(|(key, _)| *key == YNode::Str(k.into())).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("a"), YNode::Plain("yes".into()));
        assert_eq!(get("b"), YNode::Str("yes".into()));
        assert_eq!(get("c"), YNode::Str("on".into()));
        assert_eq!(get("d"), YNode::Plain("0123".into()));
        assert_eq!(get("e"), YNode::Str("1e3".into()), "YAML 1.1 (PyYAML) reads 1e3 as a string");
        assert_eq!(get("f"), YNode::Plain("~".into()));
        assert_eq!(get("g"), YNode::Str("yes\n".into()));
        assert_eq!(yaml_to_json(&get("h")).unwrap(), serde_json::json!({"port": 83, "x": "5"}));
    }

    #[test]
    fn floats_are_written_the_way_yaml11_reads_floats() {
        assert_eq!(yaml11_float_text(1e300), "1.0e+300");
        assert_eq!(yaml11_float_text(1.5e-7), "1.5e-7");
        assert_eq!(yaml11_float_text(100.0), "100.0");
        for f in [1e300, 1.5e-7, 100.0, 0.1] {
            assert_eq!(yaml11_type(&yaml11_float_text(f)), Some("a float"));
        }
    }
}
