//! Comparison and losses (spec §4.6, §9.8): whether Airflow reads two connections alike, and what
//! the URI and JSON forms cannot carry. Never a value in any text here.

use super::{Loss, pyjson, pyurl};
use crate::model::{Connection, SecretValue};

use super::pyjson::PyJson;
use super::normalize_conn_type;

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

