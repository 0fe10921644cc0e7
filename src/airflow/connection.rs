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
