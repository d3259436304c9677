//! Budget leases: headroom of one budget period that one replica (the
//! holder) may spend in memory, without a database round trip per call.
//!
//! The rule the database keeps, for every budget period: `spent + the
//! amounts of all live leases <= limit` whenever a lease grows. A lease is
//! live while `expires_at` is in the future (times come from the caller's
//! clock, as for the named leases); one that is not renewed in time counts
//! for nothing, so a replica that died gives its headroom back.
//!
//! Every change of a lease is one transaction that first takes the
//! period's `budget_spend` row (an upsert, which locks it on PostgreSQL and
//! takes SQLite's write lock), then reads the limit, the spend and the other
//! holders' live leases, and only then writes: concurrent replicas are
//! serialised per budget period and cannot together lease past the limit.
//! The amount is set absolutely, never added to, so a retried or repeated
//! change cannot count anything twice.

use crate::{on_pool, Result, Store};
use chrono::{DateTime, Utc};

/// What a lease change sees of its budget period, under the period's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRoom {
    pub limit_nano_usd: i64,
    pub spent_nano_usd: i64,
    /// The amounts of the other holders' live leases.
    pub others_nano_usd: i64,
}

impl LeaseRoom {
    /// What the holder's lease may amount to at most.
    pub fn free_nano_usd(&self) -> i64 {
        self.limit_nano_usd
            .saturating_sub(self.spent_nano_usd)
            .saturating_sub(self.others_nano_usd)
    }
}

/// Which lease: a holder's in one budget period.
#[derive(Debug, Clone, Copy)]
pub struct LeaseKey<'a> {
    pub budget_id: &'a str,
    pub period_key: &'a str,
    pub holder: &'a str,
}

/// Decides a lease's new amount from its room; called once, inside the
/// transaction, while the period is locked.
pub type Decide<'a> = &'a mut (dyn FnMut(&LeaseRoom) -> i64 + Send);

/// One stored lease, for operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct BudgetLease {
    pub budget_id: String,
    pub period_key: String,
    pub holder: String,
    pub amount_nano_usd: i64,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Sets `key`'s lease to the amount `decide` picks (given the room),
    /// valid until `until`; an amount of 0 removes the lease. Expired leases
    /// of other holders of the budget are deleted on the way. `None` when
    /// the budget no longer exists; else the room and the amount set.
    ///
    /// `decide` may pick more than the room allows only to keep covering
    /// what the holder has already admitted; growing past the room is the
    /// caller's decision and the caller's error.
    pub async fn set_budget_lease(
        &self,
        key: LeaseKey<'_>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        decide: Decide<'_>,
    ) -> Result<Option<(LeaseRoom, i64)>> {
        const LOCK: &str = "INSERT INTO budget_spend (budget_id, period_key) \
            SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM budgets WHERE id = $1) \
            ON CONFLICT (budget_id, period_key) DO UPDATE \
            SET spent_nano_usd = budget_spend.spent_nano_usd RETURNING spent_nano_usd";
        const LIMIT: &str = "SELECT limit_nano_usd FROM budgets WHERE id = $1";
        const OTHERS: &str =
            "SELECT CAST(COALESCE(SUM(amount_nano_usd), 0) AS BIGINT) FROM budget_leases \
            WHERE budget_id = $1 AND period_key = $2 AND holder <> $3 AND expires_at > $4";
        const FORGET_EXPIRED: &str = "DELETE FROM budget_leases \
            WHERE budget_id = $1 AND holder <> $2 AND expires_at <= $3";
        const SET: &str = "INSERT INTO budget_leases (budget_id, period_key, holder, \
            amount_nano_usd, acquired_at, renewed_at, expires_at) VALUES ($1, $2, $3, $4, $5, $5, $6) \
            ON CONFLICT (budget_id, period_key, holder) DO UPDATE SET \
            amount_nano_usd = excluded.amount_nano_usd, \
            acquired_at = CASE WHEN budget_leases.expires_at <= excluded.renewed_at \
            THEN excluded.acquired_at ELSE budget_leases.acquired_at END, \
            renewed_at = excluded.renewed_at, expires_at = excluded.expires_at";
        const DROP: &str = "DELETE FROM budget_leases \
            WHERE budget_id = $1 AND period_key = $2 AND holder = $3";
        // The same steps on a pool or on SQLite's writer connection.
        macro_rules! set_lease {
            ($p:expr) => {{
                let p = $p;
                let mut tx = sqlx::Acquire::begin(p).await?;
                let spent: Option<i64> = sqlx::query_scalar(LOCK)
                    .bind(key.budget_id)
                    .bind(key.period_key)
                    .fetch_optional(&mut *tx)
                    .await?;
                let limit: Option<i64> = sqlx::query_scalar(LIMIT)
                    .bind(key.budget_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                match (spent, limit) {
                    (Some(spent), Some(limit)) => {
                        let others: i64 = sqlx::query_scalar(OTHERS)
                            .bind(key.budget_id)
                            .bind(key.period_key)
                            .bind(key.holder)
                            .bind(now)
                            .fetch_one(&mut *tx)
                            .await?;
                        sqlx::query(FORGET_EXPIRED)
                            .bind(key.budget_id)
                            .bind(key.holder)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        let room = LeaseRoom {
                            limit_nano_usd: limit,
                            spent_nano_usd: spent,
                            others_nano_usd: others,
                        };
                        let amount = decide(&room).max(0);
                        if amount > 0 {
                            sqlx::query(SET)
                                .bind(key.budget_id)
                                .bind(key.period_key)
                                .bind(key.holder)
                                .bind(amount)
                                .bind(now)
                                .bind(until)
                                .execute(&mut *tx)
                                .await?;
                        } else {
                            sqlx::query(DROP)
                                .bind(key.budget_id)
                                .bind(key.period_key)
                                .bind(key.holder)
                                .execute(&mut *tx)
                                .await?;
                        }
                        tx.commit().await?;
                        Some((room, amount))
                    }
                    _ => {
                        tx.rollback().await?;
                        None
                    }
                }
            }};
        }
        let span = crate::trace::db_span!(self);
        let work = async {
            match self {
                Store::Sqlite(sqlite) => {
                    let mut turn = sqlite.writer().await?;
                    let done: Result<_> = async { Ok(set_lease!(turn.conn()?)) }.await;
                    if done.is_err() {
                        turn.discard();
                    }
                    done
                }
                _ => Ok(on_pool!(self, p => set_lease!(p))),
            }
        };
        tracing::Instrument::instrument(work, span).await
    }

    /// Deletes every lease of `holder` (a replica shutting down, after its
    /// usage has been written): their headroom is free at once.
    pub async fn release_budget_leases(&self, holder: &str) -> Result<u64> {
        const SQL: &str = "DELETE FROM budget_leases WHERE holder = $1";
        Ok(on_pool!(self, p => sqlx::query(SQL)
            .bind(holder)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?)
    }

    /// Every stored lease, live or expired, by budget, period and holder.
    pub async fn list_budget_leases(&self) -> Result<Vec<BudgetLease>> {
        const SQL: &str = "SELECT budget_id, period_key, holder, amount_nano_usd, acquired_at, \
            renewed_at, expires_at FROM budget_leases ORDER BY budget_id, period_key, holder";
        Ok(crate::read_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await)?)
    }
}
