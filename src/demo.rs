//! The embedded demo: a SQLite metastore with Airflow 3.3's schema, seeded the way Airflow
//! writes rows (Fernet-encrypted `val`, `password`, `extra`; one plaintext row from before a key
//! was set; an empty password stored as NULL), migrated to Airflow local-filesystem JSON files:
//! plan, apply, plan again.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use crate::airflow::fernet::AirflowFernet;
use crate::config::Config;
use crate::error::Exit;
use crate::model::SecretValue;
use crate::pipeline::{self, Endpoint, Mode, Operation, RunRequest};

/// Airflow 3.3.2's DDL for the two tables (from `airflow db migrate` on SQLite).
const SCHEMA: &[&str] = &[
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
    "INSERT INTO alembic_version VALUES ('d2f4e1b3c5a7')",
    "CREATE TABLE team (name VARCHAR(50) NOT NULL, CONSTRAINT team_pkey PRIMARY KEY (name))",
    r#"CREATE TABLE connection (id INTEGER NOT NULL, conn_id VARCHAR(250) NOT NULL, conn_type VARCHAR(500) NOT NULL,
        description VARCHAR(5000), host VARCHAR(500), schema VARCHAR(500), login TEXT, port INTEGER,
        team_name VARCHAR(50), password TEXT, extra TEXT, is_encrypted BOOLEAN NOT NULL,
        is_extra_encrypted BOOLEAN NOT NULL, CONSTRAINT connection_pkey PRIMARY KEY (id),
        CONSTRAINT connection_conn_id_uq UNIQUE (conn_id),
        CONSTRAINT connection_team_name_fkey FOREIGN KEY(team_name) REFERENCES team (name) ON DELETE SET NULL)"#,
    r#"CREATE TABLE variable (id INTEGER NOT NULL, "key" VARCHAR(250) NOT NULL, val TEXT NOT NULL, description TEXT,
        is_encrypted BOOLEAN NOT NULL, team_name VARCHAR(50), CONSTRAINT variable_pkey PRIMARY KEY (id),
        CONSTRAINT variable_key_uq UNIQUE ("key"),
        CONSTRAINT variable_team_name_fkey FOREIGN KEY(team_name) REFERENCES team (name) ON DELETE SET NULL)"#,
];

/// A fresh Fernet key, as `airflow` generates one (32 random bytes, urlsafe base64).
pub fn generate_fernet_key() -> SecretValue {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(key.as_mut());
    SecretValue::new(base64::engine::general_purpose::URL_SAFE.encode(key.as_ref()))
}

/// An empty SQLite metastore with Airflow 3.3's tables, as `airflow db migrate` leaves it.
pub async fn create_empty_metastore(db: &Path) -> anyhow::Result<SqlitePool> {
    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(db).create_if_missing(true))
        .await
        .with_context(|| format!("creating {}", db.display()))?;
    for stmt in SCHEMA {
        sqlx::query(*stmt).execute(&pool).await.context("creating the demo schema")?;
    }
    Ok(pool)
}

