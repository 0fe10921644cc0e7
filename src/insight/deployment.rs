//! Configuration taken straight from an Airflow deployment: its `AIRFLOW__…` environment and its
//! `airflow.cfg`, turned into our `[source]` (the metastore) and `[target]` (the `[secrets]
//! backend`), plus the 3.x `[workers] secrets_backend` for `resolve`.
//!
//! Pure over an env map and the cfg text ([`Deployment::from_parts`]); the only side effect is
//! running `_cmd` options, through a caller-supplied runner so tests need no processes.
//!
//! Airflow's rules reproduced here:
//! - an option is looked up env `AIRFLOW__{SECTION}__{KEY}` first, then (sensitive options only)
//!   `…_CMD` and `…_SECRET` in env, then `airflow.cfg` `key`, `key_cmd`, `key_secret` (spec §2.3,
//!   §6). An empty env value is a hit (`AIRFLOW__CORE__FERNET_KEY=""` means NullFernet, §9.5).
//! - `backend_kwargs` is JSON; an empty value means `{}` (`conf.getjson` fallback). 3.2+ per-kwarg
//!   overrides `AIRFLOW__SECRETS__BACKEND_KWARG__<NAME>` (raw string, name lower-cased) replace the
//!   JSON key (spec §3.2).
//! - `[workers] secrets_backend` (3.0+) with its own kwargs; unset, workers use `[secrets] backend`
//!   with `[secrets] backend_kwargs` (spec §3.2, §9.21).
//! - `[database] sql_alchemy_conn` falls back to the deprecated 2.x `[core] sql_alchemy_conn`.
//! - `*_secret` variants (a lookup in the secrets backend itself) are not followed: they are an
//!   error that names the option, never a silent fall-through to another value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::config::{Config, StoreSpec};
use crate::model::SecretValue;
use crate::store::registry::kind_for_airflow_backend;

/// Why a deployment's settings cannot be turned into a configuration. Never contains a value.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("cannot read {path}: {reason}")]
    CfgFile { path: String, reason: String },
    #[error("{origin}: {reason}")]
    Option { origin: String, reason: String },
    #[error("{0}")]
    NoTarget(String),
}

/// Where an option's value came from, for display (`env AIRFLOW__X__Y`, `airflow.cfg [x] y`).
pub type Origin = String;

/// One option as Airflow found it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Found {
    Value(String, Origin),
    Cmd(String, Origin),
    Secret(Origin),
}

/// `airflow.cfg` as Python's configparser reads it: section and option names lower-cased
/// (`optionxform`), `key = value` or `key: value`, `#`/`;` comment lines, indented continuation
/// lines, `%%` → `%` (BasicInterpolation). Later duplicates win.
pub fn parse_cfg(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut last_key: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            if trimmed.is_empty() {
                last_key = None;
            }
            continue;
        }
        // Continuation: an indented line extends the previous value.
        if line.starts_with(char::is_whitespace)
            && let (Some(s), Some(k)) = (&section, &last_key)
        {
            if let Some(v) = out.get_mut(s).and_then(|m| m.get_mut(k)) {
                v.push('\n');
                v.push_str(&trimmed.replace("%%", "%"));
            }
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = name.trim().to_lowercase();
            out.entry(name.clone()).or_default();
            section = Some(name);
            last_key = None;
            continue;
        }
        let Some(s) = &section else { continue };
        let split = trimmed.find(['=', ':']);
        let (k, v) = match split {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (trimmed, ""),
        };
        let key = k.trim().to_lowercase();
        out.entry(s.clone()).or_default().insert(key.clone(), v.trim().replace("%%", "%"));
        last_key = Some(key);
    }
    out
}

/// Runs a `_cmd` option's command (`shlex.split`, no shell) and returns its stdout.
pub type CmdRunner<'a> = &'a dyn Fn(&str) -> Result<SecretValue, String>;

/// The production runner: `shlex.split`, no shell, stdin null, stdout unstripped (Airflow's
/// `run_command`), held as a [`SecretValue`] (see [`crate::secret::run_command`]).
pub fn run_command(command: &str) -> Result<SecretValue, String> {
    crate::secret::run_command(command)
}

