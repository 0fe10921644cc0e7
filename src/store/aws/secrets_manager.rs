//! AWS Secrets Manager, written exactly as Airflow's
//! `airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend` reads it
//! (spec §5, §5.2, §8, §9 items 11, 13, 15, 17, 18).
//!
//! **Naming.** Each non-empty prefix is `rstrip(sep)`-ed (Python `str.rstrip`, a character set);
//! the name is `prefix + sep + id`, or the bare id when the prefix is `""`. A disabled kind
//! (Airflow's `None` prefix; `false` in our TOML) has no names. With a lookup pattern, an id that
//! fails `re.match(pattern, id, re.IGNORECASE)` is never looked up: [`Placement::Unreachable`].
//! AWS accepts names of 1–512 characters of `A-Za-z0-9/_+=.@-`, and a name ending in `-` plus six
//! characters is confused with an ARN suffix: both are [`Placement::Invalid`].
//!
//! **Values.** Airflow reads `SecretString` only (a `SecretBinary` secret reads as None).
//! Variables are stored verbatim; an empty variable is impossible (minimum length 1). Connections
//! are written as canonical JSON (or a URI with `connection_format = "uri"`) *without* the
//! description: Airflow re-maps the JSON through its alias table (user/username/user_name → login,
//! pass/key → password, database → schema, conn_id/connection_type/engine → conn_type,
//! remote_host/server → host; the first key in the secret's own order wins) and drops every other
//! key, description included. [`decode_connection`] (in `crate::airflow::amazon`) reproduces that reading. SecretString is at most
//! 65,536 bytes.
//!
//! **Ownership.** Secrets we create carry the tags `managed-by=airflow-secrets-sync` and
//! `airflow-id=<id>`. An untagged (foreign) secret is never overwritten or deleted unless
//! `adopt = true` (adopting tags it). Deletes use a recovery window (default 30 days); a name pending
//! deletion blocks re-creation: the write fails by name, or restores the secret first with
//! `restore_pending_deletion = true`.
//!
//! **Calls.** Scan: `ListSecrets` (name-prefix filter, paged; gives tags) + `BatchGetSecretValue`
//! (≤ 20 names per call, several calls in flight). Read of given ids: `DescribeSecret` per id +
//! `BatchGetSecretValue`. Write: `DescribeSecret` then `CreateSecret` (new) or `PutSecretValue`.
//! Tested against `moto_server` (tests/aws.rs).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use futures::StreamExt;

pub use super::sm_naming::{SecretsManagerNaming, name_problem};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value as Json};
use tokio::sync::Semaphore;

use super::backend::{self, BackendConfig, Patterns};
use super::common::{
    self as aws_common, AIRFLOW_ID_KEY, AwsConnectionConfig, AwsConnectionFormat, Failure, MANAGED_BY_KEY, MANAGED_BY_VALUE,
};
use crate::store::{Capabilities, Placement, Precondition, Store, StoreError};
pub use crate::airflow::amazon::decode_connection;
use crate::airflow::connection::Reader;
use crate::model::{
    Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Meta, Ownership, SecretValue, Value,
    Variable,
};

/// SecretString limit (bytes).
pub const MAX_SECRET_BYTES: usize = 65_536;
/// Secret name limit (characters).
pub const MAX_NAME_LEN: usize = 512;
/// `BatchGetSecretValue` takes at most 20 ids.
const BATCH: usize = 20;

