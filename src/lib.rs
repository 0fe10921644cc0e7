//! airflow-secrets-sync: move Apache Airflow Variables and Connections out of the metastore (and
//! env vars) into a real secrets backend, written exactly the way Airflow's backend classes read
//! them.
//!
//! Every place a secret lives is a [`store::Store`]. A migration, a sync, a rollback and a restore
//! are one pipeline:
//!
//! ```text
//!   source Store --scan--> Inventory --+
//!                                      +-- plan::diff --> Plan --(render / save)--> apply --> target Store
//!   target Store --scan--> Inventory --+
//! ```
//!
//! Module map: [`airflow`] knows Airflow's formats and nothing else; [`store`] is the only code that
//! talks to a backend; [`plan`] alone decides what changes; [`apply`] alone writes; [`render`] is
//! the only place values are masked for display; [`pipeline`] is the only run path (migrate,
//! restore, rollback, daemon jobs), which [`app`] (the commands) and [`daemon`] only feed a
//! [`pipeline::RunRequest`]. [`model::SecretValue`] is the only holder of
//! plaintext.

pub mod airflow;
pub mod model;
pub mod secret;
pub mod store;
pub mod app;
pub mod apply;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod fault;
pub mod insight;
pub mod logging;
pub mod pipeline;
pub mod plan;
pub mod planfile;
pub mod render;
pub mod safety;
pub mod schedule;
pub mod state;
pub mod daemon;
