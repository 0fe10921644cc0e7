//! The comparison of the real-Airflow tier (tests/real_airflow.rs): read-back records of the
//! harness against the source as Airflow reads it, and against what the first plan said.
//!
//! Rules: None and '' are the same for host, login, schema, description and password (Airflow
//! treats both as "not set"); port 0 and None differ; conn_type is compared exactly (normalisation
//! is a difference); extra is compared as parsed JSON, where no extra, '' and '{}' are the same
//! (Airflow's `extra_dejson` is `{}` for each) and a non-JSON extra compares as its raw string.
//! Findings never hold a value: only ids, field names, shapes (`None`, `0`, `n`) and exception
//! class names.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as J;

pub struct Finding {
    pub target: String,
    pub id: String,
    pub reader: String,
    pub field: String,
    /// What came back (a shape or an exception class), or what went wrong.
    pub got: String,
    /// What the first plan said of the item.
    pub plan: String,
}

impl Finding {
    pub fn new(target: &str, id: &str, reader: &str, field: &str, got: String) -> Self {
        Finding { target: target.into(), id: id.into(), reader: reader.into(), field: field.into(), got, plan: String::new() }
    }
}

/// `None`, `''` and absent are one thing for these fields.
const BLANKABLE: [&str; 5] = ["host", "login", "schema", "description", "password"];

fn blank(v: &J) -> bool {
    v.is_null() || v.as_str() == Some("")
}

/// The extra as Airflow's callers see it: parsed JSON, `{}` when absent or empty, raw when not JSON.
fn extra(c: &J) -> J {
    match c.get("extra") {
        None | Some(J::Null) => J::Object(Default::default()),
        Some(J::String(s)) if s.is_empty() => J::Object(Default::default()),
        Some(J::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
        // The task-sdk Connection may hold the parsed object already.
        Some(other) => other.clone(),
    }
}

fn port_shape(v: &J) -> &'static str {
    match v.as_i64() {
        None => "None",
        Some(0) => "0",
        Some(_) => "n",
    }
}

/// Field names where `got` differs from `want` (both harness connection dicts), with a shape.
fn conn_diff(want: &J, got: &J) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in ["conn_type", "host", "login", "password", "schema", "description"] {
        let (a, b) = (&want[f], &got[f]);
        let same = a == b || (BLANKABLE.contains(&f) && blank(a) && blank(b));
        if !same {
            let shape = |v: &J| match v {
                J::Null => "None",
                J::String(s) if s.is_empty() => "''",
                _ => "set",
            };
            let what = if blank(a) || blank(b) { format!("{} -> {}", shape(a), shape(b)) } else { "differs".into() };
            out.push((f.to_string(), what));
        }
    }
    let (a, b) = (&want["port"], &got["port"]);
    if a.as_i64() != b.as_i64() {
        out.push(("port".into(), format!("{} -> {}", port_shape(a), port_shape(b))));
    }
    if extra(want) != extra(got) {
        out.push(("extra".into(), "differs (as parsed JSON)".into()));
    }
    out
}

/// The differences of one read-back record from its source record.
fn diff(src: &J, got: &J) -> Vec<(String, String)> {
    if let Some(e) = got.get("error") {
        return vec![("*".into(), format!("refused: {}", e["class"].as_str().unwrap_or("?")))];
    }
    let (sf, gf) = (src["found"].as_bool().unwrap_or(false), got["found"].as_bool().unwrap_or(false));
    if sf != gf {
        return vec![("*".into(), if gf { "found, not in source".into() } else { "not found".into() })];
    }
    if !sf {
        return vec![];
    }
    if got["kind"] == "variable" {
        return if src["value"] == got["value"] { vec![] } else { vec![("value".into(), "differs".into())] };
    }
    conn_diff(&src["conn"], &got["conn"])
}

fn plan_said(change: Option<&J>) -> String {
    let Some(c) = change else { return "not in the plan".into() };
    let action = c["action"].as_str().unwrap_or("?");
    let losses: Vec<String> = c["losses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let readers = match l.get("readers").and_then(|r| r.as_array()) {
                Some(r) => r.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","),
                None => "all".into(),
            };
            format!("{}[{readers}]", l["field"].as_str().unwrap_or("?"))
        })
        .collect();
    if losses.is_empty() { format!("{action}; no loss") } else { format!("{action}; losses {}", losses.join(" ")) }
}

/// Whether the plan named a difference of `field` for `reader`.
fn named(change: Option<&J>, field: &str, reader: &str) -> bool {
    let Some(c) = change else { return false };
    if matches!(c["action"].as_str(), Some("error") | Some("unreachable")) {
        return true;
    }
    c["losses"].as_array().into_iter().flatten().any(|l| {
        l["field"].as_str() == Some(field)
            && l.get("readers").and_then(|r| r.as_array()).is_none_or(|r| r.iter().any(|x| x.as_str() == Some(reader)))
    })
}

