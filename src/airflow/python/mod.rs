//! Ports of the Python standard library behaviour Airflow's formats depend on (Python 3.11, the
//! interpreter the vectors were recorded with).

pub mod builtins;
pub mod json;
pub mod urllib;
