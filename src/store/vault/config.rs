//! [`VaultConfig`]: our native `kind = "vault"` table, and the mapping from Airflow's
//! `VaultBackend` kwargs (`backend_kwargs`) onto it. Spec §5.1.
//!
//! Owns validation of every key; it never opens a connection. Credentials are held in
//! [`SecretValue`] and never shown by `Debug`.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::SecretValue;

/// The user the tool marks its secrets with in KV v2 `custom_metadata`.
pub const MANAGED_BY: &str = "airflow-secrets-sync";

/// Airflow's default `kubernetes_jwt_path`.
pub const DEFAULT_KUBERNETES_JWT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The KV secrets engine version (`kv_engine_version`): Airflow accepts only 1 and 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvVersion {
    V1,
    #[default]
    V2,
}

impl KvVersion {
    pub fn from_number(n: i64) -> Result<Self, String> {
        match n {
            1 => Ok(KvVersion::V1),
            2 => Ok(KvVersion::V2),
            other => Err(format!("kv_engine_version must be 1 or 2, not {other}")),
        }
    }

    pub fn number(self) -> u8 {
        match self {
            KvVersion::V1 => 1,
            KvVersion::V2 => 2,
        }
    }
}

impl<'de> Deserialize<'de> for KvVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        KvVersion::from_number(n).map_err(de::Error::custom)
    }
}

/// How a connection is written. Both are read either way (a truthy `conn_uri` wins, spec §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultConnectionFormat {
    /// The field dict (`conn_type`, `host`, ..., `port` as int, `extra` as an object): lossless.
    #[default]
    Fields,
    /// `{"conn_uri": "<get_uri()>"}`: loses description, port 0, host case (spec §9 item 8).
    Uri,
}

/// How the tool logs in to Vault. `type` selects the method; the other keys are Airflow's kwarg
/// names for it.
#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum VaultAuth {
    /// A token from `token`, else the file `token_path`, else env `VAULT_TOKEN` (Airflow's order).
    Token {
        #[serde(default, deserialize_with = "de_secret_opt")]
        token: Option<SecretValue>,
        #[serde(default)]
        token_path: Option<PathBuf>,
    },
    Approle {
        role_id: String,
        #[serde(default, deserialize_with = "de_secret_opt")]
        secret_id: Option<SecretValue>,
        #[serde(default = "default_approle_mount")]
        auth_mount_point: String,
    },
    Kubernetes {
        kubernetes_role: String,
        #[serde(default = "default_kubernetes_jwt_path")]
        kubernetes_jwt_path: PathBuf,
        #[serde(default = "default_kubernetes_mount")]
        auth_mount_point: String,
    },
    Userpass {
        username: String,
        #[serde(deserialize_with = "de_secret")]
        password: SecretValue,
        #[serde(default = "default_userpass_mount")]
        auth_mount_point: String,
    },
}

impl Default for VaultAuth {
    fn default() -> Self {
        VaultAuth::Token { token: None, token_path: None }
    }
}

impl VaultAuth {
    pub fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token { .. } => "token",
            VaultAuth::Approle { .. } => "approle",
            VaultAuth::Kubernetes { .. } => "kubernetes",
            VaultAuth::Userpass { .. } => "userpass",
        }
    }

    /// Whether a fresh token can be obtained without the operator (re-login on expiry).
    pub fn can_login(&self) -> bool {
        !matches!(self, VaultAuth::Token { .. })
    }
}

fn default_approle_mount() -> String {
    "approle".into()
}
fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}
fn default_userpass_mount() -> String {
    "userpass".into()
}
fn default_kubernetes_jwt_path() -> PathBuf {
    PathBuf::from(DEFAULT_KUBERNETES_JWT_PATH)
}