/// A secrets backend as the deployment names it. `Debug` masks the kwargs' credentials.
#[derive(Clone, PartialEq)]
pub struct Backend {
    /// The class path, as written.
    pub class: String,
    /// Our store kind for it (`None`: a class this tool does not know).
    pub kind: Option<&'static str>,
    /// `backend_kwargs` after the per-kwarg overrides. Holds credentials: never print unmasked.
    pub kwargs: Map<String, Json>,
    pub origin: Origin,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = super::mask::mask_table(&self.spec().0);
        f.debug_struct("Backend")
            .field("class", &self.class)
            .field("kind", &self.kind)
            .field("backend_kwargs", &masked.get("backend_kwargs").and_then(|v| v.as_str()).unwrap_or("{}"))
            .field("origin", &self.origin)
            .finish()
    }
}

impl Backend {
    /// The store table: `airflow_backend` + `backend_kwargs` as the JSON string (TOML has no null,
    /// and a `null` prefix is how Airflow disables a kind).
    pub fn spec(&self) -> StoreSpec {
        let mut t = toml::Table::new();
        t.insert("airflow_backend".into(), toml::Value::String(self.class.clone()));
        if !self.kwargs.is_empty() {
            t.insert("backend_kwargs".into(), toml::Value::String(Json::Object(self.kwargs.clone()).to_string()));
        }
        StoreSpec(t)
    }
}

/// The metastore as the deployment configures it.
#[derive(Clone, Debug, Default)]
pub struct MetastoreSettings {
    pub sql_alchemy_conn: Option<(SecretValue, Origin)>,
    pub sql_alchemy_schema: Option<String>,
    /// `[core] fernet_key` (env, or the file), when found as a value. Empty means NullFernet.
    pub fernet_key: Option<(SecretValue, Origin)>,
    /// `[core] fernet_key_cmd` (env `…_CMD` or the file), run by the metastore store itself.
    pub fernet_key_cmd: Option<(String, Origin)>,
}

/// What an Airflow deployment's configuration means for this tool.
#[derive(Clone, Debug, Default)]
pub struct Deployment {
    pub metastore: MetastoreSettings,
    /// `[secrets] backend` (scheduler, API server, 2.x everywhere).
    pub secrets_backend: Option<Backend>,
    /// `[workers] secrets_backend` when set (3.x task side); unset, workers use `secrets_backend`.
    pub workers_backend: Option<Backend>,
    /// Things an operator should know (unknown classes, fallbacks taken).
    pub notes: Vec<String>,
}

const KWARG_SECRETS: &str = "AIRFLOW__SECRETS__BACKEND_KWARG__";
const KWARG_WORKERS: &str = "AIRFLOW__WORKERS__SECRETS_BACKEND_KWARG__";

struct Lookup<'a> {
    env: &'a BTreeMap<String, String>,
    cfg: BTreeMap<String, BTreeMap<String, String>>,
}

impl Lookup<'_> {
    /// Airflow's `conf.get(section, key)` order (spec §2.3, §6).
    fn find(&self, section: &str, key: &str, sensitive: bool) -> Option<Found> {
        let var = format!("AIRFLOW__{}__{}", section.to_uppercase(), key.to_uppercase());
        if let Some(v) = self.env.get(&var) {
            return Some(Found::Value(v.clone(), format!("env {var}")));
        }
        if sensitive {
            if let Some(v) = self.env.get(&format!("{var}_CMD")) {
                return Some(Found::Cmd(v.clone(), format!("env {var}_CMD")));
            }
            if self.env.contains_key(&format!("{var}_SECRET")) {
                return Some(Found::Secret(format!("env {var}_SECRET")));
            }
        }
        let sec = self.cfg.get(section)?;
        if let Some(v) = sec.get(key) {
            return Some(Found::Value(v.clone(), format!("airflow.cfg [{section}] {key}")));
        }
        if sensitive {
            if let Some(v) = sec.get(&format!("{key}_cmd")) {
                return Some(Found::Cmd(v.clone(), format!("airflow.cfg [{section}] {key}_cmd")));
            }
            if sec.contains_key(&format!("{key}_secret")) {
                return Some(Found::Secret(format!("airflow.cfg [{section}] {key}_secret")));
            }
        }
        None
    }

    /// The option's value, running a `_cmd` through `run`.
    fn value(&self, section: &str, key: &str, sensitive: bool, run: CmdRunner) -> Result<Option<(SecretValue, Origin)>, DeploymentError> {
        Ok(match self.find(section, key, sensitive) {
            None => None,
            Some(Found::Value(v, o)) => Some((SecretValue::new(v), o)),
            Some(Found::Cmd(c, o)) => {
                let v = run(&c).map_err(|reason| DeploymentError::Option { origin: o.clone(), reason })?;
                Some((v, o))
            }
            Some(Found::Secret(o)) => return Err(secret_unsupported(o)),
        })
    }
}

