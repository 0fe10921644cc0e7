//! Airflow's environment-variable naming (spec §3.1): `AIRFLOW_VAR_` / `AIRFLOW_CONN_` plus the id's
//! Python `upper()`, and what a name in an environment means to Airflow. Pure.

use std::collections::BTreeMap;

use crate::model::{ItemId, Kind};

pub const VAR_PREFIX: &str = "AIRFLOW_VAR_";
pub const CONN_PREFIX: &str = "AIRFLOW_CONN_";

/// The environment variable Airflow looks up for `id` (spec §3.1): prefix + Python `upper()`.
/// Rust's `to_uppercase` applies the same full Unicode mapping (`ß` → `SS`).
pub fn env_var_name(id: &ItemId) -> String {
    let prefix = match id.kind {
        Kind::Variable => VAR_PREFIX,
        Kind::Connection => CONN_PREFIX,
    };
    format!("{prefix}{}", id.id.to_uppercase())
}

/// Whether `name` can be assigned and exported by a POSIX shell: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Groups of ids that map to the same environment variable (`foo` and `FOO`), each sorted; only
/// groups of two or more are returned. Writing such a group would let the last write win silently.
pub fn collisions<'a>(ids: impl IntoIterator<Item = &'a ItemId>) -> Vec<Vec<ItemId>> {
    let mut by_name: BTreeMap<String, Vec<ItemId>> = BTreeMap::new();
    for id in ids {
        by_name.entry(env_var_name(id)).or_default().push(id.clone());
    }
    by_name
        .into_values()
        .filter_map(|mut group| {
            group.sort();
            group.dedup();
            (group.len() > 1).then_some(group)
        })
        .collect()
}

/// What an environment name means to Airflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvName {
    /// Airflow reads it as this id (reported lower-cased, see the module docs).
    Item(ItemId),
    /// It has our prefix, but no id upper-cases to it: Airflow never reads it.
    Unreachable(ItemId),
}

/// The id an environment name stands for, or `None` if it is not a variable/connection name.
pub fn id_from_env_name(name: &str) -> Option<EnvName> {
    let (kind, suffix) = if let Some(s) = name.strip_prefix(VAR_PREFIX) {
        (Kind::Variable, s)
    } else if let Some(s) = name.strip_prefix(CONN_PREFIX) {
        (Kind::Connection, s)
    } else {
        return None;
    };
    if suffix.to_uppercase() != suffix {
        return Some(EnvName::Unreachable(ItemId::new(kind, suffix)));
    }
    // Report lower case when it maps back to the same name; otherwise (rare Unicode cases such as
    // `İ`) the suffix itself, which always maps to itself.
    let lower = suffix.to_lowercase();
    let id = if lower.to_uppercase() == suffix { lower } else { suffix.to_string() };
    Some(EnvName::Item(ItemId::new(kind, id)))
}
