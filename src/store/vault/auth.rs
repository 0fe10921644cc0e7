//! Logging in to Vault and keeping the token alive: the configured method (token, approle,
//! kubernetes, userpass), renewal before expiry, and a fresh login when a login token died.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;

use super::client::{Failure, build_client, classify, failure_label};
use super::{VaultAuth, VaultStore};
use crate::secret::SecretValue;
use crate::store::StoreError;

/// A logged-in client and when to refresh its token.
pub(super) struct Session {
    pub(super) client: Arc<VaultClient>,
    /// Bumped by every login/renewal, so concurrent failures refresh only once.
    pub(super) generation: u64,
    pub(super) refresh_at: Option<Instant>,
}

impl VaultStore {

    /// Log in with the configured method: a client holding a fresh token, and when to refresh it.
    pub(super) async fn login(&self) -> Result<(Arc<VaultClient>, Option<Instant>), StoreError> {
        let anon = build_client(&self.settings, "").map_err(|m| self.config_error(m))?;
        let login_err = |what: String, e: ClientError| match classify(&e) {
            Failure::Denied | Failure::Backend(_) => {
                StoreError::PermissionDenied { store: self.to_string(), what: format!("login failed: {what}") }
            }
            other => self.error("login", &what, other),
        };
        let auth = match &self.config.auth {
            VaultAuth::Token { token, token_path } => {
                let token = resolve_token(token.as_ref(), token_path.as_deref(), &|k| std::env::var(k).ok())
                    .map_err(|m| self.config_error(m))?;
                let client = build_client(&self.settings, token.expose_plaintext()).map_err(|m| self.config_error(m))?;
                // The TTL decides when to renew; a token that may not look itself up is used as is.
                let refresh_at = match vaultrs::token::lookup_self(&client).await {
                    Ok(info) if info.renewable == Some(true) && info.ttl > 0 => Some(refresh_deadline(info.ttl)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::debug!(store = %self, reason = ?failure_label(&classify(&e)), "token lookup-self failed");
                        None
                    }
                };
                return Ok((Arc::new(client), refresh_at));
            }
            VaultAuth::Approle { role_id, secret_id, auth_mount_point } => {
                let secret = secret_id.as_ref().map(|s| s.expose_plaintext()).unwrap_or("");
                vaultrs::auth::approle::login(&anon, auth_mount_point, role_id, secret)
                    .await
                    .map_err(|e| login_err(format!("approle at auth/{auth_mount_point}/login"), e))?
            }
            VaultAuth::Kubernetes { kubernetes_role, kubernetes_jwt_path, auth_mount_point } => {
                let jwt = std::fs::read_to_string(kubernetes_jwt_path).map(SecretValue::from).map_err(|e| {
                    self.config_error(format!(
                        "cannot read kubernetes_jwt_path {}: {}",
                        kubernetes_jwt_path.display(),
                        e.kind()
                    ))
                })?;
                vaultrs::auth::kubernetes::login(&anon, auth_mount_point, kubernetes_role, jwt.expose_plaintext().trim())
                    .await
                    .map_err(|e| login_err(format!("kubernetes at auth/{auth_mount_point}/login"), e))?
            }
            VaultAuth::Userpass { username, password, auth_mount_point } => {
                vaultrs::auth::userpass::login(&anon, auth_mount_point, username, password.expose_plaintext())
                    .await
                    .map_err(|e| login_err(format!("userpass at auth/{auth_mount_point}/login/{username}"), e))?
            }
        };
        let client = build_client(&self.settings, &auth.client_token).map_err(|m| self.config_error(m))?;
        let refresh_at = (auth.lease_duration > 0).then(|| refresh_deadline(auth.lease_duration));
        Ok((Arc::new(client), refresh_at))
    }

