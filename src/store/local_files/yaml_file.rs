//! Rewriting LocalFilesystemBackend `.yaml` files so that entries the run does not touch stay
//! byte-identical (reading and emitting YAML as PyYAML does is [`crate::airflow::python::yaml11`]).

use super::*;

/// Apply `changes` to a YAML file. A block-style file is edited in place: each changed entry's
/// lines are replaced, a deleted one's removed, new ones appended, and every other byte (entries
/// this run does not touch, comments, blank lines) is kept, checked by reading the result back. A
/// file that cannot be edited that way (flow style, an anchor another entry may use) is written
/// anew, sorted, with its plain scalars' text kept (so PyYAML still types them the same).
pub(super) fn rewrite_yaml(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    let doc = yaml11::parse_doc(text)?;
    if let Some(out) = splice_yaml(text, &doc, changes) {
        if same_meaning(text, &out, changes)? {
            return Ok(out);
        }
        let mut out = out;
        zeroize::Zeroize::zeroize(&mut out);
        tracing::debug!("an in-place YAML edit did not read back as planned; rewriting the file whole");
    }
    reemit_yaml(text, changes)
}

/// Emit one `key: value` entry at `indent`, wiping the temporary tree.
pub(super) fn emit_entry(out: &mut String, key: &str, v: &Json, indent: usize) -> Option<()> {
    let mut entry = [(YNode::Str(key.to_string()), json_to_yaml(v))];
    let r = emit_map(out, &entry, indent).ok();
    entry.iter_mut().for_each(|(k, v)| {
        wipe_ynode(k);
        wipe_ynode(v)
    });
    r
}

/// The in-place edit of a block-style file, or `None` when the file is not one it can do.
pub(super) fn splice_yaml(text: &str, doc: &yaml11::Doc, changes: &BTreeMap<String, Option<Rendered>>) -> Option<String> {
    let new_entries = |out: &mut String, done: &HashSet<&str>, indent: usize| -> Option<()> {
        for (k, r) in changes {
            if let (false, Some(Rendered::Tree(v))) = (done.contains(k.as_str()), r) {
                emit_entry(out, k, v, indent)?;
            }
        }
        Some(())
    };
    match doc.root {
        yaml11::Root::Map { block: true } if !doc.entries.is_empty() => {}
        yaml11::Root::Nothing => {
            // Only comments or blank lines: keep them, add the entries after.
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            new_entries(&mut out, &HashSet::new(), 0)?;
            return Some(out);
        }
        _ => return None,
    }
    let first = if text.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    let line_start = |i: usize| text[..i].rfind('\n').map_or(first, |p| p + 1);
    let line_end = |i: usize| {
        if i == 0 || text.as_bytes()[i - 1] == b'\n' {
            i
        } else {
            text[i..].find('\n').map_or(text.len(), |p| i + p + 1)
        }
    };
    let indent = doc.entries[0].key_start - line_start(doc.entries[0].key_start);
    let mut spans = Vec::with_capacity(doc.entries.len());
    let mut prev_end = 0;
    for e in &doc.entries {
        let (s, t) = (line_start(e.key_start), line_end(e.value_end));
        let changed = matches!(&e.key, YNode::Str(k) if changes.contains_key(k));
        if s < prev_end
            || e.key_start - s != indent
            || !text[s..e.key_start].bytes().all(|b| b == b' ')
            || (changed && e.defines_anchor)
        {
            return None;
        }
        spans.push((s, t));
        prev_end = t;
    }
    let mut out = String::with_capacity(text.len() + 256);
    let mut pos = 0;
    let mut done: HashSet<&str> = HashSet::new();
    for (e, &(s, t)) in doc.entries.iter().zip(&spans) {
        out.push_str(&text[pos..s]);
        pos = t;
        match &e.key {
            YNode::Str(k) if changes.contains_key(k) => {
                if done.insert(k.as_str())
                    && let Some(Some(Rendered::Tree(v))) = changes.get(k)
                {
                    emit_entry(&mut out, k, v, indent)?;
                }
            }
            _ => out.push_str(&text[s..t]),
        }
    }
    if changes.iter().any(|(k, r)| r.is_some() && !done.contains(k.as_str())) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        new_entries(&mut out, &done, indent)?;
    }
    out.push_str(&text[pos..]);
    Some(out)
}

/// Whether `new` reads (as PyYAML would) as `old` with `changes` applied.
pub(super) fn same_meaning(old: &str, new: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<bool, String> {
    let norm = |entries: Vec<(YNode, YNode)>| -> HashMap<String, Result<Json, String>> {
        let mut entries = entries;
        let m = entries.iter().map(|(k, v)| (format!("{:?}", yaml_to_json(k)), yaml_to_json(v))).collect();
        entries.iter_mut().for_each(|(k, v)| {
            wipe_ynode(k);
            wipe_ynode(v)
        });
        m
    };
    let mut want = norm(parse_yaml(old)?);
    for (k, r) in changes {
        let key = format!("{:?}", Ok::<Json, String>(Json::String(k.clone())));
        match r {
            Some(Rendered::Tree(v)) => want.insert(key, Ok(v.clone())),
            _ => want.remove(&key),
        };
    }
    let Ok(got) = parse_yaml(new) else { return Ok(false) };
    Ok(norm(got) == want)
}

/// The whole file written anew (see [`rewrite_yaml`]).
pub(super) fn reemit_yaml(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    let mut entries = parse_yaml(text)?;
    for (key, r) in changes {
        let k = YNode::Str(key.clone());
        match r {
            Some(Rendered::Tree(v)) => {
                let node = json_to_yaml(v);
                match entries.iter_mut().find(|(old, _)| *old == k) {
                    Some((_, slot)) => *slot = node,
                    None => entries.push((k, node)),
                }
            }
            _ => entries.retain(|(old, _)| *old != k),
        }
    }
    // Sorted string keys first (deterministic diffs), then any other keys as found.
    entries.sort_by(|(a, _), (b, _)| match (a, b) {
        (YNode::Str(a), YNode::Str(b)) => a.cmp(b),
        (YNode::Str(_), _) => std::cmp::Ordering::Less,
        (_, YNode::Str(_)) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    });
    let mut out = String::new();
    emit_map(&mut out, &entries, 0)?;
    if entries.is_empty() {
        out.push_str("{}\n");
    }
    // Wipe the tree's strings: they hold plaintext.
    entries.iter_mut().for_each(|(k, v)| {
        wipe_ynode(k);
        wipe_ynode(v)
    });
    Ok(out)
}

