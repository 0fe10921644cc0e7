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

use self::pyjson::PyJson;

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
    // Keyword check first: Python raises TypeError for these whatever the values are.
    for (k, v) in &items {
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
        Some(v) if v.truthy() => Some(match v {
            PyJson::Str(s) => s.clone(),
            other => pyjson::dumps(other),
        }),
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
    let host = string("host")?;
    let login = string("login")?;
    let password = string("password")?;
    let schema = string("schema")?;
    let description = string("description")?;

    if let Some(uri) = get("uri").filter(|u| u.truthy()) {
        let mixed = conn_type.is_some()
            || [&host, &login, &password, &schema]
                .iter()
                .any(|f| f.as_deref().is_some_and(|s| !s.is_empty()))
            || port.is_some_and(|p| p != 0)
            || extra.is_some();
        if mixed {
            return Err(ParseError::new(
                "connection JSON mixes 'uri' with individual fields (Airflow refuses it)",
            ));
        }
        let PyJson::Str(uri) = uri else {
            return Err(ParseError::new("connection field 'uri' is not a string"));
        };
        let mut conn = parse_uri(uri, reader)?;
        conn.description = description;
        return Ok(conn);
    }

    let conn = Connection {
        conn_type,
        description,
        host,
        login,
        password: password
            .filter(|p| !(reader.is_orm() && p.is_empty()))
            .map(SecretValue::new),
        schema,
        port,
        extra: extra.map(SecretValue::new),
    };
    validate_extra(&conn, reader)?;
    Ok(conn)
}

