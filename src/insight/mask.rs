//! Masking for `config print`: a store table shown with its credentials replaced by `***`.
//!
//! Masked: values under credential-like keys (passwords, tokens, secrets, secret keys, Fernet
//! keys, private keys, key files, connection strings), at any depth, including inside the JSON
//! string of `backend_kwargs`; and the password inside any URL-shaped string (SQLAlchemy URLs,
//! `conn_uri`s). Shown: paths, prefixes, commands (`*_cmd`: they are how a secret is fetched, not
//! the secret), names. An empty value stays `""`: that a Fernet key is set but empty (NullFernet,
//! spec §9.5) is what an operator needs to see.

use serde_json::Value as Json;

pub const MASK: &str = "***";

/// Whether a key names a credential.
pub fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_cmd") || k.ends_with("_path") || k.ends_with("_file") || k.ends_with("_prefix") || k.ends_with("_pattern") {
        return false;
    }
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "private_key",
        "keyfile",
        "fernet_key",
        "api_key",
        "access_key",
        "client_key",
        "connection_string",
        "sas",
        "jwt",
    ];
    WORDS.iter().any(|w| k.contains(w))
}

/// The password in `scheme://user:password@host…` replaced by `***`; anything else unchanged.
pub fn mask_url_password(s: &str) -> String {
    let Some(start) = s.find("://").map(|i| i + 3) else { return s.to_string() };
    let rest = &s[start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let Some(at) = authority.rfind('@') else { return s.to_string() };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else { return s.to_string() };
    format!("{}{}:{}{}", &s[..start], &userinfo[..colon], MASK, &s[start + at..])
}

fn mask_str(key: Option<&str>, s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    if key.is_some_and(is_sensitive_key) {
        return MASK.to_string();
    }
    mask_url_password(s)
}

fn mask_json(key: Option<&str>, v: &Json) -> Json {
    if key.is_some_and(is_sensitive_key) && !v.is_null() {
        return match v {
            Json::String(s) if s.is_empty() => v.clone(),
            _ => Json::String(MASK.into()),
        };
    }
    match v {
        Json::String(s) => Json::String(mask_str(key, s)),
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), mask_json(Some(k), v))).collect()),
        Json::Array(a) => Json::Array(a.iter().map(|v| mask_json(key, v)).collect()),
        other => other.clone(),
    }
}

fn mask_toml(key: Option<&str>, v: &toml::Value) -> toml::Value {
    match v {
        // `backend_kwargs` as the JSON string users copy from AIRFLOW__SECRETS__BACKEND_KWARGS.
        toml::Value::String(s) if key == Some("backend_kwargs") => match serde_json::from_str::<Json>(s) {
            Ok(j) => toml::Value::String(mask_json(None, &j).to_string()),
            Err(_) => toml::Value::String(MASK.into()),
        },
        _ if key.is_some_and(is_sensitive_key) => match v {
            toml::Value::String(s) if s.is_empty() => v.clone(),
            _ => toml::Value::String(MASK.into()),
        },
        toml::Value::String(s) => toml::Value::String(mask_str(key, s)),
        toml::Value::Table(t) => toml::Value::Table(mask_table(t)),
        toml::Value::Array(a) => toml::Value::Array(a.iter().map(|v| mask_toml(key, v)).collect()),
        other => other.clone(),
    }
}

/// A copy of `t` with every credential masked.
pub fn mask_table(t: &toml::Table) -> toml::Table {
    t.iter().map(|(k, v)| (k.clone(), mask_toml(Some(k), v))).collect()
}

/// `[name]` + the masked table, as TOML text.
pub fn table_to_masked_toml(name: &str, t: &toml::Table) -> String {
    let mut outer = toml::Table::new();
    outer.insert(name.to_string(), toml::Value::Table(mask_table(t)));
    toml::to_string(&outer).unwrap_or_else(|_| format!("[{name}]\n# (cannot be shown)\n"))
}

/// A whole config file's text, masked. Invalid TOML is not echoed (it may hold a credential).
pub fn mask_config_text(text: &str) -> Result<String, String> {
    let t: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| format!(" at byte {}", s.start)).unwrap_or_default();
        format!("invalid configuration{at}: {}", crate::secret::scrub_de_message(e.message()))
    })?;
    toml::to_string(&mask_table(&t)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(mask_url_password("postgresql+psycopg2://u:p%40ss@h:5432/db"), "postgresql+psycopg2://u:***@h:5432/db");
        assert_eq!(mask_url_password("mysql://u:a@b@h/db"), "mysql://u:***@h/db");
        assert_eq!(mask_url_password("sqlite:////tmp/x.db"), "sqlite:////tmp/x.db");
        assert_eq!(mask_url_password("postgresql://u@h/db"), "postgresql://u@h/db");
    }

    #[test]
    fn config_text_is_masked_at_every_depth() {
        let text = r#"
[source]
kind = "metastore"
sql_alchemy_conn = "postgresql://airflow:canary-db-1@db/airflow"
fernet_key = "canary-fk-2"
fernet_key_cmd = "cat /run/key"
[target]
airflow_backend = "airflow.providers.hashicorp.secrets.vault.VaultBackend"
backend_kwargs = '{"token": "canary-tok-3", "url": "http://v:8200", "connections_path": "c", "gcp_keyfile_dict": {"private_key": "canary-pk-4"}, "secret_id": "canary-sid-5", "variables_path": null}'
[select]
include = ["a*"]
"#;
        let out = mask_config_text(text).unwrap();
        for c in ["canary-db-1", "canary-fk-2", "canary-tok-3", "canary-pk-4", "canary-sid-5"] {
            assert!(!out.contains(c), "{c} in {out}");
        }
        for shown in ["cat /run/key", "http://v:8200", "postgresql://airflow:***@db/airflow", "connections_path", "null", "a*"] {
            assert!(out.contains(shown), "{shown} missing from {out}");
        }
    }
}