/// The native config of a Vault store (`kind = "vault"`). Every key is documented in
/// `config.toml.example`; defaults are Airflow's.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Vault address; falls back to env `VAULT_ADDR` (as hvac does).
    #[serde(default)]
    pub url: Option<String>,
    /// KV mount. `None` (config `""` or `false`) is Airflow's `mount_point=None`: the id's first
    /// `/`-segment is the mount, and an id without `/` is never looked up.
    #[serde(default = "default_mount_point", deserialize_with = "de_mount_point")]
    pub mount_point: Option<String>,
    #[serde(default)]
    pub kv_engine_version: KvVersion,
    /// Paths tried in order; the first is where the tool writes. Empty = the kind is disabled
    /// (Airflow's `None`). `""` = the bare id. Trailing `/` stripped (Airflow's `rstrip("/")`).
    #[serde(default = "default_connections_path", deserialize_with = "de_paths")]
    pub connections_path: Vec<String>,
    #[serde(default = "default_variables_path", deserialize_with = "de_paths")]
    pub variables_path: Vec<String>,
    #[serde(default)]
    pub connection_format: VaultConnectionFormat,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM CA bundle for `https://` (else env `VAULT_CACERT`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub skip_verify: bool,
    #[serde(default)]
    pub auth: VaultAuth,
    /// Allow blind writes (no precondition) and deletes over secrets this tool did not write.
    #[serde(default)]
    pub adopt: bool,
    /// Reads (and LISTs) in flight at once during scan/read, fixed. Default: a limit that follows
    /// the measured latency, from 16 up to 64 (`crate::store::limit`, as an apply's writes).
    #[serde(default)]
    pub read_concurrency: Option<usize>,
}

fn default_mount_point() -> Option<String> {
    Some("secret".into())
}
fn default_connections_path() -> Vec<String> {
    vec!["connections".into()]
}
fn default_variables_path() -> Vec<String> {
    vec!["variables".into()]
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            url: None,
            mount_point: default_mount_point(),
            kv_engine_version: KvVersion::V2,
            connections_path: default_connections_path(),
            variables_path: default_variables_path(),
            connection_format: VaultConnectionFormat::Fields,
            namespace: None,
            ca_file: None,
            skip_verify: false,
            auth: VaultAuth::default(),
            adopt: false,
            read_concurrency: None,
        }
    }
}

impl fmt::Debug for VaultConfig {
    // Hand-written: the auth section holds credentials; only the method and mount are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth_mount = match &self.auth {
            VaultAuth::Token { .. } => None,
            VaultAuth::Approle { auth_mount_point, .. }
            | VaultAuth::Kubernetes { auth_mount_point, .. }
            | VaultAuth::Userpass { auth_mount_point, .. } => Some(auth_mount_point.as_str()),
        };
        f.debug_struct("VaultConfig")
            .field("url", &self.url)
            .field("mount_point", &self.mount_point)
            .field("kv_engine_version", &self.kv_engine_version.number())
            .field("connections_path", &self.connections_path)
            .field("variables_path", &self.variables_path)
            .field("connection_format", &self.connection_format)
            .field("namespace", &self.namespace)
            .field("ca_file", &self.ca_file)
            .field("skip_verify", &self.skip_verify)
            .field("auth", &self.auth.method())
            .field("auth_mount_point", &auth_mount)
            .field("adopt", &self.adopt)
            .field("read_concurrency", &self.read_concurrency)
            .finish()
    }
}