/// Compare every record. `plans`: job name → (metastore tag, first plan); `sources`: tag → the
/// reader whose `source` records are that metastore as its own Airflow reads it.
pub fn compare(
    records: &[J],
    plans: &BTreeMap<String, (&str, J)>,
    sources: &BTreeMap<&str, &str>,
    findings: &mut Vec<Finding>,
) {
    let tag_of_reader: HashMap<&str, &str> = sources.iter().map(|(t, r)| (*r, *t)).collect();
    let mut src: HashMap<(String, String, String), &J> = HashMap::new();
    for r in records.iter().filter(|r| r["job"] == "source") {
        let tag = tag_of_reader[r["reader"].as_str().unwrap()];
        let key = (tag.to_string(), r["kind"].as_str().unwrap().to_string(), r["id"].as_str().unwrap().to_string());
        if r.get("error").is_some() || r["found"] != true {
            findings.push(Finding::new(&format!("source@{tag}"), &key.2, r["reader"].as_str().unwrap(), "*", "source unreadable".into()));
        }
        src.insert(key, r);
    }
    let mut changes: HashMap<(&str, &str, &str), &J> = HashMap::new();
    for (job, (_, plan)) in plans {
        for c in plan["changes"].as_array().into_iter().flatten() {
            if let (Some(k), Some(id)) = (c["id"]["kind"].as_str(), c["id"]["id"].as_str()) {
                changes.insert((job.as_str(), k, id), c);
            }
        }
    }
    for r in records.iter().filter(|r| r["job"] != "source") {
        let job = r["job"].as_str().unwrap();
        let reader = r["reader"].as_str().unwrap();
        if let Some(e) = r.get("file_error") {
            let file = r["file"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string();
            let mut f = Finding::new(job, &file, reader, "file", format!("Airflow rejects the whole file: {}", e["class"]));
            f.plan = "(file)".into();
            findings.push(f);
            continue;
        }
        if let Some(e) = r.get("backend_error") {
            findings.push(Finding::new(job, "-", reader, "backend", format!("cannot build the backend: {}", e["class"])));
            continue;
        }
        let Some((tag, _)) = plans.get(job) else { continue };
        let (kind, id) = (r["kind"].as_str().unwrap(), r["id"].as_str().unwrap());
        let Some(s) = src.get(&(tag.to_string(), kind.to_string(), id.to_string())) else { continue };
        let change = changes.get(&(job, kind, id)).copied();
        if change.is_some_and(|c| c["action"] == "error") && r["found"] == true {
            let mut f = Finding::new(job, id, reader, "*", "the plan errored the item but it is in the target".into());
            f.plan = plan_said(change);
            findings.push(f);
            continue;
        }
        for (field, got) in diff(s, r) {
            if !named(change, &field, reader) {
                let mut f = Finding::new(job, id, reader, &field, got);
                f.plan = plan_said(change);
                findings.push(f);
            }
        }
    }
}

/// A compact table: a count per (target, reader, field), then one line per finding.
pub fn table(findings: &[Finding]) -> String {
    let mut counts: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for f in findings {
        *counts.entry((f.target.as_str(), f.reader.as_str(), f.field.as_str())).or_default() += 1;
    }
    let mut out = format!("{} unexplained differences\n\nsummary (target | reader | field | count):\n", findings.len());
    for ((t, r, f), n) in &counts {
        out.push_str(&format!("  {t} | {r} | {f} | {n}\n"));
    }
    out.push_str("\ntarget | item | reader | field | read back | plan said\n");
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by(|a, b| (&a.target, &a.id, &a.reader, &a.field).cmp(&(&b.target, &b.id, &b.reader, &b.field)));
    for f in sorted {
        out.push_str(&format!("{} | {} | {} | {} | {} | {}\n", f.target, f.id, f.reader, f.field, f.got, f.plan));
    }
    out
}

/// The secrets themselves as canaries: no source variable value or password of 8+ characters
/// (shorter ones such as "42" occur in any text) may appear in what the test prints.
pub fn assert_no_secrets(printed: &str, records: &[J]) {
    for r in records.iter().filter(|r| r["job"] == "source") {
        let secrets = [r["value"].as_str(), r["conn"]["password"].as_str()];
        for s in secrets.into_iter().flatten().map(str::trim).filter(|s| s.chars().count() >= 8) {
            assert!(!printed.contains(s), "the failure output would show the value of {} (not printed)", r["id"]);
        }
    }
}
