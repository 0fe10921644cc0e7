//! Config pieces shared by the backends whose Airflow class names a secret from a per-kind prefix,
//! a separator and the id, with Airflow's defaults `airflow-connections`, `airflow-variables` and
//! `-`: GCP Secret Manager (§5.4) and Azure Key Vault (§5.5). Each backend builds the name its own
//! way; what they share is how the prefixes are configured.

use serde::Deserialize;

use crate::model::Kind;

pub(crate) fn default_connections_prefix() -> Option<String> {
    Some("airflow-connections".into())
}

pub(crate) fn default_variables_prefix() -> Option<String> {
    Some("airflow-variables".into())
}

pub(crate) fn default_sep() -> String {
    "-".into()
}

/// TOML has no null: a prefix is a string, or `false` for Airflow's `None` (kind disabled).
pub(crate) fn prefix_or_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        B(bool),
    }
    match Raw::deserialize(d)? {
        Raw::S(s) => Ok(Some(s)),
        Raw::B(false) => Ok(None),
        Raw::B(true) => Err(serde::de::Error::custom("a prefix is a string, or false to disable the kind")),
    }
}

/// `kind`'s prefix, `None` when the kind is disabled.
pub(crate) fn of_kind<'a>(kind: Kind, variables: &'a Option<String>, connections: &'a Option<String>) -> Option<&'a str> {
    match kind {
        Kind::Variable => variables.as_deref(),
        Kind::Connection => connections.as_deref(),
    }
}
