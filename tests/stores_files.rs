//! The file-backed stores: the environment (`.env` files and the process env) and Airflow's
//! LocalFilesystemBackend files. Each store/format combination runs the conformance suite in
//! `tests/conformance.rs`; this file checks the format rules of spec §3.1 and §5.6 against independent readers (dotenvy, /bin/sh,
//! PyYAML when it is installed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use airflow_secrets_sync::model::{Connection, Entry, ItemErrorKind, ItemId, Kind};
use airflow_secrets_sync::store::env::{self, EnvConfig, EnvConnectionFormat, EnvSource, EnvStore};
use airflow_secrets_sync::airflow::local_filesystem;
use airflow_secrets_sync::store::local_files::{LocalFilesConfig, LocalFilesStore};
use airflow_secrets_sync::store::{Placement, Precondition, Store, StoreError, conformance};

fn local(vars: Option<&Path>, conns: Option<&Path>) -> LocalFilesStore {
    LocalFilesStore::new(&LocalFilesConfig {
        variables_file_path: vars.map(Path::to_path_buf),
        connections_file_path: conns.map(Path::to_path_buf),
        ..Default::default()
    })
    .expect("valid config")
}

fn env_file(dir: &tempfile::TempDir, format: EnvConnectionFormat) -> (EnvStore, PathBuf) {
    let path = dir.path().join("airflow.env");
    let cfg = EnvConfig {
        source: EnvSource::File,
        path: Some(path.clone()),
        connection_format: format,
        ..Default::default()
    };
    (EnvStore::new(&cfg).expect("valid config"), path)
}

async fn write_all(store: &dyn Store, entries: &[Entry]) {
    for e in entries {
        store.write(e, &Precondition::Any).await.unwrap_or_else(|err| panic!("write {}: {err}", e.id));
    }
    store.flush().await.expect("flush");
}

fn item_error_kind(err: &StoreError, id: &ItemId) -> ItemErrorKind {
    match err {
        StoreError::Item { id: got, error, .. } => {
            assert_eq!(got, id, "the error names the wrong item: {err}");
            error.kind
        }
        other => panic!("expected an item error for {id}, got {other}"),
    }
}

fn variable_value(inv: &airflow_secrets_sync::model::Inventory, id: &str) -> String {
    let id = ItemId::variable(id);
    let e = inv.get(&id).unwrap_or_else(|| panic!("{id} missing (error: {:?})", inv.error(&id)));
    e.as_variable().expect("a variable").value.expose_plaintext().to_string()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---- the environment store ---------------------------------------------------------------------

/// Values that stress every quoting rule of sh, dotenvy and compose.
fn tricky_values() -> Vec<(&'static str, &'static str)> {
    vec![
        ("plain", "hello"),
        ("empty", ""),
        ("spaces", "  leading and trailing  "),
        ("dollar", "$HOME ${HOME} $(id) $1"),
        ("single", "it's a 'quote'"),
        ("double", "say \"hi\""),
        ("backslash_end", "C:\\path\\"),
        ("backslash_quote", "a\\'b"),
        ("mixed_end", "it's \\"),
        ("newlines", "line1\nline2\n\nline4\n"),
        ("cr", "a\r\nb\r"),
        ("tab_hash", "\tx # not a comment"),
        ("hash_start", "#not a comment"),
        ("equals", "a=b==c"),
        ("unicode", "v\u{e9}\u{1f600}\u{2028}\u{85}"),
        ("backtick", "`not run`"),
        ("json", "{\"a\": [1, 2], \"b\": \"$x\"}"),
        ("export_word", "export X=1"),
    ]
}

/// What `/bin/sh -c 'set -a; . ./file'` exports, byte for byte.
fn sh_reads(path: &Path) -> HashMap<String, Vec<u8>> {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("set -a; . \"$1\"; exec env -0")
        .arg("sh")
        .arg(path)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run /bin/sh");
    assert!(out.status.success(), "sh failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let eq = kv.iter().position(|b| *b == b'=')?;
            Some((String::from_utf8(kv[..eq].to_vec()).ok()?, kv[eq + 1..].to_vec()))
        })
        .collect()
}

fn dotenvy_reads(path: &Path) -> HashMap<String, String> {
    dotenvy::from_path_iter(path).expect("open").map(|r| r.expect("dotenvy parses our file")).collect()
}

#[tokio::test]
async fn env_file_values_read_back_identical_in_sh_and_dotenvy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = env_file(&dir, EnvConnectionFormat::Json);
    let entries: Vec<Entry> = tricky_values().iter().map(|(k, v)| Entry::variable(*k, *v)).collect();
    // The backtick value also has no single quote, so it is writable; check each is accepted.
    write_all(&store, &entries).await;
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);

    let sh = sh_reads(&path);
    let dv = dotenvy_reads(&path);
    let inv = store.scan(Kind::Variable).await.unwrap();
    for (k, v) in tricky_values() {
        let name = env::env_var_name(&ItemId::variable(k));
        assert_eq!(sh.get(&name).map(Vec::as_slice), Some(v.as_bytes()), "sh read {name} differently");
        assert_eq!(dv.get(&name).map(String::as_str), Some(v), "dotenvy read {name} differently");
        assert_eq!(variable_value(&inv, k), v, "scan read {k} differently");
    }
}

#[tokio::test]
async fn env_file_keeps_unrelated_lines_and_replaces_ours() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = env_file(&dir, EnvConnectionFormat::Json);
    let before = "# compose settings\nCOMPOSE_PROJECT_NAME=demo\n\nexport  OTHER=\"multi\nline\" # trailing\n\
                  AIRFLOW_VAR_OLD='old value'\nAIRFLOW_VAR_GONE=bye\nAIRFLOW_VAR_OLD=duplicate\nLAST_NO_NEWLINE=1";
    std::fs::write(&path, before).unwrap();
    write_all(&store, &[Entry::variable("old", "new value"), Entry::variable("added", "x")]).await;
    store.delete(&ItemId::variable("gone")).await.unwrap();
    store.flush().await.unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        after,
        "# compose settings\nCOMPOSE_PROJECT_NAME=demo\n\nexport  OTHER=\"multi\nline\" # trailing\n\
         AIRFLOW_VAR_OLD='new value'\nLAST_NO_NEWLINE=1\nAIRFLOW_VAR_ADDED='x'\n"
    );
    let dv = dotenvy_reads(&path);
    assert_eq!(dv["OTHER"], "multi\nline");
    assert_eq!(dv["AIRFLOW_VAR_OLD"], "new value");
}