/// `[…] kind = "aws_secrets_manager"` config. Keys (TOML; flat, with the AWS connection keys of
/// [`AwsConnectionConfig`] alongside):
///
/// | key | default | meaning |
/// |---|---|---|
/// | `connections_prefix` | `"airflow/connections"` | `false` disables connections (Airflow `None`) |
/// | `variables_prefix` | `"airflow/variables"` | `false` disables variables |
/// | `sep` | `"/"` | |
/// | `connections_lookup_pattern`, `variables_lookup_pattern` | none | Python regex, `re.match` + IGNORECASE |
/// | `extra_conn_words` | none | `{ field = ["alias", …] }`, as Airflow's kwarg (`user` means login) |
/// | `connection_format` | `"json"` | or `"uri"` |
/// | `kms_key_id` | AWS managed key | for `CreateSecret` |
/// | `adopt` | `false` | overwrite/delete secrets this tool did not create |
/// | `recovery_window_days` | `30` | 7–30; deletes are recoverable for this long |
/// | `force_delete_without_recovery` | `false` | delete immediately (irreversible) |
/// | `restore_pending_deletion` | `false` | `RestoreSecret` a name pending deletion before writing |
#[derive(Clone, Debug)]
pub struct AwsSecretsManagerConfig {
    /// `None`: connections disabled.
    pub connections_prefix: Option<String>,
    /// `None`: variables disabled.
    pub variables_prefix: Option<String>,
    pub sep: String,
    pub connections_lookup_pattern: Option<String>,
    pub variables_lookup_pattern: Option<String>,
    pub extra_conn_words: BTreeMap<String, Vec<String>>,
    pub connection_format: AwsConnectionFormat,
    pub kms_key_id: Option<String>,
    pub adopt: bool,
    pub recovery_window_days: u32,
    pub force_delete_without_recovery: bool,
    pub restore_pending_deletion: bool,
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
    #[serde(default = "default_sep")]
    sep: String,
    #[serde(default)]
    connections_lookup_pattern: Option<String>,
    #[serde(default)]
    variables_lookup_pattern: Option<String>,
    #[serde(default)]
    extra_conn_words: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    connection_format: AwsConnectionFormat,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default)]
    adopt: bool,
    #[serde(default = "default_recovery_window")]
    recovery_window_days: u32,
    #[serde(default)]
    force_delete_without_recovery: bool,
    #[serde(default)]
    restore_pending_deletion: bool,
}

fn default_connections_prefix() -> Option<String> {
    Some("airflow/connections".into())
}
fn default_variables_prefix() -> Option<String> {
    Some("airflow/variables".into())
}
fn default_sep() -> String {
    "/".into()
}
fn default_recovery_window() -> u32 {
    30
}

impl Default for AwsSecretsManagerConfig {
    fn default() -> Self {
        backend::default_config()
    }
}

impl<'de> Deserialize<'de> for AwsSecretsManagerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        backend::deserialize_config(d)
    }
}

const CONN_FIELDS: [&str; 7] = ["login", "password", "host", "port", "schema", "conn_type", "extra"];

impl BackendConfig for AwsSecretsManagerConfig {
    type Fields = Fields;

    fn validate(&self) -> Result<(), String> {
        AwsSecretsManagerConfig::validate(self)
    }

    fn from_fields(f: Fields, aws: AwsConnectionConfig) -> Self {
        Self {
            connections_prefix: f.connections_prefix,
            variables_prefix: f.variables_prefix,
            sep: f.sep,
            connections_lookup_pattern: f.connections_lookup_pattern,
            variables_lookup_pattern: f.variables_lookup_pattern,
            extra_conn_words: f.extra_conn_words.unwrap_or_default(),
            connection_format: f.connection_format,
            kms_key_id: f.kms_key_id,
            adopt: f.adopt,
            recovery_window_days: f.recovery_window_days,
            force_delete_without_recovery: f.force_delete_without_recovery,
            restore_pending_deletion: f.restore_pending_deletion,
            aws,
        }
    }
}

impl AwsSecretsManagerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.sep.is_empty() {
            return Err("sep must not be empty".into());
        }
        if !(7..=30).contains(&self.recovery_window_days) {
            return Err("recovery_window_days must be between 7 and 30 (an AWS limit)".into());
        }
        Patterns::compile(self.connections_lookup_pattern.as_deref(), self.variables_lookup_pattern.as_deref())?;
        for k in self.extra_conn_words.keys() {
            if k != "user" && !CONN_FIELDS.contains(&k.as_str()) {
                // Airflow would raise KeyError on the first connection read.
                return Err(format!("extra_conn_words: unknown connection field {k:?}"));
            }
        }
        self.aws.validate()
    }

    /// The `[secrets] backend_kwargs` of an Airflow `SecretsManagerBackend`, as our config
    /// ([`backend::config_from_kwargs`]). `None` prefixes disable a kind.
    pub fn from_airflow_kwargs(kwargs: &Map<String, Json>) -> Result<Self, String> {
        backend::config_from_kwargs(kwargs, "SecretsManagerBackend", |kw, own| {
            for key in [
                "connections_prefix",
                "variables_prefix",
                "sep",
                "connections_lookup_pattern",
                "variables_lookup_pattern",
                "extra_conn_words",
            ] {
                if let Some(v) = kw.remove(key) {
                    match (key, v) {
                        // Airflow's `None` pattern / words / sep mean "the default".
                        ("connections_prefix" | "variables_prefix", v) => {
                            own.insert(key.into(), v);
                        }
                        (_, Json::Null) => {}
                        (_, v) => {
                            own.insert(key.into(), v);
                        }
                    }
                }
            }
            for key in ["full_url_mode", "are_secret_values_urlencoded"] {
                // Removed in amazon provider 9.x; `full_url_mode=False` meant URL-unquoted JSON fields.
                if kw.remove(key).is_some_and(|v| v != Json::Bool(false) && v != Json::Null) {
                    return Err(format!("{key} is not supported (removed from the amazon provider)"));
                }
            }
            Ok(())
        })
    }
}

