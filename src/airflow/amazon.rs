//! What Airflow's amazon provider defines about reading its secrets backends, beyond the shared
//! codecs: `SecretsManagerBackend`'s connection secrets, whose JSON keys it re-maps through an
//! alias table (spec §5.2).

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::airflow::connection::{self, ParseError, Reader};
use crate::model::{Connection, SecretValue};

/// Airflow's `SecretsManagerBackend.get_conn_value` + `deserialize_connection`: the stored string
/// as Airflow reads it. `Ok(None)` for an empty value (Airflow's falsy check).
pub fn decode_connection(
    value: &str,
    extra_conn_words: &BTreeMap<String, Vec<String>>,
    reader: Reader,
) -> Result<Option<Connection>, ParseError> {
    if value.is_empty() {
        return Ok(None);
    }
    if !value.trim().starts_with('{') {
        return connection::deserialize(value, reader).map(Some);
    }
    let secret: Map<String, Json> = serde_json::from_str(value.trim())
        .map_err(|e| ParseError(format!("not a JSON object (line {}, column {})", e.line(), e.column())))?;
    let standardized = standardize_secret_keys(&secret, extra_conn_words);
    let json = SecretValue::from(Json::Object(standardized).to_string());
    connection::from_json(json.expose_plaintext(), reader).map(Some)
}

/// `_standardize_secret_keys`: for each canonical field, the first key of the secret (in its own
/// order) that is one of the field's alias words; every other key is dropped.
fn standardize_secret_keys(secret: &Map<String, Json>, extra: &BTreeMap<String, Vec<String>>) -> Map<String, Json> {
    let mut words: Vec<(&str, Vec<&str>)> = vec![
        ("login", vec!["login", "user", "username", "user_name"]),
        ("password", vec!["password", "pass", "key"]),
        ("host", vec!["host", "remote_host", "server"]),
        ("port", vec!["port"]),
        ("schema", vec!["database", "schema"]),
        ("conn_type", vec!["conn_type", "conn_id", "connection_type", "engine"]),
        ("extra", vec!["extra"]),
    ];
    for (field, more) in extra {
        let field = if field == "user" { "login" } else { field.as_str() };
        if let Some((_, w)) = words.iter_mut().find(|(f, _)| *f == field) {
            w.extend(more.iter().map(String::as_str));
        }
    }
    let mut out = Map::new();
    for (field, w) in words {
        if let Some((_, v)) = secret.iter().find(|(k, _)| w.contains(&k.as_str()))
            && !v.is_null()
        {
            out.insert(field.to_string(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_first_key_wins_and_unknown_keys_drop() {
        let secret: Map<String, Json> =
            serde_json::from_str(r#"{"user": "first", "login": "second", "description": "d", "engine": "mysql", "zzz": 1}"#)
                .unwrap();
        let m = standardize_secret_keys(&secret, &BTreeMap::new());
        assert_eq!(Json::Object(m), serde_json::json!({"login": "first", "conn_type": "mysql"}));
        let words = BTreeMap::from([("user".to_string(), vec!["account".to_string()])]);
        let secret: Map<String, Json> = serde_json::from_str(r#"{"account": "a"}"#).unwrap();
        assert_eq!(standardize_secret_keys(&secret, &words)["login"], "a");
    }
}
