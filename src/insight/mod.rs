//! Operator insight: configuration taken from an Airflow deployment ([`deployment`]), `config
//! print` ([`mask`]), `verify` ([`verify`]) and `resolve` ([`resolve`]). This module owns the three
//! commands' logic; `app` only dispatches to [`run_config_print`], [`run_verify`] and
//! [`run_resolve`].

pub mod deployment;
pub mod mask;
pub mod resolve;
pub mod verify;

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use crate::airflow::connection::Reader;
use crate::cli::{Cli, ResolveArgs, VerifyArgs};
use crate::config::{Config, StoreSpec};
use crate::error::{AppError, Exit};
use crate::model::Kind;
use crate::plan::Selection;
use crate::store::env::EnvStore;
use crate::store::{DynStore, registry, scan_all};

use deployment::Deployment;
use resolve::{Chains, Fingerprinter, Layer};

/// The deployment, when `--from-airflow-env` asks for it.
pub fn deployment(cli: &Cli) -> anyhow::Result<Option<Deployment>> {
    if !cli.from_airflow_env {
        return Ok(None);
    }
    Deployment::from_process(cli.airflow_cfg.as_deref())
        .map(Some)
        .map_err(|e| AppError::Config(format!("--from-airflow-env: {e}")).into())
}

/// The configuration: built from the Airflow deployment with `--from-airflow-env`, else the file.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    match deployment(cli)? {
        Some(d) => d.config().map_err(|e| AppError::Config(format!("--from-airflow-env: {e}")).into()),
        None => Ok(Config::load(&cli.config)?),
    }
}

/// `config print`: the effective configuration as TOML, credentials masked.
pub fn run_config_print(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<Exit> {
    match deployment(cli)? {
        Some(d) => write!(out, "{}", d.to_masked_toml())?,
        None => {
            let text = std::fs::read_to_string(&cli.config)
                .map_err(|e| AppError::Config(format!("cannot read {}: {e}", cli.config.display())))?;
            // Check it first, so what is printed is a configuration this tool accepts.
            Config::from_toml(&text).map_err(|e| AppError::Config(format!("{}: {e}", cli.config.display())))?;
            let masked = mask::mask_config_text(&text).map_err(AppError::Config)?;
            write!(out, "{masked}")?;
        }
    }
    Ok(Exit::Ok)
}

fn readers_for(version: Option<u8>) -> Result<Vec<Reader>, AppError> {
    Ok(match version {
        None => Reader::ALL.to_vec(),
        Some(2) => vec![Reader::Orm2],
        Some(3) => vec![Reader::Orm3, Reader::Sdk],
        Some(v) => return Err(AppError::Usage(format!("--airflow-version must be 2 or 3, not {v}"))),
    })
}

/// Open `spec` once per reader.
pub async fn open_per_reader(spec: &StoreSpec, readers: &[Reader]) -> anyhow::Result<Vec<(Reader, DynStore)>> {
    let mut out = Vec::new();
    for &r in readers {
        let cfg = registry::parse(spec).context("opening the target")?;
        out.push((r, registry::open_config_with_reader(cfg, r).await.context("opening the target")?));
    }
    Ok(out)
}

/// `verify`: exit 0 when Airflow reads everything as the source has it, 14 otherwise.
pub async fn run_verify(cli: &Cli, args: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let cfg = load_config(cli)?;
    let mut select = cfg.select.clone();
    if args.only.is_some() {
        select.only = args.only;
    }
    let selection = Selection::from_config(&select)?;
    // The readers the target is configured for ([target] airflow_readers), unless the flag picks.
    let mut readers = match args.airflow_version {
        None => registry::fidelity(&cfg.target)?.readers.as_slice().to_vec(),
        v => readers_for(v)?,
    };
    let mut target = cfg.target.clone();
    if args.workers {
        // Workers read their backend with the task-sdk (spec §3.2).
        let d = deployment(cli)?.ok_or_else(|| AppError::Usage("--workers needs --from-airflow-env".into()))?;
        let w = d.effective_workers_backend().ok_or_else(|| AppError::Config("the deployment sets no secrets backend".into()))?;
        target = w.spec();
        if args.airflow_version.is_none() {
            readers = vec![Reader::Sdk];
        }
    }
    let targets = open_per_reader(&target, &readers).await?;
    let source_inv = if args.no_source {
        None
    } else {
        let source = registry::open(&cfg.source).await.context("opening the source")?;
        let mut inv = scan_all(source.as_ref(), selection.kinds()).await.with_context(|| format!("reading {source}"))?;
        inv.retain(|id| selection.matches(id));
        Some(inv)
    };
    let report = verify::verify(&targets, source_inv.as_ref(), &selection).await.context("reading the target")?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report.table())?;
    }
    if report.is_ok() {
        Ok(Exit::Ok)
    } else {
        Err(AppError::Verify(format!("verify found {} problem(s)", report.problems())).into())
    }
}

