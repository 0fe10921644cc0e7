//! The metastore as a target (incident recovery): rows written exactly as Airflow writes them,
//! all in one transaction, with Airflow's conflict policies; and the proof by round trip: the
//! Airflow-made metastores → a backend → an empty metastore of the same Airflow version, on
//! SQLite, PostgreSQL and MariaDB.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airflow_secrets_sync::app;
use airflow_secrets_sync::apply::ApplyOptions;
use airflow_secrets_sync::cli::MigrateArgs;
use airflow_secrets_sync::config::ApplyConfig;
use airflow_secrets_sync::error::Exit;
use airflow_secrets_sync::model::{Entry, ItemErrorKind, ItemId, Kind, Value};
use airflow_secrets_sync::plan::{self, Action, Policy, Selection};
use airflow_secrets_sync::store::local_files::{LocalFilesConfig, LocalFilesStore};
use airflow_secrets_sync::store::metastore::{MetastoreConfig, MetastoreStore, OnConflict};
use airflow_secrets_sync::store::{DynStore, Precondition, Store, StoreError, scan_all};

const DBS: [(&str, &str); 2] = [("airflow-3.3.2.db", "3x"), ("airflow-2.10.5.db", "2x")];
/// A key the restored metastore is encrypted with (not the source's NEW or OLD).
const RESTORE_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn testdata(name: &str) -> PathBuf {
    support::testdata_dir().join("metastore").join(name)
}

fn manifest_key(db: &str) -> String {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata(&format!("{db}.MANIFEST.json"))).unwrap()).unwrap();
    m["fernet_key"].as_str().unwrap().to_string()
}

fn ddl(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/airflow_schema").join(name)).unwrap()
}

async fn open(url: &str, key: &str, on_conflict: OnConflict) -> MetastoreStore {
    let cfg = MetastoreConfig {
        sql_alchemy_conn: Some(url.to_string()),
        fernet_key: Some(key.into()),
        on_conflict,
        ..Default::default()
    };
    MetastoreStore::open_with_env(&cfg, &|_| None).await.unwrap_or_else(|e| panic!("open {url}: {e}"))
}

/// An empty SQLite metastore of the same Airflow version: the Airflow-made file with its rows gone.
async fn empty_sqlite(dir: &Path, db: &str) -> String {
    let path = dir.join(format!("empty-{db}"));
    std::fs::copy(testdata(db), &path).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("DELETE FROM variable").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM connection").execute(&pool).await.unwrap();
    pool.close().await;
    format!("sqlite:///{}", path.display())
}

async fn source(dir: &Path, db: &str) -> DynStore {
    let path = dir.join(db);
    std::fs::copy(testdata(db), &path).unwrap();
    Arc::new(open(&format!("sqlite:///{}", path.display()), &manifest_key(db), OnConflict::Fail).await)
}

fn apply_args() -> MigrateArgs {
    MigrateArgs {
        plan: false,
        apply: true,
        json: true,
        show_unchanged: false,
        only: None,
        include: vec![],
        exclude: vec![],
        prune: false,
        adopt: false,
        max_deletes: None,
        skip_errored: true,
        detailed_exitcode: false,
        ..Default::default()
    }
}

async fn migrate(source: DynStore, target: DynStore) {
    let mut out = Vec::new();
    let policy = Policy::new(Selection::all(), &ApplyConfig::default());
    let r = app::migrate_between(source, target, &policy, &ApplyOptions::default(), &apply_args(), &mut out).await;
    match r {
        Ok(exit) => assert!(matches!(exit, Exit::Ok | Exit::InvalidItem), "{exit:?}: {}", String::from_utf8_lossy(&out)),
        Err(e) => panic!("{e:#}\n{}", String::from_utf8_lossy(&out)),
    }
}