impl VaultConfig {
    /// Check what serde cannot: mount and path shapes, concurrency.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(m) = &self.mount_point
            && (m.starts_with('/') || m.ends_with('/') || m.split('/').any(|s| s.is_empty() || s == "." || s == ".."))
        {
            return Err(format!("mount_point {m:?} must be a mount name without leading, trailing or empty `/` segments"));
        }
        for (key, paths) in [("connections_path", &self.connections_path), ("variables_path", &self.variables_path)] {
            for p in paths {
                if !p.is_empty() && (p.starts_with('/') || p.split('/').any(|s| s.is_empty() || s == "." || s == "..")) {
                    return Err(format!("{key} {p:?} must not start with `/` or contain empty, `.` or `..` segments"));
                }
            }
        }
        if self.read_concurrency == Some(0) {
            return Err("read_concurrency must be at least 1".into());
        }
        Ok(())
    }

    /// Map Airflow's `VaultBackend(**backend_kwargs)` onto our config (spec §5.1 table).
    ///
    /// Mapped: `url, mount_point, kv_engine_version, connections_path, variables_path, auth_type,
    /// auth_mount_point, token, token_path, role_id, secret_id, kubernetes_role,
    /// kubernetes_jwt_path, username, password, namespace, verify` (bool, or a CA bundle path).
    /// Ignored, because they do not change where secrets live or how we log in: `config_path`
    /// (Airflow config is not synced), `use_team_secrets_path`, `global_secrets_path`, `timeout`,
    /// `proxies`, `session`, `retries` and other hvac passthrough. Refused: an auth type other
    /// than token, approle, kubernetes or userpass, and `cert` (client TLS certificates).
    pub fn from_airflow_kwargs(kwargs: &Map<String, Value>) -> Result<VaultConfig, String> {
        let mut cfg = VaultConfig::default();
        let mut auth_type = "token".to_string();
        let mut auth_mount: Option<String> = None;
        let mut token: Option<SecretValue> = None;
        let mut token_path: Option<PathBuf> = None;
        let mut role_id: Option<String> = None;
        let mut secret_id: Option<SecretValue> = None;
        let mut kubernetes_role: Option<String> = None;
        let mut kubernetes_jwt_path: Option<PathBuf> = None;
        let mut username: Option<String> = None;
        let mut password: Option<SecretValue> = None;

        for (key, value) in kwargs {
            match key.as_str() {
                "url" => cfg.url = opt_string(key, value)?,
                // Airflow: `if not self.mount_point` → mount from the id (None and "" alike).
                "mount_point" => cfg.mount_point = opt_string(key, value)?.filter(|m| !m.is_empty()),
                "kv_engine_version" => {
                    let n = match value {
                        Value::Number(n) => n.as_i64(),
                        Value::String(s) => s.trim().parse::<i64>().ok(),
                        _ => None,
                    }
                    .ok_or_else(|| "kv_engine_version must be 1 or 2".to_string())?;
                    cfg.kv_engine_version = KvVersion::from_number(n)?;
                }
                "connections_path" => cfg.connections_path = paths_from_json(key, value)?,
                "variables_path" => cfg.variables_path = paths_from_json(key, value)?,
                "auth_type" => {
                    auth_type = opt_string(key, value)?.unwrap_or_else(|| "token".into());
                }
                "auth_mount_point" => auth_mount = opt_string(key, value)?,
                "token" => token = opt_string(key, value)?.map(SecretValue::from),
                "token_path" => token_path = opt_string(key, value)?.map(PathBuf::from),
                "role_id" => role_id = opt_string(key, value)?,
                "secret_id" => secret_id = opt_string(key, value)?.map(SecretValue::from),
                "kubernetes_role" => kubernetes_role = opt_string(key, value)?,
                "kubernetes_jwt_path" => kubernetes_jwt_path = opt_string(key, value)?.map(PathBuf::from),
                "username" => username = opt_string(key, value)?,
                "password" => password = opt_string(key, value)?.map(SecretValue::from),
                "namespace" => cfg.namespace = opt_string(key, value)?,
                // hvac's `verify`: a bool, or the path of a CA bundle.
                "verify" => match value {
                    Value::Bool(b) => cfg.skip_verify = !b,
                    Value::String(s) => cfg.ca_file = Some(PathBuf::from(s)),
                    Value::Null => {}
                    _ => return Err("verify must be a boolean or a CA bundle path".into()),
                },
                "cert" if !value.is_null() => {
                    return Err("`cert` (a client TLS certificate) is not supported by airflow-secrets-sync".into());
                }
                _ => {}
            }
        }

        cfg.auth = match auth_type.as_str() {
            "token" => VaultAuth::Token { token, token_path },
            "approle" => VaultAuth::Approle {
                role_id: role_id.ok_or("auth_type approle needs role_id")?,
                secret_id,
                auth_mount_point: auth_mount.unwrap_or_else(default_approle_mount),
            },
            "kubernetes" => VaultAuth::Kubernetes {
                kubernetes_role: kubernetes_role.ok_or("auth_type kubernetes needs kubernetes_role")?,
                kubernetes_jwt_path: kubernetes_jwt_path.unwrap_or_else(default_kubernetes_jwt_path),
                auth_mount_point: auth_mount.unwrap_or_else(default_kubernetes_mount),
            },
            "userpass" => VaultAuth::Userpass {
                username: username.ok_or("auth_type userpass needs username")?,
                password: password.ok_or("auth_type userpass needs password")?,
                auth_mount_point: auth_mount.unwrap_or_else(default_userpass_mount),
            },
            other @ ("aws_iam" | "azure" | "github" | "gcp" | "jwt" | "ldap" | "radius") => {
                return Err(format!(
                    "auth_type {other:?} is not supported by airflow-secrets-sync; use token, approle, kubernetes or userpass \
                     (for example a token from `vault login -method={other}` in VAULT_TOKEN)"
                ));
            }
            other => return Err(format!("unknown auth_type {other:?}")),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

fn opt_string(key: &str, value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(format!("{key} must be a string")),
    }
}

/// Airflow's handling of one configured path: `rstrip("/")`.
fn normalise_path(p: &str) -> String {
    p.trim_end_matches('/').to_string()
}

fn paths_from_json(key: &str, value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Null | Value::Bool(false) => Ok(Vec::new()),
        Value::String(s) => Ok(vec![normalise_path(s)]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(normalise_path).ok_or_else(|| format!("{key} must be a list of strings")))
            .collect(),
        _ => Err(format!("{key} must be a string, a list of strings, or null")),
    }
}