fn secret_unsupported(origin: Origin) -> DeploymentError {
    DeploymentError::Option {
        origin,
        reason: "reading a config option from the secrets backend (`_secret`) is not supported; set the option \
                 itself or its `_cmd` variant"
            .into(),
    }
}

/// `backend_kwargs` JSON plus the per-kwarg overrides from env (`prefix<NAME>`, spec §3.2).
fn kwargs(raw: Option<(SecretValue, Origin)>, env: &BTreeMap<String, String>, prefix: &str) -> Result<Map<String, Json>, DeploymentError> {
    let mut m = match raw {
        None => Map::new(),
        Some((s, _)) if s.expose_plaintext().trim().is_empty() => Map::new(),
        Some((s, origin)) => match serde_json::from_str::<Json>(s.expose_plaintext()) {
            Ok(Json::Object(m)) => m,
            // serde_json's message can quote the input: keep only the position.
            Ok(_) => return Err(DeploymentError::Option { origin, reason: "not a JSON object".into() }),
            Err(e) => {
                return Err(DeploymentError::Option {
                    origin,
                    reason: format!("not valid JSON (line {}, column {})", e.line(), e.column()),
                });
            }
        },
    };
    for (name, value) in env.range(prefix.to_string()..) {
        let Some(kwarg) = name.strip_prefix(prefix) else { break };
        if kwarg.is_empty() {
            continue;
        }
        m.insert(kwarg.to_lowercase(), Json::String(value.clone()));
    }
    Ok(m)
}

impl Deployment {
    /// Read the deployment from an env map and the text of its `airflow.cfg` (if any).
    pub fn from_parts(env: &BTreeMap<String, String>, cfg_text: Option<&str>, run: CmdRunner) -> Result<Deployment, DeploymentError> {
        let look = Lookup { env, cfg: cfg_text.map(parse_cfg).unwrap_or_default() };
        let mut d = Deployment::default();

        // [database] sql_alchemy_conn, then the 2.x [core] location it moved from.
        let conn = match look.value("database", "sql_alchemy_conn", true, run)? {
            Some(c) => Some(c),
            None => look.value("core", "sql_alchemy_conn", true, run)?,
        };
        d.metastore.sql_alchemy_conn = conn.map(|(v, o)| (SecretValue::new(v.expose_plaintext().trim()), o));
        d.metastore.sql_alchemy_schema = look
            .value("database", "sql_alchemy_schema", false, run)?
            .map(|(v, _)| v.expose_plaintext().to_string())
            .filter(|s| !s.is_empty());
        // The fernet key is handed to the metastore store unrun (it runs `_cmd` itself).
        match look.find("core", "fernet_key", true) {
            None => {}
            Some(Found::Value(v, o)) => d.metastore.fernet_key = Some((SecretValue::new(v), o)),
            Some(Found::Cmd(c, o)) => d.metastore.fernet_key_cmd = Some((c, o)),
            Some(Found::Secret(o)) => return Err(secret_unsupported(o)),
        }

        let class = |section: &str, key: &str| -> Result<Option<(String, Origin)>, DeploymentError> {
            Ok(look
                .value(section, key, false, run)?
                .map(|(c, o)| (c.expose_plaintext().to_string(), o))
                .filter(|(c, _)| !c.trim().is_empty()))
        };
        if let Some((class, origin)) = class("secrets", "backend")? {
            let kw = kwargs(look.value("secrets", "backend_kwargs", true, run)?, env, KWARG_SECRETS)?;
            d.secrets_backend = Some(d.backend(class, kw, origin));
        }
        if let Some((class, origin)) = class("workers", "secrets_backend")? {
            let kw = kwargs(look.value("workers", "secrets_backend_kwargs", true, run)?, env, KWARG_WORKERS)?;
            d.workers_backend = Some(d.backend(class, kw, origin));
        }
        Ok(d)
    }