#[tokio::test]
async fn round_trip_through_a_backend_into_empty_metastores() {
    for (db, shape) in DBS {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), db).await;
        let files: DynStore = Arc::new(
            LocalFilesStore::new(&LocalFilesConfig {
                variables_file_path: Some(dir.path().join("variables.json")),
                connections_file_path: Some(dir.path().join("connections.json")),
                ..Default::default()
            })
            .unwrap(),
        );
        migrate(src.clone(), files.clone()).await;

        let pg = support::fresh_postgres().await;
        support::pg_exec_script(&pg.url, &ddl(&format!("postgres_{shape}.sql"))).await;
        let my = support::fresh_mysql().await;
        support::mysql_exec_script(&my.url, &ddl(&format!("mysql_{shape}.sql"))).await;
        for url in [empty_sqlite(dir.path(), db).await, pg.sqlalchemy_url(), my.sqlalchemy_url()] {
            let restored: DynStore = Arc::new(open(&url, RESTORE_KEY, OnConflict::Fail).await);
            migrate(files.clone(), restored.clone()).await;
            assert_same_items(src.as_ref(), restored.as_ref(), false).await;
            assert_airflow_flags(&url).await;
        }
    }
}

/// Metastore → metastore directly keeps what files cannot (variable descriptions).
#[tokio::test]
async fn metastore_to_metastore_keeps_descriptions() {
    for (db, _) in DBS {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), db).await;
        let url = empty_sqlite(dir.path(), db).await;
        let restored: DynStore = Arc::new(open(&url, RESTORE_KEY, OnConflict::Fail).await);
        migrate(src.clone(), restored.clone()).await;
        assert_same_items(src.as_ref(), restored.as_ref(), true).await;
        assert_airflow_flags(&url).await;
    }
}

async fn assert_same_items(src: &dyn Store, restored: &dyn Store, with_descriptions: bool) {
    let a = scan_all(src, &Kind::ALL).await.unwrap();
    let b = scan_all(restored, &Kind::ALL).await.unwrap();
    assert_eq!(b.error_count(), 0, "{restored}: restored rows do not decrypt with the new key");
    assert_eq!(a.len(), b.len(), "{restored}: item count");
    for e in a.entries() {
        let got = b.get(&e.id).unwrap_or_else(|| panic!("{restored}: {} missing", e.id));
        let same = match (&e.value, &got.value) {
            (Value::Variable(x), Value::Variable(y)) => {
                x.value == y.value && (!with_descriptions || x.description == y.description)
            }
            (x, y) => plan::same_value(x, y),
        };
        assert!(same, "{restored}: {} differs after the round trip", e.id);
    }
}

/// The flags Airflow itself would have written (spec §1.3): every variable encrypted (even
/// empty); a password/extra encrypted iff present and non-empty, else NULL with the flag off.
async fn assert_airflow_flags(url: &str) {
    let sqlx_url = url
        .replacen("postgresql+psycopg2://", "postgres://", 1)
        .replacen("mysql+mysqldb://", "mysql://", 1)
        .replacen("sqlite:///", "sqlite://", 1);
    let (vars, conns): (Vec<(String, i64)>, Vec<(String, Option<String>, Option<String>, i64, i64)>);
    let vq = "SELECT val, CAST(is_encrypted AS INTEGER) FROM variable";
    let cq = "SELECT conn_id, password, extra, CAST(is_encrypted AS INTEGER), CAST(is_extra_encrypted AS INTEGER) FROM connection";
    macro_rules! fetch {
        ($pool:ty, $vq:expr, $cq:expr) => {{
            let pool = <$pool>::connect(&sqlx_url).await.unwrap();
            let v = sqlx::query_as(sqlx::AssertSqlSafe($vq)).fetch_all(&pool).await.unwrap();
            let c = sqlx::query_as(sqlx::AssertSqlSafe($cq)).fetch_all(&pool).await.unwrap();
            pool.close().await;
            (v, c)
        }};
    }
    (vars, conns) = if sqlx_url.starts_with("postgres") {
        fetch!(sqlx::PgPool, vq.replace("AS INTEGER)", "AS INTEGER) AS BIGINT)").replace("CAST(", "CAST(CAST("), cq.replace("AS INTEGER)", "AS INTEGER) AS BIGINT)").replace("CAST(", "CAST(CAST("))
    } else if sqlx_url.starts_with("mysql") {
        fetch!(sqlx::MySqlPool, vq.replace("INTEGER", "SIGNED"), cq.replace("INTEGER", "SIGNED"))
    } else {
        fetch!(sqlx::SqlitePool, vq.to_string(), cq.to_string())
    };
    assert!(!vars.is_empty() && !conns.is_empty());
    for (val, enc) in vars {
        assert_eq!(enc, 1, "{url}: a variable stored unencrypted");
        assert!(val.starts_with("gAAAAA"), "{url}: a variable value is not a token");
    }
    for (id, pw, extra, pe, xe) in conns {
        assert_eq!(pe == 1, pw.is_some(), "{url}: {id}: password flag");
        assert_eq!(xe == 1, extra.is_some(), "{url}: {id}: extra flag");
        assert!(pw.is_none_or(|p| p.starts_with("gAAAAA")), "{url}: {id}: password not a token");
        assert!(extra.is_none_or(|x| x.starts_with("gAAAAA")), "{url}: {id}: extra not a token");
    }
}