#[tokio::test]
async fn env_file_refuses_what_sh_cannot_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = env_file(&dir, EnvConnectionFormat::Json);
    for id in ["dotted.name", "caf\u{e9}", "team/db", "x:y", "has space", "dash-ed"] {
        let e = Entry::variable(id, "v");
        assert!(matches!(store.locate(&e.id), Placement::Invalid(_)), "{id}");
        let err = store.write(&e, &Precondition::Any).await.unwrap_err();
        assert_eq!(item_error_kind(&err, &e.id), ItemErrorKind::InvalidName);
    }
    let canary = "canary-7f3a9 it's `whoami`";
    let e = Entry::variable("unquotable", canary);
    let err = store.write(&e, &Precondition::Any).await.unwrap_err();
    assert_eq!(item_error_kind(&err, &e.id), ItemErrorKind::NotRepresentable);
    assert!(!err.to_string().contains("canary") && !format!("{err:?}").contains("canary"), "{err}");
    let e = Entry::variable("nul", "canary-7f3a9\0");
    let err = store.write(&e, &Precondition::Any).await.unwrap_err();
    assert_eq!(item_error_kind(&err, &e.id), ItemErrorKind::NotRepresentable);
    assert!(!err.to_string().contains("canary"), "{err}");
    store.flush().await.unwrap();
    assert!(!path.exists(), "refused writes must not create the file");

    // compose_safe also refuses a trailing backslash (compose-go reads `\'` as an escaped quote).
    let cfg = EnvConfig {
        source: EnvSource::File,
        path: Some(path.clone()),
        connection_format: EnvConnectionFormat::Json,
        compose_safe: true,
        ..Default::default()
    };
    let strict = EnvStore::new(&cfg).unwrap();
    let e = Entry::variable("trailing", "C:\\dir\\");
    let err = strict.write(&e, &Precondition::Any).await.unwrap_err();
    assert_eq!(item_error_kind(&err, &e.id), ItemErrorKind::NotRepresentable);
}

#[tokio::test]
async fn env_ids_that_differ_only_in_case_collide() {
    let ids = [ItemId::variable("foo"), ItemId::variable("FOO"), ItemId::connection("foo")];
    assert_eq!(env::collisions(&ids), vec![vec![ItemId::variable("FOO"), ItemId::variable("foo")]]);
    assert_eq!(env::env_var_name(&ItemId::variable("foo")), env::env_var_name(&ItemId::variable("FOO")));

    let dir = tempfile::tempdir().unwrap();
    let (store, _) = env_file(&dir, EnvConnectionFormat::Json);
    store.write(&Entry::variable("foo", "1"), &Precondition::Any).await.unwrap();
    let e = Entry::variable("FOO", "2");
    let err = store.write(&e, &Precondition::Any).await.unwrap_err();
    assert_eq!(item_error_kind(&err, &e.id), ItemErrorKind::Collision);
    store.write(&Entry::variable("foo", "3"), &Precondition::Any).await.expect("same id again is an update");
}

#[tokio::test]
async fn process_env_reads_like_airflow() {
    let store = EnvStore::from_vars([
        ("AIRFLOW_VAR_EMPTY", ""),
        ("AIRFLOW_VAR_MY_KEY", "canary-var-1"),
        ("AIRFLOW_VAR_lower", "never read"),
        ("AIRFLOW_CONN_EMPTY", ""),
        ("AIRFLOW_CONN_BAD", "{\"conn_type\": \"postgres\", \"user\": \"canary-conn-2\"}"),
        ("PATH", "/usr/bin"),
    ]);
    assert!(store.capabilities().read_only);
    let vars = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&vars, "empty"), "", "an empty AIRFLOW_VAR_ is a hit");
    assert_eq!(variable_value(&vars, "my_key"), "canary-var-1", "ids are reported lower-cased");
    assert_eq!(vars.error(&ItemId::variable("lower")).map(|e| e.kind), Some(ItemErrorKind::Unreachable));
    assert_eq!(vars.get(&ItemId::variable("my_key")).unwrap().meta.name.as_deref(), Some("AIRFLOW_VAR_MY_KEY"));

    let conns = store.scan(Kind::Connection).await.unwrap();
    assert!(!conns.contains(&ItemId::connection("empty")), "an empty AIRFLOW_CONN_ is a miss");
    let err = conns.error(&ItemId::connection("bad")).expect("an unparseable connection is an item error");
    assert_eq!(err.kind, ItemErrorKind::Unparseable);
    assert!(!err.to_string().contains("canary"), "{err}");

    // read() looks up exactly as Airflow does, and keeps the id as asked.
    let asked = ItemId::variable("My_Key");
    let got = store.read(std::slice::from_ref(&asked)).await.unwrap();
    assert_eq!(got.get(&asked).expect("found by upper-cased name").id, asked);
    assert!(store.read(&[ItemId::variable("absent")]).await.unwrap().is_empty());

    let err = store.write(&Entry::variable("x", "y"), &Precondition::Any).await.unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
}

#[tokio::test]
async fn env_file_reading_uses_dotenv_semantics_and_hides_values_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = env_file(&dir, EnvConnectionFormat::Json);
    std::fs::write(
        &path,
        "export AIRFLOW_VAR_A=\"quoted # not a comment\"\nAIRFLOW_VAR_B=plain # comment\n\
         AIRFLOW_VAR_BROKEN=canary-3 word\nUNRELATED=also broken here\nAIRFLOW_VAR_C='x'\n",
    )
    .unwrap();
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&inv, "a"), "quoted # not a comment");
    assert_eq!(variable_value(&inv, "b"), "plain");
    assert_eq!(variable_value(&inv, "c"), "x");
    let err = inv.error(&ItemId::variable("broken")).expect("a broken line of ours is an item error");
    assert!(err.to_string().contains("line 3") && !err.to_string().contains("canary"), "{err}");
}

