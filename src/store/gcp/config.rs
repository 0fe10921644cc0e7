//! The GCP store's configuration: its `[target]`/`[source]` table, the mapping from Airflow's
//! `CloudSecretManagerBackend` kwargs, the name rule, and the credentials it names.

use std::fmt;
use std::path::PathBuf;

use google_cloud_auth::credentials::Credentials;
use serde::Deserialize;
use tracing::warn;

use super::MAX_SECRET_ID_LEN;
use crate::model::{ItemId, Kind};
use crate::store::{Placement, StoreError, prefixed};



/// `[target]` / `[source]` table for `kind = "gcp_secret_manager"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSecretManagerConfig {
    /// The project holding the secrets; else taken from the key file / dict, else
    /// `GOOGLE_CLOUD_PROJECT`.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Prefix of connection secrets; `false` disables connections (Airflow's `None`).
    #[serde(default = "prefixed::default_connections_prefix", deserialize_with = "prefixed::prefix_or_false")]
    pub connections_prefix: Option<String>,
    /// Prefix of variable secrets; `false` disables variables (Airflow's `None`).
    #[serde(default = "prefixed::default_variables_prefix", deserialize_with = "prefixed::prefix_or_false")]
    pub variables_prefix: Option<String>,
    #[serde(default = "prefixed::default_sep")]
    pub sep: String,
    /// `"automatic"` (default) or a list of locations for user-managed replication.
    #[serde(default)]
    pub replication: Replication,
    /// Keep this many newest enabled versions per secret and destroy older ones; default: keep all.
    #[serde(default)]
    pub prune_versions: Option<u32>,
    /// A service-account (or external-account) key file.
    #[serde(default)]
    pub gcp_key_path: Option<PathBuf>,
    /// The same key inline (a table, or its JSON text).
    #[serde(default)]
    pub gcp_keyfile_dict: Option<serde_json::Value>,
    /// Service accounts to impersonate: delegates first, the target last (Airflow's order).
    #[serde(default)]
    pub impersonation_chain: Vec<String>,
    /// Another endpoint (tests, Private Service Connect); default `https://secretmanager.googleapis.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Treat secrets without our label as untracked (overwritable) instead of foreign.
    #[serde(default)]
    pub adopt: bool,
}

/// How new secrets are replicated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Replication {
    #[default]
    Automatic,
    UserManaged(Vec<String>),
}

impl<'de> Deserialize<'de> for Replication {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Locations(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "automatic" => Ok(Replication::Automatic),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "replication must be \"automatic\" or a list of locations, not {w:?}"
            ))),
            Raw::Locations(l) if l.is_empty() => {
                Err(serde::de::Error::custom("user-managed replication needs at least one location"))
            }
            Raw::Locations(l) => Ok(Replication::UserManaged(l)),
        }
    }
}

impl fmt::Debug for GcpSecretManagerConfig {
    // The key dict holds a private key: show only whether it is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpSecretManagerConfig")
            .field("project_id", &self.project_id)
            .field("connections_prefix", &self.connections_prefix)
            .field("variables_prefix", &self.variables_prefix)
            .field("sep", &self.sep)
            .field("replication", &self.replication)
            .field("prune_versions", &self.prune_versions)
            .field("gcp_key_path", &self.gcp_key_path)
            .field("gcp_keyfile_dict", &self.gcp_keyfile_dict.as_ref().map(|_| "<redacted>"))
            .field("impersonation_chain", &self.impersonation_chain)
            .field("endpoint", &self.endpoint)
            .field("adopt", &self.adopt)
            .finish()
    }
}

impl Default for GcpSecretManagerConfig {
    fn default() -> Self {
        Self {
            project_id: None,
            connections_prefix: prefixed::default_connections_prefix(),
            variables_prefix: prefixed::default_variables_prefix(),
            sep: prefixed::default_sep(),
            replication: Replication::Automatic,
            prune_versions: None,
            gcp_key_path: None,
            gcp_keyfile_dict: None,
            impersonation_chain: Vec::new(),
            endpoint: None,
            adopt: false,
        }
    }
}

