-- Budget headroom leased by a replica (holder) for one budget period: the
-- replica admits calls against it in memory. A lease is granted, grown or
-- shrunk in one transaction that holds the period's budget_spend row, only
-- while spent + the amounts of every live lease (expires_at in the future)
-- stay within the limit. The usage writer adds a call's actual cost to
-- spent_nano_usd; the holder then lowers its amount to what its calls still
-- need. A lease not renewed by expires_at counts for nothing, so the
-- headroom of a replica that died comes back.
CREATE TABLE budget_leases (
    budget_id       TEXT NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
    period_key      TEXT NOT NULL,
    holder          TEXT NOT NULL,
    amount_nano_usd BIGINT NOT NULL,
    acquired_at     TIMESTAMPTZ NOT NULL,
    renewed_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (budget_id, period_key, holder)
);

-- budget_spend.reserved_nano_usd is retired: nothing reads it, and a
-- reservation that was never settled (its replica died, or the
-- acknowledgement of the settlement was lost) stayed counted in it forever.
-- Replicas of earlier versions still add to it and subtract from it while a
-- rolling upgrade runs, so the column stays; what it holds now is cleared.
UPDATE budget_spend SET reserved_nano_usd = 0;
