//! Where `VaultBackend` looks an id up: mount, secret path, and the HTTP request hvac sends.
//! Pure functions, tested against `backend_names.json` (spec §5.1 "Path construction").

use super::config::KvVersion;

/// A secret's location: the KV mount and the path inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretPath {
    pub mount: String,
    pub path: String,
}

/// Airflow's lookup of `id` under one configured kind path (`connections_path` / `variables_path`).
///
/// - `mount_point` set: `(mount_point, f"{kind_path}/{id}")`, or just `id` when `kind_path == ""`.
/// - `mount_point` None/empty: the id's first `/`-segment is the mount and the rest goes under
///   `kind_path`; an id without `/` gives `None` (Airflow returns before any request).
pub fn secret_path(mount_point: Option<&str>, kind_path: &str, id: &str) -> Option<SecretPath> {
    let (mount, key) = match mount_point.filter(|m| !m.is_empty()) {
        Some(m) => (m, id),
        None => id.split_once('/')?,
    };
    let path = if kind_path.is_empty() { key.to_string() } else { format!("{kind_path}/{key}") };
    Some(SecretPath { mount: mount.to_string(), path })
}

impl SecretPath {
    /// The API path below `/v1/`, unencoded: `secret/data/variables/x` (KV v2) or
    /// `secret/variables/x` (KV v1). This is also the path a Vault policy names.
    pub fn api_path(&self, kv: KvVersion) -> String {
        match kv {
            KvVersion::V2 => format!("{}/data/{}", self.mount, self.path),
            KvVersion::V1 => format!("{}/{}", self.mount, self.path),
        }
    }

    /// The KV v2 metadata path (custom_metadata, versions, LIST, delete-all).
    pub fn metadata_path(&self) -> String {
        format!("{}/metadata/{}", self.mount, self.path)
    }

    /// The request line hvac sends to read it, e.g. `GET /v1/secret/data/connections/x%3Ay`.
    /// hvac's `format_url` applies Python's `quote(arg)` (safe `/`) to mount and path.
    pub fn request_line(&self, kv: KvVersion) -> String {
        let quoted = SecretPath { mount: python_quote(&self.mount), path: python_quote(&self.path) };
        format!("GET /v1/{}", quoted.api_path(kv))
    }

    /// Why Vault cannot hold this path so that Airflow reads it back, if it cannot: HTTP clients
    /// and Vault's router drop `.`/`..` segments and collapse empty ones, and a trailing `/`
    /// names a folder, not a secret.
    pub fn invalid_reason(&self) -> Option<String> {
        if self.mount.is_empty() {
            return Some("an empty mount (the id starts with `/`)".into());
        }
        if self.path.is_empty() {
            return Some("an empty secret path".into());
        }
        if self.path.ends_with('/') {
            return Some("ends with `/`, which names a Vault folder, not a secret".into());
        }
        for seg in self.mount.split('/').chain(self.path.split('/')) {
            match seg {
                "" => return Some("contains an empty `/` segment (`//` or a leading `/`)".into()),
                "." | ".." => return Some(format!("contains a `{seg}` path segment, which HTTP normalises away")),
                _ => {}
            }
        }
        None
    }
}

/// Python's `urllib.parse.quote(s, safe="/")`: UTF-8 bytes, unreserved `A-Za-z0-9_.-~` and `/`
/// kept, everything else `%XX` (upper-case hex).
pub fn python_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout() {
        let p = secret_path(Some("secret"), "connections", "smtp_default").unwrap();
        assert_eq!(p.api_path(KvVersion::V2), "secret/data/connections/smtp_default");
        assert_eq!(p.api_path(KvVersion::V1), "secret/connections/smtp_default");
        assert_eq!(p.request_line(KvVersion::V2), "GET /v1/secret/data/connections/smtp_default");
        assert_eq!(p.metadata_path(), "secret/metadata/connections/smtp_default");
    }

    #[test]
    fn mount_from_the_id() {
        assert_eq!(secret_path(None, "variables", "my_var"), None);
        assert_eq!(secret_path(Some(""), "variables", "my_var"), None);
        let p = secret_path(None, "variables", "team/a/b").unwrap();
        assert_eq!((p.mount.as_str(), p.path.as_str()), ("team", "variables/a/b"));
        let p = secret_path(None, "", "team/db").unwrap();
        assert_eq!(p.path, "db");
    }

    #[test]
    fn quoting_matches_python() {
        assert_eq!(python_quote("x:y"), "x%3Ay");
        assert_eq!(python_quote("caf\u{e9}"), "caf%C3%A9");
        assert_eq!(python_quote("a b+c%/~_.-"), "a%20b%2Bc%25/~_.-");
    }

    #[test]
    fn unholdable_paths_are_named() {
        let bad = |id: &str| secret_path(Some("secret"), "variables", id).unwrap().invalid_reason();
        assert!(bad("ok/nested.v2").is_none());
        assert!(bad("").is_some());
        assert!(bad("a//b").is_some());
        assert!(bad("a/./b").is_some());
        assert!(bad("a/../b").is_some());
        assert!(bad("folder/").is_some());
        assert!(secret_path(None, "variables", "/x").unwrap().invalid_reason().is_some());
    }
}