#[test]
fn env_config_parses_from_toml_and_checks_the_source() {
    let cfg: EnvConfig =
        toml::from_str("source = \"file\"\npath = \"/tmp/x.env\"\nconnection_format = \"uri\"").unwrap();
    assert_eq!(cfg.connection_format, EnvConnectionFormat::Uri);
    let store = EnvStore::new(&cfg).unwrap();
    assert_eq!(store.to_string(), "env-file:/tmp/x.env");
    assert!(!store.capabilities().connection_description);
    let cfg: EnvConfig = toml::from_str("source = \"file\"").unwrap();
    assert!(matches!(EnvStore::new(&cfg), Err(StoreError::Config { .. })));
    assert_eq!(EnvStore::process().to_string(), "env:process");
    assert!(EnvStore::process().capabilities().connection_description, "JSON is the default");
}

// ---- the LocalFilesystemBackend store ----------------------------------------------------------

#[test]
fn local_config_checks_extensions_and_paths() {
    let cfg: LocalFilesConfig =
        toml::from_str("variables_file_path = \"/x/v.yml\"\nconnections_file_path = \"/x/c.env\"").unwrap();
    let store = LocalFilesStore::new(&cfg).unwrap();
    assert_eq!(store.to_string(), "local-files(variables=/x/v.yml, connections=/x/c.env)");
    let caps = store.capabilities();
    assert!(caps.empty_variables && !caps.connection_description);
    let bad = LocalFilesConfig { variables_file_path: Some("/x/v.toml".into()), ..Default::default() };
    assert!(matches!(LocalFilesStore::new(&bad), Err(StoreError::Config { .. })));
    let same = LocalFilesConfig {
        variables_file_path: Some("/x/a.json".into()),
        connections_file_path: Some("/x/a.json".into()),
        ..Default::default()
    };
    assert!(matches!(LocalFilesStore::new(&same), Err(StoreError::Config { .. })));
    let only_vars =
        LocalFilesStore::new(&LocalFilesConfig { variables_file_path: Some("/x/v.json".into()), ..Default::default() })
            .unwrap();
    assert!(matches!(only_vars.locate(&ItemId::connection("c")), Placement::Unreachable(_)));
}

#[tokio::test]
async fn a_missing_file_is_empty_and_created_on_first_write() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["v.json", "v.yaml", "v.env"] {
        let path = dir.path().join(name);
        let store = local(Some(&path), None);
        assert!(store.scan(Kind::Variable).await.unwrap().is_empty());
        write_all(&store, &[Entry::variable("k", "v")]).await;
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600, "{name}");
        assert_eq!(variable_value(&store.scan(Kind::Variable).await.unwrap(), "k"), "v");
    }
}

#[tokio::test]
async fn local_json_is_sorted_and_keeps_foreign_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variables.json");
    std::fs::write(&path, r#"{"zeta": "z", "num": 5, "obj": {"a": [1, 2]}}"#).unwrap();
    let store = local(Some(&path), None);
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&inv, "zeta"), "z");
    for id in ["num", "obj"] {
        let err = inv.error(&ItemId::variable(id)).unwrap_or_else(|| panic!("{id}: a non-string is an item error"));
        assert_eq!(err.kind, ItemErrorKind::Unparseable);
    }
    write_all(&store, &[Entry::variable("alpha", "a\"\n\u{e9}")]).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back, serde_json::json!({"alpha": "a\"\n\u{e9}", "num": 5, "obj": {"a": [1, 2]}, "zeta": "z"}));
    let keys: Vec<usize> =
        ["alpha", "num", "obj", "zeta"].iter().map(|k| text.find(&format!("\"{k}\"")).unwrap()).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys are not sorted:\n{text}");
}

/// Values YAML 1.1 would retype if they were written plain.
const YAML_QUIRKS: &[&str] = &[
    "yes",
    "no",
    "on",
    "off",
    "Y",
    "true",
    "NULL",
    "null",
    "~",
    "",
    "0123",
    "0o17",
    "0x1F",
    "1e3",
    "1_000",
    "1.5",
    ".inf",
    ".nan",
    "190:20:30",
    "2001-12-14",
    "2001-12-14 21:59:43.10 -5",
    "<<",
    "=",
    "- item",
    "key: value",
    "#comment",
    "@at",
    "`tick",
    "%pct",
    "!tag",
    "&anchor",
    "*alias",
    "{a: 1}",
    "[1, 2]",
    " leading",
    "trailing ",
    "quote\"s and 'single'",
    "back\\slash",
    "multi\nline\r\n",
    "tab\there",
    "nul\0byte",
    "bell\x07",
    "del\x7f",
    "nel\u{85}",
    "ls\u{2028}ps\u{2029}",
    "bom\u{feff}",
    "nonchar\u{fffe}\u{ffff}",
    "emoji\u{1f600}",
    "c1\u{9f}",
    "nbsp\u{a0}",
];

