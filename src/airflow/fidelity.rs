//! The reader model: which Airflow readers read a target, and what each of them builds from the
//! bytes a store would write, compared with the source as Airflow reads the source.
//!
//! One function decides what counts as "reads differently" ([`differences`]); the planner uses it
//! on what a store *would* write ([`crate::store::Store::read_as`]), `verify` on what a store *does*
//! hold. So the plan's losses and `verify`'s findings are the same model by construction.
//!
//! What is compared (spec §4.6 with the losses made explicit): host, login, schema, description and
//! password treat None and `''` alike (Airflow itself stores an empty password as NULL, and hooks test
//! them with `if`); `port` 0 and None differ (a hook passes 0 on); `conn_type` is compared as given,
//! so a normalisation (`postgresql` → `postgres`, `-` → `_`, lower-casing) is a loss; `extra` is
//! compared as parsed JSON (None, `''` and `{}` alike). Never a value in any text here.

use crate::airflow::connection::{self, Loss, Reader};
use crate::model::{Connection, SecretValue, Value};

/// The stable name of a reader in plans, JSON and `verify` (`airflow2`, `airflow3`, `task-sdk`).
pub fn reader_id(r: Reader) -> &'static str {
    match r {
        Reader::Orm2 => "airflow2",
        Reader::Orm3 => "airflow3",
        Reader::Sdk => "task-sdk",
    }
}

/// A reader for people, with the provider versions the vectors were recorded with.
pub fn reader_label(r: Reader) -> &'static str {
    match r {
        Reader::Orm2 => "Airflow 2.10 (ORM; hashicorp < 4.8)",
        Reader::Orm3 => "Airflow 3 scheduler/API server (ORM; hashicorp >= 4.8)",
        Reader::Sdk => "Airflow 3 workers (task-sdk)",
    }
}

/// The Airflow readers a target must satisfy (`[target] airflow_readers`), in a fixed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readers(Vec<Reader>);

/// The names `airflow_readers` accepts.
pub const READER_NAMES: &[&str] = &["2", "2.10", "3", "3-scheduler", "3-workers", "airflow2", "airflow3", "task-sdk"];

impl Default for Readers {
    fn default() -> Self {
        Self::all()
    }
}

impl Readers {
    /// Every reader this tool knows: Airflow 2.10, the Airflow 3 ORM and the Airflow 3 task-sdk.
    pub fn all() -> Self {
        Self(Reader::ALL.to_vec())
    }

    pub fn only(readers: &[Reader]) -> Self {
        let mut v: Vec<Reader> = Reader::ALL.into_iter().filter(|r| readers.contains(r)).collect();
        if v.is_empty() {
            v = Reader::ALL.to_vec();
        }
        Self(v)
    }

