-- The audit log's hash chain: each record carries the hash of the record
-- before it (prev_hash) and its own (hash: SHA-256 over prev_hash and the
-- record's content, see switchyard_core::audit_chain). Records written
-- before this migration carry neither; the chain starts after them.
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;

-- GET /v1/admin/audit filters, newest first within each.
CREATE INDEX audit_log_event_idx ON audit_log (event, id);
CREATE INDEX audit_log_actor_key_idx ON audit_log (actor_key_id, id);
CREATE INDEX audit_log_target_idx ON audit_log (target, id);
CREATE INDEX audit_log_project_idx ON audit_log (project, id);

-- Where the chain starts once retention has deleted older records: the
-- newest record retention deleted, whose hash the oldest kept record names
-- as its prev_hash. One row at most.
CREATE TABLE audit_chain_anchor (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    record_id        BIGINT NOT NULL,
    record_hash      TEXT NOT NULL,
    record_timestamp TEXT NOT NULL,
    deleted_total    BIGINT NOT NULL,
    updated_at       TEXT NOT NULL
);

-- Retention finds finished tasks by when they finished.
CREATE INDEX tasks_finished_at_idx ON tasks (finished_at);
