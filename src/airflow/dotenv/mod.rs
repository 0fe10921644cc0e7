//! `.env` files as dotenvy 0.15 (and sh, docker compose) read them: the files a deployment hands
//! to Airflow's containers. Statements split exactly as dotenvy's line joiner does ([`split_statements`]),
//! and one statement read the way dotenvy reads it, except that substitution never consults this
//! process's environment ([`read`]). `crate::store::env` reads and rewrites the files.

pub mod read;

/// One logical statement of a `.env` file, split exactly as dotenvy's line joiner does.
pub struct Statement<'a> {
    pub text: &'a str,
    /// 1-based line where it starts.
    pub line: usize,
    /// Whether dotenvy yields an item (a pair or an error) for it: not blank, not a comment.
    pub is_item: bool,
    /// The key, when it parses as `[export] KEY =`.
    pub key: Option<String>,
}

#[derive(Clone, Copy)]
pub enum JoinState {
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
pub fn join_state(mut state: JoinState, line: &str) -> JoinState {
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

pub fn split_statements(text: &str) -> Vec<Statement<'_>> {
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

pub fn statement(text: &str, line: usize) -> Statement<'_> {
    let body = text.trim_start();
    let is_item = !(body.trim_end().is_empty() || body.starts_with('#'));
    Statement { text, line, is_item, key: if is_item { statement_key(body) } else { None } }
}

/// dotenvy's key rule: `[A-Za-z_][A-Za-z0-9_.]*`, optionally after `export`, then `=`.
pub fn statement_key(body: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_follow_dotenvy_line_joining() {
        let text = "# c\nA='x\ny'\n\nexport B=\"q\\\"\nr\" # c\nC=1";
        let st = split_statements(text);
        let keys: Vec<_> = st.iter().map(|s| (s.line, s.is_item, s.key.clone())).collect();
        assert_eq!(
            keys,
            vec![
                (1, false, None),
                (2, true, Some("A".into())),
                (4, false, None),
                (5, true, Some("B".into())),
                (7, true, Some("C".into())),
            ]
        );
        assert_eq!(st.iter().map(|s| s.text).collect::<String>(), text);
    }

    #[test]
    fn statements_align_with_dotenvy_items() {
        for text in ["A=1\n   ", "A=1 ", "A='open\nB=2", "# only\n", "\n\n", "A=1\nB", "export A=1\n  # c\nB=\"x\ny\""]
        {
            let items = split_statements(text).into_iter().filter(|s| s.is_item).count();
            assert_eq!(items, dotenvy::from_read_iter(text.as_bytes()).count(), "{text:?}");
        }
    }
}
