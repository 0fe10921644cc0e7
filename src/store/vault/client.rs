//! One Vault call (the current client, a fresh login when a login token died) and its failure,
//! classified by status and transport cause without keeping a response body; the raw GETs vaultrs
//! has no endpoint for; the HTTP client's settings.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustify::errors::ClientError as RestError;
use serde_json::Value as Json;
use vaultrs::client::{VaultClient, VaultClientSettings, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{VaultConfig, VaultStore};
use crate::store::StoreError;

/// Per-request HTTP timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed Vault call, classified; turned into a [`StoreError`] by [`VaultStore::error`] with
/// the operation and path added. Never holds a response body.
#[derive(Debug)]
pub(super) enum Failure {
    NotFound,
    CasMismatch,
    Denied,
    Sealed,
    Throttled,
    Unavailable(String),
    Unreachable(String),
    Backend(String),
    Store(StoreError),
}

impl Failure {
    /// Whether the store error it becomes is retryable (what the retry layer sees).
    #[cfg(test)]
    pub(super) fn retryable(&self) -> bool {
        matches!(self, Failure::Throttled | Failure::Unavailable(_))
    }
}

impl VaultStore {
    /// Run one Vault call, sent once: a failure is classified and returned (retrying is the retry
    /// layer's, `store::layer::retry`). The one exception is a 403 with a dead login token: the
    /// token is replaced (logging in again) and the call sent once more, which is not a retry of
    /// the same request but the same request with a working token.
    pub(super) async fn call<T, F, Fut>(&self, f: F) -> Result<T, Failure>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut relogin_tried = false;
        loop {
            let (client, generation) = self.current().await.map_err(Failure::Store)?;
            let failure = match f(client.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => classify(&e),
            };
            match failure {
                Failure::Denied if self.config.auth.can_login() && !relogin_tried => {
                    relogin_tried = true;
                    // A policy denial and a revoked/expired token both answer 403; only the
                    // latter is cured by logging in again.
                    if vaultrs::token::lookup_self(&*client).await.is_err() {
                        self.refresh(generation).await.map_err(Failure::Store)?;
                        continue;
                    }
                    return Err(Failure::Denied);
                }
                f => return Err(f),
            }
        }
    }

    pub(super) fn config_error(&self, message: String) -> StoreError {
        StoreError::Config { store: self.to_string(), message }
    }

    /// The store error for a failed `op` on `path` (a Vault API path: never a value).
    pub(super) fn error(&self, op: &'static str, path: &str, failure: Failure) -> StoreError {
        let store = self.to_string();
        match failure {
            Failure::Denied => StoreError::PermissionDenied { store, what: format!("{op} {path}") },
            Failure::Sealed => StoreError::Unavailable { store, op, reason: "vault is sealed".into() },
            Failure::Throttled => StoreError::Throttled { store, op, retry_after: None },
            Failure::Unavailable(reason) => StoreError::Unavailable { store, op, reason },
            Failure::Unreachable(reason) => StoreError::Unreachable { store, reason: format!("{}: {reason}", self.address) },
            Failure::Backend(reason) => StoreError::Backend { store, op, reason: format!("{path}: {reason}") },
            Failure::NotFound => StoreError::Backend { store, op, reason: format!("{path}: not found") },
            Failure::CasMismatch => StoreError::Backend { store, op, reason: format!("{path}: check-and-set failed") },
            Failure::Store(e) => e,
        }
    }
}


/// Classify a vaultrs error by status and transport cause. Bodies are inspected only to tell a
/// sealed Vault and a CAS mismatch apart; they are never kept.
pub(super) fn classify(e: &ClientError) -> Failure {
    match e {
        ClientError::APIError { code, errors } => by_status(*code, errors),
        ClientError::RestClientError { source } => match source {
            RestError::ServerResponseError { code, .. } => by_status(*code, &[]),
            RestError::RequestError { source, .. } => transport(source),
            _ => Failure::Backend("an unexpected response from Vault".into()),
        },
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            Failure::Backend("an empty response from Vault".into())
        }
        ClientError::JsonParseError { .. } => Failure::Backend("a response that is not the expected JSON".into()),
        ClientError::FileNotFoundError { path }
        | ClientError::FileReadError { path, .. }
        | ClientError::ParseCertificateError { path, .. } => Failure::Backend(format!("cannot use the CA file {path}")),
        _ => Failure::Backend("the Vault client failed".into()),
    }
}

pub(super) fn by_status(code: u16, errors: &[String]) -> Failure {
    match code {
        404 => Failure::NotFound,
        401 | 403 => Failure::Denied,
        400 if errors.iter().any(|e| e.contains("check-and-set")) => Failure::CasMismatch,
        429 => Failure::Throttled,
        503 if errors.iter().any(|e| e.to_ascii_lowercase().contains("sealed")) => Failure::Sealed,
        // 412: a performance standby has not caught up yet; retrying is the documented answer.
        412 | 500..=599 => Failure::Unavailable(format!("HTTP {code}")),
        _ => Failure::Backend(format!("HTTP {code}")),
    }
}