    /// `["2", "3"]` and friends: `2`/`2.10`/`airflow2` is Airflow 2.10; `3` is Airflow 3's
    /// scheduler and workers; `3-scheduler` (`airflow3`) and `3-workers` (`task-sdk`) one of them.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        if names.is_empty() {
            return Err("airflow_readers is empty; leave it out to check every known reader".into());
        }
        let mut set = Vec::new();
        for n in names {
            match n.as_ref().trim() {
                "2" | "2.10" | "airflow2" => set.push(Reader::Orm2),
                "3" => set.extend([Reader::Orm3, Reader::Sdk]),
                "3-scheduler" | "airflow3" => set.push(Reader::Orm3),
                "3-workers" | "task-sdk" => set.push(Reader::Sdk),
                other => {
                    return Err(format!(
                        "unknown Airflow reader {:?} in airflow_readers; known: {}",
                        other.escape_debug().to_string(),
                        READER_NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(Self::only(&set))
    }

    pub fn as_slice(&self) -> &[Reader] {
        &self.0
    }

    pub fn contains(&self, r: Reader) -> bool {
        self.0.contains(&r)
    }

    /// The reader a store decodes its own contents with when planning: the 3.x ORM when it is
    /// configured (it is the strictest), else the first configured one.
    pub fn primary(&self) -> Reader {
        if self.contains(Reader::Orm3) { Reader::Orm3 } else { self.0[0] }
    }

    pub fn ids(&self) -> Vec<&'static str> {
        self.0.iter().map(|r| reader_id(*r)).collect()
    }

    /// The readers of an Airflow release (`"2.10.5"`, `"3.3.0"`, as [`crate::airflow::metastore`]
    /// names it from the schema's alembic revision).
    pub fn for_airflow_version(version: &str) -> Self {
        match version.split('.').next() {
            Some("2") => Self::only(&[Reader::Orm2]),
            Some("3") => Self::only(&[Reader::Orm3, Reader::Sdk]),
            _ => Self::all(),
        }
    }

    /// For the plan header.
    pub fn describe(&self) -> String {
        self.0.iter().map(|r| reader_label(*r)).collect::<Vec<_>>().join(", ")
    }
}

/// One field a reader reads differently from the source, and the rule (never a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub field: &'static str,
    pub what: String,
}

fn d(field: &'static str, what: impl Into<String>) -> Difference {
    Difference { field, what: what.into() }
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn secret(v: &Option<SecretValue>) -> &str {
    v.as_ref().map(|x| x.expose_plaintext()).unwrap_or("")
}

/// What `read` (a value as a reader built it) differs in from `source` (the value as Airflow reads
/// the source), field by field. Empty: the reader reads the source exactly.
pub fn differences(source: &Value, read: &Value) -> Vec<Difference> {
    match (source, read) {
        (Value::Variable(a), Value::Variable(b)) => {
            let mut out = Vec::new();
            if a.value != b.value {
                let (x, y) = (a.value.expose_plaintext(), b.value.expose_plaintext());
                out.push(if x.trim() == y {
                    d("value", "surrounding whitespace is stripped")
                } else {
                    d("value", "reads back differently")
                });
            }
            if a.description.as_ref().is_some_and(|t| !t.is_empty()) && a.description != b.description {
                out.push(d("description", "the target does not store variable descriptions"));
            }
            out
        }
        (Value::Connection(a), Value::Connection(b)) => connection_differences(a, b),
        _ => vec![d("kind", "reads back as another kind of item")],
    }
}

/// [`differences`] for two connections, in Airflow's field order (conn_type, description, host,
/// login, password, schema, port, extra).
pub fn connection_differences(a: &Connection, b: &Connection) -> Vec<Difference> {
    let mut out = Vec::new();
    let (ta, tb) = (s(&a.conn_type), s(&b.conn_type));
    if ta.is_empty() && tb.is_empty() && a.conn_type.is_some() != b.conn_type.is_some() {
        // Hooks call string methods on conn_type: '' and None are not the same to them.
        out.push(if b.conn_type.is_none() {
            d("conn_type", "an empty conn_type reads back as None")
        } else {
            d("conn_type", "no conn_type reads back as ''")
        });
    } else if ta != tb {
        let lowered = ta.to_lowercase();
        out.push(if connection::normalize_conn_type(ta) == tb {
            if ta == "postgresql" { d("conn_type", "postgresql reads back as postgres") } else { d("conn_type", "'-' reads back as '_'") }
        } else if lowered == tb {
            d("conn_type", "upper case reads back lower-cased")
        } else if connection::normalize_conn_type(&lowered) == tb {
            d("conn_type", "reads back lower-cased and normalised ('-' as '_', postgresql as postgres)")
        } else if tb.is_empty() {
            d("conn_type", "reads back as no conn_type")
        } else {
            d("conn_type", "reads back differently")
        });
    }
    let (da, db) = (s(&a.description), s(&b.description));
    if da != db {
        out.push(if db.is_empty() {
            d("description", "the target does not give descriptions back to Airflow")
        } else {
            d("description", "reads back differently")
        });
    }
    let (ha, hb) = (s(&a.host), s(&b.host));
    if ha != hb {
        out.push(if ha.to_lowercase() == hb.to_lowercase() {
            d("host", "upper case reads back lower-cased")
        } else {
            d("host", "reads back differently")
        });
    }
    if s(&a.login) != s(&b.login) {
        out.push(d("login", "reads back differently"));
    }
    if secret(&a.password) != secret(&b.password) {
        out.push(d("password", "reads back differently"));
    }
    if s(&a.schema) != s(&b.schema) {
        out.push(d("schema", "reads back differently"));
    }
    if a.port != b.port {
        out.push(match (a.port, b.port) {
            (Some(0), None) => d("port", "port 0 reads back as no port"),
            (Some(_), None) => d("port", "reads back as no port"),
            _ => d("port", "reads back differently"),
        });
    }
    let (xa, xb) = (secret(&a.extra), secret(&b.extra));
    // Byte-equal extras read alike; parse only when they differ in text.
    if xa != xb && !connection::extra_equivalent(xa, xb) {
        out.push(d("extra", "reads back differently (URI query values JSON-decoded, or a non-object extra)"));
    }
    out
}

/// Group per-reader differences into plan losses: one per (field, rule), naming its readers.
pub fn group(per_reader: &[(Reader, Vec<Difference>)]) -> Vec<Loss> {
    let mut out: Vec<Loss> = Vec::new();
    for (r, diffs) in per_reader {
        for diff in diffs {
            match out.iter_mut().find(|l| l.field == diff.field && l.what == diff.what) {
                Some(l) => l.readers.push(reader_id(*r)),
                None => out.push(Loss { field: diff.field, what: diff.what.clone(), readers: vec![reader_id(*r)] }),
            }
        }
    }
    out
}

/// Whether a connection's extra is legacy: set, but not a JSON object (Airflow 2 wrote and reads
/// such rows; the Airflow 3 ORM refuses them).
pub fn legacy_extra(c: &Connection) -> bool {
    c.extra.as_ref().is_some_and(|e| !e.is_empty() && !connection::extra_is_object(e.expose_plaintext()))
}

/// `legacy_extra = "wrap"`: the raw text moved under `key`, so every reader reads
/// `extra_dejson[key]` as the text.
pub fn wrap_legacy_extra(c: &Connection, key: &str) -> Connection {
    let mut out = c.clone();
    if let Some(raw) = c.extra.as_ref() {
        let mut m = serde_json::Map::new();
        m.insert(key.to_string(), serde_json::Value::String(raw.expose_plaintext().to_string()));
        out.extra = Some(SecretValue::new(serde_json::Value::Object(m).to_string()));
    }
    out
}

/// What to do with a connection whose extra is not a JSON object (`[target] legacy_extra`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum LegacyExtra {
    /// An item error unless every configured reader reads it (only Airflow 2 and the task-sdk do).
    #[default]
    Refuse,
    /// Move the raw text under this key of a JSON object (`legacy_extra = "wrap"`, key from
    /// `legacy_extra_key`, default [`DEFAULT_LEGACY_KEY`]); reported as a loss of every reader.
    Wrap(String),
}

pub const DEFAULT_LEGACY_KEY: &str = "legacy_extra";

/// How faithfully a target must carry items: which readers, and what to do with legacy extras.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Fidelity {
    pub readers: Readers,
    pub legacy_extra: LegacyExtra,
    /// `airflow_readers = ["auto"]` (what `--from-airflow-env` sets): the readers of the Airflow
    /// version whose migrations the source metastore carries; every reader when it is unknown.
    pub auto_readers: bool,
}

