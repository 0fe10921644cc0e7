//! The `variable` and `connection` tables as Airflow's migrations leave them (spec §1.1, §1.2):
//! which generation a database is (detected from its columns, spec §1.6), what its columns hold
//! at most, and which Airflow release an alembic head belongs to.

use std::collections::BTreeMap;

use super::Dialect;
use crate::model::{Entry, Value};

/// The largest value a metastore target takes on PostgreSQL and SQLite (see [`max_value_bytes`]).
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;
/// The same on MySQL / MariaDB: what a 16 MiB MEDIUMTEXT holds once Fernet-encrypted.
pub const MAX_VALUE_BYTES_MYSQL: usize = 12 * 1024 * 1024;

/// The largest value written, before encryption (a Fernet token is about 4/3 of it). MySQL and
/// MariaDB hold `variable.val` in a MEDIUMTEXT (16 MiB) and refuse packets over
/// `max_allowed_packet` (16 MiB by default on MariaDB); PostgreSQL and SQLite take up to 1 GB per
/// value, capped here at 64 MiB so that one row never costs gigabytes of memory.
pub fn max_value_bytes(dialect: Dialect) -> usize {
    match dialect {
        Dialect::MySql => MAX_VALUE_BYTES_MYSQL,
        Dialect::Postgres | Dialect::Sqlite => MAX_VALUE_BYTES,
    }
}

