//! Diff two inventories into a [`Plan`]. This module alone decides what changes.
//!
//! The plan is data: rendering, saving, applying and the daemon all consume the same `Plan`. It
//! never holds a value in anything that is serialized: the entries to write ride along in
//! `#[serde(skip)]` fields, and what is shown is the action, the names of the changed fields, the
//! losses and the errors.

use globset::GlobSet;
use serde::Serialize;

use crate::airflow::connection::{self, Loss, Reader};
use crate::airflow::fidelity::{self, Fidelity, LegacyExtra};
use crate::config::{ApplyConfig, SelectConfig};
use crate::model::{
    Connection, Entry, Inventory, ItemError, ItemErrorKind, ItemId, Kind, Ownership, Value,
};
use crate::store::{Capabilities, ConnectionFormat, Placement, Precondition, Store};

/// A selection that cannot be built (a bad glob): a usage error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectionError(pub String);

/// Which ids a run touches.
#[derive(Clone, Debug)]
pub struct Selection {
    kinds: Vec<Kind>,
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Selection {
    pub fn all() -> Self {
        Self { kinds: Kind::ALL.to_vec(), include: None, exclude: GlobSet::empty() }
    }

    pub fn from_config(cfg: &SelectConfig) -> Result<Self, SelectionError> {
        let kinds = match cfg.only {
            Some(only) => vec![only.kind()],
            None => Kind::ALL.to_vec(),
        };
        let (include, exclude) = cfg.globs().map_err(SelectionError)?;
        Ok(Self { kinds, include, exclude })
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    pub fn matches(&self, id: &ItemId) -> bool {
        self.kinds.contains(&id.kind)
            && self.include.as_ref().is_none_or(|g| g.is_match(&id.id))
            && !self.exclude.is_match(&id.id)
    }
}

/// The rules a diff follows.
#[derive(Clone, Debug)]
pub struct Policy {
    pub selection: Selection,
    pub prune: bool,
    pub adopt: bool,
    pub max_deletes: usize,
    /// Which Airflow readers the target must satisfy, and what to do with legacy extras.
    pub fidelity: Fidelity,
}

impl Policy {
    pub fn new(selection: Selection, apply: &ApplyConfig) -> Self {
        Self {
            selection,
            prune: apply.prune,
            adopt: apply.adopt,
            max_deletes: apply.max_deletes,
            fidelity: Fidelity::default(),
        }
    }

    pub fn with_fidelity(mut self, fidelity: Fidelity) -> Self {
        self.fidelity = fidelity;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    Unchanged,
    /// Written nowhere: Airflow would never look it up in the target (lookup pattern, disabled kind).
    Unreachable,
    /// Present only in the target and kept (no `--prune`, or not ours to delete).
    Kept,
    /// Cannot be planned: see `error`.
    Error,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Unchanged => "unchanged",
            Action::Unreachable => "unreachable",
            Action::Kept => "kept",
            Action::Error => "error",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
}

/// One item's line in the plan.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub id: ItemId,
    pub action: Action,
    /// The target's name for the item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// Names of the fields that differ (never their values).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_fields: Vec<&'static str>,
    /// What the target cannot carry of this item.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<Loss>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<PlanItemError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The entry to write (create/update). Holds plaintext: never serialized.
    #[serde(skip)]
    pub desired: Option<std::sync::Arc<Entry>>,
    /// The condition the write must meet (check-and-set against what the plan saw).
    #[serde(skip)]
    pub precondition: Precondition,
}

/// A per-item error, with the side it came from.
#[derive(Clone, Debug, Serialize)]
pub struct PlanItemError {
    pub side: &'static str,
    pub kind: ItemErrorKind,
    pub detail: String,
}

impl PlanItemError {
    fn new(side: &'static str, e: &ItemError) -> Self {
        Self { side, kind: e.kind, detail: e.detail.clone() }
    }
}

impl std::fmt::Display for PlanItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.side, self.kind.as_str(), self.detail)
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
    pub unreachable: usize,
    pub kept: usize,
    pub errors: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub tool_version: &'static str,
    pub source: String,
    pub target: String,
    /// The Airflow readers the losses and errors were predicted for (`airflow2`, `airflow3`, `task-sdk`).
    pub readers: Vec<&'static str>,
    /// The reader the target's values are compared with (and read back with after an apply).
    #[serde(skip)]
    pub primary_reader: Reader,
    pub changes: Vec<Change>,
    pub summary: Summary,
    /// Plan-level refusals (e.g. more deletes than `max_deletes`). An errored plan is not applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<String>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.summary.create + self.summary.update + self.summary.delete > 0
    }

    pub fn errored(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action == Action::Error)
    }

    pub fn writes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action.is_write())
    }

}

