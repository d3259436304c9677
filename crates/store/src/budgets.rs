//! The budget repository: budgets and their spend per period.
//!
//! Calls are admitted against headroom their replica leases
//! (`budget_leases.rs`); the usage writer adds each call's actual cost to
//! its periods' spend in the same transaction as the call's usage row.

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

#[derive(sqlx::FromRow)]
struct StateRow {
    #[sqlx(flatten)]
    budget: BudgetRow,
    spent_nano_usd: i64,
    leased_nano_usd: i64,
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
    /// Headroom replicas hold in live leases: the estimates of calls in
    /// flight, costs not yet written, and idle headroom.
    pub leased_nano_usd: i64,
}

impl BudgetState {
    pub fn remaining_nano_usd(&self) -> i64 {
        self.budget.limit_nano_usd - self.spent_nano_usd - self.leased_nano_usd
    }
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

    /// Every budget with its spend and live leases in the period containing
    /// `at`, in one query; `applying_to` narrows it to the budgets of one
    /// (key, project).
    pub async fn budget_states(
        &self,
        applying_to: Option<(&str, &str)>,
        at: DateTime<Utc>,
    ) -> Result<Vec<BudgetState>> {
        const SQL: &str = "SELECT b.id, b.scope, b.subject, b.period, b.limit_nano_usd, b.created_at, \
            COALESCE(s.spent_nano_usd, 0) AS spent_nano_usd, \
            CAST(COALESCE((SELECT SUM(l.amount_nano_usd) FROM budget_leases l \
            WHERE l.budget_id = b.id AND l.expires_at > $7 AND l.period_key = \
            CASE b.period WHEN 'daily' THEN $1 WHEN 'monthly' THEN $2 ELSE $3 END), 0) AS BIGINT) \
            AS leased_nano_usd \
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
            .bind(at)
            .fetch_all(p)
            .await)?;
        rows.into_iter()
            .map(|r| {
                let budget = Budget::try_from(r.budget)?;
                Ok(BudgetState {
                    period_key: budget.period.key_at(at),
                    budget,
                    spent_nano_usd: r.spent_nano_usd,
                    leased_nano_usd: r.leased_nano_usd,
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

    /// A budget's spend and live leases in the period containing `at`.
    pub async fn budget_state(&self, budget: &Budget, at: DateTime<Utc>) -> Result<BudgetState> {
        const SQL: &str = "SELECT \
            COALESCE((SELECT spent_nano_usd FROM budget_spend WHERE budget_id = $1 AND period_key = $2), 0), \
            CAST(COALESCE((SELECT SUM(amount_nano_usd) FROM budget_leases \
            WHERE budget_id = $1 AND period_key = $2 AND expires_at > $3), 0) AS BIGINT)";
        let key = budget.period.key_at(at);
        let (spent, leased): (i64, i64) = crate::read_pool!(self, p => sqlx::query_as(SQL).bind(&budget.id).bind(&key).bind(at).fetch_one(p).await)?;
        Ok(BudgetState {
            budget: budget.clone(),
            period_key: key,
            spent_nano_usd: spent,
            leased_nano_usd: leased,
        })
    }
}
