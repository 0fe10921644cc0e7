//! The reader model (issue: fidelity by construction): the plan predicts what every configured
//! Airflow reader reads from the bytes a store would write, refuses what a store or a reader would
//! refuse before any write, agrees with `verify` after the apply, and converges.

use std::collections::BTreeSet;
use std::sync::Arc;

use airflow_secrets_sync::airflow::connection::Reader;
use airflow_secrets_sync::airflow::fidelity::{Fidelity, LegacyExtra, Readers};
use airflow_secrets_sync::apply::{self, ApplyOptions, NoJournal};
use airflow_secrets_sync::config::{ApplyConfig, SelectConfig};
use airflow_secrets_sync::insight::verify;
use airflow_secrets_sync::model::{Connection, Entry, ItemErrorKind, ItemId, Kind, SecretValue};
use airflow_secrets_sync::plan::{self, Action, Plan, Policy, Selection};
use airflow_secrets_sync::store::env::{EnvConnectionFormat, EnvStore};
use airflow_secrets_sync::store::local_files::{LocalFilesConfig, LocalFilesStore};
use airflow_secrets_sync::store::memory::MemoryStore;
use airflow_secrets_sync::store::{DynStore, Precondition, Store, scan_all};

fn policy(fidelity: Fidelity) -> Policy {
    Policy::new(Selection::all(), &ApplyConfig::default()).with_fidelity(fidelity)
}

fn conn(conn_type: &str, port: Option<u16>, extra: Option<&str>) -> Connection {
    Connection {
        conn_type: Some(conn_type.into()),
        host: Some("db.internal".into()),
        login: Some("etl".into()),
        password: Some(SecretValue::from("canary-fid-pw-5511")),
        port,
        extra: extra.map(SecretValue::from),
        ..Default::default()
    }
}

async fn source(entries: &[Entry]) -> MemoryStore {
    let s = MemoryStore::new("src");
    for e in entries {
        s.write(e, &Precondition::Any).await.unwrap();
    }
    s
}

async fn make_plan(source: &dyn Store, target: &dyn Store, policy: &Policy) -> Plan {
    let s = scan_all(source, &Kind::ALL).await.unwrap();
    let t = scan_all(target, &Kind::ALL).await.unwrap();
    plan::diff(source, &s, target, &t, policy)
}

fn change<'a>(p: &'a Plan, id: &str) -> &'a plan::Change {
    p.changes.iter().find(|c| c.id.id == id).unwrap_or_else(|| panic!("{id} not in the plan"))
}

/// (item, field, reader) of every loss the plan names.
fn loss_set(p: &Plan) -> BTreeSet<(String, &'static str, &'static str)> {
    p.changes
        .iter()
        .flat_map(|c| c.losses.iter().flat_map(move |l| l.readers.iter().map(move |r| (c.id.id.clone(), l.field, *r))))
        .collect()
}

/// (item, field, reader) of every difference `verify` found.
fn finding_set(v: &verify::VerifyReport) -> BTreeSet<(String, &'static str, &'static str)> {
    v.findings
        .iter()
        .filter(|f| f.kind == verify::FindingKind::DiffersFromSource)
        .flat_map(|f| f.fields.iter().flat_map(move |fl| f.readers.iter().map(move |r| (f.id.id.clone(), *fl, *r))))
        .collect()
}

fn env_json(dir: &std::path::Path) -> DynStore {
    Arc::new(EnvStore::file(dir.join("airflow.env"), EnvConnectionFormat::Json))
}

fn local_json(dir: &std::path::Path, reader: Reader) -> DynStore {
    let cfg = LocalFilesConfig {
        variables_file_path: Some(dir.join("variables.json")),
        connections_file_path: Some(dir.join("connections.json")),
        ..Default::default()
    };
    Arc::new(LocalFilesStore::new(&cfg).unwrap().with_reader(reader))
}

fn local_json_with(dir: &std::path::Path, readers: &Readers) -> DynStore {
    local_json(dir, readers.primary())
}

