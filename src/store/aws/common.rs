//! Shared AWS plumbing for the Secrets Manager and SSM stores: how an operator's credentials and
//! endpoints become an [`SdkConfig`], the Airflow kwargs both backend classes accept, lookup
//! patterns as Python's `re.match` reads them, our ownership tags, and the mapping of SDK failures
//! onto [`StoreError`].
//!
//! It owns no Airflow naming (each store builds its own names, spec §9 item 13) and never sees a
//! secret value. Error text is built from the error *code* and HTTP status only: AWS validation
//! messages echo request fields (`Value '…' at 'secretString' failed to satisfy constraint`), so a
//! message body is never copied into an error.
//!
//! Credentials, in order: static keys from config (`aws_access_key_id` / `aws_secret_access_key`
//! [/ `aws_session_token`]), else the SDK default chain (env, `profile_name` or the default profile,
//! SSO, web identity, ECS, IMDS). `role_arn` then assumes that role with whichever of those
//! credentials was found, as Airflow's `AwsConnectionWrapper` does. `endpoint_url` applies to the
//! Secrets Manager / SSM client only; STS uses `sts_endpoint_url` (default: the regional endpoint),
//! so a VPC endpoint for Secrets Manager does not break assume-role.

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use regex::{Regex, RegexBuilder};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::{Map, Value};

// Both SDKs re-export the same smithy types; pick whichever crate is compiled in.
#[cfg(feature = "aws_secrets_manager")]
use aws_sdk_secretsmanager::{
    config::http::HttpResponse,
    config::{Credentials, SharedCredentialsProvider},
    error::SdkError,
};
#[cfg(not(feature = "aws_secrets_manager"))]
use aws_sdk_ssm::{
    config::http::HttpResponse,
    config::{Credentials, SharedCredentialsProvider},
    error::SdkError,
};

use crate::store::StoreError;
use crate::model::SecretValue;

/// Tag key marking what this tool wrote (value [`MANAGED_BY_VALUE`]).
pub const MANAGED_BY_KEY: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "airflow-secrets-sync";
/// Tag key recording the Airflow id a name was written for.
pub const AIRFLOW_ID_KEY: &str = "airflow-id";

/// How an AWS store encodes connections it writes (`connection_format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AwsConnectionFormat {
    /// Airflow's JSON form (read by `from_json`, Airflow >= 2.3).
    #[default]
    Json,
    /// Airflow's URI form (loses description, port 0, host case; spec §9 item 8).
    Uri,
}

const DEFAULT_MAX_ATTEMPTS: u32 = 5;
const DEFAULT_MAX_CONCURRENCY: usize = 8;

/// How to reach AWS: the credential and endpoint options both AWS stores share.
///
/// Config keys (flat, next to the store's own keys): `region_name`, `profile_name`, `role_arn`,
/// `role_session_name`, `external_id`, `endpoint_url`, `sts_endpoint_url`, `aws_access_key_id`,
/// `aws_secret_access_key`, `aws_session_token`, `max_attempts` (accepted, unused: the SDK makes
/// one attempt and `[apply] max_attempts` bounds the retries),
/// `max_concurrency` (default 8 requests in flight).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConnectionConfig {
    #[serde(default)]
    pub region_name: Option<String>,
    #[serde(default)]
    pub profile_name: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub role_session_name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub sts_endpoint_url: Option<String>,
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    #[serde(default, deserialize_with = "de_secret")]
    pub aws_secret_access_key: Option<SecretValue>,
    #[serde(default, deserialize_with = "de_secret")]
    pub aws_session_token: Option<SecretValue>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
}

impl Default for AwsConnectionConfig {
    fn default() -> Self {
        Self {
            region_name: None,
            profile_name: None,
            role_arn: None,
            role_session_name: None,
            external_id: None,
            endpoint_url: None,
            sts_endpoint_url: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            aws_session_token: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
        }
    }
}

/// The config keys that belong to [`AwsConnectionConfig`] rather than to a store.
pub const CONNECTION_KEYS: &[&str] = &[
    "region_name",
    "profile_name",
    "role_arn",
    "role_session_name",
    "external_id",
    "endpoint_url",
    "sts_endpoint_url",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "max_attempts",
    "max_concurrency",
];

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