/// Create the demo metastore at `db` and return the Fernet key it is encrypted with.
pub async fn seed_metastore(db: &Path) -> anyhow::Result<SecretValue> {
    let key = generate_fernet_key();
    let fernet = AirflowFernet::from_key_string(&key).context("building the demo fernet key")?;
    let pool = create_empty_metastore(db).await?;
    let enc = |s: &str| fernet.encrypt(&SecretValue::from(s)).expect("a real key encrypts");
    // (key, value, description, encrypted?)
    let variables: [(&str, &str, Option<&str>, bool); 5] = [
        ("environment", "production", Some("where this Airflow runs"), true),
        ("slack_webhook_token", "xoxb-demo-not-a-real-token", None, true),
        ("etl_config", "{\n  \"batch_size\": 500,\n  \"retries\": 3\n}", Some("serialize_json=True"), true),
        ("greeting_unicode", "gr\u{fc}\u{df}e \u{1f44b}", None, true),
        ("legacy_plaintext", "written before a fernet key was set", None, false),
    ];
    for (i, (k, v, d, encrypted)) in variables.iter().enumerate() {
        let val = if *encrypted { enc(v) } else { v.to_string() };
        sqlx::query(r#"INSERT INTO variable (id, "key", val, description, is_encrypted) VALUES (?, ?, ?, ?, ?)"#)
            .bind(i as i64 + 1)
            .bind(k)
            .bind(val)
            .bind(d)
            .bind(encrypted)
            .execute(&pool)
            .await?;
    }
    // (conn_id, type, description, host, schema, login, port, password, extra)
    type Row<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<i64>, Option<&'a str>, Option<&'a str>);
    let connections: [Row; 4] = [
        ("warehouse_db", "postgres", Some("the reporting warehouse"), Some("warehouse.internal"), Some("analytics"), Some("etl_user"), Some(5432), Some("p@ss:w/rd#?%&= +"), Some(r#"{"sslmode": "require", "connect_timeout": 10}"#)),
        ("http_api", "http", None, Some("https://api.example.com"), None, Some("svc"), None, Some("api-secret"), Some(r#"{"Authorization": "Bearer demo"}"#)),
        ("aws_default", "aws", None, None, None, None, None, None, Some(r#"{"region_name": "eu-west-1"}"#)),
        ("no_password", "sftp", None, Some("files.internal"), None, Some("reader"), Some(22), None, None),
    ];
    for (i, (id, ty, desc, host, schema, login, port, pw, extra)) in connections.iter().enumerate() {
        sqlx::query(
            "INSERT INTO connection (id, conn_id, conn_type, description, host, schema, login, port, password, extra, is_encrypted, is_extra_encrypted) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(i as i64 + 1)
        .bind(id)
        .bind(ty)
        .bind(desc)
        .bind(host)
        .bind(schema)
        .bind(login)
        .bind(port)
        .bind(pw.map(enc))
        .bind(extra.map(enc))
        .bind(pw.is_some())
        .bind(extra.is_some())
        .execute(&pool)
        .await?;
    }
    pool.close().await;
    Ok(key)
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Write the demo's config.toml; returns its text.
pub fn demo_config(dir: &Path, key: &SecretValue) -> String {
    let db = dir.join("airflow.db");
    // The demo keeps its snapshot key beside the data for convenience; a real deployment keeps
    // it elsewhere (snapshot_key_cmd, or AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY).
    let snapshot_key = generate_fernet_key();
    format!(
        "# Generated by `airflow-secrets-sync demo`.\n\
         [source]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n\n\
         [target]\nkind = \"local_files\"\nvariables_file_path = {}\nconnections_file_path = {}\n\n\
         [state]\npath = {}\nsnapshot_key = {}\n",
        toml_str(&format!("sqlite:///{}", db.display())),
        toml_str(key.expose_plaintext()),
        toml_str(&dir.join("variables.json").display().to_string()),
        toml_str(&dir.join("connections.json").display().to_string()),
        toml_str(&dir.join("state.db").display().to_string()),
        toml_str(snapshot_key.expose_plaintext()),
    )
}

/// `migrate --plan` or `--apply` of the demo's config, through the one pipeline.
async fn migrate(cfg: &Config, mode: Mode, out: &mut (dyn Write + Send)) -> anyhow::Result<Exit> {
    let req = RunRequest::new(cfg, Operation::Migrate, Endpoint::Spec(cfg.source.clone()), Endpoint::Spec(cfg.target.clone()), mode);
    pipeline::run(cfg, req, out).await.into_result()
}

pub async fn run(dir: Option<&Path>, out: &mut (dyn Write + Send)) -> anyhow::Result<Exit> {
    let dir: PathBuf = match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            if d.join("airflow.db").exists() {
                anyhow::bail!(crate::error::AppError::Usage(format!("{} already holds a demo; pick an empty --dir", d.display())));
            }
            std::path::absolute(d)?
        }
        None => tempfile::Builder::new().prefix("airflow-secrets-sync-demo-").tempdir()?.keep(),
    };
    let key = seed_metastore(&dir.join("airflow.db")).await?;
    let config_path = dir.join("config.toml");
    let text = demo_config(&dir, &key);
    std::fs::write(&config_path, &text)?;
    let cfg = Config::from_toml(&text)?;
    writeln!(out, "Demo metastore: {} (5 variables, 4 connections, Fernet-encrypted)", dir.join("airflow.db").display())?;
    writeln!(out, "Config:         {}\n", config_path.display())?;

    let cmd = format!("airflow-secrets-sync --config {}", config_path.display());
    writeln!(out, "$ {cmd} migrate --plan")?;
    let first = migrate(&cfg, Mode::Plan, out).await?;
    writeln!(out, "(exit {}: changes pending)\n\n$ {cmd} migrate --apply", first.code())?;
    migrate(&cfg, Mode::Apply, out).await?;
    writeln!(out, "\n$ {cmd} migrate --plan")?;
    let last = migrate(&cfg, Mode::Plan, out).await?;
    writeln!(
        out,
        "(exit {})\n\nAirflow's LocalFilesystemBackend reads these files as they are:\n  {}\n  {}",
        last.code(),
        dir.join("variables.json").display(),
        dir.join("connections.json").display()
    )?;
    Ok(if first == Exit::ChangesPending && last == Exit::Ok { Exit::Ok } else { Exit::Error })
}
