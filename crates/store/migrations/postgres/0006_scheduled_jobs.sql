-- Named leases: at most one holder at a time, until expires_at. Work that
-- must happen once per deployment rather than once per replica runs only on
-- the replica holding its lease. Times are the holders' clocks.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

-- What each scheduled job last did, shared by all replicas, so that a
-- replica taking a job over knows when it last ran. last_status is running,
-- ok, failed or lost (cut off when its replica lost the lease).
CREATE TABLE scheduled_jobs (
    name             TEXT PRIMARY KEY,
    interval_ms      BIGINT NOT NULL,
    runs             BIGINT NOT NULL DEFAULT 0,
    failures         BIGINT NOT NULL DEFAULT 0,
    last_holder      TEXT NOT NULL,
    last_started_at  TIMESTAMPTZ NOT NULL,
    last_finished_at TIMESTAMPTZ,
    last_status      TEXT NOT NULL,
    last_error       TEXT,
    last_success_at  TIMESTAMPTZ
);
