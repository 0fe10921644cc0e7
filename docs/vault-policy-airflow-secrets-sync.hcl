# Least-privilege policy for airflow-secrets-sync writing Airflow's default VaultBackend layout:
# mount_point "secret" (KV v2), connections_path "connections", variables_path "variables".
# Attach it to the AppRole the tool logs in with, e.g.
#   bao policy write airflow-secrets-sync docs/vault-policy-airflow-secrets-sync.hcl
#   bao write auth/approle/role/airflow-secrets-sync token_policies=airflow-secrets-sync token_ttl=1h
# Adjust the mount and paths if your backend_kwargs change them. Used by tests/vault.rs.

# Secret data: read (scan, verify), create and update (writes, check-and-set).
path "secret/data/variables/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/data/connections/*" {
  capabilities = ["create", "read", "update"]
}

# Metadata: list (scan), read (ownership and version before a blind write or a delete),
# create/update (the managed-by custom_metadata), delete (remove every version of what it owns).
path "secret/metadata/variables/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "secret/metadata/connections/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# Token lookup-self and renew-self come with Vault's "default" policy; keep it attached.