/// The `[target]` keys that configure [`Fidelity`] rather than the store.
pub const FIDELITY_KEYS: &[&str] = &["airflow_readers", "legacy_extra", "legacy_extra_key"];

impl Fidelity {
    /// From a store's TOML table (its other keys are the store's own).
    pub fn from_table(t: &toml::Table) -> Result<Self, String> {
        let mut auto_readers = false;
        let readers = match t.get("airflow_readers") {
            None => Readers::all(),
            Some(toml::Value::Array(a)) if a.len() == 1 && a[0].as_str() == Some("auto") => {
                auto_readers = true;
                Readers::all()
            }
            Some(toml::Value::Array(a)) => {
                let names: Vec<&str> = a
                    .iter()
                    .map(|v| v.as_str().ok_or_else(|| "airflow_readers must be a list of strings".to_string()))
                    .collect::<Result<_, _>>()?;
                Readers::parse(&names)?
            }
            Some(_) => return Err("airflow_readers must be a list of strings, e.g. [\"2\", \"3\"]".into()),
        };
        let key = match t.get("legacy_extra_key") {
            None => DEFAULT_LEGACY_KEY.to_string(),
            Some(toml::Value::String(k)) if !k.is_empty() => k.clone(),
            Some(_) => return Err("legacy_extra_key must be a non-empty string".into()),
        };
        let legacy_extra = match t.get("legacy_extra").map(|v| v.as_str()) {
            None | Some(Some("refuse")) => LegacyExtra::Refuse,
            Some(Some("wrap")) => LegacyExtra::Wrap(key),
            _ => return Err("legacy_extra must be \"refuse\" (default) or \"wrap\"".into()),
        };
        Ok(Self { readers, legacy_extra, auto_readers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(t: &str, port: Option<u16>) -> Connection {
        Connection { conn_type: Some(t.into()), port, ..Connection::default() }
    }

    #[test]
    fn port_zero_and_normalised_types_are_differences() {
        let diffs = connection_differences(&conn("google-cloud-platform", Some(0)), &conn("google_cloud_platform", None));
        let fields: Vec<_> = diffs.iter().map(|d| d.field).collect();
        assert_eq!(fields, ["conn_type", "port"]);
        assert_eq!(diffs[1].what, "port 0 reads back as no port");
        assert!(connection_differences(&conn("postgres", Some(5432)), &conn("postgres", Some(5432))).is_empty());
    }

    #[test]
    fn none_and_empty_strings_read_alike() {
        let a = Connection { host: None, login: Some(String::new()), ..conn("x", None) };
        let b = Connection { host: Some(String::new()), login: None, ..conn("x", None) };
        assert!(connection_differences(&a, &b).is_empty());
    }

    #[test]
    fn readers_parse_and_group() {
        assert_eq!(Readers::parse(&["2", "3"]).unwrap(), Readers::all());
        assert_eq!(Readers::parse(&["3-workers"]).unwrap().primary(), Reader::Sdk);
        assert_eq!(Readers::parse(&["2"]).unwrap().primary(), Reader::Orm2);
        assert!(Readers::parse(&["4"]).is_err());
        let g = group(&[
            (Reader::Orm3, vec![d("port", "x")]),
            (Reader::Sdk, vec![d("port", "x"), d("host", "y")]),
        ]);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].readers, ["airflow3", "task-sdk"]);
    }

    #[test]
    fn legacy_extras_are_wrapped_under_a_key() {
        let mut c = conn("http", None);
        c.extra = Some(SecretValue::from("this is not json"));
        assert!(legacy_extra(&c));
        let w = wrap_legacy_extra(&c, "legacy_extra");
        assert!(!legacy_extra(&w));
        assert_eq!(w.extra.unwrap().expose_plaintext(), r#"{"legacy_extra":"this is not json"}"#);
        c.extra = Some(SecretValue::from(r#"{"a": 1}"#));
        assert!(!legacy_extra(&c));
    }
}
