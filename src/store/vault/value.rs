//! What one Vault secret holds: the KV data dict for a Variable or a Connection, written and
//! read exactly as `VaultBackend` reads it (spec §5.1 "Value format", §10 items 8 and 10).
//!
//! The maps built here hold plaintext: callers build them just before the wire and drop them after.

use serde_json::{Map, Value};

use super::config::VaultConnectionFormat;
use crate::airflow::connection::{self, Reader};
use crate::model::{Connection, ItemError, ItemErrorKind, SecretValue};

/// The KV data for a Variable: `{"value": "<string>"}`. Airflow reads only the key `value`.
pub fn encode_variable(value: &SecretValue) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("value".into(), Value::String(value.expose_plaintext().to_string()));
    m
}

/// The KV data for a Connection: the field dict (port an int, extra an object, no `conn_id`), or
/// `{"conn_uri": "<get_uri()>"}`. An empty `conn_uri` is never written: Airflow raises on it.
pub fn encode_connection(c: &Connection, format: VaultConnectionFormat) -> Result<Map<String, Value>, ItemError> {
    match format {
        VaultConnectionFormat::Fields => Ok(connection::to_fields(c)),
        VaultConnectionFormat::Uri => {
            let uri = connection::to_uri(c);
            if uri.is_empty() {
                return Err(ItemError::new(
                    ItemErrorKind::NotRepresentable,
                    "the connection has no URI form, and Airflow fails on an empty conn_uri",
                ));
            }
            let mut m = Map::new();
            m.insert("conn_uri".into(), Value::String(uri.expose_plaintext().to_string()));
            Ok(m)
        }
    }
}

/// Airflow's `get_variable`: `response.get("value")`. A missing or null `value` is None (Airflow
/// logs a warning and falls through to the next backend); a non-string is returned as-is (§10
/// item 10), which is not a Variable this tool can carry. Both are per-item errors here.
pub fn decode_variable(data: &Map<String, Value>) -> Result<SecretValue, ItemError> {
    match data.get("value") {
        Some(Value::String(s)) => Ok(SecretValue::from(s.as_str())),
        None | Some(Value::Null) => Err(ItemError::new(
            ItemErrorKind::Unparseable,
            "no `value` key: Airflow reads nothing here and falls through to the next backend",
        )),
        Some(other) => Err(ItemError::new(
            ItemErrorKind::Unparseable,
            format!("`value` is a JSON {}, not a string; Airflow would return it unconverted", json_type(other)),
        )),
    }
}

/// Airflow's `get_connection`: a truthy `conn_uri` is parsed as a URI and every other key is
/// ignored; otherwise the whole dict is `Connection(conn_id, **dict)` (4.8+: via `from_json`), so
/// any key that is not a field (including a falsy `conn_uri`, `conn_id`, `user`) raises TypeError
/// and Airflow silently falls through to the next backend.
pub fn decode_connection(data: &Map<String, Value>, reader: Reader) -> Result<Connection, ItemError> {
    let unparseable = |detail: String| ItemError::new(ItemErrorKind::Unparseable, detail);
    match data.get("conn_uri") {
        Some(v) if truthy(v) => match v {
            Value::String(uri) => {
                connection::parse_uri(uri, reader).map_err(|e| unparseable(format!("conn_uri: {e}")))
            }
            other => Err(unparseable(format!("conn_uri is a JSON {}, not a string", json_type(other)))),
        },
        Some(_) => Err(unparseable(
            "an empty `conn_uri`: Airflow raises TypeError (unexpected keyword conn_uri) and falls through".into(),
        )),
        // hashicorp ≥ 4.8 (Airflow 3's pins) `from_json`s the dict; < 4.8 (Airflow 2.10's) calls
        // `Connection(conn_id, **dict)`: port and conn_type as given.
        None if reader == Reader::Orm2 => connection::from_kwargs(data, reader).map_err(|e| unparseable(e.to_string())),
        None => connection::from_fields(data, reader).map_err(|e| unparseable(e.to_string())),
    }
}

/// Python truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn variables_read_like_airflow() {
        assert_eq!(decode_variable(&map(json!({"value": "v", "other": 1}))).unwrap(), SecretValue::from("v"));
        assert_eq!(decode_variable(&map(json!({"value": ""}))).unwrap(), SecretValue::from(""));
        let e = decode_variable(&map(json!({"other": "canary-77"}))).unwrap_err();
        assert_eq!(e.kind, ItemErrorKind::Unparseable);
        let e = decode_variable(&map(json!({"value": 5}))).unwrap_err();
        assert!(e.detail.contains("number") && !e.detail.contains('5'), "{e}");
        assert_eq!(encode_variable(&SecretValue::from("x")), map(json!({"value": "x"})));
    }

    #[test]
    fn empty_or_non_string_conn_uri_is_an_error_not_a_fallback() {
        let e = decode_connection(&map(json!({"conn_uri": "", "conn_type": "http"})), Reader::default()).unwrap_err();
        assert!(e.detail.contains("conn_uri"), "{e}");
        let e = decode_connection(&map(json!({"conn_uri": 7})), Reader::default()).unwrap_err();
        assert!(e.detail.contains("number"), "{e}");
    }

    #[test]
    fn python_truthiness() {
        assert!(!truthy(&json!("")) && !truthy(&json!(0)) && !truthy(&json!([])) && !truthy(&json!(null)));
        assert!(truthy(&json!("x")) && truthy(&json!(1)) && truthy(&json!({"a": 1})));
    }
}
