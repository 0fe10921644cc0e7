//! Airflow's connection codecs: `get_uri()`, the URI parser (Python `urlsplit` semantics),
//! `as_json()` / `from_json()`, the field dict backends store, and semantic comparison. Spec §4.
//!
//! This module owns *what a connection value means to Airflow*: which string Airflow writes for a
//! connection, and which connection Airflow reads back from a string or a field dict. It
//! reproduces Python's `urllib.parse` and `json` behaviour byte for byte where Airflow depends on
//! it (spec §9 items 8–10), including the quirks (§4.2, §10 items 2, 3, 4, 6, 7, 11).
//! It does no I/O and knows nothing of backends: Vault's `conn_uri`, AWS aliases and
//! `.env` quoting live with their stores.
//!
//! Secrets: every function here handles plaintext. Outputs that contain a password or an extra
//! are [`SecretValue`]s; errors ([`ParseError`]) and losses ([`Loss`]) name a field or a rule,
//! never a value (not even a port or a key that could have been pasted from a secret).

use crate::model::{Connection, SecretValue};

use crate::airflow::python::builtins;
use crate::airflow::python::json as pyjson;
use crate::airflow::python::urllib as pyurl;

use self::pyjson::PyJson;

mod compare;
pub use compare::{equivalent, extra_equivalent, extra_is_object, json_losses, uri_losses};
mod json;
mod uri;
pub use json::{deserialize_for, from_fields, from_fields_for, from_json, from_kwargs, from_kwargs_for, to_fields, to_json};
pub use uri::{get_uri, parse_uri, to_uri};
#[allow(unused_imports)]
use json::*;
#[allow(unused_imports)]
use uri::*;

/// Which Airflow component's semantics to reproduce: a reader for parsing, and (for
/// [`get_uri`]) the writer whose `get_uri()` to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reader {
    /// Airflow 2.x ORM `Connection` (verified against 2.10.5).
    Orm2,
    /// Airflow 3.1+ ORM (scheduler, API server): JSON-decodes URI query values, refuses an extra
    /// that is not a JSON object, applies the protocol-in-host fix in `get_uri`.
    #[default]
    Orm3,
    /// Airflow 3.x task-sdk (workers, sdk ≥ 1.1): keeps `''` passwords and non-object extras.
    Sdk,
}

impl Reader {
    pub const ALL: [Reader; 3] = [Reader::Orm2, Reader::Orm3, Reader::Sdk];

    fn is_orm(self) -> bool {
        matches!(self, Reader::Orm2 | Reader::Orm3)
    }

    fn as_str(self) -> &'static str {
        match self {
            Reader::Orm2 => "Airflow 2 ORM",
            Reader::Orm3 => "Airflow 3.1+ ORM",
            Reader::Sdk => "Airflow task-sdk",
        }
    }
}

/// Why a stored value is not a connection Airflow can read. Never includes the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl From<pyurl::ValueError> for ParseError {
    fn from(e: pyurl::ValueError) -> Self {
        Self(e.0)
    }
}

impl ParseError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Something a target cannot carry, reported in the plan's lossiness report.
/// `field` is a connection field name, or `"uri"` when the whole URI would not read back.
/// `what` names the rule, never a value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Loss {
    pub field: &'static str,
    pub what: String,
    /// The readers that read it so (`airflow2`, `airflow3`, `task-sdk`); empty: every reader.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<&'static str>,
}

impl Loss {
    fn new(field: &'static str, what: impl Into<String>) -> Self {
        Self {
            field,
            what: what.into(),
            readers: Vec::new(),
        }
    }
}

const EXTRA_KEY: &str = "__extra__";

/// Airflow's `_normalize_conn_type`: `postgresql` → `postgres`, otherwise every `-` → `_`.
pub fn normalize_conn_type(conn_type: &str) -> String {
    if conn_type == "postgresql" {
        "postgres".to_string()
    } else {
        conn_type.replace('-', "_")
    }
}

/// The 3.1+ ORM refuses a truthy extra that is not a JSON object (`_validate_extra`); 2.x only
/// warns and the task-sdk keeps it (§4.4).
fn validate_extra(c: &Connection, reader: Reader) -> Result<(), ParseError> {
    if reader != Reader::Orm3 {
        return Ok(());
    }
    let Some(extra) = c.extra.as_ref().filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    match pyjson::loads(extra.expose_plaintext()) {
        Ok(PyJson::Object(_)) => Ok(()),
        Ok(_) => Err(ParseError::new(format!(
            "extra is JSON but not an object; the {} refuses it",
            reader.as_str()
        ))),
        Err(_) => Err(ParseError::new(format!(
            "extra is not valid JSON; the {} refuses it",
            reader.as_str()
        ))),
    }
}

