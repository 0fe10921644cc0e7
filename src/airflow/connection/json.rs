//! Airflow's JSON form of a connection and the field dicts backends store (`as_json()`,
//! `from_json()`, `Connection(**dict)`), spec §4.3.

use super::*;

// ---------------------------------------------------------------------------------------------
// JSON form and field dicts (spec §4.3)
// ---------------------------------------------------------------------------------------------

/// The JSON form, as Airflow's `as_json()` writes it: keys `conn_type, description, host, login,
/// password, schema, port, extra` in that order, None fields dropped, port an integer (0 is
/// written, as Airflow does; every reader drops it again), extra a JSON object, omitted when it is
/// empty. Python `json.dumps` formatting (`", "`, `": "`, `\uXXXX` escapes).
///
/// One deliberate difference: an extra that is not a JSON object is written as a JSON *string*
/// (which `from_json` keeps verbatim), where Airflow's `as_json()` would drop non-JSON text and
/// emit a list as a list. That way no reader loses it.
pub fn to_json(c: &Connection) -> SecretValue {
    let obj = PyJson::Object(field_items(c));
    SecretValue::new(pyjson::dumps(&obj))
}

pub(super) fn field_items(c: &Connection) -> Vec<(String, PyJson)> {
    let mut out = Vec::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            out.push((k.to_string(), PyJson::Str(v.to_string())));
        }
    };
    put("conn_type", c.conn_type.as_deref());
    put("description", c.description.as_deref());
    put("host", c.host.as_deref());
    put("login", c.login.as_deref());
    put(
        "password",
        c.password.as_ref().map(|p| p.expose_plaintext()),
    );
    put("schema", c.schema.as_deref());
    if let Some(port) = c.port {
        out.push(("port".to_string(), PyJson::Int(port.to_string())));
    }
    if let Some(extra) = extra_for_fields(c) {
        out.push(("extra".to_string(), extra));
    }
    out
}

/// The extra as the JSON form carries it: a non-empty object as an object, an empty one omitted,
/// anything else (non-object JSON, non-JSON text) as a string.
pub(super) fn extra_for_fields(c: &Connection) -> Option<PyJson> {
    let raw = c.extra.as_ref()?.expose_plaintext();
    if raw.is_empty() {
        return None;
    }
    match pyjson::loads(raw) {
        Ok(PyJson::Object(items)) if items.is_empty() => None,
        Ok(obj @ PyJson::Object(_)) => Some(obj),
        _ => Some(PyJson::Str(raw.to_string())),
    }
}

/// Airflow's `Connection.from_json(value)` for `reader`.
///
/// Python `json.loads` semantics (duplicate keys: last wins; `NaN`; big integers). Then:
/// `extra` a dict → dumped, a string → kept, falsy → dropped; `conn_type` normalised; `port`
/// `int()` of a number or numeric string, falsy → dropped; any key that is not a constructor
/// parameter (and `conn_id`) is an error naming the key. The ORM readers accept `uri` alone
/// (plus `description`); the 3.1+ ORM refuses a non-object extra.
///
/// Values our model cannot hold are errors, never silently changed: a port outside 0–65535
/// (Airflow accepts any int here), a field that is not a string, a non-null `team_name`.
pub fn from_json(value: &str, reader: Reader) -> Result<Connection, ParseError> {
    let parsed = pyjson::loads(value)
        .map_err(|e| ParseError::new(format!("connection JSON does not parse: {e}")))?;
    let PyJson::Object(items) = parsed else {
        return Err(ParseError::new("connection JSON is not an object"));
    };
    from_items(items, reader)
}

/// The field dict written to Vault and to local-filesystem json/yaml: `conn_type, description,
/// host, login, password, schema, port` (an int), `extra` (an object); None fields omitted; never
/// `conn_id` or any other key. The map holds plaintext: build it just before the wire, drop it after.
///
/// An extra that is not a JSON object, or that serde_json cannot hold exactly (`NaN`, integers
/// beyond 64 bits), is written as a string, which every reader keeps verbatim.
pub fn to_fields(c: &Connection) -> serde_json::Map<String, serde_json::Value> {
    field_items(c)
        .into_iter()
        .map(|(k, v)| {
            let value = match pyjson::to_serde(&v) {
                Some(sv) => sv,
                // Only the extra can be unrepresentable; the string form reads back the same.
                None => serde_json::Value::String(pyjson::dumps(&v)),
            };
            (k, value)
        })
        .collect()
}

/// Airflow's reading of a field dict (`Connection(**dict)` after `from_json` normalisation):
/// port as int or numeric string, extra as an object or a string, unknown keys refused.
pub fn from_fields(
    m: &serde_json::Map<String, serde_json::Value>,
    reader: Reader,
) -> Result<Connection, ParseError> {
    from_items(dict_items(m), reader)
}