/// What `entry` will look like once written to a store with `caps` and read back by Airflow:
/// the source value pushed through the target's encoding. Comparing against this, not the raw
/// source, keeps a lossy target (a URI, AWS SM without descriptions) from showing a perpetual diff.
pub fn projected(caps: &Capabilities, entry: &Entry) -> Value {
    match &entry.value {
        Value::Variable(v) => {
            let mut v = v.clone();
            if !caps.variable_description {
                v.description = None;
            }
            Value::Variable(v)
        }
        Value::Connection(c) => Value::Connection(project_connection(caps, c)),
    }
}

fn project_connection(caps: &Capabilities, c: &Connection) -> Connection {
    let mut out = match caps.connection_format {
        ConnectionFormat::Fields => c.clone(),
        ConnectionFormat::Json => connection::from_json(connection::to_json(c).expose_plaintext(), Reader::Orm3)
            .unwrap_or_else(|_| c.clone()),
        ConnectionFormat::Uri => connection::parse_uri(connection::to_uri(c).expose_plaintext(), Reader::Orm3)
            .unwrap_or_else(|_| c.clone()),
    };
    if !caps.connection_description {
        out.description = None;
    }
    out
}

/// Whether two values are the same as Airflow reads them.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Variable(x), Value::Variable(y)) => x.value == y.value && x.description == y.description,
        (Value::Connection(x), Value::Connection(y)) => connection::equivalent(x, y),
        _ => false,
    }
}

/// Copies one field from the second connection into the first.
type CopyField = fn(&mut Connection, &Connection);

fn changed_fields(want: &Value, have: &Value) -> Vec<&'static str> {
    match (want, have) {
        (Value::Variable(x), Value::Variable(y)) => {
            let mut f = Vec::new();
            if x.value != y.value {
                f.push("value");
            }
            if x.description != y.description {
                f.push("description");
            }
            f
        }
        (Value::Connection(x), Value::Connection(y)) => {
            let mut f = Vec::new();
            let fields: [(&'static str, CopyField); 8] = [
                ("conn_type", |a, b| a.conn_type = b.conn_type.clone()),
                ("description", |a, b| a.description = b.description.clone()),
                ("host", |a, b| a.host = b.host.clone()),
                ("login", |a, b| a.login = b.login.clone()),
                ("password", |a, b| a.password = b.password.clone()),
                ("schema", |a, b| a.schema = b.schema.clone()),
                ("port", |a, b| a.port = b.port),
                ("extra", |a, b| a.extra = b.extra.clone()),
            ];
            // A field differs if copying it from `want` into `have` changes equivalence.
            for (name, copy) in fields {
                let mut patched = y.clone();
                copy(&mut patched, x);
                if !connection::equivalent(&patched, y) {
                    f.push(name);
                }
            }
            f
        }
        _ => vec!["kind"],
    }
}

fn encoded_size(caps: &Capabilities, entry: &Entry) -> usize {
    match &entry.value {
        Value::Variable(v) => v.value.len(),
        Value::Connection(c) => match caps.connection_format {
            ConnectionFormat::Uri => connection::to_uri(c).len(),
            ConnectionFormat::Json | ConnectionFormat::Fields => connection::to_json(c).len(),
        },
    }
}