pub(super) fn is_gcp_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl GcpSecretManagerConfig {
    /// Map `CloudSecretManagerBackend(**backend_kwargs)` (spec §5.4). Unknown kwargs are accepted
    /// and ignored, as Airflow's base class does, with a warning.
    pub fn from_airflow_kwargs(kwargs: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        use serde_json::Value as J;
        let mut cfg = GcpSecretManagerConfig::default();
        let string = |k: &str, v: &J| -> Result<String, String> {
            v.as_str().map(str::to_string).ok_or_else(|| format!("backend_kwargs.{k} must be a string"))
        };
        let prefix = |k: &str, v: &J| -> Result<Option<String>, String> {
            match v {
                J::Null => Ok(None),
                J::String(s) => Ok(Some(s.clone())),
                _ => Err(format!("backend_kwargs.{k} must be a string or null")),
            }
        };
        for (k, v) in kwargs {
            match k.as_str() {
                "connections_prefix" => cfg.connections_prefix = prefix(k, v)?,
                "variables_prefix" => cfg.variables_prefix = prefix(k, v)?,
                "sep" => cfg.sep = string(k, v)?,
                "project_id" => cfg.project_id = if v.is_null() { None } else { Some(string(k, v)?) },
                "gcp_key_path" => cfg.gcp_key_path = if v.is_null() { None } else { Some(string(k, v)?.into()) },
                // Airflow takes the credential config file (Workload Identity Federation) as a
                // path or as the JSON text itself.
                "gcp_credential_config_file" => match v {
                    J::Null => {}
                    J::String(s) if s.trim_start().starts_with('{') => {
                        cfg.gcp_keyfile_dict = Some(J::String(s.clone()))
                    }
                    J::String(s) => cfg.gcp_key_path = Some(s.into()),
                    J::Object(_) => cfg.gcp_keyfile_dict = Some(v.clone()),
                    _ => return Err("backend_kwargs.gcp_credential_config_file must be a path or JSON".into()),
                },
                "gcp_keyfile_dict" => match v {
                    J::Null => {}
                    J::Object(_) | J::String(_) => cfg.gcp_keyfile_dict = Some(v.clone()),
                    _ => return Err("backend_kwargs.gcp_keyfile_dict must be a dict or its JSON text".into()),
                },
                "impersonation_chain" => {
                    cfg.impersonation_chain = match v {
                        J::Null => Vec::new(),
                        J::String(s) => vec![s.clone()],
                        J::Array(a) => a
                            .iter()
                            .map(|x| x.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or("backend_kwargs.impersonation_chain must be a string or a list of strings")?,
                        _ => return Err("backend_kwargs.impersonation_chain must be a string or a list of strings".into()),
                    }
                }
                // Config lookups and scopes are not ours to sync / need (we ask for cloud-platform).
                "config_prefix" | "gcp_scopes" => {}
                other => warn!(kwarg = other, "CloudSecretManagerBackend kwarg ignored (Airflow ignores it too)"),
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Airflow's init check (§5.4): `connections_prefix + sep` must match `^[a-zA-Z0-9-_]*$`
    /// (the variables prefix is not validated by Airflow, so neither here).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = &self.connections_prefix
            && !format!("{p}{}", self.sep).chars().all(is_gcp_id_char)
        {
            return Err("`connections_prefix`, `variables_prefix` and `sep` should follow the pattern ^[a-zA-Z0-9-_]*$ \
                        (Airflow refuses this connections_prefix + sep)"
                .into());
        }
        if self.prune_versions == Some(0) {
            return Err("prune_versions must be at least 1 (the newest version is never destroyed)".into());
        }
        if self.gcp_key_path.is_some() && self.gcp_keyfile_dict.is_some() {
            return Err("give gcp_key_path or gcp_keyfile_dict, not both".into());
        }
        Ok(())
    }

    pub(super) fn prefix(&self, kind: Kind) -> Option<&str> {
        prefixed::of_kind(kind, &self.variables_prefix, &self.connections_prefix)
    }

    /// The secret id Airflow requests for `id`: `build_path(prefix, id, sep)`, verbatim (§5.4).
    /// `None` when the kind is disabled (Airflow makes no request).
    pub fn secret_id(&self, kind: Kind, id: &str) -> Option<String> {
        self.prefix(kind).map(|p| format!("{p}{}{id}", self.sep))
    }

    /// The id a secret id stands for, if it is under `kind`'s prefix.
    pub(super) fn id_from_secret_id<'a>(&self, kind: Kind, secret_id: &'a str) -> Option<&'a str> {
        let p = self.prefix(kind)?;
        let rest = secret_id.strip_prefix(p)?.strip_prefix(self.sep.as_str())?;
        (!rest.is_empty()).then_some(rest)
    }

    /// Where `id` lives, or why GCP cannot hold it (§8: ids outside `[A-Za-z0-9_-]`, > 255).
    pub fn locate(&self, id: &ItemId) -> Placement {
        let Some(name) = self.secret_id(id.kind, &id.id) else {
            return Placement::Unreachable(format!("{} are disabled (prefix set to none)", id.kind.plural()));
        };
        if id.id.is_empty() {
            return Placement::Invalid("an empty id".into());
        }
        if let Some(bad) = name.chars().find(|c| !is_gcp_id_char(*c)) {
            return Placement::Invalid(format!(
                "GCP secret ids allow only [A-Za-z0-9_-]; {:?} is not allowed (Airflow's request would fail)",
                bad
            ));
        }
        if name.len() > MAX_SECRET_ID_LEN {
            return Placement::Invalid(format!("the secret id is {} characters; GCP allows {MAX_SECRET_ID_LEN}", name.len()));
        }
        Placement::At(name)
    }
}

pub(super) fn config_err(msg: impl Into<String>) -> StoreError {
    StoreError::Config { store: "gcp_secret_manager".into(), message: msg.into() }
}

pub(super) fn keyfile_json(cfg: &GcpSecretManagerConfig) -> Result<Option<serde_json::Value>, StoreError> {
    if let Some(path) = &cfg.gcp_key_path {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_err(format!("cannot read gcp_key_path {}: {e}", path.display())))?;
        // Never echo the file: it holds a private key.
        return serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| config_err(format!("gcp_key_path {} is not a JSON key file", path.display())));
    }
    match &cfg.gcp_keyfile_dict {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => serde_json::from_str(s)
            .map(Some)
            .map_err(|_| config_err("gcp_keyfile_dict is not valid JSON")),
        Some(v) => Ok(Some(v.clone())),
    }
}

