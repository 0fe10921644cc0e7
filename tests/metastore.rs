//! The metastore store against real Airflow-made databases: the SQLite files from
//! `tests/data/metastore/` (Airflow 3.3.2 and 2.10.5), and the same rows copied into real
//! PostgreSQL and MariaDB tables shaped like Airflow's (spec §1.1, §1.2). The manifest's
//! `expected_with_key` is what Airflow itself returned; it is the oracle.

mod support;
#[path = "support/counting_proxy.rs"]
mod counting_proxy;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use airflow_secrets_sync::model::{Inventory, ItemErrorKind, ItemId, Kind, SecretValue};
use airflow_secrets_sync::store::metastore::{MetastoreConfig, MetastoreStore};
use airflow_secrets_sync::store::{Store, StoreError, scan_all};
use serde_json::Value as Json;
use sqlx::Connection as _;

const DBS: [&str; 2] = ["airflow-3.3.2.db", "airflow-2.10.5.db"];

fn manifest(db: &str) -> Json {
    let path = support::testdata_dir().join("metastore").join(format!("{db}.MANIFEST.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("manifest is JSON")
}

/// A writable copy of a testdata database in a fresh temp dir (the originals are read-only).
fn copy_db(db: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join(db);
    std::fs::copy(support::testdata_dir().join("metastore").join(db), &to).unwrap();
    let mut perms = std::fs::metadata(&to).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&to, perms).unwrap();
    (dir, to)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn config(sql_alchemy_conn: String, key: Option<&str>) -> MetastoreConfig {
    MetastoreConfig {
        sql_alchemy_conn: Some(sql_alchemy_conn),
        fernet_key: key.map(SecretValue::from),
        ..MetastoreConfig::default()
    }
}

async fn open(cfg: &MetastoreConfig) -> MetastoreStore {
    MetastoreStore::open_with_env(cfg, &no_env).await.unwrap_or_else(|e| panic!("open: {e}"))
}

async fn scan(store: &MetastoreStore) -> Inventory {
    scan_all(store, &Kind::ALL).await.unwrap_or_else(|e| panic!("{store}: scan: {e}"))
}

/// The key string for a manifest case: "NEW,OLD", "NEW" or "".
fn key_for(m: &Json, case: &str) -> String {
    case.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| m["fernet_keys"][p].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn raw_row<'a>(m: &'a Json, table: &str, id_col: &str, id: &str) -> &'a Json {
    m["raw_rows"][table].as_array().unwrap().iter().find(|r| r[id_col] == id).unwrap_or_else(|| panic!("{id} raw row"))
}

fn truthy(v: &Json) -> bool {
    matches!(v, Json::Bool(true)) || v.as_i64().is_some_and(|n| n != 0)
}

fn opt_str(v: &Json) -> Option<String> {
    v.as_str().map(String::from)
}

/// Compare one store's scan with the manifest's `expected_with_key[case]`.
///
/// Airflow's answer for an undecryptable row is "missing" (or, for a variable read with no key at
/// all, the raw token: spec §10.1); ours must be a per-item error of `error_kind`, by name.
fn assert_matches_manifest(inv: &Inventory, m: &Json, case: &str, error_kind: ItemErrorKind, store: &str) {
    let expected = &m["expected_with_key"][case];
    let mut want_ids = BTreeSet::new();

    for (key, want) in expected["variables"].as_object().unwrap() {
        let id = ItemId::variable(key.clone());
        want_ids.insert(id.clone());
        let raw = raw_row(m, "variable", "key", key);
        let encrypted = truthy(&raw["is_encrypted"]);
        let must_fail = want.get("error").is_some() || (case.is_empty() && encrypted);
        if must_fail {
            let err = inv.error(&id).unwrap_or_else(|| panic!("{store} [{case}]: {id} should be a per-item error"));
            assert_eq!(err.kind, error_kind, "{store} [{case}]: {id}: {err}");
            assert!(!err.detail.contains("gAAAA"), "{store}: {id}: the error detail shows a token");
            continue;
        }
        let entry = inv.get(&id).unwrap_or_else(|| panic!("{store} [{case}]: {id} missing ({:?})", inv.error(&id)));
        let var = entry.as_variable().expect("a variable");
        assert!(
            var.value.expose_plaintext() == want["value"].as_str().unwrap(),
            "{store} [{case}]: {id} has the wrong value"
        );
        let want_desc = m["inputs"]["variables"][key]["description"].as_str();
        assert_eq!(var.description.as_deref(), want_desc, "{store} [{case}]: {id} description");
    }

    for (conn_id, want) in expected["connections"].as_object().unwrap() {
        let id = ItemId::connection(conn_id.clone());
        want_ids.insert(id.clone());
        let want = &want["get_connection_from_secrets"];
        if want.get("error").is_some() {
            let err = inv.error(&id).unwrap_or_else(|| panic!("{store} [{case}]: {id} should be a per-item error"));
            assert_eq!(err.kind, error_kind, "{store} [{case}]: {id}: {err}");
            assert!(!err.detail.contains("gAAAA"), "{store}: {id}: the error detail shows a token");
            continue;
        }
        let entry = inv.get(&id).unwrap_or_else(|| panic!("{store} [{case}]: {id} missing ({:?})", inv.error(&id)));
        let c = entry.as_connection().expect("a connection");
        assert_eq!(c.conn_type, opt_str(&want["conn_type"]), "{store} [{case}]: {id} conn_type");
        assert_eq!(c.host, opt_str(&want["host"]), "{store} [{case}]: {id} host");
        assert_eq!(c.login, opt_str(&want["login"]), "{store} [{case}]: {id} login");
        assert_eq!(c.schema, opt_str(&want["schema"]), "{store} [{case}]: {id} schema");
        assert_eq!(c.description, opt_str(&want["description"]), "{store} [{case}]: {id} description");
        assert_eq!(c.port.map(i64::from), want["port"].as_i64(), "{store} [{case}]: {id} port");
        assert!(
            c.password.as_ref().map(|p| p.expose_plaintext()) == want["password"].as_str(),
            "{store} [{case}]: {id} has the wrong password"
        );
        assert!(
            c.extra.as_ref().map(|p| p.expose_plaintext()) == want["extra"].as_str(),
            "{store} [{case}]: {id} has the wrong extra"
        );
    }

    // Nothing skipped, nothing invented.
    let got: BTreeSet<ItemId> = inv.ids().cloned().collect();
    assert_eq!(got, want_ids, "{store} [{case}]: the set of ids differs from the manifest");
    // §10.1: never a raw token as a value.
    for e in inv.entries() {
        let values: Vec<&SecretValue> = match &e.value {
            airflow_secrets_sync::model::Value::Variable(v) => vec![&v.value],
            airflow_secrets_sync::model::Value::Connection(c) => c.password.iter().chain(c.extra.iter()).collect(),
        };
        assert!(
            values.iter().all(|v| !v.expose_plaintext().starts_with("gAAAAA")),
            "{store} [{case}]: {} carries a raw fernet token as its value",
            e.id
        );
    }
}

/// The three manifest cases on one database URL.
async fn check_all_cases(sql_alchemy_conn: &str, schema: Option<&str>, m: &Json) {
    for (case, kind) in
        [("NEW,OLD", ItemErrorKind::WrongKey), ("NEW", ItemErrorKind::WrongKey), ("", ItemErrorKind::NoKey)]
    {
        let mut cfg = config(sql_alchemy_conn.to_string(), Some(&key_for(m, case)));
        cfg.sql_alchemy_schema = schema.map(String::from);
        let store = open(&cfg).await;
        let inv = scan(&store).await;
        assert_matches_manifest(&inv, m, case, kind, &store.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite: the real files.

#[tokio::test]
async fn sqlite_files_match_the_manifest_with_every_key() {
    for db in DBS {
        let (_dir, path) = copy_db(db);
        let m = manifest(db);
        check_all_cases(&format!("sqlite:///{}", path.display()), None, &m).await;
    }
}

#[tokio::test]
async fn sqlite_plaintext_rows_read_without_a_key() {
    // Independent of the Fernet implementation: NullFernet reads plaintext rows, and every
    // encrypted row is a NoKey error by name (spec §1.4, §10.1).
    for db in DBS {
        let (_dir, path) = copy_db(db);
        let m = manifest(db);
        let store = open(&config(format!("sqlite:///{}", path.display()), Some(""))).await;
        assert!(!store.has_fernet_key());
        assert_matches_manifest(&scan(&store).await, &m, "", ItemErrorKind::NoKey, db);
    }
}

#[tokio::test]
async fn sqlite_schema_detection_and_reporting() {
    for (db, generation, revision, version) in [
        ("airflow-3.3.2.db", "3.2+", "d2f4e1b3c5a7", "3.3.0"),
        ("airflow-2.10.5.db", "2.x/3.0", "5f2621c13b39", "2.10.3"),
    ] {
        let (_dir, path) = copy_db(db);
        let store = open(&config(format!("sqlite:///{}", path.display()), Some(""))).await;
        let s = store.schema();
        assert_eq!(s.generation(), generation, "{db}");
        assert_eq!(s.alembic_revision.as_deref(), Some(revision), "{db}");
        assert_eq!(s.airflow_version(), Some(version), "{db}");
        assert_eq!(store.to_string(), format!("metastore:sqlite:///{}", path.display()));
        assert_eq!(store.identity(), store.to_string());
        store.check().await.unwrap();
        let caps = store.capabilities();
        // Writable since the restore work (tests/restore.rs); descriptions of both kinds are kept.
        assert!(!caps.read_only && caps.variable_description && caps.connection_description);
    }
}

#[tokio::test]
async fn relative_sqlite_path_and_env_fallback() {
    let (dir, _path) = copy_db("airflow-3.3.2.db");
    // sqlite:///rel is relative to the working directory; use the env fallback to supply it.
    let rel = pathdiff(dir.path().join("airflow-3.3.2.db"));
    let url = format!("sqlite:///{}", rel.display());
    let env = move |k: &str| match k {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" => Some(url.clone()),
        // §2.3 / §9 item 5: an empty env key is a hit and means NullFernet…
        "AIRFLOW__CORE__FERNET_KEY" => Some(String::new()),
        _ => None,
    };
    let store = MetastoreStore::open_with_env(&MetastoreConfig::default(), &env).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!store.has_fernet_key());
    assert_eq!(store.key_source(), airflow_secrets_sync::airflow::fernet::KeySource::EnvVar);
    let inv = scan(&store).await;
    assert_eq!(inv.error(&ItemId::variable("hello")).map(|e| e.kind), Some(ItemErrorKind::NoKey));
    drop(store);

    // …but a key configured on the store wins over the process environment (issue 16 item 1).
    let key = manifest("airflow-3.3.2.db")["fernet_key"].as_str().unwrap().to_string();
    let cfg = MetastoreConfig { fernet_key: Some(key.as_str().into()), ..Default::default() };
    let store = MetastoreStore::open_with_env(&cfg, &env).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(store.has_fernet_key());
    assert_eq!(store.key_source(), airflow_secrets_sync::airflow::fernet::KeySource::ConfigKey);
    let inv = scan(&store).await;
    assert!(inv.get(&ItemId::variable("hello")).is_some(), "the configured key decrypts");
}

/// `p` relative to the current directory (via enough `..`), so `sqlite:///rel` is exercised.
fn pathdiff(p: PathBuf) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut rel = PathBuf::new();
    for _ in cwd.components().skip(1) {
        rel.push("..");
    }
    rel.join(p.strip_prefix("/").unwrap())
}

#[tokio::test]
async fn a_malformed_fernet_key_fails_open() {
    let (_dir, path) = copy_db("airflow-3.3.2.db");
    for bad in ["not-a-key", "YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8=,"] {
        let e = MetastoreStore::open_with_env(&config(format!("sqlite:///{}", path.display()), Some(bad)), &no_env)
            .await
            .expect_err("a malformed key must fail");
        assert!(matches!(e, StoreError::FernetKey { .. }), "{e}");
        assert!(!e.to_string().contains("YGFiY2Rl"), "the error shows the key: {e}");
    }
}

/// 2.x rows Airflow can hold but never writes today: NULL flags, NULL val, NULL key, a port out of
/// range, a corrupt token, and a login that looks like a token (never decrypted, §9 item 1).
#[tokio::test]
async fn sqlite_2x_odd_rows_are_items_not_crashes() {
    let (_dir, path) = copy_db("airflow-2.10.5.db");
    let m = manifest("airflow-2.10.5.db");
    let token = raw_row(&m, "variable", "key", "hello")["val"].as_str().unwrap().to_string();
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    for (sql, binds) in [
        ("INSERT INTO variable (\"key\", val, is_encrypted) VALUES ('null_flag_var', 'plain', NULL)", vec![]),
        ("INSERT INTO variable (\"key\", val, is_encrypted) VALUES ('null_val_var', NULL, 1)", vec![]),
        ("INSERT INTO variable (id, \"key\", val, is_encrypted) VALUES (900, NULL, 'orphan', 0)", vec![]),
        ("INSERT INTO variable (\"key\", val, is_encrypted) VALUES ('corrupt_var', 'not-a-token', 1)", vec![]),
        ("INSERT INTO variable (\"key\", val, is_encrypted) VALUES ('plain_token_var', ?, 0)", vec![token.clone()]),
        (
            "INSERT INTO connection (conn_id, conn_type, login, password, port, is_encrypted, is_extra_encrypted, extra) \
             VALUES ('null_flags', 'http', ?, 'pw', 80, NULL, NULL, '{\"a\": 1}')",
            vec![token.clone()],
        ),
        (
            "INSERT INTO connection (conn_id, conn_type, port, is_encrypted, is_extra_encrypted) \
             VALUES ('big_port', 'http', 70000, 0, 0)",
            vec![],
        ),
        (
            "INSERT INTO connection (conn_id, conn_type, password, extra, is_encrypted, is_extra_encrypted) \
             VALUES ('empty_flagged', 'http', '', '', 1, 1)",
            vec![],
        ),
    ] {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(b);
        }
        q.execute(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    c.close().await.unwrap();

    let store = open(&config(format!("sqlite:///{}", path.display()), Some(""))).await;
    let inv = scan(&store).await;
    let var = |k: &str| inv.get(&ItemId::variable(k)).map(|e| e.as_variable().unwrap().value.expose_plaintext().to_string());
    let err = |id: ItemId| inv.error(&id).map(|e| e.kind);

    assert_eq!(var("null_flag_var").as_deref(), Some("plain"), "a NULL flag means plaintext");
    assert!(!inv.contains(&ItemId::variable("null_val_var")), "a NULL val reads as absent (spec §1.2)");
    assert_eq!(err(ItemId::variable("__airflow_var_fix_888b59e02a5b_900")), Some(ItemErrorKind::Unparseable));
    assert_eq!(err(ItemId::variable("corrupt_var")), Some(ItemErrorKind::NoKey), "no key configured");
    // Flag 0 is authoritative even when the text looks like a token.
    assert_eq!(var("plain_token_var"), Some(token.clone()));

    let conn = |id: &str| inv.get(&ItemId::connection(id)).unwrap().as_connection().unwrap().clone();
    let nf = conn("null_flags");
    assert_eq!(nf.login.as_deref(), Some(token.as_str()), "login is never decrypted");
    assert_eq!(nf.password.unwrap().expose_plaintext(), "pw");
    assert_eq!(nf.extra.unwrap().expose_plaintext(), "{\"a\": 1}");
    assert_eq!(nf.port, Some(80));
    let bp = inv.error(&ItemId::connection("big_port")).expect("big_port is an item error");
    assert_eq!(bp.kind, ItemErrorKind::Unparseable);
    assert!(bp.detail.contains("70000"), "{bp}");
    // Falsy values are never decrypted, flags or not (Connection.get_password / get_extra).
    let ef = conn("empty_flagged");
    assert_eq!(ef.password.unwrap().expose_plaintext(), "");
    assert_eq!(ef.extra.unwrap().expose_plaintext(), "");
}

/// With a key, a corrupt token is CorruptToken (needs the Fernet implementation).
#[tokio::test]
async fn sqlite_corrupt_token_with_a_key() {
    let (_dir, path) = copy_db("airflow-2.10.5.db");
    let m = manifest("airflow-2.10.5.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("INSERT INTO variable (\"key\", val, is_encrypted) VALUES ('corrupt_var', 'not-a-token', 1)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let store = open(&config(format!("sqlite:///{}", path.display()), Some(&key_for(&m, "NEW,OLD")))).await;
    let inv = scan(&store).await;
    assert_eq!(inv.error(&ItemId::variable("corrupt_var")).map(|e| e.kind), Some(ItemErrorKind::CorruptToken));
    assert!(inv.get(&ItemId::variable("hello")).is_some());
}

#[tokio::test]
async fn missing_tables_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    let c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", empty.display())).await.unwrap();
    c.close().await.unwrap();
    let e = MetastoreStore::open_with_env(&config(format!("sqlite:///{}", empty.display()), None), &no_env)
        .await
        .expect_err("no tables");
    assert!(matches!(e, StoreError::Schema { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("variable, connection") && msg.contains("airflow db migrate"), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");

    let missing = dir.path().join("nope.db");
    let e = MetastoreStore::open_with_env(&config(format!("sqlite:///{}", missing.display()), None), &no_env)
        .await
        .expect_err("no file");
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e}");
    assert!(!missing.exists(), "opening must not create the file");
}

#[tokio::test]
async fn bad_urls_are_config_errors() {
    for url in ["mssql+pyodbc://u:pw-canary@h/db", "nonsense"] {
        let e = MetastoreStore::open_with_env(&config(url.into(), None), &no_env).await.expect_err(url);
        assert!(matches!(e, StoreError::Config { .. }), "{e}");
        assert!(!e.to_string().contains("canary"), "{e}");
    }
    let e = MetastoreStore::open_with_env(&MetastoreConfig::default(), &no_env).await.expect_err("nothing set");
    assert!(e.to_string().contains("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"), "{e}");
    let mut cfg = config("postgresql://u@127.0.0.1/db".into(), None);
    cfg.sql_alchemy_schema = Some("x; drop table variable".into());
    let e = MetastoreStore::open_with_env(&cfg, &no_env).await.expect_err("bad schema");
    assert!(matches!(e, StoreError::Config { .. }), "{e}");
}

#[tokio::test]
async fn unreachable_database_names_the_place_not_the_password() {
    // A port nobody listens on: bind, note it, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for url in [
        format!("postgresql+psycopg2://airflow:pw-canary-1@127.0.0.1:{port}/airflow"),
        format!("mysql+mysqldb://airflow:pw-canary-1@127.0.0.1:{port}/airflow"),
    ] {
        let e = MetastoreStore::open_with_env(&config(url.clone(), None), &no_env).await.expect_err(&url);
        assert!(matches!(e, StoreError::Unreachable { .. }), "{e}");
        let msg = format!("{e} {e:?}");
        assert!(msg.contains(&format!("127.0.0.1:{port}/airflow")), "{msg}");
        assert!(!msg.contains("canary"), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL and MariaDB: Airflow-shaped tables holding the rows of the SQLite files.

struct RawVariable {
    id: i64,
    key: Option<String>,
    val: Option<String>,
    description: Option<String>,
    is_encrypted: Option<bool>,
}

struct RawConnection {
    id: i64,
    conn_id: String,
    conn_type: String,
    description: Option<String>,
    host: Option<String>,
    schema: Option<String>,
    login: Option<String>,
    password: Option<String>,
    port: Option<i64>,
    extra: Option<String>,
    is_encrypted: Option<bool>,
    is_extra_encrypted: Option<bool>,
}

async fn raw_rows(path: &Path) -> (Vec<RawVariable>, Vec<RawConnection>) {
    use sqlx::Row;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", path.display())).await.unwrap();
    let vars = sqlx::query("SELECT id, \"key\", val, description, is_encrypted FROM variable")
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| RawVariable {
            id: r.get("id"),
            key: r.get("key"),
            val: r.get("val"),
            description: r.get("description"),
            is_encrypted: r.get("is_encrypted"),
        })
        .collect();
    let conns = sqlx::query(
        "SELECT id, conn_id, conn_type, description, host, \"schema\", login, password, port, extra, \
         is_encrypted, is_extra_encrypted FROM connection",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| RawConnection {
        id: r.get("id"),
        conn_id: r.get("conn_id"),
        conn_type: r.get("conn_type"),
        description: r.get("description"),
        host: r.get("host"),
        schema: r.get("schema"),
        login: r.get("login"),
        password: r.get("password"),
        port: r.get("port"),
        extra: r.get("extra"),
        is_encrypted: r.get("is_encrypted"),
        is_extra_encrypted: r.get("is_extra_encrypted"),
    })
    .collect();
    c.close().await.unwrap();
    (vars, conns)
}

fn ddl(name: &str) -> String {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/airflow_schema")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Create the Airflow-shaped tables (optionally in PG schema `pg_schema`) and copy the rows.
async fn load_postgres(db: &support::TestDb, sqlite: &Path, ddl_file: &str, pg_schema: Option<&str>) {
    let prefix = match pg_schema {
        Some(s) => format!("CREATE SCHEMA {s}; SET search_path TO {s};"),
        None => String::new(),
    };
    support::pg_exec_script(&db.url, &format!("{prefix}{}", ddl(ddl_file))).await;
    let (vars, conns) = raw_rows(sqlite).await;
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let q = |t: &str| match pg_schema {
        Some(s) => format!("{s}.{t}"),
        None => t.to_string(),
    };
    for v in vars {
        let sql = format!("INSERT INTO {} (id, \"key\", val, description, is_encrypted) VALUES ($1, $2, $3, $4, $5)", q("variable"));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(v.id as i32)
            .bind(v.key)
            .bind(v.val)
            .bind(v.description)
            .bind(v.is_encrypted)
            .execute(&mut c)
            .await
            .unwrap();
    }
    for r in conns {
        let sql = format!(
            "INSERT INTO {} (id, conn_id, conn_type, description, host, \"schema\", login, password, port, extra, \
             is_encrypted, is_extra_encrypted) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            q("connection")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(r.id as i32)
            .bind(r.conn_id)
            .bind(r.conn_type)
            .bind(r.description)
            .bind(r.host)
            .bind(r.schema)
            .bind(r.login)
            .bind(r.password)
            .bind(r.port.map(|p| p as i32))
            .bind(r.extra)
            .bind(r.is_encrypted)
            .bind(r.is_extra_encrypted)
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

async fn load_mysql(db: &support::TestDb, sqlite: &Path, ddl_file: &str) {
    support::mysql_exec_script(&db.url, &ddl(ddl_file)).await;
    let (vars, conns) = raw_rows(sqlite).await;
    let mut c = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    for v in vars {
        sqlx::query("INSERT INTO variable (id, `key`, val, description, is_encrypted) VALUES (?, ?, ?, ?, ?)")
            .bind(v.id)
            .bind(v.key)
            .bind(v.val)
            .bind(v.description)
            .bind(v.is_encrypted)
            .execute(&mut c)
            .await
            .unwrap();
    }
    for r in conns {
        sqlx::query(
            "INSERT INTO connection (id, conn_id, conn_type, description, host, `schema`, login, password, port, extra, \
             is_encrypted, is_extra_encrypted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(r.id)
        .bind(r.conn_id)
        .bind(r.conn_type)
        .bind(r.description)
        .bind(r.host)
        .bind(r.schema)
        .bind(r.login)
        .bind(r.password)
        .bind(r.port)
        .bind(r.extra)
        .bind(r.is_encrypted)
        .bind(r.is_extra_encrypted)
        .execute(&mut c)
        .await
        .unwrap();
    }
    c.close().await.unwrap();
}

const SHAPES: [(&str, &str, &str, &str); 2] = [
    ("airflow-3.3.2.db", "postgres_3x.sql", "mysql_3x.sql", "3.2+"),
    ("airflow-2.10.5.db", "postgres_2x.sql", "mysql_2x.sql", "2.x/3.0"),
];

#[tokio::test]
async fn postgres_rows_match_the_manifest() {
    for (db, pg_ddl, _, generation) in SHAPES {
        let (_dir, path) = copy_db(db);
        let pg = support::fresh_postgres().await;
        load_postgres(&pg, &path, pg_ddl, None).await;
        let m = manifest(db);
        let store = open(&config(pg.sqlalchemy_url(), Some(""))).await;
        assert_eq!(store.schema().generation(), generation, "{db}");
        assert_eq!(store.to_string(), format!("metastore:postgresql://127.0.0.1:5432/{}", pg.name));
        store.check().await.unwrap();
        drop(store);
        check_all_cases(&pg.sqlalchemy_url(), None, &m).await;
    }
}

#[tokio::test]
async fn postgres_plaintext_rows_without_a_key() {
    for (db, pg_ddl, _, _) in SHAPES {
        let (_dir, path) = copy_db(db);
        let pg = support::fresh_postgres().await;
        load_postgres(&pg, &path, pg_ddl, None).await;
        let store = open(&config(pg.sqlalchemy_url(), Some(""))).await;
        assert_matches_manifest(&scan(&store).await, &manifest(db), "", ItemErrorKind::NoKey, db);
    }
}

#[tokio::test]
async fn postgres_sql_alchemy_schema() {
    let db = "airflow-3.3.2.db";
    let (_dir, path) = copy_db(db);
    let pg = support::fresh_postgres().await;
    load_postgres(&pg, &path, "postgres_3x.sql", Some("airflow_meta")).await;
    let m = manifest(db);

    // Without the schema the tables are not on the search_path: a clear Schema error.
    let e = MetastoreStore::open_with_env(&config(pg.sqlalchemy_url(), Some("")), &no_env)
        .await
        .expect_err("tables live in airflow_meta");
    assert!(matches!(e, StoreError::Schema { .. }), "{e}");

    // From the env, as Airflow reads it.
    let url = pg.sqlalchemy_url();
    let env = move |k: &str| match k {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" => Some(url.clone()),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA" => Some("airflow_meta".into()),
        "AIRFLOW__CORE__FERNET_KEY" => Some(String::new()),
        _ => None,
    };
    let store = MetastoreStore::open_with_env(&MetastoreConfig::default(), &env).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(store.to_string().ends_with("?schema=airflow_meta"), "{store}");
    assert_eq!(store.schema().alembic_revision.as_deref(), Some("d2f4e1b3c5a7"));
    assert_matches_manifest(&scan(&store).await, &m, "", ItemErrorKind::NoKey, "pg schema");
    drop(store);

    check_all_cases(&pg.sqlalchemy_url(), Some("airflow_meta"), &m).await;
}

#[tokio::test]
async fn postgres_missing_tables_is_a_schema_error() {
    let pg = support::fresh_postgres().await;
    let e = MetastoreStore::open_with_env(&config(pg.sqlalchemy_url(), None), &no_env).await.expect_err("empty db");
    assert!(matches!(e, StoreError::Schema { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("no Airflow metastore tables (variable, connection)") && msg.contains("airflow db migrate"), "{msg}");
}

#[tokio::test]
async fn mariadb_rows_match_the_manifest() {
    for (db, _, my_ddl, generation) in SHAPES {
        let (_dir, path) = copy_db(db);
        let my = support::fresh_mysql().await;
        load_mysql(&my, &path, my_ddl).await;
        let m = manifest(db);
        let store = open(&config(my.sqlalchemy_url(), Some(""))).await;
        assert_eq!(store.schema().generation(), generation, "{db}");
        assert_eq!(store.to_string(), format!("metastore:mysql://127.0.0.1:3306/{}", my.name));
        store.check().await.unwrap();
        drop(store);
        check_all_cases(&my.sqlalchemy_url(), None, &m).await;
    }
}

#[tokio::test]
async fn mariadb_plaintext_rows_without_a_key() {
    for (db, _, my_ddl, _) in SHAPES {
        let (_dir, path) = copy_db(db);
        let my = support::fresh_mysql().await;
        load_mysql(&my, &path, my_ddl).await;
        let store = open(&config(my.sqlalchemy_url().replacen("mysql+mysqldb", "mysql+pymysql", 1), Some(""))).await;
        assert_matches_manifest(&scan(&store).await, &manifest(db), "", ItemErrorKind::NoKey, db);
    }
}

#[tokio::test]
async fn mariadb_missing_tables_is_a_schema_error() {
    let my = support::fresh_mysql().await;
    let e = MetastoreStore::open_with_env(&config(my.sqlalchemy_url(), None), &no_env).await.expect_err("empty db");
    assert!(matches!(e, StoreError::Schema { .. }), "{e}");
    assert!(e.to_string().contains("airflow db migrate"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// What a run costs the database: connections and TLS handshakes, counted by a proxy.

/// Open, probe, read everything and check: all on the one connection `open` made.
async fn connections_for_a_plan(url: &str) -> (usize, usize, usize) {
    let proxy = counting_proxy::CountingProxy::start(counting_proxy::port_of(url));
    let store = open(&config(counting_proxy::with_port(url, proxy.port()), Some(""))).await;
    let inv = scan(&store).await;
    assert!(inv.ids().count() > 0, "{store}: nothing read");
    store.check().await.unwrap();
    let (opened, tls) = (proxy.connections(), proxy.ssl_requests());

    // Lost (a database restart): the next use reconnects once, and goes on on the new connection.
    proxy.kill_all();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.check().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "{store}: never reconnected");
    }
    scan(&store).await;
    (opened, tls, proxy.connections())
}

#[tokio::test]
async fn postgres_plan_costs_one_connection_and_one_handshake() {
    let (_dir, path) = copy_db("airflow-3.3.2.db");
    let pg = support::fresh_postgres().await;
    load_postgres(&pg, &path, "postgres_3x.sql", None).await;
    // sslmode unset is libpq's `prefer`: TLS when the server offers it (the test server may not).
    let server_tls: String = {
        let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
        sqlx::query_scalar("SHOW ssl").fetch_one(&mut c).await.unwrap()
    };
    let (opened, tls, after_loss) = connections_for_a_plan(&pg.sqlalchemy_url()).await;
    assert_eq!(opened, 1, "connections for one plan");
    assert_eq!(tls, 1, "SSLRequests for one plan (server ssl = {server_tls})");
    assert_eq!(after_loss, 2, "a lost connection is reopened once");
}

#[tokio::test]
async fn mariadb_plan_costs_one_connection() {
    let (_dir, path) = copy_db("airflow-3.3.2.db");
    let my = support::fresh_mysql().await;
    load_mysql(&my, &path, "mysql_3x.sql").await;
    let (opened, _, after_loss) = connections_for_a_plan(&my.sqlalchemy_url()).await;
    assert_eq!(opened, 1, "connections for one plan");
    assert_eq!(after_loss, 2, "a lost connection is reopened once");
}

/// sslmode as libpq reads it: disable and allow (the server takes plain) ask for no TLS; prefer and
/// require ask once; verify-full refuses a certificate no trusted root signed.
#[tokio::test]
async fn postgres_sslmode_is_honoured() {
    let (_dir, path) = copy_db("airflow-3.3.2.db");
    let pg = support::fresh_postgres().await;
    load_postgres(&pg, &path, "postgres_3x.sql", None).await;
    let server_tls = {
        let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
        sqlx::query_scalar::<_, String>("SHOW ssl").fetch_one(&mut c).await.unwrap() == "on"
    };
    let upstream = counting_proxy::port_of(&pg.url);
    for (mode, ssl_requests) in [("disable", 0), ("allow", 0), ("prefer", 1), ("require", 1)] {
        if mode == "require" && !server_tls {
            continue;
        }
        let proxy = counting_proxy::CountingProxy::start(upstream);
        let url = format!("{}?sslmode={mode}", counting_proxy::with_port(&pg.sqlalchemy_url(), proxy.port()));
        let store = open(&config(url, Some(""))).await;
        scan(&store).await;
        assert_eq!((proxy.connections(), proxy.ssl_requests()), (1, ssl_requests), "sslmode={mode}");
    }
    if server_tls {
        // The test server's certificate is self-signed (Debian's snakeoil): not verifiable.
        let url = format!("{}?sslmode=verify-full", pg.sqlalchemy_url());
        let e = MetastoreStore::open_with_env(&config(url, Some("")), &no_env).await.expect_err("unverifiable certificate");
        assert!(matches!(e, StoreError::Unreachable { .. }), "{e}");
    }
}

/// mysqlclient's `ssl_mode` is honoured (sqlx alone reads only `ssl-mode` and would ignore it):
/// REQUIRED against a server without TLS fails; DISABLED connects plain.
#[tokio::test]
async fn mariadb_ssl_mode_is_honoured() {
    let (_dir, path) = copy_db("airflow-3.3.2.db");
    let my = support::fresh_mysql().await;
    load_mysql(&my, &path, "mysql_3x.sql").await;
    let have_ssl: String = {
        let mut c = sqlx::MySqlConnection::connect(&my.url).await.unwrap();
        sqlx::query_scalar("SELECT CAST(@@have_ssl AS CHAR)").fetch_one(&mut c).await.unwrap()
    };
    let store = open(&config(format!("{}?ssl_mode=DISABLED", my.sqlalchemy_url()), Some(""))).await;
    assert!(scan(&store).await.ids().count() > 0);
    if have_ssl != "YES" {
        let url = format!("{}?charset=utf8mb4&ssl_mode=REQUIRED", my.sqlalchemy_url());
        let e = MetastoreStore::open_with_env(&config(url, Some("")), &no_env).await.expect_err("the server has no TLS");
        assert!(e.to_string().contains("TLS"), "{e}");
    }
}
