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
                match connection_from_dict(&id.id, m, reader) {
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
fn connection_from_dict(key: &str, mut m: Map<String, Json>, reader: Reader) -> Result<Connection, String> {
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

// ---- .env: Airflow's own format ---------------------------------------------------------------

pub use crate::airflow::is_py_line_break;

/// Python's `str.isspace()` (what `\s` matches in a `str` regex).
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python `splitlines(keepends=True)`, as `(line, line_end)` pairs; `\r\n` is one break.
fn py_lines(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if is_py_line_break(c) {
            let mut end = i + c.len_utf8();
            if c == '\r'
                && let Some(&(_, '\n')) = iter.peek()
            {
                iter.next();
                end += 1;
            }
            out.push((&text[start..i], &text[i..end]));
            start = end;
        }
    }
    if start < text.len() {
        out.push((&text[start..], ""));
    }
    out
}

/// What one `.env` line is to Airflow.
enum EnvLine<'a> {
    Skip,
    Pair(&'a str, &'a str),
}

fn classify_env_line(line: &str, line_no: usize) -> Result<EnvLine<'_>, String> {
    if line.is_empty() || line.trim_start_matches(py_isspace).starts_with('#') {
        return Ok(EnvLine::Skip);
    }
    let Some((key, value)) = line.split_once('=') else {
        return Err(format!("line {line_no}: no '=' (Airflow rejects the whole file)"));
    };
    if value.is_empty() {
        return Err(format!("line {line_no}: an empty value (Airflow rejects the whole file)"));
    }
    Ok(EnvLine::Pair(key, value))
}

/// Airflow's `_parse_env_file`, plus its later checks: any syntax error or a key given twice makes
/// Airflow reject the file, so the whole file is an error. The message never quotes a value.
pub fn parse_airflow_env(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (n, (line, _)) in py_lines(text).into_iter().enumerate() {
        if let EnvLine::Pair(key, value) = classify_env_line(line, n + 1)? {
            if !seen.insert(key) {
                return Err(format!(
                    "line {}: key '{}' appears more than once (Airflow rejects the whole file)",
                    n + 1,
                    key.escape_debug()
                ));
            }
            out.push((key.to_string(), value.to_string()));
        }
    }
    Ok(out)
}

fn rewrite_airflow_env(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    parse_airflow_env(text)?;
    let mut out = String::new();
    let mut done = HashSet::new();
    let push = |out: &mut String, key: &str, r: &Rendered| {
        if let Rendered::Line(v) = r {
            out.push_str(key);
            out.push('=');
            out.push_str(v.expose_plaintext());
            out.push('\n');
        }
    };
    for (n, (line, end)) in py_lines(text).into_iter().enumerate() {
        match classify_env_line(line, n + 1)? {
            EnvLine::Pair(key, _) if changes.contains_key(key) => {
                done.insert(key.to_string());
                if let Some(Some(r)) = changes.get(key) {
                    push(&mut out, key, r);
                }
            }
            _ => {
                out.push_str(line);
                out.push_str(if end.is_empty() { "\n" } else { end });
            }
        }
    }
    for (key, r) in changes {
        if !done.contains(key)
            && let Some(r) = r
        {
            push(&mut out, key, r);
        }
    }
    Ok(out)
}

// ---- JSON --------------------------------------------------------------------------------------

fn parse_json(text: &str) -> Result<Map<String, Json>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(other) => Err(format!("the file holds {}, not an object", json_type(&other))),
        Err(e) => Err(format!("not valid JSON (line {}, column {})", e.line(), e.column())),
    }
}

fn rewrite_json(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    let mut all: BTreeMap<String, Json> = parse_json(text)?.into_iter().collect();
    for (key, r) in changes {
        match r {
            Some(Rendered::Tree(v)) => {
                all.insert(key.clone(), v.clone());
            }
            _ => {
                all.remove(key);
            }
        }
    }
    let map: Map<String, Json> = all.into_iter().collect();
    let mut out = serde_json::to_string_pretty(&Json::Object(map)).map_err(|e| e.to_string())?;
    out.push('\n');
    Ok(out)
}

