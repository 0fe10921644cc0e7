//! What Airflow defines, and nothing else: Fernet as Airflow builds it, the connection URI and
//! JSON codecs, the metastore schema, and the env-var naming rules.
//! The contract is `shared/spec/airflow-formats.md`; the vectors in `tests/data/` (recorded from real Airflow) test it.

pub mod connection;
pub mod env;
pub mod fidelity;
pub mod fernet;
pub mod metastore;
pub mod python;

/// The characters Python's `str.splitlines()` breaks on (Airflow's `.env` parser splits on them).
pub fn is_py_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}')
}
