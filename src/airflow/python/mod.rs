//! Ports of the Python behaviour Airflow's formats depend on: the standard library (Python 3.11,
//! the interpreter the vectors were recorded with) and PyYAML 6's `safe_load` (YAML 1.1).

pub mod builtins;
pub mod json;
pub mod urllib;
pub mod yaml11;
