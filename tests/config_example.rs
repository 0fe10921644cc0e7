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
