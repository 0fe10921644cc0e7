//! Render a [`Plan`] for people (a table) and machines (JSON). Values are masked here and only
//! here: a plan shows actions, names of changed fields, losses and errors — never a value, not
//! even a prefix or a hash.

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

use crate::plan::{Action, Plan};

/// Plans with more rows than this are printed as plain lines, streamed: a bordered table of
/// 100k rows would be built (and held) whole before the first line appears.
const TABLE_ROWS_MAX: usize = 2_000;

fn row_cells(c: &crate::plan::Change) -> [String; 5] {
    let mut details: Vec<String> = Vec::new();
    if !c.changed_fields.is_empty() {
        details.push(format!("changed: {} (sensitive values hidden)", c.changed_fields.join(", ")));
    }
    if let Some(e) = &c.error {
        details.push(e.to_string());
    }
    if let Some(n) = &c.note {
        details.push(n.clone());
    }
    for l in &c.losses {
        if l.readers.is_empty() {
            details.push(format!("loses {}: {}", l.field, l.what));
        } else {
            details.push(format!("loses {}: {} ({})", l.field, l.what, l.readers.join(", ")));
        }
    }
    [
        c.action.as_str().to_string(),
        c.id.kind.to_string(),
        c.id.id.escape_debug().to_string(),
        c.target_name.clone().unwrap_or_default().escape_debug().to_string(),
        details.join("; "),
    ]
}

fn reader_label_of(id: &str) -> &'static str {
    use crate::airflow::{connection::Reader, fidelity};
    Reader::ALL.into_iter().find(|r| fidelity::reader_id(*r) == id).map_or("?", fidelity::reader_label)
}

/// The plan as a table (masked: actions, names, changed field names, losses, errors).
pub fn table(plan: &Plan, show_unchanged: bool) -> String {
    let mut out = Vec::new();
    write_table(plan, show_unchanged, &mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("the table is UTF-8")
}

/// [`table`], written to `out` as it is produced.
pub fn write_table(plan: &Plan, show_unchanged: bool, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    write_table_noted(plan, &[], show_unchanged, out)
}

/// [`write_table`] with `notes` printed under the header line (e.g. where each metastore side
/// takes its Fernet key from; never a value).
pub fn write_table_noted(
    plan: &Plan,
    notes: &[String],
    show_unchanged: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Plan: {} -> {} (predicted for {})",
        plan.source,
        plan.target,
        plan.readers.iter().map(|r| reader_label_of(r)).collect::<Vec<_>>().join(", ")
    )?;
    for n in notes {
        writeln!(out, "  {n}")?;
    }
    let shown = |c: &&crate::plan::Change| show_unchanged || c.action != Action::Unchanged;
    let rows = plan.changes.iter().filter(shown).count();
    if rows > TABLE_ROWS_MAX {
        // Tab-separated, one line per item: streams, and stays greppable and cut-able.
        writeln!(out, "action\tkind\tid\ttarget name\tdetails")?;
        for c in plan.changes.iter().filter(shown) {
            writeln!(out, "{}", row_cells(c).join("\t"))?;
        }
    } else if rows > 0 {
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
        t.set_header(vec!["action", "kind", "id", "target name", "details"]);
        for c in plan.changes.iter().filter(shown) {
            t.add_row(row_cells(c).to_vec());
        }
        writeln!(out, "{t}")?;
    }
    let s = &plan.summary;
    writeln!(
        out,
        "{} to create, {} to update, {} to delete, {} unchanged, {} unreachable, {} kept, {} errors",
        s.create, s.update, s.delete, s.unchanged, s.unreachable, s.kept, s.errors
    )?;
    let lossy = plan.changes.iter().filter(|c| !c.losses.is_empty()).count();
    if lossy > 0 {
        writeln!(out, "Lossiness: {lossy} item(s) lose something in the target (see 'loses' above).")?;
    }
    for r in &plan.refusals {
        writeln!(out, "Refused: {r}")?;
    }
    if !plan.has_changes() && s.errors == 0 && plan.refusals.is_empty() {
        writeln!(out, "No changes. The target is up to date.")?;
    }
    Ok(())
}

pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("a plan always serializes")
}

/// [`json`], written to `out` as it is serialized (no whole-plan string in memory).
pub fn write_json(plan: &Plan, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, plan).map_err(std::io::Error::other)?;
    writeln!(out)
}
