//! The JSON connection reader and writer: no panics, and what we write reads back.
#![no_main]
use airflow_secrets_sync::airflow::connection::{Reader, equivalent, from_json, to_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for r in Reader::ALL {
            if let Ok(c) = from_json(s, r) {
                let back = from_json(to_json(&c).expose_plaintext(), r).expect("our JSON reads back");
                assert!(equivalent(&c, &back));
            }
        }
    }
});
