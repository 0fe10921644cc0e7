//! `.env` files as dotenvy (and sh, docker compose) read them: statements split exactly as
//! dotenvy's line joiner does, values read without the tool's environment, rewrites that keep every
//! other line.

use super::*;

// ---- .env files as dotenvy reads them ----------------------------------------------------------

/// One logical statement of a `.env` file, split exactly as dotenvy's line joiner does.
pub(crate) struct Statement<'a> {
    pub(crate) text: &'a str,
    /// 1-based line where it starts.
    pub(super) line: usize,
    /// Whether dotenvy yields an item (a pair or an error) for it: not blank, not a comment.
    pub(super) is_item: bool,
    /// The key, when it parses as `[export] KEY =`.
    pub(super) key: Option<String>,
}

#[derive(Clone, Copy)]
pub(super) enum JoinState {
    Complete,
    Escape,
    StrongOpen,
    StrongOpenEscape,
    WeakOpen,
    WeakOpenEscape,
    Comment,
    WhiteSpace,
}

/// dotenvy 0.15 `QuotedLines::eval_end_state`, so statements we edit are the ones it reads.
pub(super) fn join_state(mut state: JoinState, line: &str) -> JoinState {
    use JoinState::*;
    for c in line.chars() {
        state = match state {
            WhiteSpace => match c {
                '#' => return Comment,
                '\\' => Escape,
                '"' => WeakOpen,
                '\'' => StrongOpen,
                _ => Complete,
            },
            Escape => Complete,
            Complete => match c {
                c if c.is_whitespace() && c != '\n' && c != '\r' => WhiteSpace,
                '\\' => Escape,
                '"' => WeakOpen,
                '\'' => StrongOpen,
                _ => Complete,
            },
            WeakOpen => match c {
                '\\' => WeakOpenEscape,
                '"' => Complete,
                _ => WeakOpen,
            },
            WeakOpenEscape => WeakOpen,
            StrongOpen => match c {
                '\\' => StrongOpenEscape,
                '\'' => Complete,
                _ => StrongOpen,
            },
            StrongOpenEscape => StrongOpen,
            Comment => return Comment,
        };
    }
    state
}

pub(crate) fn split_statements(text: &str) -> Vec<Statement<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut line_no = 1;
    let mut state = JoinState::Complete;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        pos += line.len();
        line_no += 1;
        let buf = &text[start..pos];
        let done = buf.trim_start().starts_with('#') || {
            state = join_state(state, line);
            matches!(state, JoinState::Complete | JoinState::Comment)
        };
        if done {
            out.push(statement(&text[start..pos], start_line));
            start = pos;
            start_line = line_no;
            state = JoinState::Complete;
        }
    }
    if start < text.len() {
        // Unterminated at end of file: dotenvy yields an error for it, even when it is blank
        // (`"  "` without a newline ends in its WhiteSpace state).
        let mut last = statement(&text[start..], start_line);
        last.is_item = true;
        out.push(last);
    }
    out
}

pub(super) fn statement(text: &str, line: usize) -> Statement<'_> {
    let body = text.trim_start();
    let is_item = !(body.trim_end().is_empty() || body.starts_with('#'));
    Statement { text, line, is_item, key: if is_item { statement_key(body) } else { None } }
}

/// dotenvy's key rule: `[A-Za-z_][A-Za-z0-9_.]*`, optionally after `export`, then `=`.
pub(super) fn statement_key(body: &str) -> Option<String> {
    fn key(s: &str) -> Option<(&str, &str)> {
        if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return None;
        }
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(s.len());
        Some((&s[..end], s[end..].trim_start()))
    }
    let (mut k, mut rest) = key(body)?;
    if k == "export" && !rest.starts_with('=') {
        (k, rest) = key(rest)?;
    }
    rest.starts_with('=').then(|| k.to_string())
}

/// Every pair in a `.env` file as dotenvy reads it (last one wins, as in sh and compose), except
/// that `$VAR` / `${VAR}` resolve only against the file itself, never against this process's
/// environment ([`super::dotenv_read`]). A line that cannot be read is a per-item error when it
/// names one of our variables, otherwise ignored (it is not ours); the error gives the line
/// number, never the text.
pub(super) fn dotenv_values(
    store: &dyn fmt::Display,
    text: &str,
) -> Result<HashMap<String, Result<SecretValue, ItemError>>, StoreError> {
    use super::dotenv_read::{Defined, LineError, parse_statement};
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut defined = Defined::new();
    let mut out = HashMap::new();
    for st in split_statements(text).into_iter().filter(|s| s.is_item) {
        match parse_statement(st.text, &mut defined) {
            Ok(Some((k, v))) => {
                out.insert(k, Ok(SecretValue::from(v)));
            }
            Ok(None) => {}
            Err(e) => {
                let why = match e {
                    LineError::Syntax => "is not valid .env syntax",
                    LineError::Substitution => {
                        "substitutes a variable ($NAME or ${NAME}) the file does not define; it is never taken \
                         from this tool's environment (single-quote the value or escape the $)"
                    }
                };
                if let Some(k) = st.key.filter(|k| id_from_env_name(k).is_some()) {
                    let detail = format!("line {} {why}", st.line);
                    out.insert(k, Err(ItemError::new(ItemErrorKind::Unparseable, detail)));
                } else {
                    tracing::warn!(store = %store, line = st.line, "skipping a .env line: it {why}");
                }
            }
        }
    }
    defined.values_mut().flatten().for_each(zeroize::Zeroize::zeroize);
    Ok(out)
}

/// Apply `changes` to a `.env` text: the first statement of a changed name is replaced (or dropped),
/// later duplicates dropped, new names appended in order; everything else is kept byte for byte.
pub(super) fn rewrite_dotenv(text: &str, changes: &BTreeMap<String, Option<SecretValue>>) -> String {
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let mut out = String::from(bom);
    let mut done: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for st in split_statements(body) {
        match st.key.as_deref().and_then(|k| changes.get_key_value(k)) {
            Some((k, change)) => {
                if done.insert(k.as_str())
                    && let Some(line) = change
                {
                    push_line(&mut out, k, line);
                }
            }
            None => out.push_str(st.text),
        }
    }
    if !out.is_empty() && !out.ends_with('\n') && out != bom {
        out.push('\n');
    }
    for (k, change) in changes {
        if !done.contains(k.as_str())
            && let Some(line) = change
        {
            push_line(&mut out, k, line);
        }
    }
    out
}

pub(super) fn push_line(out: &mut String, name: &str, quoted: &SecretValue) {
    out.push_str(name);
    out.push('=');
    out.push_str(quoted.expose_plaintext());
    out.push('\n');
}
