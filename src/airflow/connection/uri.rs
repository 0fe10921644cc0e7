//! Airflow's connection URIs: `get_uri()` as each reader writes it, and the URI parser
//! (Python `urlsplit` semantics), spec §4.1, §4.2, §4.6.

use super::*;

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
pub(super) fn flattenable(raw: &str) -> Option<Vec<(String, String)>> {
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
pub(super) fn build_uri(
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
pub(super) fn urlencode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
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
pub(super) fn parse_netloc_to_hostname(parts: &pyurl::Split) -> String {
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
