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

// ---------------------------------------------------------------------------------------------
// get_uri / to_uri (spec §4.1, §4.6)
// ---------------------------------------------------------------------------------------------

/// An exact reproduction of Airflow's `Connection.get_uri()` as `flavor` implements it.
///
/// Differences by flavour (spec §4.1, §4.4, §10.3):
/// - ORM (2.x and 3.x): an empty password is never stored (the setter ignores falsy values), so
///   `Some("")` behaves as None. The task-sdk keeps it and writes `user:@`.
/// - 3.x (ORM and sdk): when the host's `proto://` equals the raw conn_type (case-sensitive), the
///   whole host is percent-encoded instead of emitting the protocol a second time.
/// - Flattening the extra into the query: every flavour flattens exactly a non-empty JSON object
///   whose values are all strings (2.x and the sdk by an equality check, 3.1+ ORM by `can_flatten`);
///   anything else is written as `__extra__=<raw extra>`. The 3.1+ ORM cannot even construct a
///   connection whose extra is not a JSON object; for one we return what the sdk writes.
pub fn get_uri(c: &Connection, flavor: Reader) -> SecretValue {
    let password = match (&c.password, flavor) {
        (Some(p), Reader::Orm2 | Reader::Orm3) if p.is_empty() => None,
        (p, _) => p.as_ref().map(|p| p.expose_plaintext()),
    };
    let protocol_fix = matches!(flavor, Reader::Orm3 | Reader::Sdk);
    let extra = c
        .extra
        .as_ref()
        .map(|e| e.expose_plaintext())
        .filter(|e| !e.is_empty());
    let query = extra.map(|raw| match flattenable(raw) {
        Some(items) => urlencode(items.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        None => urlencode([(EXTRA_KEY, raw)]),
    });
    build_uri(c, password, protocol_fix, query.as_deref())
}

/// OUR writer for targets that need a URI (spec §4.6): Airflow 3.x `get_uri()` (protocol-in-host
/// fix, no `user:@` for an empty password), except that the extra is flattened into the query only
/// when every reader reads it back identically. It uses `__extra__` when any value is not a
/// string, when any value would JSON-decode under the 3.1+ ORM (`"5432"`, `"true"`, `" 5 "`),
/// or when a key is `__extra__`. [`uri_losses`] lists what the URI still cannot carry.
pub fn to_uri(c: &Connection) -> SecretValue {
    let password = c
        .password
        .as_ref()
        .map(|p| p.expose_plaintext())
        .filter(|p| !p.is_empty());
    let extra = c
        .extra
        .as_ref()
        .map(|e| e.expose_plaintext())
        .filter(|e| !e.is_empty());
    let query = extra.map(|raw| match flattenable(raw) {
        Some(items)
            if items
                .iter()
                .all(|(k, v)| k != EXTRA_KEY && pyjson::loads(v).is_err()) =>
        {
            urlencode(items.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }
        _ => urlencode([(EXTRA_KEY, raw)]),
    });
    build_uri(c, password, true, query.as_deref())
}

/// The extra's items when Airflow's `get_uri` would flatten them into the query: a non-empty JSON
/// object whose values are all strings (spec §4.1 step 7).
fn flattenable(raw: &str) -> Option<Vec<(String, String)>> {
    let PyJson::Object(items) = pyjson::loads(raw).ok()? else {
        return None;
    };
    if items.is_empty() {
        return None;
    }
    items
        .into_iter()
        .map(|(k, v)| match v {
            PyJson::Str(s) => Some((k, s)),
            _ => None,
        })
        .collect()
}

/// Steps 1–6 of `get_uri()` plus the already-encoded query.
fn build_uri(
    c: &Connection,
    password: Option<&str>,
    protocol_fix: bool,
    query: Option<&str>,
) -> SecretValue {
    let conn_type = c.conn_type.as_deref().filter(|t| !t.is_empty());
    let mut uri = match conn_type {
        Some(t) => format!("{}://", t.to_lowercase().replace('_', "-")),
        None => "//".to_string(),
    };
    let full_host = c.host.as_deref().filter(|h| !h.is_empty());
    let (protocol, host) = match full_host {
        Some(h) if h.contains("://") => {
            let (proto, rest) = h.split_once("://").expect("contains ://");
            // 3.x fix (core ≥ 3.1, sdk ≥ 1.1): compared with the raw conn_type, so `HTTP` with
            // `http://…` still produces the broken double scheme (spec §10.3).
            if protocol_fix && c.conn_type.as_deref() == Some(proto) {
                (None, Some(h))
            } else {
                (Some(proto), Some(rest))
            }
        }
        other => (None, other),
    };
    if let Some(proto) = protocol.filter(|p| !p.is_empty()) {
        uri.push_str(proto);
        uri.push_str("://");
    }
    let mut authority = String::new();
    if let Some(login) = &c.login {
        authority.push_str(&pyurl::quote(login, false));
    }
    if let Some(pw) = password {
        authority.push(':');
        authority.push_str(&pyurl::quote(pw, false));
    }
    if !authority.is_empty() {
        authority.push('@');
        uri.push_str(&authority);
    }
    let mut host_block = String::new();
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        host_block.push_str(&pyurl::quote(h, false));
    }
    if let Some(port) = c.port.filter(|p| *p != 0) {
        if host_block.is_empty() && authority.is_empty() {
            host_block.push_str(&format!("@:{port}"));
        } else {
            host_block.push_str(&format!(":{port}"));
        }
    }
    let schema = c.schema.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = schema {
        host_block.push('/');
        host_block.push_str(&pyurl::quote(s, false));
    }
    uri.push_str(&host_block);
    if let Some(q) = query {
        uri.push_str(if schema.is_some() { "?" } else { "/?" });
        uri.push_str(q);
    }
    SecretValue::new(uri)
}

/// Python `urlencode(pairs)`: `quote_plus` on keys and values, joined with `&`.
fn urlencode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", pyurl::quote(k, true), pyurl::quote(v, true)))
        .collect::<Vec<_>>()
        .join("&")
}

