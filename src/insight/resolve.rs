//! `resolve`: which copy of an item Airflow serves, given the deployment's precedence chain, and
//! which copies it shadows (spec §3.2, §9.19, §9.21).
//!
//! Chains: on the server side (2.x everywhere; 3.x scheduler, API server, CLI) the `[secrets]
//! backend`, then env vars, then the metastore; on 3.x workers the `[workers] secrets_backend`, the
//! worker's env vars, then the API server's chain. The first hit wins. A variable set to `""` in
//! env is a hit; an empty connection env var is a miss (the env store already reads it as absent).
//! A copy a source fails to read (a parse error, a permission error) is skipped, as Airflow logs
//! the exception and asks the next backend.
//!
//! Fingerprints let an operator see whether copies differ without seeing them: a keyed
//! HMAC-SHA256 with a random key drawn per run (so a fingerprint cannot be matched against a
//! guessed value, or across runs), over the item id and the value. Copies Airflow would read as
//! the same (`connection::equivalent`) share one fingerprint.

use std::collections::{BTreeMap, BTreeSet};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::airflow::connection::{equivalent, to_json};
use crate::model::{Inventory, ItemId, Kind, Value};
use crate::store::{DynStore, Placement, StoreError, scan_all};

/// One place Airflow looks, in chain order.
#[derive(Clone)]
pub struct Layer {
    /// For display: `secrets backend aws_secrets_manager:…`, `env`, `metastore:…`.
    pub name: String,
    pub store: DynStore,
}

/// The chains to resolve: indices into the layer list.
pub struct Chains {
    pub layers: Vec<Layer>,
    /// Scheduler / API server / 2.x.
    pub server: Vec<usize>,
    /// 3.x workers, when they differ from the server (a `[workers] secrets_backend` is set).
    pub workers: Option<Vec<usize>>,
}

/// Per-run keyed fingerprints; never a plain hash of a value.
pub struct Fingerprinter {
    key: zeroize::Zeroizing<[u8; 32]>,
}

impl Default for Fingerprinter {
    fn default() -> Self {
        Self::new()
    }
}

impl Fingerprinter {
    /// A fresh random key.
    pub fn new() -> Self {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rng(), key.as_mut());
        Self { key }
    }

    /// 12 hex digits of HMAC-SHA256(key, kind ‖ id ‖ value).
    pub fn fingerprint(&self, id: &ItemId, value: &Value) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref()).expect("HMAC takes any key length");
        mac.update(id.kind.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(id.id.as_bytes());
        mac.update(&[0]);
        match value {
            Value::Variable(v) => mac.update(v.value.expose_plaintext().as_bytes()),
            Value::Connection(c) => mac.update(to_json(c).expose_plaintext().as_bytes()),
        }
        let out = mac.finalize().into_bytes();
        out[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Variable(x), Value::Variable(y)) => x.value == y.value,
        (Value::Connection(x), Value::Connection(y)) => equivalent(x, y),
        _ => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    /// The copy Airflow serves.
    Served,
    /// Present, but an earlier source wins.
    Shadowed,
    /// Present, but the source cannot read it: Airflow logs it and asks the next source.
    Unreadable,
    /// Airflow never looks the id up in this source (lookup pattern, disabled kind, bad name).
    NotLookedUp,
}

