//! Airflow's two AWS secrets backends as stores: Secrets Manager ([`secrets_manager`]) and SSM
//! Parameter Store ([`ssm`]), over the plumbing they share ([`common`]: credentials and endpoints,
//! Airflow's AWS kwargs, lookup patterns, ownership tags, SDK failures mapped to `StoreError`).

#[cfg(any(feature = "aws_secrets_manager", feature = "aws_ssm"))]
pub(crate) mod backend;
#[cfg(any(feature = "aws_secrets_manager", feature = "aws_ssm"))]
pub mod common;
#[cfg(feature = "aws_secrets_manager")]
pub mod secrets_manager;
#[cfg(feature = "aws_secrets_manager")]
mod sm_naming;
#[cfg(feature = "aws_ssm")]
pub mod ssm;
