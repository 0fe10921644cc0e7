//! `config.toml.example` documents every option: it must parse, and so must every alternative
//! store block it shows commented out.

use airflow_secrets_sync::config::{Config, StoreSpec};
use airflow_secrets_sync::store::registry;

const EXAMPLE: &str = include_str!("../config.toml.example");

/// The commented-out `[source]` / `[target]` blocks: from a `# [source]` line to the next blank line.
fn commented_blocks() -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in EXAMPLE.lines() {
        let trimmed = line.trim();
        if trimmed == "# [source]" || trimmed == "# [target]" {
            current = Some((trimmed[2..].to_string(), String::new()));
            continue;
        }
        if let Some((_, body)) = current.as_mut() {
            if trimmed.is_empty() || !trimmed.starts_with('#') {
                blocks.push(current.take().unwrap());
                continue;
            }
            body.push_str(trimmed.strip_prefix("# ").or_else(|| trimmed.strip_prefix('#')).unwrap());
            body.push('\n');
        }
    }
    if let Some(b) = current {
        blocks.push(b);
    }
    blocks
}

#[test]
fn the_example_parses_with_every_store_valid() {
    let cfg = Config::from_toml(EXAMPLE).expect("config.toml.example parses");
    registry::parse(&cfg.source).expect("[source] is a valid store");
    registry::parse(&cfg.target).expect("[target] is a valid store");
    assert_eq!(cfg.apply.max_deletes, 10);
    assert_eq!(cfg.select.exclude, vec!["*_test".to_string()]);
}

#[test]
fn every_commented_store_block_parses() {
    let blocks = commented_blocks();
    assert!(blocks.len() >= 4, "found only {} commented store blocks", blocks.len());
    let mut kinds = Vec::new();
    for (header, body) in blocks {
        let table: toml::Table = toml::from_str(&body).unwrap_or_else(|e| panic!("{header} block:\n{body}\n{e}"));
        let spec = StoreSpec(table);
        kinds.push(spec.kind_label());
        registry::parse(&spec).unwrap_or_else(|e| panic!("{header} block is not a valid store: {e}\n{body}"));
    }
    for kind in ["env", "vault", "aws_secrets_manager", "aws_ssm", "gcp_secret_manager", "azure_key_vault"] {
        assert!(kinds.iter().any(|k| k == kind), "no example block for {kind}: {kinds:?}");
    }
}

#[test]
fn unknown_keys_are_refused_not_ignored() {
    let bad = EXAMPLE.replace("max_deletes = 10", "max_delete = 10");
    assert!(Config::from_toml(&bad).is_err());
    let bad = EXAMPLE.replacen("variables_file_path", "variable_file_path", 1);
    let cfg = Config::from_toml(&bad).unwrap();
    assert!(registry::parse(&cfg.target).is_err(), "a misspelt store key must be an error");
}

#[test]
fn the_daemon_section_parses_with_its_documented_defaults() {
    use airflow_secrets_sync::daemon::{JobMode, MissedPolicy};
    let cfg = Config::from_toml(EXAMPLE).unwrap();
    assert_eq!(cfg.daemon.listen, "127.0.0.1:9477");
    assert_eq!(cfg.daemon.timezone, "UTC");
    assert_eq!(cfg.daemon.shutdown_grace_secs, 30);
    assert_eq!(cfg.jobs.len(), 1);
    let job = &cfg.jobs[0];
    assert_eq!(job.name, "metastore-drift");
    assert_eq!(job.mode, JobMode::Plan);
    assert_eq!(job.missed, MissedPolicy::Skip);
    assert!(job.skip_errored);
    let schedule = job.schedule(&cfg.daemon).unwrap();
    assert_eq!(schedule.pattern(), "*/15 * * * *");
    // The commented second job parses too, once its store exists.
    let second: String = EXAMPLE
        .split("# A second job:")
        .nth(1)
        .expect("the example shows a second job")
        .lines()
        .skip(1)
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let with_vault = format!(
        "{EXAMPLE}\n{second}\n[stores.vault]\nkind = \"vault\"\nurl = \"http://127.0.0.1:8200\"\n"
    );
    let cfg = Config::from_toml(&with_vault).unwrap_or_else(|e| panic!("{e}\n{second}"));
    assert_eq!(cfg.jobs[1].mode, JobMode::Apply);
    assert_eq!(cfg.jobs[1].prune, Some(true));
    // A misspelt job key is an error, not ignored.
    assert!(Config::from_toml(&EXAMPLE.replace("jitter_secs = 0", "jiter_secs = 0")).is_err());
}

#[test]
fn the_reader_options_of_the_example_parse() {
    let text = EXAMPLE.replace("# airflow_readers = [\"2\", \"3\"]", "airflow_readers = [\"2\", \"3\"]").replace(
        "# legacy_extra = \"refuse\"\n# legacy_extra_key = \"legacy_extra\"",
        "legacy_extra = \"wrap\"\nlegacy_extra_key = \"legacy_extra\"",
    );
    assert_ne!(text, EXAMPLE, "the example documents airflow_readers and legacy_extra");
    let cfg = Config::from_toml(&text).unwrap();
    registry::parse(&cfg.target).expect("the reader keys are not the store's");
    let f = registry::fidelity(&cfg.target).unwrap();
    assert_eq!(f.readers, airflow_secrets_sync::airflow::fidelity::Readers::all());
    assert_eq!(f.legacy_extra, airflow_secrets_sync::airflow::fidelity::LegacyExtra::Wrap("legacy_extra".into()));
    let mut bad = cfg.target.clone();
    bad.0.insert("airflow_readers".into(), toml::Value::Array(vec![toml::Value::String("4".into())]));
    assert!(registry::fidelity(&bad).unwrap_err().to_string().contains("unknown Airflow reader"));
}

#[test]
fn every_registered_backend_has_an_example_block() {
    let blocks = commented_blocks();
    let cfg = Config::from_toml(EXAMPLE).unwrap();
    let mut kinds: Vec<String> = vec![cfg.source.kind_label(), cfg.target.kind_label()];
    for (_, body) in blocks {
        let spec = StoreSpec(toml::from_str(&body).unwrap());
        kinds.push(registry::resolve_kind(&spec).map(|(k, _)| k).unwrap_or_else(|e| panic!("{e}")));
    }
    for b in registry::BACKENDS {
        assert!(kinds.iter().any(|k| k == b.kind), "config.toml.example shows no block for {}: {kinds:?}", b.kind);
    }
}