/// What `DescribeSecret` tells a writer about an existing name.
struct Existing {
    ownership: Ownership,
    pending_deletion: bool,
    version: Option<String>,
}

/// The Airflow Secrets Manager backend as a [`Store`].
pub struct AwsSecretsManagerStore {
    cfg: AwsSecretsManagerConfig,
    naming: SecretsManagerNaming,
    client: Client,
    region: String,
    reader: Reader,
    permits: Semaphore,
}

fn ownership(tags: &[Tag]) -> Ownership {
    if tags.iter().any(|t| t.key() == Some(MANAGED_BY_KEY) && t.value() == Some(MANAGED_BY_VALUE)) {
        Ownership::Ours
    } else {
        Ownership::Foreign
    }
}

fn current_version(map: Option<&HashMap<String, Vec<String>>>) -> Option<String> {
    map?.iter().find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT")).map(|(v, _)| v.clone())
}

impl AwsSecretsManagerStore {
    /// Build the client (no request is made).
    pub async fn new(cfg: AwsSecretsManagerConfig) -> Result<Self, StoreError> {
        let config_err = |message: String| StoreError::Config { store: "aws_secrets_manager".into(), message };
        cfg.validate().map_err(config_err)?;
        let naming = SecretsManagerNaming::new(&cfg).map_err(config_err)?;
        let (client, region) = backend::client::<Client>(&cfg.aws).await;
        let region = region.unwrap_or_else(|| "(default region)".into());
        let permits = Semaphore::new(cfg.aws.max_concurrency);
        Ok(Self { cfg, naming, client, region, reader: Reader::default(), permits })
    }

    /// Which Airflow reader's connection semantics to reproduce (default: Airflow 3 ORM).
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    pub fn naming(&self) -> &SecretsManagerNaming {
        &self.naming
    }

    pub fn config(&self) -> &AwsSecretsManagerConfig {
        &self.cfg
    }

    /// The one place SDK errors become [`StoreError`]s (see [`aws_common::classify`]).
    fn classify<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
        &self,
        op: &'static str,
        name: &str,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError {
        aws_common::classify(self, op, &format!("secret '{name}'"), Failure::of(&err))
    }

    /// The checked name for a write, or the per-item error, before any request.
    fn placed(&self, id: &ItemId) -> Result<String, StoreError> {
        backend::placed(self, id, self.naming.locate(id))
    }

    /// The SecretString for `entry`, or the per-item error, before any request.
    fn encode(&self, entry: &Entry) -> Result<SecretValue, StoreError> {
        let rules = backend::ValueRules {
            service: "Secrets Manager",
            min_length: "SecretString minimum length is 1",
            max_bytes: MAX_SECRET_BYTES,
            too_large_hint: &|_| String::new(),
            // Airflow drops the description on read (alias remapping), so it is not written.
            drop_description: true,
        };
        backend::encode(self, entry, self.cfg.connection_format, &rules)
    }

    /// CreateSecret with our ownership tags (and the KMS key, if configured).
    async fn create(
        &self,
        name: &str,
        id: &ItemId,
        value: &str,
    ) -> Result<
        aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput,
        SdkError<aws_sdk_secretsmanager::operation::create_secret::CreateSecretError, HttpResponse>,
    > {
        let mut req = self.client.create_secret().name(name).secret_string(value).set_tags(Some(Self::tags(id).to_vec()));
        if let Some(kms) = &self.cfg.kms_key_id {
            req = req.kms_key_id(kms);
        }
        req.send().await
    }