/// An upper bound of [`encoded_size`] that costs no encoding: JSON escapes a byte into at most six
/// (`\u00XX`; a 4-byte character is a 12-byte surrogate pair), a URI percent-encodes it into three,
/// re-dumping an extra at most spaces its separators or spells out a number (`9e15` as
/// `9000000000000000.0`, under 5×); the rest is keys, quotes and the port.
fn encoded_size_bound(entry: &Entry) -> usize {
    match &entry.value {
        Value::Variable(v) => v.value.len(),
        Value::Connection(c) => {
            let s = |f: &Option<String>| f.as_ref().map_or(0, String::len);
            let v = |f: &Option<crate::model::SecretValue>| f.as_ref().map_or(0, |x| x.len());
            let text = s(&c.conn_type) + s(&c.description) + s(&c.host) + s(&c.login) + s(&c.schema) + v(&c.password) + v(&c.extra);
            text.saturating_mul(8).saturating_add(256)
        }
    }
}

/// Check what the target's capabilities forbid, before any request.
fn refusal(caps: &Capabilities, entry: &Entry) -> Option<ItemError> {
    if let Value::Variable(v) = &entry.value
        && v.value.is_empty()
        && !caps.empty_variables
    {
        return Some(ItemError::new(ItemErrorKind::NotRepresentable, "an empty variable cannot be stored in the target"));
    }
    if let Value::Variable(v) = &entry.value
        && !caps.variable_line_breaks
        && v.value.expose_plaintext().chars().any(crate::airflow::is_py_line_break)
    {
        return Some(ItemError::new(ItemErrorKind::NotRepresentable, "a value with a line break cannot be stored in the target"));
    }
    if let Some(limit) = caps.max_value_bytes
        && encoded_size_bound(entry) > limit
    {
        let size = encoded_size(caps, entry);
        if size > limit {
            return Some(ItemError::new(ItemErrorKind::TooLarge, format!("{size} bytes encoded; the target's limit is {limit}")));
        }
    }
    None
}

/// What the planner predicts for one source entry: the entry to write (the source's, or a rewrite
/// the policy asks for), what the target's own reader will read back, and every loss of every
/// configured reader. `Err`: the store refuses the write, or a configured reader refuses the item.
fn predict(
    target: &dyn Store,
    entry: &std::sync::Arc<Entry>,
    fidelity: &Fidelity,
) -> Result<(std::sync::Arc<Entry>, Value, Vec<Loss>), ItemError> {
    let mut extra_losses = Vec::new();
    let mut desired = entry.clone();
    if let (Value::Connection(c), LegacyExtra::Wrap(key)) = (&entry.value, &fidelity.legacy_extra)
        && fidelity::legacy_extra(c)
    {
        let wrapped = fidelity::wrap_legacy_extra(c, key);
        desired = std::sync::Arc::new(Entry { id: entry.id.clone(), value: Value::Connection(wrapped), meta: entry.meta.clone() });
        extra_losses.push(Loss {
            field: "extra",
            what: format!("not a JSON object: written as {{\"{}\": <the text>}} (legacy_extra = \"wrap\")", key.escape_debug()),
            readers: Vec::new(),
        });
    }
    let readers = fidelity.readers.as_slice();
    // No Airflow reader reads a variable differently from another (`get_variable` returns the
    // stored string in every version): one decode stands for all of them.
    if let Value::Variable(_) = desired.value {
        let reading = target.read_as(&desired, &[fidelity.readers.primary()])?.into_iter().next();
        let v = reading.expect("one reading per reader").map_err(|e| ItemError::new(ItemErrorKind::NotRepresentable, e.detail))?;
        let diffs = fidelity::differences(&desired.value, &v);
        let per_reader: Vec<_> = readers.iter().map(|r| (*r, diffs.clone())).collect();
        let mut losses = extra_losses;
        losses.extend(fidelity::group(&per_reader));
        return Ok((desired, v, losses));
    }
    let readings = target.read_as(&desired, readers)?;
    let mut refused: Vec<(Reader, ItemError)> = Vec::new();
    let mut per_reader = Vec::new();
    let mut want = None;
    for (r, reading) in readers.iter().zip(readings) {
        match reading {
            Ok(v) => {
                // Compared with the entry to write: a wrap was reported above, once.
                per_reader.push((*r, fidelity::differences(&desired.value, &v)));
                if *r == fidelity.readers.primary() {
                    want = Some(v);
                }
            }
            Err(e) => refused.push((*r, e)),
        }
    }
    if let Some((_, first)) = refused.first() {
        let who: Vec<&str> = refused.iter().map(|(r, _)| fidelity::reader_label(*r)).collect();
        let mut detail = format!("{} would refuse it ({})", who.join(" and "), first.detail);
        if let Value::Connection(c) = &desired.value
            && fidelity::legacy_extra(c)
        {
            detail.push_str(
                "; its extra is not a JSON object: set [target] legacy_extra = \"wrap\" to move the text under a key, \
                 or airflow_readers = [\"2\"] if only Airflow 2 reads this target",
            );
        }
        return Err(ItemError::new(ItemErrorKind::NotRepresentable, detail));
    }
    let mut losses = extra_losses;
    losses.extend(fidelity::group(&per_reader));
    let want = want.expect("the primary reader is one of the readers");
    Ok((desired, want, losses))
}

