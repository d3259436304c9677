//! The budget repository: budgets, and atomic reserve/settle of spend.
//!
//! A reservation is one conditional upsert per budget (`… WHERE spent +
//! reserved + amount <= limit`), several budgets in one transaction, so
//! concurrent requests — from any number of replicas sharing the database —
//! can never together reserve past a limit. Settling replaces the
//! reservation by the actual cost; the usage writer settles in batches, in
//! the same transaction as the calls' usage rows.

use crate::{on_pool, Result, Settlement, Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Acquire;
use switchyard_core::budget::{Budget, BudgetPeriod, BudgetScope};

#[derive(sqlx::FromRow)]
struct BudgetRow {
    id: String,
    scope: String,
    subject: String,
    period: String,
    limit_nano_usd: i64,
    created_at: DateTime<Utc>,
}

impl TryFrom<BudgetRow> for Budget {
    type Error = StoreError;
    fn try_from(r: BudgetRow) -> Result<Self> {
        Ok(Budget {
            scope: r.scope.parse().map_err(StoreError::Corrupt)?,
            period: r.period.parse().map_err(StoreError::Corrupt)?,
            id: r.id,
            subject: r.subject,
            limit_nano_usd: r.limit_nano_usd,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct StateRow {
    #[sqlx(flatten)]
    budget: BudgetRow,
    spent_nano_usd: i64,
    reserved_nano_usd: i64,
}

/// A budget to create or replace.
#[derive(Debug, Clone, Copy)]
pub struct NewBudget<'a> {
    /// The id it gets if it is new (an existing budget keeps its own).
    pub id: &'a str,
    pub scope: BudgetScope,
    /// A key id or a project name.
    pub subject: &'a str,
    pub period: BudgetPeriod,
    pub limit_nano_usd: i64,
    pub at: DateTime<Utc>,
}

/// One budget's state in its current period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BudgetState {
    pub budget: Budget,
    pub period_key: String,
    pub spent_nano_usd: i64,
    pub reserved_nano_usd: i64,
}

impl BudgetState {
    pub fn remaining_nano_usd(&self) -> i64 {
        self.budget.limit_nano_usd - self.spent_nano_usd - self.reserved_nano_usd
    }
}

/// Reserves `amount` against one budget's period row on `conn`: the
/// budget's remaining amount afterwards, or why it was refused. A macro
/// because the statement runs on either engine's connection type.
macro_rules! reserve_one {
    ($conn:expr, $budget:expr, $key:expr, $amount:expr) => {{
        const RESERVE: &str =
            "INSERT INTO budget_spend (budget_id, period_key, reserved_nano_usd) \
            SELECT $1, $2, $3 WHERE $3 <= $4 \
            ON CONFLICT (budget_id, period_key) DO UPDATE \
            SET reserved_nano_usd = budget_spend.reserved_nano_usd + excluded.reserved_nano_usd \
            WHERE budget_spend.spent_nano_usd + budget_spend.reserved_nano_usd \
            + excluded.reserved_nano_usd <= $4 \
            RETURNING spent_nano_usd, reserved_nano_usd";
        const STATE: &str = "SELECT spent_nano_usd, reserved_nano_usd FROM budget_spend \
            WHERE budget_id = $1 AND period_key = $2";
        let (b, key, amount): (&Budget, &String, i64) = ($budget, $key, $amount);
        let conn = $conn;
        let taken: Option<(i64, i64)> = sqlx::query_as(RESERVE)
            .bind(&b.id)
            .bind(key)
            .bind(amount)
            .bind(b.limit_nano_usd)
            .fetch_optional(&mut *conn)
            .await?;
        match taken {
            Some((spent, reserved)) => Ok(b.limit_nano_usd - spent - reserved),
            None => {
                let (spent, reserved): (i64, i64) = sqlx::query_as(STATE)
                    .bind(&b.id)
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await?
                    .unwrap_or((0, 0));
                Err(Exceeded {
                    budget: b.clone(),
                    remaining_nano_usd: b.limit_nano_usd - spent - reserved,
                })
            }
        }
    }};
}

/// A held reservation: which budget periods carry it, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub items: Vec<(String, String)>,
    pub amount_nano_usd: i64,
    /// The smallest remaining amount across the budgets after reserving.
    pub remaining_nano_usd: i64,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub budget: Budget,
    pub remaining_nano_usd: i64,
}

macro_rules! select_budgets {
    ($rest:literal) => {
        concat!(
            "SELECT id, scope, subject, period, limit_nano_usd, created_at FROM budgets ",
            $rest
        )
    };
}

impl Store {
    /// Creates or replaces the budget for (scope, subject, period).
    pub async fn set_budget(&self, b: &NewBudget<'_>) -> Result<Budget> {
        const SQL: &str = "INSERT INTO budgets (id, scope, subject, period, limit_nano_usd, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6) \
            ON CONFLICT (scope, subject, period) DO UPDATE SET limit_nano_usd = excluded.limit_nano_usd";
        const GET: &str = select_budgets!("WHERE scope = $1 AND subject = $2 AND period = $3");
        let row: BudgetRow = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(SQL)
                .bind(b.id)
                .bind(b.scope.as_str())
                .bind(b.subject)
                .bind(b.period.as_str())
                .bind(b.limit_nano_usd)
                .bind(b.at)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query_as(GET)
                .bind(b.scope.as_str())
                .bind(b.subject)
                .bind(b.period.as_str())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        });
        row.try_into()
    }

    /// One budget by id.
    pub async fn get_budget(&self, id: &str) -> Result<Option<Budget>> {
        const SQL: &str = select_budgets!("WHERE id = $1");
        let row: Option<BudgetRow> =
            crate::read_pool!(self, p => sqlx::query_as(SQL).bind(id).fetch_optional(p).await)?;
        row.map(Budget::try_from).transpose()
    }

    /// Every budget with its spend in the period containing `at`, in one
    /// query; `applying_to` narrows it to the budgets of one (key, project).
    pub async fn budget_states(
        &self,
        applying_to: Option<(&str, &str)>,
        at: DateTime<Utc>,
    ) -> Result<Vec<BudgetState>> {
        const SQL: &str = "SELECT b.id, b.scope, b.subject, b.period, b.limit_nano_usd, b.created_at, \
            COALESCE(s.spent_nano_usd, 0) AS spent_nano_usd, \
            COALESCE(s.reserved_nano_usd, 0) AS reserved_nano_usd \
            FROM budgets b LEFT JOIN budget_spend s ON s.budget_id = b.id AND s.period_key = \
            CASE b.period WHEN 'daily' THEN $1 WHEN 'monthly' THEN $2 ELSE $3 END \
            WHERE $4 OR (b.scope = 'key' AND b.subject = $5) OR (b.scope = 'project' AND b.subject = $6) \
            ORDER BY b.scope, b.subject, b.period";
        let keys = [
            BudgetPeriod::Daily.key_at(at),
            BudgetPeriod::Monthly.key_at(at),
            BudgetPeriod::Total.key_at(at),
        ];
        let (all, key_id, project) = match applying_to {
            None => (true, "", ""),
            Some((k, p)) => (false, k, p),
        };
        let rows: Vec<StateRow> = crate::read_pool!(self, p => sqlx::query_as(SQL)
            .bind(&keys[0])
            .bind(&keys[1])
            .bind(&keys[2])
            .bind(all)
            .bind(key_id)
            .bind(project)
            .fetch_all(p)
            .await)?;
        rows.into_iter()
            .map(|r| {
                let budget = Budget::try_from(r.budget)?;
                Ok(BudgetState {
                    period_key: budget.period.key_at(at),
                    budget,
                    spent_nano_usd: r.spent_nano_usd,
                    reserved_nano_usd: r.reserved_nano_usd,
                })
            })
            .collect()
    }

    pub async fn list_budgets(&self) -> Result<Vec<Budget>> {
        const SQL: &str = select_budgets!("ORDER BY scope, subject, period");
        let rows: Vec<BudgetRow> =
            crate::read_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await)?;
        rows.into_iter().map(Budget::try_from).collect()
    }

    /// Deletes a budget (and its spend history); false when there was none.
    pub async fn delete_budget(&self, id: &str) -> Result<bool> {
        const SQL: &str = "DELETE FROM budgets WHERE id = $1";
        let n = on_pool!(self, p => sqlx::query(SQL).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// The budgets that apply to a call by this key of this project.
    pub async fn budgets_for(&self, key_id: &str, project: &str) -> Result<Vec<Budget>> {
        const SQL: &str = select_budgets!(
            "WHERE (scope = 'key' AND subject = $1) OR (scope = 'project' AND subject = $2) ORDER BY id"
        );
        let rows: Vec<BudgetRow> = crate::read_pool!(self, p => sqlx::query_as(SQL).bind(key_id).bind(project).fetch_all(p).await)?;
        rows.into_iter().map(Budget::try_from).collect()
    }

    /// Reserves `amount_nano_usd` against every budget, or against none.
    ///
    /// Each budget takes one statement: an upsert of its period's row whose
    /// update applies only while `spent + reserved + amount <= limit`, and
    /// which returns the row as it now stands (nothing when refused). One
    /// budget needs no transaction of its own; several run in one, rolled
    /// back when any refuses.
    pub async fn reserve_budget(
        &self,
        budgets: &[Budget],
        amount_nano_usd: i64,
        at: DateTime<Utc>,
    ) -> Result<std::result::Result<Reservation, Exceeded>> {
        let span = crate::trace::db_span!(self);
        tracing::Instrument::instrument(
            self.reserve_budget_untraced(budgets, amount_nano_usd, at),
            span,
        )
        .await
    }

    async fn reserve_budget_untraced(
        &self,
        budgets: &[Budget],
        amount_nano_usd: i64,
        at: DateTime<Utc>,
    ) -> Result<std::result::Result<Reservation, Exceeded>> {
        let mut items = Vec::with_capacity(budgets.len());
        let mut remaining = i64::MAX;
        // The same steps on a pool or on SQLite's writer connection.
        macro_rules! reserve_all {
            ($p:expr) => {{
                let p = $p;
                if let [b] = budgets {
                    let key = b.period.key_at(at);
                    let taken = reserve_one!(&mut *p.acquire().await?, b, &key, amount_nano_usd);
                    taken.map(|left| {
                        remaining = left;
                        items.push((b.id.clone(), key));
                    })
                } else {
                    let mut tx = p.begin().await?;
                    let mut refused = None;
                    for b in budgets {
                        let key = b.period.key_at(at);
                        match reserve_one!(&mut *tx, b, &key, amount_nano_usd) {
                            Ok(left) => {
                                remaining = remaining.min(left);
                                items.push((b.id.clone(), key));
                            }
                            Err(e) => {
                                refused = Some(e);
                                break;
                            }
                        }
                    }
                    match refused {
                        Some(e) => {
                            tx.rollback().await?;
                            Err(e)
                        }
                        None => {
                            tx.commit().await?;
                            Ok(())
                        }
                    }
                }
            }};
        }
        let outcome = match self {
            Store::Sqlite(sqlite) => {
                let mut turn = sqlite.writer().await?;
                let done: Result<_> = async { Ok(reserve_all!(turn.conn()?)) }.await;
                if done.is_err() {
                    turn.discard();
                }
                done?
            }
            _ => on_pool!(self, p => reserve_all!(p)),
        };
        Ok(outcome.map(|()| Reservation {
            items,
            amount_nano_usd,
            remaining_nano_usd: remaining,
        }))
    }

    /// Replaces a reservation by the actual cost.
    pub async fn settle_budget(
        &self,
        reservation: &Reservation,
        actual_nano_usd: i64,
    ) -> Result<()> {
        let settlement = Settlement {
            reservation: reservation.clone(),
            actual_nano_usd,
        };
        self.record_usage(&[], std::slice::from_ref(&settlement))
            .await
    }

    /// A budget's spend in the period containing `at`.
    pub async fn budget_state(&self, budget: &Budget, at: DateTime<Utc>) -> Result<BudgetState> {
        const SQL: &str = "SELECT spent_nano_usd, reserved_nano_usd FROM budget_spend \
            WHERE budget_id = $1 AND period_key = $2";
        let key = budget.period.key_at(at);
        let row: Option<(i64, i64)> = crate::read_pool!(self, p => sqlx::query_as(SQL).bind(&budget.id).bind(&key).fetch_optional(p).await)?;
        let (spent, reserved) = row.unwrap_or((0, 0));
        Ok(BudgetState {
            budget: budget.clone(),
            period_key: key,
            spent_nano_usd: spent,
            reserved_nano_usd: reserved,
        })
    }
}
