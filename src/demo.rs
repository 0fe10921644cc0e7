//! The embedded demo: a SQLite metastore with Airflow 3.3's schema, seeded with Fernet-encrypted
//! variables and connections (and one plaintext row, as Airflow leaves rows written before a key
//! was set), migrated to Airflow local-filesystem JSON files: plan, apply, plan again.

use std::io::Write;
use std::path::Path;

use crate::error::Exit;

pub async fn run(_dir: Option<&Path>, out: &mut dyn Write) -> anyhow::Result<Exit> {
    writeln!(out, "demo: not wired yet")?;
    Ok(Exit::Error)
}
