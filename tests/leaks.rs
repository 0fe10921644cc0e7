//! Leak canaries: seed known secrets, then look for them everywhere a value could escape —
//! `Debug` of every type that carries them, rendered plans, errors, and the binary's logs at the
//! most verbose level, plain and JSON.

use std::process::Command;

use airflow_secrets_sync::config::Config;
use airflow_secrets_sync::model::Kind;
use airflow_secrets_sync::plan::{self, Policy, Selection};
use airflow_secrets_sync::render;
use airflow_secrets_sync::store::{registry, scan_all};
use airflow_secrets_sync::{config::ApplyConfig, demo};

/// Values `demo::seed_metastore` writes (plaintext, before encryption).
const CANARIES: &[&str] = &["xoxb-demo-not-a-real-token", "p@ss:w/rd#?%&= +", "api-secret", "Bearer demo", "production"];

fn assert_clean(what: &str, text: &str) {
    for c in CANARIES {
        assert!(!text.contains(c), "{what} contains the secret {c:?}:\n{text}");
    }
}

#[tokio::test]
async fn debug_plans_and_errors_hold_no_values() {
    let dir = tempfile::tempdir().unwrap();
    let key = demo::seed_metastore(&dir.path().join("airflow.db")).await.unwrap();
    assert_clean("Debug of the fernet key", &format!("{key:?}"));
    let cfg = Config::from_toml(&demo::demo_config(dir.path(), &key)).unwrap();
    assert_clean("Debug of the config", &format!("{cfg:?} {:?}", registry::parse(&cfg.source).unwrap()));
    let source = registry::open(&cfg.source).await.unwrap();
    let target = registry::open(&cfg.target).await.unwrap();
    let inv = scan_all(source.as_ref(), &Kind::ALL).await.unwrap();
    assert_eq!(inv.len(), 9);
    assert_clean("Debug of the inventory", &format!("{inv:?} {inv:#?}"));
    for e in inv.entries() {
        assert_clean("Debug of an entry", &format!("{e:?}"));
    }
    let tinv = scan_all(target.as_ref(), &Kind::ALL).await.unwrap();
    let p = plan::diff(source.as_ref(), &inv, target.as_ref(), &tinv, &Policy::new(Selection::all(), &ApplyConfig::default()));
    assert_clean("the plan table", &render::table(&p, true));
    assert_clean("the plan JSON", &render::json(&p));
    assert_clean("Debug of the plan", &format!("{p:?}"));
}

#[tokio::test]
async fn the_most_verbose_logs_hold_no_values() {
    let dir = tempfile::tempdir().unwrap();
    let key = demo::seed_metastore(&dir.path().join("airflow.db")).await.unwrap();
    std::fs::write(dir.path().join("config.toml"), demo::demo_config(dir.path(), &key)).unwrap();
    for args in [&["-vv", "migrate", "--apply"][..], &["-vv", "--log-json", "migrate", "--plan", "--json"][..]] {
        let o = Command::new(env!("CARGO_BIN_EXE_airflow-secrets-sync"))
            .args(args)
            .current_dir(dir.path())
            .env("RUST_LOG", "trace")
            .env_remove("AIRFLOW__CORE__FERNET_KEY")
            .output()
            .unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{args:?}: {all}");
        assert!(o.stderr.len() > 100, "trace logging produced (almost) nothing: {all}");
        assert_clean(&format!("output of {args:?}"), &all);
        assert!(!all.contains(key.expose_plaintext()), "the fernet key was logged");
    }
}

/// A credential written where another type belongs (`auth = "<token>"` instead of a table) is
/// refused without echoing it: every path that reports a deserializer's message withholds values.
#[test]
fn misplaced_credentials_are_not_echoed_by_config_errors() {
    use airflow_secrets_sync::config::{Config, StoreSpec};
    use airflow_secrets_sync::store::registry;
    const CANARY: &str = "s.canary-token-5e6f";
    let spec = |text: &str| StoreSpec(toml::from_str(text).unwrap());
    for (what, text) in [
        ("native table", format!("kind = \"vault\"\nurl = \"http://127.0.0.1:1\"\nauth = \"{CANARY}\"\n")),
        (
            "backend_kwargs",
            format!(
                "airflow_backend = \"airflow.providers.hashicorp.secrets.vault.VaultBackend\"\n\
                 backend_kwargs = {{ url = \"http://127.0.0.1:1\", kv_engine_version = \"{CANARY}\" }}\n"
            ),
        ),
    ] {
        let err = registry::parse(&spec(&text)).err().unwrap_or_else(|| panic!("{what}: must be refused")).to_string();
        assert!(!err.contains(CANARY), "{what}: {err}");
    }
    let file = format!("[source]\nkind = \"env\"\nsource = \"process\"\n[target]\nkind = \"env\"\nsource = \"process\"\n[apply]\nmax_deletes = \"{CANARY}\"\n");
    let err = Config::from_toml(&file).unwrap_err().to_string();
    assert!(err.contains("invalid type") && !err.contains(CANARY), "{err}");
}