    /// Read this process's environment and `cfg_path` (default `$AIRFLOW_HOME/airflow.cfg`, or
    /// `~/airflow/airflow.cfg`, when it exists).
    pub fn from_process(cfg_path: Option<&Path>) -> Result<Deployment, DeploymentError> {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let text = match cfg_path {
            Some(p) => Some(read_cfg(p)?),
            None => {
                let default = default_cfg_path(&env);
                match default {
                    Some(p) if p.is_file() => Some(read_cfg(&p)?),
                    _ => None,
                }
            }
        };
        Deployment::from_parts(&env, text.as_deref(), &run_command)
    }

    fn backend(&mut self, class: String, kwargs: Map<String, Json>, origin: Origin) -> Backend {
        let class = class.trim().to_string();
        let kind = kind_for_airflow_backend(&class);
        if kind.is_none() {
            self.notes.push(format!("{origin}: {class:?} is not a secrets backend this tool knows"));
        }
        Backend { class, kind, kwargs, origin }
    }

    /// The backend 3.x workers ask first: `[workers] secrets_backend`, else `[secrets] backend`.
    pub fn effective_workers_backend(&self) -> Option<&Backend> {
        self.workers_backend.as_ref().or(self.secrets_backend.as_ref())
    }

    /// `[source]`: the metastore as this deployment configures it.
    pub fn source_spec(&self) -> StoreSpec {
        let mut t = toml::Table::new();
        t.insert("kind".into(), "metastore".into());
        let m = &self.metastore;
        if let Some((c, _)) = &m.sql_alchemy_conn {
            t.insert("sql_alchemy_conn".into(), c.expose_plaintext().into());
        }
        if let Some(s) = &m.sql_alchemy_schema {
            t.insert("sql_alchemy_schema".into(), s.clone().into());
        }
        if let Some((k, _)) = &m.fernet_key {
            t.insert("fernet_key".into(), k.expose_plaintext().into());
        }
        if let Some((c, _)) = &m.fernet_key_cmd {
            t.insert("fernet_key_cmd".into(), c.clone().into());
        }
        StoreSpec(t)
    }

    /// `[target]`: the `[secrets] backend`.
    pub fn target_spec(&self) -> Result<StoreSpec, DeploymentError> {
        match &self.secrets_backend {
            Some(b) if b.kind.is_some() => Ok(b.spec()),
            Some(b) => Err(DeploymentError::NoTarget(format!("{}: unknown secrets backend class {:?}", b.origin, b.class))),
            None => Err(DeploymentError::NoTarget(
                "the deployment sets no [secrets] backend (AIRFLOW__SECRETS__BACKEND): Airflow reads env vars, then \
                 the metastore; there is no target to use"
                    .into(),
            )),
        }
    }

    /// The whole configuration: `[source]` metastore, `[target]` backend, default policy.
    pub fn config(&self) -> Result<Config, DeploymentError> {
        let mut target = self.target_spec()?;
        // The readers follow the Airflow version the metastore's schema names (the plan header says).
        target.0.entry("airflow_readers").or_insert_with(|| toml::Value::Array(vec![toml::Value::String("auto".into())]));
        Ok(Config {
            source: self.source_spec(),
            target,
            select: Default::default(),
            apply: Default::default(),
            stores: Default::default(),
            state: Default::default(),
            daemon: Default::default(),
            jobs: Vec::new(),
        })
    }

