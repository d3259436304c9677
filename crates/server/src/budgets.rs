//! The budget service: the one path by which budgets are set, deleted,
//! read and reserved against, shared by the admin API, the CLI and the
//! gateway, so every change writes the same rows and the same audit record.
//!
//! Reservations are atomic in the shared database (see the store); the
//! usage writer settles them with the actual cost in the same transaction as
//! the call's usage row. The budgets that apply to a key are cached like
//! keys; a change on this replica applies at once, elsewhere within
//! `KEY_CACHE_TTL_SECONDS`.

use crate::audit::{self, Actor};
use crate::context::Caller;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::audit::AuditKind;
use switchyard_core::budget::{nano_from_usd, usd, Budget, BudgetPeriod, BudgetScope};
use switchyard_core::keys::new_id;
use switchyard_limits::TieredCache;
use switchyard_store::{AuditEvent, BudgetState, NewBudget, Reservation, Store, StoreError};

/// How long the remaining amount `auto` routing looks at may be stale.
const REMAINING_TTL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Budgets(Arc<Inner>);

struct Inner {
    store: Store,
    metrics: Metrics,
    /// Budgets applying to (key, project).
    applicable: TieredCache<Arc<Vec<Budget>>>,
    /// The smallest remaining amount of those budgets, for routing.
    remaining: TieredCache<Option<i64>>,
}

/// A budget to create or replace, as an operator gives it.
#[derive(Debug, Clone)]
pub struct BudgetRequest {
    pub scope: BudgetScope,
    /// A key id (scope `key`) or a project name (scope `project`).
    pub subject: String,
    pub period: BudgetPeriod,
    pub limit_usd: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// A field of the request is wrong; the first value names it.
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a reservation did not happen.
#[derive(Debug)]
pub enum Refusal {
    Exceeded(switchyard_store::Exceeded),
    Store(Arc<StoreError>),
}

fn cache_key(caller: &Caller) -> String {
    format!("{}\u{1f}{}", caller.key.id, caller.key.project)
}

impl Budgets {
    pub fn new(store: Store, metrics: Metrics, ttl: Duration) -> Self {
        Self(Arc::new(Inner {
            store,
            metrics,
            applicable: TieredCache::local(100_000, ttl),
            remaining: TieredCache::local(100_000, REMAINING_TTL),
        }))
    }

    /// The budgets that apply to the caller's calls (cached).
    pub async fn applicable(&self, caller: &Caller) -> Result<Arc<Vec<Budget>>, Arc<StoreError>> {
        let (budgets, served) = self
            .0
            .applicable
            .get_or_load(&cache_key(caller), async {
                self.0
                    .store
                    .budgets_for(&caller.key.id, &caller.key.project)
                    .await
                    .map(Arc::new)
            })
            .await?;
        self.0.metrics.count_cache("budgets", served);
        Ok(budgets)
    }

    /// Reserves `estimate_nano_usd` against every budget of the caller's key
    /// and project; `None` when no budget applies.
    pub async fn reserve(
        &self,
        caller: &Caller,
        estimate_nano_usd: i64,
    ) -> Result<Option<Reservation>, Refusal> {
        let budgets = self.applicable(caller).await.map_err(Refusal::Store)?;
        if budgets.is_empty() {
            return Ok(None);
        }
        match self
            .0
            .store
            .reserve_budget(&budgets, estimate_nano_usd, switchyard_core::now())
            .await
        {
            Ok(Ok(r)) => Ok(Some(r)),
            Ok(Err(exceeded)) => Err(Refusal::Exceeded(exceeded)),
            Err(e) => Err(Refusal::Store(Arc::new(e))),
        }
    }

    /// The smallest amount left in the caller's budgets (`None` when none
    /// applies), at most a second old: what `auto` routing weighs. One query
    /// for all of them, none when the caller has no budget.
    pub async fn remaining(&self, caller: &Caller) -> Result<Option<i64>, Arc<StoreError>> {
        if self.applicable(caller).await?.is_empty() {
            return Ok(None);
        }
        let (least, _) = self
            .0
            .remaining
            .get_or_load(&cache_key(caller), async {
                let states = self
                    .0
                    .store
                    .budget_states(
                        Some((&caller.key.id, &caller.key.project)),
                        switchyard_core::now(),
                    )
                    .await?;
                Ok::<_, StoreError>(states.iter().map(BudgetState::remaining_nano_usd).min())
            })
            .await?;
        Ok(least)
    }

    /// Every budget with its spend in the current period.
    pub async fn list(&self) -> Result<Vec<BudgetState>, StoreError> {
        self.0
            .store
            .budget_states(None, switchyard_core::now())
            .await
    }

    /// The budgets of a key and its project, with their spend.
    pub async fn states_for(
        &self,
        key_id: &str,
        project: &str,
    ) -> Result<Vec<BudgetState>, StoreError> {
        self.0
            .store
            .budget_states(Some((key_id, project)), switchyard_core::now())
            .await
    }

    /// Creates or replaces the budget for (scope, subject, period).
    pub async fn set(
        &self,
        req: &BudgetRequest,
        actor: &Actor,
    ) -> Result<BudgetState, BudgetError> {
        let subject = req.subject.trim();
        if subject.is_empty() {
            return Err(BudgetError::Invalid(
                "subject",
                "subject must not be empty".into(),
            ));
        }
        let limit = nano_from_usd(req.limit_usd).ok_or_else(|| {
            BudgetError::Invalid(
                "limit_usd",
                "limit_usd must be a non-negative amount up to 1e9".into(),
            )
        })?;
        if req.scope == BudgetScope::Key && self.0.store.get_key(subject).await?.is_none() {
            return Err(BudgetError::Invalid(
                "subject",
                format!("no key with id `{subject}`"),
            ));
        }
        let now = switchyard_core::now();
        let id = new_id("bud");
        let budget = self
            .0
            .store
            .set_budget(&NewBudget {
                id: &id,
                scope: req.scope,
                subject,
                period: req.period,
                limit_nano_usd: limit,
                at: now,
            })
            .await?;
        self.forget();
        self.audit(AuditKind::BudgetSet, &budget, actor).await;
        tracing::info!(budget_id = %budget.id, scope = budget.scope.as_str(), subject = %budget.subject, limit_usd = %usd(budget.limit_nano_usd), "budget set");
        Ok(self.0.store.budget_state(&budget, now).await?)
    }

    /// Deletes a budget and its spend history; `None` when there is none.
    pub async fn delete(&self, id: &str, actor: &Actor) -> Result<Option<Budget>, StoreError> {
        let Some(budget) = self.0.store.get_budget(id).await? else {
            return Ok(None);
        };
        if !self.0.store.delete_budget(id).await? {
            return Ok(None);
        }
        self.forget();
        self.audit(AuditKind::BudgetDeleted, &budget, actor).await;
        tracing::info!(budget_id = %budget.id, "budget deleted");
        Ok(Some(budget))
    }

    fn forget(&self) {
        self.0.applicable.invalidate_local();
        self.0.remaining.invalidate_local();
    }

    async fn audit(&self, kind: AuditKind, b: &Budget, actor: &Actor) {
        let entry = actor.stamp(AuditEvent {
            project: (b.scope == BudgetScope::Project).then(|| b.subject.clone()),
            target: Some(b.id.clone()),
            details: serde_json::json!({
                "via": actor.via,
                "scope": b.scope, "subject": b.subject, "period": b.period,
                "limit_usd": usd(b.limit_nano_usd),
            }),
            ..AuditEvent::new(kind)
        });
        audit::record(&self.0.store, &entry, switchyard_core::now()).await;
    }
}
