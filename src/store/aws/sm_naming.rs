//! Secrets Manager names as `SecretsManagerBackend` builds them for one configuration (prefixes,
//! separator, lookup patterns) and the names AWS refuses. Pure: no I/O.

use super::backend::Patterns;
use super::common as aws_common;
use super::secrets_manager::{AwsSecretsManagerConfig, MAX_NAME_LEN};
use crate::model::{ItemId, Kind};
use crate::store::Placement;

/// Names as Airflow builds them for one configuration. Pure: no I/O.
#[derive(Clone, Debug)]
pub struct SecretsManagerNaming {
    pub(super) connections_prefix: Option<String>,
    pub(super) variables_prefix: Option<String>,
    pub(super) sep: String,
    patterns: Patterns,
}

impl SecretsManagerNaming {
    pub fn new(cfg: &AwsSecretsManagerConfig) -> Result<Self, String> {
        // `if connections_prefix: self.connections_prefix = connections_prefix.rstrip(sep)`
        let strip = |p: &Option<String>| p.as_ref().map(|p| aws_common::rstrip_chars(p, &cfg.sep).to_string());
        Ok(Self {
            connections_prefix: strip(&cfg.connections_prefix),
            variables_prefix: strip(&cfg.variables_prefix),
            sep: cfg.sep.clone(),
            patterns: Patterns::compile(cfg.connections_lookup_pattern.as_deref(), cfg.variables_lookup_pattern.as_deref())?,
        })
    }

    pub(super) fn prefix(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Variable => self.variables_prefix.as_deref(),
            Kind::Connection => self.connections_prefix.as_deref(),
        }
    }

    /// The name Airflow requests for `id`, ignoring the lookup pattern; None when the kind is off.
    pub fn name(&self, id: &ItemId) -> Option<String> {
        let prefix = self.prefix(id.kind)?;
        Some(if prefix.is_empty() { id.id.clone() } else { format!("{prefix}{}{}", self.sep, id.id) })
    }

    /// The start every name of `kind` has ("" with an empty prefix); None when the kind is off.
    pub(super) fn name_prefix(&self, kind: Kind) -> Option<String> {
        let prefix = self.prefix(kind)?;
        Some(if prefix.is_empty() { String::new() } else { format!("{prefix}{}", self.sep) })
    }

    pub fn locate(&self, id: &ItemId) -> Placement {
        self.patterns.locate(id, self.name(id), name_problem)
    }
}

/// Why AWS would refuse (or misread) `name` as a secret name, if it would.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("an empty secret name".into());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c))) {
        return Some(format!("secret names allow only A-Za-z0-9/_+=.@- (found {:?})", c));
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("secret name is {} characters; the limit is {MAX_NAME_LEN}", name.len()));
    }
    // "Do not end your secret name with a hyphen followed by six characters": Secrets Manager would
    // take it for the random suffix of an ARN and may resolve a different secret.
    if name.len() >= 7 && name.as_bytes()[name.len() - 7] == b'-' {
        return Some("secret name ends in '-' plus six characters, which AWS confuses with an ARN suffix".into());
    }
    None
}

