//! Render a [`Plan`] for people (a table) and machines (JSON). Values are masked here and only
//! here: a plan shows actions, names of changed fields, losses and errors — never a value, not
//! even a prefix or a hash.

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

use crate::plan::{Action, Plan};

pub fn table(plan: &Plan, show_unchanged: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!("Plan: {} -> {}\n", plan.source, plan.target));
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(vec!["action", "kind", "id", "target name", "details"]);
    let mut rows = 0;
    for c in &plan.changes {
        if !show_unchanged && c.action == Action::Unchanged {
            continue;
        }
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
            details.push(format!("loses {}: {}", l.field, l.what));
        }
        t.add_row(vec![
            c.action.as_str().to_string(),
            c.id.kind.to_string(),
            c.id.id.escape_debug().to_string(),
            c.target_name.clone().unwrap_or_default().escape_debug().to_string(),
            details.join("; "),
        ]);
        rows += 1;
    }
    if rows > 0 {
        out.push_str(&t.to_string());
        out.push('\n');
    }
    let s = &plan.summary;
    out.push_str(&format!(
        "{} to create, {} to update, {} to delete, {} unchanged, {} unreachable, {} kept, {} errors\n",
        s.create, s.update, s.delete, s.unchanged, s.unreachable, s.kept, s.errors
    ));
    let lossy = plan.changes.iter().filter(|c| !c.losses.is_empty()).count();
    if lossy > 0 {
        out.push_str(&format!("Lossiness: {lossy} item(s) lose something in the target (see 'loses' above).\n"));
    }
    for r in &plan.refusals {
        out.push_str(&format!("Refused: {r}\n"));
    }
    if !plan.has_changes() && s.errors == 0 && plan.refusals.is_empty() {
        out.push_str("No changes. The target is up to date.\n");
    }
    out
}

pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("a plan always serializes")
}
