-- USD budgets (in nano-USD) per key or per project, per period.
CREATE TABLE budgets (
    id             TEXT PRIMARY KEY,
    scope          TEXT NOT NULL,
    subject        TEXT NOT NULL,
    period         TEXT NOT NULL,
    limit_nano_usd BIGINT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (scope, subject, period)
);

-- Spend and in-flight reservations per budget and period (UTC day
-- 'YYYY-MM-DD', month 'YYYY-MM', or 'total'). A reservation is admitted
-- only while spent + reserved stays within the limit, in one statement.
CREATE TABLE budget_spend (
    budget_id         TEXT NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
    period_key        TEXT NOT NULL,
    spent_nano_usd    BIGINT NOT NULL DEFAULT 0,
    reserved_nano_usd BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (budget_id, period_key)
);