#[tokio::test]
async fn conflict_policies_and_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let url = empty_sqlite(dir.path(), "airflow-3.3.2.db").await;
    let store = open(&url, RESTORE_KEY, OnConflict::Overwrite).await;
    store.write(&Entry::variable("existing", "old"), &Precondition::Any).await.unwrap();
    store.flush().await.unwrap();

    // fail (the default): the plan reports the existing row; a forced write fails the whole
    // transaction, so the new row is not written either.
    let failing = open(&url, RESTORE_KEY, OnConflict::Fail).await;
    let src = airflow_secrets_sync::store::memory::MemoryStore::new("src");
    src.write(&Entry::variable("existing", "new"), &Precondition::Any).await.unwrap();
    src.write(&Entry::variable("fresh", "v"), &Precondition::Any).await.unwrap();
    let policy = Policy::new(Selection::all(), &ApplyConfig::default());
    let (s, t) = (scan_all(&src, &Kind::ALL).await.unwrap(), scan_all(&failing, &Kind::ALL).await.unwrap());
    let p = plan::diff(&src, &s, &failing, &t, &policy);
    let existing = p.changes.iter().find(|c| c.id == ItemId::variable("existing")).unwrap();
    assert_eq!(existing.error.as_ref().map(|e| e.kind), Some(ItemErrorKind::NotOwned));
    failing.write(&Entry::variable("fresh", "v"), &Precondition::Any).await.unwrap();
    failing.write(&Entry::variable("existing", "new"), &Precondition::Any).await.unwrap();
    let err = failing.flush().await.unwrap_err();
    assert!(matches!(&err, StoreError::Item { error, .. } if error.kind == ItemErrorKind::Blocked), "{err}");
    assert!(err.to_string().contains("existing") && !err.to_string().contains("new"), "{err}");
    let now = scan_all(&failing, &Kind::ALL).await.unwrap();
    assert!(now.get(&ItemId::variable("fresh")).is_none(), "a failed flush must write nothing");

    // skip: existing rows are kept (in the plan and in the store).
    let skipping = open(&url, RESTORE_KEY, OnConflict::Skip).await;
    let t = scan_all(&skipping, &Kind::ALL).await.unwrap();
    let p = plan::diff(&src, &s, &skipping, &t, &policy);
    assert_eq!(p.changes.iter().find(|c| c.id == ItemId::variable("existing")).unwrap().action, Action::Kept);
    assert_eq!(p.changes.iter().find(|c| c.id == ItemId::variable("fresh")).unwrap().action, Action::Create);

    // overwrite: replaced.
    let p = plan::diff(&src, &s, &store, &scan_all(&store, &Kind::ALL).await.unwrap(), &policy);
    assert_eq!(p.changes.iter().find(|c| c.id == ItemId::variable("existing")).unwrap().action, Action::Update);
}

