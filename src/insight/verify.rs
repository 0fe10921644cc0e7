//! `verify`: read every item back from the target once per Airflow reader that matters (2.x ORM,
//! 3.x ORM, 3.x task-sdk on workers; spec §4.4) and report what Airflow would read differently
//! from the source, differently on workers and on the scheduler, or never find at all.
//!
//! How the readers are applied: each store parses connections with a [`Reader`]; the target is
//! opened once per reader (`registry::open_config_with_reader`) and scanned. That keeps the raw
//! stored strings inside the stores (no new raw-value API to leak them) and reuses each store's
//! own decoding (Vault's `conn_uri`, AWS SM's aliases, local-file dicts), which is exactly what
//! Airflow's backend classes do before handing the value to `Connection`.
//!
//! Findings name items, fields and rules, never values.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::airflow::connection::{Reader, equivalent};
use crate::airflow::fidelity::differences;
use crate::model::{Connection, Entry, Inventory, ItemErrorKind, ItemId};
use crate::plan::Selection;
use crate::store::{DynStore, Placement, Store, StoreError, scan_all};

pub fn reader_name(r: Reader) -> &'static str {
    crate::airflow::fidelity::reader_id(r)
}

/// How bad a finding is: problems fail `verify`, warnings are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Problem,
}

/// What kind of difference a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// In the source, not in the target: Airflow serves it from the next source in its chain.
    Missing,
    /// Airflow would never look it up in the target (lookup pattern, disabled kind, bad name).
    Unreachable,
    /// The target holds it, but a reader cannot use it (parse error: Airflow falls through to the
    /// next backend; disabled or pending deletion: Airflow raises).
    Unreadable,
    /// A reader reads it differently from the source.
    DiffersFromSource,
    /// The 3.x scheduler (ORM) and 3.x workers (task-sdk) read it differently.
    WorkersDiffer,
    /// Airflow 2 and Airflow 3 read it differently.
    VersionsDiffer,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub id: ItemId,
    pub kind: FindingKind,
    pub severity: Severity,
    /// The readers concerned (`airflow2`, `airflow3`, `task-sdk`).
    pub readers: Vec<&'static str>,
    /// Fields that differ (connections), never values.
    pub fields: Vec<&'static str>,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub target: String,
    pub readers: Vec<&'static str>,
    /// Items read from the target.
    pub checked: usize,
    /// Items compared with the source.
    pub compared: usize,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    pub fn problems(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Problem).count()
    }

    pub fn is_ok(&self) -> bool {
        self.problems() == 0
    }

    /// A table for people.
    pub fn table(&self) -> String {
        use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
        let mut out = String::new();
        if !self.findings.is_empty() {
            let mut t = Table::new();
            t.load_style(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
            t.set_header(["item", "finding", "severity", "readers", "fields", "detail"]);
            for f in &self.findings {
                t.add_row([
                    f.id.to_string(),
                    serde_json::to_value(f.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                    format!("{:?}", f.severity).to_lowercase(),
                    f.readers.join(", "),
                    f.fields.join(", "),
                    f.detail.clone(),
                ]);
            }
            out.push_str(&t.to_string());
            out.push('\n');
        }
        out.push_str(&format!(
            "{}: {} item(s) read with {}, {} compared with the source: {} problem(s), {} warning(s).\n",
            self.target,
            self.checked,
            self.readers.join(", "),
            self.compared,
            self.problems(),
            self.findings.len() - self.problems()
        ));
        out
    }
}

/// The fields of two connections that Airflow treats as different (`equivalent` per field).
pub fn differing_fields(a: &Connection, b: &Connection) -> Vec<&'static str> {
    let only = |c: &Connection, f: &str| -> Connection {
        let mut o = Connection::default();
        match f {
            "conn_type" => o.conn_type = c.conn_type.clone(),
            "host" => o.host = c.host.clone(),
            "login" => o.login = c.login.clone(),
            "password" => o.password = c.password.clone(),
            "schema" => o.schema = c.schema.clone(),
            "port" => o.port = c.port,
            "extra" => o.extra = c.extra.clone(),
            _ => o.description = c.description.clone(),
        }
        o
    };
    ["conn_type", "description", "host", "login", "password", "schema", "port", "extra"]
        .into_iter()
        .filter(|f| !equivalent(&only(a, f), &only(b, f)))
        .collect()
}

