//! AWS Secrets Manager and SSM stores against a real `moto_server` (one per test, own state):
//! Airflow's names (backend_names.json), Airflow's reading of stored
//! payloads, ownership tags, limits checked before any request, tiers and recovery windows.
#![cfg(all(feature = "aws_secrets_manager", feature = "aws_ssm"))]

#[path = "support/moto_server.rs"]
mod moto_server;

use airflow_secrets_sync::airflow::connection::{Reader, equivalent};
use airflow_secrets_sync::model::{Connection, Entry, ItemErrorKind, ItemId, Kind, Ownership, SecretValue};
use airflow_secrets_sync::store::aws::common::{self as aws_common, AwsConnectionConfig};
use airflow_secrets_sync::store::aws::secrets_manager::{
    self as sm, AwsSecretsManagerConfig, AwsSecretsManagerStore, SecretsManagerNaming,
};
use airflow_secrets_sync::store::aws::ssm::{AwsSsmConfig, AwsSsmStore, SsmNaming};
use airflow_secrets_sync::store::{Placement, Precondition, Store, StoreError};
use moto_server::MotoServer;
use serde_json::{Map, Value as Json, json};

const REGION: &str = "us-east-1";

fn testdata() -> Json {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/backend_names.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("backend_names.json")).expect("json")
}

/// Airflow kwargs plus dummy static credentials, a region and the endpoint (config, not env).
fn kwargs(endpoint: &str, extra: Json) -> Map<String, Json> {
    let mut m = json!({
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "endpoint_url": endpoint,
    })
    .as_object()
    .unwrap()
    .clone();
    m.extend(extra.as_object().unwrap().clone());
    m
}

async fn sm_store(endpoint: &str, extra: Json) -> AwsSecretsManagerStore {
    // Our config keys (the TOML table as JSON), not Airflow kwargs: `adopt` etc. are ours.
    let cfg: AwsSecretsManagerConfig = serde_json::from_value(Json::Object(kwargs(endpoint, extra))).expect("config");
    AwsSecretsManagerStore::new(cfg).await.expect("store")
}

async fn ssm_store(endpoint: &str, extra: Json) -> AwsSsmStore {
    let cfg: AwsSsmConfig = serde_json::from_value(Json::Object(kwargs(endpoint, extra))).expect("config");
    AwsSsmStore::new(cfg).await.expect("store")
}

async fn raw_sdk(endpoint: &str) -> aws_config::SdkConfig {
    let c = AwsConnectionConfig {
        region_name: Some(REGION.into()),
        aws_access_key_id: Some("testing".into()),
        aws_secret_access_key: Some(SecretValue::from("testing")),
        ..Default::default()
    };
    aws_common::sdk_config(&c).await.to_builder().endpoint_url(endpoint).build()
}

async fn raw_sm(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&raw_sdk(endpoint).await)
}

async fn raw_ssm(endpoint: &str) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&raw_sdk(endpoint).await)
}

fn item_kind(err: &StoreError) -> ItemErrorKind {
    match err {
        StoreError::Item { error, .. } => error.kind,
        other => panic!("expected a per-item error, got {other}"),
    }
}

// ---------------------------------------------------------------- names (backend_names.json)

