//! What Airflow defines, and nothing else: Fernet as Airflow builds it, the connection URI and
//! JSON codecs, the metastore schema, and the env-var naming rules.
//! The contract is `shared/spec/airflow-formats.md`; `shared/testdata/` vectors test it.

pub mod connection;
pub mod fernet;
pub mod metastore;