    async fn describe(&self, name: &str) -> Result<Option<Existing>, StoreError> {
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(out) => Ok(Some(Existing {
                ownership: ownership(out.tags()),
                pending_deletion: out.deleted_date().is_some(),
                version: current_version(out.version_ids_to_stages()),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(self.classify("DescribeSecret", name, e)),
        }
    }

    fn tags(id: &ItemId) -> [Tag; 2] {
        [
            Tag::builder().key(MANAGED_BY_KEY).value(MANAGED_BY_VALUE).build(),
            Tag::builder().key(AIRFLOW_ID_KEY).value(&id.id).build(),
        ]
    }

    fn refuse_foreign(&self, id: &ItemId, name: &str, action: &str) -> StoreError {
        backend::refuse_foreign(self, id, "secret", name, action)
    }

    /// Fetch the values of `listed` (id, name, ownership) with `BatchGetSecretValue`, several
    /// batches in flight, and decode them as Airflow would.
    async fn fetch(&self, listed: Vec<(ItemId, String, Ownership)>) -> Result<Inventory, StoreError> {
        let mut inv = Inventory::new();
        let batches: Vec<Vec<(ItemId, String, Ownership)>> = listed.chunks(BATCH).map(<[_]>::to_vec).collect();
        let results: Vec<Result<Inventory, StoreError>> = futures::stream::iter(batches)
            .map(|batch| self.fetch_batch(batch))
            .buffer_unordered(self.cfg.aws.max_concurrency)
            .collect()
            .await;
        for r in results {
            inv.extend(r?);
        }
        Ok(inv)
    }

    async fn fetch_batch(&self, batch: Vec<(ItemId, String, Ownership)>) -> Result<Inventory, StoreError> {
        let _permit = self.permits.acquire().await.expect("semaphore never closed");
        let by_name: HashMap<&str, &(ItemId, String, Ownership)> = batch.iter().map(|b| (b.1.as_str(), b)).collect();
        let names: Vec<String> = batch.iter().map(|b| b.1.clone()).collect();
        let mut inv = Inventory::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(names.clone()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.classify("BatchGetSecretValue", &names[0], e))?;
            for sv in out.secret_values() {
                let Some((id, name, own)) = sv.name().and_then(|n| by_name.get(n)).map(|b| (&b.0, &b.1, b.2)) else {
                    continue;
                };
                let meta = Meta { ownership: own, version: sv.version_id().map(str::to_string), name: Some(name.clone()) };
                match sv.secret_string() {
                    Some(s) => match self.decode(id, s) {
                        Ok(Some(value)) => inv.insert(Entry { id: id.clone(), value, meta }),
                        Ok(None) => {}
                        Err(e) => inv.insert_error(id.clone(), e),
                    },
                    None => inv.insert_error(
                        id.clone(),
                        ItemError::new(
                            ItemErrorKind::Unparseable,
                            "stored as SecretBinary: Airflow reads only SecretString and treats this secret as absent",
                        ),
                    ),
                }
            }
            for err in out.errors() {
                let Some((id, _, _)) = err.secret_id().and_then(|n| by_name.get(n)).map(|b| (&b.0, &b.1, b.2)) else {
                    continue;
                };
                match err.error_code() {
                    // Deleted (or scheduled for deletion) between the listing and the read: gone.
                    Some("ResourceNotFoundException") | Some("InvalidRequestException") => {}
                    code => inv.insert_error(
                        id.clone(),
                        ItemError::new(
                            ItemErrorKind::Unreadable,
                            format!("BatchGetSecretValue refused it ({})", code.unwrap_or("no error code")),
                        ),
                    ),
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(inv)
    }

    fn decode(&self, id: &ItemId, s: &str) -> Result<Option<Value>, ItemError> {
        self.decode_as(id, s, self.reader)
    }

    fn decode_as(&self, id: &ItemId, s: &str, reader: Reader) -> Result<Option<Value>, ItemError> {
        match id.kind {
            Kind::Variable => Ok(Some(Value::Variable(Variable::new(s)))),
            Kind::Connection => decode_connection(s, &self.cfg.extra_conn_words, reader)
                .map(|c| c.map(Value::Connection))
                .map_err(|e| ItemError::new(ItemErrorKind::Unparseable, e.to_string())),
        }
    }
}

impl fmt::Display for AwsSecretsManagerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "aws_secrets_manager:{}", self.region)
    }
}

#[async_trait]
impl Store for AwsSecretsManagerStore {
    fn read_as(&self, entry: &Entry, readers: &[Reader]) -> Result<Vec<Result<Value, ItemError>>, ItemError> {
        crate::store::read_as_string(self.encode(entry), readers, |s, r| self.decode_as(&entry.id, s, r))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            variables: self.naming.variables_prefix.is_some(),
            connections: self.naming.connections_prefix.is_some(),
            max_value_bytes: Some(MAX_SECRET_BYTES),
            // `Absent` is CreateSecret's own atomic check; `Version` is checked just before the write.
            conditional_writes: true,
            read_batch: BATCH,
            // Secrets Manager's quota for CreateSecret / PutSecretValue / DeleteSecret / TagResource.
            write_rate: Some(50.0),
            ..backend::capabilities(self.cfg.connection_format, self.cfg.aws.max_concurrency)
        }
    }