/// For every AWS config and id: our name is the name Airflow requested; "no request" is
/// Unreachable; a requested name AWS itself cannot hold is Invalid (and only then).
fn check_names(backend: &str, locate: impl Fn(&Map<String, Json>, &ItemId) -> (Option<String>, Placement), problem: impl Fn(&Map<String, Json>, &str) -> Option<String>) {
    let data = testdata();
    let mut checked = 0;
    for cfg in data["names"].as_array().unwrap().iter().filter(|n| n["backend"] == backend) {
        let kw = cfg["kwargs"].as_object().unwrap();
        for (id, kinds) in cfg["ids"].as_object().unwrap() {
            for (kind, key) in [(Kind::Connection, "connection"), (Kind::Variable, "variable")] {
                for (label, result) in kinds[key].as_object().unwrap() {
                    let item = ItemId::new(kind, id.as_str());
                    let (name, placement) = locate(kw, &item);
                    let ctx = format!("{backend} {} {item} ({label})", cfg["config"]);
                    match &result["requested"] {
                        Json::String(s) if s == "no request" => {
                            assert!(matches!(placement, Placement::Unreachable(_)), "{ctx}: expected Unreachable, got {placement:?}")
                        }
                        Json::Array(names) => {
                            let want = names[0].as_str().unwrap();
                            assert_eq!(name.as_deref(), Some(want), "{ctx}: name");
                            match &placement {
                                Placement::At(n) => {
                                    assert_eq!(n, want, "{ctx}");
                                    assert!(problem(kw, want).is_none());
                                }
                                Placement::Invalid(_) => {
                                    assert!(problem(kw, want).is_some(), "{ctx}: Invalid but AWS accepts {want}")
                                }
                                other => panic!("{ctx}: Airflow requests {want}, we say {other:?}"),
                            }
                        }
                        other => panic!("{ctx}: unexpected requested {other}"),
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 150, "{backend}: only {checked} vectors");
}

#[test]
fn secrets_manager_names_are_airflows() {
    let naming = |kw: &Map<String, Json>| {
        SecretsManagerNaming::new(&AwsSecretsManagerConfig::from_airflow_kwargs(kw).unwrap()).unwrap()
    };
    check_names(
        "SecretsManagerBackend",
        |kw, id| {
            let n = naming(kw);
            (n.name(id), n.locate(id))
        },
        |_, name| sm::name_problem(name),
    );
    // The invalid ones are exactly the AWS-impossible ids (and the ARN-suffix trap).
    let n = naming(&Map::new());
    for bad in ["x:y", "caf\u{e9}"] {
        assert!(matches!(n.locate(&ItemId::variable(bad)), Placement::Invalid(_)));
    }
}

#[test]
fn ssm_names_are_airflows() {
    let naming = |kw: &Map<String, Json>| {
        SsmNaming::new(&AwsSsmConfig::from_airflow_kwargs(kw).unwrap(), Some(REGION)).unwrap()
    };
    check_names(
        "SystemsManagerParameterStoreBackend",
        |kw, id| {
            let n = naming(kw);
            (n.name(id), n.locate(id))
        },
        |kw, name| naming(kw).name_problem(name),
    );
}

// ---------------------------------------------------------------- payloads as Airflow reads them

fn expected_connection(v: &Json) -> Connection {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    Connection {
        conn_type: s("conn_type"),
        description: s("description"),
        host: s("host"),
        login: s("login"),
        password: s("password").map(SecretValue::from),
        schema: s("schema"),
        port: v["port"].as_u64().map(|p| p as u16),
        extra: s("extra").map(SecretValue::from),
    }
}

enum Seed {
    Sm(aws_sdk_secretsmanager::Client),
    Ssm(aws_sdk_ssm::Client),
}

impl Seed {
    async fn put(&self, name: &str, value: &str) {
        match self {
            Seed::Sm(c) => {
                c.create_secret().name(name).secret_string(value).send().await.expect("seed secret");
            }
            Seed::Ssm(c) => {
                c.put_parameter()
                    .name(name)
                    .value(value)
                    .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                    .send()
                    .await
                    .expect("seed parameter");
            }
        }
    }
}

async fn check_payloads(backend: &str, moto: &MotoServer) {
    let data = testdata();
    let payloads: Vec<&Json> = data["payloads"].as_array().unwrap().iter().filter(|p| p["backend"] == backend).collect();
    assert!(payloads.len() >= 10, "{backend}: payload vectors missing");
    let seed = if backend == "SecretsManagerBackend" {
        Seed::Sm(raw_sm(&moto.endpoint()).await)
    } else {
        Seed::Ssm(raw_ssm(&moto.endpoint()).await)
    };
    for (i, p) in payloads.iter().enumerate() {
        let stored = p["stored"].as_str().unwrap();
        let name = p["payload_name"].as_str().unwrap();
        if stored.is_empty() {
            // AWS refuses an empty SecretString / parameter value; Airflow reads "" as a found
            // variable and a missing connection. Checked on the decoder directly.
            if backend == "SecretsManagerBackend" {
                assert_eq!(sm::decode_connection("", &Default::default(), Reader::default()).unwrap(), None);
            }
            continue;
        }
        let (cp, vp) = (format!("/p{i}/c"), format!("/p{i}/v"));
        let cfg = json!({"connections_prefix": cp.trim_start_matches('/'), "variables_prefix": vp.trim_start_matches('/')});
        let (cname, vname) = if backend == "SecretsManagerBackend" {
            (format!("p{i}/c/my_conn"), format!("p{i}/v/my_var"))
        } else {
            (format!("{cp}/my_conn"), format!("{vp}/my_var"))
        };
        seed.put(&cname, stored).await;
        seed.put(&vname, stored).await;
        for (label, reader) in [("airflow_3.3.2", Reader::Orm3), ("airflow_2.10.5", Reader::Orm2)] {
            let store: Box<dyn Store> = if backend == "SecretsManagerBackend" {
                Box::new(sm_store(&moto.endpoint(), cfg.clone()).await.with_reader(reader))
            } else {
                Box::new(ssm_store(&moto.endpoint(), cfg.clone()).await.with_reader(reader))
            };
            let (cid, vid) = (ItemId::connection("my_conn"), ItemId::variable("my_var"));
            let inv = store.read(&[cid.clone(), vid.clone()]).await.expect("read");
            let res = &p["results"][label];
            let got_var = inv.get(&vid).and_then(|e| e.as_variable()).map(|v| v.value.expose_plaintext().to_string());
            assert_eq!(got_var.as_deref(), res["variable"]["returned"].as_str(), "{backend} {name} {label}: variable");
            let want = &res["connection"];
            if want.get("error").is_some() {
                let err = inv.error(&cid).unwrap_or_else(|| panic!("{backend} {name} {label}: Airflow raised, we read it"));
                assert_eq!(err.kind, ItemErrorKind::Unparseable, "{backend} {name} {label}");
                assert!(!err.detail.contains(stored), "the error echoes the stored value");
            } else if want["returned"].is_null() {
                assert!(inv.get(&cid).is_none(), "{backend} {name} {label}: Airflow finds no connection");
            } else {
                let have = inv
                    .get(&cid)
                    .and_then(|e| e.as_connection())
                    .unwrap_or_else(|| panic!("{backend} {name} {label}: not read: {:?}", inv.error(&cid)));
                let want = expected_connection(&want["returned"]);
                assert!(equivalent(&want, have), "{backend} {name} {label}: read {have:?}, Airflow read {want:?}");
            }
        }
    }
}

#[tokio::test]
async fn secrets_manager_reads_payloads_as_airflow_does() {
    let moto = MotoServer::start();
    check_payloads("SecretsManagerBackend", &moto).await;
}

#[tokio::test]
async fn ssm_reads_payloads_as_airflow_does() {
    let moto = MotoServer::start();
    check_payloads("SystemsManagerParameterStoreBackend", &moto).await;
}

#[tokio::test]
async fn secret_binary_and_unmatched_names_are_per_item_errors() {
    let moto = MotoServer::start();
    let raw = raw_sm(&moto.endpoint()).await;
    raw.create_secret()
        .name("airflow/variables/binary_one")
        .secret_binary(aws_smithy_types::Blob::new(b"\x00\x01".to_vec()))
        .send()
        .await
        .unwrap();
    raw.create_secret().name("airflow/variables/other_x").secret_string("v").send().await.unwrap();
    raw.create_secret().name("airflow/variables/my_v").secret_string("mine").send().await.unwrap();
    let store = sm_store(&moto.endpoint(), json!({"variables_lookup_pattern": "my_|binary"})).await;
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(inv.error(&ItemId::variable("binary_one")).map(|e| e.kind), Some(ItemErrorKind::Unparseable));
    assert_eq!(inv.error(&ItemId::variable("other_x")).map(|e| e.kind), Some(ItemErrorKind::Unreachable));
    let mine = inv.get(&ItemId::variable("my_v")).expect("my_v");
    assert_eq!(mine.meta.ownership, Ownership::Foreign, "untagged secrets are foreign");
    assert_eq!(mine.meta.name.as_deref(), Some("airflow/variables/my_v"));
}

// ---------------------------------------------------------------- ownership

#[tokio::test]
async fn secrets_manager_tags_what_it_creates_and_refuses_foreign_secrets() {
    let moto = MotoServer::start();
    let raw = raw_sm(&moto.endpoint()).await;
    let store = sm_store(&moto.endpoint(), json!({})).await;
    store.write(&Entry::variable("tagged", "v"), &Precondition::Any).await.unwrap();
    let d = raw.describe_secret().secret_id("airflow/variables/tagged").send().await.unwrap();
    let tags: Vec<(&str, &str)> = d.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert!(tags.contains(&("managed-by", "airflow-secrets-sync")), "{tags:?}");
    assert!(tags.contains(&("airflow-id", "tagged")), "{tags:?}");

    raw.create_secret().name("airflow/variables/foreign").secret_string("theirs").send().await.unwrap();
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(inv.get(&ItemId::variable("tagged")).unwrap().meta.ownership, Ownership::Ours);
    assert_eq!(inv.get(&ItemId::variable("foreign")).unwrap().meta.ownership, Ownership::Foreign);
    let err = store.write(&Entry::variable("foreign", "ours"), &Precondition::Any).await.unwrap_err();
    assert_eq!(item_kind(&err), ItemErrorKind::NotOwned);
    assert!(err.to_string().contains("adopt"), "{err}");
    let err = store.delete(&ItemId::variable("foreign")).await.unwrap_err();
    assert_eq!(item_kind(&err), ItemErrorKind::NotOwned);
    let v = raw.get_secret_value().secret_id("airflow/variables/foreign").send().await.unwrap();
    assert_eq!(v.secret_string(), Some("theirs"), "a foreign secret was changed");

    let adopting = sm_store(&moto.endpoint(), json!({"adopt": true})).await;
    adopting.write(&Entry::variable("foreign", "ours"), &Precondition::Any).await.unwrap();
    let got = store.read(&[ItemId::variable("foreign")]).await.unwrap();
    let e = got.get(&ItemId::variable("foreign")).unwrap();
    assert_eq!(e.meta.ownership, Ownership::Ours, "adopting tags the secret");
    assert_eq!(e.as_variable().unwrap().value.expose_plaintext(), "ours");
}

#[tokio::test]
async fn ssm_tags_what_it_creates_and_refuses_foreign_parameters() {
    let moto = MotoServer::start();
    let raw = raw_ssm(&moto.endpoint()).await;
    let store = ssm_store(&moto.endpoint(), json!({})).await;
    store.write(&Entry::variable("tagged", "v"), &Precondition::Any).await.unwrap();
    store.write(&Entry::variable("tagged", "v2"), &Precondition::Any).await.expect("overwrite our own");
    let t = raw
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id("/airflow/variables/tagged")
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = t.tag_list().iter().map(|t| (t.key(), t.value())).collect();
    assert!(tags.contains(&("managed-by", "airflow-secrets-sync")), "{tags:?}");
    assert!(tags.contains(&("airflow-id", "tagged")), "{tags:?}");
    let p = raw.get_parameter().name("/airflow/variables/tagged").send().await.unwrap();
    assert_eq!(p.parameter().unwrap().r#type(), Some(&aws_sdk_ssm::types::ParameterType::SecureString));

    raw.put_parameter()
        .name("/airflow/variables/foreign")
        .value("theirs")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(inv.get(&ItemId::variable("foreign")).unwrap().meta.ownership, Ownership::Foreign);
    assert_eq!(inv.get(&ItemId::variable("tagged")).unwrap().meta.ownership, Ownership::Ours);
    let err = store.write(&Entry::variable("foreign", "ours"), &Precondition::Any).await.unwrap_err();
    assert_eq!(item_kind(&err), ItemErrorKind::NotOwned);
    let err = store.delete(&ItemId::variable("foreign")).await.unwrap_err();
    assert_eq!(item_kind(&err), ItemErrorKind::NotOwned);
    let adopting = ssm_store(&moto.endpoint(), json!({"adopt": true})).await;
    adopting.write(&Entry::variable("foreign", "ours"), &Precondition::Any).await.unwrap();
    let inv = store.read(&[ItemId::variable("foreign")]).await.unwrap();
    assert_eq!(inv.get(&ItemId::variable("foreign")).unwrap().meta.ownership, Ownership::Ours);
}

// ---------------------------------------------------------------- limits, before any request

/// A store pointed at a port nobody listens on: any request would be Unreachable, so a per-item
/// error proves the refusal happened before the wire.
#[tokio::test]
async fn limits_are_refused_per_item_before_any_request() {
    let dead = format!("http://127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let canary = "canary-7f3a";
    let a = sm_store(&dead, json!({"connections_lookup_pattern": "^smtp"})).await;
    let b = ssm_store(&dead, json!({"connections_lookup_pattern": "^smtp"})).await;
    let b_adv = ssm_store(&dead, json!({"allow_advanced_tier": true})).await;
    let big = |n: usize| Entry::variable("big", format!("{canary}{}", "x".repeat(n - canary.len())));
    let cases: Vec<(&dyn Store, Entry, ItemErrorKind)> = vec![
        (&a, Entry::variable("empty", ""), ItemErrorKind::NotRepresentable),
        (&a, big(65_537), ItemErrorKind::TooLarge),
        (&a, Entry::variable("x:y", "v"), ItemErrorKind::InvalidName),
        (&a, Entry::variable("db-abcdef", "v"), ItemErrorKind::InvalidName),
        (&a, Entry::connection("not_smtp", Connection::default()), ItemErrorKind::Unreachable),
        (&b, Entry::variable("empty", ""), ItemErrorKind::NotRepresentable),
        (&b, big(4097), ItemErrorKind::TooLarge),
        (&b_adv, big(8193), ItemErrorKind::TooLarge),
        (&b, Entry::variable("caf\u{e9}", "v"), ItemErrorKind::InvalidName),
        (&b, Entry::connection("not_smtp", Connection::default()), ItemErrorKind::Unreachable),
    ];
    for (store, entry, want) in cases {
        let err = store.write(&entry, &Precondition::Any).await.expect_err("must be refused");
        assert_eq!(item_kind(&err), want, "{store} {}: {err}", entry.id);
        assert!(!err.to_string().contains(canary) && !format!("{err:?}").contains(canary), "value leaked: {err}");
    }
    // And a real request to the dead endpoint is classified as unreachable, not as an item error.
    let err = a.write(&Entry::variable("fine", "v"), &Precondition::Any).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn ssm_standard_and_advanced_tiers() {
    let moto = MotoServer::start();
    let standard = ssm_store(&moto.endpoint(), json!({})).await;
    let advanced = ssm_store(&moto.endpoint(), json!({"allow_advanced_tier": true})).await;
    assert_eq!(standard.capabilities().max_value_bytes, Some(4096));
    assert_eq!(advanced.capabilities().max_value_bytes, Some(8192));
    let at_4k = "s".repeat(4096);
    standard.write(&Entry::variable("std", at_4k.as_str()), &Precondition::Any).await.unwrap();
    let over = "a".repeat(4097);
    assert_eq!(
        item_kind(&standard.write(&Entry::variable("adv", over.as_str()), &Precondition::Any).await.unwrap_err()),
        ItemErrorKind::TooLarge
    );
    let at_8k = "a".repeat(8192);
    advanced.write(&Entry::variable("adv", at_8k.as_str()), &Precondition::Any).await.unwrap();
    let inv = advanced.read(&[ItemId::variable("adv"), ItemId::variable("std")]).await.unwrap();
    assert_eq!(inv.get(&ItemId::variable("adv")).unwrap().as_variable().unwrap().value.expose_plaintext(), at_8k);
    assert_eq!(inv.get(&ItemId::variable("std")).unwrap().as_variable().unwrap().value.expose_plaintext(), at_4k);
    let raw = raw_ssm(&moto.endpoint()).await;
    let d = raw
        .describe_parameters()
        .parameter_filters(
            aws_sdk_ssm::types::ParameterStringFilter::builder()
                .key("Name")
                .option("Equals")
                .values("/airflow/variables/adv")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tier = d.parameters()[0].tier().cloned();
    assert_ne!(tier, Some(aws_sdk_ssm::types::ParameterTier::Standard), "an 8 KB value needs the advanced tier");
}

// ---------------------------------------------------------------- deletion

#[tokio::test]
async fn secrets_manager_deletes_with_a_recovery_window_and_pending_names_block_writes() {
    let moto = MotoServer::start();
    let raw = raw_sm(&moto.endpoint()).await;
    let store = sm_store(&moto.endpoint(), json!({})).await;
    let id = ItemId::variable("doomed");
    store.write(&Entry::variable("doomed", "one"), &Precondition::Any).await.unwrap();
    store.delete(&id).await.unwrap();
    let d = raw.describe_secret().secret_id("airflow/variables/doomed").send().await.expect("still recoverable");
    assert!(d.deleted_date().is_some(), "scheduled for deletion, not force-deleted");
    assert!(store.read(std::slice::from_ref(&id)).await.unwrap().get(&id).is_none(), "pending deletion reads as absent");
    assert!(store.scan(Kind::Variable).await.unwrap().get(&id).is_none());
    store.delete(&id).await.expect("deleting a pending secret again is a no-op");

    // Both as a forced write and as a plan's create (the plan read the name as absent): blocked,
    // with the way out, not a conflict a re-plan would meet again.
    for pre in [Precondition::Any, Precondition::Absent] {
        let err = store.write(&Entry::variable("doomed", "two"), &pre).await.unwrap_err();
        assert_eq!(item_kind(&err), ItemErrorKind::Blocked, "{pre:?}: {err}");
        assert!(err.to_string().contains("scheduled for deletion"), "{err}");
        assert!(err.to_string().contains("restore_pending_deletion"), "{err}");
    }

    let restoring = sm_store(&moto.endpoint(), json!({})).await;
    let mut cfg = restoring.config().clone();
    cfg.restore_pending_deletion = true;
    let restoring = AwsSecretsManagerStore::new(cfg).await.unwrap();
    restoring.write(&Entry::variable("doomed", "two"), &Precondition::Absent).await.unwrap();
    let d = raw.describe_secret().secret_id("airflow/variables/doomed").send().await.unwrap();
    assert!(d.deleted_date().is_none(), "restored");
    let inv = store.read(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(inv.get(&id).unwrap().as_variable().unwrap().value.expose_plaintext(), "two");
}

// ---------------------------------------------------------------- credentials

/// `role_arn` assumes the role through STS (moto's, via `sts_endpoint_url`) with the configured
/// static keys, and the store then works with the role's credentials.
#[tokio::test]
async fn role_arn_assumes_the_role_through_sts() {
    let moto = MotoServer::start();
    let store = sm_store(
        &moto.endpoint(),
        json!({"role_arn": "arn:aws:iam::123456789012:role/airflow-sync", "sts_endpoint_url": moto.endpoint()}),
    )
    .await;
    store.write(&Entry::variable("via_role", "v"), &Precondition::Any).await.expect("write with the assumed role");
    let inv = store.read(&[ItemId::variable("via_role")]).await.unwrap();
    assert!(inv.get(&ItemId::variable("via_role")).is_some());
}

// ---------------------------------------------------------------- config

#[test]
fn toml_config_keys_and_kwargs_mapping() {
    let c: AwsSecretsManagerConfig = toml::from_str(
        r#"
        connections_prefix = "airflow/connections"
        variables_prefix = false
        sep = "/"
        connections_lookup_pattern = "^prod_"
        connection_format = "uri"
        kms_key_id = "alias/airflow"
        adopt = false
        recovery_window_days = 14
        restore_pending_deletion = true
        region_name = "eu-west-1"
        profile_name = "ops"
        role_arn = "arn:aws:iam::123456789012:role/airflow-sync"
        endpoint_url = "https://vpce.example"
        max_attempts = 8
        max_concurrency = 4
        "#,
    )
    .unwrap();
    assert_eq!(c.variables_prefix, None);
    assert_eq!(c.aws.max_concurrency, 4);
    let s: AwsSsmConfig = toml::from_str("variables_prefix = false\nallow_advanced_tier = true\nregion_name = \"eu-west-1\"").unwrap();
    assert!(s.allow_advanced_tier && s.variables_prefix.is_none());
    assert!(toml::from_str::<AwsSsmConfig>("sep = \"/\"").is_err(), "SSM has no sep");
    let kw: Map<String, Json> =
        serde_json::from_str(r#"{"connections_prefix": null, "region_name": "eu-west-1", "full_url_mode": false}"#).unwrap();
    let c = AwsSecretsManagerConfig::from_airflow_kwargs(&kw).unwrap();
    assert_eq!(c.connections_prefix, None);
    assert!(AwsSecretsManagerConfig::from_airflow_kwargs(&serde_json::from_str(r#"{"bogus": 1}"#).unwrap()).is_err());
}