// ---- YAML, as PyYAML's safe_load (YAML 1.1) reads it --------------------------------------------

/// The type PyYAML's implicit resolvers give a plain scalar, or `None` for a string.
/// (PyYAML 6 `Resolver`: bool, float, int, merge, null, timestamp, value.)
pub fn yaml11_type(s: &str) -> Option<&'static str> {
    if matches!(
        s,
        "yes"
            | "Yes"
            | "YES"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) {
        return Some("a bool");
    }
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Some("null");
    }
    if is_yaml11_int(s) {
        return Some("an int");
    }
    if is_yaml11_float(s) {
        return Some("a float");
    }
    if is_yaml11_timestamp(s) {
        return Some("a timestamp");
    }
    match s {
        "<<" => Some("a merge key"),
        "=" => Some("a value key"),
        _ => None,
    }
}

/// A tiny cursor for the resolver patterns (no regex crate in the tree).
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn new(s: &str) -> Cur<'_> {
        Cur { b: s.as_bytes(), i: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, pred: impl Fn(u8) -> bool) -> bool {
        match self.peek() {
            Some(c) if pred(c) => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }
    fn eat_all(&mut self, pred: impl Fn(u8) -> bool) -> usize {
        let start = self.i;
        while self.eat(&pred) {}
        self.i - start
    }
    fn eat_str(&mut self, s: &str) -> bool {
        if self.b[self.i..].starts_with(s.as_bytes()) {
            self.i += s.len();
            true
        } else {
            false
        }
    }
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
    fn sign(&mut self) {
        self.eat(|c| c == b'-' || c == b'+');
    }
    /// `(:[0-5]?[0-9])+`
    fn sexagesimal(&mut self) -> bool {
        let mut n = 0;
        while self.eat(|c| c == b':') {
            let two = matches!((self.b.get(self.i), self.b.get(self.i + 1)), (Some(b'0'..=b'5'), Some(b'0'..=b'9')));
            if two {
                self.i += 2;
            } else if !self.eat(|c| c.is_ascii_digit()) {
                return false;
            }
            n += 1;
        }
        n > 0
    }
}

fn digit_or_underscore(c: u8) -> bool {
    c.is_ascii_digit() || c == b'_'
}

fn is_yaml11_int(s: &str) -> bool {
    let try_form = |f: &dyn Fn(&mut Cur<'_>) -> bool| {
        let mut c = Cur::new(s);
        c.sign();
        f(&mut c) && c.done()
    };
    try_form(&|c| c.eat_str("0b") && c.eat_all(|x| matches!(x, b'0' | b'1' | b'_')) > 0)
        || try_form(&|c| c.eat_str("0x") && c.eat_all(|x| x.is_ascii_hexdigit() || x == b'_') > 0)
        || try_form(&|c| c.eat(|x| x == b'0') && c.eat_all(|x| matches!(x, b'0'..=b'7' | b'_')) > 0)
        || try_form(&|c| c.eat(|x| x == b'0'))
        || try_form(&|c| c.eat(|x| matches!(x, b'1'..=b'9')) && c.eat_all(digit_or_underscore) < usize::MAX)
        || try_form(&|c| {
            c.eat(|x| matches!(x, b'1'..=b'9')) && c.eat_all(digit_or_underscore) < usize::MAX && c.sexagesimal()
        })
}

