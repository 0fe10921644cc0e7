//! The fuzz targets of `fuzz/` on generated inputs under stable `cargo test` (the coverage-guided
//! runs need nightly: `scripts/fuzz`). Seeds come from the Airflow vectors; each is mutated many
//! times with a fixed seed. No input may panic the URI parser, the JSON reader or the Fernet
//! decoder, and no error may echo a canary planted in the input.

use airflow_secrets_sync::airflow::connection::{Reader, equivalent, from_json, parse_uri, to_json, to_uri};
use airflow_secrets_sync::airflow::fernet::AirflowFernet;
use airflow_secrets_sync::model::SecretValue;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CANARY: &str = "Zq9canaryXw";
const ROUNDS: usize = 3000;

fn vectors(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn mutate(rng: &mut StdRng, seed: &str) -> String {
    const ALPHABET: &[char] = &[
        ':', '/', '@', '?', '#', '[', ']', '%', '+', '&', '=', ';', '{', '}', '"', '\\', ' ', '\n', 'a', '0', '\u{e9}', '\u{1f600}',
    ];
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..rng.random_range(1..6) {
        let at = if chars.is_empty() { 0 } else { rng.random_range(0..=chars.len()) };
        match rng.random_range(0..5) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => chars.insert(at, ALPHABET[rng.random_range(0..ALPHABET.len())]),
            2 => chars.splice(at..at, CANARY.chars()).for_each(drop),
            3 if at < chars.len() => chars[at] = ALPHABET[rng.random_range(0..ALPHABET.len())],
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}

#[test]
fn uri_parser_survives_mutations() {
    let data = vectors("connections.json");
    let seeds: Vec<String> =
        data["uri_cases"].as_array().unwrap().iter().filter_map(|c| c["uri"].as_str().map(String::from)).collect();
    assert!(seeds.len() >= 30);
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..ROUNDS {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        for r in Reader::ALL {
            match parse_uri(&input, r) {
                Ok(c) => {
                    let _ = parse_uri(to_uri(&c).expose_plaintext(), r);
                }
                Err(e) => assert!(!e.to_string().contains(CANARY), "an error echoed its input: {e}"),
            }
        }
    }
}

#[test]
fn json_reader_survives_mutations_and_our_json_reads_back() {
    let seeds = [
        r#"{"conn_type": "postgres", "host": "h", "login": "u", "password": "p", "schema": "db", "port": 5432, "extra": {"a": 1}}"#,
        r#"{"conn_type": "http", "port": "8080", "extra": "{\"x\": \"y\"}", "description": "d"}"#,
        r#"{"uri": "postgres://u:p@h/db"}"#,
    ];
    let mut rng = StdRng::seed_from_u64(11);
    for i in 0..ROUNDS {
        let input = mutate(&mut rng, seeds[i % seeds.len()]);
        for r in Reader::ALL {
            match from_json(&input, r) {
                Ok(c) => {
                    let back = from_json(to_json(&c).expose_plaintext(), r).expect("what we write reads back");
                    assert!(equivalent(&c, &back));
                }
                // A key name is not a value: an unknown key is named (Airflow would reject it too).
                Err(e) if e.to_string().contains("key '") => {}
                Err(e) => assert!(!e.to_string().contains(CANARY), "an error echoed its input: {e}"),
            }
        }
    }
}

#[test]
fn fernet_decoder_survives_mutations() {
    let data = vectors("fernet.json");
    let keys = &data["keys"];
    let f = AirflowFernet::from_key_string(&SecretValue::from(format!(
        "{},{}",
        keys["A"].as_str().unwrap(),
        keys["B"].as_str().unwrap()
    )))
    .unwrap();
    let seeds: Vec<String> =
        data["token_cases"].as_array().unwrap().iter().filter_map(|c| c["token"].as_str().map(String::from)).take(40).collect();
    let mut rng = StdRng::seed_from_u64(13);
    for i in 0..ROUNDS {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        if let Err(e) = f.decrypt(&input) {
            assert!(!e.to_string().contains(CANARY));
        }
        let _ = f.rotate(&input);
        if let Err(e) = AirflowFernet::from_key_string(&SecretValue::from(input.as_str())) {
            assert!(!e.to_string().contains(CANARY), "a key error echoed the key: {e}");
        }
    }
}