// ---------------------------------------------------------------------------------------------
// URI parsing (spec §4.2)
// ---------------------------------------------------------------------------------------------

/// Airflow's `Connection(uri=…)` (ORM) or `Connection.from_uri` (task-sdk), exactly.
///
/// The input is used as given: trailing whitespace is kept, as Airflow keeps it (spec §10.7);
/// backends strip first (see [`deserialize`]).
pub fn parse_uri(uri: &str, reader: Reader) -> Result<Connection, ParseError> {
    // §4.2 step 1: the count of "://" decides whether the host carries a protocol.
    let schemes = uri.matches("://").count();
    if schemes > 2 {
        // 3.3.2 says "Invalid connection string." without echoing; so do we (§10.11).
        return Err(ParseError::new(
            "invalid connection URI: more than two '://'",
        ));
    }
    let host_with_protocol = schemes == 2;
    let first = pyurl::urlsplit(uri)?;
    let conn_type = first.scheme;
    // `replace` of EVERY occurrence of the lower-cased scheme + "://" (§9.10). An invalid scheme
    // is '' here, so every "://" becomes "//": `1abc://x` reads as schema `abc//x` (§10.2).
    let rest = uri.replace(
        &format!("{conn_type}://"),
        if host_with_protocol { "" } else { "//" },
    );
    if host_with_protocol {
        let before = rest.split("://").next().unwrap_or("");
        if before.contains('@') || before.contains(':') {
            return Err(ParseError::new(
                "invalid connection URI: the protocol in the host contains '@' or ':'",
            ));
        }
    }
    let parts = pyurl::urlsplit(&rest)?;
    let protocol = if host_with_protocol {
        Some(parts.scheme.as_str())
    } else {
        None
    };
    let mut host = parse_netloc_to_hostname(&parts);
    if !host.is_empty()
        && let Some(p) = protocol.filter(|p| !p.is_empty())
    {
        host = format!("{p}://{host}");
    }
    let quoted_schema: String = parts.path.chars().skip(1).collect();
    let schema = pyurl::unquote(&quoted_schema);
    let login = parts.username().map(pyurl::unquote);
    let password = parts.password().map(pyurl::unquote);
    let port = parts.port()?;
    let extra = if parts.query.is_empty() {
        None
    } else {
        let query = pyurl::parse_qsl(&parts.query);
        match query.iter().find(|(k, _)| k == EXTRA_KEY) {
            // `__extra__` wins and every other param is ignored (§4.2 step 8). It is taken raw,
            // even by the 3.1+ ORM (vector `dunder_extra_overrides_other_params`).
            Some((_, v)) => Some(v.clone()),
            None => {
                let obj = query
                    .into_iter()
                    .map(|(k, v)| {
                        // 3.1+ ORM only: a value that is valid JSON becomes the decoded value.
                        let value = match reader {
                            Reader::Orm3 => pyjson::loads(&v).unwrap_or(PyJson::Str(v)),
                            Reader::Orm2 | Reader::Sdk => PyJson::Str(v),
                        };
                        (k, value)
                    })
                    .collect();
                Some(pyjson::dumps(&PyJson::Object(obj)))
            }
        }
    };
    let conn = Connection {
        conn_type: Some(normalize_conn_type(&conn_type)),
        description: None,
        host: Some(host),
        login,
        // The ORM password setter ignores falsy values; the task-sdk keeps '' (§4.2).
        password: password
            .filter(|p| !(reader.is_orm() && p.is_empty()))
            .map(SecretValue::new),
        schema: Some(schema),
        port,
        extra: extra.map(SecretValue::new),
    };
    validate_extra(&conn, reader)?;
    Ok(conn)
}

