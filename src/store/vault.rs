//! HashiCorp Vault, as `airflow.providers.hashicorp.secrets.vault.VaultBackend` reads it. (Skeleton.)