pub(super) fn transport(source: &anyhow::Error) -> Failure {
    use std::io::ErrorKind as K;
    for cause in source.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
                    return Failure::Unreachable(io.kind().to_string());
                }
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::TimedOut | K::UnexpectedEof => {
                    return Failure::Unavailable(io.kind().to_string());
                }
                _ => {}
            }
        }
    }
    // Transport error texts (hyper, rustls) never carry a request body; look only for the cause.
    // "connection closed before message completed" is a dropped connection (retryable), not a
    // failure to connect: match hyper-util's connect-phase texts precisely.
    let text = source.chain().map(|c| c.to_string().to_ascii_lowercase()).collect::<Vec<_>>().join(": ");
    let connect_phase = ["client error (connect)", "tcp connect error", "dns error", "error trying to connect"];
    if connect_phase.iter().any(|t| text.contains(t)) || text.contains("certificate") || text.contains("tls handshake") {
        Failure::Unreachable("cannot connect (DNS, TCP or TLS)".into())
    } else if text.contains("timed out") || text.contains("timeout") {
        Failure::Unavailable("timed out".into())
    } else {
        Failure::Unavailable("the connection failed".into())
    }
}

pub(super) fn failure_label(f: &Failure) -> &'static str {
    match f {
        Failure::NotFound => "not found",
        Failure::CasMismatch => "cas mismatch",
        Failure::Denied => "denied",
        Failure::Sealed => "sealed",
        Failure::Throttled => "throttled",
        Failure::Unavailable(_) => "unavailable",
        Failure::Unreachable(_) => "unreachable",
        Failure::Backend(_) => "backend",
        Failure::Store(_) => "store",
    }
}

/// A non-2xx raw response as vaultrs would report it (status and Vault's error strings).
pub(super) fn api_error(status: u16, body: &Json) -> ClientError {
    let errors = body
        .get("errors")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    ClientError::APIError { code: status, errors }
}

/// A GET that vaultrs has no endpoint for (UI mounts, health), through the same HTTP client
/// (same TLS settings) and headers.
pub(super) async fn raw_get(client: &VaultClient, path: &str, with_token: bool) -> Result<(u16, Json), ClientError> {
    let url = format!("{}/v1/{path}", client.settings.address.as_str().trim_end_matches('/'));
    let transport_err = |e: anyhow::Error| ClientError::RestClientError {
        source: RestError::RequestError { source: e, url: path.to_string(), method: "GET".into() },
    };
    let mut req = client.http.http.get(&url).header("X-Vault-Request", "true");
    if with_token && !client.settings.token.is_empty() {
        req = req.header("X-Vault-Token", client.settings.token.as_str());
    }
    if let Some(ns) = &client.settings.namespace {
        req = req.header("X-Vault-Namespace", ns.as_str());
    }
    let resp = req.send().await.map_err(|e| transport_err(e.into()))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| transport_err(e.into()))?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Json::Null)))
}

pub(super) fn client_settings(config: &VaultConfig, address: &str) -> Result<VaultClientSettings, String> {
    let mut b = VaultClientSettingsBuilder::default();
    // `address` panics on a URL it cannot parse; `check_address` ran first, and this is the net.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.address(address);
    }))
    .map_err(|_| "not a valid URL".to_string())?;
    b.token("").verify(!config.skip_verify).namespace(config.namespace.clone()).timeout(Some(REQUEST_TIMEOUT));
    if let Some(ca) = &config.ca_file {
        b.ca_certs(vec![ca.display().to_string()]);
    }
    b.build().map_err(|e| format!("invalid Vault client settings: {e}"))
}

pub(super) fn build_client(settings: &VaultClientSettings, token: &str) -> Result<VaultClient, String> {
    let mut s = settings.clone();
    s.token = token.to_string();
    VaultClient::new(s).map_err(|e| match classify(&e) {
        Failure::Backend(reason) => reason,
        _ => "cannot build the Vault HTTP client".into(),
    })
}

/// Enough of a URL check that vaultrs's parser will not panic on common mistakes.
pub(super) fn check_address(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace".into());
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.contains('@') {
        return Err("credentials in the URL are not supported; use the auth settings".into());
    }
    if let Some((h, port)) = host.rsplit_once(':')
        && !port.ends_with(']')
        && (!h.is_empty() && (port.is_empty() || port.parse::<u16>().is_err()))
    {
        return Err("has an invalid port".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classification() {
        assert!(matches!(by_status(404, &[]), Failure::NotFound));
        assert!(matches!(by_status(403, &["permission denied".into()]), Failure::Denied));
        assert!(matches!(
            by_status(400, &["check-and-set parameter did not match the current version".into()]),
            Failure::CasMismatch
        ));
        assert!(matches!(by_status(400, &["other".into()]), Failure::Backend(_)));
        assert!(matches!(by_status(429, &[]), Failure::Throttled));
        assert!(matches!(by_status(503, &["Vault is sealed".into()]), Failure::Sealed));
        assert!(matches!(by_status(503, &[]), Failure::Unavailable(_)));
        assert!(matches!(by_status(502, &[]), Failure::Unavailable(_)));
        assert!(by_status(500, &[]).retryable() && !by_status(403, &[]).retryable());
    }

    #[test]
    fn transport_causes() {
        let refused = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(transport(&refused), Failure::Unreachable(_)));
        let reset = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(transport(&reset), Failure::Unavailable(_)));
    }

    #[test]
    fn addresses() {
        assert!(check_address("http://127.0.0.1:8200").is_ok());
        assert!(check_address("https://vault.example.com").is_ok());
        assert!(check_address("https://[::1]:8200").is_ok());
        assert!(check_address("vault:8200").is_err());
        assert!(check_address("http://").is_err());
        assert!(check_address("http://h:99999").is_err());
        assert!(check_address("http://u:p@h").is_err());
    }
}