fn default_max_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretValue>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretValue::from))
}

impl AwsConnectionConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.aws_access_key_id.is_some() != self.aws_secret_access_key.is_some() {
            return Err("aws_access_key_id and aws_secret_access_key must be set together".into());
        }
        if self.aws_session_token.is_some() && self.aws_access_key_id.is_none() {
            return Err("aws_session_token needs aws_access_key_id and aws_secret_access_key".into());
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.max_concurrency == 0 {
            return Err("max_concurrency must be at least 1".into());
        }
        Ok(())
    }
}

/// Split a flat store table into (store keys, connection keys) and deserialize both halves, each
/// refusing unknown keys. (`#[serde(flatten)]` cannot be combined with `deny_unknown_fields`.)
pub fn split_config<T: DeserializeOwned>(mut map: Map<String, Value>) -> Result<(T, AwsConnectionConfig), String> {
    let mut conn = Map::new();
    for key in CONNECTION_KEYS {
        if let Some(v) = map.remove(*key) {
            conn.insert((*key).to_string(), v);
        }
    }
    let own: T = serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())?;
    let conn: AwsConnectionConfig = serde_json::from_value(Value::Object(conn)).map_err(|e| e.to_string())?;
    conn.validate()?;
    Ok((own, conn))
}

/// Deserialize a flat store table through [`split_config`] (for the stores' `Deserialize` impls).
pub fn deserialize_split<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<(T, AwsConnectionConfig), D::Error> {
    let map = Map::<String, Value>::deserialize(d)?;
    split_config(map).map_err(de::Error::custom)
}

/// A prefix setting: a string, or `false` (TOML) / `null` (JSON, Airflow's `None`) = kind disabled.
/// `true` is refused: it is not a prefix, and omitting the key gives the default.
pub fn de_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> de::Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a prefix string, or false to disable this kind")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            if v {
                Err(E::custom("`true` is not a prefix: give a string, `false` to disable, or omit the key"))
            } else {
                Ok(None)
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Airflow's lookup-pattern test `re.match(pattern, id, re.IGNORECASE)`: anchored at the start
/// only, case-insensitive. An empty pattern means no filter (`if lookup_pattern and …`).
///
/// Compiled with the `regex` crate as `^(?:pattern)` case-insensitively. Differences from Python's
/// `re` (refused at config time where the crate cannot express them): no look-around and no
/// backreferences; Python's `\Z` is `\z` here; Python's `$` also matches before a final `\n`
/// (ids never end in a newline, so this does not matter); Unicode case folding may differ for a
/// handful of characters.
#[derive(Clone)]
pub struct LookupPattern {
    source: String,
    regex: Regex,
}

impl LookupPattern {
    pub fn compile(pattern: &str) -> Result<Option<Self>, String> {
        if pattern.is_empty() {
            return Ok(None);
        }
        let regex = RegexBuilder::new(&format!("^(?:{pattern})"))
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("lookup pattern {pattern:?} is not supported: {e}"))?;
        Ok(Some(Self { source: pattern.to_string(), regex }))
    }

    pub fn matches(&self, id: &str) -> bool {
        self.regex.is_match(id)
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for LookupPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LookupPattern({:?})", self.source)
    }
}

/// Python's `str.rstrip(chars)`: strips any trailing character that occurs in `chars`.
pub fn rstrip_chars<'a>(s: &'a str, chars: &str) -> &'a str {
    s.trim_end_matches(|c| chars.contains(c))
}

