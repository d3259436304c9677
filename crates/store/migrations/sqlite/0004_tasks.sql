-- Agent tasks: a durable queue claimed by workers under leases.
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    key_id           TEXT NOT NULL,
    project          TEXT NOT NULL,
    status           TEXT NOT NULL,
    spec             TEXT NOT NULL,
    result           TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT
);
CREATE INDEX tasks_status_created_idx ON tasks (status, created_at);
CREATE INDEX tasks_key_created_idx ON tasks (key_id, created_at DESC);

-- The execution log of each task, in order, for replay.
CREATE TABLE task_events (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    event   TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
