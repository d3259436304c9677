-- Every backup and restore test (`switchyard backup create` / `verify`,
-- from the command line or the service's schedule), so that every replica
-- reports when the last good one was (the backup alerts) and operators can
-- see what failed. kind is backup or verify.
CREATE TABLE backup_runs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    backup_id   TEXT,
    destination TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    ok          BOOLEAN NOT NULL,
    size_bytes  BIGINT,
    error       TEXT
);
CREATE INDEX backup_runs_kind_ok_finished ON backup_runs (kind, ok, finished_at);
