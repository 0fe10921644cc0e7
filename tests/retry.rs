//! Issue 17: one retry loop. A proxy in front of a real `bao server -dev` answers chosen requests
//! with 429 (a rate-limit quota) and counts them, behind the real vaultrs client: a throttled write
//! is tried `[apply] max_attempts` times in all (not once per layer that retries: it used to be
//! 5 per Vault call × 6 per apply), and a scan's reads go through the same retry loop.

#[path = "support/throttling_proxy.rs"]
mod throttling_proxy;
#[path = "support/vault_server.rs"]
mod vault_server;

use std::sync::Arc;
use std::time::Duration;

use airflow_secrets_sync::apply::{self, ApplyOptions, NoJournal};
use airflow_secrets_sync::config::ApplyConfig;
use airflow_secrets_sync::error::Exit;
use airflow_secrets_sync::model::{Entry, Inventory, Kind};
use airflow_secrets_sync::plan::{self, Policy, Selection};
use airflow_secrets_sync::store::layer::{self, RetryPolicy, StackOptions};
use airflow_secrets_sync::store::memory::MemoryStore;
use airflow_secrets_sync::store::vault::{VaultAuth, VaultConfig, VaultStore};
use airflow_secrets_sync::store::{DynStore, scan_all};
use throttling_proxy::ThrottlingProxy;
use vault_server::{ROOT_TOKEN, VaultServer};

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

async fn vault_through(proxy: &ThrottlingProxy) -> DynStore {
    let config = VaultConfig {
        url: Some(proxy.url()),
        auth: VaultAuth::Token { token: Some(ROOT_TOKEN.into()), token_path: None },
        ..VaultConfig::default()
    };
    Arc::new(VaultStore::open(&config).await.unwrap_or_else(|e| panic!("open: {e}")))
}

/// Quick backoff, so the test waits milliseconds.
fn fast(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, base_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(5) }
}

fn writes_to_the_kv_mount(method: &str, path: &str) -> bool {
    method != "GET" && method != "LIST" && path.starts_with("/v1/secret/")
}

#[tokio::test]
async fn a_throttled_vault_write_is_tried_at_most_max_attempts_times() {
    let bao = VaultServer::start();
    let proxy = ThrottlingProxy::start(port_of(&bao.url()));
    let target = vault_through(&proxy).await;
    let src: Inventory = [Entry::variable("throttled", "value")].into_iter().collect();
    let tgt = scan_all(target.as_ref(), &Kind::ALL).await.unwrap();
    let policy = Policy::new(Selection::all(), &ApplyConfig::default());
    let plan = plan::diff(&MemoryStore::new("source"), &src, target.as_ref(), &tgt, &policy);
    assert_eq!(plan.summary.create, 1);

    proxy.throttle(writes_to_the_kv_mount);
    for max_attempts in [1, 4] {
        let before = proxy.throttled().len();
        let r = fast(max_attempts);
        let opts = ApplyOptions { max_attempts, base_backoff: r.base_backoff, max_backoff: r.max_backoff, ..Default::default() };
        let report = apply::execute(&plan, target.clone(), &opts, Arc::new(NoJournal)).await;
        assert_eq!(report.exit(), Exit::Throttled, "{:?}", report.failures);
        assert!(report.failures.iter().all(|f| f.retryable), "{:?}", report.failures);
        let tried = proxy.throttled()[before..].to_vec();
        assert_eq!(tried.len(), max_attempts as usize, "max_attempts = {max_attempts}: {tried:#?}");
    }

    // The quota lifts: the same plan goes through, and nothing was written twice.
    proxy.throttle(|_, _| false);
    let report = apply::execute(&plan, target.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
    assert_eq!(report.exit(), Exit::Ok, "{:?}", report.failures);
    assert_eq!((report.created, report.verified), (1, 1));
}

#[tokio::test]
async fn reads_during_scans_go_through_the_same_retry_loop() {
    let bao = VaultServer::start();
    let proxy = ThrottlingProxy::start(port_of(&bao.url()));
    let store = vault_through(&proxy).await;
    store.write(&Entry::variable("a", "1"), &airflow_secrets_sync::store::Precondition::Any).await.unwrap();
    let lists = |p: &ThrottlingProxy| p.throttled().iter().filter(|l| l.starts_with("LIST ")).count();

    // Throttled for good: a scan through the layer is tried max_attempts times, then fails as
    // throttled (the store itself sends each request once).
    proxy.throttle(|m, p| m == "LIST" && p.starts_with("/v1/secret/"));
    let once = store.scan(Kind::Variable).await.unwrap_err();
    assert!(once.is_retryable(), "{once}");
    assert_eq!(lists(&proxy), 1, "a store does not retry");
    let layered = layer::stack(store.clone(), &StackOptions { retry: fast(3), ..Default::default() });
    let err = layered.scan(Kind::Variable).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(lists(&proxy), 1 + 3);
    // `scan_all` is the same loop (its default policy): over the layered store it does not nest.
    let err = scan_all(layered.as_ref(), &[Kind::Variable]).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(lists(&proxy), 1 + 3 + RetryPolicy::default().max_attempts as usize);

    // Throttled twice, then answered: the scan succeeds.
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(2));
    let l = left.clone();
    proxy.throttle(move |m, _| {
        m == "LIST" && l.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    });
    let inv = layered.scan(Kind::Variable).await.unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!(left.load(std::sync::atomic::Ordering::SeqCst), 0);
}