fn is_yaml11_float(s: &str) -> bool {
    let exponent = |c: &mut Cur<'_>| {
        // `(?:[eE][-+][0-9]+)?`
        let save = c.i;
        if c.eat(|x| x == b'e' || x == b'E')
            && c.eat(|x| x == b'-' || x == b'+')
            && c.eat_all(|x| x.is_ascii_digit()) > 0
        {
            return;
        }
        c.i = save;
    };
    let try_form = |signed: bool, f: &dyn Fn(&mut Cur<'_>) -> bool| {
        let mut c = Cur::new(s);
        if signed {
            c.sign();
        }
        f(&mut c) && c.done()
    };
    try_form(true, &|c| {
        c.eat(|x| x.is_ascii_digit())
            && {
                c.eat_all(digit_or_underscore);
                c.eat(|x| x == b'.')
            }
            && {
                c.eat_all(digit_or_underscore);
                exponent(c);
                true
            }
    }) || try_form(false, &|c| {
        // `\.[0-9][0-9_]*` (PyYAML >= 5.1: `._1` is a string)
        c.eat(|x| x == b'.') && c.eat(|x| x.is_ascii_digit()) && {
            c.eat_all(digit_or_underscore);
            exponent(c);
            true
        }
    }) || try_form(true, &|c| {
        c.eat(|x| x.is_ascii_digit())
            && {
                c.eat_all(digit_or_underscore);
                c.sexagesimal()
            }
            && c.eat(|x| x == b'.')
            && {
                c.eat_all(digit_or_underscore);
                true
            }
    }) || try_form(true, &|c| c.eat_str(".inf") || c.eat_str(".Inf") || c.eat_str(".INF"))
        || try_form(false, &|c| c.eat_str(".nan") || c.eat_str(".NaN") || c.eat_str(".NAN"))
}

fn is_yaml11_timestamp(s: &str) -> bool {
    let digits = |c: &mut Cur<'_>, min: usize, max: usize| {
        let start = c.i;
        while c.i - start < max && c.eat(|x| x.is_ascii_digit()) {}
        c.i - start >= min
    };
    let mut c = Cur::new(s);
    if !(digits(&mut c, 4, 4) && c.eat(|x| x == b'-')) {
        return false;
    }
    let date_start = c.i;
    if digits(&mut c, 2, 2) && c.eat(|x| x == b'-') && digits(&mut c, 2, 2) && c.done() {
        return true;
    }
    c.i = date_start;
    if !(digits(&mut c, 1, 2) && c.eat(|x| x == b'-') && digits(&mut c, 1, 2)) {
        return false;
    }
    if !(c.eat(|x| x == b'T' || x == b't') || c.eat_all(|x| x == b' ' || x == b'\t') > 0) {
        return false;
    }
    if !(digits(&mut c, 1, 2)
        && c.eat(|x| x == b':')
        && digits(&mut c, 2, 2)
        && c.eat(|x| x == b':')
        && digits(&mut c, 2, 2))
    {
        return false;
    }
    if c.eat(|x| x == b'.') {
        c.eat_all(|x| x.is_ascii_digit());
    }
    if c.done() {
        return true;
    }
    c.eat_all(|x| x == b' ' || x == b'\t');
    if c.eat(|x| x == b'Z') {
        return c.done();
    }
    c.eat(|x| x == b'-' || x == b'+')
        && digits(&mut c, 1, 2)
        && (c.done() || (c.eat(|x| x == b':') && digits(&mut c, 2, 2) && c.done()))
}

/// The JSON value PyYAML's typing gives `node`, or why there is none.
fn yaml_to_json(node: &YNode) -> Result<Json, String> {
    Ok(match node {
        YNode::Str(s) => Json::String(s.clone()),
        YNode::Bool(b) => Json::Bool(*b),
        YNode::Null => Json::Null,
        YNode::Int(i) => int_json(*i)?,
        YNode::Float(f) => float_json(*f)?,
        YNode::Unsupported(what) => return Err(what.to_string()),
        YNode::Plain(s) => match yaml11_type(s) {
            Some("a bool") => {
                Json::Bool(matches!(s.as_str(), "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON"))
            }
            Some("null") => Json::Null,
            Some("an int") => int_json(yaml11_int_value(s).ok_or("an int out of range")?)?,
            Some("a float") => float_json(yaml11_float_value(s).ok_or("a float")?)?,
            Some(other) => return Err(other.to_string()),
            None => Json::String(s.clone()),
        },
        YNode::Seq(items) => Json::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        YNode::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let YNode::Str(k) = k else { return Err("a mapping with a non-string key".into()) };
                m.insert(k.clone(), yaml_to_json(v)?);
            }
            Json::Object(m)
        }
    })
}

