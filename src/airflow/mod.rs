//! What Airflow defines, and nothing else: Fernet as Airflow builds it, the connection URI and
//! JSON codecs, the metastore's schema and SQL, the env-var naming rules, the `.env` files handed
//! to Airflow's containers (dotenvy's format), LocalFilesystemBackend's file formats, and the
//! Python behaviour they rest on (`python/`: urllib, json, PyYAML's YAML 1.1). No I/O: the stores
//! under `crate::store` read and write through these rules.
//! The contract is `shared/spec/airflow-formats.md`; the vectors in `tests/data/` (recorded from real Airflow) test it.

pub mod amazon;
pub mod connection;
pub mod dotenv;
pub mod env;
pub mod fidelity;
pub mod fernet;
pub mod local_filesystem;
pub mod metastore;
pub mod python;

/// The characters Python's `str.splitlines()` breaks on (Airflow's `.env` parser splits on them).
pub fn is_py_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}')
}
