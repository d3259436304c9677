//! The budget repository: budgets, and atomic reserve/settle of spend.
//!
//! A reservation is one conditional `UPDATE … WHERE spent + reserved + amount
//! <= limit` per budget, all in one transaction, so concurrent requests —
//! from any number of replicas sharing the database — can never together
//! reserve past a limit. Settling replaces the reservation by the actual cost.

use crate::{on_pool, Result, Store, StoreError};
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
    pub async fn set_budget(
        &self,
        scope: BudgetScope,
        subject: &str,
        period: BudgetPeriod,
        limit_nano_usd: i64,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Budget> {
        const SQL: &str = "INSERT INTO budgets (id, scope, subject, period, limit_nano_usd, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6) \
            ON CONFLICT (scope, subject, period) DO UPDATE SET limit_nano_usd = excluded.limit_nano_usd";
        const GET: &str = select_budgets!("WHERE scope = $1 AND subject = $2 AND period = $3");
        let row: BudgetRow = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(SQL)
                .bind(id)
                .bind(scope.as_str())
                .bind(subject)
                .bind(period.as_str())
                .bind(limit_nano_usd)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query_as(GET)
                .bind(scope.as_str())
                .bind(subject)
                .bind(period.as_str())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        });
        row.try_into()
    }

    pub async fn list_budgets(&self) -> Result<Vec<Budget>> {
        const SQL: &str = select_budgets!("ORDER BY scope, subject, period");
        let rows: Vec<BudgetRow> = on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await)?;
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
        let rows: Vec<BudgetRow> =
            on_pool!(self, p => sqlx::query_as(SQL).bind(key_id).bind(project).fetch_all(p).await)?;
        rows.into_iter().map(Budget::try_from).collect()
    }

    /// Reserves `amount` against every budget in its period containing `at`,
    /// all or nothing.
    pub async fn reserve_budget(
        &self,
        budgets: &[Budget],
        amount_nano_usd: i64,
        at: DateTime<Utc>,
    ) -> Result<std::result::Result<Reservation, Exceeded>> {
        const ENSURE: &str = "INSERT INTO budget_spend (budget_id, period_key) VALUES ($1, $2) \
            ON CONFLICT (budget_id, period_key) DO NOTHING";
        const RESERVE: &str = "UPDATE budget_spend SET reserved_nano_usd = reserved_nano_usd + $3 \
            WHERE budget_id = $1 AND period_key = $2 \
            AND spent_nano_usd + reserved_nano_usd + $3 <= $4";
        const STATE: &str = "SELECT spent_nano_usd, reserved_nano_usd FROM budget_spend \
            WHERE budget_id = $1 AND period_key = $2";
        let mut items = Vec::with_capacity(budgets.len());
        let mut remaining = i64::MAX;
        let outcome = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let mut refused = None;
            for b in budgets {
                let key = b.period.key_at(at);
                sqlx::query(ENSURE).bind(&b.id).bind(&key).execute(&mut *tx).await?;
                let n = sqlx::query(RESERVE)
                    .bind(&b.id)
                    .bind(&key)
                    .bind(amount_nano_usd)
                    .bind(b.limit_nano_usd)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let (spent, reserved): (i64, i64) =
                    sqlx::query_as(STATE).bind(&b.id).bind(&key).fetch_one(&mut *tx).await?;
                let left = b.limit_nano_usd - spent - reserved;
                if n == 0 {
                    refused = Some(Exceeded {
                        budget: b.clone(),
                        remaining_nano_usd: left,
                    });
                    break;
                }
                remaining = remaining.min(left);
                items.push((b.id.clone(), key));
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
        });
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
        const SQL: &str = "UPDATE budget_spend SET \
            reserved_nano_usd = CASE WHEN reserved_nano_usd > $3 THEN reserved_nano_usd - $3 ELSE 0 END, \
            spent_nano_usd = spent_nano_usd + $4 \
            WHERE budget_id = $1 AND period_key = $2";
        if reservation.items.is_empty() {
            return Ok(());
        }
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for (id, key) in &reservation.items {
                sqlx::query(SQL)
                    .bind(id)
                    .bind(key)
                    .bind(reservation.amount_nano_usd)
                    .bind(actual_nano_usd)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A budget's spend in the period containing `at`.
    pub async fn budget_state(&self, budget: &Budget, at: DateTime<Utc>) -> Result<BudgetState> {
        const SQL: &str = "SELECT spent_nano_usd, reserved_nano_usd FROM budget_spend \
            WHERE budget_id = $1 AND period_key = $2";
        let key = budget.period.key_at(at);
        let row: Option<(i64, i64)> = on_pool!(self, p => sqlx::query_as(SQL).bind(&budget.id).bind(&key).fetch_optional(p).await)?;
        let (spent, reserved) = row.unwrap_or((0, 0));
        Ok(BudgetState {
            budget: budget.clone(),
            period_key: key,
            spent_nano_usd: spent,
            reserved_nano_usd: reserved,
        })
    }
}