#[tokio::test]
async fn local_yaml_writes_every_scalar_as_a_string() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variables.yaml");
    let store = local(Some(&path), None);
    let entries: Vec<Entry> =
        YAML_QUIRKS.iter().enumerate().map(|(i, v)| Entry::variable(format!("v{i:02}"), *v)).collect();
    write_all(&store, &entries).await;
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(inv.error_count(), 0, "{:?}", inv.errors().collect::<Vec<_>>());
    for (i, v) in YAML_QUIRKS.iter().enumerate() {
        assert_eq!(variable_value(&inv, &format!("v{i:02}")), *v, "value {v:?} changed");
    }
    // The real reader, when it is here: PyYAML's safe_load must see every value as the same str.
    let check = "import sys, yaml, json\nd = yaml.safe_load(open(sys.argv[1], encoding='utf-8'))\n\
                 assert all(isinstance(v, str) for v in d.values()), [k for k, v in d.items() if not isinstance(v, str)]\n\
                 sys.stdout.write(json.dumps(d))";
    match Command::new("python3").arg("-c").arg(check).arg(&path).output() {
        Ok(out) if out.status.success() => {
            let d: HashMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
            for (i, v) in YAML_QUIRKS.iter().enumerate() {
                // Python's universal newlines turn \r\n into \n only in the file text, never inside
                // a double-quoted escape, so values compare exactly.
                assert_eq!(d[&format!("v{i:02}")], *v, "PyYAML read {v:?} differently");
            }
        }
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named 'yaml'") => {
            eprintln!("PyYAML not installed: skipped the PyYAML cross-check");
        }
        Ok(out) => panic!("PyYAML rejected our file: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => eprintln!("python3 not found: skipped the PyYAML cross-check"),
    }
}

#[tokio::test]
async fn local_yaml_reads_plain_scalars_as_pyyaml_types_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variables.yml");
    std::fs::write(
        &path,
        "quoted: \"yes\"\nsingle: 'on'\nplain_bool: yes\noctal: 0123\nnull_value: ~\nstring: hello world\n\
         block: |\n  canary-4 yes\ntimestamp: 2001-12-14\n",
    )
    .unwrap();
    let store = local(Some(&path), None);
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&inv, "quoted"), "yes");
    assert_eq!(variable_value(&inv, "single"), "on");
    assert_eq!(variable_value(&inv, "string"), "hello world");
    assert_eq!(variable_value(&inv, "block"), "canary-4 yes\n");
    for id in ["plain_bool", "octal", "null_value", "timestamp"] {
        let err = inv.error(&ItemId::variable(id)).unwrap_or_else(|| panic!("{id} should not read as a string"));
        assert_eq!(err.kind, ItemErrorKind::Unparseable, "{id}");
    }
    // A rewrite keeps the foreign entries with their YAML 1.1 meaning.
    write_all(&store, &[Entry::variable("new", "on")]).await;
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&inv, "new"), "on");
    assert_eq!(variable_value(&inv, "block"), "canary-4 yes\n");
    assert!(inv.error(&ItemId::variable("plain_bool")).is_some());
    assert!(inv.error(&ItemId::variable("octal")).is_some());
}

#[tokio::test]
async fn local_env_is_read_with_airflow_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variables.env");
    std::fs::write(&path, "a= spaced \n# comment\n   # indented\nb=x=y\r\nc='quoted'\x0bd=export\n").unwrap();
    let store = local(Some(&path), None);
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&inv, "a"), " spaced ");
    assert_eq!(variable_value(&inv, "b"), "x=y");
    assert_eq!(variable_value(&inv, "c"), "'quoted'", "no quote removal in Airflow's format");
    assert_eq!(variable_value(&inv, "d"), "export");

    for (text, what) in
        [("k=canary-5\nk=canary-6\n", "more than once"), ("k=\n", "empty value"), ("canary-7\n", "no '='")]
    {
        std::fs::write(&path, text).unwrap();
        let err = store.scan(Kind::Variable).await.unwrap_err();
        assert!(matches!(err, StoreError::Schema { .. }), "{err}");
        assert!(err.to_string().contains(what) && !err.to_string().contains("canary"), "{err}");
    }
}

#[tokio::test]
async fn local_env_round_trips_through_the_airflow_parser() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variables.env");
    std::fs::write(&path, "# kept\nother=1\n").unwrap();
    let store = local(Some(&path), None);
    let values = [
        ("spaces", "  a b  "),
        ("eq", "x=y"),
        ("quotes", "'q' \"d\""),
        ("hash", "#x"),
        ("dollar", "$HOME"),
        ("tab", "\t"),
    ];
    write_all(&store, &values.map(|(k, v)| Entry::variable(k, v))).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# kept\nother=1\n"), "{text}");
    let parsed: HashMap<String, String> = local_filesystem::parse_airflow_env(&text).unwrap().into_iter().collect();
    for (k, v) in values {
        assert_eq!(parsed[k], v);
    }
    // A value without shell-special characters also reads the same in dotenvy.
    let dv: HashMap<String, String> = dotenvy::from_read_iter(text.as_bytes()).filter_map(Result::ok).collect();
    assert_eq!(dv["eq"], "x=y");
}

#[tokio::test]
async fn local_env_refuses_what_airflow_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variables.env");
    let store = local(Some(&path), Some(&dir.path().join("connections.env")));
    let canary = "canary-8c1";
    for brk in ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\u{85}", "\u{2028}", "\u{2029}"] {
        let e = Entry::variable("v", format!("{canary}{brk}tail"));
        let err = store.write(&e, &Precondition::Any).await.unwrap_err();
        assert_eq!(item_error_kind(&err, &e.id), ItemErrorKind::NotRepresentable, "{brk:?}");
        assert!(!err.to_string().contains(canary), "{err}");
    }
    let e = Entry::variable("empty", "");
    assert_eq!(
        item_error_kind(&store.write(&e, &Precondition::Any).await.unwrap_err(), &e.id),
        ItemErrorKind::NotRepresentable
    );
    for id in ["#hash", "  #indented", "a=b", "line\nbreak", "ls\u{2028}"] {
        let e = Entry::variable(id, "v");
        assert!(matches!(store.locate(&e.id), Placement::Invalid(_)), "{id:?}");
        assert_eq!(
            item_error_kind(&store.write(&e, &Precondition::Any).await.unwrap_err(), &e.id),
            ItemErrorKind::InvalidName
        );
    }
    let c = Entry::connection("a=b", Connection { conn_type: Some("http".into()), ..Default::default() });
    assert_eq!(
        item_error_kind(&store.write(&c, &Precondition::Any).await.unwrap_err(), &c.id),
        ItemErrorKind::InvalidName
    );
    store.flush().await.unwrap();
    assert!(!path.exists(), "nothing was accepted, so nothing was written");
}

