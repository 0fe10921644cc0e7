//! Saved plans (`migrate --plan --out plan.json`, applied with `migrate --apply plan.json`).
//!
//! A saved plan holds no plaintext: per item in scope, a keyed HMAC-SHA256 fingerprint (key derived
//! from the snapshot key) of its source and its target value, plus the tool version, both store
//! identities and the policy it was made under. Applying it re-reads both sides and refuses (exit
//! 12, a masked list of what drifted) if anything in scope changed, appeared or vanished since.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{ApplyConfig, OnlyKind, SelectConfig};
use crate::error::AppError;
use crate::model::{Inventory, ItemId, Kind};
use crate::plan::{Plan, Selection};
use crate::state::SnapshotKey;

pub const FORMAT: u32 = 1;

/// The policy a plan was made under; applying it uses this, not the flags of the day.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedPolicy {
    pub only: Option<Kind>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub prune: bool,
    pub adopt: bool,
    pub max_deletes: usize,
}

impl SavedPolicy {
    pub fn new(select: &SelectConfig, apply: &ApplyConfig) -> Self {
        Self {
            only: select.only.map(OnlyKind::kind),
            include: select.include.clone(),
            exclude: select.exclude.clone(),
            prune: apply.prune,
            adopt: apply.adopt,
            max_deletes: apply.max_deletes,
        }
    }

    pub fn select(&self) -> SelectConfig {
        SelectConfig {
            only: self.only.map(|k| match k {
                Kind::Variable => OnlyKind::Variables,
                Kind::Connection => OnlyKind::Connections,
            }),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        }
    }
}

/// One planned line, for review (no values).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedChange {
    pub kind: Kind,
    pub id: String,
    pub action: String,
}

/// Fingerprints of one item in scope; `None` = absent on that side.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemPrint {
    pub kind: Kind,
    pub id: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub format: u32,
    pub tool_version: String,
    pub created_at: String,
    pub source: String,
    pub target: String,
    /// Which snapshot key made the fingerprints (a public HMAC of it).
    pub key_id: String,
    pub policy: SavedPolicy,
    pub changes: Vec<SavedChange>,
    pub items: Vec<ItemPrint>,
}

/// One item that changed since the plan was saved. Names only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub id: ItemId,
    pub side: &'static str,
    pub what: &'static str,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} in the {}", self.id, self.what, self.side)
    }
}

/// Fingerprint every item in `selection` on one side.
fn prints(key: &SnapshotKey, inv: &Inventory, selection: &Selection) -> BTreeMap<ItemId, String> {
    let mut out = BTreeMap::new();
    for id in inv.ids().filter(|id| selection.matches(id)) {
        let fp = match (inv.get(id), inv.error(id)) {
            (Some(e), _) => key.value_fingerprint(id, Some(&e.value)),
            // An unreadable item: fingerprint its error class (there is no value to see).
            (None, Some(err)) => key.fingerprint(&[b"error", id.kind.as_str().as_bytes(), id.id.as_bytes(), err.kind.as_str().as_bytes()]),
            (None, None) => continue,
        };
        out.insert(id.clone(), fp);
    }
    out
}

fn item_prints(key: &SnapshotKey, source: &Inventory, target: &Inventory, selection: &Selection) -> Vec<ItemPrint> {
    let mut s = prints(key, source, selection);
    let mut t = prints(key, target, selection);
    let ids: std::collections::BTreeSet<ItemId> = s.keys().chain(t.keys()).cloned().collect();
    ids.into_iter()
        .map(|id| ItemPrint { kind: id.kind, source: s.remove(&id), target: t.remove(&id), id: id.id })
        .collect()
}

