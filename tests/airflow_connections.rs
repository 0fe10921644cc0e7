//! The connection codecs against real Airflow: every case of `tests/data/connections.json`
//! (input cases and raw URI cases), the string payloads of `backend_names.json` for the
//! env / GCP / SSM / Azure backends, and round-trip properties of our writers.
//!
//! Each vector test walks the whole file, collects every mismatch and reports all failing case
//! names at once. Result keys it does not know are failures too, so nothing is skipped silently.

use std::collections::BTreeSet;

use airflow_secrets_sync::airflow::connection::{
    self as codec, Loss, ParseError, Reader, deserialize, equivalent, from_fields, from_json,
    get_uri, parse_uri, to_fields, to_json, to_uri, uri_losses,
};
use airflow_secrets_sync::model::{Connection, SecretValue};
use serde_json::{Map, Value};

fn testdata(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The recorded Airflow labels and the readers they stand for: (label, ORM reader, sdk reader).
const LABELS: [(&str, Reader, Option<Reader>); 2] = [
    ("airflow_3.3.2", Reader::Orm3, Some(Reader::Sdk)),
    ("airflow_2.10.5", Reader::Orm2, None),
];

fn opt_str(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => panic!("field {key} is not a string: {other}"),
    }
}

/// A connection from a recorded field dict (or a case's `input` kwargs). Every recorded port
/// fits in u16 (the largest is 65535); a larger one would be a vector our model cannot hold and
/// this panics rather than skip it.
fn conn_from(v: &Value) -> Connection {
    let port = match v.get("port") {
        None | Some(Value::Null) => None,
        Some(p) => {
            Some(u16::try_from(p.as_u64().expect("port is an integer")).expect("port fits u16"))
        }
    };
    Connection {
        conn_type: opt_str(v, "conn_type"),
        description: opt_str(v, "description"),
        host: opt_str(v, "host"),
        login: opt_str(v, "login"),
        password: opt_str(v, "password").map(SecretValue::new),
        schema: opt_str(v, "schema"),
        port,
        extra: opt_str(v, "extra").map(SecretValue::new),
    }
}

fn secret(v: &Option<SecretValue>) -> Option<&str> {
    v.as_ref().map(|s| s.expose_plaintext())
}

/// Compare our result with one recorded Airflow step (`{"error": …}` or a field dict). Every
/// field must be identical, `extra` byte for byte; `extra_dejson` must match our extra parsed.
fn check_step(
    ctx: &str,
    ours: &Result<Connection, ParseError>,
    want: &Value,
    fails: &mut Vec<String>,
) {
    if want.get("error").is_some() {
        if ours.is_ok() {
            fails.push(format!(
                "{ctx}: Airflow raised ({}), we parsed",
                want["error"]
            ));
        }
        return;
    }
    let c = match ours {
        Ok(c) => c,
        Err(e) => {
            fails.push(format!("{ctx}: we failed ({e}), Airflow parsed"));
            return;
        }
    };
    let mut diff = Vec::new();
    let mut cmp = |name: &str, got: Option<&str>| {
        let exp = want.get(name).and_then(Value::as_str);
        if got != exp {
            diff.push(format!("{name}: got {got:?} want {exp:?}"));
        }
    };
    cmp("conn_type", c.conn_type.as_deref());
    cmp("host", c.host.as_deref());
    cmp("login", c.login.as_deref());
    cmp("password", secret(&c.password));
    cmp("schema", c.schema.as_deref());
    cmp("extra", secret(&c.extra));
    cmp("description", c.description.as_deref());
    let want_port = want.get("port").and_then(Value::as_u64);
    if c.port.map(u64::from) != want_port {
        diff.push(format!("port: got {:?} want {want_port:?}", c.port));
    }
    // extra_dejson: {} for no extra and (sdk, 2.x) for text that is not JSON.
    let dejson = match secret(&c.extra).filter(|e| !e.is_empty()) {
        None => Value::Object(Map::new()),
        Some(e) => serde_json::from_str(e).unwrap_or(Value::Object(Map::new())),
    };
    if want.get("extra_dejson") != Some(&dejson) {
        diff.push(format!(
            "extra_dejson: got {dejson} want {:?}",
            want.get("extra_dejson")
        ));
    }
    if !diff.is_empty() {
        fails.push(format!("{ctx}: {}", diff.join("; ")));
    }
}