fn int_json(i: i128) -> Result<Json, String> {
    if let Ok(v) = i64::try_from(i) {
        Ok(v.into())
    } else if let Ok(v) = u64::try_from(i) {
        Ok(v.into())
    } else {
        Err("an int out of range".into())
    }
}

fn float_json(f: f64) -> Result<Json, String> {
    serde_json::Number::from_f64(f).map(Json::Number).ok_or_else(|| "a float JSON cannot hold (inf or nan)".into())
}

fn yaml11_int_value(s: &str) -> Option<i128> {
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let v = if let Some(b) = body.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(h) = body.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if body.contains(':') {
        body.split(':').try_fold(0i128, |acc, part| Some(acc * 60 + part.parse::<i128>().ok()?))?
    } else if body.len() > 1 && body.starts_with('0') {
        i128::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

fn yaml11_float_value(s: &str) -> Option<f64> {
    let clean: String = s.chars().filter(|&c| c != '_').collect::<String>().to_lowercase();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let v = if body == ".inf" {
        f64::INFINITY
    } else if body == ".nan" {
        f64::NAN
    } else if body.contains(':') {
        body.split(':').try_fold(0f64, |acc, part| Some(acc * 60.0 + part.parse::<f64>().ok()?))?
    } else {
        body.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

fn json_to_yaml(v: &Json) -> YNode {
    match v {
        Json::String(s) => YNode::Str(s.clone()),
        Json::Bool(b) => YNode::Bool(*b),
        Json::Null => YNode::Null,
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                YNode::Int(i.into())
            } else if let Some(u) = n.as_u64() {
                YNode::Int(u.into())
            } else {
                YNode::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::Array(a) => YNode::Seq(a.iter().map(json_to_yaml).collect()),
        Json::Object(m) => YNode::Map(m.iter().map(|(k, v)| (YNode::Str(k.clone()), json_to_yaml(v))).collect()),
    }
}

/// Apply `changes` to a YAML file. A block-style file is edited in place: each changed entry's
/// lines are replaced, a deleted one's removed, new ones appended, and every other byte (entries
/// this run does not touch, comments, blank lines) is kept, checked by reading the result back. A
/// file that cannot be edited that way (flow style, an anchor another entry may use) is written
/// anew, sorted, with its plain scalars' text kept (so PyYAML still types them the same).
fn rewrite_yaml(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    let doc = yaml11::parse_doc(text)?;
    if let Some(out) = splice_yaml(text, &doc, changes) {
        if same_meaning(text, &out, changes)? {
            return Ok(out);
        }
        let mut out = out;
        zeroize::Zeroize::zeroize(&mut out);
        tracing::debug!("an in-place YAML edit did not read back as planned; rewriting the file whole");
    }
    reemit_yaml(text, changes)
}

/// Emit one `key: value` entry at `indent`, wiping the temporary tree.
fn emit_entry(out: &mut String, key: &str, v: &Json, indent: usize) -> Option<()> {
    let mut entry = [(YNode::Str(key.to_string()), json_to_yaml(v))];
    let r = emit_map(out, &entry, indent).ok();
    entry.iter_mut().for_each(|(k, v)| {
        wipe_ynode(k);
        wipe_ynode(v)
    });
    r
}

fn wipe_ynode(n: &mut YNode) {
    match n {
        YNode::Str(s) | YNode::Plain(s) => zeroize::Zeroize::zeroize(s),
        YNode::Seq(a) => a.iter_mut().for_each(wipe_ynode),
        YNode::Map(m) => m.iter_mut().for_each(|(k, v)| {
            wipe_ynode(k);
            wipe_ynode(v)
        }),
        _ => {}
    }
}

/// The in-place edit of a block-style file, or `None` when the file is not one it can do.
fn splice_yaml(text: &str, doc: &yaml11::Doc, changes: &BTreeMap<String, Option<Rendered>>) -> Option<String> {
    let new_entries = |out: &mut String, done: &HashSet<&str>, indent: usize| -> Option<()> {
        for (k, r) in changes {
            if let (false, Some(Rendered::Tree(v))) = (done.contains(k.as_str()), r) {
                emit_entry(out, k, v, indent)?;
            }
        }
        Some(())
    };
    match doc.root {
        yaml11::Root::Map { block: true } if !doc.entries.is_empty() => {}
        yaml11::Root::Nothing => {
            // Only comments or blank lines: keep them, add the entries after.
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            new_entries(&mut out, &HashSet::new(), 0)?;
            return Some(out);
        }
        _ => return None,
    }
    let first = if text.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    let line_start = |i: usize| text[..i].rfind('\n').map_or(first, |p| p + 1);
    let line_end = |i: usize| {
        if i == 0 || text.as_bytes()[i - 1] == b'\n' {
            i
        } else {
            text[i..].find('\n').map_or(text.len(), |p| i + p + 1)
        }
    };
    let indent = doc.entries[0].key_start - line_start(doc.entries[0].key_start);
    let mut spans = Vec::with_capacity(doc.entries.len());
    let mut prev_end = 0;
    for e in &doc.entries {
        let (s, t) = (line_start(e.key_start), line_end(e.value_end));
        let changed = matches!(&e.key, YNode::Str(k) if changes.contains_key(k));
        if s < prev_end
            || e.key_start - s != indent
            || !text[s..e.key_start].bytes().all(|b| b == b' ')
            || (changed && e.defines_anchor)
        {
            return None;
        }
        spans.push((s, t));
        prev_end = t;
    }
    let mut out = String::with_capacity(text.len() + 256);
    let mut pos = 0;
    let mut done: HashSet<&str> = HashSet::new();
    for (e, &(s, t)) in doc.entries.iter().zip(&spans) {
        out.push_str(&text[pos..s]);
        pos = t;
        match &e.key {
            YNode::Str(k) if changes.contains_key(k) => {
                if done.insert(k.as_str())
                    && let Some(Some(Rendered::Tree(v))) = changes.get(k)
                {
                    emit_entry(&mut out, k, v, indent)?;
                }
            }
            _ => out.push_str(&text[s..t]),
        }
    }
    if changes.iter().any(|(k, r)| r.is_some() && !done.contains(k.as_str())) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        new_entries(&mut out, &done, indent)?;
    }
    out.push_str(&text[pos..]);
    Some(out)
}

/// Whether `new` reads (as PyYAML would) as `old` with `changes` applied.
fn same_meaning(old: &str, new: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<bool, String> {
    let norm = |entries: Vec<(YNode, YNode)>| -> HashMap<String, Result<Json, String>> {
        let mut entries = entries;
        let m = entries.iter().map(|(k, v)| (format!("{:?}", yaml_to_json(k)), yaml_to_json(v))).collect();
        entries.iter_mut().for_each(|(k, v)| {
            wipe_ynode(k);
            wipe_ynode(v)
        });
        m
    };
    let mut want = norm(parse_yaml(old)?);
    for (k, r) in changes {
        let key = format!("{:?}", Ok::<Json, String>(Json::String(k.clone())));
        match r {
            Some(Rendered::Tree(v)) => want.insert(key, Ok(v.clone())),
            _ => want.remove(&key),
        };
    }
    let Ok(got) = parse_yaml(new) else { return Ok(false) };
    Ok(norm(got) == want)
}

/// The whole file written anew (see [`rewrite_yaml`]).
fn reemit_yaml(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    let mut entries = parse_yaml(text)?;
    for (key, r) in changes {
        let k = YNode::Str(key.clone());
        match r {
            Some(Rendered::Tree(v)) => {
                let node = json_to_yaml(v);
                match entries.iter_mut().find(|(old, _)| *old == k) {
                    Some((_, slot)) => *slot = node,
                    None => entries.push((k, node)),
                }
            }
            _ => entries.retain(|(old, _)| *old != k),
        }
    }
    // Sorted string keys first (deterministic diffs), then any other keys as found.
    entries.sort_by(|(a, _), (b, _)| match (a, b) {
        (YNode::Str(a), YNode::Str(b)) => a.cmp(b),
        (YNode::Str(_), _) => std::cmp::Ordering::Less,
        (_, YNode::Str(_)) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    });
    let mut out = String::new();
    emit_map(&mut out, &entries, 0)?;
    if entries.is_empty() {
        out.push_str("{}\n");
    }
    // Wipe the tree's strings: they hold plaintext.
    fn wipe(n: &mut YNode) {
        match n {
            YNode::Str(s) | YNode::Plain(s) => zeroize::Zeroize::zeroize(s),
            YNode::Seq(a) => a.iter_mut().for_each(wipe),
            YNode::Map(m) => m.iter_mut().for_each(|(k, v)| {
                wipe(k);
                wipe(v)
            }),
            _ => {}
        }
    }
    entries.iter_mut().for_each(|(k, v)| {
        wipe(k);
        wipe(v)
    });
    Ok(out)
}

/// Block-style emitter: every string double-quoted, so PyYAML never retypes one.
fn emit_map(out: &mut String, entries: &[(YNode, YNode)], indent: usize) -> Result<(), String> {
    for (k, v) in entries {
        out.push_str(&" ".repeat(indent));
        emit_scalar(out, k).ok_or("a collection used as a mapping key")?;
        out.push(':');
        emit_value(out, v, indent)?;
    }
    Ok(())
}

fn emit_value(out: &mut String, v: &YNode, indent: usize) -> Result<(), String> {
    match v {
        YNode::Map(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(out, m, indent + 2)
        }
        YNode::Seq(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent + 2));
                out.push('-');
                emit_value(out, item, indent + 2)?;
            }
            Ok(())
        }
        _ => {
            out.push(' ');
            emit_scalar(out, v).ok_or("a value the file tags (!!binary, !!set, !!omap) cannot be rewritten as is")?;
            out.push('\n');
            Ok(())
        }
    }
}

fn emit_scalar(out: &mut String, v: &YNode) -> Option<()> {
    match v {
        YNode::Str(s) => yaml_double_quoted(out, s),
        YNode::Plain(s) => out.push_str(s),
        YNode::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        YNode::Null => out.push_str("null"),
        YNode::Int(i) => out.push_str(&i.to_string()),
        YNode::Float(f) => out.push_str(&yaml11_float_text(*f)),
        YNode::Map(m) if m.is_empty() => out.push_str("{}"),
        YNode::Seq(s) if s.is_empty() => out.push_str("[]"),
        YNode::Map(_) | YNode::Seq(_) | YNode::Unsupported(_) => return None,
    }
    Some(())
}

/// A float PyYAML reads back as a float: it needs a `.` and a signed exponent (`1e3` is a string
/// in YAML 1.1).
fn yaml11_float_text(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf".into() } else { "-.inf".into() };
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let mant = if mant.contains('.') { mant.to_string() } else { format!("{mant}.0") };
            let exp = if exp.starts_with('-') { exp.to_string() } else { format!("+{exp}") };
            format!("{mant}e{exp}")
        }
        None if s.contains('.') => s,
        None => format!("{s}.0"),
    }
}

/// A YAML 1.1 double-quoted scalar. Escapes `"`, `\`, every control and line-break character
/// (`\x85`, `\u2028`, `\u2029` would otherwise fold), and what PyYAML's reader refuses raw
/// (`\x7f-\x9f`, `\ufeff`, `\ufffe`, `\uffff`). `\/` is never used (not in every YAML 1.1 reader).
fn yaml_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