#[derive(Clone, Debug, Serialize)]
pub struct Copy {
    pub source: String,
    pub state: CopyState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Whether Airflow would read this copy as the served one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as_served: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChainResult {
    /// `server` or `workers`.
    pub chain: &'static str,
    pub served_by: Option<String>,
    pub fingerprint: Option<String>,
    pub copies: Vec<Copy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Resolution {
    pub id: ItemId,
    pub chains: Vec<ChainResult>,
    /// Workers and the scheduler serve different values (or one serves nothing).
    pub diverges: bool,
}

impl Resolution {
    pub fn found(&self) -> bool {
        self.chains.iter().any(|c| c.served_by.is_some() || !c.copies.is_empty())
    }

    pub fn shadows(&self) -> bool {
        self.chains.iter().any(|c| c.copies.iter().any(|x| x.state == CopyState::Shadowed))
    }
}

/// Inventories per layer (read once even when two chains share a layer).
async fn read_layers(chains: &Chains, ids: Option<&[ItemId]>, kinds: &[Kind]) -> Result<Vec<Inventory>, StoreError> {
    let mut out = Vec::new();
    for layer in &chains.layers {
        let inv = match ids {
            Some(ids) => layer.store.read(ids).await?,
            None => scan_all(layer.store.as_ref(), kinds).await?,
        };
        out.push(inv);
    }
    Ok(out)
}

fn resolve_one(chains: &Chains, invs: &[Inventory], id: &ItemId, fp: &Fingerprinter) -> Resolution {
    // Fingerprint per equivalence class, so equal-to-Airflow copies show equal fingerprints.
    let mut classes: Vec<(Value, String)> = Vec::new();
    let mut fingerprint = |v: &Value| -> String {
        if let Some((_, f)) = classes.iter().find(|(rep, _)| same(rep, v)) {
            return f.clone();
        }
        let f = fp.fingerprint(id, v);
        classes.push((v.clone(), f.clone()));
        f
    };
    let mut results = Vec::new();
    let mut served_values: Vec<Option<Value>> = Vec::new();
    let mut run = |name: &'static str, order: &[usize]| {
        let mut served: Option<(String, Value, String)> = None;
        let mut copies = Vec::new();
        for &i in order {
            let layer = &chains.layers[i];
            let inv = &invs[i];
            let placement = layer.store.locate(id);
            if let Placement::Unreachable(why) | Placement::Invalid(why) = &placement {
                if inv.contains(id) {
                    copies.push(Copy { source: layer.name.clone(), state: CopyState::NotLookedUp, fingerprint: None, same_as_served: None, detail: Some(why.clone()) });
                }
                continue;
            }
            if let Some(e) = inv.error(id) {
                copies.push(Copy {
                    source: layer.name.clone(),
                    state: CopyState::Unreadable,
                    fingerprint: None,
                    same_as_served: None,
                    detail: Some(format!("{e}; Airflow logs it and asks the next source")),
                });
                continue;
            }
            let Some(entry) = inv.get(id) else { continue };
            let f = fingerprint(&entry.value);
            match &served {
                None => {
                    copies.push(Copy { source: layer.name.clone(), state: CopyState::Served, fingerprint: Some(f.clone()), same_as_served: None, detail: None });
                    served = Some((layer.name.clone(), entry.value.clone(), f));
                }
                Some((_, v, _)) => {
                    let s = same(v, &entry.value);
                    copies.push(Copy { source: layer.name.clone(), state: CopyState::Shadowed, fingerprint: Some(f), same_as_served: Some(s), detail: None });
                }
            }
        }
        served_values.push(served.as_ref().map(|(_, v, _)| v.clone()));
        results.push(ChainResult {
            chain: name,
            served_by: served.as_ref().map(|(n, _, _)| n.clone()),
            fingerprint: served.map(|(_, _, f)| f),
            copies,
        });
    };
    run("server", &chains.server);
    if let Some(w) = &chains.workers {
        run("workers", w);
    }
    let diverges = match served_values.as_slice() {
        [a, b] => match (a, b) {
            (Some(x), Some(y)) => !same(x, y),
            (None, None) => false,
            _ => true,
        },
        _ => false,
    };
    Resolution { id: id.clone(), chains: results, diverges }
}

/// Resolve `ids` through the chains.
pub async fn resolve(chains: &Chains, ids: &[ItemId], fp: &Fingerprinter) -> Result<Vec<Resolution>, StoreError> {
    let invs = read_layers(chains, Some(ids), &Kind::ALL).await?;
    Ok(ids.iter().map(|id| resolve_one(chains, &invs, id, fp)).collect())
}

/// Every item some source holds that is shadowed, or served differently to workers and the
/// scheduler.
pub async fn resolve_all(chains: &Chains, kinds: &[Kind], fp: &Fingerprinter) -> Result<Vec<Resolution>, StoreError> {
    let invs = read_layers(chains, None, kinds).await?;
    let ids: BTreeSet<ItemId> = invs.iter().flat_map(|inv| inv.ids().cloned()).collect();
    Ok(ids
        .iter()
        .map(|id| resolve_one(chains, &invs, id, fp))
        .filter(|r| r.shadows() || r.diverges)
        .collect())
}

/// A table for people.
pub fn table(results: &[Resolution]) -> String {
    use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(["item", "chain", "served by", "fingerprint", "other copies"]);
    for r in results {
        for c in &r.chains {
            let others: Vec<String> = c
                .copies
                .iter()
                .filter(|x| x.state != CopyState::Served)
                .map(|x| {
                    let what = match (x.state, x.same_as_served) {
                        (CopyState::Shadowed, Some(true)) => "shadowed, same".to_string(),
                        (CopyState::Shadowed, _) => "shadowed, DIFFERS".to_string(),
                        (CopyState::Unreadable, _) => format!("unreadable: {}", x.detail.as_deref().unwrap_or("")),
                        (CopyState::NotLookedUp, _) => format!("not looked up: {}", x.detail.as_deref().unwrap_or("")),
                        (CopyState::Served, _) => String::new(),
                    };
                    match &x.fingerprint {
                        Some(f) => format!("{} [{f}] {what}", x.source),
                        None => format!("{} {what}", x.source),
                    }
                })
                .collect();
            let chain = if r.diverges { format!("{} (DIVERGES)", c.chain) } else { c.chain.to_string() };
            t.add_row([
                r.id.to_string(),
                chain,
                c.served_by.clone().unwrap_or_else(|| "(not found)".into()),
                c.fingerprint.clone().unwrap_or_default(),
                others.join("\n"),
            ]);
        }
    }
    let mut out = t.to_string();
    out.push_str("\nFingerprints are keyed with a random per-run key: compare them within this output only.\n");
    out
}

/// Group a list of names (`--variable`, `--connection`, bare ids) into item ids. A bare id is
/// looked up as both a variable and a connection.
pub fn ids_from_args(bare: &[String], variables: &[String], connections: &[String]) -> Vec<ItemId> {
    let mut out: BTreeMap<ItemId, ()> = BTreeMap::new();
    for v in variables {
        out.insert(ItemId::variable(v.clone()), ());
    }
    for c in connections {
        out.insert(ItemId::connection(c.clone()), ());
    }
    for b in bare {
        out.insert(ItemId::variable(b.clone()), ());
        out.insert(ItemId::connection(b.clone()), ());
    }
    out.into_keys().collect()
}