#[tokio::test]
async fn broken_files_are_store_errors_without_values() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in
        [("v.json", "{\"k\": \"canary-9\""), ("v.yaml", "k: \"canary-9\n  - [\n"), ("l.json", "[\"canary-9\"]")]
    {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let store = local(Some(&path), None);
        let err = store.scan(Kind::Variable).await.unwrap_err();
        assert!(matches!(err, StoreError::Schema { .. }), "{name}: {err}");
        assert!(!err.to_string().contains("canary"), "{err}");
        // A file Airflow cannot read is never overwritten.
        store.write(&Entry::variable("x", "y"), &Precondition::Any).await.unwrap();
        assert!(store.flush().await.is_err(), "{name}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

#[tokio::test]
async fn local_connections_accept_airflow_dict_forms_and_flag_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connections.json");
    std::fs::write(
        &path,
        r#"{"mismatch": {"conn_id": "other", "conn_type": "http"},
            "both": {"conn_type": "http", "extra": "{}", "extra_dejson": {}},
            "number": 5,
            "list": ["http://h"]}"#,
    )
    .unwrap();
    let store = local(None, Some(&path));
    let inv = store.scan(Kind::Connection).await.unwrap();
    for id in ["mismatch", "both", "number", "list"] {
        let err = inv.error(&ItemId::connection(id)).unwrap_or_else(|| panic!("{id} should be an item error"));
        assert_eq!(err.kind, ItemErrorKind::Unparseable, "{id}");
    }
}

/// Connections through a field dict: needs the connection codec (`to_fields` / `from_fields`).
#[tokio::test]
async fn local_json_and_yaml_connections_are_field_dicts() {
    let dir = tempfile::tempdir().unwrap();
    let conn = conformance::sample_connection();
    for name in ["c.json", "c.yaml"] {
        let path = dir.path().join(name);
        let store = local(None, Some(&path));
        write_all(&store, &[Entry::connection("pg", conn.clone())]).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"port\": 5432"), "{name}: port must be an int:\n{text}");
        assert!(!text.contains("conn_id"), "{name}: no conn_id key");
        let inv = store.scan(Kind::Connection).await.unwrap();
        let got = inv.get(&ItemId::connection("pg")).and_then(Entry::as_connection).expect("connection back");
        assert!(airflow_secrets_sync::airflow::connection::equivalent(got, &conn), "{name}: changed on the way back");
    }
}

#[tokio::test]
async fn env_file_connections_are_json_or_uri() {
    let dir = tempfile::tempdir().unwrap();
    let conn = conformance::sample_connection();
    for (format, starts) in [(EnvConnectionFormat::Json, "'{"), (EnvConnectionFormat::Uri, "'postgres://")] {
        let (store, path) = env_file(&dir, format);
        write_all(&store, &[Entry::connection("pg", conn.clone())]).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("AIRFLOW_CONN_PG={starts}")), "{format:?}:\n{}", text.len());
        let got = store.read(&[ItemId::connection("pg")]).await.unwrap();
        let got = got.get(&ItemId::connection("pg")).and_then(Entry::as_connection).expect("connection back").clone();
        let mut want = conn.clone();
        if format == EnvConnectionFormat::Uri {
            want.description = None;
        }
        assert!(airflow_secrets_sync::airflow::connection::equivalent(&got, &want), "{format:?}");
        std::fs::remove_file(&path).unwrap();
    }
}

// ---- hardening (issue 16) ----------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_airflow-secrets-sync");

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A `.env` source must never fill `$VAR` / `${VAR}` from the tool's own environment: the real
/// binary runs with the credential set, and neither the target nor the output may hold it.
#[test]
fn env_file_sources_never_expand_the_tools_own_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token = "hvs.canary-token-5e1f";
    let source = dir.path().join("source.env");
    std::fs::write(
        &source,
        "BASE=from-file\nAIRFLOW_VAR_STOLEN=\"${VAULT_TOKEN}\"\nAIRFLOW_VAR_BARE=$VAULT_TOKEN\n\
         AIRFLOW_VAR_FROM_FILE=\"${BASE}/x\"\nAIRFLOW_VAR_LITERAL='$VAULT_TOKEN'\nAIRFLOW_VAR_ESCAPED=\"\\${VAULT_TOKEN}\"\n",
    )
    .unwrap();
    let target = dir.path().join("variables.json");
    let cfg = format!(
        "[source]\nkind = \"env\"\nsource = \"file\"\npath = {}\n\n[target]\nkind = \"local_files\"\n\
         variables_file_path = {}\n\n[state]\npath = {}\nsnapshot_key = {}\n",
        toml_str(&source.display().to_string()),
        toml_str(&target.display().to_string()),
        toml_str(&dir.path().join("state.db").display().to_string()),
        toml_str("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
    );
    std::fs::write(dir.path().join("config.toml"), cfg).unwrap();
    let out = Command::new(BIN)
        .args(["migrate", "--apply", "--skip-errored", "--only", "variables"])
        .current_dir(dir.path())
        .env("VAULT_TOKEN", token)
        .env("VAULT", token)
        .env("BASE", token)
        .env("NO_COLOR", "1")
        .env_remove("AIRFLOW_SECRETS_SYNC_CONFIG")
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!printed.contains(token), "the tool's credential was printed:\n{printed}");
    let written = std::fs::read_to_string(&target).unwrap_or_else(|e| panic!("no target ({e}):\n{printed}"));
    assert!(!written.contains(token), "the tool's credential reached the target:\n{written}");
    let back: HashMap<String, String> = serde_json::from_str(&written).unwrap();
    assert_eq!(back.get("from_file").map(String::as_str), Some("from-file/x"), "{written}");
    assert_eq!(back.get("literal").map(String::as_str), Some("$VAULT_TOKEN"));
    assert_eq!(back.get("escaped").map(String::as_str), Some("${VAULT_TOKEN}"));
    for id in ["stolen", "bare"] {
        assert!(!back.contains_key(id), "{id} was migrated: {written}");
        assert!(printed.contains(id), "the refusal names {id}:\n{printed}");
    }
}