pub(super) fn dict_items(m: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, PyJson)> {
    m.iter().map(|(k, v)| (k.clone(), pyjson::from_serde(v))).collect()
}

pub(super) const FIELD_KEYS: [&str; 8] = [
    "conn_type",
    "description",
    "host",
    "login",
    "password",
    "schema",
    "port",
    "extra",
];

/// Airflow's `Connection(conn_id, **dict)`: the constructor, without `from_json`'s normalisation.
/// Used by `LocalFilesystemBackend` for json/yaml dicts and by `VaultBackend` before hashicorp 4.8
/// (spec §5.1, §5.6): `conn_type` is kept as given, `port` is not converted (so `0` stays `0`), an
/// `extra` dict is `json.dumps`-ed, a string kept. The 3.x ORM still refuses a non-object extra.
pub fn from_kwargs(
    m: &serde_json::Map<String, serde_json::Value>,
    reader: Reader,
) -> Result<Connection, ParseError> {
    from_items_as(dict_items(m), reader, Construct::Kwargs)
}

/// How a field dict becomes a `Connection`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Construct {
    /// `Connection.from_json`: conn_type normalised, port `int()`-ed, falsy port dropped.
    FromJson,
    /// `Connection(**dict)`: fields as given.
    Kwargs,
}

pub(super) fn from_items(items: Vec<(String, PyJson)>, reader: Reader) -> Result<Connection, ParseError> {
    from_items_as(items, reader, Construct::FromJson)
}

pub(super) fn from_items_as(items: Vec<(String, PyJson)>, reader: Reader, how: Construct) -> Result<Connection, ParseError> {
    from_items_for(&items, &[reader], how).pop().expect("one result per reader")
}

/// The fields of a dict as every reader takes them (the reader-independent part of the
/// constructor): computed once for all the readers of a prediction.
pub(super) struct Taken {
    conn_type: Option<String>,
    port: Option<u16>,
    host: Option<String>,
    login: Option<String>,
    password: Option<SecretValue>,
    schema: Option<String>,
    description: Option<String>,
    extra: Option<SecretValue>,
    /// The extra was given as a dict: an object already, nothing to validate.
    extra_is_object: bool,
}

pub(super) fn take_fields(items: &[(String, PyJson)], how: Construct) -> Result<Taken, ParseError> {
    let get = |k: &str| items.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let string = |k: &'static str| -> Result<Option<String>, ParseError> {
        match get(k) {
            None | Some(PyJson::Null) => Ok(None),
            Some(PyJson::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ParseError::new(format!(
                "connection field '{k}' is not a string"
            ))),
        }
    };
    let extra = match get("extra") {
        Some(v) if v.truthy() => Some(SecretValue::new(match v {
            PyJson::Str(s) => s.clone(),
            other => pyjson::dumps(other),
        })),
        _ => None,
    };
    let conn_type = match get("conn_type") {
        Some(PyJson::Str(s)) if how == Construct::Kwargs => Some(s.clone()),
        Some(PyJson::Str(s)) if !s.is_empty() => Some(normalize_conn_type(s)),
        Some(v) if v.truthy() => {
            return Err(ParseError::new(
                "connection field 'conn_type' is not a string",
            ));
        }
        _ => None,
    };
    let port = match get("port") {
        // The constructor keeps any port it is given, 0 included.
        Some(v) if how == Construct::Kwargs && !matches!(v, PyJson::Null) => Some(python_int_port(v)?),
        Some(v) if v.truthy() => Some(python_int_port(v)?),
        _ => None,
    };
    Ok(Taken {
        conn_type,
        port,
        host: string("host")?,
        login: string("login")?,
        password: string("password")?.map(SecretValue::new),
        schema: string("schema")?,
        description: string("description")?,
        extra,
        extra_is_object: matches!(get("extra"), Some(PyJson::Object(_))),
    })
}

/// Python's keyword check: it raises TypeError for these whatever the values are, before any
/// field is looked at.
pub(super) fn check_keys(items: &[(String, PyJson)], reader: Reader) -> Result<(), ParseError> {
    for (k, v) in items {
        match k.as_str() {
            k if FIELD_KEYS.contains(&k) => {}
            "conn_id" => {
                return Err(ParseError::new(
                    "connection JSON has a 'conn_id' key (Airflow: multiple values for 'conn_id')",
                ));
            }
            "uri" if reader.is_orm() => {}
            "team_name" if reader == Reader::Orm3 => {
                if !matches!(v, PyJson::Null) {
                    return Err(ParseError::new(
                        "connection JSON has a 'team_name', which this tool cannot carry",
                    ));
                }
            }
            other => {
                return Err(ParseError::new(format!(
                    "connection JSON has an unexpected key '{}' ({} would refuse it)",
                    other.escape_debug(),
                    reader.as_str()
                )));
            }
        }
    }
    Ok(())
}

