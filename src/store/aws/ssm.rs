//! AWS SSM Parameter Store, written exactly as Airflow's
//! `airflow.providers.amazon.aws.secrets.systems_manager.SystemsManagerParameterStoreBackend`
//! reads it (spec §5, §5.3, §8, §9 items 11, 13, 15, 17, 18).
//!
//! **Naming.** Each non-empty prefix is `rstrip("/")`-ed; the name is `prefix + "/" + id` with a
//! leading `/` forced (so `""` and `"/"` give `/{id}`). There is no `sep`. A disabled kind (Airflow
//! `None`, our TOML `false`) has no names; a lookup pattern works as in Secrets Manager. AWS rules:
//! characters `a-zA-Z0-9_.-/`, at most 15 levels, no empty level, the first level must not start
//! with `aws` or `ssm` (case-insensitive), and the name *including its ARN*
//! (`arn:aws:ssm:<region>:<account>:parameter/…`) is at most 1011 characters (the API's 2048
//! includes 1037 characters reserved by AWS).
//!
//! **Values.** `GetParameter(WithDecryption=True)` reads `Value`. Variables are raw; connections go
//! through the plain `deserialize_connection` (strict JSON keys, no aliases, description kept), so
//! we write canonical JSON (or a URI with `connection_format = "uri"`). An empty value is
//! impossible. Standard tier holds 4096 bytes; above that a write is refused unless
//! `allow_advanced_tier = true`, which writes with `Intelligent-Tiering` (advanced, ≤ 8192 bytes,
//! billed per parameter, only when the value needs it; an advanced parameter is never downgraded).
//! We write `SecureString` (with `kms_key_id` if set).
//!
//! **Ownership.** Tags cannot be combined with `Overwrite=true`: a new parameter is created with
//! `Overwrite=false` and our tags (`managed-by=airflow-secrets-sync`, `airflow-id=<id>`); an
//! existing one is overwritten without tags (adopting a foreign one adds them with
//! `AddTagsToResource`). A parameter without our tag is foreign: never overwritten or deleted
//! unless `adopt = true`.
//!
//! **Calls.** Scan: `GetParametersByPath(Recursive, WithDecryption)` (10 per page) plus one paged
//! `DescribeParameters` filtered by path and our tag (50 per page) to learn ownership. Calling
//! `ListTagsForResource` per parameter would cost one request per item; it is used only on writes
//! and deletes, where the item is touched anyway. Write: `PutParameter(Overwrite=false)` with our
//! tags when the plan saw no parameter (one call); otherwise `ListTagsForResource` (ownership),
//! `GetParameter` for a version precondition, then `PutParameter(Overwrite=true)`. Read of given
//! ids: `GetParameters` (≤ 10 names) + `DescribeParameters` by name and tag (≤ 50 names). Tested
//! against `moto_server` (tests/aws.rs, tests/aws_calls.rs).

use std::collections::HashSet;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_ssm::Client;
use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterTier, ParameterType, ResourceTypeForTagging, Tag};
use futures::StreamExt;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value as Json};
use tokio::sync::Semaphore;

use super::backend::{self, BackendConfig, Patterns};
use super::common::{
    self as aws_common, AIRFLOW_ID_KEY, AwsConnectionConfig, AwsConnectionFormat, Failure, MANAGED_BY_KEY, MANAGED_BY_VALUE,
};
use crate::store::{Capabilities, Placement, Precondition, Store, StoreError};
use crate::airflow::connection::{self, Reader};
use crate::model::{
    Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Ownership, SecretValue, Value, Variable,
};

/// Standard-tier value limit (bytes).
pub const STANDARD_MAX_BYTES: usize = 4096;
/// Advanced-tier value limit (bytes).
pub const ADVANCED_MAX_BYTES: usize = 8192;
/// Name limit, counted on the full ARN.
pub const MAX_ARN_LEN: usize = 1011;
pub const MAX_LEVELS: usize = 15;
/// `GetParameters` takes at most 10 names; a `ParameterStringFilter` at most 50 values.
const GET_BATCH: usize = 10;
const FILTER_BATCH: usize = 50;