/// What Airflow's columns cannot hold (spec §1.1, §1.2): `key` / `conn_id` are VARCHAR(250);
/// `host`, `schema` and `conn_type` VARCHAR(500). `Err` says which, never the value.
pub fn check_columns(entry: &Entry) -> Result<(), String> {
    let too_long = |what: &str, v: &str, limit: usize| {
        (v.chars().count() > limit).then(|| format!("{what} is longer than {limit} characters"))
    };
    if entry.id.id.is_empty() {
        return Err("an empty id".into());
    }
    if let Some(e) = too_long("the id", &entry.id.id, 250) {
        return Err(e);
    }
    if let Value::Connection(c) = &entry.value {
        for (what, v) in [("host", &c.host), ("schema", &c.schema), ("conn_type", &c.conn_type)] {
            if let Some(e) = v.as_deref().and_then(|v| too_long(what, v, 500)) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Which multi-team column the tables carry (spec §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeamColumn {
    /// 2.x and 3.0.
    None,
    /// 3.1.x: `team_id` UUID.
    TeamId,
    /// 3.2+: `team_name` (revision `b12d4f98a91e`).
    TeamName,
}

/// The shape of the two tables as found in a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetastoreSchema {
    pub team: TeamColumn,
    /// Whether `is_encrypted` / `variable.val` may be NULL (2.x to 3.1; NOT NULL from 3.2,
    /// revision `888b59e02a5b`).
    pub nullable_flags: bool,
    pub variable_has_description: bool,
    pub connection_has_description: bool,
    /// `alembic_version.version_num`, for reporting only (detection uses the columns).
    pub alembic_revision: Option<String>,
}

/// Column name → nullable, as probed from the database.
pub type Columns = BTreeMap<String, bool>;

const VARIABLE_REQUIRED: &[&str] = &["key", "val", "is_encrypted"];
const CONNECTION_REQUIRED: &[&str] =
    &["conn_id", "conn_type", "host", "schema", "login", "password", "port", "extra", "is_encrypted", "is_extra_encrypted"];

impl MetastoreSchema {
    /// Classify the tables from their columns. `Err` names what is missing.
    pub fn detect(variable: &Columns, connection: &Columns) -> Result<Self, String> {
        if variable.is_empty() && connection.is_empty() {
            return Err("no Airflow metastore tables (variable, connection)".into());
        }
        for (table, cols, required) in
            [("variable", variable, VARIABLE_REQUIRED), ("connection", connection, CONNECTION_REQUIRED)]
        {
            if cols.is_empty() {
                return Err(format!("no Airflow '{table}' table"));
            }
            let missing: Vec<&str> = required.iter().copied().filter(|c| !cols.contains_key(*c)).collect();
            if !missing.is_empty() {
                return Err(format!(
                    "table '{table}' lacks column(s) {} (not an Airflow 2.x/3.x metastore?)",
                    missing.join(", ")
                ));
            }
        }
        let team = if variable.contains_key("team_name") || connection.contains_key("team_name") {
            TeamColumn::TeamName
        } else if variable.contains_key("team_id") || connection.contains_key("team_id") {
            TeamColumn::TeamId
        } else {
            TeamColumn::None
        };
        let nullable_flags = variable.get("is_encrypted").copied().unwrap_or(true)
            || variable.get("val").copied().unwrap_or(true)
            || connection.get("is_encrypted").copied().unwrap_or(true)
            || connection.get("is_extra_encrypted").copied().unwrap_or(true);
        Ok(Self {
            team,
            nullable_flags,
            variable_has_description: variable.contains_key("description"),
            connection_has_description: connection.contains_key("description"),
            alembic_revision: None,
        })
    }

    /// A short human name for the generation found: "2.x/3.0", "3.1", "3.2+".
    pub fn generation(&self) -> &'static str {
        match (self.team, self.nullable_flags) {
            (TeamColumn::TeamName, _) => "3.2+",
            (TeamColumn::TeamId, _) => "3.1",
            (TeamColumn::None, true) => "2.x/3.0",
            (TeamColumn::None, false) => "3.2+ (no team column)",
        }
    }

    /// The Airflow release whose migrations end at this revision (spec §1.6), for reporting.
    pub fn airflow_version(&self) -> Option<&'static str> {
        self.alembic_revision.as_deref().and_then(airflow_version_for_revision)
    }
}

/// The Airflow release a head revision belongs to (spec §1.6; unlisted patch releases share the
/// previous head, so this names the first release with that head).
pub fn airflow_version_for_revision(revision: &str) -> Option<&'static str> {
    const HEADS: &[(&str, &str)] = &[
        ("e959f08ac86c", "2.0.0"),
        ("82b7c48c147f", "2.0.1"),
        ("2e42bb497a22", "2.0.2"),
        ("a13f7613ad25", "2.1.0"),
        ("97cdd93827b8", "2.1.3"),
        ("ccde3e26fe78", "2.1.4"),
        ("7b2661a43ba3", "2.2.0"),
        ("be2bfac3da23", "2.2.3"),
        ("587bdf053233", "2.2.4"),
        ("b1b348e02d07", "2.3.0"),
        ("1de7bc13c950", "2.3.1"),
        ("3c94c427fdf6", "2.3.2"),
        ("f5fcbda3e651", "2.3.3"),
        ("ecb43d2a1842", "2.4.0"),
        ("b0d31815b5a6", "2.4.2"),
        ("e07f49787c9d", "2.4.3"),
        ("290244fb8b83", "2.5.0"),
        ("98ae134e6fff", "2.6.0"),
        ("c804e5c76e3e", "2.6.2"),
        ("4bc4d934e2bc", "2.6.2"),
        ("405de8318b3a", "2.7.0"),
        ("10b52ebd31f7", "2.8.0"),
        ("88344c1d9134", "2.8.1"),
        ("1949afb29106", "2.9.0"),
        ("686269002441", "2.9.2"),
        ("22ed7efa9da2", "2.10.0"),
        ("5f2621c13b39", "2.10.3"),
        ("29ce7909c52b", "3.0.0"),
        ("fe199e1abd77", "3.0.3"),
        ("cc92b33c6709", "3.1.0"),
        ("509b94a1042d", "3.1.8"),
        ("1d6611b6ab7c", "3.2.0"),
        ("d2f4e1b3c5a7", "3.3.0"),
    ];
    HEADS.iter().find(|(r, _)| *r == revision).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(list: &[(&str, bool)]) -> Columns {
        list.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    }


    #[test]
    fn detection_tells_2x_31_and_32_apart() {
        let var2 = cols(&[("id", false), ("key", true), ("val", true), ("description", true), ("is_encrypted", true)]);
        let conn2 = cols(&[
            ("id", false), ("conn_id", false), ("conn_type", false), ("description", true), ("host", true),
            ("schema", true), ("login", true), ("password", true), ("port", true), ("extra", true),
            ("is_encrypted", true), ("is_extra_encrypted", true),
        ]);
        let s = MetastoreSchema::detect(&var2, &conn2).unwrap();
        assert_eq!((s.team, s.nullable_flags), (TeamColumn::None, true));

        let mut var31 = var2.clone();
        var31.insert("team_id".into(), true);
        assert_eq!(MetastoreSchema::detect(&var31, &conn2).unwrap().team, TeamColumn::TeamId);

        let mut var32: Columns = var2.keys().map(|c| (c.clone(), c == "description")).collect();
        var32.insert("team_name".into(), true);
        let mut conn32: Columns = conn2.iter().map(|(c, n)| (c.clone(), *n && !c.starts_with("is_"))).collect();
        conn32.insert("team_name".into(), true);
        let s = MetastoreSchema::detect(&var32, &conn32).unwrap();
        assert_eq!((s.team, s.nullable_flags, s.generation()), (TeamColumn::TeamName, false, "3.2+"));

        let e = MetastoreSchema::detect(&Columns::new(), &Columns::new()).unwrap_err();
        assert!(e.contains("variable, connection"), "{e}");
        let e = MetastoreSchema::detect(&cols(&[("key", true)]), &conn2).unwrap_err();
        assert!(e.contains("val, is_encrypted"), "{e}");
    }
}
