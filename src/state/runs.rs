//! Runs: one row per apply (a migration or a rollback), created together with its snapshot and
//! its planned journal rows in ONE transaction, committed before the run's first write.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{StateDb, StateError, now, on_pool};
use crate::model::ItemId;
use crate::plan::Action;
use crate::state::snapshots::parse_kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Migrate,
    Rollback,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Migrate => "migrate",
            RunKind::Rollback => "rollback",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Writing, or interrupted (killed, or stopped on an unavailable backend): the only status
    /// that is resumed.
    Applying,
    Done,
    /// Finished with failed writes or a read-back mismatch: not resumed (a later apply starts a
    /// new run); `rollback RUN` undoes it.
    Failed,
    RolledBack,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Applying => "applying",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::RolledBack => "rolled_back",
        }
    }

    fn parse(s: &str) -> RunStatus {
        match s {
            "done" => RunStatus::Done,
            "failed" => RunStatus::Failed,
            "rolled_back" => RunStatus::RolledBack,
            _ => RunStatus::Applying,
        }
    }

    /// Whether a later apply must resume (or roll back) this run first.
    pub fn is_incomplete(self) -> bool {
        matches!(self, RunStatus::Applying)
    }
}

/// Where one planned write of a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalState {
    /// Planned, not attempted.
    Pending,
    /// About to be written, or written and the process died before recording the outcome.
    Intent,
    Done,
    Failed,
}

impl JournalState {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalState::Pending => "pending",
            JournalState::Intent => "intent",
            JournalState::Done => "done",
            JournalState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> JournalState {
        match s {
            "intent" => JournalState::Intent,
            "done" => JournalState::Done,
            "failed" => JournalState::Failed,
            _ => JournalState::Pending,
        }
    }
}

/// A run as `runs` lists it: no values, only names, counts and fingerprints' digests.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub kind: String,
    pub source: String,
    pub target: String,
    pub plan_digest: String,
    pub key_id: String,
    pub snapshot: bool,
    pub status: RunStatus,
    pub rollback_of: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub writes_planned: i64,
}

/// One journal row.
#[derive(Clone, Debug)]
pub struct JournalRow {
    pub id: ItemId,
    pub action: String,
    pub desired_fp: String,
    pub state: JournalState,
}

/// A planned write, as the journal records it.
pub struct PlannedWrite {
    pub id: ItemId,
    pub action: Action,
    /// Keyed fingerprint of the value to write ("" without a key).
    pub desired_fp: String,
}

/// A sealed snapshot row.
pub struct SealedRow {
    pub id: ItemId,
    pub nonce: Vec<u8>,
    pub sealed: Vec<u8>,
}

/// A new run's header.
pub struct NewRun<'a> {
    pub id: &'a str,
    pub kind: RunKind,
    pub source: &'a str,
    pub target: &'a str,
    pub plan_digest: &'a str,
    pub key_id: &'a str,
    pub snapshot: bool,
    pub rollback_of: Option<&'a str>,
}

type RunRow = (String, String, String, String, String, String, bool, String, Option<String>, String, Option<String>, i64);

fn record(r: RunRow) -> RunRecord {
    RunRecord {
        id: r.0,
        kind: r.1,
        source: r.2,
        target: r.3,
        plan_digest: r.4,
        key_id: r.5,
        snapshot: r.6,
        status: RunStatus::parse(&r.7),
        rollback_of: r.8,
        started_at: r.9,
        finished_at: r.10,
        writes_planned: r.11,
    }
}

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 500;

const RUN_COLUMNS: &str =
    "id, kind, source, target, plan_digest, key_id, snapshot, status, rollback_of, started_at, finished_at, writes_planned";

