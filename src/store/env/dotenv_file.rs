//! The env store's `.env` file: its pairs read as dotenvy reads them (the format is
//! [`crate::airflow::dotenv`]), refusals by item, and rewrites that keep every other line.

use super::*;
use crate::airflow::dotenv::split_statements;

/// Every pair in a `.env` file as dotenvy reads it (last one wins, as in sh and compose), except
/// that `$VAR` / `${VAR}` resolve only against the file itself, never against this process's
/// environment ([`crate::airflow::dotenv::read`]). A line that cannot be read is a per-item error when it
/// names one of our variables, otherwise ignored (it is not ours); the error gives the line
/// number, never the text.
pub(super) fn dotenv_values(
    store: &dyn fmt::Display,
    text: &str,
) -> Result<HashMap<String, Result<SecretValue, ItemError>>, StoreError> {
    use crate::airflow::dotenv::read::{Defined, LineError, parse_statement};
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
