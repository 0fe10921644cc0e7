//! Reading one `.env` statement the way dotenvy 0.15 does (quotes, escapes, `export`, comments),
//! except for `$VAR` / `${VAR}` substitution, which resolves **only against the file itself**.
//!
//! dotenvy looks a substituted name up in the process environment first, so a source line
//! `AIRFLOW_VAR_X="${VAULT_TOKEN}"` would copy this tool's own credential into the target. The
//! file is meant for another process (docker compose, a shell, Airflow's container), whose
//! environment we do not have. So a name defined earlier in the file resolves to that value (as
//! `sh` reads it), and any other name makes the statement a refusal; the refusal never names the
//! substituted variable (in an unquoted password `pa$sw0rd`, `sw0rd` is part of the value).
//!
//! Ported from dotenvy 0.15.7 (`parse.rs`, `iter.rs`; MIT), byte for byte in what it accepts;
//! `tests` checks it against dotenvy itself on files that substitute nothing from the environment.

use std::collections::HashMap;

/// Why a statement yields no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// dotenvy's `LineParse`: not valid `.env` syntax.
    Syntax,
    /// It substitutes a name the file does not define (or whose own value is unknown).
    Substitution,
}

/// What the file defined so far, for substitution: `None` is a name whose value is unknown (its
/// own line substituted something undefined). dotenvy's empty value (`K=`) is `Some("")`.
pub type Defined = HashMap<String, Option<String>>;

/// The text dotenvy's line joiner hands to its parser for one statement (as split by
/// [`super::split_statements`]), or `None` when the joiner itself fails (an unterminated quote).
fn joined_line(text: &str) -> Option<&str> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Complete,
        Escape,
        StrongOpen,
        StrongOpenEscape,
        WeakOpen,
        WeakOpenEscape,
        WhiteSpace,
    }
    if text.trim_start().starts_with('#') {
        return Some("");
    }
    let mut state = S::Complete;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        for (i, c) in line.char_indices() {
            state = match state {
                S::WhiteSpace => match c {
                    '#' => return Some(&text[..start + i]),
                    '\\' => S::Escape,
                    '"' => S::WeakOpen,
                    '\'' => S::StrongOpen,
                    _ => S::Complete,
                },
                S::Escape => S::Complete,
                S::Complete => match c {
                    c if c.is_whitespace() && c != '\n' && c != '\r' => S::WhiteSpace,
                    '\\' => S::Escape,
                    '"' => S::WeakOpen,
                    '\'' => S::StrongOpen,
                    _ => S::Complete,
                },
                S::WeakOpen => match c {
                    '\\' => S::WeakOpenEscape,
                    '"' => S::Complete,
                    _ => S::WeakOpen,
                },
                S::WeakOpenEscape => S::WeakOpen,
                S::StrongOpen => match c {
                    '\\' => S::StrongOpenEscape,
                    '\'' => S::Complete,
                    _ => S::StrongOpen,
                },
                S::StrongOpenEscape => S::StrongOpen,
            };
        }
        start += line.len();
        if state == S::Complete {
            let mut out = &text[..start];
            if let Some(s) = out.strip_suffix('\n') {
                out = s.strip_suffix('\r').unwrap_or(s);
            }
            return Some(out);
        }
    }
    None
}

/// Parse one statement; `Ok(None)` for a blank or comment statement. A pair is recorded in
/// `defined` (as dotenvy records it in its substitution data), an unknown one as `None`.
pub fn parse_statement(text: &str, defined: &mut Defined) -> Result<Option<(String, String)>, LineError> {
    let line = joined_line(text).ok_or(LineError::Syntax)?.trim_end();
    let mut rest = line.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let mut key = parse_key(&mut rest)?;
    rest = rest.trim_start();
    if key == "export" {
        if let Some(r) = rest.strip_prefix('=') {
            rest = r;
        } else {
            key = parse_key(&mut rest)?;
            rest = rest.trim_start().strip_prefix('=').ok_or(LineError::Syntax)?;
        }
    } else {
        rest = rest.strip_prefix('=').ok_or(LineError::Syntax)?;
    }
    rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        defined.insert(key.clone(), Some(String::new()));
        return Ok(Some((key, String::new())));
    }
    match parse_value(rest, defined) {
        Ok(v) => {
            defined.insert(key.clone(), Some(v.clone()));
            Ok(Some((key, v)))
        }
        Err(LineError::Substitution) => {
            defined.insert(key, None);
            Err(LineError::Substitution)
        }
        Err(e) => Err(e),
    }
}

fn parse_key(rest: &mut &str) -> Result<String, LineError> {
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err(LineError::Syntax);
    }
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
    let key = rest[..end].to_string();
    *rest = &rest[end..];
    Ok(key)
}

#[derive(PartialEq)]
enum Subst {
    None,
    Block,
    EscapedBlock,
}