/// The same file read by the store: substitutions resolve against the file only (earlier lines, as
/// `sh` reads it), a name the file does not define is refused by item, and the error holds no value.
#[tokio::test]
async fn env_file_substitutions_resolve_only_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = env_file(&dir, EnvConnectionFormat::Json);
    let path_value = std::env::var("PATH").expect("PATH is set");
    std::fs::write(
        &path,
        "export HOST_PART=db.internal\nEMPTY=\nAIRFLOW_VAR_A=\"${HOST_PART}:5432\"\nAIRFLOW_VAR_B=$EMPTY-x\n\
         AIRFLOW_VAR_C=\"${PATH}\"\nAIRFLOW_VAR_D=\"pa$sw0rd-canary\"\nAIRFLOW_VAR_E=${AIRFLOW_VAR_A}/y\n\
         UNRELATED=$PATH\nAIRFLOW_VAR_F=${UNRELATED}\nAIRFLOW_VAR_LATER=${DEFINED_AFTER}\nDEFINED_AFTER=1\n",
    )
    .unwrap();
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&inv, "a"), "db.internal:5432");
    assert_eq!(variable_value(&inv, "b"), "-x");
    assert_eq!(variable_value(&inv, "e"), "db.internal:5432/y");
    for id in ["c", "d", "f", "later"] {
        let err = inv.error(&ItemId::variable(id)).unwrap_or_else(|| panic!("{id} must be refused"));
        assert_eq!(err.kind, ItemErrorKind::Unparseable, "{id}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("canary") && !shown.contains("sw0rd") && !shown.contains(&path_value), "{shown}");
    }
    // Airflow's own `.env` format (LocalFilesystemBackend) has no substitution at all: `$` is literal.
    let local_path = dir.path().join("variables.env");
    std::fs::write(&local_path, "x=${PATH}\ny=$HOME\n").unwrap();
    let inv = local(Some(&local_path), None).scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&inv, "x"), "${PATH}");
    assert_eq!(variable_value(&inv, "y"), "$HOME");
}

#[cfg(unix)]
fn owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// Temp files this tool left beside `path` (any name starting with `.<file name>.`).
fn temp_files_beside(path: &Path) -> Vec<PathBuf> {
    let name = format!(".{}.", path.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&name))
        .collect()
}

/// A rewrite keeps the existing file's mode and owner (Airflow may run as another user); a new
/// file is 0600 unless `file_mode` says otherwise. Both writers (env file, local files).
#[cfg(unix)]
#[tokio::test]
async fn file_writers_keep_mode_and_owner_and_create_new_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("variables.json");
    let (envs, env_path) = env_file(&dir, EnvConnectionFormat::Json);
    for p in [&vars, &env_path] {
        std::fs::write(p, if p == &vars { "{}" } else { "" }).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    // Give the files away when we can (root in CI): the owner must survive the rewrite.
    let foreign = std::os::unix::fs::chown(&vars, Some(4242), Some(4343))
        .and_then(|()| std::os::unix::fs::chown(&env_path, Some(4242), Some(4343)))
        .is_ok();
    let before = owner(&vars);
    write_all(&local(Some(&vars), None), &[Entry::variable("a", "canary-10a")]).await;
    write_all(&envs, &[Entry::variable("a", "canary-10a")]).await;
    for p in [&vars, &env_path] {
        assert_eq!(mode(p), 0o640, "{} lost its mode", p.display());
        assert_eq!(owner(p), before, "{} lost its owner", p.display());
        assert!(std::fs::read_to_string(p).unwrap().contains("canary-10a"));
    }
    if !foreign {
        eprintln!("not root: checked that the owner is kept, but not with a foreign owner");
    }

    let fresh = dir.path().join("fresh.yaml");
    write_all(&local(Some(&fresh), None), &[Entry::variable("a", "b")]).await;
    assert_eq!(mode(&fresh), 0o600);
    let cfg: LocalFilesConfig = toml::from_str(&format!(
        "variables_file_path = {}\nfile_mode = \"0640\"\n",
        toml_str(&dir.path().join("shared.json").display().to_string())
    ))
    .unwrap();
    write_all(&LocalFilesStore::new(&cfg).unwrap(), &[Entry::variable("a", "b")]).await;
    assert_eq!(mode(&dir.path().join("shared.json")), 0o640);
    let bad = toml::from_str::<LocalFilesConfig>("variables_file_path = \"v.json\"\nfile_mode = \"0999\"\n");
    assert!(bad.is_err(), "an invalid mode is a configuration error");
    let cfg: EnvConfig = toml::from_str(&format!(
        "source = \"file\"\npath = {}\nfile_mode = \"0604\"\n",
        toml_str(&dir.path().join("new.env").display().to_string())
    ))
    .unwrap();
    write_all(&EnvStore::new(&cfg).unwrap(), &[Entry::variable("a", "b")]).await;
    assert_eq!(mode(&dir.path().join("new.env")), 0o604);
}

