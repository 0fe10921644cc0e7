//! AWS Secrets Manager and SSM HTTP calls per write, counted on the wire (issue 18: calls per item
//! at the floor). A loopback proxy in front of `moto_server` counts the requests each store call
//! sends; the numbers are the ones docs/benchmarks.md documents per operation.
#![cfg(all(feature = "aws_secrets_manager", feature = "aws_ssm"))]

#[path = "support/moto_server.rs"]
mod moto_server;
#[path = "support/tcp_proxy.rs"]
mod tcp_proxy;

use airflow_secrets_sync::model::{Entry, ItemId};
use airflow_secrets_sync::store::aws::secrets_manager::{AwsSecretsManagerConfig, AwsSecretsManagerStore};
use airflow_secrets_sync::store::aws::ssm::{AwsSsmConfig, AwsSsmStore};
use airflow_secrets_sync::store::{Precondition, Store, StoreError};
use moto_server::MotoServer;
use serde_json::json;
use tcp_proxy::TcpProxy;

fn config<T: serde::de::DeserializeOwned>(endpoint: &str) -> T {
    serde_json::from_value(json!({
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "endpoint_url": endpoint,
    }))
    .expect("config")
}

fn proxy_for(moto: &MotoServer) -> TcpProxy {
    let port = moto.endpoint().rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    TcpProxy::start(port, usize::MAX)
}

/// How many requests `f` sent through `proxy`, and its result.
async fn counted<T>(proxy: &TcpProxy, f: impl std::future::Future<Output = T>) -> (usize, T) {
    let before = proxy.requests();
    let out = f.await;
    (proxy.requests() - before, out)
}

fn value_of(inv: &airflow_secrets_sync::model::Inventory, id: &ItemId) -> Option<String> {
    inv.get(id).and_then(|e| e.as_variable()).map(|v| v.value.expose_plaintext().to_string())
}

#[tokio::test]
async fn ssm_calls_per_operation() {
    let moto = MotoServer::start();
    let proxy = proxy_for(&moto);
    let store = AwsSsmStore::new(config::<AwsSsmConfig>(&proxy.url())).await.expect("store");
    let id = ItemId::variable("counted");

    // Create: PutParameter(Overwrite=false) with our tags, nothing before it.
    let (n, r) = counted(&proxy, store.write(&Entry::variable("counted", "one"), &Precondition::Absent)).await;
    r.unwrap();
    assert_eq!(n, 1, "a create is one call");
    // A parameter that exists since the plan: the same one call fails, nothing is overwritten.
    let (n, r) = counted(&proxy, store.write(&Entry::variable("counted", "stale"), &Precondition::Absent)).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(n, 1);
    let inv = store.read(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(value_of(&inv, &id).as_deref(), Some("one"));
    let version = inv.get(&id).unwrap().meta.version.clone().unwrap();

    // Update of an owned item: ListTagsForResource (ownership), GetParameter (the version the plan
    // saw: SSM has no conditional put), PutParameter.
    let (n, r) = counted(&proxy, store.write(&Entry::variable("counted", "two"), &Precondition::Version(version))).await;
    r.unwrap();
    assert_eq!(n, 3);
    // Delete: ListTagsForResource (ownership: deletes are unconditional), DeleteParameter.
    let (n, r) = counted(&proxy, store.delete(&id)).await;
    r.unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn secrets_manager_calls_per_operation() {
    let moto = MotoServer::start();
    let proxy = proxy_for(&moto);
    let store = AwsSecretsManagerStore::new(config::<AwsSecretsManagerConfig>(&proxy.url())).await.expect("store");
    let id = ItemId::variable("counted");

    let (n, r) = counted(&proxy, store.write(&Entry::variable("counted", "one"), &Precondition::Absent)).await;
    r.unwrap();
    assert_eq!(n, 1, "a create is CreateSecret alone");
    let inv = store.read(std::slice::from_ref(&id)).await.unwrap();
    let version = inv.get(&id).unwrap().meta.version.clone().unwrap();
    // Update: DescribeSecret (version, ownership, pending deletion), PutSecretValue.
    let (n, r) = counted(&proxy, store.write(&Entry::variable("counted", "two"), &Precondition::Version(version))).await;
    r.unwrap();
    assert_eq!(n, 2);
    // Read-back: one BatchGetSecretValue for up to 20 items.
    let ids: Vec<ItemId> = (0..20).map(|i| ItemId::variable(format!("rb_{i}"))).collect();
    for id in &ids {
        store.write(&Entry::variable(id.id.clone(), "x"), &Precondition::Absent).await.unwrap();
    }
    let (n, r) = counted(&proxy, store.read_back(&ids)).await;
    assert_eq!(r.unwrap().len(), 20);
    assert_eq!(n, 1);
    // Delete: DescribeSecret (ownership, pending deletion), DeleteSecret.
    let (n, r) = counted(&proxy, store.delete(&id)).await;
    r.unwrap();
    assert_eq!(n, 2);
}