impl PlanFile {
    pub fn new(plan: &Plan, key: &SnapshotKey, policy: SavedPolicy, source: &Inventory, target: &Inventory, selection: &Selection) -> Self {
        Self {
            format: FORMAT,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            created_at: crate::state::now(),
            source: plan.source.clone(),
            target: plan.target.clone(),
            key_id: key.id().to_string(),
            policy,
            changes: plan
                .changes
                .iter()
                .filter(|c| c.action.is_write())
                .map(|c| SavedChange { kind: c.id.kind, id: c.id.id.clone(), action: c.action.as_str().into() })
                .collect(),
            items: item_prints(key, source, target, selection),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), AppError> {
        let text = serde_json::to_string_pretty(self).expect("a plan file serializes");
        std::fs::write(path, text + "\n").map_err(|e| AppError::Usage(format!("cannot write {}: {e}", path.display())))
    }

    pub fn load(path: &Path) -> Result<PlanFile, AppError> {
        let text = std::fs::read_to_string(path).map_err(|e| AppError::Usage(format!("cannot read {}: {e}", path.display())))?;
        let pf: PlanFile = serde_json::from_str(&text)
            .map_err(|e| AppError::Usage(format!("{} is not a saved plan (line {}, column {})", path.display(), e.line(), e.column())))?;
        if pf.format != FORMAT {
            return Err(AppError::Usage(format!("{}: unknown plan format {}", path.display(), pf.format)));
        }
        Ok(pf)
    }

    /// Whether this plan may be applied with `key` between these stores (identity, version, key).
    pub fn check_context(&self, key: &SnapshotKey, source: &str, target: &str) -> Result<(), AppError> {
        if self.key_id != key.id() {
            return Err(AppError::Usage("the plan was saved under another snapshot key; its fingerprints cannot be checked".into()));
        }
        let mut why = Vec::new();
        if self.tool_version != env!("CARGO_PKG_VERSION") {
            why.push(format!("it was made by version {}, this is {}", self.tool_version, env!("CARGO_PKG_VERSION")));
        }
        if self.source != source {
            why.push(format!("it was made for source {}, the config names {source}", self.source));
        }
        if self.target != target {
            why.push(format!("it was made for target {}, the config names {target}", self.target));
        }
        if why.is_empty() { Ok(()) } else { Err(AppError::Drift(format!("saved plan refused: {}", why.join("; ")))) }
    }

    /// What changed on either side since the plan was saved.
    pub fn drift(&self, key: &SnapshotKey, source: &Inventory, target: &Inventory, selection: &Selection) -> Vec<Drift> {
        let saved: BTreeMap<ItemId, &ItemPrint> = self.items.iter().map(|p| (ItemId::new(p.kind, p.id.clone()), p)).collect();
        let now: BTreeMap<ItemId, ItemPrint> =
            item_prints(key, source, target, selection).into_iter().map(|p| (ItemId::new(p.kind, p.id.clone()), p)).collect();
        let ids: std::collections::BTreeSet<&ItemId> = saved.keys().chain(now.keys()).collect();
        let mut out = Vec::new();
        for id in ids {
            let (was, is) = (saved.get(id).copied(), now.get(id));
            for (side, a, b) in [
                ("source", was.and_then(|p| p.source.as_ref()), is.and_then(|p| p.source.as_ref())),
                ("target", was.and_then(|p| p.target.as_ref()), is.and_then(|p| p.target.as_ref())),
            ] {
                let what = match (a, b) {
                    (None, Some(_)) => "appeared",
                    (Some(_), None) => "disappeared",
                    (Some(x), Some(y)) if x != y => "changed",
                    _ => continue,
                };
                out.push(Drift { id: id.clone(), side, what });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Entry;
    use crate::plan::{Policy, diff};
    use crate::store::memory::MemoryStore;

    #[test]
    fn a_saved_plan_detects_drift_on_either_side_and_holds_no_values() {
        let key = SnapshotKey::parse(&"ab".repeat(32)).unwrap();
        let src: Inventory = [Entry::variable("a", "canary-src-1"), Entry::variable("b", "canary-src-2")].into_iter().collect();
        let tgt: Inventory = [Entry::variable("b", "canary-tgt-2")].into_iter().collect();
        let (s, t) = (MemoryStore::new("s"), MemoryStore::new("t"));
        let sel = Selection::all();
        let policy = Policy::new(sel.clone(), &ApplyConfig::default());
        let plan = diff(&s, &src, &t, &tgt, &policy);
        let pf = PlanFile::new(&plan, &key, SavedPolicy::new(&SelectConfig::default(), &ApplyConfig::default()), &src, &tgt, &sel);
        let text = serde_json::to_string(&pf).unwrap();
        assert!(!text.contains("canary"), "{text}");
        assert!(pf.drift(&key, &src, &tgt, &sel).is_empty());

        let mut src2 = src.clone();
        src2.insert(Entry::variable("a", "canary-src-changed"));
        let mut tgt2 = tgt.clone();
        tgt2.insert(Entry::variable("c", "new"));
        let d = pf.drift(&key, &src2, &tgt2, &sel);
        assert_eq!(
            d,
            vec![
                Drift { id: ItemId::variable("a"), side: "source", what: "changed" },
                Drift { id: ItemId::variable("c"), side: "target", what: "appeared" },
            ]
        );
        assert!(!d.iter().map(|d| d.to_string()).collect::<String>().contains("canary"));
        let other = SnapshotKey::parse(&"cd".repeat(32)).unwrap();
        assert!(pf.check_context(&other, &plan.source, &plan.target).is_err());
        assert!(pf.check_context(&key, &plan.source, "memory:elsewhere").is_err());
        assert!(pf.check_context(&key, &plan.source, &plan.target).is_ok());
    }
}