/// A symlinked file is never silently replaced by a regular file (nor written through): the write
/// is refused, naming the path, and both the link and its target stay as they were.
#[cfg(unix)]
#[tokio::test]
async fn file_writers_refuse_to_replace_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.json");
    std::fs::write(&real, "{\"keep\": \"me\"}").unwrap();
    let link = dir.path().join("variables.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = local(Some(&link), None);
    assert_eq!(variable_value(&store.scan(Kind::Variable).await.unwrap(), "keep"), "me", "reading follows it");
    store.write(&Entry::variable("a", "canary-10b"), &Precondition::Any).await.unwrap();
    let err = store.flush().await.unwrap_err();
    assert!(err.to_string().contains("symbolic link") && !err.to_string().contains("canary"), "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "{\"keep\": \"me\"}");

    let env_real = dir.path().join("real.env");
    std::fs::write(&env_real, "A=1\n").unwrap();
    let env_link = dir.path().join("airflow.env");
    std::os::unix::fs::symlink(&env_real, &env_link).unwrap();
    let (envs, _) = env_file(&dir, EnvConnectionFormat::Json);
    envs.write(&Entry::variable("a", "canary-10b"), &Precondition::Any).await.unwrap();
    assert!(envs.flush().await.unwrap_err().to_string().contains("symbolic link"));
    assert_eq!(std::fs::read_to_string(&env_real).unwrap(), "A=1\n");
}

/// The two-file flush either replaces both files or neither: a connections file it cannot rewrite
/// leaves the variables file as it was (so "nothing was written" is true).
#[tokio::test]
async fn a_two_file_flush_that_fails_writes_neither_file() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("variables.json");
    let conns = dir.path().join("connections.json");
    std::fs::write(&vars, "{\"old\": \"value\"}").unwrap();
    std::fs::write(&conns, "{\"broken\": ").unwrap();
    let store = local(Some(&vars), Some(&conns));
    store.write(&Entry::variable("new", "canary-10c"), &Precondition::Any).await.unwrap();
    let c = Connection { conn_type: Some("http".into()), host: Some("h".into()), ..Default::default() };
    store.write(&Entry::connection("c", c), &Precondition::Any).await.unwrap();
    assert!(store.flush().await.is_err());
    assert_eq!(std::fs::read_to_string(&vars).unwrap(), "{\"old\": \"value\"}", "the variables file was replaced");
    assert!(temp_files_beside(&vars).is_empty() && temp_files_beside(&conns).is_empty());
}

/// kill -9 between writing the temp files and renaming them leaves plaintext beside the target;
/// the next run removes it (and an old one is removed as soon as a store opens the file).
#[cfg(unix)]
#[test]
fn a_killed_flush_leaves_no_plaintext_temp_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let canary = "canary-10d-killed";
    let source = dir.path().join("source.env");
    std::fs::write(&source, format!("AIRFLOW_VAR_K='{canary}'\n")).unwrap();
    let target = dir.path().join("variables.json");
    let cfg = format!(
        "[source]\nkind = \"env\"\nsource = \"file\"\npath = {}\n\n[target]\nkind = \"local_files\"\n\
         variables_file_path = {}\n\n[state]\npath = {}\nsnapshot_key = {}\n",
        toml_str(&source.display().to_string()),
        toml_str(&target.display().to_string()),
        toml_str(&dir.path().join("state.db").display().to_string()),
        toml_str("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
    );
    std::fs::write(dir.path().join("config.toml"), cfg).unwrap();
    let run = |fault: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["migrate", "--apply", "--only", "variables"]).current_dir(dir.path()).env("NO_COLOR", "1");
        if fault {
            cmd.env("AIRFLOW_SECRETS_SYNC_FAULT_ABORT_BEFORE_RENAME", "1");
        }
        cmd.output().unwrap()
    };
    let out = run(true);
    assert!(!out.status.success(), "the fault point did not fire");
    let left = temp_files_beside(&target);
    assert_eq!(left.len(), 1, "the killed run left its temp file: {left:?}");
    assert!(std::fs::read_to_string(&left[0]).unwrap().contains(canary), "the scenario needs plaintext in it");
    assert_eq!(mode(&left[0]), 0o600, "a temp file is 0600 while it holds plaintext");
    let out = run(false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(temp_files_beside(&target).is_empty(), "{:?}", temp_files_beside(&target));
    assert!(std::fs::read_to_string(&target).unwrap().contains(canary));

    // A stale temp file (older than any write in flight) goes as soon as a store opens the path.
    let stale = dir.path().join(".variables.json.airflow-secrets-sync-0123abcd.tmp");
    std::fs::write(&stale, canary).unwrap();
    let f = std::fs::File::options().write(true).open(&stale).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).unwrap();
    drop(f);
    let keep = dir.path().join(".variables.json.unrelated");
    std::fs::write(&keep, "not ours").unwrap();
    let _store = local(Some(&target), None);
    assert!(!stale.exists(), "a stale temp file of this tool survived opening the store");
    assert!(keep.exists(), "only this tool's temp files are removed");
}

