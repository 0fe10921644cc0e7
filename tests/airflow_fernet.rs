//! `airflow::fernet` against real Airflow: every vector in `tests/data/fernet.json` is checked
//! (the suites iterate over the file, so a new vector is tested without touching this file, and a
//! failure names the case), plus rotate, key lookup order, interop with fernet-rs and leak canaries.

use std::collections::HashMap;

use airflow_secrets_sync::airflow::fernet::{
    AirflowFernet, DecryptError, ENV_FERNET_KEY, ENV_FERNET_KEY_CMD, ENV_FERNET_KEY_SECRET,
    KeySource, ResolvedKey, encrypt_from_parts, resolve_key,
};
use airflow_secrets_sync::model::SecretValue;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The two Airflow versions the vectors were recorded with.
const AIRFLOW_LABELS: [&str; 2] = ["airflow_3.3.2", "airflow_2.10.5"];
/// The timestamp of the vectors' `decrypts_token_from_*` tokens (gen_fernet.py `TS`).
const TS: u64 = 1_700_000_000;

struct Vectors {
    json: Value,
}

impl Vectors {
    fn load() -> Self {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/fernet.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Self {
            json: serde_json::from_str(&text).expect("fernet.json is JSON"),
        }
    }

    fn cases(&self, section: &str) -> &[Value] {
        let cases = self.json[section]
            .as_array()
            .unwrap_or_else(|| panic!("no {section}"));
        assert!(
            !cases.is_empty(),
            "{section} is empty: nothing would be tested"
        );
        cases
    }