/// `[…] kind = "aws_ssm"` config. Keys (TOML; flat, with the AWS connection keys of
/// [`AwsConnectionConfig`] alongside):
///
/// | key | default | meaning |
/// |---|---|---|
/// | `connections_prefix` | `"/airflow/connections"` | `false` disables connections (Airflow `None`) |
/// | `variables_prefix` | `"/airflow/variables"` | `false` disables variables |
/// | `connections_lookup_pattern`, `variables_lookup_pattern` | none | Python regex, `re.match` + IGNORECASE |
/// | `connection_format` | `"json"` | or `"uri"` |
/// | `kms_key_id` | `alias/aws/ssm` | for SecureString |
/// | `allow_advanced_tier` | `false` | values over 4096 bytes (≤ 8192) as advanced parameters |
/// | `adopt` | `false` | overwrite/delete parameters this tool did not create |
#[derive(Clone, Debug)]
pub struct AwsSsmConfig {
    pub connections_prefix: Option<String>,
    pub variables_prefix: Option<String>,
    pub connections_lookup_pattern: Option<String>,
    pub variables_lookup_pattern: Option<String>,
    pub connection_format: AwsConnectionFormat,
    pub kms_key_id: Option<String>,
    pub allow_advanced_tier: bool,
    pub adopt: bool,
    pub aws: AwsConnectionConfig,
}

/// The store's own keys (the AWS connection keys are split off first).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fields {
    #[serde(default = "default_connections_prefix", deserialize_with = "aws_common::de_prefix")]
    connections_prefix: Option<String>,
    #[serde(default = "default_variables_prefix", deserialize_with = "aws_common::de_prefix")]
    variables_prefix: Option<String>,
    #[serde(default)]
    connections_lookup_pattern: Option<String>,
    #[serde(default)]
    variables_lookup_pattern: Option<String>,
    #[serde(default)]
    connection_format: AwsConnectionFormat,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default)]
    allow_advanced_tier: bool,
    #[serde(default)]
    adopt: bool,
}

fn default_connections_prefix() -> Option<String> {
    Some("/airflow/connections".into())
}
fn default_variables_prefix() -> Option<String> {
    Some("/airflow/variables".into())
}

impl Default for AwsSsmConfig {
    fn default() -> Self {
        backend::default_config()
    }
}

impl<'de> Deserialize<'de> for AwsSsmConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        backend::deserialize_config(d)
    }
}

impl BackendConfig for AwsSsmConfig {
    type Fields = Fields;

    fn validate(&self) -> Result<(), String> {
        AwsSsmConfig::validate(self)
    }

    fn from_fields(f: Fields, aws: AwsConnectionConfig) -> Self {
        Self {
            connections_prefix: f.connections_prefix,
            variables_prefix: f.variables_prefix,
            connections_lookup_pattern: f.connections_lookup_pattern,
            variables_lookup_pattern: f.variables_lookup_pattern,
            connection_format: f.connection_format,
            kms_key_id: f.kms_key_id,
            allow_advanced_tier: f.allow_advanced_tier,
            adopt: f.adopt,
            aws,
        }
    }
}

impl AwsSsmConfig {
    pub fn validate(&self) -> Result<(), String> {
        Patterns::compile(self.connections_lookup_pattern.as_deref(), self.variables_lookup_pattern.as_deref())?;
        self.aws.validate()
    }

    /// The `[secrets] backend_kwargs` of an Airflow `SystemsManagerParameterStoreBackend`, as our
    /// config ([`backend::config_from_kwargs`]). `None` prefixes disable a kind.
    pub fn from_airflow_kwargs(kwargs: &Map<String, Json>) -> Result<Self, String> {
        backend::config_from_kwargs(kwargs, "SystemsManagerParameterStoreBackend", |kw, own| {
            for key in ["connections_prefix", "variables_prefix", "connections_lookup_pattern", "variables_lookup_pattern"] {
                match kw.remove(key) {
                    None => {}
                    Some(Json::Null) if key.ends_with("_pattern") => {}
                    Some(v) => {
                        own.insert(key.into(), v);
                    }
                }
            }
            Ok(())
        })
    }
}

/// Names as Airflow builds them for one configuration. Pure: no I/O.
#[derive(Clone, Debug)]
pub struct SsmNaming {
    /// The start of every name of the kind: `ensure_leading_slash(rstrip(prefix, "/") + "/")`.
    connections_start: Option<String>,
    variables_start: Option<String>,
    patterns: Patterns,
    /// Characters the ARN adds before the name (`arn:aws:ssm:<region>:<account>:parameter`).
    arn_overhead: usize,
}

