//! Rewriting LocalFilesystemBackend `.env` files line by line, every line the run does not touch
//! kept byte for byte (Airflow's format itself is [`crate::airflow::local_filesystem::env`]).

use super::*;
use crate::airflow::local_filesystem::{EnvLine, classify_env_line, parse_airflow_env, py_lines};

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