/// The deployment's chains: `[secrets] backend` → env → metastore, and for 3.x workers with a
/// `[workers] secrets_backend`: that backend → worker env → the server chain. Without
/// `--from-airflow-env`: `[target]` → env → `[source]`.
pub async fn chains(cli: &Cli) -> anyhow::Result<Chains> {
    let mut layers = Vec::new();
    let mut server = Vec::new();
    let mut workers = None;
    let open_named = |label: &str, store: DynStore| Layer { name: format!("{label} {store}"), store };
    match deployment(cli)? {
        Some(d) => {
            let mut worker_head = Vec::new();
            if let Some(w) = &d.workers_backend {
                let cfg = registry::parse(&w.spec()).context("opening [workers] secrets_backend")?;
                let store = registry::open_config_with_reader(cfg, Reader::Sdk).await.context("opening [workers] secrets_backend")?;
                layers.push(open_named("workers backend", store));
                worker_head.push(layers.len() - 1);
                layers.push(Layer { name: "env (worker)".into(), store: Arc::new(EnvStore::process().with_reader(Reader::Sdk)) });
                worker_head.push(layers.len() - 1);
            }
            if let Some(b) = &d.secrets_backend {
                let store = registry::open(&b.spec()).await.context("opening [secrets] backend")?;
                layers.push(open_named("secrets backend", store));
                server.push(layers.len() - 1);
            }
            layers.push(Layer { name: "env".into(), store: Arc::new(EnvStore::process()) });
            server.push(layers.len() - 1);
            let meta = registry::open(&d.source_spec()).await.context("opening the metastore")?;
            layers.push(Layer { name: meta.to_string(), store: meta });
            server.push(layers.len() - 1);
            if !worker_head.is_empty() {
                worker_head.extend(server.iter().copied());
                workers = Some(worker_head);
            }
        }
        None => {
            let cfg = Config::load(&cli.config)?;
            let target = registry::open(&cfg.target).await.context("opening the target")?;
            layers.push(open_named("target", target));
            layers.push(Layer { name: "env".into(), store: Arc::new(EnvStore::process()) });
            let source = registry::open(&cfg.source).await.context("opening the source")?;
            layers.push(open_named("source", source));
            server = vec![0, 1, 2];
        }
    }
    Ok(Chains { layers, server, workers })
}

/// `resolve`: informational; exit 0 unless a source cannot be read.
pub async fn run_resolve(cli: &Cli, args: &ResolveArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let ids = resolve::ids_from_args(&args.ids, &args.variable, &args.connection);
    if ids.is_empty() && !args.all {
        return Err(AppError::Usage("name items to resolve (ID, --variable KEY, --connection ID) or pass --all".into()).into());
    }
    let chains = chains(cli).await?;
    let fp = Fingerprinter::new();
    let results = if args.all {
        let kinds: Vec<Kind> = match args.only {
            Some(o) => vec![o.kind()],
            None => Kind::ALL.to_vec(),
        };
        resolve::resolve_all(&chains, &kinds, &fp).await?
    } else {
        let mut r = resolve::resolve(&chains, &ids, &fp).await?;
        // A bare ID is tried as both kinds; keep the kinds where it exists (both when neither).
        let asked = |id: &crate::model::ItemId| match id.kind {
            Kind::Variable => args.variable.contains(&id.id),
            Kind::Connection => args.connection.contains(&id.id),
        };
        let found: std::collections::BTreeSet<String> = r.iter().filter(|x| x.found()).map(|x| x.id.id.clone()).collect();
        r.retain(|x| asked(&x.id) || x.found() || !found.contains(&x.id.id));
        r
    };
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&results)?)?;
    } else if results.is_empty() {
        writeln!(out, "No shadowed or diverging items.")?;
    } else {
        write!(out, "{}", resolve::table(&results))?;
    }
    Ok(Exit::Ok)
}
