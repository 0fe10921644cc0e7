//! Issue 16 against a real OpenBao dev server: a backend that dies mid-apply (a TCP proxy in front
//! of bao, killed part-way through), and ids that would address other Vault APIs when the mount
//! comes from the id.

#[path = "support/tcp_proxy.rs"]
mod tcp_proxy;
#[path = "support/vault_server.rs"]
mod vault_server;

use std::path::Path;
use std::process::{Command, Output};

use tcp_proxy::TcpProxy;
use vault_server::{ROOT_TOKEN, VaultServer};

const BIN: &str = env!("CARGO_BIN_EXE_airflow-secrets-sync");
const SNAPSHOT_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let o: Output = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("AIRFLOW__CORE__FERNET_KEY")
        .env_remove("AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY")
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// A config from local files to Vault at `url`.
fn config(dir: &Path, url: &str, vault_extra: &str) -> String {
    format!(
        "[source]\nkind = \"local_files\"\nvariables_file_path = {:?}\nconnections_file_path = {:?}\n\n\
         [target]\nkind = \"vault\"\nurl = {url:?}\nauth = {{ type = \"token\", token = {ROOT_TOKEN:?} }}\n{vault_extra}\n\n\
         [state]\npath = {:?}\nsnapshot_key = {SNAPSHOT_KEY:?}\n",
        dir.join("variables.json").display().to_string(),
        dir.join("connections.json").display().to_string(),
        dir.join("state.db").display().to_string(),
    )
}

fn listed(server: &VaultServer, path: &str) -> usize {
    let (status, body) = server.root("LIST", &format!("/v1/secret/metadata/{path}"), None);
    if status == 404 {
        return 0;
    }
    body["data"]["keys"].as_array().map_or(0, Vec::len)
}

/// Issue 16 item 2: the proxy in front of bao dies part-way through a 400-item apply. The apply
/// stops writing after a few consecutive failures (not one attempt per remaining item), exits 11
/// ("unavailable: safe to re-run"), calls what it wrote but could not read back *unverified*
/// (never "read-back differs"), and the next apply resumes the same run and finishes it.
#[test]
fn a_backend_that_dies_mid_apply_stops_the_writes_and_the_rerun_resumes() {
    const N: usize = 400;
    let bao = VaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vars: serde_json::Map<String, serde_json::Value> = (0..N)
        .map(|i| (format!("var_{i:04}"), serde_json::Value::from(format!("value-{i}"))))
        .collect();
    std::fs::write(d.join("variables.json"), serde_json::to_string(&vars).unwrap()).unwrap();
    std::fs::write(d.join("connections.json"), "{}").unwrap();
    // About three calls per new item (mark, CAS write, read-back): the proxy dies roughly a third of the way in.
    let proxy = TcpProxy::start(port_of(&bao.url()), 400);
    // A fixed in-flight limit (the adaptive one follows the machine's latency): what is bounded
    // below is the writes sent after the breaker opened, not how many were already in flight.
    let cfg = format!("{}\n[apply]\nconcurrency = 8\n", config(d, &proxy.url(), ""));
    std::fs::write(d.join("config.toml"), cfg).unwrap();

    let (code, text) = run(d, &["migrate", "--apply"]);
    assert!(
        proxy.killed(),
        "the proxy never died: {} requests\n{text}",
        proxy.requests()
    );
    assert_eq!(code, 11, "{text}");
    assert!(text.contains("unavailable: safe to re-run"), "{text}");
    assert!(
        !text.contains("read-back differs"),
        "unread items reported as different:\n{text}"
    );
    let failed = text.lines().filter(|l| l.trim_start().starts_with("failed:")).count();
    let warned = text.lines().filter(|l| l.contains("write failed")).count();
    assert!(
        failed <= 16 && warned <= 16,
        "{failed} failures / {warned} warnings: writes kept going to a dead backend\n{text}"
    );
    assert!(text.contains("not attempted:"), "{text}");
    let written = listed(&bao, "variables");
    assert!(
        written > 0 && written < N,
        "{written} of {N} written before the proxy died"
    );
    let unverified = text
        .lines()
        .filter(|l| l.contains("unverified (written, not read back)"))
        .count();
    assert!(unverified > 0, "{text}");
    let run_id = text
        .lines()
        .find(|l| l.starts_with("Run "))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|r| r.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("no run id:\n{text}"));

    // The backend is back on the same address: the next apply resumes the run and finishes it.
    let back = proxy.restart();
    let (code, text) = run(d, &["migrate", "--apply"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("Run {run_id} (resumed)")), "{text}");
    assert_eq!(listed(&bao, "variables"), N);
    let (code, text) = run(d, &["migrate", "--plan"]);
    assert_eq!(code, 0, "{text}");
    drop(back);
}

