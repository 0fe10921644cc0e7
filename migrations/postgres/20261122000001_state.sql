-- The safety engine's state (src/state): runs, their journal, encrypted snapshots, target locks.
-- Nothing here is plaintext: item ids are Airflow's names (shown in every plan); values exist only
-- inside `snapshots.sealed` (XChaCha20-Poly1305 under a key that is never stored here).

CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,          -- migrate | rollback
    source          TEXT NOT NULL,          -- store identities (kind + location, no credentials)
    target          TEXT NOT NULL,
    plan_digest     TEXT NOT NULL,          -- keyed HMAC over the planned writes
    key_id          TEXT NOT NULL,          -- which snapshot key sealed this run ('' = none)
    snapshot        BOOLEAN NOT NULL,
    status          TEXT NOT NULL,          -- applying | done | failed | rolled_back
    rollback_of     TEXT,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    writes_planned  BIGINT NOT NULL
);
CREATE INDEX runs_target ON runs (target, status);

CREATE TABLE journal (
    run_id      TEXT NOT NULL REFERENCES runs (id),
    item_kind   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    action      TEXT NOT NULL,              -- create | update | delete
    desired_fp  TEXT NOT NULL,              -- keyed HMAC of what the run writes ('' for delete)
    state       TEXT NOT NULL,              -- pending | intent | done | failed
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (run_id, item_kind, item_id)
);

CREATE TABLE snapshots (
    run_id      TEXT NOT NULL REFERENCES runs (id),
    item_kind   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    nonce       BYTEA NOT NULL,              -- 24 random bytes
    sealed      BYTEA NOT NULL,              -- ciphertext || tag; AAD = run id, target, item
    PRIMARY KEY (run_id, item_kind, item_id)
);

CREATE TABLE target_locks (
    target      TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    holder      TEXT NOT NULL,              -- host and pid, for the "locked by" message
    acquired_at TEXT NOT NULL
);