/// A fresh run id: sortable by time, unique by a random suffix.
pub fn new_run_id() -> String {
    use rand::Rng;
    format!("{}-{:04x}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), rand::rng().random::<u16>())
}

macro_rules! in_tx {
    ($db:expr, $op:expr, $tx:ident => $body:expr) => {
        on_pool!($db, p => {
            async {
                let mut $tx = p.begin().await?;
                $body;
                $tx.commit().await
            }
            .await
        })
        .map_err(|e| $db.db_err($op, e))
    };
}

impl StateDb {
    /// Record a new run with its planned writes and its snapshot, committed together.
    pub async fn begin_run(&self, run: &NewRun<'_>, writes: &[PlannedWrite], snapshot: &[SealedRow]) -> Result<(), StateError> {
        let now = now();
        in_tx!(self, "record the run and its snapshot", tx => {
            sqlx::query(
                "INSERT INTO runs (id, kind, source, target, plan_digest, key_id, snapshot, status, rollback_of, started_at, writes_planned) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'applying', $8, $9, $10)")
                .bind(run.id).bind(run.kind.as_str()).bind(run.source).bind(run.target).bind(run.plan_digest)
                .bind(run.key_id).bind(run.snapshot).bind(run.rollback_of).bind(&now).bind(writes.len() as i64)
                .execute(&mut *tx).await?;
            // Multi-row INSERTs: one statement per ROWS_PER_STATEMENT rows, not one per row
            // (a 100k-item run would otherwise spend seconds on driver round trips).
            for chunk in writes.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO journal (run_id, item_kind, item_id, action, desired_fp, state, updated_at) ");
                q.push_values(chunk, |mut b, w| {
                    b.push_bind(run.id).push_bind(w.id.kind.as_str()).push_bind(&w.id.id).push_bind(w.action.as_str())
                        .push_bind(&w.desired_fp).push_bind("pending").push_bind(&now);
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in snapshot.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO snapshots (run_id, item_kind, item_id, nonce, sealed) ");
                q.push_values(chunk, |mut b, s| {
                    b.push_bind(run.id).push_bind(s.id.kind.as_str()).push_bind(&s.id.id).push_bind(&s.nonce).push_bind(&s.sealed);
                });
                q.build().execute(&mut *tx).await?;
            }
            crate::fault::kill_point(crate::fault::BEGIN_RUN);
        })
    }

    /// Add a resumed run's writes: new items get a journal row and their snapshot; items the run
    /// already planned keep their snapshot and state (only the action and fingerprint follow the
    /// new plan). `snapshot` must hold only items not yet snapshotted.
    pub async fn extend_run(&self, run_id: &str, writes: &[PlannedWrite], snapshot: &[SealedRow]) -> Result<(), StateError> {
        let now = now();
        in_tx!(self, "extend the run", tx => {
            for chunk in writes.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO journal (run_id, item_kind, item_id, action, desired_fp, state, updated_at) ");
                q.push_values(chunk, |mut b, w| {
                    b.push_bind(run_id).push_bind(w.id.kind.as_str()).push_bind(&w.id.id).push_bind(w.action.as_str())
                        .push_bind(&w.desired_fp).push_bind("pending").push_bind(&now);
                });
                q.push(" ON CONFLICT (run_id, item_kind, item_id) DO UPDATE SET action = excluded.action, \
                        desired_fp = excluded.desired_fp, updated_at = excluded.updated_at");
                q.build().execute(&mut *tx).await?;
            }
            for chunk in snapshot.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO snapshots (run_id, item_kind, item_id, nonce, sealed) ");
                q.push_values(chunk, |mut b, s| {
                    b.push_bind(run_id).push_bind(s.id.kind.as_str()).push_bind(&s.id.id).push_bind(&s.nonce).push_bind(&s.sealed);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE runs SET status = 'applying', finished_at = NULL, writes_planned = (SELECT COUNT(*) FROM journal WHERE run_id = $1) WHERE id = $1")
                .bind(run_id).execute(&mut *tx).await?;
        })
    }

    pub async fn set_run_status(&self, run_id: &str, status: RunStatus) -> Result<(), StateError> {
        let finished = (!matches!(status, RunStatus::Applying)).then(now);
        on_pool!(self, p => sqlx::query("UPDATE runs SET status = $1, finished_at = $2 WHERE id = $3")
            .bind(status.as_str()).bind(finished).bind(run_id).execute(p).await.map(|_| ()))
        .map_err(|e| self.db_err("update the run", e))
    }

    pub async fn run(&self, run_id: &str) -> Result<RunRecord, StateError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"));
        let row: Option<RunRow> = on_pool!(self, p => sqlx::query_as(sql).bind(run_id).fetch_optional(p).await)
            .map_err(|e| self.db_err("read the run", e))?;
        row.map(record).ok_or_else(|| StateError::NoRun(run_id.to_string()))
    }

    /// Most recent first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRecord>, StateError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT $1"));
        let rows: Vec<RunRow> = on_pool!(self, p => sqlx::query_as(sql).bind(limit).fetch_all(p).await)
            .map_err(|e| self.db_err("list runs", e))?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// The latest interrupted (`applying`) run on `target`: neither finished, failed nor rolled back.
    pub async fn incomplete_run(&self, target: &str) -> Result<Option<RunRecord>, StateError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE target = $1 AND status = 'applying' ORDER BY started_at DESC, id DESC LIMIT 1"
        ));
        let row: Option<RunRow> = on_pool!(self, p => sqlx::query_as(sql).bind(target).fetch_optional(p).await)
            .map_err(|e| self.db_err("find incomplete runs", e))?;
        Ok(row.map(record))
    }

    pub async fn journal(&self, run_id: &str) -> Result<Vec<JournalRow>, StateError> {
        let rows: Vec<(String, String, String, String, String)> = on_pool!(self, p =>
            sqlx::query_as("SELECT item_kind, item_id, action, desired_fp, state FROM journal WHERE run_id = $1 ORDER BY item_kind, item_id")
                .bind(run_id).fetch_all(p).await)
        .map_err(|e| self.db_err("read the journal", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, id, action, desired_fp, state)| {
                Some(JournalRow { id: ItemId::new(parse_kind(&k)?, id), action, desired_fp, state: JournalState::parse(&state) })
            })
            .collect())
    }

    /// Journal rows per state, for `runs`.
    pub async fn journal_counts(&self, run_id: &str) -> Result<BTreeMap<&'static str, i64>, StateError> {
        let rows: Vec<(String, i64)> = on_pool!(self, p =>
            sqlx::query_as("SELECT state, COUNT(*) FROM journal WHERE run_id = $1 GROUP BY state").bind(run_id).fetch_all(p).await)
        .map_err(|e| self.db_err("count the journal", e))?;
        Ok(rows.into_iter().map(|(s, n)| (JournalState::parse(&s).as_str(), n)).collect())
    }

    /// Many journal rows in one transaction (one commit).
    pub(crate) async fn set_journal_states(&self, run_id: &str, rows: &[(ItemId, JournalState)]) -> Result<(), StateError> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = now();
        // One UPDATE per (state, kind) and chunk of ids, in one transaction.
        let mut groups: BTreeMap<(&'static str, &'static str), Vec<&str>> = BTreeMap::new();
        for (id, state) in rows {
            groups.entry((state.as_str(), id.kind.as_str())).or_default().push(&id.id);
        }
        in_tx!(self, "journal writes", tx => {
            for ((state, kind), ids) in &groups {
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::new("UPDATE journal SET state = ");
                    q.push_bind(*state).push(", updated_at = ").push_bind(&now).push(" WHERE run_id = ").push_bind(run_id)
                        .push(" AND item_kind = ").push_bind(*kind).push(" AND item_id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    q.build().execute(&mut *tx).await?;
                }
            }
        })
    }

    pub(crate) async fn set_journal_state(&self, run_id: &str, id: &ItemId, state: JournalState) -> Result<(), StateError> {
        let now = now();
        on_pool!(self, p => sqlx::query("UPDATE journal SET state = $1, updated_at = $2 WHERE run_id = $3 AND item_kind = $4 AND item_id = $5")
            .bind(state.as_str()).bind(&now).bind(run_id).bind(id.kind.as_str()).bind(&id.id)
            .execute(p).await.map(|_| ()))
        .map_err(|e| self.db_err("journal a write", e))
    }
}
