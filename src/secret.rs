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

/// A deserializer's error message with the offending value withheld. serde quotes the value it
/// could not use (`invalid type: string "s.abc…", expected a table`), and a credential written in
/// the wrong place — `auth = "<token>"` where a table belongs — would otherwise be printed, logged
/// and shown by the daemon's `/status`. Field and variant names (backquoted) are kept.
pub fn scrub_de_message(message: &str) -> String {
    static QUOTED: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"(string|character) "(?:[^"\\]|\\.)*""#).expect("a valid pattern"));
    QUOTED.replace_all(message, r#"$1 "***""#).into_owned()
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
        assert_eq!(scrub_de_message("unknown field `token_path`, expected one of `url`"), "unknown field `token_path`, expected one of `url`");
        assert_eq!(scrub_de_message(r#"invalid value: string "p@ss", expected usize"#), r#"invalid value: string "***", expected usize"#);
    }
}