/// dotenvy's `parse_value`, with [`substitute`] in place of its environment lookup. A syntax error
/// wins over a substitution refusal (dotenvy would not yield the line either way).
fn parse_value(input: &str, defined: &Defined) -> Result<String, LineError> {
    let (mut strong, mut weak, mut escaped, mut expecting_end) = (false, false, false, false);
    let mut out = String::new();
    let mut mode = Subst::None;
    let mut name = String::new();
    let mut refused = false;
    let mut apply = |name: &mut String, out: &mut String| {
        if !substitute(defined, name, out) {
            refused = true;
        }
        name.clear();
    };
    for c in input.chars() {
        if expecting_end {
            if c == ' ' || c == '\t' {
                continue;
            } else if c == '#' {
                break;
            } else {
                return Err(LineError::Syntax);
            }
        } else if escaped {
            match c {
                '\\' | '\'' | '"' | '$' | ' ' => out.push(c),
                'n' => out.push('\n'),
                _ => return Err(LineError::Syntax),
            }
            escaped = false;
        } else if strong {
            if c == '\'' {
                strong = false;
            } else {
                out.push(c);
            }
        } else if mode != Subst::None {
            if c.is_alphanumeric() {
                name.push(c);
            } else {
                match mode {
                    Subst::None => unreachable!(),
                    Subst::Block => {
                        if c == '{' && name.is_empty() {
                            mode = Subst::EscapedBlock;
                        } else {
                            apply(&mut name, &mut out);
                            if c == '$' {
                                mode = Subst::Block;
                            } else {
                                mode = Subst::None;
                                out.push(c);
                            }
                        }
                    }
                    Subst::EscapedBlock => {
                        if c == '}' {
                            mode = Subst::None;
                            apply(&mut name, &mut out);
                        } else {
                            name.push(c);
                        }
                    }
                }
            }
        } else if c == '$' {
            mode = Subst::Block;
        } else if weak {
            if c == '"' {
                weak = false;
            } else if c == '\\' {
                escaped = true;
            } else {
                out.push(c);
            }
        } else if c == '\'' {
            strong = true;
        } else if c == '"' {
            weak = true;
        } else if c == '\\' {
            escaped = true;
        } else if c == ' ' || c == '\t' {
            expecting_end = true;
        } else {
            out.push(c);
        }
    }
    if mode == Subst::EscapedBlock || strong || weak {
        return Err(LineError::Syntax);
    }
    apply(&mut name, &mut out);
    zeroize::Zeroize::zeroize(&mut name);
    if refused {
        zeroize::Zeroize::zeroize(&mut out);
        return Err(LineError::Substitution);
    }
    Ok(out)
}

/// Append the value of `name` as the file defines it; false when the file does not define it.
/// An empty name (a `$` not followed by a name) is empty, as in dotenvy.
fn substitute(defined: &Defined, name: &str, out: &mut String) -> bool {
    if name.is_empty() {
        return true;
    }
    match defined.get(name) {
        Some(Some(v)) => {
            out.push_str(v);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<(String, String), LineError>> {
        let mut defined = Defined::new();
        super::super::split_statements(text)
            .into_iter()
            .filter_map(|st| parse_statement(st.text, &mut defined).transpose())
            .collect()
    }

    #[test]
    fn reads_what_dotenvy_reads_when_nothing_comes_from_the_environment() {
        let samples = [
            "A=1\nB='x y'\nC=\"q\\\"\\n\\$ \\\\\"\nexport D=4 # c\nE=a\\ b\n",
            "A='multi\nline'\n# comment\n  # indented\n\nB=\"x\ny\" # trailing\nC=",
            "K1=v\nK2=${K1}/$K1-x\nK3=\"${K1}\"'${K1}'\nK4=$\nK5=a$-b\n",
            "export=1\nexport X=2\nX.Y=3\n_Z=4\nA=1 2\n9=x\nB\nC=\"open\n",
            "A=\"${NOT_CLOSED\"\nB=\\q\nC=ok\nD=x#y\nE= \t spaced\t \nF=\r\nG=1\r\n",
        ];
        for text in samples {
            let ours = read(text);
            let theirs: Vec<_> = dotenvy::from_read_iter(text.as_bytes()).collect();
            assert_eq!(ours.len(), theirs.len(), "{text:?}");
            for (o, t) in ours.iter().zip(&theirs) {
                match (o, t) {
                    (Ok(o), Ok(t)) => assert_eq!(o, t, "{text:?}"),
                    (Err(LineError::Syntax), Err(_)) => {}
                    _ => panic!("{text:?}: ours {o:?}, dotenvy {t:?}"),
                }
            }
        }
    }

    #[test]
    fn undefined_names_are_refused_and_poison_what_uses_them() {
        let got = read("A=${HOME}\nB=$A\nC=x${A}\nD='$HOME'\nE=\"\\$HOME\"\nF=$HOME-\n");
        assert_eq!(got[0], Err(LineError::Substitution));
        assert_eq!(got[1], Err(LineError::Substitution), "A's value is unknown");
        assert_eq!(got[2], Err(LineError::Substitution));
        assert_eq!(got[3], Ok(("D".into(), "$HOME".into())));
        assert_eq!(got[4], Ok(("E".into(), "$HOME".into())));
        assert_eq!(got[5], Err(LineError::Substitution));
    }
}