/// Source items predicted at once: bounds the decoded copies held together (memory), and lets
/// the predictions of one chunk run on every core.
const PREDICT_CHUNK: usize = 4096;

type Prediction = Result<(std::sync::Arc<Entry>, Value, Vec<Loss>), ItemError>;

/// [`predict`] for every entry of `ids` (None: no entry, e.g. a read error), in order; split over
/// the available cores when the chunk is large enough to pay for the threads.
fn predict_chunk(target: &dyn Store, source: &Inventory, ids: &[&ItemId], fidelity: &Fidelity) -> Vec<Option<Prediction>> {
    let one = |id: &ItemId| source.get_shared(id).map(|e| predict(target, &e, fidelity));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if workers < 2 || ids.len() < 512 {
        return ids.iter().map(|id| one(id)).collect();
    }
    let per = ids.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> =
            ids.chunks(per).map(|part| s.spawn(move || part.iter().map(|id| one(id)).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("a prediction thread panicked")).collect()
    })
}

/// Diff `source` against `target` (both already read) under `policy`.
pub fn diff(source_store: &dyn Store, source: &Inventory, target_store: &dyn Store, target: &Inventory, policy: &Policy) -> Plan {
    let mut differ = Differ::new(source_store, target_store, policy);
    differ.add(source, target);
    differ.finish()
}

/// A diff made one part at a time (the pipeline: one kind at a time), so that a part's entries can
/// be dropped as soon as they are compared instead of both sides of every kind being held at once.
///
/// Every id the diff looks at for an item (collisions, the target's name for it, target-only items)
/// is of the item's own kind, so parts that each hold whole kinds on both sides give exactly the
/// plan of [`diff`] over their union. A kind must be in one part only.
pub struct Differ<'a> {
    source_store: &'a dyn Store,
    target_store: &'a dyn Store,
    policy: &'a Policy,
    caps: Capabilities,
    target_label: String,
    changes: Vec<Change>,
    kinds_done: Vec<Kind>,
}

impl<'a> Differ<'a> {
    pub fn new(source_store: &'a dyn Store, target_store: &'a dyn Store, policy: &'a Policy) -> Self {
        Self {
            source_store,
            target_store,
            policy,
            caps: target_store.capabilities(),
            target_label: target_store.to_string(),
            changes: Vec::new(),
            kinds_done: Vec::new(),
        }
    }

