//! Saved plans (`migrate --plan --out plan.json`, applied with `migrate --apply plan.json`).
//!
//! A saved plan holds no plaintext: per item in scope, a keyed HMAC-SHA256 fingerprint (key derived
//! from the snapshot key) of its source and its target value, plus the tool version, both store
//! identities and the policy it was made under. Applying it re-reads both sides and refuses (exit
//! 12, a masked list of what drifted) if anything in scope changed, appeared or vanished since.
//!
//! The file is authenticated: `mac` is an HMAC-SHA256, under a key derived from the snapshot key,
//! of the canonical form of every other field (unknown fields are refused), so an edited policy,
//! selection or change list is refused (exit 12) before anything is read. The changes it lists
//! must then equal the writes recomputed from the stores, or it is refused with a masked list.
//! It is written atomically (a 0600 temp file in the same directory, fsynced, renamed).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{ApplyConfig, OnlyKind, SelectConfig};
use crate::model::{Inventory, ItemId, Kind};
use crate::plan::{Plan, Selection};
use crate::state::SnapshotKey;

/// A saved plan that cannot be used: unreadable or not a plan (usage), or refused because the
/// world changed since it was made (drift). The binary's edge maps them to exits 3 and 12.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Drift(String),
}

/// 2: the file carries a MAC (`mac`) and refuses unknown fields.
pub const FORMAT: u32 = 2;

/// The policy a plan was made under; applying it uses this, not the flags of the day.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct SavedChange {
    pub kind: Kind,
    pub id: String,
    pub action: String,
}

/// Fingerprints of one item in scope; `None` = absent on that side.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ItemPrint {
    pub kind: Kind,
    pub id: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// HMAC of the canonical form of every field above (hex); see [`PlanFile::sign`].
    #[serde(default)]
    pub mac: String,
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
    let mut prints = Prints::default();
    prints.add(key, source, target, selection);
    prints.items()
}

/// The fingerprints of both sides, gathered part by part (a pipeline that plans one kind at a
/// time and drops each kind's values once it is compared).
#[derive(Debug, Default)]
pub struct Prints {
    source: BTreeMap<ItemId, String>,
    target: BTreeMap<ItemId, String>,
}

impl Prints {
    /// Fingerprint every item in `selection` of one part of each side.
    pub fn add(&mut self, key: &SnapshotKey, source: &Inventory, target: &Inventory, selection: &Selection) {
        self.source.extend(prints(key, source, selection));
        self.target.extend(prints(key, target, selection));
    }

    fn items(&self) -> Vec<ItemPrint> {
        let (s, t) = (&self.source, &self.target);
        let ids: std::collections::BTreeSet<&ItemId> = s.keys().chain(t.keys()).collect();
        ids.into_iter()
            .map(|id| ItemPrint { kind: id.kind, source: s.get(id).cloned(), target: t.get(id).cloned(), id: id.id.clone() })
            .collect()
    }
}

impl PlanFile {
    pub fn new(plan: &Plan, key: &SnapshotKey, policy: SavedPolicy, source: &Inventory, target: &Inventory, selection: &Selection) -> Self {
        let mut prints = Prints::default();
        prints.add(key, source, target, selection);
        Self::with_prints(plan, key, policy, &prints)
    }

    /// [`PlanFile::new`] from fingerprints already taken.
    pub fn with_prints(plan: &Plan, key: &SnapshotKey, policy: SavedPolicy, prints: &Prints) -> Self {
        let mut pf = Self {
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
            items: prints.items(),
            mac: String::new(),
        };
        pf.sign(key);
        pf
    }