    /// The configuration as TOML, credentials masked, with where each part came from as comments.
    pub fn to_masked_toml(&self) -> String {
        let mut out = String::from("# Built from the Airflow deployment's environment and airflow.cfg.\n");
        let m = &self.metastore;
        for (what, origin) in [
            ("sql_alchemy_conn", m.sql_alchemy_conn.as_ref().map(|x| &x.1)),
            ("fernet_key", m.fernet_key.as_ref().map(|x| &x.1)),
            ("fernet_key_cmd", m.fernet_key_cmd.as_ref().map(|x| &x.1)),
        ] {
            if let Some(o) = origin {
                out.push_str(&format!("# {what}: from {o}\n"));
            }
        }
        out.push_str(&super::mask::table_to_masked_toml("source", &self.source_spec().0));
        out.push('\n');
        match self.target_spec() {
            Ok(t) => {
                if let Some(b) = &self.secrets_backend {
                    out.push_str(&format!("# from {}\n", b.origin));
                }
                out.push_str(&super::mask::table_to_masked_toml("target", &t.0));
            }
            Err(e) => out.push_str(&format!("# [target]: {e}\n")),
        }
        if let Some(w) = &self.workers_backend {
            out.push_str(&format!(
                "\n# Airflow 3 workers ask [workers] secrets_backend first (from {}):\n",
                w.origin
            ));
            let text = super::mask::table_to_masked_toml("workers_backend", &w.spec().0);
            for line in text.lines() {
                out.push_str(&format!("# {line}\n"));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("# note: {n}\n"));
        }
        out
    }
}

fn read_cfg(p: &Path) -> Result<String, DeploymentError> {
    std::fs::read_to_string(p).map_err(|e| DeploymentError::CfgFile { path: p.display().to_string(), reason: e.to_string() })
}