/// Map the Airflow backend kwargs every AWS backend class passes to `AwsConnectionWrapper` (its
/// `**kwargs`) onto our config keys. Keys are removed from `kwargs` as they are consumed.
///
/// | Airflow kwarg | our key |
/// |---|---|
/// | `region_name`, `profile_name`, `role_arn`, `endpoint_url` | same name |
/// | `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token` | same name |
/// | `assume_role_kwargs.RoleSessionName` / `.ExternalId` | `role_session_name` / `external_id` |
/// | `assume_role_method = "assume_role"` | (the only method supported) |
/// | `api_version`, `verify = true`, `use_ssl = true` | ignored (no effect here) |
pub fn connection_from_kwargs(kwargs: &mut Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for key in [
        "region_name",
        "profile_name",
        "role_arn",
        "endpoint_url",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    ] {
        match kwargs.remove(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                out.insert(key.to_string(), Value::String(s));
            }
            Some(_) => return Err(format!("{key} must be a string")),
        }
    }
    if let Some(m) = kwargs.remove("assume_role_method")
        && !(m.is_null() || m == "assume_role")
    {
        return Err("assume_role_method: only \"assume_role\" is supported".into());
    }
    if let Some(v) = kwargs.remove("assume_role_kwargs") {
        let Value::Object(mut ark) = v else { return Err("assume_role_kwargs must be a dict".into()) };
        for (from, to) in [("RoleSessionName", "role_session_name"), ("ExternalId", "external_id")] {
            if let Some(v) = ark.remove(from) {
                out.insert(to.to_string(), v);
            }
        }
        if let Some(k) = ark.keys().next() {
            return Err(format!("assume_role_kwargs.{k} is not supported"));
        }
    }
    kwargs.remove("api_version");
    for key in ["verify", "use_ssl"] {
        match kwargs.remove(key) {
            None | Some(Value::Null) | Some(Value::Bool(true)) => {}
            Some(_) => {
                return Err(format!(
                    "{key}: only the default (TLS verified against the system trust store) is supported"
                ));
            }
        }
    }
    Ok(out)
}

/// Build the shared [`SdkConfig`]: region, credentials (static, profile or default chain, then
/// assume-role), one attempt per call (no SDK retry), and timeouts. No endpoint override here:
/// see [`AwsConnectionConfig::endpoint_url`], applied per service client.
pub async fn sdk_config(c: &AwsConnectionConfig) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // One attempt: retrying and pacing are the store layers' (`store::layer::{retry, pace}`).
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(region) = &c.region_name {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &c.profile_name {
        loader = loader.profile_name(profile);
    }
    if let (Some(id), Some(secret)) = (&c.aws_access_key_id, &c.aws_secret_access_key) {
        let creds = Credentials::new(
            id,
            secret.expose_plaintext(),
            c.aws_session_token.as_ref().map(|t| t.expose_plaintext().to_string()),
            None,
            "airflow-secrets-sync-config",
        );
        loader = loader.credentials_provider(creds);
    }
    let base = loader.load().await;
    let Some(role_arn) = &c.role_arn else { return base };
    let sts_conf = match &c.sts_endpoint_url {
        Some(url) => base.to_builder().endpoint_url(url).build(),
        None => base.clone(),
    };
    let mut role = AssumeRoleProvider::builder(role_arn).configure(&sts_conf);
    role = role.session_name(c.role_session_name.clone().unwrap_or_else(|| "airflow-secrets-sync".into()));
    if let Some(ext) = &c.external_id {
        role = role.external_id(ext);
    }
    let provider = role.build().await;
    base.into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build()
}

/// The region an ARN would carry, for length limits computed on the ARN (SSM).
pub fn partition_for(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// What went wrong with one SDK call, reduced to the facts `classify` needs (no message text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Service { code: Option<String>, status: u16 },
    Dispatch { io: bool, timeout: bool },
    Timeout,
    Response,
    Construction,
}

