//! Airflow's own `.env` format for LocalFilesystemBackend files (spec §5.6): `splitlines`, the first
//! `=`, no quoting; a syntax error or a repeated key rejects the whole file.

use super::*;

// ---- .env: Airflow's own format ---------------------------------------------------------------

pub use crate::airflow::is_py_line_break;

/// Python's `str.isspace()` (what `\s` matches in a `str` regex).
pub(super) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python `splitlines(keepends=True)`, as `(line, line_end)` pairs; `\r\n` is one break.
pub(super) fn py_lines(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if is_py_line_break(c) {
            let mut end = i + c.len_utf8();
            if c == '\r'
                && let Some(&(_, '\n')) = iter.peek()
            {
                iter.next();
                end += 1;
            }
            out.push((&text[start..i], &text[i..end]));
            start = end;
        }
    }
    if start < text.len() {
        out.push((&text[start..], ""));
    }
    out
}

/// What one `.env` line is to Airflow.
pub(super) enum EnvLine<'a> {
    Skip,
    Pair(&'a str, &'a str),
}

pub(super) fn classify_env_line(line: &str, line_no: usize) -> Result<EnvLine<'_>, String> {
    if line.is_empty() || line.trim_start_matches(py_isspace).starts_with('#') {
        return Ok(EnvLine::Skip);
    }
    let Some((key, value)) = line.split_once('=') else {
        return Err(format!("line {line_no}: no '=' (Airflow rejects the whole file)"));
    };
    if value.is_empty() {
        return Err(format!("line {line_no}: an empty value (Airflow rejects the whole file)"));
    }
    Ok(EnvLine::Pair(key, value))
}

/// Airflow's `_parse_env_file`, plus its later checks: any syntax error or a key given twice makes
/// Airflow reject the file, so the whole file is an error. The message never quotes a value.
pub fn parse_airflow_env(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (n, (line, _)) in py_lines(text).into_iter().enumerate() {
        if let EnvLine::Pair(key, value) = classify_env_line(line, n + 1)? {
            if !seen.insert(key) {
                return Err(format!(
                    "line {}: key '{}' appears more than once (Airflow rejects the whole file)",
                    n + 1,
                    key.escape_debug()
                ));
            }
            out.push((key.to_string(), value.to_string()));
        }
    }
    Ok(out)
}

pub(super) fn rewrite_airflow_env(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    parse_airflow_env(text)?;
    let mut out = String::new();
    let mut done = HashSet::new();
    let push = |out: &mut String, key: &str, r: &Rendered| {
        if let Rendered::Line(v) = r {
            out.push_str(key);
            out.push('=');
            out.push_str(v.expose_plaintext());
            out.push('\n');
        }
    };
    for (n, (line, end)) in py_lines(text).into_iter().enumerate() {
        match classify_env_line(line, n + 1)? {
            EnvLine::Pair(key, _) if changes.contains_key(key) => {
                done.insert(key.to_string());
                if let Some(Some(r)) = changes.get(key) {
                    push(&mut out, key, r);
                }
            }
            _ => {
                out.push_str(line);
                out.push_str(if end.is_empty() { "\n" } else { end });
            }
        }
    }
    for (key, r) in changes {
        if !done.contains(key)
            && let Some(r) = r
        {
            push(&mut out, key, r);
        }
    }
    Ok(out)
}