/// `$AIRFLOW_HOME/airflow.cfg`, or `~/airflow/airflow.cfg` (Airflow's defaults), or
/// `$AIRFLOW_CONFIG` when set.
pub fn default_cfg_path(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    if let Some(c) = env.get("AIRFLOW_CONFIG").filter(|c| !c.is_empty()) {
        return Some(PathBuf::from(c));
    }
    if let Some(h) = env.get("AIRFLOW_HOME").filter(|h| !h.is_empty()) {
        return Some(Path::new(h).join("airflow.cfg"));
    }
    env.get("HOME").map(|h| Path::new(h).join("airflow").join("airflow.cfg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn no_run(_: &str) -> Result<SecretValue, String> {
        panic!("no command expected")
    }

    #[test]
    fn cfg_parsing_follows_configparser() {
        let cfg = parse_cfg(
            "[Core]\nFernet_Key = abc\n# comment\n; other\n[secrets]\nbackend: x.Y\nbackend_kwargs = {\"a\":\n    \"b\"}\nlog = %%(x)s\n",
        );
        assert_eq!(cfg["core"]["fernet_key"], "abc");
        assert_eq!(cfg["secrets"]["backend"], "x.Y");
        assert_eq!(cfg["secrets"]["backend_kwargs"], "{\"a\":\n\"b\"}");
        assert_eq!(cfg["secrets"]["log"], "%(x)s");
    }

    #[test]
    fn env_wins_over_the_file_and_per_kwarg_overrides_win_over_json() {
        let e = env(&[
            ("AIRFLOW__SECRETS__BACKEND", "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"),
            ("AIRFLOW__SECRETS__BACKEND_KWARGS", r#"{"connections_prefix": "a/c", "variables_prefix": null}"#),
            ("AIRFLOW__SECRETS__BACKEND_KWARG__CONNECTIONS_PREFIX", "over/c"),
            ("AIRFLOW__SECRETS__BACKEND_KWARG__REGION_NAME", "eu-west-1"),
            ("AIRFLOW__WORKERS__SECRETS_BACKEND_KWARG__IGNORED", "x"),
            ("AIRFLOW__SECRETS__BACKEND_KWARG__AWS_SECRET_ACCESS_KEY", "canary-dbg-17"),
            ("AIRFLOW__SECRETS__BACKEND_KWARG__AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://u:canary-dbg-18@h/db"),
            ("AIRFLOW__CORE__FERNET_KEY", "canary-dbg-19"),
        ]);
        let cfg = "[secrets]\nbackend = airflow.secrets.local_filesystem.LocalFilesystemBackend\n";
        let d = Deployment::from_parts(&e, Some(cfg), &no_run).unwrap();
        let b = d.secrets_backend.as_ref().unwrap();
        assert_eq!(b.kind, Some("aws_secrets_manager"));
        assert_eq!(b.kwargs["connections_prefix"], "over/c");
        assert_eq!(b.kwargs["region_name"], "eu-west-1");
        assert_eq!(b.kwargs["variables_prefix"], Json::Null);
        assert!(!b.kwargs.contains_key("ignored"));
        assert!(d.workers_backend.is_none());
        assert_eq!(d.effective_workers_backend(), Some(b));
        let shown = format!("{d:?}");
        assert!(shown.contains("over/c") && shown.contains("***"), "{shown}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(!d.to_masked_toml().contains("canary"));
        // The target parses through the registry, null prefix intact.
        let cfg = crate::store::registry::parse(&d.target_spec().unwrap());
        assert!(cfg.is_ok(), "{cfg:?}");
    }

    #[test]
    fn workers_backend_has_its_own_kwargs_and_legacy_paths_are_known() {
        let e = env(&[
            ("AIRFLOW__SECRETS__BACKEND", "airflow.contrib.secrets.aws_systems_manager.SystemsManagerParameterStoreBackend"),
            ("AIRFLOW__WORKERS__SECRETS_BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend"),
            ("AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS", r#"{"variables_file_path": "/v.json"}"#),
            ("AIRFLOW__WORKERS__SECRETS_BACKEND_KWARG__CONNECTIONS_FILE_PATH", "/c.json"),
        ]);
        let d = Deployment::from_parts(&e, None, &no_run).unwrap();
        assert_eq!(d.secrets_backend.as_ref().unwrap().kind, Some("aws_ssm"));
        let w = d.workers_backend.as_ref().unwrap();
        assert_eq!(w.kind, Some("local_files"));
        assert_eq!(w.kwargs["variables_file_path"], "/v.json");
        assert_eq!(w.kwargs["connections_file_path"], "/c.json");
    }

    #[test]
    fn fernet_key_order_empty_env_is_a_hit_and_cmds_run() {
        let cfg = "[core]\nfernet_key = from-file\n[database]\nsql_alchemy_conn_cmd = get-conn\n";
        let e = env(&[("AIRFLOW__CORE__FERNET_KEY", "")]);
        let run = |c: &str| if c == "get-conn" { Ok("sqlite:////tmp/a.db\n".into()) } else { Err("no".into()) };
        let d = Deployment::from_parts(&e, Some(cfg), &run).unwrap();
        let (k, o) = d.metastore.fernet_key.as_ref().unwrap();
        assert_eq!(k.expose_plaintext(), "");
        assert_eq!(o, "env AIRFLOW__CORE__FERNET_KEY");
        assert_eq!(d.metastore.sql_alchemy_conn.as_ref().unwrap().0.expose_plaintext(), "sqlite:////tmp/a.db");

        let d = Deployment::from_parts(&env(&[]), Some(cfg), &run).unwrap();
        assert_eq!(d.metastore.fernet_key.as_ref().unwrap().0.expose_plaintext(), "from-file");

        let e = env(&[("AIRFLOW__CORE__FERNET_KEY_CMD", "cat /key")]);
        let d = Deployment::from_parts(&e, Some(cfg), &run).unwrap();
        assert!(d.metastore.fernet_key.is_none());
        assert_eq!(d.metastore.fernet_key_cmd.as_ref().unwrap().0, "cat /key");

        let e = env(&[("AIRFLOW__CORE__FERNET_KEY_SECRET", "fk")]);
        assert!(Deployment::from_parts(&e, Some(cfg), &run).is_err());
    }

    #[test]
    fn legacy_core_sql_alchemy_conn_and_no_backend() {
        let d = Deployment::from_parts(&env(&[]), Some("[core]\nsql_alchemy_conn = sqlite:////x.db\n"), &no_run).unwrap();
        assert_eq!(d.metastore.sql_alchemy_conn.as_ref().unwrap().0.expose_plaintext(), "sqlite:////x.db");
        assert!(matches!(d.target_spec(), Err(DeploymentError::NoTarget(_))));
        assert!(d.to_masked_toml().contains("# [target]:"));
    }

    #[test]
    fn bad_kwargs_json_names_the_origin_not_the_value() {
        let e = env(&[
            ("AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend"),
            ("AIRFLOW__SECRETS__BACKEND_KWARGS", "{\"token\": \"canary-kw-91\""),
        ]);
        let err = Deployment::from_parts(&e, None, &no_run).unwrap_err().to_string();
        assert!(err.contains("AIRFLOW__SECRETS__BACKEND_KWARGS") && !err.contains("canary"), "{err}");
    }
}
