//! Airflow's own `.env` format for LocalFilesystemBackend files (spec §5.6): `splitlines`, the first
//! `=`, no quoting; a syntax error or a repeated key rejects the whole file.

use std::collections::HashSet;

use crate::airflow::is_py_line_break;

/// Python's `str.isspace()` (what `\s` matches in a `str` regex).
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python `splitlines(keepends=True)`, as `(line, line_end)` pairs; `\r\n` is one break.
pub fn py_lines(text: &str) -> Vec<(&str, &str)> {
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
pub enum EnvLine<'a> {
    Skip,
    Pair(&'a str, &'a str),
}

pub fn classify_env_line(line: &str, line_no: usize) -> Result<EnvLine<'_>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airflow_env_follows_python_splitlines() {
        let err = parse_airflow_env("d=\u{85}e=5").unwrap_err();
        assert!(err.contains("line 1") && err.contains("empty value"), "{err}");
        let ok = parse_airflow_env("a=1\r\nb= spaced \x0bc=x=y\n# comment\n \t# x\n\u{2028}e=5").unwrap();
        assert_eq!(
            ok,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".into(), " spaced ".into()),
                ("c".into(), "x=y".into()),
                ("e".into(), "5".into())
            ]
        );
        assert!(parse_airflow_env("novalue\n").unwrap_err().contains("no '='"));
        assert!(parse_airflow_env("k=1\nk=2\n").unwrap_err().contains("more than once"));
    }
}
