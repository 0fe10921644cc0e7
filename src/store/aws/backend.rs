//! The shape the Secrets Manager and SSM stores share beyond the connection plumbing of
//! [`super::common`]: the config skeleton (defaults, TOML, Airflow kwargs), lookup rules and
//! placement, the value encoding and its limits, ownership refusals, and building the SDK client.
//! Each store keeps what differs: its names, its calls and its SDK types.

use std::fmt;

use aws_config::SdkConfig;
use serde::Deserializer;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use super::common::{self, AwsConnectionConfig, AwsConnectionFormat, LookupPattern, MANAGED_BY_KEY, MANAGED_BY_VALUE};
use crate::airflow::connection;
use crate::model::{Connection, Entry, ItemError, ItemErrorKind, ItemId, Kind, SecretValue, Value};
use crate::store::{Capabilities, ConnectionFormat, Placement, StoreError};

/// A store config made of its own `Fields` and the shared [`AwsConnectionConfig`].
pub(crate) trait BackendConfig: Sized {
    /// The store's own keys (`deny_unknown_fields`; every key has a default).
    type Fields: DeserializeOwned;
    fn from_fields(fields: Self::Fields, aws: AwsConnectionConfig) -> Self;
    fn validate(&self) -> Result<(), String>;
}

/// Every key at its default.
pub fn default_config<C: BackendConfig>() -> C {
    C::from_fields(serde_json::from_value(Json::Object(Map::new())).expect("defaults"), AwsConnectionConfig::default())
}

/// A flat store table (TOML), split and validated.
pub fn deserialize_config<'de, D: Deserializer<'de>, C: BackendConfig>(d: D) -> Result<C, D::Error> {
    let (fields, aws) = common::deserialize_split::<D, C::Fields>(d)?;
    let cfg = C::from_fields(fields, aws);
    cfg.validate().map_err(serde::de::Error::custom)?;
    Ok(cfg)
}

/// The `[secrets] backend_kwargs` of the Airflow backend class `class`, as our config. The AWS
/// connection kwargs map as in [`common::connection_from_kwargs`]; `config_prefix` /
/// `config_lookup_pattern` are accepted and ignored (this tool does not move Airflow config);
/// `own` moves the class's own kwargs from the first map into the second (our keys); any kwarg
/// left over is refused by name.
pub fn config_from_kwargs<C: BackendConfig>(
    kwargs: &Map<String, Json>,
    class: &str,
    own: impl FnOnce(&mut Map<String, Json>, &mut Map<String, Json>) -> Result<(), String>,
) -> Result<C, String> {
    let mut kw = kwargs.clone();
    let mut ours = common::connection_from_kwargs(&mut kw)?;
    for key in ["config_prefix", "config_lookup_pattern"] {
        kw.remove(key);
    }
    own(&mut kw, &mut ours)?;
    if let Some(k) = kw.keys().next() {
        return Err(format!("unsupported {class} kwarg {k:?}"));
    }
    let (fields, aws) = common::split_config::<C::Fields>(ours)?;
    let cfg = C::from_fields(fields, aws);
    cfg.validate()?;
    Ok(cfg)
}

/// The two lookup patterns (`connections_lookup_pattern`, `variables_lookup_pattern`), compiled.
#[derive(Clone, Debug, Default)]
pub struct Patterns {
    connections: Option<LookupPattern>,
    variables: Option<LookupPattern>,
}

impl Patterns {
    pub fn compile(connections: Option<&str>, variables: Option<&str>) -> Result<Self, String> {
        let compile = |p: Option<&str>| p.map(LookupPattern::compile).transpose().map(Option::flatten);
        Ok(Self { connections: compile(connections)?, variables: compile(variables)? })
    }

    pub fn get(&self, kind: Kind) -> Option<&LookupPattern> {
        match kind {
            Kind::Variable => self.variables.as_ref(),
            Kind::Connection => self.connections.as_ref(),
        }
    }

    /// Airflow's lookup rules for `id`, whose name is `name` (`None`: the kind is disabled): an id
    /// the kind's pattern does not match is never looked up; `problem` is the service's own name
    /// rule.
    pub fn locate(&self, id: &ItemId, name: Option<String>, problem: impl FnOnce(&str) -> Option<String>) -> Placement {
        let Some(name) = name else {
            return Placement::Unreachable(format!("{} are disabled ({}_prefix = false)", id.kind.plural(), id.kind.plural()));
        };
        if let Some(p) = self.get(id.kind)
            && !p.matches(&id.id)
        {
            return Placement::Unreachable(format!(
                "does not match {}_lookup_pattern {:?}: Airflow never looks it up",
                id.kind.plural(),
                p.source()
            ));
        }
        match problem(&name) {
            Some(why) => Placement::Invalid(why),
            None => Placement::At(name),
        }
    }
}

pub fn item_err(store: &dyn fmt::Display, id: &ItemId, kind: ItemErrorKind, detail: impl Into<String>) -> StoreError {
    StoreError::item(store, id, ItemError::new(kind, detail))
}

