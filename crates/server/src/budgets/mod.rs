//! The budget service: the one path by which budgets are set, deleted,
//! read and reserved against, shared by the admin API, the CLI and the
//! gateway, so every change writes the same rows and the same audit record.
//!
//! Calls are admitted in memory against headroom this replica leases from
//! the shared database in chunks (`lease.rs`; the limit across replicas is
//! kept by the database when a lease grows); the usage writer adds the
//! actual cost to the spend in the same transaction as the call's usage
//! row. The budgets that apply to a key are cached like keys; a change on
//! this replica applies at once, elsewhere within `KEY_CACHE_TTL_SECONDS`.

mod lease;

pub use lease::{Landing, Reservation, Settlement};

use crate::audit::{self, Actor};
use crate::context::Caller;
use crate::metrics::Metrics;
use lease::{Leases, Shortfall};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::audit::AuditKind;
use switchyard_core::budget::{nano_from_usd, usd, Budget, BudgetPeriod, BudgetScope};
use switchyard_core::config::BudgetLeaseConfig;
use switchyard_core::keys::new_id;
use switchyard_limits::TieredCache;
use switchyard_store::{AuditEvent, BudgetState, NewBudget, Store, StoreError};
use tokio_util::sync::CancellationToken;

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
    leases: Leases,
    /// Stops the lease keeper.
    keeper: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.keeper.cancel();
    }
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
    Exceeded(Exceeded),
    Store(Arc<StoreError>),
}

/// A budget that could not cover a call's estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub budget: Budget,
    /// What is left of it for this replica's calls (never negative).
    pub remaining_nano_usd: i64,
}

/// One allocation of the exact length (`format!` goes through `fmt`).
fn cache_key(caller: &Caller) -> String {
    [
        caller.key.id.as_str(),
        "\u{1f}",
        caller.key.project.as_str(),
    ]
    .concat()
}

impl Budgets {
    /// The service, leasing headroom as `holder` (a replica id unique in
    /// the deployment). Inside a Tokio runtime it starts the lease keeper,
    /// which renews, tops up and gives back headroom until
    /// [`Budgets::release_leases`] or the last handle is dropped.
    pub fn new(
        store: Store,
        metrics: Metrics,
        ttl: Duration,
        lease: BudgetLeaseConfig,
        holder: String,
    ) -> Self {
        let budgets = Self(Arc::new(Inner {
            leases: Leases::new(store.clone(), holder, lease),
            store,
            metrics,
            applicable: TieredCache::local(100_000, ttl),
            remaining: TieredCache::local(100_000, REMAINING_TTL),
            keeper: CancellationToken::new(),
        }));
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&budgets.0);
            let stop = budgets.0.keeper.clone();
            let tick = budgets.0.leases.tick();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(tick);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        () = stop.cancelled() => return,
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    tokio::select! {
                        () = inner.leases.upkeep() => {}
                        () = stop.cancelled() => return,
                    }
                }
            });
        }
        budgets
    }

    /// The replica id this service leases headroom as.
    pub fn holder(&self) -> &str {
        self.0.leases.holder()
    }

    /// Stops the lease keeper and deletes this replica's leases, freeing
    /// their headroom at once: for shutdown, after the usage queue has been
    /// written (a lease not released expires by itself).
    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        self.0.keeper.cancel();
        self.0.leases.release().await
    }

    /// This replica's leases as it sees them: (budget id, period key,
    /// amount held, what its calls still need).
    pub fn leases_held(&self) -> Vec<(String, String, i64, i64)> {
        self.0.leases.snapshot()
    }

    /// The budgets that apply to the caller's calls (cached).
    pub async fn applicable(&self, caller: &Caller) -> Result<Arc<Vec<Budget>>, Arc<StoreError>> {
        let (budgets, served) = self
            .0
            .applicable
            .get_or_load(&cache_key(caller), || async {
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
    /// and project, or against none; `None` when no budget applies. Served
    /// from this replica's leases without a database round trip while they
    /// cover it; otherwise the lease grows first (or the call is refused).
    pub async fn reserve(
        &self,
        caller: &Caller,
        estimate_nano_usd: i64,
    ) -> Result<Option<Reservation>, Refusal> {
        let budgets = self.applicable(caller).await.map_err(Refusal::Store)?;
        if budgets.is_empty() {
            return Ok(None);
        }
        let now = switchyard_core::now();
        let mut charges = Vec::with_capacity(budgets.len());
        for b in budgets.iter() {
            let key = b.period.key_at(now);
            match self.0.leases.admit(&b.id, &key, estimate_nano_usd).await {
                Ok(Some(charge)) => charges.push(charge),
                // Deleted since it was cached: it no longer applies.
                Ok(None) => {}
                // Dropping the charges taken so far releases them.
                Err(Shortfall::Exceeded(left)) => {
                    return Err(Refusal::Exceeded(Exceeded {
                        budget: b.clone(),
                        remaining_nano_usd: left.max(0),
                    }))
                }
                Err(Shortfall::Store(e)) => return Err(Refusal::Store(Arc::new(e))),
            }
        }
        Ok(lease::reservation(charges))
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
            .get_or_load(&cache_key(caller), || async {
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
