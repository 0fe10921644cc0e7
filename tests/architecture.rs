//! The module graph, read from the sources: no cycle between top-level modules of `src/`, and
//! exit codes only at the binary's edge.
//!
//! An edge `a -> b` is a path `crate::b…` (or a `use crate::{b, …}` group) in a file under
//! module `a`, outside comments and outside `#[cfg(test)]` modules (tests may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges a cycle may still use, each with why and who removes it. An allowance whose edge is gone
/// fails the test, so it is removed with the edge.
///
/// TODO(issue 17, the run pipeline): the daemon and the demo call into `app` to run a migration;
/// once both go through the one pipeline, remove these two lines.
const ALLOWED: &[(&str, &str)] = &[];

/// Modules that may name exit codes and `AppError` (`crate::error`): the binary's edge and the
/// commands around one run (`pipeline`: the one run path, whose `RunOutcome` carries the exit the
/// CLI returns and the daemon reports; `insight`: verify/resolve/config print; `safety`: the run's
/// lock, snapshot and journal, driven by the pipeline).
const EDGE: &[&str] = &["app", "daemon", "demo", "insight", "pipeline", "safety", "error"];

fn src_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            src_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/store/vault/mod.rs` -> `store`), or `None` for
/// the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_str().unwrap();
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// `text` without `#[cfg(test)] mod … { … }` blocks (braces counted; good enough for this code).
fn without_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_mod = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ") || trimmed.starts_with("pub(crate) mod ");
        let Some(open) = after.find(['{', ';']) else { break };
        if !is_mod || after.as_bytes()[open] == b';' {
            out.push_str(&rest[..at + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules a piece of code names through `crate::`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for line in code.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut from = 0;
        while let Some(i) = line[from..].find("crate::") {
            let at = from + i;
            from = at + "crate::".len();
            if line[..at].chars().next_back().is_some_and(|c| is_ident(c) || c == '$') {
                continue;
            }
            let rest = &line[from..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c, d::{e, f}}`: the first segment of each item.
                for item in split_top_level(group) {
                    let name: String = item.trim_start().chars().take_while(|c| is_ident(*c)).collect();
                    if !name.is_empty() {
                        refs.insert(name);
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
                if !name.is_empty() {
                    refs.insert(name);
                }
            }
        }
    }
    refs
}

/// The items of a `{…}` group (its text after `{`), split at top-level commas, up to its `}`.
fn split_top_level(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// module -> module it uses -> the files that do.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph() -> Graph {
    let src = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut files = Vec::new();
    src_files(&src, &mut files);
    let mut g = Graph::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else { continue };
        let code = without_test_modules(&std::fs::read_to_string(&file).unwrap());
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        g.entry(from.clone()).or_default();
        for to in crate_refs(&code) {
            if to != from && to != "self" && to != "super" {
                g.entry(from.clone()).or_default().entry(to).or_default().insert(rel.clone());
            }
        }
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T, v: &str) {
        t.index.insert(v.to_string(), t.next);
        t.low.insert(v.to_string(), t.next);
        t.next += 1;
        t.stack.push(v.to_string());
        t.on.insert(v.to_string());
        let succ: Vec<String> = t.g.get(v).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        for w in succ {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let l = t.low[v].min(t.low[&w]);
                t.low.insert(v.to_string(), l);
            } else if t.on.contains(&w) {
                let l = t.low[v].min(t.index[&w]);
                t.low.insert(v.to_string(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(&w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on: BTreeSet::new(), next: 0, out: vec![] };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_cycle_between_top_level_modules() {
    let g = graph();
    for (from, to) in ALLOWED {
        assert!(
            g.get(*from).is_some_and(|e| e.contains_key(*to)),
            "the allowance {from} -> {to} is no longer needed: remove it from ALLOWED in tests/architecture.rs"
        );
    }
    let edges: BTreeMap<String, BTreeSet<String>> = g
        .iter()
        .map(|(from, to)| {
            let kept = to.keys().filter(|t| !ALLOWED.contains(&(from.as_str(), t.as_str()))).cloned().collect();
            (from.clone(), kept)
        })
        .collect();
    let found = cycles(&edges);
    let explain: Vec<String> = found
        .iter()
        .map(|comp| {
            let inner: Vec<String> = comp
                .iter()
                .flat_map(|a| {
                    g[a].iter()
                        .filter(|(b, _)| comp.contains(b) && !ALLOWED.contains(&(a.as_str(), b.as_str())))
                        .map(move |(b, files)| format!("  {a} -> {b} ({})", files.iter().cloned().collect::<Vec<_>>().join(", ")))
                })
                .collect();
            format!("cycle {comp:?}:\n{}", inner.join("\n"))
        })
        .collect();
    assert!(found.is_empty(), "module cycles:\n{}", explain.join("\n"));
}

#[test]
fn exit_codes_are_named_only_at_the_edge() {
    let g = graph();
    let offenders: Vec<String> = g
        .iter()
        .filter(|(from, _)| !EDGE.contains(&from.as_str()))
        .filter_map(|(from, to)| to.get("error").map(|files| format!("{from} ({})", files.iter().cloned().collect::<Vec<_>>().join(", "))))
        .collect();
    assert!(offenders.is_empty(), "library modules naming crate::error (exit codes, AppError): {offenders:?}");
}

/// The parser itself: groups, nested groups, `$crate`, comments and test modules.
#[test]
fn the_reference_parser_reads_what_it_should() {
    let code = "use crate::{a, b::c, d::{e, f}};\nlet x = crate::g::h();\n// crate::comment\n$crate::macro_only\n\
                #[cfg(test)]\nmod tests {\n    use crate::test_only;\n    fn f() { if x { } }\n}\nuse crate::after;\n";
    let refs = crate_refs(&without_test_modules(code));
    let want: BTreeSet<String> = ["a", "b", "d", "g", "after"].iter().map(|s| s.to_string()).collect();
    assert_eq!(refs, want);
}