fn de_mount_point<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mount name, or \"\" / false for Airflow's mount_point=None")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(if s.is_empty() { None } else { Some(s.to_string()) })
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            if b { Err(E::custom("mount_point = true has no meaning; give a mount name")) } else { Ok(None) }
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

fn de_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a path, a list of paths, or false to disable the kind")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(vec![normalise_path(s)])
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            if b { Err(E::custom("true is not a path; use false to disable the kind")) } else { Ok(Vec::new()) }
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(normalise_path(&s));
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretValue, D::Error> {
    String::deserialize(d).map(SecretValue::from)
}

fn de_secret_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretValue>, D::Error> {
    Option::<String>::deserialize(d).map(|o| o.map(SecretValue::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kwargs(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn native_toml_defaults_are_airflows() {
        let c: VaultConfig = toml::from_str("").unwrap();
        assert_eq!(c.mount_point.as_deref(), Some("secret"));
        assert_eq!(c.kv_engine_version, KvVersion::V2);
        assert_eq!(c.connections_path, ["connections"]);
        assert_eq!(c.variables_path, ["variables"]);
        assert_eq!(c.connection_format, VaultConnectionFormat::Fields);
        assert_eq!(c.read_concurrency, None, "following latency, from 16 up to 64");
        assert!(!c.adopt);
        assert!(matches!(c.auth, VaultAuth::Token { token: None, token_path: None }));
    }

    #[test]
    fn native_toml_every_key() {
        let c: VaultConfig = toml::from_str(
            r#"
            url = "https://vault.example:8200"
            mount_point = ""
            kv_engine_version = 1
            connections_path = ["airflow/conns/", "legacy"]
            variables_path = false
            connection_format = "uri"
            namespace = "team-a"
            ca_file = "/etc/ca.pem"
            skip_verify = true
            adopt = true
            read_concurrency = 4
            [auth]
            type = "approle"
            role_id = "r"
            secret_id = "canary-secret-id-9f2"
            auth_mount_point = "ar"
            "#,
        )
        .unwrap();
        assert_eq!(c.mount_point, None);
        assert_eq!(c.kv_engine_version, KvVersion::V1);
        assert_eq!(c.connections_path, ["airflow/conns", "legacy"]);
        assert!(c.variables_path.is_empty());
        assert_eq!(c.connection_format, VaultConnectionFormat::Uri);
        assert_eq!(c.read_concurrency, Some(4), "a configured read_concurrency is a fixed limit");
        assert_eq!(VaultConfig { read_concurrency: Some(0), ..VaultConfig::default() }.validate().unwrap_err(), "read_concurrency must be at least 1");
        assert!(matches!(&c.auth, VaultAuth::Approle { auth_mount_point, .. } if auth_mount_point == "ar"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("approle"), "{shown}");
    }

    #[test]
    fn native_toml_rejects_unknown_keys_and_bad_versions() {
        assert!(toml::from_str::<VaultConfig>("mountpoint = \"x\"").is_err());
        assert!(toml::from_str::<VaultConfig>("kv_engine_version = 3").is_err());
        assert!(toml::from_str::<VaultConfig>("[auth]\ntype = \"ldap\"").is_err());
        assert!(toml::from_str::<VaultConfig>("[auth]\ntype = \"token\"\nrole_id = \"x\"").is_err());
    }

    #[test]
    fn kwargs_map_every_storage_and_login_key() {
        let c = VaultConfig::from_airflow_kwargs(&kwargs(serde_json::json!({
            "url": "http://v:8200", "mount_point": null, "kv_engine_version": "1",
            "connections_path": "c/", "variables_path": ["v1", "v2/"], "config_path": "cfg",
            "auth_type": "kubernetes", "kubernetes_role": "airflow", "namespace": "ns",
            "verify": "/ca.pem", "timeout": 30
        })))
        .unwrap();
        assert_eq!(c.url.as_deref(), Some("http://v:8200"));
        assert_eq!(c.mount_point, None);
        assert_eq!(c.kv_engine_version, KvVersion::V1);
        assert_eq!(c.connections_path, ["c"]);
        assert_eq!(c.variables_path, ["v1", "v2"]);
        assert_eq!(c.namespace.as_deref(), Some("ns"));
        assert_eq!(c.ca_file, Some(PathBuf::from("/ca.pem")));
        match &c.auth {
            VaultAuth::Kubernetes { kubernetes_role, kubernetes_jwt_path, auth_mount_point } => {
                assert_eq!(kubernetes_role, "airflow");
                assert_eq!(kubernetes_jwt_path, &PathBuf::from(DEFAULT_KUBERNETES_JWT_PATH));
                assert_eq!(auth_mount_point, "kubernetes");
            }
            _ => panic!("expected kubernetes auth"),
        }

        let c = VaultConfig::from_airflow_kwargs(&kwargs(serde_json::json!({
            "auth_type": "approle", "role_id": "r", "secret_id": "s", "auth_mount_point": "ar",
            "verify": false, "connections_path": null
        })))
        .unwrap();
        assert!(c.skip_verify);
        assert!(c.connections_path.is_empty());
        assert!(matches!(&c.auth, VaultAuth::Approle { role_id, auth_mount_point, .. } if role_id == "r" && auth_mount_point == "ar"));

        let c = VaultConfig::from_airflow_kwargs(&kwargs(serde_json::json!({
            "auth_type": "userpass", "username": "u", "password": "p", "mount_point": ""
        })))
        .unwrap();
        assert_eq!(c.mount_point, None);
        assert!(matches!(&c.auth, VaultAuth::Userpass { auth_mount_point, .. } if auth_mount_point == "userpass"));

        let c = VaultConfig::from_airflow_kwargs(&kwargs(serde_json::json!({"token": "t", "token_path": "/tok"}))).unwrap();
        assert!(matches!(&c.auth, VaultAuth::Token { token: Some(_), token_path: Some(_) }));
    }

    #[test]
    fn kwargs_refuse_unsupported_auth_clearly() {
        for t in ["ldap", "aws_iam", "gcp", "azure", "github", "jwt", "radius"] {
            let err = VaultConfig::from_airflow_kwargs(&kwargs(serde_json::json!({"auth_type": t}))).unwrap_err();
            assert!(err.contains(t) && err.contains("not supported"), "{err}");
        }
        let err = VaultConfig::from_airflow_kwargs(&kwargs(serde_json::json!({"kv_engine_version": 3}))).unwrap_err();
        assert!(err.contains("1 or 2"), "{err}");
        let err = VaultConfig::from_airflow_kwargs(&kwargs(serde_json::json!({"auth_type": "approle"}))).unwrap_err();
        assert!(err.contains("role_id"), "{err}");
    }
}