pub(super) fn credentials_from(cfg: &GcpSecretManagerConfig, key: Option<serde_json::Value>) -> Result<Credentials, StoreError> {
    use google_cloud_auth::credentials as c;
    let base = match key {
        None => c::Builder::default().build(),
        Some(json) => match json.get("type").and_then(|t| t.as_str()) {
            Some("service_account") => c::service_account::Builder::new(json).build(),
            Some("external_account") => c::external_account::Builder::new(json).build(),
            Some("authorized_user") => c::user_account::Builder::new(json).build(),
            Some(other) => return Err(config_err(format!("unsupported GCP credential type {other:?}"))),
            None => return Err(config_err("the GCP key JSON has no \"type\"")),
        },
    }
    .map_err(|e| config_err(format!("GCP credentials: {e}")))?;
    match cfg.impersonation_chain.split_last() {
        None => Ok(base),
        Some((target, delegates)) => c::impersonated::Builder::from_source_credentials(base)
            .with_target_principal(target.clone())
            .with_delegates(delegates.iter().cloned())
            .build()
            .map_err(|e| config_err(format!("GCP impersonation: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key_dict() {
        let cfg = GcpSecretManagerConfig {
            gcp_keyfile_dict: Some(serde_json::json!({"private_key": "canary-7d1f"})),
            ..Default::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn toml_prefix_false_disables_a_kind() {
        let cfg: GcpSecretManagerConfig =
            toml::from_str("project_id = \"p\"\nvariables_prefix = false\nreplication = [\"us-east1\"]").unwrap();
        assert_eq!(cfg.variables_prefix, None);
        assert_eq!(cfg.connections_prefix.as_deref(), Some("airflow-connections"));
        assert_eq!(cfg.replication, Replication::UserManaged(vec!["us-east1".into()]));
        assert!(toml::from_str::<GcpSecretManagerConfig>("variables_prefix = true").is_err());
        assert!(toml::from_str::<GcpSecretManagerConfig>("bogus = 1").is_err());
        assert!(toml::from_str::<GcpSecretManagerConfig>("replication = \"manual\"").is_err());
    }

    #[test]
    fn locate_rejects_what_gcp_cannot_hold() {
        let cfg = GcpSecretManagerConfig::default();
        assert_eq!(cfg.locate(&ItemId::connection("a__b")), Placement::At("airflow-connections-a__b".into()));
        for bad in ["team/db", "My_Conn.v2", "x:y", "caf\u{e9}"] {
            assert!(matches!(cfg.locate(&ItemId::variable(bad)), Placement::Invalid(_)), "{bad}");
        }
        let long = "x".repeat(MAX_SECRET_ID_LEN);
        assert!(matches!(cfg.locate(&ItemId::variable(long)), Placement::Invalid(_)));
        let empty = GcpSecretManagerConfig { variables_prefix: Some(String::new()), ..Default::default() };
        assert_eq!(empty.locate(&ItemId::variable("k")), Placement::At("-k".into()));
        assert_eq!(empty.id_from_secret_id(Kind::Variable, "-k"), Some("k"));
    }
}
