-- Key rotation: a rotated key points at its successor (and the successor
-- back at it); the old key keeps working until its expires_at, the end of
-- its grace period.
ALTER TABLE api_keys ADD COLUMN rotated_at TEXT;
ALTER TABLE api_keys ADD COLUMN successor_id TEXT;
ALTER TABLE api_keys ADD COLUMN predecessor_id TEXT;

-- Rotation notices sent to key owners: one row per key and notice
-- (days_14, days_7, due). A replica claims a notice by inserting its row (or
-- by taking over a claim gone stale) before sending, so that no two
-- replicas send the same notice; sent_at is set once the webhook accepted it.
CREATE TABLE key_notices (
    key_id     TEXT NOT NULL,
    notice     TEXT NOT NULL,
    due_at     TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    sent_at    TEXT,
    last_error TEXT,
    PRIMARY KEY (key_id, notice)
);