    /// The bytes the MAC covers: every field but `mac`, compact JSON in declaration order (the
    /// same for any whitespace or key order the file was saved with).
    fn canonical(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).expect("a plan file serializes");
        if let Some(m) = v.as_object_mut() {
            m.remove("mac");
        }
        serde_json::to_vec(&v).expect("a plan file serializes")
    }

    /// (Re)compute the MAC over the file's current content.
    pub fn sign(&mut self, key: &SnapshotKey) {
        self.mac = key.plan_mac(&self.canonical());
    }

    /// Refuse (exit 12) a file whose MAC does not verify under `key`: edited, or saved under
    /// another snapshot key.
    pub fn verify(&self, key: &SnapshotKey) -> Result<(), PlanFileError> {
        if key.verify_plan_mac(&self.canonical(), &self.mac) {
            return Ok(());
        }
        let why = if self.mac.is_empty() {
            "it carries no MAC".to_string()
        } else if self.key_id != key.id() {
            format!("it names snapshot key {}, this key is {}", self.key_id, key.id())
        } else {
            "the file was changed after it was saved".to_string()
        };
        Err(PlanFileError::Drift(format!("saved plan refused: its MAC does not verify ({why}); make a new plan")))
    }

    /// The writes of `plan` that the saved change list does not hold, and saved changes `plan`
    /// no longer makes, one masked line each (ids and actions, never a value).
    pub fn unplanned(&self, plan: &Plan) -> Vec<String> {
        let key = |kind: Kind, id: &str, action: &str| (kind, id.to_string(), action.to_string());
        let saved: std::collections::BTreeSet<(Kind, String, String)> =
            self.changes.iter().map(|c| key(c.kind, &c.id, &c.action)).collect();
        let now: std::collections::BTreeSet<(Kind, String, String)> =
            plan.changes.iter().filter(|c| c.action.is_write()).map(|c| key(c.id.kind, &c.id.id, c.action.as_str())).collect();
        let show = |(kind, id, action): &(Kind, String, String)| format!("{action} {} ({kind})", id.escape_debug());
        now.difference(&saved)
            .map(|c| format!("not in the saved plan: {}", show(c)))
            .chain(saved.difference(&now).map(|c| format!("saved but not planned now: {}", show(c))))
            .collect()
    }

    /// Write the plan atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), PlanFileError> {
        let text = serde_json::to_string_pretty(self).expect("a plan file serializes") + "\n";
        write_private(path, text.as_bytes()).map_err(|e| PlanFileError::Usage(format!("cannot write {}: {e}", path.display())))
    }

    pub fn load(path: &Path) -> Result<PlanFile, PlanFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanFileError::Usage(format!("cannot read {}: {e}", path.display())))?;
        let pf: PlanFile = serde_json::from_str(&text)
            .map_err(|e| PlanFileError::Usage(format!("{} is not a saved plan (line {}, column {})", path.display(), e.line(), e.column())))?;
        if pf.format != FORMAT {
            return Err(PlanFileError::Usage(format!("{}: unknown plan format {}", path.display(), pf.format)));
        }
        Ok(pf)
    }

    /// Whether this plan may be applied with `key` between these stores (identity, version, key).
    pub fn check_context(&self, key: &SnapshotKey, source: &str, target: &str) -> Result<(), PlanFileError> {
        if self.key_id != key.id() {
            return Err(PlanFileError::Usage("the plan was saved under another snapshot key; its fingerprints cannot be checked".into()));
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
        if why.is_empty() { Ok(()) } else { Err(PlanFileError::Drift(format!("saved plan refused: {}", why.join("; ")))) }
    }

    /// What changed on either side since the plan was saved.
    pub fn drift(&self, key: &SnapshotKey, source: &Inventory, target: &Inventory, selection: &Selection) -> Vec<Drift> {
        self.drift_from(item_prints(key, source, target, selection))
    }

    /// [`PlanFile::drift`] against fingerprints already taken.
    pub fn drift_of(&self, prints: &Prints) -> Vec<Drift> {
        self.drift_from(prints.items())
    }

    fn drift_from(&self, items: Vec<ItemPrint>) -> Vec<Drift> {
        let saved: BTreeMap<ItemId, &ItemPrint> = self.items.iter().map(|p| (ItemId::new(p.kind, p.id.clone()), p)).collect();
        let now: BTreeMap<ItemId, ItemPrint> = items.into_iter().map(|p| (ItemId::new(p.kind, p.id.clone()), p)).collect();
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

/// A temp file (mode 0600, exclusive) beside `path`, fsynced, renamed over it; the directory is
/// fsynced so the rename is durable too. A failure removes the temp file.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(".{}.{}-{:08x}.tmp", name.to_string_lossy(), std::process::id(), rand::random::<u32>()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
        // Authenticated: any edit of the content, or another key, is refused.
        pf.verify(&key).unwrap();
        let reparsed: PlanFile = serde_json::from_str(&text).unwrap();
        reparsed.verify(&key).unwrap();
        let mut edited = pf.clone();
        edited.policy.prune = true;
        assert!(matches!(edited.verify(&key), Err(PlanFileError::Drift(_))));
        let mut unsigned = pf.clone();
        unsigned.mac.clear();
        assert!(unsigned.verify(&key).is_err());
        assert!(pf.verify(&SnapshotKey::parse(&"cd".repeat(32)).unwrap()).is_err());
        assert!(serde_json::from_str::<PlanFile>(&text.replacen("{", "{\"extra\":1,", 1)).is_err(), "unknown fields are refused");
        // The recomputed write set must equal the saved one.
        assert!(pf.unplanned(&plan).is_empty());
        let mut fewer = pf.clone();
        fewer.changes.retain(|c| c.id != "a");
        assert_eq!(fewer.unplanned(&plan), vec!["not in the saved plan: create a (variable)".to_string()]);
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
