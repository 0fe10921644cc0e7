# Read-only policy for Airflow's VaultBackend (default layout: mount "secret", KV v2).
# Airflow issues only GET /v1/secret/data/{connections,variables}/<id>; it never lists.
# Used by tests/vault.rs to show Airflow can read what airflow-secrets-sync wrote.

path "secret/data/variables/*" {
  capabilities = ["read"]
}
path "secret/data/connections/*" {
  capabilities = ["read"]
}
# Only if you use Airflow's config_path (not synced by airflow-secrets-sync):
# path "secret/data/config/*" {
#   capabilities = ["read"]
# }