impl SsmNaming {
    /// `region`: for the ARN length rule (None: assume a long region name).
    pub fn new(cfg: &AwsSsmConfig, region: Option<&str>) -> Result<Self, String> {
        let start = |p: &Option<String>| {
            p.as_ref().map(|p| {
                // `if prefix: prefix = prefix.rstrip("/")`; `build_path` adds "/"; then
                // `_ensure_leading_slash`.
                let joined = format!("{}/", aws_common::rstrip_chars(p, "/"));
                if joined.starts_with('/') { joined } else { format!("/{joined}") }
            })
        };
        let region = region.unwrap_or("ap-southeast-99");
        let arn_overhead =
            "arn:".len() + aws_common::partition_for(region).len() + ":ssm:".len() + region.len() + ":".len() + 12 + ":parameter".len();
        Ok(Self {
            connections_start: start(&cfg.connections_prefix),
            variables_start: start(&cfg.variables_prefix),
            patterns: Patterns::compile(cfg.connections_lookup_pattern.as_deref(), cfg.variables_lookup_pattern.as_deref())?,
            arn_overhead,
        })
    }

    fn start(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Variable => self.variables_start.as_deref(),
            Kind::Connection => self.connections_start.as_deref(),
        }
    }

    /// The name Airflow requests for `id`, ignoring the lookup pattern; None when the kind is off.
    pub fn name(&self, id: &ItemId) -> Option<String> {
        Some(format!("{}{}", self.start(id.kind)?, id.id))
    }

    pub fn locate(&self, id: &ItemId) -> Placement {
        self.patterns.locate(id, self.name(id), |name| self.name_problem(name))
    }

    /// Why SSM would refuse `name` (which starts with `/`), if it would.
    pub fn name_problem(&self, name: &str) -> Option<String> {
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c))) {
            return Some(format!("parameter names allow only a-zA-Z0-9_.-/ (found {:?})", c));
        }
        let levels: Vec<&str> = name.strip_prefix('/').unwrap_or(name).split('/').collect();
        if levels.iter().any(|l| l.is_empty()) {
            return Some("parameter names cannot have an empty level ('//' or a trailing '/')".into());
        }
        if levels.len() > MAX_LEVELS {
            return Some(format!("{} levels; parameter hierarchies allow at most {MAX_LEVELS}", levels.len()));
        }
        let first = levels[0].to_ascii_lowercase();
        if first.starts_with("aws") || first.starts_with("ssm") {
            return Some("parameter names cannot start with \"aws\" or \"ssm\" (case-insensitive)".into());
        }
        let arn_len = self.arn_overhead + name.len();
        if arn_len > MAX_ARN_LEN {
            return Some(format!("the parameter ARN would be {arn_len} characters; the limit is {MAX_ARN_LEN}"));
        }
        None
    }
}

/// The Airflow SSM Parameter Store backend as a [`Store`].
pub struct AwsSsmStore {
    cfg: AwsSsmConfig,
    naming: SsmNaming,
    client: Client,
    region: String,
    reader: Reader,
    permits: Semaphore,
}

fn filter(key: &str, option: &str, values: &[String]) -> ParameterStringFilter {
    ParameterStringFilter::builder()
        .key(key)
        .option(option)
        .set_values(Some(values.to_vec()))
        .build()
        .expect("key is set")
}

impl AwsSsmStore {
    /// Build the client (no request is made).
    pub async fn new(cfg: AwsSsmConfig) -> Result<Self, StoreError> {
        let config_err = |message: String| StoreError::Config { store: "aws_ssm".into(), message };
        cfg.validate().map_err(config_err)?;
        let (client, region) = backend::client::<Client>(&cfg.aws).await;
        let naming = SsmNaming::new(&cfg, region.as_deref()).map_err(config_err)?;
        let permits = Semaphore::new(cfg.aws.max_concurrency);
        let region = region.unwrap_or_else(|| "(default region)".into());
        Ok(Self { cfg, naming, client, region, reader: Reader::default(), permits })
    }

    /// Which Airflow reader's connection semantics to reproduce (default: Airflow 3 ORM).
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    pub fn naming(&self) -> &SsmNaming {
        &self.naming
    }

    /// The one place SDK errors become [`StoreError`]s (see [`aws_common::classify`]).
    fn classify<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
        &self,
        op: &'static str,
        name: &str,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError {
        aws_common::classify(self, op, &format!("parameter '{name}'"), Failure::of(&err))
    }