    fn identity(&self) -> String {
        format!(
            "aws_secrets_manager:region={};endpoint={};connections={:?};variables={:?};sep={:?}",
            self.region,
            self.cfg.aws.endpoint_url.as_deref().unwrap_or("default"),
            self.naming.connections_prefix,
            self.naming.variables_prefix,
            self.naming.sep
        )
    }

    fn locate(&self, id: &ItemId) -> Placement {
        self.naming.locate(id)
    }

    async fn scan(&self, kind: Kind) -> Result<Inventory, StoreError> {
        let Some(name_prefix) = self.naming.name_prefix(kind) else { return Ok(Inventory::new()) };
        let mut req = self.client.list_secrets().max_results(100);
        // The `name` filter is a case-sensitive prefix match (API_Filter), at most 512 characters of
        // `[a-zA-Z0-9 :_@/+=.-]`, and a leading `!` negates it. A prefix it cannot express lists
        // everything instead; names are re-checked below either way.
        let filterable = name_prefix.len() <= MAX_NAME_LEN
            && !name_prefix.starts_with('!')
            && name_prefix.chars().all(|c| c.is_ascii_alphanumeric() || " :_@/+=.-".contains(c));
        if !name_prefix.is_empty() && filterable {
            req = req.filters(Filter::builder().key(FilterNameStringType::Name).values(&name_prefix).build());
        }
        // ListSecrets pages are sequential (each needs the previous one's token): the values of
        // each full batch of 20 listed names are fetched while the next pages are listed, so the
        // scan costs about its ListSecrets round trips, not those plus the fetches'.
        let (batches, listed) = futures::channel::mpsc::unbounded::<Vec<(ItemId, String, Ownership)>>();
        let list = async move {
            let mut pages = req.into_paginator().send();
            let mut inv = Inventory::new();
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.classify("ListSecrets", &name_prefix, e))?;
                for s in page.secret_list() {
                    let Some(name) = s.name() else { continue };
                    let Some(rest) = name.strip_prefix(name_prefix.as_str()) else { continue };
                    if rest.is_empty() || s.deleted_date().is_some() {
                        continue;
                    }
                    let id = ItemId::new(kind, rest);
                    if let Placement::Unreachable(why) = self.naming.locate(&id) {
                        inv.insert_error(id, ItemError::new(ItemErrorKind::Unreachable, why));
                        continue;
                    }
                    batch.push((id, name.to_string(), ownership(s.tags())));
                    if batch.len() == BATCH {
                        // The receiver lives as long as this future (try_join! below).
                        let _ = batches.unbounded_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                    }
                }
            }
            if !batch.is_empty() {
                let _ = batches.unbounded_send(batch);
            }
            Ok::<_, StoreError>(inv) // `batches` dropped here: the fetch stream ends
        };
        let fetch = async {
            let mut parts = listed.map(|batch| self.fetch_batch(batch)).buffer_unordered(self.cfg.aws.max_concurrency);
            let mut inv = Inventory::new();
            while let Some(part) = parts.next().await {
                inv.extend(part?);
            }
            Ok(inv)
        };
        let (mut inv, fetched) = futures::try_join!(list, fetch)?;
        inv.extend(fetched);
        Ok(inv)
    }

    async fn read(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        // One DescribeSecret per id (tags, pending deletion), then batched values.
        let named: Vec<(ItemId, String)> =
            ids.iter().filter_map(|id| self.naming.name(id).filter(|n| name_problem(n).is_none()).map(|n| (id.clone(), n))).collect();
        let described: Vec<Result<Option<(ItemId, String, Ownership)>, StoreError>> = futures::stream::iter(named)
            .map(|(id, name)| async move {
                let _permit = self.permits.acquire().await.expect("semaphore never closed");
                Ok(self
                    .describe(&name)
                    .await?
                    .filter(|e| !e.pending_deletion)
                    .map(|e| (id, name, e.ownership)))
            })
            .buffer_unordered(self.cfg.aws.max_concurrency)
            .collect()
            .await;
        let mut listed = Vec::new();
        let mut inv = Inventory::new();
        for d in described {
            if let Some((id, name, own)) = d? {
                if let Placement::Unreachable(why) = self.naming.locate(&id) {
                    inv.insert_error(id, ItemError::new(ItemErrorKind::Unreachable, why));
                } else {
                    listed.push((id, name, own));
                }
            }
        }
        inv.extend(self.fetch(listed).await?);
        Ok(inv)
    }

    async fn read_back(&self, ids: &[ItemId]) -> Result<Inventory, StoreError> {
        // Values only: one BatchGetSecretValue per 20 ids instead of a DescribeSecret each.
        let named: Vec<(ItemId, String, Ownership)> = ids
            .iter()
            .filter_map(|id| self.naming.name(id).filter(|n| name_problem(n).is_none()).map(|n| (id.clone(), n, Ownership::Ours)))
            .collect();
        self.fetch(named).await
    }

    async fn write(&self, entry: &Entry, pre: &Precondition) -> Result<(), StoreError> {
        let name = self.placed(&entry.id)?;
        let value = self.encode(entry)?;
        let _permit = self.permits.acquire().await.expect("semaphore never closed");
        let conflict = || StoreError::Conflict { store: self.to_string(), id: entry.id.clone() };
        if matches!(pre, Precondition::Absent) {
            // The plan saw no secret: CreateSecret alone, one call instead of DescribeSecret +
            // create. When the name is taken (ResourceExistsException; InvalidRequestException
            // when it is pending deletion, which scans read as absent), the path below describes
            // it and decides: a conflict, or a pending deletion to report or restore.
            match self.create(&name, &entry.id, value.expose_plaintext()).await {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_exists_exception() || s.is_invalid_request_exception()) => {}
                Err(e) => return Err(self.classify("CreateSecret", &name, e)),
            }
        }
        let Some(existing) = self.describe(&name).await? else {
            if matches!(pre, Precondition::Version(_)) {
                return Err(conflict());
            }
            return match self.create(&name, &entry.id, value.expose_plaintext()).await {
                Ok(_) => Ok(()),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_exists_exception()) => Err(conflict()),
                Err(e) => Err(self.classify("CreateSecret", &name, e)),
            };
        };
        // A secret pending deletion is absent to Airflow and to our scans: `Absent` still holds.
        if matches!(pre, Precondition::Absent) && !existing.pending_deletion {
            return Err(conflict());
        }
        if existing.ownership == Ownership::Foreign && !self.cfg.adopt {
            return Err(self.refuse_foreign(&entry.id, &name, "overwrite"));
        }
        if existing.pending_deletion {
            if !self.cfg.restore_pending_deletion {
                return Err(backend::item_err(
                    self,
                    &entry.id,
                    ItemErrorKind::Blocked,
                    format!(
                        "secret '{name}' is scheduled for deletion and blocks the name until its recovery window ends; \
                         set restore_pending_deletion = true to restore it and write the new value"
                    ),
                ));
            }
            self.client
                .restore_secret()
                .secret_id(&name)
                .send()
                .await
                .map_err(|e| self.classify("RestoreSecret", &name, e))?;
        }
        if let Precondition::Version(want) = pre
            && existing.version.as_deref() != Some(want.as_str())
        {
            return Err(conflict());
        }
        self.client
            .put_secret_value()
            .secret_id(&name)
            .secret_string(value.expose_plaintext())
            .send()
            .await
            .map_err(|e| self.classify("PutSecretValue", &name, e))?;
        if existing.ownership == Ownership::Foreign {
            // Adopted: from now on it is ours.
            self.client
                .tag_resource()
                .secret_id(&name)
                .set_tags(Some(Self::tags(&entry.id).to_vec()))
                .send()
                .await
                .map_err(|e| self.classify("TagResource", &name, e))?;
        }
        Ok(())
    }

    async fn delete(&self, id: &ItemId) -> Result<(), StoreError> {
        // An id with no valid name cannot exist here.
        let Some(name) = self.naming.name(id).filter(|n| name_problem(n).is_none()) else { return Ok(()) };
        let _permit = self.permits.acquire().await.expect("semaphore never closed");
        let Some(existing) = self.describe(&name).await? else { return Ok(()) };
        if existing.pending_deletion {
            return Ok(());
        }
        if existing.ownership == Ownership::Foreign && !self.cfg.adopt {
            return Err(self.refuse_foreign(id, &name, "delete"));
        }
        let mut req = self.client.delete_secret().secret_id(&name);
        req = if self.cfg.force_delete_without_recovery {
            req.force_delete_without_recovery(true)
        } else {
            req.recovery_window_in_days(i64::from(self.cfg.recovery_window_days))
        };
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(()),
            Err(e) => Err(self.classify("DeleteSecret", &name, e)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .list_secrets()
            .max_results(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("ListSecrets", "(any)", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> AwsSecretsManagerConfig {
        AwsSecretsManagerConfig::from_airflow_kwargs(&serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn names_follow_airflow() {
        let n = SecretsManagerNaming::new(&cfg(r#"{"sep": "-"}"#)).unwrap();
        assert_eq!(n.locate(&ItemId::variable("my_v")), Placement::At("airflow/variables-my_v".into()));
        // Airflow requests this name, but AWS would confuse it with an ARN suffix.
        assert!(matches!(n.locate(&ItemId::variable("my_var")), Placement::Invalid(_)));
        let n = SecretsManagerNaming::new(&cfg(r#"{"connections_prefix": "", "variables_prefix": null}"#)).unwrap();
        assert_eq!(n.locate(&ItemId::connection("c")), Placement::At("c".into()));
        assert!(matches!(n.locate(&ItemId::variable("v")), Placement::Unreachable(_)));
        let n = SecretsManagerNaming::new(&cfg(r#"{"connections_prefix": "team1/conns/"}"#)).unwrap();
        assert_eq!(n.name(&ItemId::connection("a")).unwrap(), "team1/conns/a");
    }

    #[test]
    fn aws_name_rules() {
        assert!(name_problem("airflow/variables/x:y").is_some());
        assert!(name_problem("airflow/variables/caf\u{e9}").is_some());
        assert!(name_problem("airflow/variables/db-abcdef").is_some(), "ARN-suffix trap");
        assert!(name_problem("airflow/variables/db-abcde").is_none());
        assert!(name_problem(&"a".repeat(513)).is_some());
        assert!(name_problem(&"a".repeat(512)).is_none());
    }

    #[test]
    fn config_toml_keys() {
        let c: AwsSecretsManagerConfig = toml::from_str(
            "connections_prefix = false\nsep = \"-\"\nregion_name = \"eu-west-1\"\nrecovery_window_days = 7\n",
        )
        .unwrap();
        assert_eq!(c.connections_prefix, None);
        assert_eq!(c.variables_prefix.as_deref(), Some("airflow/variables"));
        assert_eq!(c.aws.region_name.as_deref(), Some("eu-west-1"));
        assert!(toml::from_str::<AwsSecretsManagerConfig>("nope = 1").is_err());
        assert!(toml::from_str::<AwsSecretsManagerConfig>("connections_prefix = true").is_err());
        assert!(toml::from_str::<AwsSecretsManagerConfig>("recovery_window_days = 3").is_err());
        let c: AwsSecretsManagerConfig =
            toml::from_str("aws_access_key_id = \"AKIA\"\naws_secret_access_key = \"canary-sk-91\"\n").unwrap();
        assert!(!format!("{c:?}").contains("canary-sk-91"));
    }
}