/// `rotate-fernet-key` on the Airflow-made metastores: afterwards the NEW key alone reads every
/// item (the OLD-key rows included), every token keeps its timestamp, plaintext rows are untouched.
#[tokio::test]
async fn rotate_fernet_key_like_airflow() {
    use base64::Engine;
    for (db, _) in DBS {
        let dir = tempfile::tempdir().unwrap();
        let url = {
            let u = empty_sqlite(dir.path(), db).await; // writable copy, rows deleted…
            let path = u.trim_start_matches("sqlite:///").to_string();
            std::fs::remove_file(&path).unwrap(); // …so re-copy the full file with its rows
            std::fs::copy(testdata(db), &path).unwrap();
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&path, perms).unwrap();
            u
        };
        let key = manifest_key(db);
        let new_only = key.split(',').next().unwrap().to_string();
        let before = raw_tokens(&url).await;
        let with_new = open(&url, &new_only, OnConflict::Fail).await;
        assert!(scan_all(&with_new, &Kind::ALL).await.unwrap().error_count() > 0, "OLD-key rows exist before");

        let store = open(&url, &key, OnConflict::Fail).await;
        let all = scan_all(&store, &Kind::ALL).await.unwrap();
        let dry = store.rotate_fernet_key(true).await.unwrap();
        assert!(dry.variables > 0 && dry.connections > 0);
        assert_eq!(raw_tokens(&url).await, before, "--dry-run wrote");
        let done = store.rotate_fernet_key(false).await.unwrap();
        assert_eq!(done, dry);

        let after = raw_tokens(&url).await;
        let b64 = base64::engine::general_purpose::URL_SAFE;
        for ((id, old), (_, new)) in before.iter().zip(after.iter()) {
            if old.starts_with("gAAAAA") {
                assert_ne!(old, new, "{db}: {id} was not re-encrypted");
                let (o, n) = (b64.decode(old).unwrap(), b64.decode(new).unwrap());
                assert_eq!(o[..9], n[..9], "{db}: {id}: the token's timestamp changed");
            } else {
                assert_eq!(old, new, "{db}: plaintext {id} was touched");
            }
        }
        let rotated = scan_all(&open(&url, &new_only, OnConflict::Fail).await, &Kind::ALL).await.unwrap();
        assert_eq!(rotated.error_count(), 0, "{db}: the NEW key alone must read everything after rotation");
        for e in all.entries() {
            assert!(plan::same_value(&e.value, &rotated.get(&e.id).unwrap().value), "{db}: {} changed", e.id);
        }
    }
}

