//! Airflow's `LocalFilesystemBackend` (`airflow.secrets.local_filesystem`), as rules without I/O
//! (spec §5.6): the parser is picked by extension; `.env` is Airflow's own format ([`env`]); `.json`
//! and `.yaml` hold one top-level mapping (YAML read as PyYAML's `safe_load` reads it,
//! [`crate::airflow::python::yaml11`]); a variable must be a string; a connection is a string (a
//! URI) or a field dict (`_create_connection`). `crate::store::local_files` reads, stages and
//! renames the files.

use std::path::Path;

use serde_json::{Map, Value as Json};

use crate::airflow::connection::{self, Reader};
use crate::airflow::python::yaml11::{YNode, parse_yaml, yaml_to_json, yaml11_type};
use crate::model::{Connection, Kind, Value, Variable};

pub mod env;
pub use env::{EnvLine, classify_env_line, parse_airflow_env, py_isspace, py_lines};

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

/// The file's top-level entries, as Airflow parses them (`text` is the whole file).
pub(crate) fn parse_file(format: FileFormat, text: &str) -> Result<Vec<(RawKey, Raw)>, String> {
    Ok(match format {
        FileFormat::Env => parse_airflow_env(text)?.into_iter().map(|(k, v)| (RawKey::Str(k), Raw::Str(v))).collect(),
        FileFormat::Json => parse_json(text)?.into_iter().map(|(k, v)| (RawKey::Str(k), Raw::from_json(v))).collect(),
        FileFormat::Yaml => {
            parse_yaml(text)?.into_iter().map(|(k, v)| (RawKey::from_yaml(&k), Raw::from_yaml(v))).collect()
        }
    })
}

/// A `.json` file: one top-level object (an empty file reads as empty).
pub fn parse_json(text: &str) -> Result<Map<String, Json>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(other) => Err(format!("the file holds {}, not an object", json_type(&other))),
        Err(e) => Err(format!("not valid JSON (line {}, column {})", e.line(), e.column())),
    }
}

/// The value `reader` builds from one entry of a `format` file under `key`, or why Airflow does
/// not read it as one (the detail never quotes the value).
pub(crate) fn decode(reader: Reader, kind: Kind, format: FileFormat, key: &str, raw: Raw) -> Result<Value, String> {
    match (kind, raw) {
        (Kind::Variable, Raw::Str(s)) => Ok(Value::Variable(Variable::new(s))),
        (Kind::Variable, Raw::Json(v)) => Err(format!(
            "{} is not a string; Airflow returns it as-is, so it is not read as a variable value",
            json_type(&v)
        )),
        (Kind::Connection, Raw::Str(s)) => match connection::parse_uri(&s, reader) {
            Ok(c) => Ok(Value::Connection(c)),
            Err(e) => Err(format!("not a connection URI Airflow can read: {e}")),
        },
        (Kind::Connection, Raw::Json(Json::Object(m))) if format != FileFormat::Env => {
            match connection_from_dict(key, &m, reader) {
                Ok(c) => Ok(Value::Connection(c)),
                Err(e) => Err(format!("{e} (Airflow then rejects the whole file)")),
            }
        }
        (Kind::Connection, Raw::Json(v)) => Err(format!(
            "{}; Airflow accepts only a string (URI) or an object, and rejects the whole file",
            json_type(&v)
        )),
        (_, Raw::Bad(what)) => Err(what),
    }
}

/// What a file holds under one key.
pub(crate) enum RawKey {
    Str(String),
    /// A YAML key that is not a string under YAML 1.1: its text and type.
    Other(String, &'static str),
}

impl RawKey {
    pub(crate) fn from_yaml(node: &YNode) -> Self {
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

pub(crate) enum Raw {
    Str(String),
    /// Any other JSON-representable value.
    Json(Json),
    /// Something JSON cannot represent (a YAML timestamp, `.inf`, ...): why.
    Bad(String),
}

impl Raw {
    pub(crate) fn from_json(v: Json) -> Self {
        match v {
            Json::String(s) => Raw::Str(s),
            other => Raw::Json(other),
        }
    }

    pub(crate) fn from_yaml(node: YNode) -> Self {
        match node {
            YNode::Str(s) => Raw::Str(s),
            other => match yaml_to_json(&other) {
                Ok(v) => Raw::Json(v),
                Err(why) => Raw::Bad(format!("{why}, not a string")),
            },
        }
    }
}

pub fn json_type(v: &Json) -> &'static str {
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
pub fn connection_from_dict_for(key: &str, m: &Map<String, Json>, readers: &[Reader]) -> Vec<Result<Connection, String>> {
    if !["conn_id", "extra_dejson", "uri"].iter().any(|k| m.contains_key(*k)) {
        return connection::from_kwargs_for(m, readers)
            .into_iter()
            .map(|c| c.map_err(|e| format!("not a connection Airflow can build: {e}")))
            .collect();
    }
    readers.iter().map(|r| connection_from_dict(key, m, *r)).collect()
}

pub fn connection_from_dict(key: &str, m: &Map<String, Json>, reader: Reader) -> Result<Connection, String> {
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
}