    /// Replace or renew the token, once per generation however many callers saw it fail.
    pub(super) async fn refresh(&self, seen_generation: u64) -> Result<(), StoreError> {
        let _guard = self.login_lock.lock().await;
        let current = {
            let s = self.session.read().unwrap();
            if s.generation != seen_generation {
                return Ok(());
            }
            s.client.clone()
        };
        let (client, refresh_at) = if self.config.auth.can_login() {
            self.login().await?
        } else {
            let auth = vaultrs::token::renew_self(&*current, None).await.map_err(|e| self.error("renew token", "auth/token/renew-self", classify(&e)))?;
            (current, (auth.renewable && auth.lease_duration > 0).then(|| refresh_deadline(auth.lease_duration)))
        };
        let mut s = self.session.write().unwrap();
        *s = Session { client, generation: seen_generation + 1, refresh_at };
        self.reauthentications.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(store = %self, method = self.config.auth.method(), "vault token refreshed");
        Ok(())
    }

    /// The current client, renewing first if the token is near its end.
    pub(super) async fn current(&self) -> Result<(Arc<VaultClient>, u64), StoreError> {
        let (client, generation, due) = {
            let s = self.session.read().unwrap();
            (s.client.clone(), s.generation, s.refresh_at.is_some_and(|t| Instant::now() >= t))
        };
        if !due {
            return Ok((client, generation));
        }
        if let Err(e) = self.refresh(generation).await {
            // Keep going with the old token: it may still be valid, and a real failure shows up
            // on the call itself. Do not retry the renewal on every call.
            tracing::warn!(store = %self, error = %e, "vault token renewal failed");
            self.session.write().unwrap().refresh_at = None;
        }
        let s = self.session.read().unwrap();
        Ok((s.client.clone(), s.generation))
    }
}

/// Refresh when a third of the lease, or a minute, is left, whichever is more: a long batch
/// must not hit the expiry mid-run. Tokens shorter than a minute are refreshed on every call.
pub(super) fn refresh_deadline(lease_secs: u64) -> Instant {
    let margin = (lease_secs / 3).max(60);
    Instant::now() + Duration::from_secs(lease_secs.saturating_sub(margin))
}

/// The token of `auth.type = "token"`, in Airflow's order: `token`, else the file `token_path`
/// (trimmed), else env `VAULT_TOKEN`. Held as a [`SecretValue`] from the moment it is read (the
/// vaultrs client keeps its own copy for the requests it sends).
pub(super) fn resolve_token(
    token: Option<&SecretValue>,
    token_path: Option<&std::path::Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretValue, String> {
    match (token, token_path) {
        (Some(t), _) if !t.is_empty() => Ok(t.clone()),
        (_, Some(p)) => {
            let text = std::fs::read_to_string(p)
                .map(SecretValue::from)
                .map_err(|e| format!("cannot read token_path {}: {}", p.display(), e.kind()))?;
            Ok(SecretValue::from(text.expose_plaintext().trim()))
        }
        _ => env("VAULT_TOKEN")
            .map(SecretValue::from)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "no Vault token: set auth.token, auth.token_path or VAULT_TOKEN".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each source of a token (config, `token_path`, `VAULT_TOKEN`) yields a `SecretValue`: its
    /// `Debug` never shows the token, and errors never do.
    #[test]
    fn the_token_is_held_as_a_secret_value_from_every_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  hvs.canary-file-8a1\n").unwrap();
        let configured = SecretValue::from("hvs.canary-cfg-8a2");
        let env = |k: &str| (k == "VAULT_TOKEN").then(|| "hvs.canary-env-8a3".to_string());
        let none = |_: &str| None;
        let cases: [(SecretValue, &str); 3] = [
            (resolve_token(Some(&configured), Some(&path), &env).unwrap(), "hvs.canary-cfg-8a2"),
            (resolve_token(None, Some(&path), &env).unwrap(), "hvs.canary-file-8a1"),
            (resolve_token(Some(&SecretValue::from("")), None, &env).unwrap(), "hvs.canary-env-8a3"),
        ];
        for (token, want) in cases {
            assert_eq!(token.expose_plaintext(), want);
            let shown = format!("{token:?} {token:#?}");
            assert!(!shown.contains("canary"), "{shown}");
        }
        let err = resolve_token(None, None, &none).unwrap_err();
        assert!(err.contains("no Vault token"), "{err}");
        let err = resolve_token(None, Some(&dir.path().join("missing")), &env).unwrap_err();
        assert!(err.contains("cannot read token_path") && !err.contains("canary"), "{err}");
    }
}