/// Like [`differing_fields`], but also an empty password against None: hooks that test
/// `password is None` behave differently (the ORM reads `''` as None, the task-sdk keeps it, §4.4).
pub fn strictly_differing_fields(a: &Connection, b: &Connection) -> Vec<&'static str> {
    let mut out = differing_fields(a, b);
    if !out.contains(&"password") && a.password.is_some() != b.password.is_some() {
        out.push("password");
    }
    out
}

fn hint(field: &str, workers: bool) -> &'static str {
    match (field, workers) {
        ("extra", true) => "extra values that look like JSON in a URI query are decoded by the 3.1+ ORM but kept as strings by the task-sdk",
        ("password", true) => "an empty password reads as None in the ORM and as '' in the task-sdk",
        ("host", false) => "URI hosts are lower-cased by every reader",
        ("description", false) => "this format cannot carry a description",
        ("port", false) => "port 0 does not survive this format",
        ("extra", false) => "the extra reads back differently (URI query decoding, or a non-object extra)",
        _ => "",
    }
}

fn explain(fields: &[&'static str], workers: bool) -> String {
    let hints: BTreeSet<&str> = fields.iter().map(|f| hint(f, workers)).filter(|h| !h.is_empty()).collect();
    hints.into_iter().collect::<Vec<_>>().join("; ")
}

fn error_detail(kind: ItemErrorKind, detail: &str) -> String {
    let consequence = match kind {
        ItemErrorKind::Unparseable => "Airflow cannot build it and falls through to the next backend (env vars, metastore)",
        ItemErrorKind::Blocked => "Airflow raises on lookup instead of falling back",
        ItemErrorKind::Unreachable => "Airflow never looks it up here",
        ItemErrorKind::Unreadable => "Airflow's read fails: depending on the backend it falls through to a stale copy or raises",
        ItemErrorKind::InvalidName | ItemErrorKind::Collision => "no Airflow lookup reaches it",
        _ => "",
    };
    if consequence.is_empty() { format!("{}: {detail}", kind.as_str()) } else { format!("{}: {detail}; {consequence}", kind.as_str()) }
}

/// Compare the target, read once per reader, with the source.
///
/// `targets` pairs each reader with the target opened for it (same store, same location).
/// `source` is the inventory to compare with (None: no comparison, reader checks only).
pub async fn verify(
    targets: &[(Reader, DynStore)],
    source: Option<&Inventory>,
    selection: &Selection,
) -> Result<VerifyReport, StoreError> {
    let Some((_, first)) = targets.first() else {
        return Ok(VerifyReport::default());
    };
    let kinds = selection.kinds().to_vec();
    let mut reads: Vec<(Reader, Inventory)> = Vec::new();
    for (reader, store) in targets {
        let mut inv = scan_all(store.as_ref(), &kinds).await?;
        inv.retain(|id| selection.matches(id));
        reads.push((*reader, inv));
    }
    Ok(compare(first.as_ref(), &reads, source, selection))
}

/// The comparison, over inventories already read. Pure.
pub fn compare(target: &dyn Store, reads: &[(Reader, Inventory)], source: Option<&Inventory>, selection: &Selection) -> VerifyReport {
    let caps = target.capabilities();
    let mut report = VerifyReport {
        target: target.to_string(),
        readers: reads.iter().map(|(r, _)| reader_name(*r)).collect(),
        ..Default::default()
    };
    let mut ids: BTreeSet<ItemId> = reads.iter().flat_map(|(_, inv)| inv.ids().cloned()).collect();
    report.checked = ids.len();
    if let Some(src) = source {
        ids.extend(src.ids().filter(|id| selection.matches(id) && caps.holds(id.kind)).cloned());
    }
    let mut push = |id: &ItemId, kind, severity, readers: Vec<&'static str>, fields: Vec<&'static str>, detail: String| {
        report.findings.push(Finding { id: id.clone(), kind, severity, readers, fields, detail });
    };
    let mut compared = 0;
    for id in &ids {
        let placement = target.locate(id);
        let in_target = reads.iter().any(|(_, inv)| inv.contains(id));
        let src_entry: Option<&Entry> = source.and_then(|s| s.get(id));
        match &placement {
            Placement::Unreachable(why) | Placement::Invalid(why) if src_entry.is_some() || in_target => {
                push(id, FindingKind::Unreachable, Severity::Problem, vec![], vec![], format!("Airflow would never look it up here: {why}"));
                continue;
            }
            _ => {}
        }
        if !in_target {
            if src_entry.is_some() {
                push(id, FindingKind::Missing, Severity::Problem, vec![], vec![], "not in the target: Airflow serves it from the next source in its chain".into());
            }
            continue;
        }
        // Per-reader errors (an unknown JSON key, a non-object extra under the 3.x ORM, ...).
        // Grouped by error kind: the readers' texts differ only in naming the reader.
        let mut by_error: BTreeMap<ItemErrorKind, (String, Vec<&'static str>)> = BTreeMap::new();
        for (r, inv) in reads {
            if let Some(e) = inv.error(id) {
                by_error.entry(e.kind).or_insert_with(|| (error_detail(e.kind, &e.detail), vec![])).1.push(reader_name(*r));
            }
        }
        for (_, (detail, readers)) in by_error {
            push(id, FindingKind::Unreadable, Severity::Problem, readers, vec![], detail);
        }
        let readings: Vec<(Reader, &Entry)> = reads.iter().filter_map(|(r, inv)| inv.get(id).map(|e| (*r, e))).collect();

        // Against the source.
        if let Some(src) = src_entry {
            compared += 1;
            let mut by_fields: BTreeMap<(Vec<&'static str>, bool), Vec<&'static str>> = BTreeMap::new();
            for (r, e) in &readings {
                // The planner's model: what differs, and whether the plan predicted it (a loss it
                // reported) from the same store's encoding read by the same reader.
                let fields: Vec<&'static str> = differences(&src.value, &e.value).into_iter().map(|d| d.field).collect();
                if !fields.is_empty() {
                    let predicted: Vec<&'static str> = match target.read_as(src, &[*r]) {
                        Ok(mut v) => match v.pop() {
                            Some(Ok(p)) => differences(&src.value, &p).into_iter().map(|d| d.field).collect(),
                            _ => Vec::new(),
                        },
                        Err(_) => Vec::new(),
                    };
                    let known = fields.iter().all(|f| predicted.contains(f));
                    by_fields.entry((fields, known)).or_default().push(reader_name(*r));
                }
            }
            for ((fields, known), readers) in by_fields {
                // A loss the plan predicts (and reported) is a warning; anything else is a problem.
                let severity = if known { Severity::Warning } else { Severity::Problem };
                let mut detail = if known {
                    "a known loss of this target (the plan reports it)".to_string()
                } else {
                    "Airflow reads it differently from the source".to_string()
                };
                let why = explain(&fields, false);
                if !why.is_empty() {
                    detail.push_str(&format!(" ({why})"));
                }
                push(id, FindingKind::DiffersFromSource, severity, readers, fields, detail);
            }
        }

        // Reader against reader: scheduler vs workers (3.x), and 2.x vs 3.x.
        let get = |r: Reader| readings.iter().find(|(x, _)| *x == r).and_then(|(_, e)| e.as_connection());
        if let (Some(orm3), Some(sdk)) = (get(Reader::Orm3), get(Reader::Sdk)) {
            let fields = strictly_differing_fields(orm3, sdk);
            if !fields.is_empty() {
                let why = explain(&fields, true);
                push(id, FindingKind::WorkersDiffer, Severity::Problem, vec!["airflow3", "task-sdk"], fields,
                    format!("the 3.x scheduler and 3.x workers read it differently{}", if why.is_empty() { String::new() } else { format!(" ({why})") }));
            }
        }
        if let (Some(orm2), Some(orm3)) = (get(Reader::Orm2), get(Reader::Orm3)) {
            let fields = strictly_differing_fields(orm2, orm3);
            if !fields.is_empty() {
                push(id, FindingKind::VersionsDiffer, Severity::Problem, vec!["airflow2", "airflow3"], fields,
                    "Airflow 2 and Airflow 3 read it differently (3.1+ ORM decodes JSON-looking URI query values)".into());
            }
        }
    }
    report.compared = compared;
    report
}