    /// Diff one part: `source` and `target` hold the same whole kinds, none of them added before.
    /// Returns the changes of this part (unsorted until [`Differ::finish`]).
    pub fn add(&mut self, source: &Inventory, target: &Inventory) -> &[Change] {
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| source.has_kind(*k) || target.has_kind(*k)).collect();
        assert!(
            !kinds.iter().any(|k| self.kinds_done.contains(k)),
            "a kind was diffed in two parts: the plan would miss collisions and double-count target-only items"
        );
        self.kinds_done.extend(kinds);
        let start = self.changes.len();
        let (caps, target_store, policy) = (&self.caps, self.target_store, self.policy);
        let target_label = &self.target_label;
        let changes = &mut self.changes;
        let blank = |id: &ItemId, action: Action| Change {
            id: id.clone(),
            action,
            target_name: None,
            changed_fields: Vec::new(),
            losses: Vec::new(),
            error: None,
            note: None,
            desired: None,
            precondition: Precondition::Any,
        };

        let selected: Vec<&ItemId> = source.ids().filter(|id| policy.selection.matches(id)).collect();
        let target_only: Vec<&ItemId> =
            target.ids().filter(|id| policy.selection.matches(id) && !source.contains(id)).collect();
        // At most one change per item of either side: reserved once for the part, so a 100k-item
        // plan is neither over-reserved nor copied while it grows.
        changes.reserve_exact(selected.len() + target_only.len());

        // The target's name for every selected id, asked once (it becomes the change's target_name).
        let mut placements: Vec<Option<Placement>> = selected.iter().map(|id| Some(target_store.locate(id))).collect();
        let collisions = collisions(&selected, &placements, caps.case_insensitive_names);

        // Target entries by the target's own name for them: a store whose scan cannot give an id
        // back exactly (environment names are upper-cased) is matched the way Airflow looks it up.
        let by_target_name: std::cell::OnceCell<std::collections::HashMap<(Kind, &str), &ItemId>> = std::cell::OnceCell::new();
        let mut matched_by_name: std::collections::HashSet<ItemId> = std::collections::HashSet::new();

