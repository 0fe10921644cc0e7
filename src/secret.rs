//! `SecretValue`: the only type in this crate that holds plaintext.
//!
//! It prints as `SecretValue(***)`, has no `Display` and no `Serialize`, and zeroizes its buffer on
//! drop. The way out is [`SecretValue::expose_plaintext`]: a long, greppable name with few callers
//! (codecs that must build a wire value, and comparisons).

use std::fmt;

use zeroize::Zeroizing;

/// Plaintext of a variable value, a connection password or a connection extra.
#[derive(Clone, Default)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(plaintext: impl Into<String>) -> Self {
        Self(Zeroizing::new(plaintext.into()))
    }

    /// The plaintext. Every caller is a place where a secret leaves its wrapper: keep them few.
    pub fn expose_plaintext(&self) -> &str {
        &self.0
    }

    /// Size in bytes (UTF-8), for backend size limits. Reveals nothing else.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretValue {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for SecretValue {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for SecretValue {}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_plaintext() {
        let s = SecretValue::from("canary-5f1e2d");
        let shown = format!("{s:?} {s:#?} {:?}", Some(&s));
        assert!(!shown.contains("canary"), "{shown}");
        assert_eq!(s.expose_plaintext(), "canary-5f1e2d");
        assert_eq!(s.len(), 13);
    }
}

/// Run a `*_cmd` option's command the way Airflow's `run_command` splits it: `shlex.split`, no
/// shell (`;`, `|`, `$VAR` are plain arguments), stdin `/dev/null` (it never reads the tool's own
/// input), stderr discarded (it could echo what it fetched). Its stdout, unstripped, is held in a
/// [`SecretValue`] from the moment it is read. Errors name the program and the exit status, never
/// the output.
pub fn run_command(command: &str) -> Result<SecretValue, String> {
    use std::process::{Command, Stdio};
    let argv = Zeroizing::new(shlex::split(command).ok_or("the command cannot be split into words (unbalanced quotes?)")?);
    let (program, args) = argv.split_first().ok_or("the command is empty")?;
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("could not run `{program}`: {}", e.kind()))?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        return Err(format!("`{program}` failed ({}); its output is not shown", out.status));
    }
    let text = std::str::from_utf8(&stdout).map_err(|_| format!("`{program}` printed something that is not UTF-8"))?;
    Ok(SecretValue::new(text))
}

#[cfg(test)]
mod command_tests {
    use super::run_command;

    #[test]
    fn no_shell_stdin_is_null_and_stdout_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        // `;` is an argument to printf, not a command separator: nothing else runs.
        let out = run_command(&format!("printf '%s ' canary-cmd-4d1 ';' touch {}", marker.display())).unwrap();
        assert!(!marker.exists(), "a shell ran the command");
        assert!(out.expose_plaintext().starts_with("canary-cmd-4d1 ; touch"));
        assert!(!format!("{out:?}").contains("canary"), "the stdout is a SecretValue");
        let out = run_command("sh -c 'readlink /proc/self/fd/0; printf \"x \\n\"'").unwrap();
        assert_eq!(out.expose_plaintext(), "/dev/null\nx \n", "stdin is /dev/null; stdout unstripped");
    }

    #[test]
    fn failures_never_show_the_output() {
        let err = run_command("sh -c 'echo canary-cmd-7e2; echo canary-cmd-7e3 >&2; exit 3'").unwrap_err();
        assert!(err.contains("`sh` failed") && !err.contains("canary"), "{err}");
        assert!(run_command("").unwrap_err().contains("empty"));
        assert!(run_command("'unbalanced").unwrap_err().contains("split"));
        assert!(run_command("/nonexistent/prog-5a").unwrap_err().contains("could not run"));
    }
}

/// A deserializer's error message with the offending value withheld. serde quotes the value it
/// could not use (`invalid type: string "s.abc…", expected a table`, ``unknown variant `s.abc…`,
/// expected one of `token`, `approle` ``), and a credential written in the wrong place — `auth =
/// "<token>"` where a table belongs, a token as `type` — would otherwise be printed, logged and
/// shown by the daemon's `/status`. Withheld: every double-quoted string and all back-quoted text
/// (an unknown variant or field, an unexpected `true` or `5`), except the names that are ours: the
/// list after the final `, expected` (when it is only back-quoted names) and `missing field `x``.
pub fn scrub_de_message(message: &str) -> String {
    use std::sync::LazyLock;
    static QUOTED: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r#"(string|character) "(?:[^"\\]|\\.)*""#).expect("a valid pattern"));
    static EXPECTED_NAMES: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"^, expected (one of )?`[A-Za-z0-9_.:/-]*`((, | or )`[A-Za-z0-9_.:/-]*`)*$").expect("a valid pattern")
    });
    static OUR_FIELD: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^missing field `[A-Za-z0-9_]+`$").expect("a valid pattern"));
    let message = QUOTED.replace_all(message, r#"$1 "***""#);
    let (front, names) = match message.rfind(", expected ") {
        Some(i) if EXPECTED_NAMES.is_match(&message[i..]) => message.split_at(i),
        _ => (&*message, ""),
    };
    let front = match (front.find('`'), front.rfind('`')) {
        // From the first back-quote to the last: a value may itself hold back-quotes.
        (Some(a), Some(b)) if b > a && !OUR_FIELD.is_match(front) => format!("{}`***`{}", &front[..a], &front[b + 1..]),
        (Some(a), Some(b)) if a == b => format!("{}`***", &front[..a]),
        _ => front.to_string(),
    };
    front + names
}

#[cfg(test)]
mod scrub_tests {
    use super::scrub_de_message;

    #[test]
    fn quoted_values_are_withheld_names_kept() {
        assert_eq!(
            scrub_de_message(r#"invalid type: string "s.hunter2 \"x\"", expected internally tagged enum VaultAuth"#),
            r#"invalid type: string "***", expected internally tagged enum VaultAuth"#
        );
        assert_eq!(scrub_de_message("unknown field `token_path`, expected one of `url`"), "unknown field `***`, expected one of `url`");
        assert_eq!(scrub_de_message(r#"invalid value: string "p@ss", expected usize"#), r#"invalid value: string "***", expected usize"#);
        assert_eq!(scrub_de_message("missing field `role_id`"), "missing field `role_id`");
    }

    #[test]
    fn back_quoted_values_are_withheld_our_names_kept() {
        let cases = [
            (
                "unknown variant `hvs.canary-5c1`, expected one of `token`, `approle`, `kubernetes`, `userpass`",
                "unknown variant `***`, expected one of `token`, `approle`, `kubernetes`, `userpass`",
            ),
            ("unknown variant `hvs.canary-5c2`, expected `fields` or `uri`", "unknown variant `***`, expected `fields` or `uri`"),
            ("unknown variant `hvs.canary-5c3`, there are no variants", "unknown variant `***`, there are no variants"),
            // A value holding back-quotes and a fake list cannot smuggle itself into the kept part.
            (
                "unknown variant `a`, expected `hvs.canary-5c4`, expected `fields` or `uri`",
                "unknown variant `***`, expected `fields` or `uri`",
            ),
            ("unknown field `x`, expected `hvs.canary-5c5`, there are no fields", "unknown field `***`, there are no fields"),
            ("invalid type: boolean `true`, expected a string", "invalid type: boolean `***`, expected a string"),
            ("unknown variant `hvs.canary-5c6", "unknown variant `***"),
        ];
        for (message, want) in cases {
            let got = scrub_de_message(message);
            assert_eq!(got, want);
            assert!(!got.contains("canary"), "{got}");
        }
    }
}