/// Airflow's `deserialize_connection`, as the string backends (env, GCP, SSM, Azure) call it after
/// their own `strip()`: a leading `{` means the JSON form, otherwise a URI.
pub fn deserialize(value: &str, reader: Reader) -> Result<Connection, ParseError> {
    let v = builtins::strip(value);
    if v.starts_with('{') {
        from_json(v, reader)
    } else {
        parse_uri(v, reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Building a dict for several readers at once gives, reader for reader, what building it for
    /// each alone gives (the fields are taken once and shared): random dicts of every key and
    /// value type the readers treat differently.
    #[test]
    fn several_readers_at_once_match_one_at_a_time() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = rand::random();
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let keys = ["conn_type", "description", "host", "login", "password", "schema", "port", "extra", "uri", "team_name", "conn_id", "x"];
        let values = || -> Vec<PyJson> {
            vec![
                PyJson::Null,
                PyJson::Str(String::new()),
                PyJson::Str("Postgres-SQL".into()),
                PyJson::Str("5432".into()),
                PyJson::Str("{\"a\": 1}".into()),
                PyJson::Str("not json".into()),
                PyJson::Str("postgresql://u:p@h:1/s?a=1".into()),
                PyJson::Int("0".into()),
                PyJson::Int("70000".into()),
                PyJson::Bool(true),
                PyJson::Float(3.7),
                PyJson::Object(vec![("k".into(), PyJson::Int("1".into()))]),
                PyJson::Object(Vec::new()),
            ]
        };
        for _ in 0..5_000 {
            let n = rng.random_range(0..6);
            let items: Vec<(String, PyJson)> = (0..n)
                .map(|_| {
                    let vs = values();
                    (keys[rng.random_range(0..keys.len())].to_string(), vs[rng.random_range(0..vs.len())].clone())
                })
                .collect();
            for how in [Construct::Kwargs, Construct::FromJson] {
                let together = from_items_for(&items, &Reader::ALL, how);
                let alone: Vec<_> = Reader::ALL.iter().map(|r| from_items_for(&items, &[*r], how).pop().unwrap()).collect();
                assert_eq!(together, alone, "{items:?}");
            }
        }
    }

    #[test]
    fn float_repr_matches_python() {
        // Expected strings are Python 3.11 `repr(float(x))` / json.dumps.
        let cases = [
            (1.5, "1.5"),
            (100000.0, "100000.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-0.0, "-0.0"),
            (1.2345e-7, "1.2345e-07"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.1, "0.1"),
            (123456789.125, "123456789.125"),
            // An exact tie between two 17-digit candidates: Python rounds half to even.
            (190068353379924.12, "190068353379924.12"),
            (5e-324, "5e-324"),
            (1e23, "1e+23"),
            (f64::INFINITY, "Infinity"),
        ];
        for (f, want) in cases {
            assert_eq!(pyjson::float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn json_loads_follows_python() {
        assert_eq!(pyjson::loads(" 5 "), Ok(PyJson::Int("5".into())));
        assert_eq!(pyjson::loads("-0"), Ok(PyJson::Int("0".into())));
        assert!(pyjson::loads("01").is_err());
        assert!(pyjson::loads("1.").is_err());
        assert!(pyjson::loads("\u{feff}{}").is_err());
        assert!(pyjson::loads("\"a\u{1}\"").is_err());
        assert!(matches!(pyjson::loads("NaN"), Ok(PyJson::Float(f)) if f.is_nan()));
        assert_eq!(pyjson::loads("1e400"), Ok(PyJson::Float(f64::INFINITY)));
        let big = "123456789012345678901234567890";
        assert_eq!(pyjson::dumps(&pyjson::loads(big).unwrap()), big);
        assert_eq!(
            pyjson::dumps(&pyjson::loads(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap()),
            r#"{"a": 3, "b": 2}"#
        );
        assert_eq!(
            pyjson::dumps(&pyjson::loads(r#""\ud83d\ude00é\u007f""#).unwrap()),
            r#""\ud83d\ude00\u00e9\u007f""#
        );
    }

    #[test]
    fn unquote_is_python_unquote() {
        assert_eq!(pyurl::unquote("a%ZZb%"), "a%ZZb%");
        assert_eq!(pyurl::unquote("%C3%BC+x"), "ü+x");
        assert_eq!(pyurl::unquote("%C3ü"), "\u{fffd}ü");
        assert_eq!(pyurl::unquote("%ed%a0%80"), "\u{fffd}\u{fffd}\u{fffd}");
        assert_eq!(pyurl::unquote("%4"), "%4");
    }

    #[test]
    fn ipv6_validation() {
        for ok in [
            "::1",
            "2001:db8::8a2e:370:7334",
            "::",
            "1::",
            "::ffff:1.2.3.4",
            "fe80::1%eth0",
            "1:2:3:4:5:6:7:8",
        ] {
            assert!(pyurl::urlsplit(&format!("//[{ok}]:1")).is_ok(), "{ok}");
        }
        for bad in [
            "1.2.3.4",
            "::1::",
            "1:2:3:4:5:6:7:8:9",
            "12345::",
            ":1::",
            "x",
            "",
            "1::2%",
        ] {
            assert!(pyurl::urlsplit(&format!("//[{bad}]:1")).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_0_and_none_are_equivalent_but_reported() {
        let a = Connection {
            port: Some(0),
            ..Default::default()
        };
        assert!(equivalent(&a, &Connection::default()));
        assert!(uri_losses(&a).iter().any(|l| l.field == "port"));
    }
}
