//! Leak canaries: seed known secrets, then look for them everywhere a value could escape —
//! `Debug` of every type that carries them, rendered plans, errors, and the binary's logs at the
//! most verbose level, plain and JSON.

use std::process::Command;

use airflow_secrets_sync::airflow::fernet::{self, AirflowFernet};
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

fn assert_no_canary(what: &str, text: &str, canaries: &[String]) {
    for c in canaries {
        assert!(!text.contains(c.as_str()), "{what} shows the secret {c:?}:\n{text}");
    }
}

/// A Fernet key string and the ways its bytes could be printed: the string, each half (signing
/// and encryption key) as a `Debug` byte list and as hex.
fn fernet_key_forms(key: &str) -> Vec<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE.decode(key.trim()).expect("a Fernet key is url-safe base64");
    assert_eq!(bytes.len(), 32);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    vec![
        key.trim().to_string(),
        key.trim().trim_end_matches('=').to_string(),
        format!("{:?}", &bytes[..16]),
        format!("{:?}", &bytes[16..]),
        hex(&bytes[..16]),
        hex(&bytes[16..]),
    ]
}

#[tokio::test]
async fn debug_plans_and_errors_hold_no_values() {
    let dir = tempfile::tempdir().unwrap();
    let key = demo::seed_metastore(&dir.path().join("airflow.db")).await.unwrap();
    // The canaries are the key itself, in every form a careless Debug could print it.
    let key_canaries = fernet_key_forms(key.expose_plaintext());
    let fernet = AirflowFernet::from_key_string(&key).unwrap();
    let resolved = fernet::resolve_key(&|_| None, Some(&key), None).unwrap();
    assert_no_canary("Debug of the fernet key", &format!("{key:?} {key:#?} {fernet:?} {fernet:#?} {resolved:?} {resolved:#?}"), &key_canaries);
    let text = demo::demo_config(dir.path(), &key);
    assert!(text.contains(key.expose_plaintext()), "the demo config carries the key it is checked for");
    let cfg = Config::from_toml(&text).unwrap();
    let shown = format!("{cfg:?} {cfg:#?} {:?} {:?}", registry::parse(&cfg.source).unwrap(), registry::parse(&cfg.target).unwrap());
    assert_no_canary("Debug of the config", &shown, &key_canaries);
    assert_clean("Debug of the config", &shown);
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

/// Every credential a config can carry, each one a canary: `Debug` of the parsed config and of each
/// parsed store table must show none of them (a `Debug` that printed one verbatim fails here).
#[test]
fn debug_of_a_config_never_shows_its_credentials() {
    use airflow_secrets_sync::store::registry;
    const FERNET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const CREDENTIALS: &[&str] = &[
        FERNET_KEY,
        "metastore-password-canary-1b2c",
        "hvs.vault-token-canary-3d4e",
        "approle-secret-id-canary-5f6a",
        "userpass-password-canary-7b8c",
        "backend-kwargs-token-canary-9d0e",
        "aws-secret-access-key-canary-1f2a",
        "aws-session-token-canary-3b4c",
        "azure-client-secret-canary-5d6e",
        "-----BEGIN PRIVATE KEY-----gcp-private-key-canary-7f8a",
        "state-db-password-canary-9b0c",
        "c25hcHNob3Qta2V5LWNhbmFyeS0zMmJ5dGVzLWxvbmc=",
    ];
    let c = CREDENTIALS;
    let text = format!(
        r#"
[source]
kind = "metastore"
sql_alchemy_conn = "postgresql+psycopg2://airflow:{}@db.example:5432/airflow"
fernet_key = "{}"

[target]
kind = "vault"
url = "http://127.0.0.1:8200"
auth = {{ type = "token", token = "{}" }}

[stores.approle]
kind = "vault"
url = "http://127.0.0.1:8200"
auth = {{ type = "approle", role_id = "sync", secret_id = "{}" }}

[stores.userpass]
kind = "vault"
url = "http://127.0.0.1:8200"
auth = {{ type = "userpass", username = "sync", password = "{}" }}

[stores.kwargs]
airflow_backend = "airflow.providers.hashicorp.secrets.vault.VaultBackend"
backend_kwargs = '{{"url": "http://127.0.0.1:8200", "token": "{}"}}'

[stores.aws]
kind = "aws_secrets_manager"
region_name = "us-east-1"
aws_access_key_id = "AKIAEXAMPLE"
aws_secret_access_key = "{}"
aws_session_token = "{}"

[stores.azure]
kind = "azure_key_vault"
vault_url = "https://example.vault.azure.net/"
tenant_id = "t"
client_id = "c"
client_secret = "{}"

[stores.gcp]
airflow_backend = "airflow.providers.google.cloud.secrets.secret_manager.CloudSecretManagerBackend"
backend_kwargs = '{{"project_id": "p", "gcp_keyfile_dict": {{"type": "service_account", "private_key": "{}"}}}}'

[state]
url = "postgres://sync:{}@db.example:5432/state"
snapshot_key = "{}"
"#,
        c[1], c[0], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]
    );
    for secret in CREDENTIALS {
        assert!(text.contains(secret), "the config carries {secret:?}");
    }
    let canaries: Vec<String> = CREDENTIALS.iter().map(|s| s.to_string()).chain(fernet_key_forms(FERNET_KEY)).collect();
    let cfg = Config::from_toml(&text).unwrap();
    assert_no_canary("Debug of the config", &format!("{cfg:?} {cfg:#?} {:?}", cfg.state), &canaries);
    let stores = [("source", &cfg.source), ("target", &cfg.target)].into_iter().chain(cfg.stores.iter().map(|(n, s)| (n.as_str(), s)));
    let mut parsed = 0;
    for (name, spec) in stores {
        let store = registry::parse(spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_no_canary(&format!("Debug of store {name}"), &format!("{spec:?} {store:?} {store:#?}"), &canaries);
        parsed += 1;
    }
    assert_eq!(parsed, 8);
}