/// One dict as each of `readers` builds it, in order: the fields are taken once, each reader
/// then applies what is its own (its keyword check, `uri`, the empty password, the 3.1+ ORM's
/// extra validation). Same results, in the same error order, as building it once per reader.
pub(super) fn from_items_for(items: &[(String, PyJson)], readers: &[Reader], how: Construct) -> Vec<Result<Connection, ParseError>> {
    let mut taken: Option<Result<Taken, ParseError>> = None;
    readers
        .iter()
        .map(|&reader| {
            check_keys(items, reader)?;
            let t = taken.get_or_insert_with(|| take_fields(items, how)).as_ref().map_err(Clone::clone)?;
            let uri = items.iter().find(|(key, _)| key == "uri").map(|(_, v)| v).filter(|u| u.truthy());
            if let Some(uri) = uri {
                let mixed = t.conn_type.is_some()
                    || [&t.host, &t.login, &t.schema]
                        .iter()
                        .any(|f| f.as_deref().is_some_and(|s| !s.is_empty()))
                    || t.password.as_ref().is_some_and(|p| !p.is_empty())
                    || t.port.is_some_and(|p| p != 0)
                    || t.extra.is_some();
                if mixed {
                    return Err(ParseError::new(
                        "connection JSON mixes 'uri' with individual fields (Airflow refuses it)",
                    ));
                }
                let PyJson::Str(uri) = uri else {
                    return Err(ParseError::new("connection field 'uri' is not a string"));
                };
                let mut conn = parse_uri(uri, reader)?;
                conn.description = t.description.clone();
                return Ok(conn);
            }
            let conn = Connection {
                conn_type: t.conn_type.clone(),
                description: t.description.clone(),
                host: t.host.clone(),
                login: t.login.clone(),
                password: t.password.as_ref().filter(|p| !(reader.is_orm() && p.is_empty())).cloned(),
                schema: t.schema.clone(),
                port: t.port,
                extra: t.extra.clone(),
            };
            if !t.extra_is_object {
                validate_extra(&conn, reader)?;
            }
            Ok(conn)
        })
        .collect()
}

/// [`from_kwargs`] for several readers at once (the dict converted and its fields taken once).
pub fn from_kwargs_for(
    m: &serde_json::Map<String, serde_json::Value>,
    readers: &[Reader],
) -> Vec<Result<Connection, ParseError>> {
    from_items_for(&dict_items(m), readers, Construct::Kwargs)
}

/// [`from_fields`] for several readers at once.
pub fn from_fields_for(
    m: &serde_json::Map<String, serde_json::Value>,
    readers: &[Reader],
) -> Vec<Result<Connection, ParseError>> {
    from_items_for(&dict_items(m), readers, Construct::FromJson)
}

/// [`deserialize`] for several readers at once: a JSON form is parsed once.
pub fn deserialize_for(value: &str, readers: &[Reader]) -> Vec<Result<Connection, ParseError>> {
    let v = builtins::strip(value);
    if !v.starts_with('{') {
        return readers.iter().map(|r| parse_uri(v, *r)).collect();
    }
    match pyjson::loads(v) {
        Ok(PyJson::Object(items)) => from_items_for(&items, readers, Construct::FromJson),
        Ok(_) => readers.iter().map(|_| Err(ParseError::new("connection JSON is not an object"))).collect(),
        Err(e) => {
            let e = ParseError::new(format!("connection JSON does not parse: {e}"));
            readers.iter().map(|_| Err(e.clone())).collect()
        }
    }
}

/// Python `int(port)` for a truthy JSON value, then our model's u16 range.
pub(super) fn python_int_port(v: &PyJson) -> Result<u16, ParseError> {
    let bad = || ParseError::new("connection field 'port' is not an integer");
    let digits: String = match v {
        PyJson::Bool(true) => "1".to_string(),
        PyJson::Int(s) => s.clone(),
        // int(float) truncates toward zero; NaN and infinities raise.
        PyJson::Float(f) if f.is_finite() => format!("{}", f.trunc()),
        PyJson::Str(s) => builtins::int_str(s).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let digits = digits.strip_prefix('+').unwrap_or(&digits);
    let negative = digits.starts_with('-');
    let magnitude = digits.trim_start_matches('-').trim_start_matches('0');
    if magnitude.is_empty() {
        return Ok(0);
    }
    if !negative
        && magnitude.len() <= 5
        && let Ok(p) = magnitude.parse::<u32>()
        && let Ok(p) = u16::try_from(p)
    {
        return Ok(p);
    }
    // Airflow itself accepts any int from JSON; a u16 cannot hold it, so refuse rather than
    // silently change it.
    Err(ParseError::new(
        "connection field 'port' is outside 0-65535",
    ))
}