fn report(what: &str, fails: Vec<String>) {
    assert!(
        fails.is_empty(),
        "{} {what} mismatches:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

fn as_map(v: &Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

#[test]
fn input_cases_match_airflow() {
    let data = testdata("connections.json");
    let cases = data["input_cases"].as_array().expect("input_cases");
    assert_eq!(cases.len(), 51, "README promises 51 input cases");
    let mut fails = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let input = &case["input"];
        let c = conn_from(input);
        for (label, orm, sdk) in LABELS {
            let r = &case["results"][label];
            let r = r
                .as_object()
                .unwrap_or_else(|| panic!("{name}: no results for {label}"));
            let ctx = |step: &str| format!("{name} [{label}] {step}");
            let mut seen: BTreeSet<&str> = BTreeSet::new();

            // The ORM constructor. When it raised (3.1+ refusing a non-object extra), our reading
            // of the same field dict must refuse it too.
            if let Some(err) = r.get("orm_construct") {
                seen.insert("orm_construct");
                assert!(
                    err.get("error").is_some(),
                    "{name}: orm_construct without error"
                );
                if from_fields(&as_map(input), orm).is_ok() {
                    fails.push(ctx(
                        "orm_construct: Airflow refused the fields, we accepted them",
                    ));
                }
            }
            if let Some(built) = r.get("orm_constructed_fields") {
                seen.insert("orm_constructed_fields");
                // Construction only drops an empty password: the same connection to Airflow.
                if !equivalent(&c, &conn_from(built)) {
                    fails.push(ctx("orm_constructed_fields: not equivalent to the input"));
                }
            }

            // get_uri() and parsing it back with every reader.
            if let Some(uri) = r.get("orm_get_uri") {
                seen.insert("orm_get_uri");
                let uri = uri.as_str().expect("orm_get_uri is a string");
                let ours = get_uri(&c, orm);
                if ours.expose_plaintext() != uri {
                    fails.push(ctx(&format!(
                        "orm_get_uri: got {:?} want {uri:?}",
                        ours.expose_plaintext()
                    )));
                }
                for (key, reader) in [
                    ("parse_orm_get_uri__orm", Some(orm)),
                    ("parse_orm_get_uri__sdk", sdk),
                ] {
                    if let Some(want) = r.get(key) {
                        seen.insert(key);
                        let reader =
                            reader.unwrap_or_else(|| panic!("{name}: {key} without an sdk"));
                        check_step(&ctx(key), &parse_uri(uri, reader), want, &mut fails);
                    }
                }
            }
            if let Some(uri) = r.get("sdk_get_uri") {
                seen.insert("sdk_get_uri");
                let uri = uri.as_str().expect("sdk_get_uri is a string");
                let ours = get_uri(&c, Reader::Sdk);
                if ours.expose_plaintext() != uri {
                    fails.push(ctx(&format!(
                        "sdk_get_uri: got {:?} want {uri:?}",
                        ours.expose_plaintext()
                    )));
                }
                for (key, reader) in [
                    ("parse_sdk_get_uri__sdk", Reader::Sdk),
                    ("parse_sdk_get_uri__orm", orm),
                ] {
                    if let Some(want) = r.get(key) {
                        seen.insert(key);
                        check_step(&ctx(key), &parse_uri(uri, reader), want, &mut fails);
                    }
                }
            }

            // as_json() / from_json().
            if let Some(js) = r.get("orm_as_json") {
                seen.insert("orm_as_json");
                let js = js.as_str().expect("orm_as_json is a string");
                for (key, reader) in [
                    ("from_json_orm_as_json__orm", Some(orm)),
                    ("from_json_orm_as_json__sdk", sdk),
                ] {
                    if let Some(want) = r.get(key) {
                        seen.insert(key);
                        let reader =
                            reader.unwrap_or_else(|| panic!("{name}: {key} without an sdk"));
                        check_step(&ctx(key), &from_json(js, reader), want, &mut fails);
                        check_our_json(&ctx(key), &c, js, reader, &mut fails);
                    }
                }
                let built = conn_from(&r["orm_constructed_fields"]);
                check_json_bytes(&ctx("orm_as_json"), &built, js, &mut fails);
            }
            if let Some(built) = r.get("sdk_constructed_fields") {
                seen.insert("sdk_constructed_fields");
                if !equivalent(&c, &conn_from(built)) {
                    fails.push(ctx("sdk_constructed_fields: not equivalent to the input"));
                }
                if let Some(js) = r.get("sdk_as_json") {
                    seen.insert("sdk_as_json");
                    let js = js.as_str().expect("sdk_as_json is a string");
                    check_json_bytes(&ctx("sdk_as_json"), &conn_from(built), js, &mut fails);
                    check_our_json(&ctx("sdk_as_json"), &c, js, Reader::Sdk, &mut fails);
                }
            }
            if r.contains_key("sdk_construct") {
                // No vector has the task-sdk refusing a constructor call; if one appears, this
                // test must learn what it means.
                fails.push(ctx("sdk_construct: new kind of vector, not handled"));
            }
            for key in r.keys() {
                if !seen.contains(key.as_str()) {
                    fails.push(ctx(&format!("result key {key:?} was not checked")));
                }
            }
        }
    }
    report("input-case", fails);
}

/// `to_json` against Airflow's `as_json()` text for the same constructed connection: identical
/// bytes whenever the extra is absent or a JSON object. For an extra that is not an object we
/// deliberately write it as a string (so no reader loses it): check that instead.
fn check_json_bytes(ctx: &str, built: &Connection, airflow_json: &str, fails: &mut Vec<String>) {
    let ours = to_json(built);
    let extra_is_object = match secret(&built.extra) {
        None => true,
        Some(e) => matches!(serde_json::from_str::<Value>(e), Ok(Value::Object(_))),
    };
    if extra_is_object {
        if ours.expose_plaintext() != airflow_json {
            fails.push(format!(
                "{ctx}: to_json {:?} != {airflow_json:?}",
                ours.expose_plaintext()
            ));
        }
    } else {
        let v: Value = serde_json::from_str(ours.expose_plaintext()).expect("our JSON parses");
        if v.get("extra").and_then(Value::as_str) != secret(&built.extra) {
            fails.push(format!(
                "{ctx}: a non-object extra must be written as the raw string"
            ));
        }
    }
}

/// Our `to_json(c)` read by `reader` must be the connection Airflow's own JSON reads as, except
/// where Airflow's `as_json()` loses something we keep (a non-JSON extra, which 2.x and the sdk
/// omit): then ours must still carry the input's extra.
fn check_our_json(
    ctx: &str,
    c: &Connection,
    airflow_json: &str,
    reader: Reader,
    fails: &mut Vec<String>,
) {
    let theirs = from_json(airflow_json, reader);
    let ours = from_json(to_json(c).expose_plaintext(), reader);
    match (&theirs, &ours) {
        (Ok(t), Ok(o)) if equivalent(t, o) => {}
        (Ok(t), Ok(o)) => {
            let airflow_dropped_extra = secret(&t.extra).is_none()
                && secret(&c.extra).is_some_and(|e| serde_json::from_str::<Value>(e).is_err());
            if !(airflow_dropped_extra && equivalent(o, c)) {
                fails.push(format!(
                    "{ctx}: our to_json reads back differently from Airflow's as_json"
                ));
            }
        }
        (Err(_), Err(_)) => {}
        _ => fails.push(format!(
            "{ctx}: our to_json read back {} but Airflow's {}",
            if ours.is_ok() { "ok" } else { "as an error" },
            if theirs.is_ok() { "ok" } else { "as an error" }
        )),
    }
}

#[test]
fn uri_cases_match_airflow() {
    let data = testdata("connections.json");
    let cases = data["uri_cases"].as_array().expect("uri_cases");
    assert_eq!(cases.len(), 40, "README promises 40 raw URIs");
    let mut fails = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let uri = case["uri"].as_str().expect("uri");
        for (label, orm, sdk) in LABELS {
            let r = case["results"][label]
                .as_object()
                .unwrap_or_else(|| panic!("{name}: no {label}"));
            for (key, want) in r {
                let reader = match (key.as_str(), sdk) {
                    ("orm", _) => orm,
                    ("sdk", Some(sdk)) => sdk,
                    _ => {
                        fails.push(format!("{name} [{label}]: unknown result key {key:?}"));
                        continue;
                    }
                };
                check_step(
                    &format!("{name} [{label}] {key}"),
                    &parse_uri(uri, reader),
                    want,
                    &mut fails,
                );
            }
        }
    }
    report("uri-case", fails);
}

/// The string payloads that env, GCP, SSM and Azure hand to `deserialize_connection`.
#[test]
fn backend_string_payloads_match_airflow() {
    let data = testdata("backend_names.json");
    let payloads = data["payloads"].as_array().expect("payloads");
    let mut fails = Vec::new();
    let mut checked = 0;
    for p in payloads {
        let backend = p["backend"].as_str().expect("backend");
        match backend {
            "SystemsManagerParameterStoreBackend"
            | "CloudSecretManagerBackend"
            | "AzureKeyVaultBackend"
            | "EnvironmentVariablesBackend" => {}
            // Vault stores a field dict and AWS SM maps alias keys before parsing: their own
            // store tests cover those payloads.
            "VaultBackend" | "SecretsManagerBackend" => continue,
            other => {
                fails.push(format!("unknown backend {other:?} in payloads"));
                continue;
            }
        }
        let name = format!(
            "{backend}/{}",
            p["payload_name"].as_str().expect("payload_name")
        );
        let stored = p["stored"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: stored is not a string"));
        for (label, orm, _) in LABELS {
            let got = &p["results"][label]["connection"];
            let ctx = format!("{name} [{label}]");
            checked += 1;
            if stored.is_empty() {
                // Every backend treats an empty secret as "not found" before parsing (spec §9.19):
                // not a codec input. Assert the vector says so rather than skipping it.
                if !got["returned"].is_null() || got.get("error").is_some() {
                    fails.push(format!(
                        "{ctx}: an empty payload was expected to read as missing"
                    ));
                }
                continue;
            }
            let ours = deserialize(stored, orm);
            if let Some(err) = got.get("error").and_then(Value::as_str) {
                // Airflow's TypeError names the offending keyword; ours must name the same key.
                match (&ours, err.split('\'').nth(1)) {
                    (Err(e), Some(key)) if e.to_string().contains(&format!("'{key}'")) => {}
                    (Err(e), _) => fails.push(format!(
                        "{ctx}: error {e:?} does not name the key of {err:?}"
                    )),
                    (Ok(_), _) => fails.push(format!("{ctx}: Airflow raised ({err}), we parsed")),
                }
                continue;
            }
            check_step(&ctx, &ours, &got["returned"], &mut fails);
        }
    }
    assert_eq!(
        checked,
        4 * 12 * 2,
        "4 string backends x 12 payloads x 2 versions"
    );
    report("payload", fails);
}

// ------------------------------------------------------------------------------------------
// Round-trip properties of our writers
// ------------------------------------------------------------------------------------------

fn conn(conn_type: Option<&str>, host: Option<&str>) -> Connection {
    Connection {
        conn_type: conn_type.map(Into::into),
        host: host.map(Into::into),
        ..Default::default()
    }
}

fn with_extra(mut c: Connection, extra: &str) -> Connection {
    c.extra = Some(SecretValue::new(extra));
    c
}

/// Hand-picked connections that stress every rule, plus every input case of the vectors.
fn tricky_connections() -> Vec<(String, Connection)> {
    let all_ascii: String = (0x20u8..0x7f).map(char::from).collect();
    let full = Connection {
        conn_type: Some("postgres".into()),
        description: Some("desc".into()),
        host: Some("db.example.com".into()),
        login: Some("us@er:x/%+ y".into()),
        password: Some(SecretValue::new(format!("{all_ascii}\t\nü€😀"))),
        schema: Some("a/b?c#d %2F".into()),
        port: Some(5432),
        extra: Some(SecretValue::new(
            r#"{"sslmode": "require", "a b": "c&d=e+f"}"#,
        )),
    };
    let mut out: Vec<(String, Connection)> = vec![
        ("full".into(), full),
        ("empty".into(), Connection::default()),
        ("empty_conn_type".into(), conn(Some(""), Some("h"))),
        (
            "upper_protocol".into(),
            conn(Some("http"), Some("HTTPS://Api.Example.com/Path")),
        ),
        (
            "upper_conn_type_same_protocol".into(),
            conn(Some("HTTP"), Some("http://x.example.com")),
        ),
        (
            "protocol_ends_with_scheme".into(),
            conn(Some("s"), Some("https://x")),
        ),
        ("empty_protocol".into(), conn(Some("http"), Some("://Xy"))),
        (
            "protocol_nothing_after".into(),
            conn(Some("http"), Some("https://")),
        ),
        (
            "protocol_without_conn_type".into(),
            conn(None, Some("https://x")),
        ),
        (
            "protocol_with_colon".into(),
            conn(Some("http"), Some("a:b://x")),
        ),
        ("protocol_digit".into(), conn(Some("http"), Some("1x://x"))),
        (
            "same_protocol_fix".into(),
            conn(Some("https"), Some("https://Api.Example.com:8443/x")),
        ),
        ("percent_host".into(), conn(Some("generic"), Some("AB%cd"))),
        (
            "zone_host".into(),
            conn(Some("postgres"), Some("FE80::1%ETH0")),
        ),
        (
            "bracket_zone_host".into(),
            conn(Some("postgres"), Some("[fe80::1%eth0]")),
        ),
        (
            "unicode_upper_host".into(),
            conn(Some("postgres"), Some("münchen.DE")),
        ),
        ("tab_host".into(), conn(Some("postgres"), Some("a\tb\nc"))),
        (
            "conn_type_postgresql_upper".into(),
            conn(Some("PostgreSQL"), Some("h")),
        ),
        (
            "conn_type_my_type_hyphen".into(),
            conn(Some("My-Type"), Some("h")),
        ),
        ("conn_type_space".into(), conn(Some("a b"), Some("h"))),
        ("conn_type_digit".into(), conn(Some("1abc"), Some("h"))),
        (
            "conn_type_dot_plus".into(),
            conn(Some("my.type+x"), Some("h")),
        ),
        (
            "description_empty".into(),
            Connection {
                description: Some(String::new()),
                ..conn(Some("x"), None)
            },
        ),
        (
            "port_0".into(),
            Connection {
                port: Some(0),
                ..conn(Some("x"), Some("h"))
            },
        ),
        (
            "port_only".into(),
            Connection {
                port: Some(1),
                ..conn(Some("redis"), None)
            },
        ),
        (
            "password_empty".into(),
            Connection {
                password: Some("".into()),
                login: Some("u".into()),
                ..conn(Some("x"), Some("h"))
            },
        ),
        (
            "password_no_login".into(),
            Connection {
                password: Some("p".into()),
                ..conn(Some("x"), Some("h"))
            },
        ),
        (
            "login_empty".into(),
            Connection {
                login: Some("".into()),
                ..conn(Some("x"), Some("h"))
            },
        ),
        (
            "extra_empty_string".into(),
            with_extra(conn(Some("aws"), None), ""),
        ),
        (
            "extra_json_looking".into(),
            with_extra(
                conn(Some("aws"), None),
                r#"{"port": "5432", "t": "true", "s": " 5 ", "e": ""}"#,
            ),
        ),
        (
            "extra_dunder".into(),
            with_extra(conn(Some("aws"), None), r#"{"__extra__": "x", "b": "c"}"#),
        ),
        (
            "extra_nan_bigint".into(),
            with_extra(
                conn(Some("aws"), None),
                r#"{"a": NaN, "n": 123456789012345678901234567890, "f": 1e16, "g": 1.0}"#,
            ),
        ),
        (
            "extra_nested".into(),
            with_extra(
                conn(Some("aws"), None),
                r#"{"a": {"b": [1, 2.5, null, true]}, "ü": "€"}"#,
            ),
        ),
        (
            "extra_duplicate_keys".into(),
            with_extra(conn(Some("aws"), None), r#"{"a": "1", "a": "2"}"#),
        ),
        (
            "extra_empty_object_spaced".into(),
            with_extra(conn(Some("aws"), None), " { } "),
        ),
        (
            "extra_list".into(),
            with_extra(conn(Some("aws"), None), "[]"),
        ),
        (
            "extra_null".into(),
            with_extra(conn(Some("aws"), None), "null"),
        ),
        (
            "extra_not_json".into(),
            with_extra(conn(Some("aws"), None), "not json"),
        ),
        (
            "extra_scheme_value".into(),
            with_extra(
                conn(Some("http"), Some("h")),
                r#"{"u": "http://x/?a=b://c"}"#,
            ),
        ),
    ];
    let data = testdata("connections.json");
    for case in data["input_cases"].as_array().expect("input_cases") {
        out.push((
            format!("input:{}", case["name"].as_str().expect("name")),
            conn_from(&case["input"]),
        ));
    }
    out
}

/// A field of `c` as it appears after a round trip, for checking that a reported loss is real.
fn field(c: &Connection, name: &str) -> Option<String> {
    match name {
        "conn_type" => c.conn_type.clone(),
        "description" => c.description.clone().filter(|d| !d.is_empty()),
        "host" => c.host.clone().filter(|h| !h.is_empty()),
        "password" => secret(&c.password).map(str::to_string),
        "port" => c.port.map(|p| p.to_string()),
        "extra" => secret(&c.extra).map(str::to_string),
        other => panic!("loss on unexpected field {other}"),
    }
}

/// `c` with the fields a loss names taken from the read-back value.
fn mask(c: &Connection, back: &Connection, losses: &[Loss]) -> Connection {
    let mut m = c.clone();
    for l in losses {
        match l.field {
            "description" => m.description = back.description.clone(),
            "port" => m.port = back.port,
            "password" => m.password = back.password.clone(),
            "conn_type" => m.conn_type = back.conn_type.clone(),
            "host" => m.host = back.host.clone(),
            "extra" => m.extra = back.extra.clone(),
            other => panic!("loss on unexpected field {other}"),
        }
    }
    m
}

fn extra_is_object(c: &Connection) -> bool {
    match secret(&c.extra).filter(|e| !e.is_empty()) {
        None => true,
        // Python accepts NaN and big ints; serde_json rejects NaN, so test by the codec itself.
        Some(_) => from_json(to_json(c).expose_plaintext(), Reader::Orm3).is_ok(),
    }
}

#[test]
fn to_uri_reads_back_as_the_connection_minus_reported_losses() {
    let mut fails = Vec::new();
    for (name, c) in tricky_connections() {
        let uri = to_uri(&c);
        let losses = uri_losses(&c);
        let results: Vec<(Reader, Result<Connection, ParseError>)> = Reader::ALL
            .iter()
            .map(|&r| (r, parse_uri(uri.expose_plaintext(), r)))
            .collect();
        if losses.iter().any(|l| l.field == "uri") {
            // The loss must be real: some reader errs or reads another connection.
            let real = results
                .iter()
                .any(|(_, r)| r.as_ref().map_or(true, |b| !equivalent(&c, b)));
            if !real {
                fails.push(format!(
                    "{name}: reported an unreadable URI, yet every reader reads it back"
                ));
            }
            continue;
        }
        for (reader, back) in &results {
            let ctx = format!("{name} [{reader:?}]");
            let back = match (back, reader, extra_is_object(&c)) {
                (Err(_), Reader::Orm3, false) => continue, // reported as an extra loss
                (Ok(_), Reader::Orm3, false) => {
                    fails.push(format!(
                        "{ctx}: the 3.1+ ORM must refuse a non-object extra"
                    ));
                    continue;
                }
                (Err(e), _, _) => {
                    fails.push(format!("{ctx}: did not parse: {e}"));
                    continue;
                }
                (Ok(b), _, _) => b,
            };
            if !equivalent(&mask(&c, back, &losses), back) {
                fails.push(format!(
                    "{ctx}: reads back differently beyond the reported losses {losses:?}"
                ));
            }
        }
        // Every reported loss is real for at least one reader.
        for l in &losses {
            let real = results.iter().any(|(_, r)| match r {
                Err(_) => true,
                Ok(b) => field(&c, l.field) != field(b, l.field),
            });
            if !real {
                fails.push(format!("{name}: reported loss {l:?} did not happen"));
            }
        }
    }
    report("to_uri round-trip", fails);
}

#[test]
fn to_uri_never_flattens_what_a_reader_would_change() {
    let c = with_extra(conn(Some("aws"), None), r#"{"port": "5432"}"#);
    assert_eq!(
        to_uri(&c).expose_plaintext(),
        "aws:///?__extra__=%7B%22port%22%3A+%225432%22%7D"
    );
    // Airflow's own 3.x get_uri flattens it, and its 3.1+ ORM then reads an int back.
    let airflow = get_uri(&c, Reader::Orm3);
    assert_eq!(airflow.expose_plaintext(), "aws:///?port=5432");
    let back = parse_uri(airflow.expose_plaintext(), Reader::Orm3).unwrap();
    assert_eq!(secret(&back.extra), Some(r#"{"port": 5432}"#));
    // Plain strings still flatten.
    let c = with_extra(conn(Some("aws"), None), r#"{"region_name": "us-east-1"}"#);
    assert_eq!(
        to_uri(&c).expose_plaintext(),
        "aws:///?region_name=us-east-1"
    );
}

#[test]
fn uri_losses_name_the_rules() {
    let fields = |c: &Connection| {
        uri_losses(c)
            .into_iter()
            .map(|l| l.field)
            .collect::<Vec<_>>()
    };
    let c = Connection {
        description: Some("d".into()),
        port: Some(0),
        password: Some("".into()),
        extra: Some("[1]".into()),
        ..conn(Some("PostgreSQL"), Some("Host.Example"))
    };
    assert_eq!(
        fields(&c),
        [
            "conn_type",
            "conn_type",
            "description",
            "extra",
            "host",
            "password",
            "port"
        ]
    );
    assert_eq!(fields(&conn(Some("sql-server"), Some("h"))), ["conn_type"]);
    assert!(fields(&conn(Some("postgres"), Some("h.example.com"))).is_empty());
    assert_eq!(
        fields(&conn(Some("HTTP"), Some("http://x"))),
        ["conn_type", "uri"]
    );
    // The 3.x fix keeps a same-protocol host exactly, whatever its case.
    assert!(fields(&conn(Some("https"), Some("https://API.x"))).is_empty());
}

#[test]
fn json_and_fields_read_back_as_the_connection() {
    let mut fails = Vec::new();
    for (name, c) in tricky_connections() {
        let json = to_json(&c);
        let fields = to_fields(&c);
        let fields_text = serde_json::to_string(&fields).expect("fields serialize");
        for reader in Reader::ALL {
            let ctx = format!("{name} [{reader:?}]");
            let reads = [
                (
                    "from_json(to_json)",
                    from_json(json.expose_plaintext(), reader),
                ),
                ("from_fields(to_fields)", from_fields(&fields, reader)),
                (
                    "from_json(to_fields as text)",
                    from_json(&fields_text, reader),
                ),
            ];
            for (how, back) in reads {
                match (back, reader == Reader::Orm3 && !extra_is_object(&c)) {
                    (Err(_), true) => {}
                    (Ok(_), true) => fails.push(format!(
                        "{ctx} {how}: the 3.1+ ORM must refuse a non-object extra"
                    )),
                    (Err(e), false) => fails.push(format!("{ctx} {how}: did not parse: {e}")),
                    (Ok(b), false) if equivalent(&c, &b) => {}
                    (Ok(_), false) => fails.push(format!("{ctx} {how}: reads back differently")),
                }
            }
        }
        // Never a conn_id or unknown key, port always an int.
        for k in fields.keys() {
            if ![
                "conn_type",
                "description",
                "host",
                "login",
                "password",
                "schema",
                "port",
                "extra",
            ]
            .contains(&k.as_str())
            {
                fails.push(format!("{name}: to_fields wrote key {k:?}"));
            }
        }
        if fields.get("port").is_some_and(|p| !p.is_u64()) {
            fails.push(format!("{name}: to_fields wrote a non-integer port"));
        }
    }
    report("JSON round-trip", fails);
}

#[test]
fn to_fields_writes_objects_and_falls_back_to_strings() {
    let c = with_extra(conn(Some("aws"), None), r#"{"a": 1, "b": {"c": "d"}}"#);
    let f = to_fields(&c);
    assert_eq!(f["extra"], serde_json::json!({"a": 1, "b": {"c": "d"}}));
    // NaN cannot be a serde_json number: written as the string Python would read the same.
    let c = with_extra(conn(Some("aws"), None), r#"{"a": NaN}"#);
    assert_eq!(
        to_fields(&c)["extra"],
        Value::String(r#"{"a": NaN}"#.into())
    );
    let c = with_extra(conn(Some("aws"), None), "not json");
    assert_eq!(to_fields(&c)["extra"], Value::String("not json".into()));
    let c = Connection {
        port: Some(5432),
        ..with_extra(conn(Some("aws"), None), "{}")
    };
    let f = to_fields(&c);
    assert_eq!(f["port"], serde_json::json!(5432));
    assert!(
        !f.contains_key("extra"),
        "an empty extra is omitted, as as_json() does"
    );
}

#[test]
fn from_json_follows_airflow_from_json() {
    let ok = |s: &str, r: Reader| from_json(s, r).unwrap_or_else(|e| panic!("{s}: {e}"));
    let c = ok(
        r#"{"conn_type": "a-b", "port": " 5_432 ", "extra": {"x": 1}, "password": ""}"#,
        Reader::Orm3,
    );
    assert_eq!(c.conn_type.as_deref(), Some("a_b"));
    assert_eq!(c.port, Some(5432));
    assert_eq!(secret(&c.extra), Some(r#"{"x": 1}"#));
    assert_eq!(c.password, None, "the ORM stores an empty password as NULL");
    let c = ok(r#"{"password": "", "port": 0, "extra": {}}"#, Reader::Sdk);
    assert_eq!(secret(&c.password), Some(""), "the task-sdk keeps ''");
    assert_eq!(
        (c.port, c.extra),
        (None, None),
        "falsy port and extra are dropped"
    );
    assert_eq!(
        ok(r#"{"port": "0"}"#, Reader::Orm2).port,
        Some(0),
        "'0' is truthy: int('0')"
    );
    assert_eq!(
        ok(r#"{"port": 5432.9}"#, Reader::Orm2).port,
        Some(5432),
        "int() truncates"
    );
    assert_eq!(ok(r#"{"port": true}"#, Reader::Orm2).port, Some(1));
    let c = ok(
        r#"{"uri": "postgres://u:p@h/db", "description": "d"}"#,
        Reader::Orm2,
    );
    assert_eq!(
        (c.host.as_deref(), c.description.as_deref()),
        (Some("h"), Some("d"))
    );
    for (bad, why) in [
        (
            r#"{"port": 99999}"#,
            "port beyond u16: Airflow accepts it, our model cannot hold it",
        ),
        (r#"{"port": -1}"#, "negative port"),
        (r#"{"port": "5.0"}"#, "int('5.0') raises"),
        (r#"{"port": [1]}"#, "int([1]) raises"),
        (r#"{"host": 5}"#, "a non-string field our model cannot hold"),
        (
            r#"{"uri": "postgres://h", "host": "h"}"#,
            "uri mixed with fields",
        ),
        (
            r#"{"extra": "not json"}"#,
            "the 3.1+ ORM refuses a non-JSON extra",
        ),
        (
            r#"{"extra": [1, 2]}"#,
            "the 3.1+ ORM refuses a non-object extra",
        ),
        ("[1]", "not an object"),
        (r#"{"team_name": "t"}"#, "team_name cannot be carried"),
    ] {
        assert!(from_json(bad, Reader::Orm3).is_err(), "{why}: {bad}");
    }
    assert!(
        from_json(r#"{"uri": "postgres://h"}"#, Reader::Sdk).is_err(),
        "the sdk has no uri parameter"
    );
    assert_eq!(
        secret(&ok(r#"{"extra": [1, 2]}"#, Reader::Sdk).extra),
        Some("[1, 2]")
    );
    assert_eq!(
        secret(&ok(r#"{"extra": "not json"}"#, Reader::Orm2).extra),
        Some("not json")
    );
}

#[test]
fn equivalence_normalises_like_airflow() {
    let a = Connection {
        conn_type: Some("postgresql".into()),
        host: None,
        login: Some("".into()),
        password: None,
        schema: None,
        extra: Some(r#"{"a": 1, "b": [1, {"c": "d"}]}"#.into()),
        ..Default::default()
    };
    let b = Connection {
        conn_type: Some("postgres".into()),
        host: Some("".into()),
        login: None,
        password: Some("".into()),
        schema: Some("".into()),
        extra: Some("{\n  \"b\": [1, {\"c\": \"d\"}],\n  \"a\": 1\n}".into()),
        ..Default::default()
    };
    assert!(equivalent(&a, &b));
    let differs = |f: &dyn Fn(&mut Connection)| {
        let mut x = b.clone();
        f(&mut x);
        !equivalent(&a, &x)
    };
    assert!(
        differs(&|x| x.conn_type = Some("Postgres".into())),
        "case matters"
    );
    assert!(differs(&|x| x.host = Some("H".into())));
    assert!(
        differs(&|x| x.description = Some("d".into())),
        "description is compared"
    );
    assert!(differs(&|x| x.port = Some(1)));
    assert!(
        differs(&|x| x.extra = Some(r#"{"a": 1.0, "b": [1, {"c": "d"}]}"#.into())),
        "1 is not 1.0"
    );
    assert!(differs(
        &|x| x.extra = Some(r#"{"a": "1", "b": [1, {"c": "d"}]}"#.into())
    ));
    assert!(differs(&|x| x.password = Some("p".into())));
    // No extra, '' and {} are the same; text that is not JSON compares verbatim.
    let none = Connection::default();
    assert!(equivalent(
        &none,
        &with_extra(Connection::default(), " {} ")
    ));
    assert!(equivalent(
        &with_extra(none.clone(), "x y"),
        &with_extra(none.clone(), "x y")
    ));
    assert!(!equivalent(
        &with_extra(none.clone(), "x y"),
        &with_extra(none.clone(), "x  y")
    ));
}

#[test]
fn errors_and_losses_never_contain_values() {
    let canary = "canary-5f1e2d";
    let bad_inputs = [
        format!("postgres://u:{canary}@h:{canary}/db"),
        format!("postgres://u:{canary}@h:99999/db"),
        format!("a://{canary}://b://c"),
        format!("http://{canary}@x://h"),
        format!("postgres://[{canary}/db"),
        format!("postgres://[{canary}]/db"),
        format!("postgres://h/?__extra__={canary}"),
        format!(r#"{{"user": "{canary}"}}"#),
        format!(r#"{{"conn_id": "{canary}"}}"#),
        format!(r#"{{"port": "{canary}"}}"#),
        format!(r#"{{"password": ["{canary}"]}}"#),
        format!(r#"{{"extra": "{canary}"}}"#),
        format!(r#"{{"password": "{canary}"#),
        format!(r#"{{"password": "{canary}", "port": 70000}}"#),
    ];
    for input in &bad_inputs {
        let err = deserialize(input, Reader::Orm3).expect_err(input);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("canary"), "{shown}");
    }
    let c = Connection {
        description: Some(canary.into()),
        host: Some(format!("{canary}UPPER")),
        password: Some("".into()),
        port: Some(0),
        extra: Some(canary.into()),
        ..conn(Some(&format!("{canary}-X")), None)
    };
    let shown = format!("{:?}", uri_losses(&c));
    assert!(!shown.contains("canary"), "{shown}");
    let shown = format!("{:?}", codec::json_losses(&c));
    assert!(!shown.contains("canary"), "{shown}");
}