/// Python `int(port)` for a truthy JSON value, then our model's u16 range.
fn python_int_port(v: &PyJson) -> Result<u16, ParseError> {
    let bad = || ParseError::new("connection field 'port' is not an integer");
    let digits: String = match v {
        PyJson::Bool(true) => "1".to_string(),
        PyJson::Int(s) => s.clone(),
        // int(float) truncates toward zero; NaN and infinities raise.
        PyJson::Float(f) if f.is_finite() => format!("{}", f.trunc()),
        PyJson::Str(s) => python_int_str(s).ok_or_else(bad)?,
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

/// Python `int(str)`: surrounding whitespace, an optional sign, ASCII digits with single `_`
/// between digits. (Python also accepts non-ASCII decimal digits; we refuse them.)
fn python_int_str(s: &str) -> Option<String> {
    let t = py_strip(s);
    let (sign, body) = match t.as_bytes().first()? {
        b'-' => ("-", &t[1..]),
        b'+' => ("", &t[1..]),
        _ => ("", t),
    };
    let b = body.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() || !b[b.len() - 1].is_ascii_digit() {
        return None;
    }
    let mut out = String::from(sign);
    let mut prev_underscore = false;
    for &ch in b {
        match ch {
            b'0'..=b'9' => {
                out.push(ch as char);
                prev_underscore = false;
            }
            b'_' if !prev_underscore => prev_underscore = true,
            _ => return None,
        }
    }
    Some(out)
}

/// Python `str.strip()` with no argument: Unicode whitespace, which (unlike Rust's `trim`)
/// includes U+001C..U+001F.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Airflow's `deserialize_connection`, as the string backends (env, GCP, SSM, Azure) call it after
/// their own `strip()`: a leading `{` means the JSON form, otherwise a URI.
pub fn deserialize(value: &str, reader: Reader) -> Result<Connection, ParseError> {
    let v = py_strip(value);
    if v.starts_with('{') {
        from_json(v, reader)
    } else {
        parse_uri(v, reader)
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison and losses (spec §4.6, §9.8)
// ---------------------------------------------------------------------------------------------

/// Whether Airflow would read `a` and `b` as the same connection (spec §4.6):
/// - conn_type per Airflow's normalisation (`postgresql` = `postgres`, `-` = `_`), None = `''`;
/// - host, login, schema, description: None = `''`;
/// - password: None = `''` (Airflow stores an empty password as NULL, §9.6);
/// - port: None = 0 (neither Airflow format can carry 0: both drop it with `if port:`);
/// - extra compared as parsed JSON (key order and formatting ignored); None, `''` and `{}` are
///   the same (all read as `extra_dejson == {}`); text that is not JSON compares verbatim.
pub fn equivalent(a: &Connection, b: &Connection) -> bool {
    fn s(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or("")
    }
    fn secret(v: &Option<SecretValue>) -> &str {
        v.as_ref().map(|x| x.expose_plaintext()).unwrap_or("")
    }
    normalize_conn_type(s(&a.conn_type)) == normalize_conn_type(s(&b.conn_type))
        && s(&a.host) == s(&b.host)
        && s(&a.login) == s(&b.login)
        && s(&a.schema) == s(&b.schema)
        && s(&a.description) == s(&b.description)
        && secret(&a.password) == secret(&b.password)
        && a.port.unwrap_or(0) == b.port.unwrap_or(0)
        && extra_equivalent(secret(&a.extra), secret(&b.extra))
}

/// Whether `raw` is a JSON object (what the 3.x ORM requires of a non-empty extra).
pub fn extra_is_object(raw: &str) -> bool {
    matches!(pyjson::loads(raw), Ok(PyJson::Object(_)))
}

/// Whether two raw extras read the same (`extra_dejson`): None, `''` and `{}` alike, JSON compared
/// as parsed, anything else verbatim.
pub fn extra_equivalent(a: &str, b: &str) -> bool {
    // None / '' / {} all mean "no extra" to Airflow.
    fn norm(raw: &str) -> Result<Option<PyJson>, &str> {
        if raw.is_empty() {
            return Ok(None);
        }
        match pyjson::loads(raw) {
            Ok(PyJson::Object(items)) if items.is_empty() => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(raw),
        }
    }
    match (norm(a), norm(b)) {
        (Ok(None), Ok(None)) => true,
        (Ok(Some(x)), Ok(Some(y))) => x.semantic_eq(&y),
        (Err(x), Err(y)) => x == y,
        _ => false,
    }
}

/// What the URI form written by [`to_uri`] cannot carry for `c`, judged against every reader:
/// fields that read back different (`equivalent` or not), or `field: "uri"` when the URI as a
/// whole would not read back as this connection. Never contains a value.
pub fn uri_losses(c: &Connection) -> Vec<Loss> {
    let mut out = Vec::new();
    if c.description.as_deref().is_some_and(|d| !d.is_empty()) {
        out.push(Loss::new("description", "a URI cannot carry a description"));
    }
    if c.port == Some(0) {
        out.push(Loss::new(
            "port",
            "port 0 is dropped (reads back as no port)",
        ));
    }
    if c.password.as_ref().is_some_and(|p| p.is_empty()) {
        out.push(Loss::new(
            "password",
            "an empty password reads back as no password",
        ));
    }
    let conn_type = c.conn_type.as_deref().filter(|t| !t.is_empty());
    let mut scheme = None;
    if let Some(t) = conn_type {
        let s = t.to_lowercase().replace('_', "-");
        if !pyurl::is_scheme(&s) {
            out.push(Loss::new(
                "uri",
                "conn_type is not a valid URI scheme: the URI does not read back",
            ));
        } else {
            if t.chars().any(char::is_uppercase) {
                out.push(Loss::new("conn_type", "upper case reads back lower-cased"));
            }
            if s == "postgresql" {
                out.push(Loss::new("conn_type", "postgresql reads back as postgres"));
            } else if t.contains('-') {
                out.push(Loss::new("conn_type", "'-' reads back as '_'"));
            }
            scheme = Some(s);
        }
    }
    if let Some(h) = c.host.as_deref().filter(|h| !h.is_empty()) {
        host_losses(h, c.conn_type.as_deref(), scheme.as_deref(), &mut out);
    }
    if let Some(raw) = c
        .extra
        .as_ref()
        .map(|e| e.expose_plaintext())
        .filter(|e| !e.is_empty())
    {
        match pyjson::loads(raw) {
            Ok(PyJson::Object(_)) => {}
            Ok(_) => out.push(Loss::new(
                "extra",
                "extra is JSON but not an object: Airflow 3.1+ ORM refuses the connection",
            )),
            Err(_) => out.push(Loss::new(
                "extra",
                "extra is not JSON: Airflow 3.1+ ORM refuses the connection",
            )),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Host rules of the URI round trip (`to_uri` then `_parse_from_uri`), spec §4.1 step 2, §4.2
/// steps 1, 3, 4.
fn host_losses(host: &str, conn_type: Option<&str>, scheme: Option<&str>, out: &mut Vec<Loss>) {
    let Some((proto, rest)) = host.split_once("://") else {
        plain_host_loss(host, out);
        return;
    };
    if conn_type == Some(proto) {
        // 3.x fix: the whole host is percent-encoded; it decodes to a value containing '/', so
        // the raw netloc is used and the host reads back exactly.
        return;
    }
    let Some(scheme) = scheme else {
        if conn_type.is_none_or(|t| t.is_empty()) {
            out.push(Loss::new(
                "uri",
                "a protocol in host needs a conn_type: the URI does not read back",
            ));
        }
        return;
    };
    if proto.is_empty() {
        out.push(Loss::new(
            "host",
            "an empty protocol before '://' in host is dropped",
        ));
        plain_host_loss(rest, out);
        return;
    }
    if proto.contains('@') || proto.contains(':') || !pyurl::is_scheme(proto) {
        out.push(Loss::new(
            "uri",
            "the protocol in host is not a valid URI scheme: the URI does not read back",
        ));
        return;
    }
    if proto.ends_with(scheme) {
        // `uri.replace(f"{scheme}://", "")` removes it from the protocol as well (§10.3).
        out.push(Loss::new(
            "uri",
            "the protocol in host ends with the conn_type: the URI does not read back",
        ));
        return;
    }
    if proto.chars().any(|ch| ch.is_ascii_uppercase()) {
        out.push(Loss::new(
            "host",
            "upper case in the host's protocol reads back lower-cased",
        ));
    }
    if rest.is_empty() {
        out.push(Loss::new(
            "host",
            "a protocol with nothing after '://' reads back as no host",
        ));
        return;
    }
    plain_host_loss(rest, out);
}

/// A percent-encoded host reads back with Python's `hostname`: lower-cased up to the first
/// encoded character (the first '%'), unless the decoded host contains '/', when it is exact.
fn plain_host_loss(host: &str, out: &mut Vec<Loss>) {
    if host.contains('/') {
        return;
    }
    let prefix_end = host
        .find(|ch: char| !pyurl::is_unreserved(ch))
        .unwrap_or(host.len());
    if host[..prefix_end].chars().any(|ch| ch.is_ascii_uppercase()) {
        out.push(Loss::new(
            "host",
            "upper case in host reads back lower-cased",
        ));
    }
}

/// What the JSON form ([`to_json`] / [`to_fields`]) cannot carry for `c` (spec §4.5): port 0 and
/// conn_type spellings that `from_json` normalises. Never contains a value.
pub fn json_losses(c: &Connection) -> Vec<Loss> {
    let mut out = Vec::new();
    if c.port == Some(0) {
        out.push(Loss::new(
            "port",
            "port 0 is dropped (reads back as no port)",
        ));
    }
    if let Some(t) = c.conn_type.as_deref() {
        if t == "postgresql" {
            out.push(Loss::new("conn_type", "postgresql reads back as postgres"));
        } else if t.contains('-') {
            out.push(Loss::new("conn_type", "'-' reads back as '_'"));
        }
    }
    if let Some(raw) = c
        .extra
        .as_ref()
        .map(|e| e.expose_plaintext())
        .filter(|e| !e.is_empty())
        && !matches!(pyjson::loads(raw), Ok(PyJson::Object(_)))
    {
        out.push(Loss::new(
            "extra",
            "extra is not a JSON object: Airflow 3.1+ ORM refuses the connection",
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Python urllib.parse (3.11), the parts Airflow uses
// ---------------------------------------------------------------------------------------------

mod pyurl {
    use super::ParseError;

    /// `quote(s, safe="")` (`plus == false`) or `quote_plus(s, safe="")`: UTF-8, upper-case hex,
    /// only `A-Za-z0-9_.-~` left as is.
    pub fn quote(s: &str, plus: bool) -> String {
        let mut out = String::with_capacity(s.len());
        for &b in s.as_bytes() {
            if is_unreserved(b as char) {
                out.push(b as char);
            } else if plus && b == b' ' {
                out.push('+');
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    pub fn is_unreserved(ch: char) -> bool {
        ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-' | '~')
    }

    /// `urlsplit`'s scheme rule: a first ASCII letter, then `[A-Za-z0-9+.-]`.
    pub fn is_scheme(s: &str) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    }

    /// `unquote(s)`: runs of ASCII are percent-decoded to bytes and decoded as UTF-8 with
    /// `errors="replace"`; an invalid escape such as `%ZZ` stays literal; `+` stays `+`.
    pub fn unquote(s: &str) -> String {
        if !s.contains('%') {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while !rest.is_empty() {
            let ascii_len = rest.find(|c: char| !c.is_ascii()).unwrap_or(rest.len());
            if ascii_len == 0 {
                let non_ascii = rest.find(|c: char| c.is_ascii()).unwrap_or(rest.len());
                out.push_str(&rest[..non_ascii]);
                rest = &rest[non_ascii..];
                continue;
            }
            out.push_str(&String::from_utf8_lossy(&unquote_to_bytes(
                &rest[..ascii_len],
            )));
            rest = &rest[ascii_len..];
        }
        out
    }

    /// `unquote_to_bytes`: `%XX` with two hex digits (either case) becomes the byte; anything
    /// else, including a lone or short `%`, is kept.
    fn unquote_to_bytes(ascii: &str) -> Vec<u8> {
        let b = ascii.as_bytes();
        let hex = |c: u8| (c as char).to_digit(16);
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
            {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    /// `parse_qsl(qs, keep_blank_values=True)`: only `&` separates; `+` is a space; a bare name
    /// gets `''`; empty pairs are skipped.
    pub fn parse_qsl(qs: &str) -> Vec<(String, String)> {
        // `dict(...)` of the result: the last duplicate wins, at the first one's position.
        let mut out: Vec<(String, String)> = Vec::new();
        for pair in qs.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = unquote(&name.replace('+', " "));
            let value = unquote(&value.replace('+', " "));
            match out.iter_mut().find(|(k, _)| *k == name) {
                Some(slot) => slot.1 = value,
                None => out.push((name, value)),
            }
        }
        out
    }

    /// The result of `urlsplit`.
    #[derive(Debug, Default)]
    pub struct Split {
        pub scheme: String,
        pub netloc: String,
        pub path: String,
        pub query: String,
    }

    /// Python 3.11 `urlsplit(url)` (fragment allowed, no default scheme).
    pub fn urlsplit(url: &str) -> Result<Split, ParseError> {
        // lstrip C0 controls and space; remove every tab, CR and LF.
        let url: String = url
            .trim_start_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
            .collect();
        let mut rest = url.as_str();
        let mut split = Split::default();
        if let Some(i) = rest.find(':')
            && i > 0
            && is_scheme(&rest[..i])
        {
            split.scheme = rest[..i].to_ascii_lowercase();
            rest = &rest[i + 1..];
        }
        if let Some(after) = rest.strip_prefix("//") {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            split.netloc = after[..end].to_string();
            rest = &after[end..];
            let (open, close) = (split.netloc.contains('['), split.netloc.contains(']'));
            if open != close {
                return Err(ParseError::new("invalid connection URI: invalid IPv6 URL"));
            }
            if open {
                let inner = split.netloc.split_once('[').map(|x| x.1).unwrap_or("");
                let bracketed = inner.split_once(']').map(|x| x.0).unwrap_or(inner);
                check_bracketed_host(bracketed)?;
            }
        }
        if let Some((before, _fragment)) = rest.split_once('#') {
            rest = before;
        }
        match rest.split_once('?') {
            Some((path, query)) => {
                split.path = path.to_string();
                split.query = query.to_string();
            }
            None => split.path = rest.to_string(),
        }
        check_netloc(&split.netloc)?;
        Ok(split)
    }

    /// Characters whose NFKC form contains one of `/?#@:` (Unicode 14, as Python 3.11's
    /// `unicodedata`); `_checknetloc` refuses a netloc containing one.
    const NFKC_NETLOC_BREAKERS: [char; 19] = [
        '\u{2047}', '\u{2048}', '\u{2049}', '\u{2100}', '\u{2101}', '\u{2105}', '\u{2106}',
        '\u{2A74}', '\u{FE13}', '\u{FE16}', '\u{FE55}', '\u{FE56}', '\u{FE5F}', '\u{FE6B}',
        '\u{FF03}', '\u{FF0F}', '\u{FF1A}', '\u{FF1F}', '\u{FF20}',
    ];

    fn check_netloc(netloc: &str) -> Result<(), ParseError> {
        if netloc.chars().any(|c| NFKC_NETLOC_BREAKERS.contains(&c)) {
            return Err(ParseError::new(
                "invalid connection URI: the host contains characters invalid under NFKC normalization",
            ));
        }
        Ok(())
    }

    /// `_check_bracketed_host`: `v<hex>.<something>` (IPvFuture) or an IPv6 address.
    fn check_bracketed_host(h: &str) -> Result<(), ParseError> {
        if let Some(rest) = h.strip_prefix('v') {
            let ok = rest.split_once('.').is_some_and(|(hex, tail)| {
                !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) && !tail.is_empty()
            });
            return if ok {
                Ok(())
            } else {
                Err(ParseError::new(
                    "invalid connection URI: invalid IPvFuture address",
                ))
            };
        }
        if is_ipv4(h) {
            return Err(ParseError::new(
                "invalid connection URI: an IPv4 address cannot be in brackets",
            ));
        }
        if is_ipv6(h) {
            Ok(())
        } else {
            Err(ParseError::new(
                "invalid connection URI: the bracketed host is not an IP address",
            ))
        }
    }

    /// `ipaddress.IPv4Address`: four decimal octets, no leading zeros, each ≤ 255.
    fn is_ipv4(s: &str) -> bool {
        let octets: Vec<&str> = s.split('.').collect();
        octets.len() == 4
            && octets.iter().all(|o| {
                !o.is_empty()
                    && o.len() <= 3
                    && o.bytes().all(|b| b.is_ascii_digit())
                    && !(o.len() > 1 && o.starts_with('0'))
                    && o.parse::<u16>().is_ok_and(|v| v <= 255)
            })
    }

    /// `ipaddress.IPv6Address` (with an optional `%scope`), following `_ip_int_from_string`.
    fn is_ipv6(s: &str) -> bool {
        let addr = match s.split_once('%') {
            Some((addr, scope)) => {
                if scope.is_empty() || scope.contains('%') {
                    return false;
                }
                addr
            }
            None => s,
        };
        if addr.is_empty() {
            return false;
        }
        let mut parts: Vec<String> = addr.split(':').map(str::to_string).collect();
        if parts.len() < 3 {
            return false;
        }
        if parts.last().is_some_and(|p| p.contains('.')) {
            let v4 = parts.pop().unwrap_or_default();
            if !is_ipv4(&v4) {
                return false;
            }
            parts.push("0".into());
            parts.push("0".into());
        }
        if parts.len() > 9 {
            return false;
        }
        let mut skip = None;
        for (i, p) in parts.iter().enumerate().take(parts.len() - 1).skip(1) {
            if p.is_empty() {
                if skip.is_some() {
                    return false;
                }
                skip = Some(i);
            }
        }
        let (hi, lo) = match skip {
            Some(i) => {
                let mut hi = i;
                let mut lo = parts.len() - i - 1;
                if parts[0].is_empty() {
                    if hi != 1 {
                        return false;
                    }
                    hi = 0;
                }
                if parts[parts.len() - 1].is_empty() {
                    if lo != 1 {
                        return false;
                    }
                    lo = 0;
                }
                if 8 < hi + lo + 1 {
                    return false;
                }
                (hi, lo)
            }
            None => {
                if parts.len() != 8 || parts[0].is_empty() || parts[7].is_empty() {
                    return false;
                }
                (8, 0)
            }
        };
        let hextet =
            |p: &String| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_hexdigit());
        parts[..hi].iter().all(hextet) && parts[parts.len() - lo..].iter().all(hextet)
    }

    impl Split {
        /// `(hostname, port)` before lower-casing: after the last '@', bracket-aware.
        fn hostinfo(&self) -> (&str, Option<&str>) {
            let hostinfo = self
                .netloc
                .rsplit_once('@')
                .map(|x| x.1)
                .unwrap_or(&self.netloc);
            let (hostname, port) = match hostinfo.split_once('[') {
                Some((_, bracketed)) => {
                    let (h, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
                    (h, after.split_once(':').map(|x| x.1).unwrap_or(""))
                }
                None => hostinfo.split_once(':').unwrap_or((hostinfo, "")),
            };
            (hostname, Some(port).filter(|p| !p.is_empty()))
        }

        /// `.hostname`: None when empty; lower-cased up to the first '%' (zone ids keep case).
        pub fn hostname(&self) -> Option<String> {
            let (h, _) = self.hostinfo();
            if h.is_empty() {
                return None;
            }
            Some(match h.split_once('%') {
                Some((a, b)) => format!("{}%{}", a.to_lowercase(), b),
                None => h.to_lowercase(),
            })
        }

        fn userinfo(&self) -> Option<(&str, Option<&str>)> {
            let (userinfo, _) = self.netloc.rsplit_once('@')?;
            Some(match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            })
        }

        pub fn username(&self) -> Option<&str> {
            self.userinfo().map(|(u, _)| u)
        }

        pub fn password(&self) -> Option<&str> {
            self.userinfo().and_then(|(_, p)| p)
        }

        /// `.port`: ASCII digits only, 0–65535; anything else raises.
        pub fn port(&self) -> Result<Option<u16>, ParseError> {
            let Some(p) = self.hostinfo().1 else {
                return Ok(None);
            };
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::new(
                    "invalid connection URI: the port is not an integer",
                ));
            }
            let digits = p.trim_start_matches('0');
            if digits.is_empty() {
                return Ok(Some(0));
            }
            match digits.parse::<u32>() {
                Ok(v) if digits.len() <= 5 && v <= 65535 => Ok(Some(v as u16)),
                _ => Err(ParseError::new(
                    "invalid connection URI: port out of range 0-65535",
                )),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Python json (3.11), `loads` and default `dumps`
// ---------------------------------------------------------------------------------------------

pub(crate) mod pyjson {
    use std::fmt;

    /// A value as Python's `json.loads` produces it. Integers keep every digit (Python ints are
    /// unbounded), floats may be NaN or infinite, objects keep order (duplicate keys collapsed:
    /// last value, first position, like a dict).
    #[derive(Clone, Debug, PartialEq)]
    pub enum PyJson {
        Null,
        Bool(bool),
        /// Canonical decimal digits with an optional leading '-' (never "-0").
        Int(String),
        Float(f64),
        Str(String),
        Array(Vec<PyJson>),
        Object(Vec<(String, PyJson)>),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct JsonError(&'static str);

    impl fmt::Display for JsonError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl PyJson {
        /// Python truthiness.
        pub fn truthy(&self) -> bool {
            match self {
                PyJson::Null => false,
                PyJson::Bool(b) => *b,
                PyJson::Int(s) => s != "0",
                PyJson::Float(f) => *f != 0.0,
                PyJson::Str(s) => !s.is_empty(),
                PyJson::Array(a) => !a.is_empty(),
                PyJson::Object(o) => !o.is_empty(),
            }
        }

        /// Structural equality with objects compared as maps. Types must match (1 ≠ 1.0 ≠ true:
        /// a hook may treat them differently); NaN equals NaN so the relation is reflexive.
        pub fn semantic_eq(&self, other: &PyJson) -> bool {
            match (self, other) {
                (PyJson::Float(a), PyJson::Float(b)) => a == b || (a.is_nan() && b.is_nan()),
                (PyJson::Array(a), PyJson::Array(b)) => {
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.semantic_eq(y))
                }
                (PyJson::Object(a), PyJson::Object(b)) => {
                    a.len() == b.len()
                        && a.iter().all(|(k, v)| {
                            b.iter()
                                .find(|(k2, _)| k2 == k)
                                .is_some_and(|(_, v2)| v.semantic_eq(v2))
                        })
                }
                (a, b) => a == b,
            }
        }
    }

    /// Python's default recursion limit makes deeper documents fail there too.
    const MAX_DEPTH: usize = 900;
    /// `sys.get_int_max_str_digits()` default (Python 3.11).
    const MAX_INT_DIGITS: usize = 4300;

    /// `json.loads(s)` for a `str`.
    pub fn loads(s: &str) -> Result<PyJson, JsonError> {
        if s.starts_with('\u{feff}') {
            return Err(JsonError("unexpected UTF-8 BOM"));
        }
        let mut p = Parser {
            s: s.as_bytes(),
            src: s,
            i: 0,
        };
        p.ws();
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(JsonError("extra data after the JSON value"));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        src: &'a str,
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }

        fn eat(&mut self, lit: &str) -> bool {
            if self.s[self.i..].starts_with(lit.as_bytes()) {
                self.i += lit.len();
                true
            } else {
                false
            }
        }

        fn value(&mut self, depth: usize) -> Result<PyJson, JsonError> {
            if depth > MAX_DEPTH {
                return Err(JsonError("nested too deeply"));
            }
            let Some(&c) = self.s.get(self.i) else {
                return Err(JsonError("expecting a value"));
            };
            match c {
                b'{' => self.object(depth),
                b'[' => self.array(depth),
                b'"' => Ok(PyJson::Str(self.string()?)),
                b'n' if self.eat("null") => Ok(PyJson::Null),
                b't' if self.eat("true") => Ok(PyJson::Bool(true)),
                b'f' if self.eat("false") => Ok(PyJson::Bool(false)),
                b'N' if self.eat("NaN") => Ok(PyJson::Float(f64::NAN)),
                b'I' if self.eat("Infinity") => Ok(PyJson::Float(f64::INFINITY)),
                b'-' if self.eat("-Infinity") => Ok(PyJson::Float(f64::NEG_INFINITY)),
                b'-' | b'0'..=b'9' => self.number(),
                _ => Err(JsonError("expecting a value")),
            }
        }

        fn digits(&mut self) -> usize {
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            self.i - start
        }

        fn number(&mut self) -> Result<PyJson, JsonError> {
            let start = self.i;
            if self.s[self.i] == b'-' {
                self.i += 1;
            }
            // -?(0|[1-9]\d*)
            match self.s.get(self.i) {
                Some(b'0') => self.i += 1,
                Some(b'1'..=b'9') => {
                    self.digits();
                }
                _ => return Err(JsonError("expecting a value")),
            }
            let int_end = self.i;
            let mut is_float = false;
            if self.s.get(self.i) == Some(&b'.')
                && self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit)
            {
                self.i += 1;
                self.digits();
                is_float = true;
            }
            if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
                let save = self.i;
                self.i += 1;
                if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                if self.digits() == 0 {
                    self.i = save;
                } else {
                    is_float = true;
                }
            }
            let text = &self.src[start..self.i];
            if is_float {
                let f: f64 = text.parse().map_err(|_| JsonError("invalid number"))?;
                Ok(PyJson::Float(f))
            } else {
                let t = &self.src[start..int_end];
                if t.trim_start_matches('-').len() > MAX_INT_DIGITS {
                    return Err(JsonError("integer exceeds the digit limit"));
                }
                Ok(PyJson::Int(if t == "-0" {
                    "0".to_string()
                } else {
                    t.to_string()
                }))
            }
        }

        fn hex4(&mut self) -> Result<u32, JsonError> {
            let h = self
                .src
                .get(self.i..self.i + 4)
                .ok_or(JsonError("invalid \\u escape"))?;
            if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(JsonError("invalid \\u escape"));
            }
            self.i += 4;
            u32::from_str_radix(h, 16).map_err(|_| JsonError("invalid \\u escape"))
        }

        fn string(&mut self) -> Result<String, JsonError> {
            self.i += 1; // opening quote
            let mut out = String::new();
            loop {
                let start = self.i;
                while self.i < self.s.len()
                    && !matches!(self.s[self.i], b'"' | b'\\')
                    && self.s[self.i] >= 0x20
                {
                    self.i += 1;
                }
                out.push_str(&self.src[start..self.i]);
                match self.s.get(self.i) {
                    None => return Err(JsonError("unterminated string")),
                    Some(b'"') => {
                        self.i += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        self.i += 1;
                        let Some(&e) = self.s.get(self.i) else {
                            return Err(JsonError("unterminated string"));
                        };
                        self.i += 1;
                        match e {
                            b'"' => out.push('"'),
                            b'\\' => out.push('\\'),
                            b'/' => out.push('/'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'n' => out.push('\n'),
                            b'r' => out.push('\r'),
                            b't' => out.push('\t'),
                            b'u' => {
                                let mut cp = self.hex4()?;
                                if (0xD800..=0xDBFF).contains(&cp)
                                    && self.s[self.i..].starts_with(b"\\u")
                                {
                                    let save = self.i;
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if (0xDC00..=0xDFFF).contains(&lo) {
                                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                    } else {
                                        self.i = save;
                                    }
                                }
                                // Python keeps a lone surrogate in the str; Rust strings cannot.
                                let ch = char::from_u32(cp)
                                    .ok_or(JsonError("lone surrogate in string"))?;
                                out.push(ch);
                            }
                            _ => return Err(JsonError("invalid escape")),
                        }
                    }
                    Some(_) => return Err(JsonError("invalid control character in string")),
                }
            }
        }

        fn array(&mut self, depth: usize) -> Result<PyJson, JsonError> {
            self.i += 1;
            let mut out = Vec::new();
            self.ws();
            if self.s.get(self.i) == Some(&b']') {
                self.i += 1;
                return Ok(PyJson::Array(out));
            }
            loop {
                self.ws();
                out.push(self.value(depth + 1)?);
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        return Ok(PyJson::Array(out));
                    }
                    _ => return Err(JsonError("expecting ',' delimiter")),
                }
            }
        }

        fn object(&mut self, depth: usize) -> Result<PyJson, JsonError> {
            self.i += 1;
            let mut out: Vec<(String, PyJson)> = Vec::new();
            self.ws();
            if self.s.get(self.i) == Some(&b'}') {
                self.i += 1;
                return Ok(PyJson::Object(out));
            }
            loop {
                self.ws();
                if self.s.get(self.i) != Some(&b'"') {
                    return Err(JsonError("expecting a property name in double quotes"));
                }
                let key = self.string()?;
                self.ws();
                if self.s.get(self.i) != Some(&b':') {
                    return Err(JsonError("expecting ':' delimiter"));
                }
                self.i += 1;
                self.ws();
                let v = self.value(depth + 1)?;
                match out.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = v,
                    None => out.push((key, v)),
                }
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(PyJson::Object(out));
                    }
                    _ => return Err(JsonError("expecting ',' delimiter")),
                }
            }
        }
    }

    /// `json.dumps(v)` with the defaults: `", "` / `": "`, `ensure_ascii=True`, `allow_nan=True`.
    pub fn dumps(v: &PyJson) -> String {
        let mut out = String::new();
        dump(v, &mut out);
        out
    }

    fn dump(v: &PyJson, out: &mut String) {
        match v {
            PyJson::Null => out.push_str("null"),
            PyJson::Bool(true) => out.push_str("true"),
            PyJson::Bool(false) => out.push_str("false"),
            PyJson::Int(s) => out.push_str(s),
            PyJson::Float(f) => out.push_str(&float_repr(*f)),
            PyJson::Str(s) => dump_str(s, out),
            PyJson::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    dump(x, out);
                }
                out.push(']');
            }
            PyJson::Object(o) => {
                out.push('{');
                for (i, (k, x)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    dump_str(k, out);
                    out.push_str(": ");
                    dump(x, out);
                }
                out.push('}');
            }
        }
    }

    fn dump_str(s: &str, out: &mut String) {
        out.push('"');
        for ch in s.chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                ' '..='~' => out.push(ch),
                _ => {
                    let mut buf = [0u16; 2];
                    for unit in ch.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out.push('"');
    }

    /// `float.__repr__` (shortest round-trip digits; exponent form when the decimal exponent is
    /// below -4 or at least 16), with json's `NaN` / `Infinity` spellings.
    pub fn float_repr(f: f64) -> String {
        if f.is_nan() {
            return "NaN".into();
        }
        if f.is_infinite() {
            return if f > 0.0 {
                "Infinity".into()
            } else {
                "-Infinity".into()
            };
        }
        let sign = if f.is_sign_negative() { "-" } else { "" };
        let (digits, exp) = shortest_digits(f.abs());
        let n = digits.len() as i32;
        if !(-4..16).contains(&exp) {
            let mut m = digits[..1].to_string();
            if n > 1 {
                m.push('.');
                m.push_str(&digits[1..]);
            }
            let esign = if exp < 0 { '-' } else { '+' };
            return format!("{sign}{m}e{esign}{:02}", exp.abs());
        }
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point >= n {
            format!("{}{}.0", digits, "0".repeat((point - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    }

    /// The shortest decimal digits that read back as `f` (≥ 0) and the decimal exponent of the
    /// first digit, chosen as Python's `repr` chooses them: among the shortest candidates, the
    /// one nearest the exact binary value, ties to even. Rust's `{:e}` gives the right length but
    /// rounds an exact tie up (`190068353379924.125` → `…4.13`, Python `…4.12`), so the digits
    /// are re-derived from the exact expansion.
    fn shortest_digits(f: f64) -> (String, i32) {
        let sci = format!("{f:e}");
        let (mantissa, _) = sci.split_once('e').expect("{:e} always has an exponent");
        let n = mantissa.chars().filter(char::is_ascii_digit).count();
        // 800 places hold the exact expansion of every f64 (the longest has 767 digits).
        let exact = format!("{f:.800e}");
        let (mantissa, exp) = exact.split_once('e').expect("{:e} always has an exponent");
        let mut exp: i32 = exp.parse().expect("{:e} exponent is an integer");
        let all: Vec<u8> = mantissa
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        let mut kept = all[..n].to_vec();
        let rest = &all[n..];
        let round_up = match rest.first() {
            Some(d) if *d > 5 => true,
            Some(5) => rest[1..].iter().any(|d| *d != 0) || kept[n - 1] % 2 == 1,
            _ => false,
        };
        if round_up {
            let mut i = n;
            loop {
                if i == 0 {
                    kept.insert(0, 1);
                    kept.pop();
                    exp += 1;
                    break;
                }
                i -= 1;
                if kept[i] == 9 {
                    kept[i] = 0;
                } else {
                    kept[i] += 1;
                    break;
                }
            }
        }
        while kept.len() > 1 && kept.last() == Some(&0) {
            kept.pop();
        }
        (kept.iter().map(|d| char::from(b'0' + d)).collect(), exp)
    }

    /// The serde_json value with the same meaning, when serde_json can hold it exactly.
    pub fn to_serde(v: &PyJson) -> Option<serde_json::Value> {
        use serde_json::Value;
        Some(match v {
            PyJson::Null => Value::Null,
            PyJson::Bool(b) => Value::Bool(*b),
            PyJson::Int(s) => {
                if let Ok(i) = s.parse::<i64>() {
                    Value::from(i)
                } else {
                    Value::from(s.parse::<u64>().ok()?)
                }
            }
            PyJson::Float(f) => Value::Number(serde_json::Number::from_f64(*f)?),
            PyJson::Str(s) => Value::String(s.clone()),
            PyJson::Array(a) => Value::Array(a.iter().map(to_serde).collect::<Option<_>>()?),
            PyJson::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| Some((k.clone(), to_serde(x)?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }

    /// A serde_json value as Python would have parsed the same JSON text.
    pub fn from_serde(v: &serde_json::Value) -> PyJson {
        use serde_json::Value;
        match v {
            Value::Null => PyJson::Null,
            Value::Bool(b) => PyJson::Bool(*b),
            Value::Number(n) => {
                if n.is_i64() || n.is_u64() {
                    PyJson::Int(n.to_string())
                } else {
                    PyJson::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => PyJson::Str(s.clone()),
            Value::Array(a) => PyJson::Array(a.iter().map(from_serde).collect()),
            Value::Object(o) => {
                PyJson::Object(o.iter().map(|(k, x)| (k.clone(), from_serde(x))).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pyjson::{self, PyJson};
    use super::pyurl;
    use super::*;

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