/// The checked name for a write, or the per-item error, before any request.
pub fn placed(store: &dyn fmt::Display, id: &ItemId, placement: Placement) -> Result<String, StoreError> {
    match placement {
        Placement::At(name) => Ok(name),
        Placement::Invalid(why) => Err(item_err(store, id, ItemErrorKind::InvalidName, why)),
        Placement::Unreachable(why) => Err(item_err(store, id, ItemErrorKind::Unreachable, why)),
    }
}

/// The refusal to `action` (overwrite, delete) a `noun` (secret, parameter) without our tag.
pub fn refuse_foreign(store: &dyn fmt::Display, id: &ItemId, noun: &str, name: &str, action: &str) -> StoreError {
    item_err(
        store,
        id,
        ItemErrorKind::NotOwned,
        format!(
            "{noun} '{name}' exists but was not created by airflow-secrets-sync (no {MANAGED_BY_KEY}={MANAGED_BY_VALUE} tag); \
             refusing to {action} it (set adopt = true to take it over)"
        ),
    )
}

/// What a service takes as a value.
pub struct ValueRules<'a> {
    /// The service, as messages name it.
    pub service: &'a str,
    /// Why an empty value is impossible there.
    pub min_length: &'a str,
    pub max_bytes: usize,
    /// Appended to the too-large message, given the value's size.
    pub too_large_hint: &'a dyn Fn(usize) -> String,
    /// Leave the description out of a connection (Airflow's reader drops it).
    pub drop_description: bool,
}

/// The string stored for `entry`, or the per-item error, before any request.
pub fn encode(
    store: &dyn fmt::Display,
    entry: &Entry,
    format: AwsConnectionFormat,
    rules: &ValueRules<'_>,
) -> Result<SecretValue, StoreError> {
    let as_string = |c: &Connection| match format {
        AwsConnectionFormat::Json => connection::to_json(c),
        AwsConnectionFormat::Uri => connection::to_uri(c),
    };
    let value = match &entry.value {
        Value::Variable(v) => {
            if v.value.is_empty() {
                let why = format!("an empty variable cannot be stored in {} ({})", rules.service, rules.min_length);
                return Err(item_err(store, &entry.id, ItemErrorKind::NotRepresentable, why));
            }
            v.value.clone()
        }
        Value::Connection(c) if rules.drop_description => as_string(&Connection { description: None, ..c.clone() }),
        Value::Connection(c) => as_string(c),
    };
    if value.is_empty() {
        // Only a variable can be empty (checked above); a codec never yields "" for a connection.
        let why = format!("an empty value cannot be stored in {}", rules.service);
        return Err(item_err(store, &entry.id, ItemErrorKind::NotRepresentable, why));
    }
    if value.len() > rules.max_bytes {
        let why = format!(
            "{} bytes; the {} limit is {}{}",
            value.len(),
            rules.service,
            rules.max_bytes,
            (rules.too_large_hint)(value.len())
        );
        return Err(item_err(store, &entry.id, ItemErrorKind::TooLarge, why));
    }
    Ok(value)
}

/// What both services are as stores (the rest is per service): read-write, tagged, deletable, no
/// empty variables, case-sensitive names, written one call at a time.
pub fn capabilities(format: AwsConnectionFormat, write_concurrency: usize) -> Capabilities {
    Capabilities {
        read_only: false,
        variables: true,
        connections: true,
        max_value_bytes: None,
        empty_variables: false,
        variable_line_breaks: true,
        connection_format: match format {
            AwsConnectionFormat::Json => ConnectionFormat::Json,
            AwsConnectionFormat::Uri => ConnectionFormat::Uri,
        },
        connection_description: false,
        variable_description: false,
        can_tag: true,
        can_delete: true,
        conditional_writes: false,
        read_batch: 1,
        write_concurrency,
        write_rate: None,
        buffered_writes: false,
        // Secrets Manager and SSM names are case-sensitive.
        case_insensitive_names: false,
        keep_existing: false,
    }
}

/// An SDK client built from the shared [`SdkConfig`], with the store's `endpoint_url`.
pub(crate) trait SdkClient: Sized {
    fn build(sdk: &SdkConfig, endpoint_url: Option<&str>) -> Self;
}

macro_rules! sdk_client {
    ($feature:literal, $sdk:ident) => {
        #[cfg(feature = $feature)]
        impl SdkClient for $sdk::Client {
            fn build(sdk: &SdkConfig, endpoint_url: Option<&str>) -> Self {
                let mut b = $sdk::config::Builder::from(sdk);
                if let Some(url) = endpoint_url {
                    b = b.endpoint_url(url);
                }
                Self::from_conf(b.build())
            }
        }
    };
}
sdk_client!("aws-sm", aws_sdk_secretsmanager);
sdk_client!("aws-ssm", aws_sdk_ssm);

/// The client for `aws` (no request is made) and the region it resolved, if any.
pub async fn client<C: SdkClient>(aws: &AwsConnectionConfig) -> (C, Option<String>) {
    let sdk = common::sdk_config(aws).await;
    let region = sdk.region().map(|r| r.to_string());
    (C::build(&sdk, aws.endpoint_url.as_deref()), region)
}
