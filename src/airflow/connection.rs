//! Airflow's connection codecs: `get_uri()`, the URI parser (Python `urlsplit` semantics),
//! `as_json()` / `from_json()`, and semantic comparison. Spec §4.
//! (Skeleton: filled in by the connection-codec work.)

use crate::model::{Connection, SecretValue};

/// Which Airflow reader's semantics to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reader {
    /// Airflow 2.x ORM `Connection`.
    Orm2,
    /// Airflow 3.1+ ORM (scheduler, API server): JSON-decodes URI query values.
    #[default]
    Orm3,
    /// Airflow 3.x task-sdk on workers.
    Sdk,
}

/// Why a stored value is not a connection Airflow can read. Never includes the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Something a target cannot carry, reported in the plan's lossiness report.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Loss {
    pub field: &'static str,
    pub what: String,
}

pub fn to_uri(_c: &Connection) -> SecretValue {
    SecretValue::default()
}

pub fn to_json(_c: &Connection) -> SecretValue {
    SecretValue::default()
}

pub fn parse_uri(_uri: &str, _reader: Reader) -> Result<Connection, ParseError> {
    Err(ParseError("not implemented yet".into()))
}

pub fn from_json(_value: &str, _reader: Reader) -> Result<Connection, ParseError> {
    Err(ParseError("not implemented yet".into()))
}

/// Airflow's `deserialize_connection`: strip; a leading `{` means JSON, otherwise a URI.
pub fn deserialize(value: &str, reader: Reader) -> Result<Connection, ParseError> {
    let v = value.trim();
    if v.starts_with('{') { from_json(v, reader) } else { parse_uri(v, reader) }
}

/// Whether Airflow would read `a` and `b` as the same connection.
pub fn equivalent(a: &Connection, b: &Connection) -> bool {
    a == b
}

/// What the URI form of `c` loses (description, port 0, host case, ...).
pub fn uri_losses(_c: &Connection) -> Vec<Loss> {
    Vec::new()
}

/// The field dict written to Vault and to local-filesystem json/yaml: `conn_type, description,
/// host, login, password, schema, port` (an int), `extra` (an object); None fields omitted; never
/// `conn_id` or any other key. The map holds plaintext: build it just before the wire, drop it after.
pub fn to_fields(_c: &Connection) -> serde_json::Map<String, serde_json::Value> {
    serde_json::Map::new()
}

/// Airflow's reading of a field dict (`Connection(**dict)` after `from_json` normalisation):
/// port as int or numeric string, extra as an object or a string, unknown keys refused.
pub fn from_fields(
    _m: &serde_json::Map<String, serde_json::Value>,
    _reader: Reader,
) -> Result<Connection, ParseError> {
    Err(ParseError("not implemented yet".into()))
}