        for (chunk_no, chunk) in selected.chunks(PREDICT_CHUNK).enumerate() {
            let mut predictions = predict_chunk(target_store, source, chunk, &policy.fidelity);
            for (n, (&id, prediction)) in chunk.iter().zip(predictions.iter_mut()).enumerate() {
                let index = chunk_no * PREDICT_CHUNK + n;
                let mut ch = blank(id, Action::Error);
                if !caps.holds(id.kind) {
                    ch.action = Action::Unreachable;
                    ch.note = Some(format!("{target_label} has {} disabled", id.kind.plural()));
                    changes.push(ch);
                    continue;
                }
                if let Some(err) = source.error(id) {
                    ch.error = Some(PlanItemError::new("source", err));
                    changes.push(ch);
                    continue;
                }
                let Some(entry) = source.get_shared(id) else { continue };
                match placements[index].take().expect("each placement is taken once") {
                    Placement::At(name) => ch.target_name = Some(name),
                    Placement::Invalid(why) => {
                        ch.error = Some(PlanItemError::new("target", &ItemError::new(ItemErrorKind::InvalidName, why)));
                        changes.push(ch);
                        continue;
                    }
                    Placement::Unreachable(why) => {
                        ch.action = Action::Unreachable;
                        ch.note = Some(why);
                        changes.push(ch);
                        continue;
                    }
                }
                if let Some(others) = collisions.get(&index) {
                    let detail = format!("same target name as {}", others.join(", "));
                    ch.error = Some(PlanItemError::new("target", &ItemError::new(ItemErrorKind::Collision, detail)));
                    changes.push(ch);
                    continue;
                }
                if let Some(err) = refusal(caps, &entry) {
                    ch.error = Some(PlanItemError::new("target", &err));
                    changes.push(ch);
                    continue;
                }
                if caps.read_only {
                    ch.error = Some(PlanItemError::new(
                        "target",
                        &ItemError::new(ItemErrorKind::NotRepresentable, "the target is read-only"),
                    ));
                    changes.push(ch);
                    continue;
                }
                let (desired, want, losses) = match prediction.take().expect("every source entry is predicted") {
                    Ok(p) => p,
                    Err(err) => {
                        ch.error = Some(PlanItemError::new("target", &err));
                        changes.push(ch);
                        continue;
                    }
                };
                ch.losses = losses;
                let mut tid = id;
                if !target.contains(id)
                    && let Some(name) = ch.target_name.as_deref()
                {
                    let names = by_target_name.get_or_init(|| {
                        target.entries().filter_map(|e| e.meta.name.as_deref().map(|n| ((e.id.kind, n), &e.id))).collect()
                    });
                    if let Some(other) = names.get(&(id.kind, name)).filter(|o| !source.contains(o)) {
                        tid = other;
                        matched_by_name.insert((*other).clone());
                    }
                }
                match (target.get(tid), target.error(tid)) {
                    (Some(current), _) => {
                        if fidelity::differences(&want, &current.value).is_empty() {
                            ch.action = Action::Unchanged;
                            ch.losses.clear();
                        } else if caps.keep_existing {
                            ch.action = Action::Kept;
                            ch.losses.clear();
                            ch.note = Some("exists in the target, which keeps existing items (on_conflict = skip)".into());
                        } else if current.meta.ownership == Ownership::Foreign && !policy.adopt {
                            ch.error = Some(PlanItemError::new(
                                "target",
                                &ItemError::new(ItemErrorKind::NotOwned, "exists and was not written by this tool; pass --adopt to take it over"),
                            ));
                        } else {
                            ch.action = Action::Update;
                            ch.changed_fields = changed_fields(&want, &current.value);
                            if current.meta.ownership == Ownership::Foreign {
                                ch.note = Some("adopted: not written by this tool until now".into());
                            }
                            ch.precondition = current.meta.version.clone().map_or(Precondition::Any, Precondition::Version);
                            ch.desired = Some(desired);
                        }
                    }
                    (None, Some(err)) if err.kind == ItemErrorKind::Blocked => {
                        // A disabled secret, a name pending deletion: the target's state must be changed
                        // deliberately first; overwriting it blindly is not ours to decide.
                        ch.error = Some(PlanItemError::new("target", err));
                    }
                    (None, Some(err)) => {
                        // The target holds something Airflow cannot read either; replacing it fixes it.
                        ch.action = Action::Update;
                        ch.note = Some(format!("current target value is unreadable ({})", err.kind.as_str()));
                        ch.desired = Some(desired);
                    }
                    (None, None) => {
                        ch.action = Action::Create;
                        ch.precondition = if caps.conditional_writes { Precondition::Absent } else { Precondition::Any };
                        ch.desired = Some(desired);
                    }
                }
                changes.push(ch);
            }
        }

        // Target-only items.
        for &id in target_only.iter().filter(|id| !matched_by_name.contains(**id)) {
            let mut ch = blank(id, Action::Kept);
            let current = target.get(id);
            ch.target_name = current.and_then(|e| e.meta.name.clone());
            if policy.prune {
                let ownership = current.map(|e| e.meta.ownership).unwrap_or(Ownership::Untracked);
                match ownership {
                    Ownership::Ours => ch.action = Action::Delete,
                    Ownership::Untracked if policy.adopt => ch.action = Action::Delete,
                    Ownership::Untracked => {
                        ch.note = Some("not in the source; the target cannot mark ownership, so pass --adopt to prune it".into())
                    }
                    Ownership::Foreign => ch.note = Some("not in the source; not written by this tool, never pruned".into()),
                }
                if ch.action == Action::Delete && !caps.can_delete {
                    ch.action = Action::Kept;
                    ch.note = Some("not in the source; the target does not support deletes".into());
                }
            }
            changes.push(ch);
        }
        &self.changes[start..]
    }

    /// The plan of every part added: sorted, summed up, and refused as a whole (`max_deletes`
    /// counts the deletes of all parts).
    pub fn finish(self) -> Plan {
        let Differ { source_store, target_store, policy, mut changes, .. } = self;
        // Ids are unique across parts (a kind is in one part, an id in one change of it): the
        // unstable sort gives the same order as a stable one, without a scratch copy of the plan.
        changes.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let mut summary = Summary::default();
        for c in &changes {
            match c.action {
                Action::Create => summary.create += 1,
                Action::Update => summary.update += 1,
                Action::Delete => summary.delete += 1,
                Action::Unchanged => summary.unchanged += 1,
                Action::Unreachable => summary.unreachable += 1,
                Action::Kept => summary.kept += 1,
                Action::Error => summary.errors += 1,
            }
        }
        let mut refusals = Vec::new();
        if summary.delete > policy.max_deletes {
            refusals.push(format!(
                "the plan deletes {} items, more than max_deletes = {}; raise it deliberately to proceed",
                summary.delete, policy.max_deletes
            ));
        }
        Plan {
            tool_version: env!("CARGO_PKG_VERSION"),
            source: source_store.identity(),
            target: target_store.identity(),
            readers: policy.fidelity.readers.ids(),
            primary_reader: policy.fidelity.readers.primary(),
            changes,
            summary,
            refusals,
        }
    }
}