/// Airflow's `_parse_netloc_to_hostname`: the lower-cased hostname, unless it contains '/'
/// after unquoting, in which case the raw netloc host part (case kept).
fn parse_netloc_to_hostname(parts: &pyurl::Split) -> String {
    let hostname = pyurl::unquote(&parts.hostname().unwrap_or_default());
    if !hostname.contains('/') {
        return hostname;
    }
    let mut h = parts.netloc.as_str();
    if let Some((_, after)) = h.rsplit_once('@') {
        h = after;
    }
    if let Some((before, _)) = h.split_once(':') {
        h = before;
    }
    pyurl::unquote(h)
}

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

fn field_items(c: &Connection) -> Vec<(String, PyJson)> {
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
fn extra_for_fields(c: &Connection) -> Option<PyJson> {
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

fn dict_items(m: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, PyJson)> {
    m.iter().map(|(k, v)| (k.clone(), pyjson::from_serde(v))).collect()
}

const FIELD_KEYS: [&str; 8] = [
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
enum Construct {
    /// `Connection.from_json`: conn_type normalised, port `int()`-ed, falsy port dropped.
    FromJson,
    /// `Connection(**dict)`: fields as given.
    Kwargs,
}

fn from_items(items: Vec<(String, PyJson)>, reader: Reader) -> Result<Connection, ParseError> {
    from_items_as(items, reader, Construct::FromJson)
}

fn from_items_as(items: Vec<(String, PyJson)>, reader: Reader, how: Construct) -> Result<Connection, ParseError> {
    from_items_for(&items, &[reader], how).pop().expect("one result per reader")
}

/// The fields of a dict as every reader takes them (the reader-independent part of the
/// constructor): computed once for all the readers of a prediction.
struct Taken {
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

fn take_fields(items: &[(String, PyJson)], how: Construct) -> Result<Taken, ParseError> {
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
fn check_keys(items: &[(String, PyJson)], reader: Reader) -> Result<(), ParseError> {
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
fn from_items_for(items: &[(String, PyJson)], readers: &[Reader], how: Construct) -> Vec<Result<Connection, ParseError>> {
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
fn python_int_port(v: &PyJson) -> Result<u16, ParseError> {
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
