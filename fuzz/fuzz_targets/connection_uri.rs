//! The URI parser with every reader's semantics, and our writer on what it parsed: no panics.
#![no_main]
use airflow_secrets_sync::airflow::connection::{Reader, parse_uri, to_uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for r in Reader::ALL {
            if let Ok(c) = parse_uri(s, r) {
                let _ = parse_uri(to_uri(&c).expose_plaintext(), r);
            }
        }
    }
});
