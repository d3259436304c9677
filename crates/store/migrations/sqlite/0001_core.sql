-- API keys: only the SHA-256 hash of a secret is stored.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    name         TEXT NOT NULL,
    owner        TEXT,
    project      TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
);
CREATE INDEX api_keys_project_idx ON api_keys (project);

-- One row per request that reached a model or a task; cost in nano-USD.
CREATE TABLE usage_log (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp           TEXT NOT NULL,
    request_id          TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    project             TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    model_requested     TEXT,
    model_used          TEXT,
    backend             TEXT,
    input_tokens        BIGINT NOT NULL DEFAULT 0,
    output_tokens       BIGINT NOT NULL DEFAULT 0,
    cached_tokens       BIGINT NOT NULL DEFAULT 0,
    cost_nano_usd       BIGINT NOT NULL DEFAULT 0,
    latency_ms          BIGINT NOT NULL DEFAULT 0,
    upstream_latency_ms BIGINT,
    status              INTEGER NOT NULL,
    error_type          TEXT
);
CREATE INDEX usage_log_timestamp_idx ON usage_log (timestamp DESC);
CREATE INDEX usage_log_key_timestamp_idx ON usage_log (key_id, timestamp DESC);
CREATE INDEX usage_log_project_timestamp_idx ON usage_log (project, timestamp DESC);

-- Significant events: who (redacted key), what, when, from where.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp    TEXT NOT NULL,
    event        TEXT NOT NULL,
    actor_key_id TEXT,
    actor_key    TEXT,
    project      TEXT,
    target       TEXT,
    task_id      TEXT,
    client_ip    TEXT,
    request_id   TEXT,
    details      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_timestamp_idx ON audit_log (timestamp DESC);

-- Small named facts about the installation (e.g. that the admin key was bootstrapped).
CREATE TABLE system_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