    /// Key by name (`A`, `B`, `C`) in its urlsafe form.
    fn key(&self, name: &str) -> &str {
        self.json["keys"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no key {name}"))
    }

    fn key_names(&self) -> Vec<&str> {
        self.json["keys"]
            .as_object()
            .expect("keys")
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn raw_key(&self, name: &str) -> [u8; 32] {
        let hex = self.json["keys_raw_hex"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no raw {name}"));
        unhex(hex).try_into().expect("32-byte key")
    }

    /// `decrypt_with` ("A,B") → the Airflow `fernet_key` string.
    fn key_string(&self, names: &str) -> String {
        names
            .split(',')
            .map(|n| self.key(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The token the key-string cases decrypt: `make_token(name, b"from <name>", TS, ZERO_IV)`.
    fn token_from(&self, name: &str) -> String {
        encrypt_from_parts(
            &self.raw_key(name),
            format!("from {name}").as_bytes(),
            TS,
            [0; 16],
        )
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fernet(key_string: &str) -> AirflowFernet {
    AirflowFernet::from_key_string(&SecretValue::from(key_string)).expect("key string builds")
}

/// The raw bytes of a canonical token, to read its timestamp and IV.
fn token_bytes(token: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .expect("canonical token")
}

fn token_timestamp(token: &str) -> u64 {
    u64::from_be_bytes(token_bytes(token)[1..9].try_into().unwrap())
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Run `check` on every case; report all failures at once, each under its case name.
fn check_every_case(v: &Vectors, section: &str, check: fn(&Vectors, &Value) -> Result<(), String>) {
    let cases = v.cases(section);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let name = case["name"].as_str().unwrap_or("<unnamed>");
            check(v, case).err().map(|why| format!("  {name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {section} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A plaintext as the vectors give it: a string, or `{sha256_of_utf8, length}` when long.
fn plaintext_matches(expected: &Value, got: &str) -> Result<(), String> {
    match expected {
        Value::String(s) => ensure!(
            s == got,
            "plaintext differs ({} bytes expected, {} got)",
            s.len(),
            got.len()
        ),
        Value::Object(o) => {
            ensure!(
                o["sha256_of_utf8"] == sha256_hex(got).as_str(),
                "plaintext sha256 differs"
            );
            ensure!(
                o["length"] == got.chars().count(),
                "plaintext length differs"
            );
        }
        other => return Err(format!("unexpected plaintext form {other}")),
    }
    Ok(())
}

/// Which error we promise for the known negative vectors. A new negative vector only has to fail
/// (with `WrongKey` or `Corrupt`); add it here to pin its kind.
fn promised_error(name: &str) -> Option<DecryptError> {
    use DecryptError::{Corrupt, WrongKey};
    Some(match name {
        "made_by_key_B__decrypt_with_A" | "wrong_key_token_from_C" => WrongKey,
        // Tampering keeps the structure; only the HMAC notices, exactly like a wrong key.
        "tampered_ciphertext_byte" | "tampered_hmac_last_byte" | "tampered_timestamp_byte" => {
            WrongKey
        }
        "wrong_version_byte_0x81"
        | "truncated_token"
        | "missing_padding_stripped"
        | "empty_token"
        | "not_base64_garbage"
        | "plaintext_not_token" => Corrupt,
        _ => return None,
    })
}

fn check_token_case(v: &Vectors, c: &Value) -> Result<(), String> {
    let name = c["name"].as_str().unwrap_or_default();
    let token = c["token"].as_str().ok_or("no token")?;
    let expected = c["expected"].as_str().ok_or("no expected")?;
    let decrypt_with = c["decrypt_with"].as_str().ok_or("no decrypt_with")?;

    // The recording itself must agree with `expected` everywhere, or the vector is suspect.
    for who in std::iter::once("cryptography_MultiFernet").chain(AIRFLOW_LABELS) {
        let outcome = &c["observed"][who]["outcome"];
        ensure!(
            outcome == expected,
            "{who} observed {outcome}, but expected is {expected}"
        );
    }

    let f = AirflowFernet::from_key_string(&SecretValue::from(v.key_string(decrypt_with)))
        .map_err(|e| format!("key string {decrypt_with:?} did not build: {e}"))?;
    let got = f.decrypt(token);

    match expected {
        "ok" => {
            let plaintext = got.map_err(|e| format!("expected ok, got {e:?}"))?;
            let plaintext = plaintext.expose_plaintext();
            plaintext_matches(&c["plaintext"], plaintext)?;
            for who in std::iter::once("cryptography_MultiFernet").chain(AIRFLOW_LABELS) {
                plaintext_matches(&c["observed"][who]["plaintext"], plaintext)
                    .map_err(|e| format!("vs {who}: {e}"))?;
            }

            let key = v.raw_key(c["key_used"].as_str().ok_or("no key_used")?);
            let iv: [u8; 16] = unhex(c["iv_hex"].as_str().ok_or("no iv_hex")?)
                .try_into()
                .map_err(|_| "iv_hex is not 16 bytes")?;
            let timestamp = c["timestamp"].as_u64().ok_or("timestamp is not a u64")?;
            let input = c["encrypted_plaintext"]
                .as_str()
                .ok_or("no encrypted_plaintext")?;
            let reproduced = encrypt_from_parts(&key, input.as_bytes(), timestamp, iv);

            if name.starts_with("token_") {
                // A lenient variant derived from a canonical token: prove it really is a variant
                // (so leniency is what is being tested) and that the canonical form matches.
                ensure!(
                    reproduced != token,
                    "lenient case is identical to the canonical token"
                );
                if let Some(original) = c["token_urlsafe_original"].as_str() {
                    ensure!(reproduced == original, "canonical token not reproduced");
                }
                ensure!(
                    f.decrypt(&reproduced)
                        .ok()
                        .as_ref()
                        .map(SecretValue::expose_plaintext)
                        == Some(plaintext),
                    "canonical token decrypts differently"
                );
            } else {
                ensure!(
                    reproduced == token,
                    "encrypt_from_parts did not reproduce the token byte for byte"
                );
            }
        }
        "error" => {
            let err = match got {
                Ok(_) => return Err("expected an error, but it decrypted".into()),
                Err(e) => e,
            };
            ensure!(
                err != DecryptError::NoKey,
                "NoKey with a real key configured"
            );
            if let Some(promised) = promised_error(name) {
                ensure!(err == promised, "got {err:?}, promised {promised:?}");
            }
            let shown = format!("{err} {err:?}");
            ensure!(
                token.len() < 8 || !shown.contains(token),
                "error shows the token"
            );
        }
        other => return Err(format!("unknown expected {other:?}")),
    }
    Ok(())
}

/// Fields that must agree between the two Airflow versions (class and error type differ by name).
const KEY_CASE_FIELDS: [&str; 6] = [
    "builds",
    "is_encrypted",
    "decrypts_token_from_A",
    "decrypts_token_from_B",
    "encrypts_with",
    "error",
];

fn check_key_string_case(v: &Vectors, c: &Value) -> Result<(), String> {
    let key_string = c["key_string"].as_str().ok_or("no key_string")?;
    let [first, second] = AIRFLOW_LABELS.map(|l| &c["observed"][l]);
    for field in KEY_CASE_FIELDS {
        ensure!(
            first[field] == second[field],
            "Airflow versions disagree on {field}"
        );
    }
    let observed = first;
    let built = AirflowFernet::from_key_string(&SecretValue::from(key_string));

    if observed["builds"] != true {
        let err = match built {
            Ok(f) => return Err(format!("Airflow refused this key string, we built {f:?}")),
            Err(e) => e.0,
        };
        ensure!(
            err.starts_with("Could not create Fernet object"),
            "error lacks Airflow's wording: {err}"
        );
        for secret in key_string.split(',').filter(|p| p.trim().len() >= 4) {
            ensure!(!err.contains(secret.trim()), "error shows key material");
        }
        return Ok(());
    }

    let f = built.map_err(|e| format!("Airflow built this key string, we refused: {e}"))?;
    let names = ["A", "B"];

    if observed["is_encrypted"] == false {
        // NullFernet. Airflow's decrypt is the identity (it hands back the token); we refuse
        // instead (spec §10 item 1). The echoed token also pins how `token_from` builds them.
        ensure!(f.is_null(), "should be NullFernet, got {f:?}");
        ensure!(
            f.encrypt(&SecretValue::from("x")).is_none(),
            "NullFernet encrypted"
        );
        for n in names {
            let token = v.token_from(n);
            ensure!(
                observed[format!("decrypts_token_from_{n}")] == token.as_str(),
                "the recorded token from {n} is not the one token_from builds"
            );
            ensure!(
                f.decrypt(&token) == Err(DecryptError::NoKey),
                "token from {n}: not NoKey"
            );
        }
        return Ok(());
    }

    ensure!(!f.is_null(), "should encrypt, got NullFernet");
    for n in names {
        let token = v.token_from(n);
        let want = observed[format!("decrypts_token_from_{n}")]
            .as_str()
            .unwrap_or_default();
        let got = f.decrypt(&token);
        if want == format!("from {n}") {
            ensure!(
                got.as_ref().map(SecretValue::expose_plaintext) == Ok(want),
                "token from {n}: expected it to decrypt, got {got:?}"
            );
        } else if want.starts_with("error: InvalidToken") {
            ensure!(
                got == Err(DecryptError::WrongKey),
                "token from {n}: expected WrongKey, got {got:?}"
            );
        } else {
            return Err(format!("unknown observation for token from {n}: {want}"));
        }
    }

    // `encrypts_with`: exactly these single keys open what this Fernet encrypts.
    let encrypts_with: Vec<&str> = observed["encrypts_with"]
        .as_array()
        .ok_or("no encrypts_with")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let token = f
        .encrypt(&SecretValue::from("probe"))
        .ok_or("did not encrypt")?;
    for n in v.key_names() {
        let opens = fernet(v.key(n)).decrypt(&token).is_ok();
        ensure!(
            opens == encrypts_with.contains(&n),
            "key {n} {} our token, Airflow's encrypts_with is {encrypts_with:?}",
            if opens { "opens" } else { "does not open" }
        );
    }
    Ok(())
}

#[test]
fn every_token_case() {
    check_every_case(&Vectors::load(), "token_cases", check_token_case);
}

#[test]
fn every_key_string_case() {
    check_every_case(&Vectors::load(), "key_string_cases", check_key_string_case);
}

#[test]
fn spec_2_1_vectors_reproduce() {
    let key = unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    let key: [u8; 32] = key.try_into().unwrap();
    assert_eq!(
        encrypt_from_parts(&key, b"hello", TS, [0; 16]),
        "gAAAAABlU_EAAAAAAAAAAAAAAAAAAAAAAGWd0uwn1ncxmt8qIH-KbuDd_bs1rItA1RpliYutr7m4YwxA5XPHCxRtK2Epg3KUkA=="
    );
    let empty = encrypt_from_parts(&key, b"", TS, [0; 16]);
    assert_eq!(token_bytes(&empty).len(), 73);
}

// ---------------------------------------------------------------------------------------------
// encrypt, rotate, interop
// ---------------------------------------------------------------------------------------------

#[test]
fn encrypt_uses_the_first_key_now_and_a_fresh_iv() {
    let v = Vectors::load();
    let f = fernet(&v.key_string("B,A"));
    let value = SecretValue::from("v\u{e9}\n");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let one = f.encrypt(&value).unwrap();
    let two = f.encrypt(&value).unwrap();
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    assert!(one.starts_with("gAAAAA"), "{one}");
    assert_ne!(one, two, "the IV must be random");
    assert_ne!(token_bytes(&one)[9..25], token_bytes(&two)[9..25]);
    assert!((before..=after).contains(&token_timestamp(&one)));
    assert_eq!(fernet(v.key("B")).decrypt(&one), Ok(value.clone()));
    assert_eq!(
        fernet(v.key("A")).decrypt(&one),
        Err(DecryptError::WrongKey)
    );
}

#[test]
fn rotate_reencrypts_with_the_first_key_keeping_the_timestamp() {
    let v = Vectors::load();
    let old_ts = 1_000_000_000;
    let iv = [9u8; 16];
    let old = encrypt_from_parts(&v.raw_key("B"), b"rotate me", old_ts, iv);

    let f = fernet(&v.key_string("A,B"));
    let new = f.rotate(&old).expect("rotates");
    assert_ne!(new, old);
    assert_eq!(
        token_timestamp(&new),
        old_ts,
        "MultiFernet.rotate keeps the timestamp"
    );
    assert_ne!(token_bytes(&new)[9..25], iv, "a fresh IV");
    assert_eq!(
        fernet(v.key("A")).decrypt(&new),
        Ok(SecretValue::from("rotate me"))
    );
    assert_eq!(
        fernet(v.key("B")).decrypt(&new),
        Err(DecryptError::WrongKey)
    );
    assert_ne!(f.rotate(&old).unwrap(), new, "each rotation draws a new IV");

    // Already under the first key: still re-encrypted, timestamp kept.
    let again = f.rotate(&new).unwrap();
    assert_eq!(token_timestamp(&again), old_ts);
    assert_eq!(f.decrypt(&again), Ok(SecretValue::from("rotate me")));

    // Python's rotate accepts lenient input too.
    assert!(
        f.rotate(&format!("  {}\n", old.replace('_', "/").replace('-', "+")))
            .is_ok()
    );
}

#[test]
fn rotate_errors() {
    let v = Vectors::load();
    let from_c = encrypt_from_parts(&v.raw_key("C"), b"x", TS, [0; 16]);
    assert_eq!(
        fernet(&v.key_string("A,B")).rotate(&from_c),
        Err(DecryptError::WrongKey)
    );
    assert_eq!(
        fernet(v.key("A")).rotate("not a token"),
        Err(DecryptError::Corrupt)
    );
    assert_eq!(
        AirflowFernet::null().rotate(&from_c),
        Err(DecryptError::NoKey)
    );
}

#[test]
fn rotate_keeps_non_utf8_plaintext_like_python() {
    let v = Vectors::load();
    let old = encrypt_from_parts(&v.raw_key("B"), &[0xff, 0xfe, 0x00], TS, [0; 16]);
    let f = fernet(&v.key_string("A,B"));
    // Airflow's `.decode()` would raise on this plaintext...
    assert_eq!(f.decrypt(&old), Err(DecryptError::Corrupt));
    // ...but MultiFernet.rotate works on bytes.
    let new = f.rotate(&old).unwrap();
    assert_eq!(f.rotate(&new).map(|t| token_timestamp(&t)), Ok(TS));
}

#[test]
fn interop_with_fernet_rs_both_ways() {
    let v = Vectors::load();
    let theirs = fernet::Fernet::new(v.key("A")).expect("fernet-rs takes key A");
    let ours = fernet(&v.key_string("A,B"));
    for plaintext in ["", "hello", "h\u{e9}llo \u{1f600}", &"x".repeat(70_000)] {
        let token = ours.encrypt(&SecretValue::from(plaintext)).unwrap();
        let opened = theirs
            .decrypt_at_time(&token, None, u64::MAX / 2)
            .expect("fernet-rs opens ours");
        assert_eq!(opened, plaintext.as_bytes());
        let token = theirs.encrypt(plaintext.as_bytes());
        assert_eq!(ours.decrypt(&token), Ok(SecretValue::from(plaintext)));
    }
}

#[test]
fn null_fernet() {
    let f = AirflowFernet::null();
    assert!(f.is_null());
    assert_eq!(f.key_count(), 0);
    assert_eq!(f.encrypt(&SecretValue::from("x")), None);
    assert_eq!(f.decrypt("garbage"), Err(DecryptError::NoKey));
    assert!(fernet("").is_null());
}

// ---------------------------------------------------------------------------------------------
// resolve_key (spec §2.3)
// ---------------------------------------------------------------------------------------------

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn resolve(
    env: &[(&str, &str)],
    cfg_key: Option<&str>,
    cfg_cmd: Option<&str>,
) -> Result<ResolvedKey, String> {
    let cfg_key = cfg_key.map(SecretValue::from);
    resolve_key(&env_of(env), cfg_key.as_ref(), cfg_cmd).map_err(|e| e.0)
}

#[test]
fn resolve_env_empty_is_a_hit_and_beats_everything_later() {
    let v = Vectors::load();
    let r = resolve(
        &[
            (ENV_FERNET_KEY, ""),
            (ENV_FERNET_KEY_CMD, "false"),
            (ENV_FERNET_KEY_SECRET, "k"),
        ],
        Some(v.key("A")),
        Some("false"),
    )
    .unwrap();
    assert_eq!(r.source, KeySource::EnvVar);
    assert_eq!(r.key, SecretValue::from(""));
    assert!(r.fernet().unwrap().is_null());
}

#[test]
fn resolve_env_key_is_expanded() {
    let v = Vectors::load();
    let env = [
        (ENV_FERNET_KEY, "${MY_KEY},$OTHER"),
        ("MY_KEY", v.key("A")),
        ("OTHER", v.key("B")),
    ];
    let r = resolve(&env, None, None).unwrap();
    assert_eq!(r.source, KeySource::EnvVar);
    assert_eq!(r.key.expose_plaintext(), v.key_string("A,B"));
}

#[test]
fn resolve_env_cmd_beats_secret_and_config_and_keeps_the_newline() {
    let v = Vectors::load();
    let cmd = format!("echo '{}'", v.key("B"));
    let r = resolve(
        &[(ENV_FERNET_KEY_CMD, &cmd), (ENV_FERNET_KEY_SECRET, "k")],
        Some(v.key("A")),
        Some("false"),
    )
    .unwrap();
    assert_eq!(r.source, KeySource::EnvCmd);
    assert_eq!(
        r.key.expose_plaintext(),
        format!("{}\n", v.key("B")),
        "stdout unstripped"
    );
    let f = r.fernet().expect("the lenient decoder accepts the newline");
    assert_eq!(
        f.decrypt(&v.token_from("B")),
        Ok(SecretValue::from("from B"))
    );
}

#[test]
fn resolve_secret_is_unsupported_and_not_skipped() {
    let v = Vectors::load();
    let err = resolve(
        &[(ENV_FERNET_KEY_SECRET, "fernet_key")],
        Some(v.key("A")),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains(ENV_FERNET_KEY_SECRET) && err.contains("not supported"),
        "{err}"
    );
}

#[test]
fn resolve_config_key_then_config_cmd_then_nothing() {
    let v = Vectors::load();
    // `false` would fail if it ran: the config key must win without running it.
    let r = resolve(&[], Some(v.key("A")), Some("false")).unwrap();
    assert_eq!(
        (r.source, r.key.expose_plaintext()),
        (KeySource::ConfigKey, v.key("A"))
    );

    let r = resolve(&[], Some(""), Some("false")).unwrap();
    assert_eq!(
        r.source,
        KeySource::ConfigKey,
        "an empty config key is a hit too"
    );
    assert!(r.fernet().unwrap().is_null());

    let cmd = format!("printf %s {}", v.key("A"));
    let r = resolve(&[("UNRELATED", "x")], None, Some(&cmd)).unwrap();
    assert_eq!(
        (r.source, r.key.expose_plaintext()),
        (KeySource::ConfigCmd, v.key("A"))
    );

    let r = resolve(&[], None, None).unwrap();
    assert_eq!(r.source, KeySource::None);
    assert!(r.fernet().unwrap().is_null());
}

#[test]
fn resolve_command_failures_name_the_source_never_the_output_or_arguments() {
    let noisy = "sh -c 'echo CANARY_OUT; echo CANARY_ERR >&2; exit 3'";
    let err = resolve(&[(ENV_FERNET_KEY_CMD, noisy)], None, None).unwrap_err();
    assert!(err.contains(ENV_FERNET_KEY_CMD), "{err}");
    assert!(!err.contains("CANARY"), "{err}");

    let err = resolve(&[], None, Some(noisy)).unwrap_err();
    assert!(
        err.contains("fernet_key_cmd") && !err.contains("CANARY"),
        "{err}"
    );

    let err = resolve(&[], None, Some("/nonexistent/get-key CANARY_ARG")).unwrap_err();
    assert!(
        err.contains("fernet_key_cmd") && !err.contains("CANARY"),
        "{err}"
    );

    let err = resolve(
        &[(ENV_FERNET_KEY_CMD, "echo 'CANARY_UNBALANCED")],
        None,
        None,
    )
    .unwrap_err();
    assert!(
        err.contains(ENV_FERNET_KEY_CMD) && !err.contains("CANARY"),
        "{err}"
    );

    let err = resolve(&[(ENV_FERNET_KEY_CMD, "")], None, None).unwrap_err();
    assert!(err.contains(ENV_FERNET_KEY_CMD), "{err}");
}

#[test]
fn resolved_key_that_does_not_build_names_its_source() {
    let r = resolve(&[(ENV_FERNET_KEY, "Q0FOQVJZX0tFWQ==")], None, None).unwrap();
    let err = r.fernet().unwrap_err().0;
    assert!(
        err.starts_with(ENV_FERNET_KEY) && err.contains("Could not create Fernet object"),
        "{err}"
    );
    assert!(!err.contains("Q0FOQVJZX0tFWQ"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Leak canaries
// ---------------------------------------------------------------------------------------------

#[test]
fn no_debug_or_error_shows_a_key_or_plaintext() {
    let v = Vectors::load();
    let key_a = v.key("A");
    let hex_a = v.json["keys_raw_hex"]["A"].as_str().unwrap();
    let f = fernet(&v.key_string("A,B"));
    let shown = format!("{f:?} {f:#?}");
    assert_eq!(format!("{f:?}"), "AirflowFernet(2 keys)");
    for secret in [key_a, v.key("B"), hex_a, &hex_a[..16]] {
        assert!(!shown.contains(secret), "{shown}");
    }

    let r = resolve(&[(ENV_FERNET_KEY, key_a)], None, None).unwrap();
    let shown = format!("{r:?}");
    assert!(
        !shown.contains(key_a) && !shown.contains(&key_a[..12]),
        "{shown}"
    );

    // Bad key strings: the message never echoes any part of them.
    let canary_key = "Q0FOQVJZX0tFWV8xMjM0NQ=="; // base64 of "CANARY_KEY_12345": 16 bytes
    for key_string in [
        format!("{key_a},{canary_key}"),
        canary_key.to_string(),
        format!("{key_a},CANARYnotbase64"),
        format!("{key_a},,{canary_key}"),
    ] {
        let err =
            AirflowFernet::from_key_string(&SecretValue::from(key_string.as_str())).unwrap_err();
        let shown = format!("{err} {err:?}");
        for secret in [key_a, canary_key, "Q0FOQVJZ", "CANARY"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    // Decrypt errors carry neither the token nor the plaintext inside it.
    let token = encrypt_from_parts(&v.raw_key("C"), b"CANARY_PLAINTEXT", TS, [0; 16]);
    for err in [
        fernet(key_a).decrypt(&token),
        fernet(key_a).decrypt(&token[..40]),
    ] {
        let shown = format!("{:?} {}", err, err.clone().unwrap_err());
        assert!(
            !shown.contains("CANARY") && !shown.contains(&token[..20]),
            "{shown}"
        );
    }
    let opened = fernet(v.key("C")).decrypt(&token).unwrap();
    assert!(!format!("{opened:?}").contains("CANARY"));
}