/// Names that several selected ids would share in the target (Azure folds `_` and case, env
/// upper-cases): every member of such a group is an error, found before any write. By index into
/// `ids`: the other members' ids, in id order.
fn collisions(ids: &[&ItemId], placements: &[Option<Placement>], case_insensitive: bool) -> std::collections::HashMap<usize, Vec<String>> {
    let key = |i: usize| -> Option<(Kind, std::borrow::Cow<'_, str>)> {
        match placements[i].as_ref()? {
            Placement::At(name) if case_insensitive => Some((ids[i].kind, name.to_lowercase().into())),
            Placement::At(name) => Some((ids[i].kind, name.as_str().into())),
            _ => None,
        }
    };
    // Sorted by name, stable: a group's members stay in id order. Indices only, no copy of a name
    // (but the lower-cased ones).
    let mut keyed: Vec<(Option<(Kind, std::borrow::Cow<'_, str>)>, usize)> = (0..ids.len()).map(|i| (key(i), i)).collect();
    keyed.retain(|(k, _)| k.is_some());
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = std::collections::HashMap::new();
    for group in keyed.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
        for (_, i) in group {
            out.insert(*i, group.iter().filter(|(_, o)| o != i).map(|(_, o)| ids[*o].id.clone()).collect());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SecretValue;

    /// The cheap bound the size check skips encoding with is never below the real encoding, for
    /// the worst expansions JSON and URIs have: control and astral characters, compact extras whose
    /// numbers Python spells out, percent-encoded URI characters.
    #[test]
    fn encoded_size_bound_is_an_upper_bound() {
        let many = |item: &str| format!("[{}{item}]", format!("{item},").repeat(200));
        let extras = [many("1"), many("9e15"), many("{\"a\":1E5}"), "\u{1}\u{1f}\u{7f}".repeat(200), many("\"\u{1F600}\\u0001\""), "x".into()];
        let texts = ["", "\u{1}\u{2}\u{3}", "\u{1F600}\u{1F600}", "@:/#?%&= +\\\"", "é\u{2028}\t\n"].map(|t| t.repeat(200));
        for extra in &extras {
            for t in &texts {
                let t = t.as_str();
                let extra = extra.as_str();
                let c = Connection {
                    conn_type: Some(t.into()),
                    description: Some(t.into()),
                    host: Some(t.into()),
                    login: Some(t.into()),
                    password: Some(SecretValue::new(t)),
                    schema: Some(t.into()),
                    port: Some(65535),
                    extra: Some(SecretValue::new(extra)),
                };
                let entry = Entry::connection("c", c);
                for format in [ConnectionFormat::Json, ConnectionFormat::Uri, ConnectionFormat::Fields] {
                    let caps = Capabilities { connection_format: format, ..Capabilities::full() };
                    assert!(encoded_size(&caps, &entry) <= encoded_size_bound(&entry), "{format:?} {t:?} {extra:?}");
                }
            }
        }
    }
}