    fn limit(&self) -> usize {
        if self.cfg.allow_advanced_tier { ADVANCED_MAX_BYTES } else { STANDARD_MAX_BYTES }
    }

    fn placed(&self, id: &ItemId) -> Result<String, StoreError> {
        backend::placed(self, id, self.naming.locate(id))
    }

    fn encode(&self, entry: &Entry) -> Result<SecretValue, StoreError> {
        let advanced = self.cfg.allow_advanced_tier;
        let rules = backend::ValueRules {
            service: "SSM",
            min_length: "a parameter value has a minimum length of 1",
            max_bytes: self.limit(),
            too_large_hint: &|len| {
                if advanced || len > ADVANCED_MAX_BYTES {
                    String::new()
                } else {
                    " (set allow_advanced_tier = true for up to 8192)".into()
                }
            },
            drop_description: false,
        };
        backend::encode(self, entry, self.cfg.connection_format, &rules)
    }

    /// The tags of `name`, or None when it does not exist.
    async fn tags(&self, name: &str) -> Result<Option<Ownership>, StoreError> {
        match self
            .client
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                if out.tag_list().iter().any(|t| t.key() == MANAGED_BY_KEY && t.value() == MANAGED_BY_VALUE) {
                    Ownership::Ours
                } else {
                    Ownership::Foreign
                },
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_invalid_resource_id()) => Ok(None),
            Err(e) if Failure::of(&e).code() == Some("ParameterNotFound") => Ok(None),
            Err(e) => Err(self.classify("ListTagsForResource", name, e)),
        }
    }

    fn our_tags(id: &ItemId) -> Vec<Tag> {
        vec![
            Tag::builder().key(MANAGED_BY_KEY).value(MANAGED_BY_VALUE).build().expect("key and value set"),
            Tag::builder().key(AIRFLOW_ID_KEY).value(&id.id).build().expect("key and value set"),
        ]
    }

    fn refuse_foreign(&self, id: &ItemId, name: &str, action: &str) -> StoreError {
        backend::refuse_foreign(self, id, "parameter", name, action)
    }

    /// Names carrying our tag, among those `filters` select (paged, 50 per page).
    async fn owned(&self, mut filters: Vec<ParameterStringFilter>) -> Result<HashSet<String>, StoreError> {
        filters.push(filter(&format!("tag:{MANAGED_BY_KEY}"), "Equals", &[MANAGED_BY_VALUE.to_string()]));
        let mut pages =
            self.client.describe_parameters().set_parameter_filters(Some(filters)).max_results(50).into_paginator().send();
        let mut out = HashSet::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.classify("DescribeParameters", "(by tag)", e))?;
            out.extend(page.parameters().iter().filter_map(|p| p.name().map(str::to_string)));
        }
        Ok(out)
    }

    fn decode(&self, id: &ItemId, s: &str) -> Result<Option<Value>, ItemError> {
        self.decode_as(id, s, self.reader)
    }

    fn decode_as(&self, id: &ItemId, s: &str, reader: Reader) -> Result<Option<Value>, ItemError> {
        match id.kind {
            Kind::Variable => Ok(Some(Value::Variable(Variable::new(s)))),
            // `get_connection`: a falsy value is "not found"; otherwise `deserialize_connection`.
            Kind::Connection if s.is_empty() => Ok(None),
            Kind::Connection => connection::deserialize(s, reader)
                .map(|c| Some(Value::Connection(c)))
                .map_err(|e| ItemError::new(ItemErrorKind::Unparseable, e.to_string())),
        }
    }

    fn add(&self, inv: &mut Inventory, id: ItemId, name: &str, value: &str, version: i64, owned: &HashSet<String>) {
        if let Placement::Unreachable(why) = self.naming.locate(&id) {
            inv.insert_error(id, ItemError::new(ItemErrorKind::Unreachable, why));
            return;
        }
        let meta = Meta {
            ownership: if owned.contains(name) { Ownership::Ours } else { Ownership::Foreign },
            version: Some(version.to_string()),
            name: Some(name.to_string()),
        };
        match self.decode(&id, value) {
            Ok(Some(value)) => inv.insert(Entry { id, value, meta }),
            Ok(None) => {}
            Err(e) => inv.insert_error(id, e),
        }
    }
}

