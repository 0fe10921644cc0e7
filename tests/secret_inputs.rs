//! Where secrets come in from the environment: `snapshot_key_cmd` runs like `fernet_key_cmd` (no
//! shell, stdin `/dev/null`), config errors never echo a misplaced value (back-quoted ones
//! included), and the fault-injection variable is honoured only by builds made for the tests.

use airflow_secrets_sync::config::Config;
use airflow_secrets_sync::state::snapshots::SnapshotKey;

const KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn state_with_cmd(cmd: &str) -> Config {
    let text = format!(
        "[source]\nkind = \"env\"\nsource = \"process\"\n[target]\nkind = \"env\"\nsource = \"process\"\n[state]\nsnapshot_key_cmd = {}\n",
        toml::Value::String(cmd.to_string())
    );
    Config::from_toml(&text).unwrap()
}

#[test]
fn snapshot_key_cmd_runs_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran-by-a-shell");
    // Through `sh -c` this prints the key and then runs `touch`; without a shell, `;` and `touch`
    // are arguments of printf, the output is not a key, and nothing else runs.
    let cfg = state_with_cmd(&format!("printf %s {KEY} ; touch {}", marker.display()));
    let result = SnapshotKey::resolve(&cfg.state);
    assert!(!marker.exists(), "snapshot_key_cmd went through a shell");
    let err = result.err().expect("`KEY;touch…` is not a key").to_string();
    assert!(!err.contains(KEY), "{err}");
    // A plain command works, and an explicit `sh -c` is the way to get a shell.
    assert!(SnapshotKey::resolve(&state_with_cmd(&format!("printf %s {KEY}")).state).unwrap().is_some());
    assert!(SnapshotKey::resolve(&state_with_cmd(&format!("sh -c 'printf %s {KEY} | cat'")).state).unwrap().is_some());
}

#[test]
fn snapshot_key_cmd_reads_nothing_from_stdin_and_its_output_is_never_shown() {
    // Succeeds only when its stdin is /dev/null.
    let cmd = format!("sh -c 'test \"$(readlink /proc/self/fd/0)\" = /dev/null && printf %s {KEY}'");
    let key = SnapshotKey::resolve(&state_with_cmd(&cmd).state).unwrap().expect("a key");
    assert!(!key.id().is_empty());
    // A failing command: its stdout and stderr are not in the error.
    let cmd = "sh -c 'echo canary-out-6f1; echo canary-err-6f2 >&2; exit 4'";
    let err = SnapshotKey::resolve(&state_with_cmd(cmd).state).err().expect("exit 4 fails").to_string();
    assert!(err.contains("snapshot_key_cmd") && !err.contains("canary"), "{err}");
}

#[test]
fn the_snapshot_key_in_config_is_a_secret_value() {
    let text = format!("[source]\nkind = \"env\"\nsource = \"process\"\n[target]\nkind = \"env\"\nsource = \"process\"\n[state]\nsnapshot_key = \"{KEY}\"\n");
    let cfg = Config::from_toml(&text).unwrap();
    let key: &airflow_secrets_sync::secret::SecretValue = cfg.state.snapshot_key.as_ref().unwrap();
    assert_eq!(key.expose_plaintext(), KEY);
    assert!(!format!("{key:?} {:?}", cfg.state).contains(KEY));
}

/// serde names an unknown variant in back-quotes: a credential written as `type`, or as the value
/// of an enum option, must not come back in the error.
#[test]
fn unknown_variants_do_not_echo_the_value() {
    use airflow_secrets_sync::config::StoreSpec;
    use airflow_secrets_sync::store::registry;
    const CANARY: &str = "hvs.canary-variant-3a9";
    for (what, text) in [
        ("auth type", format!("kind = \"vault\"\nurl = \"http://127.0.0.1:1\"\nauth = {{ type = \"{CANARY}\" }}\n")),
        ("connection_format", format!("kind = \"vault\"\nurl = \"http://127.0.0.1:1\"\nconnection_format = \"{CANARY}\"\n")),
        ("unknown field", format!("kind = \"vault\"\nurl = \"http://127.0.0.1:1\"\n\"{CANARY}\" = 1\n")),
    ] {
        let spec = StoreSpec(toml::from_str(&text).unwrap());
        let err = registry::parse(&spec).err().unwrap_or_else(|| panic!("{what}: must be refused")).to_string();
        assert!(!err.contains(CANARY), "{what}: {err}");
    }
    let file = format!("[source]\nkind = \"env\"\nsource = \"process\"\n[select]\nonly = \"{CANARY}\"\n");
    let err = Config::from_toml(&file).unwrap_err().to_string();
    assert!(err.contains("unknown variant") && err.contains("`variables`") && !err.contains(CANARY), "{err}");
}

/// `AIRFLOW_SECRETS_SYNC_FAULT_ABORT_AFTER` and `…_FAULT_KILL_AT` kill the process mid-apply: only
/// a build with the `fault-injection` feature honours them, and no default or release build has it.
#[test]
fn fault_injection_is_a_test_only_feature() {
    let manifest: toml::Table = toml::from_str(include_str!("../Cargo.toml")).unwrap();
    let features = manifest["features"].as_table().expect("[features]");
    assert!(features.contains_key("fault-injection"), "no `fault-injection` feature gates the variable");
    for (name, implied) in features {
        let implied: Vec<&str> = implied.as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert!(!implied.contains(&"fault-injection"), "feature `{name}` turns fault injection on");
    }
    let dockerfile = include_str!("../Dockerfile");
    assert!(!dockerfile.contains("all-features") && !dockerfile.contains("fault-injection"), "the image must not build it in");
    // The named kill points (AIRFLOW_SECRETS_SYNC_FAULT_KILL_AT) sit behind the same feature, not
    // behind debug_assertions (a plain `cargo build` would honour them).
    let fault = include_str!("../src/fault.rs");
    assert!(fault.contains("#[cfg(feature = \"fault-injection\")]") && !fault.contains("debug_assertions"), "src/fault.rs");
    // These tests run under `cargo test --all-features`, as tests/crash.rs needs.
    assert_eq!(airflow_secrets_sync::store::layered::FAULT_INJECTION, cfg!(feature = "fault-injection"));
}