#[tokio::test]
async fn port_zero_and_normalised_conn_types_are_losses_of_json_targets() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(&[
        Entry::connection("zero_port", conn("postgres", Some(0), None)),
        Entry::connection("gcp", conn("google-cloud-platform", Some(443), None)),
        Entry::connection("pg", conn("postgresql", Some(5432), None)),
        Entry::connection("plain", conn("postgres", Some(5432), Some(r#"{"sslmode": "require"}"#))),
    ])
    .await;
    let target = env_json(dir.path());
    let p = make_plan(&src, target.as_ref(), &policy(Fidelity::default())).await;
    assert_eq!(p.readers, ["airflow2", "airflow3", "task-sdk"]);
    let zero = change(&p, "zero_port");
    assert_eq!(zero.action, Action::Create);
    let port = zero.losses.iter().find(|l| l.field == "port").expect("port 0 is a loss");
    assert_eq!(port.readers, ["airflow2", "airflow3", "task-sdk"]);
    assert!(port.what.contains("port 0"), "{}", port.what);
    assert!(change(&p, "gcp").losses.iter().any(|l| l.field == "conn_type"));
    assert!(change(&p, "pg").losses.iter().any(|l| l.field == "conn_type" && l.what.contains("postgres")));
    assert!(change(&p, "plain").losses.is_empty(), "{:?}", change(&p, "plain").losses);

    // The same items in Airflow's local json files: `Connection(**dict)` keeps both.
    let files = local_json(dir.path(), Reader::Orm3);
    let p = make_plan(&src, files.as_ref(), &policy(Fidelity::default())).await;
    for id in ["zero_port", "gcp", "pg"] {
        assert!(change(&p, id).losses.is_empty(), "{id}: {:?}", change(&p, id).losses);
    }
    let json = airflow_secrets_sync::render::json(&p);
    assert!(!json.contains("canary-fid-pw-5511"));
}

#[tokio::test]
async fn legacy_extras_are_refused_wrapped_or_kept_for_airflow_2_only() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = ["this is not json", "[1, 2, 3]", "42"];
    let mut entries: Vec<Entry> =
        legacy.iter().enumerate().map(|(i, x)| Entry::connection(format!("legacy_{i}"), conn("http", None, Some(x)))).collect();
    entries.push(Entry::connection("good", conn("http", None, Some(r#"{"a": "b"}"#))));
    let src = source(&entries).await;

    // Default: every reader; Airflow 3 refuses them, so they are errors before any write.
    let target = local_json(dir.path(), Reader::Orm3);
    let p = make_plan(&src, target.as_ref(), &policy(Fidelity::default())).await;
    for i in 0..legacy.len() {
        let c = change(&p, &format!("legacy_{i}"));
        assert_eq!(c.action, Action::Error);
        let e = c.error.as_ref().unwrap();
        assert_eq!(e.kind, ItemErrorKind::NotRepresentable);
        assert!(e.detail.contains("Airflow 3 scheduler") && e.detail.contains("legacy_extra"), "{}", e.detail);
        assert!(!e.detail.contains("this is not json"), "the error must not echo the extra: {}", e.detail);
    }
    assert_eq!(p.error_exit(), Some(airflow_secrets_sync::error::Exit::InvalidItem));
    // --skip-errored: the rest lands, and the file stays readable by Airflow 3 (no whole-file reject).
    let report = apply::execute(&p, target.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
    assert_eq!((report.created, report.failures.len()), (1, 0));
    let back = scan_all(target.as_ref(), &[Kind::Connection]).await.unwrap();
    assert_eq!(back.error_count(), 0);
    let again = make_plan(&src, target.as_ref(), &policy(Fidelity::default())).await;
    assert!(!again.has_changes(), "after the apply nothing is pending: {:?}", again.summary);
    assert_eq!(again.summary.errors, legacy.len(), "the refused items stay errors, with the same message");
    assert_eq!(change(&again, "legacy_0").error.as_ref().unwrap().detail, change(&p, "legacy_0").error.as_ref().unwrap().detail);

    // legacy_extra = "wrap": the text moves under a key, reported as a loss of every reader.
    let wrap = Fidelity { legacy_extra: LegacyExtra::Wrap("legacy_extra".into()), ..Fidelity::default() };
    let p = make_plan(&src, target.as_ref(), &policy(wrap.clone())).await;
    let c = change(&p, "legacy_0");
    assert_eq!(c.action, Action::Create);
    assert!(c.losses.iter().any(|l| l.field == "extra" && l.what.contains("legacy_extra") && l.readers.is_empty()));
    apply::execute(&p, target.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
    let back = scan_all(target.as_ref(), &[Kind::Connection]).await.unwrap();
    assert_eq!(back.error_count(), 0);
    let got = back.get(&ItemId::connection("legacy_0")).unwrap().as_connection().unwrap().extra.clone().unwrap();
    let got: serde_json::Value = serde_json::from_str(got.expose_plaintext()).unwrap();
    assert_eq!(got, serde_json::json!({"legacy_extra": "this is not json"}));
    assert!(!make_plan(&src, target.as_ref(), &policy(wrap)).await.has_changes());

    // airflow_readers = ["2"]: Airflow 2.10 reads the text as it is: written, no loss.
    let dir2 = tempfile::tempdir().unwrap();
    let only2 = Fidelity { readers: Readers::parse(&["2"]).unwrap(), ..Fidelity::default() };
    let target2 = local_json_with(dir2.path(), &only2.readers);
    let p = make_plan(&src, target2.as_ref(), &policy(only2.clone())).await;
    assert_eq!(p.readers, ["airflow2"]);
    assert_eq!(change(&p, "legacy_1").action, Action::Create);
    assert!(change(&p, "legacy_1").losses.is_empty());
    apply::execute(&p, target2.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
    assert!(!make_plan(&src, target2.as_ref(), &policy(only2)).await.has_changes());
}

#[tokio::test]
async fn env_file_quoting_refusals_show_in_the_plan_and_never_come_back_as_updates() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(&[
        Entry::variable("both_quotes", "it's a `backtick`"),
        Entry::variable("trailing_backslash", "ends with ` and \\"),
        Entry::variable("fine", "plain value"),
    ])
    .await;
    let target = env_json(dir.path());
    let p = make_plan(&src, target.as_ref(), &policy(Fidelity::default())).await;
    assert_eq!(change(&p, "both_quotes").action, Action::Error);
    assert_eq!(change(&p, "trailing_backslash").action, Action::Error);
    assert_eq!(change(&p, "fine").action, Action::Create);
    let report = apply::execute(&p, target.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
    assert!(report.failures.is_empty(), "nothing is discovered at write time: {:?}", report.failures.len());
    assert_eq!(report.created, 1);
    let again = make_plan(&src, target.as_ref(), &policy(Fidelity::default())).await;
    assert!(!again.has_changes());
    assert_eq!(again.summary.errors, 2);
}

/// The plan's losses are exactly what `verify` finds after the apply, per item, field and reader.
#[tokio::test]
async fn plan_losses_equal_what_verify_finds_after_apply() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = vec![
        Entry::connection("zero_port", conn("postgres", Some(0), None)),
        Entry::connection("gcp", conn("google-cloud-platform", None, None)),
        Entry::connection("mixed", conn("MyType", Some(65535), Some(r#"{"n": "5432", "flag": "true"}"#))),
        Entry::connection("plain", conn("postgres", Some(1), None)),
        Entry::variable("v", "  padded  "),
    ];
    let mut described = conn("http", Some(80), None);
    described.description = Some("a description".into());
    entries.push(Entry::connection("described", described));
    let src = source(&entries).await;
    let src_inv = scan_all(&src, &Kind::ALL).await.unwrap();

    let cases: Vec<(&str, Box<dyn Fn(Reader) -> DynStore>)> = vec![
        ("env json", Box::new(|r| Arc::new(EnvStore::file(dir.path().join("a.env"), EnvConnectionFormat::Json).with_reader(r)))),
        ("env uri", Box::new(|r| Arc::new(EnvStore::file(dir.path().join("b.env"), EnvConnectionFormat::Uri).with_reader(r)))),
        ("local json", Box::new(|r| local_json(dir.path(), r))),
    ];
    for (name, open) in cases {
        let target = open(Reader::Orm3);
        let p = make_plan(&src, target.as_ref(), &policy(Fidelity::default())).await;
        let predicted = loss_set(&p);
        let report = apply::execute(&p, target.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
        assert!(report.failures.is_empty() && report.verify_mismatches.is_empty(), "{name}");
        let targets: Vec<(Reader, DynStore)> = Reader::ALL.iter().map(|r| (*r, open(*r))).collect();
        let selection = Selection::from_config(&SelectConfig::default()).unwrap();
        let errored: BTreeSet<String> = p.errored().map(|c| c.id.id.clone()).collect();
        let mut src_written = src_inv.clone();
        src_written.retain(|id| !errored.contains(&id.id));
        let v = verify::verify(&targets, Some(&src_written), &selection).await.unwrap();
        let found = finding_set(&v);
        assert_eq!(predicted, found, "{name}: plan losses vs verify findings\n{}", v.table());
        assert!(v.is_ok(), "{name}: every difference is a known loss\n{}", v.table());
        assert!(!predicted.is_empty() || name == "local json", "{name}: the case has losses to compare");
    }
}

/// `--from-airflow-env` sets `airflow_readers = ["auto"]`: a metastore made by Airflow 2.10.5 is
/// planned for the Airflow 2 reader only, one made by 3.3.2 for Airflow 3's, and the plan says so.
#[test]
fn from_airflow_env_predicts_for_the_readers_of_the_metastores_airflow() {
    for (db, want) in [("airflow-2.10.5.db", vec!["airflow2"]), ("airflow-3.3.2.db", vec!["airflow3", "task-sdk"])] {
        let dir = tempfile::tempdir().unwrap();
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metastore");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(data.join(format!("{db}.MANIFEST.json"))).unwrap()).unwrap();
        std::fs::copy(data.join(db), dir.path().join(db)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_airflow-secrets-sync"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AIRFLOW_HOME", dir.path())
            .env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", format!("sqlite:///{}", dir.path().join(db).display()))
            .env("AIRFLOW__CORE__FERNET_KEY", manifest["fernet_key"].as_str().unwrap())
            .env("AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend")
            .env(
                "AIRFLOW__SECRETS__BACKEND_KWARGS",
                format!(r#"{{"connections_file_path": "{}"}}"#, dir.path().join("c.json").display()),
            )
            .args(["--from-airflow-env", "migrate", "--plan", "--json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let plan: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{db}: {e}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(plan["readers"], serde_json::json!(want), "{db}");
    }
}

/// Airflow looks an env var up as `AIRFLOW_CONN_{ID.upper()}`; a scan cannot give the id's case
/// back, so the plan matches the target by that name: no perpetual create for `CONN_Mixed`.
#[tokio::test]
async fn mixed_case_ids_in_an_env_file_converge() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(&[
        Entry::connection("CONN_Mixed", conn("postgres", Some(5432), None)),
        Entry::variable("Var_Mixed", "v"),
    ])
    .await;
    let target = env_json(dir.path());
    let p = make_plan(&src, target.as_ref(), &policy(Fidelity::default())).await;
    assert_eq!(p.summary.create, 2);
    apply::execute(&p, target.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
    let again = make_plan(&src, target.as_ref(), &policy(Fidelity::default())).await;
    assert!(!again.has_changes(), "{:?}", again.summary);
    assert_eq!((again.summary.unchanged, again.summary.kept), (2, 0));
}

/// On the metastores real Airflow 3.3.2 and 2.10.5 made (tests/data), for every item: the plan's
/// losses, per field and reader, are exactly what `verify` finds after the apply.
#[tokio::test]
async fn on_airflow_made_metastores_plan_losses_equal_verify_findings() {
    use airflow_secrets_sync::config::StoreSpec;
    use airflow_secrets_sync::store::registry;
    for db in ["airflow-3.3.2.db", "airflow-2.10.5.db"] {
        let dir = tempfile::tempdir().unwrap();
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metastore");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(data.join(format!("{db}.MANIFEST.json"))).unwrap()).unwrap();
        std::fs::copy(data.join(db), dir.path().join(db)).unwrap();
        let mut t = toml::Table::new();
        t.insert("kind".into(), "metastore".into());
        t.insert("sql_alchemy_conn".into(), format!("sqlite:///{}", dir.path().join(db).display()).into());
        t.insert("fernet_key".into(), manifest["fernet_key"].as_str().unwrap().into());
        let src = registry::open(&StoreSpec(t)).await.unwrap();
        let src_inv = scan_all(src.as_ref(), &Kind::ALL).await.unwrap();
        assert!(src_inv.len() > 20, "{db}: {} items", src_inv.len());

        let d = dir.path().to_path_buf();
        let cases: Vec<(&str, Box<dyn Fn(Reader) -> DynStore>)> = vec![
            ("env json", Box::new(move |r| Arc::new(EnvStore::file(d.join("a.env"), EnvConnectionFormat::Json).with_reader(r)))),
            ("local json", Box::new({
                let d = dir.path().to_path_buf();
                move |r| local_json(&d, r)
            })),
        ];
        for (name, open) in cases {
            let target = open(Reader::Orm3);
            let tgt_inv = scan_all(target.as_ref(), &Kind::ALL).await.unwrap();
            let p = plan::diff(src.as_ref(), &src_inv, target.as_ref(), &tgt_inv, &policy(Fidelity::default()));
            let predicted = loss_set(&p);
            let report = apply::execute(&p, target.clone(), &ApplyOptions::default(), Arc::new(NoJournal)).await;
            assert!(report.failures.is_empty() && report.verify_mismatches.is_empty(), "{db} {name}: apply failed");
            let targets: Vec<(Reader, DynStore)> = Reader::ALL.iter().map(|r| (*r, open(*r))).collect();
            let selection = Selection::from_config(&SelectConfig::default()).unwrap();
            let errored: BTreeSet<ItemId> = p.errored().map(|c| c.id.clone()).collect();
            let mut written = src_inv.clone();
            written.retain(|id| !errored.contains(id));
            let v = verify::verify(&targets, Some(&written), &selection).await.unwrap();
            let found = finding_set(&v);
            assert_eq!(predicted, found, "{db} {name}: plan losses vs verify findings\n{}", v.table());
            let again = plan::diff(
                src.as_ref(),
                &src_inv,
                target.as_ref(),
                &scan_all(target.as_ref(), &Kind::ALL).await.unwrap(),
                &policy(Fidelity::default()),
            );
            assert!(!again.has_changes(), "{db} {name}: pending after apply: {:?}", again.summary);
        }
    }
}

/// A value no environment can hold is refused by the plan (exit 10), not discovered by whoever
/// exports the file.
#[tokio::test]
async fn env_file_values_over_the_environment_limit_are_refused_in_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(airflow_secrets_sync::store::env::MAX_ENV_STRING_BYTES);
    let src = source(&[Entry::variable("big", big.as_str()), Entry::variable("small", "y")]).await;
    let target = env_json(dir.path());
    let p = make_plan(&src, target.as_ref(), &policy(Fidelity::default())).await;
    let c = change(&p, "big");
    assert_eq!(c.action, Action::Error);
    assert_eq!(c.error.as_ref().unwrap().kind, ItemErrorKind::TooLarge);
    assert_eq!(change(&p, "small").action, Action::Create);
}