/// (row label, raw stored value) of every encrypted-capable cell, in a stable order.
async fn raw_tokens(url: &str) -> Vec<(String, String)> {
    let pool = sqlx::SqlitePool::connect(&url.replacen("sqlite:///", "sqlite://", 1)).await.unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    let vars: Vec<(i64, Option<String>)> = sqlx::query_as("SELECT id, val FROM variable ORDER BY id").fetch_all(&pool).await.unwrap();
    out.extend(vars.into_iter().map(|(id, v)| (format!("variable row {id}"), v.unwrap_or_default())));
    let conns: Vec<(i64, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT id, password, extra FROM connection ORDER BY id").fetch_all(&pool).await.unwrap();
    for (id, p, x) in conns {
        out.push((format!("connection row {id} password"), p.unwrap_or_default()));
        out.push((format!("connection row {id} extra"), x.unwrap_or_default()));
    }
    pool.close().await;
    out
}

/// Issue 16 item 1, through the binary with Airflow's docker-compose environment
/// (`AIRFLOW__CORE__FERNET_KEY=''`): the key configured on the target wins (rows are tokens, the
/// canary is nowhere in the file), the plan header names each metastore side's key source, and a
/// target without a key is a configuration error (exit 3, nothing written) unless
/// `allow_plaintext = true`.
#[tokio::test]
async fn a_configured_target_key_wins_over_an_empty_env_key_and_plaintext_needs_opt_in() {
    const CANARY: &str = "restore-canary-pw-5f1c0d";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("variables.json"), format!(r#"{{"canary_var": "{CANARY}-var"}}"#)).unwrap();
    std::fs::write(d.join("connections.json"), format!(r#"{{"canary_conn": {{"conn_type": "postgres", "password": "{CANARY}"}}}}"#))
        .unwrap();
    let url = empty_sqlite(d, "airflow-3.3.2.db").await;
    let config = |target_extra: &str| {
        format!(
            "[source]\nkind = \"local_files\"\nvariables_file_path = {vars:?}\nconnections_file_path = {conns:?}\n\n\
             [target]\nkind = \"metastore\"\nsql_alchemy_conn = {url:?}\n{target_extra}\n\n\
             [state]\npath = {state:?}\nsnapshot_key = {RESTORE_KEY:?}\n",
            vars = d.join("variables.json").display().to_string(),
            conns = d.join("connections.json").display().to_string(),
            state = d.join("state.db").display().to_string(),
        )
    };
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_airflow-secrets-sync"))
            .args(args)
            .current_dir(d)
            .env("AIRFLOW__CORE__FERNET_KEY", "")
            .env_remove("AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(!text.contains(CANARY), "a value in the output:\n{text}");
        (o.status.code().unwrap_or(-1), text)
    };
    let raw = |url: String| async move {
        let pool = sqlx::SqlitePool::connect(&url.replacen("sqlite:///", "sqlite://", 1)).await.unwrap();
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT val, is_encrypted FROM variable UNION ALL SELECT password, is_encrypted FROM connection",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows
    };

    // No key on the target, env key empty: refused before anything is written, plan and apply.
    std::fs::write(d.join("config.toml"), config("")).unwrap();
    for args in [&["migrate", "--plan"][..], &["migrate", "--apply"]] {
        let (code, text) = run(args);
        assert_eq!(code, 3, "{args:?}: {text}");
        assert!(text.contains("allow_plaintext"), "{text}");
    }
    assert!(raw(url.clone()).await.is_empty(), "a refused run wrote rows");

    // The target's own key wins over the empty env key.
    std::fs::write(d.join("config.toml"), config(&format!("fernet_key = {RESTORE_KEY:?}"))).unwrap();
    let (code, text) = run(&["migrate", "--plan"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("Fernet key of the target: [core] fernet_key set on this store"), "{text}");
    let (code, text) = run(&["migrate", "--apply"]);
    assert_eq!(code, 0, "{text}");
    let rows = raw(url.clone()).await;
    assert_eq!(rows.len(), 2);
    for (v, enc) in &rows {
        assert!(*enc && v.starts_with("gAAAAA"), "a row was written without the target's key");
    }
    let bytes = std::fs::read(url.trim_start_matches("sqlite:///")).unwrap();
    assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "the canary is in the metastore file");
    let restored = open(&url, RESTORE_KEY, OnConflict::Fail).await;
    let inv = scan_all(&restored, &Kind::ALL).await.unwrap();
    let Some(Value::Variable(v)) = inv.get(&ItemId::variable("canary_var")).map(|e| &e.value) else { panic!("no variable") };
    assert_eq!(v.value.expose_plaintext(), format!("{CANARY}-var"));

    // Plaintext on purpose: allowed only with the opt-in, and the header says where the key is from.
    std::fs::create_dir(d.join("plain")).unwrap();
    let url2 = empty_sqlite(&d.join("plain"), "airflow-3.3.2.db").await;
    std::fs::write(d.join("config.toml"), config("allow_plaintext = true").replace(&url, &url2)).unwrap();
    let (code, text) = run(&["migrate", "--apply", "--no-snapshot"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Fernet key of the target: AIRFLOW__CORE__FERNET_KEY from the environment (empty"), "{text}");
    assert!(raw(url2).await.iter().all(|(_, enc)| !enc));
}

/// Issue 16 item 13: a value over the metastore's documented cap is an item error in the plan
/// (TooLarge, exit 10), before any write; the store refuses it too.
#[tokio::test]
async fn values_over_the_metastore_cap_are_refused_in_the_plan() {
    use airflow_secrets_sync::store::metastore::MAX_VALUE_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let url = empty_sqlite(dir.path(), "airflow-3.3.2.db").await;
    let target = open(&url, RESTORE_KEY, OnConflict::Fail).await;
    assert_eq!(target.capabilities().max_value_bytes, Some(MAX_VALUE_BYTES));
    let src = airflow_secrets_sync::store::memory::MemoryStore::new("src");
    let huge = "x".repeat(MAX_VALUE_BYTES + 1);
    src.write(&Entry::variable("huge", huge.as_str()), &Precondition::Any).await.unwrap();
    src.write(&Entry::variable("small", "fits"), &Precondition::Any).await.unwrap();
    let policy = Policy::new(Selection::all(), &ApplyConfig::default());
    let (s, t) = (scan_all(&src, &Kind::ALL).await.unwrap(), scan_all(&target, &Kind::ALL).await.unwrap());
    let p = plan::diff(&src, &s, &target, &t, &policy);
    let c = p.changes.iter().find(|c| c.id == ItemId::variable("huge")).unwrap();
    assert_eq!(c.action, Action::Error);
    assert_eq!(c.error.as_ref().map(|e| e.kind), Some(ItemErrorKind::TooLarge));
    assert_eq!(p.error_exit(), Some(Exit::InvalidItem));
    let err = target.write(&Entry::variable("huge", huge.as_str()), &Precondition::Any).await.unwrap_err();
    assert!(matches!(&err, StoreError::Item { error, .. } if error.kind == ItemErrorKind::TooLarge), "{err}");
    assert!(!err.to_string().contains("xxxx"), "{err}");
}
