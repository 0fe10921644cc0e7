//! AWS Secrets Manager, as Airflow's `SecretsManagerBackend` reads it. (Skeleton.)