/// What PyYAML's safe_load reads from `path`, as JSON (None when PyYAML is not installed).
fn pyyaml_reads(path: &Path) -> Option<serde_json::Value> {
    // What JSON cannot hold (inf, nan, dates, bytes) becomes a one-element list of its repr().
    let check = "import sys, yaml, json, math, datetime\n\
                 def fix(v):\n\
                 \x20   if isinstance(v, float) and not math.isfinite(v): return [repr(v)]\n\
                 \x20   if isinstance(v, (datetime.date, bytes, set)): return [repr(v)]\n\
                 \x20   if isinstance(v, dict): return {k: fix(x) for k, x in v.items()}\n\
                 \x20   if isinstance(v, list): return [fix(x) for x in v]\n\
                 \x20   return v\n\
                 d = yaml.safe_load(open(sys.argv[1], encoding='utf-8'))\n\
                 sys.stdout.write(json.dumps(fix(d)))";
    match Command::new("python3").arg("-c").arg(check).arg(path).output() {
        Ok(out) if out.status.success() => Some(serde_json::from_slice(&out.stdout).unwrap()),
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named 'yaml'") => None,
        Ok(out) => panic!("PyYAML rejected the file: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => None,
    }
}

/// A sync rewrites only the entries it changes: `x: 1.5e3` (the string "1.5e3" to PyYAML) and
/// every other untouched entry, comment and blank line stay byte-identical, and the plain scalars
/// are read with YAML 1.1 rules (`1.5e3`, `1e3`, `0o17` are strings; `yes`, `0x1F` are not).
#[tokio::test]
async fn local_yaml_rewrites_keep_untouched_entries_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variables.yaml");
    let before = "# Airflow variables\nx: 1.5e3\ne: 1e3\nflag: yes  # a bool to PyYAML\nlist: [1, 2,\n   3]\n\
                  block: |\n  canary-11 text\n\nquoted: 'keep'\nold: \"replace me\"\ngone: bye\nhex: 0x1F\nlast: 0o17";
    std::fs::write(&path, before).unwrap();
    let store = local(Some(&path), None);
    let inv = store.scan(Kind::Variable).await.unwrap();
    for (id, v) in [("x", "1.5e3"), ("e", "1e3"), ("last", "0o17"), ("block", "canary-11 text\n"), ("quoted", "keep")] {
        assert_eq!(variable_value(&inv, id), v, "{id}");
    }
    for id in ["flag", "hex", "list"] {
        assert!(inv.error(&ItemId::variable(id)).is_some(), "{id} is not a string to PyYAML");
    }
    store.write(&Entry::variable("old", "new"), &Precondition::Any).await.unwrap();
    store.write(&Entry::variable("added", "on"), &Precondition::Any).await.unwrap();
    store.delete(&ItemId::variable("gone")).await.unwrap();
    store.flush().await.unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        after,
        "# Airflow variables\nx: 1.5e3\ne: 1e3\nflag: yes  # a bool to PyYAML\nlist: [1, 2,\n   3]\n\
         block: |\n  canary-11 text\n\nquoted: 'keep'\n\"old\": \"new\"\nhex: 0x1F\nlast: 0o17\n\"added\": \"on\"\n"
    );
    if let Some(back) = pyyaml_reads(&path) {
        assert_eq!(back["x"], "1.5e3");
        assert_eq!(back["old"], "new");
        assert_eq!(back["added"], "on");
        assert_eq!(back["flag"], true);
    }

    // Connections: a nested field dict is replaced as a block, the foreign entry around it kept.
    let conns = dir.path().join("connections.yml");
    let text = "\u{feff}keep:\n  conn_type: http\n  port: 0x50 # hex\nc:\n  conn_type: x\n  host: old\n# about z\nz: 'http://h'\n";
    std::fs::write(&conns, text).unwrap();
    let store = local(None, Some(&conns));
    let c = Connection {
        conn_type: Some("postgres".into()),
        host: Some("db".into()),
        port: Some(5432),
        ..Default::default()
    };
    write_all(&store, &[Entry::connection("c", c.clone())]).await;
    let after = std::fs::read_to_string(&conns).unwrap();
    assert!(after.starts_with("\u{feff}keep:\n  conn_type: http\n  port: 0x50 # hex\n\"c\":\n"), "{after}");
    assert!(after.ends_with("z: 'http://h'\n"), "{after}");
    let inv = store.scan(Kind::Connection).await.unwrap();
    assert_eq!(inv.get(&ItemId::connection("c")).unwrap().as_connection().unwrap(), &c);
    assert_eq!(inv.get(&ItemId::connection("keep")).unwrap().as_connection().unwrap().port, Some(80));
    let store = local(Some(&path), None);

    // A flow-style file cannot be edited in place; written anew, it still means the same.
    std::fs::write(&path, "{x: 1.5e3, y: 1e3, n: 0123, t: 2001-12-14}\n").unwrap();
    write_all(&store, &[Entry::variable("z", "1")]).await;
    let inv = store.scan(Kind::Variable).await.unwrap();
    assert_eq!(variable_value(&inv, "x"), "1.5e3");
    assert_eq!(variable_value(&inv, "y"), "1e3");
    assert!(inv.error(&ItemId::variable("n")).is_some() && inv.error(&ItemId::variable("t")).is_some());
    if let Some(back) = pyyaml_reads(&path) {
        assert_eq!(
            back,
            serde_json::json!({"n": 83, "t": ["datetime.date(2001, 12, 14)"], "x": "1.5e3", "y": "1e3", "z": "1"})
        );
    }
}

/// Every plain scalar is a string exactly when PyYAML's safe_load reads a string (checked against
/// PyYAML itself when it is installed).
#[tokio::test]
async fn local_yaml_types_plain_scalars_exactly_as_pyyaml() {
    let plain = [
        "1.5e3",
        "1e3",
        "1E3",
        "-1e3",
        "1.0e+3",
        "1.e+3",
        "12e03",
        "3.",
        "+.5",
        "._1",
        "0.",
        "0o17",
        "0x1F",
        "0b101",
        "017",
        "09",
        "1_000",
        "1__0",
        "+12",
        "-0",
        "1:20",
        "190:20:30.15",
        "1:70",
        ".inf",
        "-.inf",
        "+.inf",
        ".nan",
        "+.nan",
        ".NaN",
        "yes",
        "Yes",
        "y",
        "n",
        "on",
        "Off",
        "True",
        "tRUE",
        "NULL",
        "nULL",
        "~",
        "",
        "2001-12-14",
        "2001-12-14 21:59:43.10 -5",
        "2001-1-1",
        "2001-12-14t21:59:43Z",
        "abc",
        "a b",
        "<<x",
        "0x",
        "0b2",
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variables.yaml");
    let text: String = plain.iter().enumerate().map(|(i, p)| format!("v{i:02}: {p}\n")).collect();
    std::fs::write(&path, &text).unwrap();
    let inv = local(Some(&path), None).scan(Kind::Variable).await.unwrap();
    let Some(back) = pyyaml_reads(&path) else {
        eprintln!("PyYAML not installed: skipped");
        return;
    };
    for (i, p) in plain.iter().enumerate() {
        let id = format!("v{i:02}");
        let ours =
            inv.get(&ItemId::variable(&id)).map(|e| e.as_variable().unwrap().value.expose_plaintext().to_string());
        let theirs = back[&id].as_str().map(str::to_string);
        assert_eq!(ours, theirs, "{p:?}: PyYAML reads {}", back[&id]);
    }
    // A plain `=` (YAML 1.1's value key) makes safe_load raise: Airflow reads nothing from the file.
    std::fs::write(
        &path,
        "a: x
b: =
",
    )
    .unwrap();
    let err = local(Some(&path), None).scan(Kind::Variable).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema { .. }), "{err}");
}
