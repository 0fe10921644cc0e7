//! GCP Secret Manager requests per operation, as the in-repo fake logs them (issue 18: calls per
//! item at the floor); the numbers are the ones docs/benchmarks.md documents.

#[path = "support/fake_gcp.rs"]
mod fake_gcp;

use airflow_secrets_sync::model::{Entry, ItemId};
use airflow_secrets_sync::store::gcp_secret_manager::{GcpSecretManagerConfig, GcpSecretManagerStore};
use airflow_secrets_sync::store::{Precondition, Store};
use fake_gcp::FakeGcp;

const PROJECT: &str = "test-project";

async fn gcp_store(fake: &FakeGcp) -> GcpSecretManagerStore {
    let cfg = GcpSecretManagerConfig {
        project_id: Some(PROJECT.into()),
        endpoint: Some(fake.endpoint.clone()),
        ..Default::default()
    };
    let creds = google_cloud_auth::credentials::anonymous::Builder::new().build();
    GcpSecretManagerStore::connect_with_credentials(cfg, creds).await.expect("gcp store")
}

fn taken(fake: &FakeGcp) -> Vec<String> {
    let r = fake.requests();
    fake.clear_requests();
    r
}

#[tokio::test]
async fn gcp_calls_per_operation() {
    let fake = FakeGcp::start().await;
    let store = gcp_store(&fake).await;
    let id = ItemId::variable("counted");
    fake.clear_requests();

    // Create: CreateSecret (labels, annotations, replication), AddSecretVersion.
    store.write(&Entry::variable("counted", "one"), &Precondition::Any).await.unwrap();
    assert_eq!(taken(&fake).len(), 2);
    // Read-back of written items: versions/latest alone, one call per item.
    let back = store.read_back(std::slice::from_ref(&id)).await.unwrap();
    let e = back.get(&id).expect("read back");
    assert_eq!(e.as_variable().unwrap().value.expose_plaintext(), "one");
    let lines = taken(&fake);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("versions/latest:access"), "{lines:?}");
    // Update of an owned item: CreateSecret (AlreadyExists), GetSecret (labels: our mark is
    // there, so no UpdateSecret), AddSecretVersion.
    store.write(&Entry::variable("counted", "two"), &Precondition::Any).await.unwrap();
    assert_eq!(taken(&fake).len(), 3);
    // Delete: DeleteSecret alone.
    store.delete(&id).await.unwrap();
    assert_eq!(taken(&fake).len(), 1);
    assert!(store.read_back(std::slice::from_ref(&id)).await.unwrap().is_empty());
}