impl fmt::Display for AwsSsmStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "aws_ssm:{}", self.region)
    }
}

#[async_trait]
impl Store for AwsSsmStore {
    fn read_as(&self, entry: &Entry, readers: &[Reader]) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
        crate::store::read_as_string(self.encode(entry), readers, |s, r| self.decode_as(&entry.id, s, r))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            variables: self.naming.variables_start.is_some(),
            connections: self.naming.connections_start.is_some(),
            max_value_bytes: Some(self.limit()),
            connection_description: self.cfg.connection_format == AwsConnectionFormat::Json,
            read_batch: GET_BATCH,
            // PutParameter's default (standard throughput) quota: a few per second per account
            // and region; raise [apply] max_writes_per_second with "higher throughput" enabled.
            write_rate: Some(3.0),
            ..backend::capabilities(self.cfg.connection_format, self.cfg.aws.max_concurrency)
        }
    }

    fn identity(&self) -> String {
        format!(
            "aws_ssm:region={};endpoint={};connections={:?};variables={:?}",
            self.region,
            self.cfg.aws.endpoint_url.as_deref().unwrap_or("default"),
            self.naming.connections_start,
            self.naming.variables_start
        )
    }

    fn locate(&self, id: &ItemId) -> Placement {
        self.naming.locate(id)
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let Some(start) = self.naming.start(kind) else { return Ok(Inventory::new()) };
        let path = match start.trim_end_matches('/') {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        let owned = self.owned(vec![filter("Path", "Recursive", std::slice::from_ref(&path))]).await?;
        let mut pages = self
            .client
            .get_parameters_by_path()
            .path(&path)
            .recursive(true)
            .with_decryption(true)
            .max_results(10)
            .into_paginator()
            .send();
        let mut inv = Inventory::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.classify("GetParametersByPath", &path, e))?;
            for p in page.parameters() {
                let Some(name) = p.name() else { continue };
                let Some(rest) = name.strip_prefix(start) else { continue };
                if rest.is_empty() {
                    continue;
                }
                self.add(&mut inv, ItemId::new(kind, rest), name, p.value().unwrap_or(""), p.version(), &owned);
            }
        }
        Ok(inv)
    }

    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        let named: Vec<(ItemId, String)> = ids
            .iter()
            .filter_map(|id| self.naming.name(id).filter(|n| self.naming.name_problem(n).is_none()).map(|n| (id.clone(), n)))
            .collect();
        let mut inv = Inventory::new();
        for chunk in named.chunks(FILTER_BATCH) {
            let names: Vec<String> = chunk.iter().map(|(_, n)| n.clone()).collect();
            let owned = self.owned(vec![filter("Name", "Equals", &names)]).await?;
            let batches: Vec<Vec<String>> = names.chunks(GET_BATCH).map(<[String]>::to_vec).collect();
            let gets: Vec<Result<Vec<(String, String, i64)>, StoreError>> = futures::stream::iter(batches)
                .map(|batch: Vec<String>| async move {
                    let _permit = self.permits.acquire().await.expect("semaphore never closed");
                    let out = self
                        .client
                        .get_parameters()
                        .set_names(Some(batch.clone()))
                        .with_decryption(true)
                        .send()
                        .await
                        .map_err(|e| self.classify("GetParameters", &batch[0], e))?;
                    Ok(out
                        .parameters()
                        .iter()
                        .filter_map(|p| Some((p.name()?.to_string(), p.value().unwrap_or("").to_string(), p.version())))
                        .collect())
                })
                .buffer_unordered(self.cfg.aws.max_concurrency)
                .collect()
                .await;
            for got in gets {
                for (name, value, version) in got? {
                    let value = SecretValue::from(value);
                    if let Some((id, _)) = chunk.iter().find(|(_, n)| *n == name) {
                        self.add(&mut inv, id.clone(), &name, value.expose_plaintext(), version, &owned);
                    }
                }
            }
        }
        Ok(inv)
    }

    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        let name = self.placed(&entry.id)?;
        let value = self.encode(entry)?;
        let _permit = self.permits.acquire().await.expect("semaphore never closed");
        let conflict = || StoreError::Conflict { store: self.to_string(), id: entry.id.clone() };
        let put = || {
            let mut req = self
                .client
                .put_parameter()
                .name(&name)
                .value(value.expose_plaintext())
                .r#type(ParameterType::SecureString);
            if self.cfg.allow_advanced_tier {
                req = req.tier(ParameterTier::IntelligentTiering);
            }
            if let Some(kms) = &self.cfg.kms_key_id {
                req = req.key_id(kms);
            }
            req
        };
        let create = || async {
            match put().overwrite(false).set_tags(Some(Self::our_tags(&entry.id))).send().await {
                Ok(_) => Ok(()),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => Err(conflict()),
                Err(e) => Err(self.classify("PutParameter", &name, e)),
            }
        };
        if matches!(pre, Precondition::Absent) {
            // The plan saw no parameter: PutParameter(Overwrite=false) alone, one call instead of
            // ListTagsForResource + create. A parameter created since fails it (a conflict).
            return create().await;
        }
        let existing = self.tags(&name).await?;
        let Some(ownership) = existing else {
            if matches!(pre, Precondition::Version(_)) {
                return Err(conflict());
            }
            // Create: Overwrite=false is atomic against a concurrent creator, and tags are allowed.
            return create().await;
        };
        if ownership == Ownership::Foreign && !self.cfg.adopt {
            return Err(self.refuse_foreign(&entry.id, &name, "overwrite"));
        }
        if let Precondition::Version(want) = pre {
            // Best effort: SSM has no check-and-set, so this narrows but does not close the race.
            let current = self
                .client
                .get_parameter()
                .name(&name)
                .send()
                .await
                .map_err(|e| self.classify("GetParameter", &name, e))?;
            if current.parameter().map(|p| p.version().to_string()).as_deref() != Some(want.as_str()) {
                return Err(conflict());
            }
        }
        put().overwrite(true).send().await.map_err(|e| self.classify("PutParameter", &name, e))?;
        if ownership == Ownership::Foreign {
            self.client
                .add_tags_to_resource()
                .resource_type(ResourceTypeForTagging::Parameter)
                .resource_id(&name)
                .set_tags(Some(Self::our_tags(&entry.id)))
                .send()
                .await
                .map_err(|e| self.classify("AddTagsToResource", &name, e))?;
        }
        Ok(())
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        let Some(name) = self.naming.name(id).filter(|n| self.naming.name_problem(n).is_none()) else { return Ok(()) };
        let _permit = self.permits.acquire().await.expect("semaphore never closed");
        let Some(ownership) = self.tags(&name).await? else { return Ok(()) };
        if ownership == Ownership::Foreign && !self.cfg.adopt {
            return Err(self.refuse_foreign(id, &name, "delete"));
        }
        match self.client.delete_parameter().name(&name).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(()),
            Err(e) => Err(self.classify("DeleteParameter", &name, e)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .describe_parameters()
            .max_results(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("DescribeParameters", "(any)", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(json: &str) -> SsmNaming {
        SsmNaming::new(&AwsSsmConfig::from_airflow_kwargs(&serde_json::from_str(json).unwrap()).unwrap(), Some("us-east-2"))
            .unwrap()
    }

    #[test]
    fn names_follow_airflow() {
        let n = naming(r#"{"connections_prefix": "airflow/connections/", "variables_prefix": "/"}"#);
        assert_eq!(n.locate(&ItemId::connection("c")), Placement::At("/airflow/connections/c".into()));
        assert_eq!(n.locate(&ItemId::variable("v")), Placement::At("/v".into()));
        let n = naming(r#"{"variables_prefix": null}"#);
        assert!(matches!(n.locate(&ItemId::variable("v")), Placement::Unreachable(_)));
    }

    #[test]
    fn ssm_name_rules() {
        let n = naming("{}");
        assert!(n.name_problem("/airflow/variables/x:y").is_some());
        assert!(n.name_problem("/AWSthing").is_some());
        assert!(n.name_problem("/ssm/x").is_some());
        assert!(n.name_problem("/airflow/aws").is_none(), "only the first level is reserved");
        assert!(n.name_problem("/a//b").is_some());
        assert!(n.name_problem(&"/a".repeat(15)).is_none());
        assert!(n.name_problem(&"/a".repeat(16)).is_some());
        // The ARN for us-east-2 adds 44 characters (arn:aws:ssm:us-east-2:111122223333:parameter).
        let ok = format!("/{}", "n".repeat(1011 - 44 - 1));
        assert!(n.name_problem(&ok).is_none());
        assert!(n.name_problem(&format!("{ok}n")).is_some());
    }
}