/// Issue 16 item 12: with the mount taken from the id (`mount_point = ""`) and an empty path, an
/// id is refused unless its first segment is a KV mount the tool verified: `auth/token/create`,
/// `sys/...`, `cubbyhole/...` are other Vault APIs, not secrets. Against bao dev with the root
/// token (the worst case: every such request would be allowed), on KV v1 (where the request path
/// is the id verbatim) and KV v2.
#[tokio::test]
async fn ids_that_address_other_vault_apis_are_refused() {
    use airflow_secrets_sync::model::{Entry, ItemErrorKind, ItemId};
    use airflow_secrets_sync::store::vault::{KvVersion, VaultAuth, VaultConfig, VaultStore};
    use airflow_secrets_sync::store::{Placement, Precondition, Store, StoreError};

    let bao = VaultServer::start();
    bao.mount_kv("kv1", 1);
    let accessors = || {
        bao.root("LIST", "/v1/auth/token/accessors", None).1["data"]["keys"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let tokens_before = accessors();
    for (kv, good) in [(KvVersion::V1, "kv1/ok_var"), (KvVersion::V2, "secret/ok_var")] {
        let cfg = VaultConfig {
            url: Some(bao.url()),
            auth: VaultAuth::Token {
                token: Some(ROOT_TOKEN.into()),
                token_path: None,
            },
            mount_point: None,
            kv_engine_version: kv,
            variables_path: vec![String::new()],
            connections_path: vec![String::new()],
            ..VaultConfig::default()
        };
        let store = VaultStore::open(&cfg).await.unwrap_or_else(|e| panic!("open: {e}"));
        assert!(
            matches!(store.locate(&ItemId::variable(good)), Placement::At(_)),
            "{kv:?}: a verified KV mount"
        );
        store
            .write(&Entry::variable(good, "fine"), &Precondition::Any)
            .await
            .unwrap();
        for hostile in [
            "auth/token/create",
            "sys/policies/acl/evil",
            "cubbyhole/x",
            "identity/entity",
            "kv1x/y",
        ] {
            let id = ItemId::variable(hostile);
            assert!(
                matches!(store.locate(&id), Placement::Invalid(_)),
                "{kv:?} {hostile}: {:?}",
                store.locate(&id)
            );
            let err = store
                .write(
                    &Entry::variable(
                        hostile,
                        "{\"policy\": \"path \\\"*\\\" { capabilities = [\\\"sudo\\\"] }\"}",
                    ),
                    &Precondition::Any,
                )
                .await
                .expect_err(hostile);
            assert!(
                matches!(&err, StoreError::Item { error, .. } if error.kind == ItemErrorKind::InvalidName),
                "{kv:?} {hostile}: {err}"
            );
            assert!(err.to_string().contains("not a KV"), "{err}");
            store.delete(&id).await.unwrap();
            assert!(store.read(std::slice::from_ref(&id)).await.unwrap().is_empty());
        }
    }
    assert_eq!(accessors(), tokens_before, "a write created a token");
    assert_eq!(
        bao.root("GET", "/v1/sys/policies/acl/evil", None).0,
        404,
        "a write created a policy"
    );
}

/// Issue 16 item 13: Vault's documented cap (1 MiB, integrated storage's default entry size) is
/// in its capabilities, so the plan refuses larger values before any write; the store refuses
/// them too and nothing reaches Vault.
#[tokio::test]
async fn values_over_the_vault_cap_are_refused_before_any_write() {
    use airflow_secrets_sync::model::{Entry, ItemErrorKind, ItemId};
    use airflow_secrets_sync::store::vault::{MAX_VALUE_BYTES, VaultAuth, VaultConfig, VaultStore};
    use airflow_secrets_sync::store::{Precondition, Store, StoreError};
    let bao = VaultServer::start();
    let cfg = VaultConfig {
        url: Some(bao.url()),
        auth: VaultAuth::Token {
            token: Some(ROOT_TOKEN.into()),
            token_path: None,
        },
        ..VaultConfig::default()
    };
    let store = VaultStore::open(&cfg).await.unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(store.capabilities().max_value_bytes, Some(MAX_VALUE_BYTES));
    let over = "y".repeat(MAX_VALUE_BYTES + 1);
    let err = store
        .write(&Entry::variable("too_big", over.as_str()), &Precondition::Any)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Item { error, .. } if error.kind == ItemErrorKind::TooLarge),
        "{err}"
    );
    assert!(
        store.read(&[ItemId::variable("too_big")]).await.unwrap().is_empty(),
        "nothing was written"
    );
    store
        .write(
            &Entry::variable("at_the_cap", "z".repeat(MAX_VALUE_BYTES).as_str()),
            &Precondition::Any,
        )
        .await
        .unwrap();
}