impl Failure {
    pub fn of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Self {
        match err {
            SdkError::ServiceError(ctx) => {
                Failure::Service { code: ctx.err().code().map(str::to_string), status: ctx.raw().status().as_u16() }
            }
            SdkError::DispatchFailure(d) => Failure::Dispatch { io: d.is_io(), timeout: d.is_timeout() },
            SdkError::TimeoutError(_) => Failure::Timeout,
            SdkError::ResponseError(_) => Failure::Response,
            _ => Failure::Construction,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Failure::Service { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

const DENIED: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "ExpiredToken",
    "MissingAuthenticationToken",
    "IncompleteSignature",
    "NotAuthorized",
];

const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyUpdates",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ThrottledException",
];

/// The shared half of each store's `classify`: AccessDenied → PermissionDenied naming `what`;
/// throttling → Throttled (retryable); 5xx and timeouts → Unavailable (retryable); a failed
/// connection → Unreachable. Everything else is a Backend error carrying only the code and status.
pub fn classify(store: &dyn fmt::Display, op: &'static str, what: &str, failure: Failure) -> StoreError {
    let store = store.to_string();
    match failure {
        Failure::Service { code, status } => {
            let code_str = code.as_deref().unwrap_or("no error code");
            if code.as_deref().is_some_and(|c| DENIED.contains(&c)) || status == 403 {
                StoreError::PermissionDenied { store, what: format!("{op} on {what} ({code_str})") }
            } else if code.as_deref().is_some_and(|c| THROTTLED.contains(&c)) || status == 429 {
                StoreError::Throttled { store, op, retry_after: None }
            } else if status >= 500 {
                StoreError::Unavailable { store, op, reason: format!("HTTP {status} ({code_str}) on {what}") }
            } else {
                StoreError::Backend { store, op, reason: format!("{code_str} (HTTP {status}) on {what}") }
            }
        }
        Failure::Dispatch { io, timeout } => {
            let reason = if timeout {
                "connection timed out"
            } else if io {
                "connection failed (I/O error)"
            } else {
                "request could not be sent"
            };
            StoreError::Unreachable { store, reason: format!("{reason} during {op}") }
        }
        Failure::Timeout => StoreError::Unavailable { store, op, reason: "timed out".into() },
        Failure::Response => StoreError::Unavailable { store, op, reason: "malformed response".into() },
        Failure::Construction => {
            StoreError::Config { store, message: format!("{op}: the request could not be built (check region and endpoint_url)") }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_pattern_is_python_re_match_ignorecase() {
        let p = LookupPattern::compile("MY_").unwrap().unwrap();
        assert!(p.matches("my_var"));
        assert!(p.matches("My_Conn.v2"));
        assert!(!p.matches("smtp_my_"), "re.match anchors at the start");
        let alt = LookupPattern::compile("a|b").unwrap().unwrap();
        assert!(alt.matches("bx"));
        assert!(!alt.matches("xb"), "every alternative is anchored");
        assert!(LookupPattern::compile("").unwrap().is_none());
        assert!(LookupPattern::compile("(?=x)").is_err(), "look-ahead is refused at config time");
    }

    #[test]
    fn rstrip_is_pythons() {
        assert_eq!(rstrip_chars("cfg//", "/"), "cfg");
        assert_eq!(rstrip_chars("a-_-", "-_"), "a");
        assert_eq!(rstrip_chars("/", "/"), "");
    }

    #[test]
    fn classify_never_echoes_a_message_and_sorts_retryable() {
        let denied = classify(&"s", "GetSecretValue", "secret 'x'", Failure::Service {
            code: Some("AccessDeniedException".into()),
            status: 400,
        });
        assert!(matches!(denied, StoreError::PermissionDenied { .. }));
        assert!(denied.to_string().contains("secret 'x'"));
        let t = classify(&"s", "PutParameter", "p", Failure::Service { code: Some("TooManyUpdates".into()), status: 400 });
        assert!(t.is_retryable());
        let u = classify(&"s", "op", "p", Failure::Service { code: Some("InternalFailure".into()), status: 500 });
        assert!(u.is_retryable());
        let d = classify(&"s", "op", "p", Failure::Dispatch { io: true, timeout: false });
        assert!(matches!(d, StoreError::Unreachable { .. }));
    }

    #[test]
    fn kwargs_map_onto_connection_keys() {
        let mut kw: Map<String, Value> = serde_json::from_str(
            r#"{"region_name":"eu-west-1","role_arn":"arn:aws:iam::1:role/r","assume_role_kwargs":{"RoleSessionName":"s"},"api_version":"x","other":1}"#,
        )
        .unwrap();
        let out = connection_from_kwargs(&mut kw).unwrap();
        assert_eq!(out["region_name"], "eu-west-1");
        assert_eq!(out["role_session_name"], "s");
        assert_eq!(kw.keys().collect::<Vec<_>>(), ["other"], "unconsumed keys are left for the caller");
        let mut bad: Map<String, Value> = serde_json::from_str(r#"{"verify":false}"#).unwrap();
        assert!(connection_from_kwargs(&mut bad).is_err());
    }
}
