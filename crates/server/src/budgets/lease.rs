//! Budget headroom held by this replica: one [`Lease`] per budget period,
//! charged and settled in memory, kept in step with its database row
//! (`store/src/budget_leases.rs`) by [`Leases::sync`].
//!
//! A lease's row holds an amount; the replica admits a call while what its
//! calls still need plus the call's estimate fits in that amount:
//!
//! * `in_flight`: estimates of calls admitted and not ended;
//! * `unsettled`: actual costs of ended calls whose usage batch has not
//!   landed (they are not in `spent` yet);
//! * `landed`: costs that landed in `spent` since the amount was last set.
//!   They are counted twice in the database (in `spent` and in the amount)
//!   until the next sync sets the amount again, which errs on the side of
//!   the limit.
//!
//! A sync sets the row's amount absolutely to what the calls still need
//! (`in_flight + unsettled`) plus the call waiting (if any) plus idle
//! headroom, so nothing is ever added twice and nothing can leak: a lost
//! acknowledgement leaves at most the larger of two amounts in the row until
//! the next sync, and a dead replica's row stops counting when it expires.
//! While a sync's outcome is unknown, admissions fit under both the old
//! and the new amount.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::config::BudgetLeaseConfig;
use switchyard_core::sync::lock;
use switchyard_store::{LeaseKey, LeaseRoom, Store, StoreError};

/// One budget period's lease on this replica.
pub(crate) struct Lease {
    pub(crate) budget_id: String,
    pub(crate) period_key: String,
    state: Mutex<State>,
    /// One sync at a time per lease.
    syncing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    /// The amount the row holds, as of the last change known to have landed.
    amount: i64,
    in_flight: i64,
    unsettled: i64,
    landed: i64,
    /// A change sent whose outcome is not known yet: (amount, `landed` when
    /// it was decided).
    pending: Option<(i64, i64)>,
    /// Until when admissions may use the lease, by this replica's clock: a
    /// third of the lease's time before the row expires.
    usable_until: Option<Instant>,
    /// Room outside this lease at the last sync (limit − spent − other
    /// leases − this amount), for the remaining amount callers are told.
    outside: i64,
    /// Calls admitted since the last sync, and the largest estimate among
    /// them (what idle headroom is sized against).
    admitted: u64,
    largest_estimate: i64,
    last_sync: Option<Instant>,
    /// The latest admission: a lease with none for a third of its time is
    /// quiet, and gives its idle headroom back.
    last_admitted: Option<Instant>,
    /// Taken out of the map: admissions go to a fresh lease instead.
    retired: bool,
}

impl State {
    fn new() -> Self {
        Self {
            amount: 0,
            in_flight: 0,
            unsettled: 0,
            landed: 0,
            pending: None,
            usable_until: None,
            outside: 0,
            admitted: 0,
            largest_estimate: 0,
            last_sync: None,
            last_admitted: None,
            retired: false,
        }
    }

    fn needs(&self) -> i64 {
        self.in_flight.saturating_add(self.unsettled)
    }

    /// What is left to admit against, under the amount and under a change
    /// in doubt alike.
    fn available(&self, now: Instant) -> i64 {
        if self.usable_until.is_none_or(|u| now >= u) {
            return 0;
        }
        let under = |amount: i64, landed: i64| amount - self.needs() - landed;
        let mut left = under(self.amount, self.landed);
        if let Some((amount, landed_then)) = self.pending {
            left = left.min(under(amount, self.landed - landed_then));
        }
        left
    }

    /// After a sync whose outcome is unknown: keep whichever amount admits
    /// less (the other one, if it is the row's, is only more conservative;
    /// the next sync sets the row again).
    fn settle_doubt(&mut self) {
        if let Some((amount, landed_then)) = self.pending.take() {
            if amount - (self.landed - landed_then) < self.amount - self.landed {
                self.amount = amount;
                self.landed -= landed_then;
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.amount == 0
            && self.needs() == 0
            && self.landed == 0
            && self.pending.is_none()
            && self.admitted == 0
    }
}

/// What one admission attempt found.
enum Admit {
    /// Admitted; the remaining amount the caller is told.
    Yes(i64),
    /// Not enough headroom here: sync first.
    Short,
    /// The lease was retired: use the map's current one.
    Retired,
}

impl Lease {
    fn new(budget_id: &str, period_key: &str) -> Self {
        Self {
            budget_id: budget_id.to_owned(),
            period_key: period_key.to_owned(),
            state: Mutex::new(State::new()),
            syncing: tokio::sync::Mutex::new(()),
        }
    }

    fn try_admit(&self, estimate: i64, now: Instant) -> Admit {
        let mut st = lock(&self.state);
        if st.retired {
            return Admit::Retired;
        }
        let available = st.available(now);
        if available < estimate {
            return Admit::Short;
        }
        st.in_flight += estimate;
        st.admitted += 1;
        st.largest_estimate = st.largest_estimate.max(estimate);
        st.last_admitted = Some(now);
        Admit::Yes(st.outside + available - estimate)
    }

    /// A call ended: its estimate gives way to its actual cost, which is
    /// owed until its usage batch lands.
    fn end(&self, estimate: i64, actual: Option<i64>) {
        let mut st = lock(&self.state);
        st.in_flight -= estimate;
        if let Some(actual) = actual {
            st.unsettled += actual;
        }
    }

    /// An ended call's cost landed in `spent` (or, with `landed` false, was
    /// never written and never will be).
    fn land(&self, actual: i64, landed: bool) {
        let mut st = lock(&self.state);
        st.unsettled -= actual;
        if landed {
            st.landed += actual;
        }
    }

    /// The headroom this replica holds and what its calls still need, for
    /// tests and diagnostics: (amount, needs).
    pub(crate) fn held(&self) -> (i64, i64) {
        let st = lock(&self.state);
        (st.amount, st.needs())
    }
}

/// One budget a call was admitted against, until the call ends. Dropped
/// without [`Reservation::end`], its estimate is released.
pub(crate) struct Charge {
    lease: Arc<Lease>,
    estimate: i64,
    ended: bool,
}

impl Drop for Charge {
    fn drop(&mut self) {
        if !self.ended {
            self.lease.end(self.estimate, None);
        }
    }
}

/// A call's admission against every budget that applies to it.
pub struct Reservation {
    charges: Vec<Charge>,
    /// The smallest amount left in the call's budgets after admitting it
    /// (as of each lease's last sync).
    pub remaining_nano_usd: i64,
}

impl Reservation {
    /// Ends the call at its actual cost: the settlement the usage writer
    /// writes with the call's usage row.
    pub fn end(mut self, actual_nano_usd: i64) -> Settlement {
        let mut budgets = Vec::with_capacity(self.charges.len());
        let mut leases = Vec::with_capacity(self.charges.len());
        for c in &mut self.charges {
            c.ended = true;
            c.lease.end(c.estimate, Some(actual_nano_usd));
            budgets.push((c.lease.budget_id.clone(), c.lease.period_key.clone()));
            leases.push(c.lease.clone());
        }
        Settlement {
            store: switchyard_store::Settlement {
                budgets,
                actual_nano_usd,
            },
            landing: Landing {
                leases,
                actual: actual_nano_usd,
                done: false,
            },
        }
    }
}

/// A call's cost on its way to the database.
pub struct Settlement {
    pub store: switchyard_store::Settlement,
    pub landing: Landing,
}

/// Tells the call's leases when its cost has landed in `spent`. Dropped
/// without [`Landing::landed`] (the record was lost), the cost is no longer
/// held for.
pub struct Landing {
    leases: Vec<Arc<Lease>>,
    actual: i64,
    done: bool,
}

impl Landing {
    pub fn landed(mut self) {
        self.done = true;
        for l in &self.leases {
            l.land(self.actual, true);
        }
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if !self.done {
            for l in &self.leases {
                l.land(self.actual, false);
            }
        }
    }
}

/// Why a lease could not cover a call.
pub(crate) enum Shortfall {
    /// The budget period has no room for it; what is left.
    Exceeded(i64),
    Store(StoreError),
}

/// The leases of this replica.
pub(crate) struct Leases {
    store: Store,
    holder: String,
    config: BudgetLeaseConfig,
    /// Leases by budget id, then by period key: looked up by `&str`
    /// without building an owned key per call.
    map: Mutex<HashMap<String, HashMap<String, Arc<Lease>>>>,
}

/// What a sync was for.
#[derive(Clone, Copy)]
enum Purpose {
    /// A call needs this much now.
    Call(i64),
    /// Renewal, top-up and giving back idle headroom.
    Upkeep,
}

impl Leases {
    pub(crate) fn new(store: Store, holder: String, config: BudgetLeaseConfig) -> Self {
        Self {
            store,
            holder,
            config,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn holder(&self) -> &str {
        &self.holder
    }

    /// How often the keeper looks at the leases.
    pub(crate) fn tick(&self) -> Duration {
        (self.config.ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    fn lease(&self, budget_id: &str, period_key: &str) -> Arc<Lease> {
        let mut map = lock(&self.map);
        if let Some(lease) = map.get(budget_id).and_then(|p| p.get(period_key)) {
            return lease.clone();
        }
        map.entry(budget_id.to_owned())
            .or_default()
            .entry(period_key.to_owned())
            .or_insert_with(|| Arc::new(Lease::new(budget_id, period_key)))
            .clone()
    }

    /// Admits `estimate` against the budget period's lease, syncing the
    /// lease when it cannot cover it: `Ok(None)` when the budget is gone.
    pub(crate) async fn admit(
        &self,
        budget_id: &str,
        period_key: &str,
        estimate: i64,
    ) -> Result<Option<(Charge, i64)>, Shortfall> {
        let estimate = estimate.max(0);
        loop {
            let lease = self.lease(budget_id, period_key);
            let charge = |lease: Arc<Lease>| Charge {
                lease,
                estimate,
                ended: false,
            };
            match lease.try_admit(estimate, Instant::now()) {
                Admit::Yes(left) => return Ok(Some((charge(lease.clone()), left))),
                Admit::Retired => continue,
                Admit::Short => {}
            }
            let _turn = lease.syncing.lock().await;
            // Another call's sync may have made room meanwhile.
            match lease.try_admit(estimate, Instant::now()) {
                Admit::Yes(left) => return Ok(Some((charge(lease.clone()), left))),
                Admit::Retired => continue,
                Admit::Short => {}
            }
            // On the heap: a sync is a database transaction, and its future
            // would otherwise enlarge every call's, covered by the lease or not.
            return match Box::pin(self.sync(&lease, Purpose::Call(estimate))).await {
                Ok(Synced::Admitted(left)) => Ok(Some((charge(lease.clone()), left))),
                Ok(Synced::Refused(left)) => Err(Shortfall::Exceeded(left)),
                Ok(Synced::Gone) => Ok(None),
                Ok(Synced::Kept) => Err(Shortfall::Exceeded(0)),
                Err(e) => Err(Shortfall::Store(e)),
            };
        }
    }

    /// Sets the lease's row to what its calls need plus `purpose`'s call
    /// plus idle headroom. The caller holds the lease's sync turn.
    async fn sync(&self, lease: &Arc<Lease>, purpose: Purpose) -> Result<Synced, StoreError> {
        let started = Instant::now();
        let now = switchyard_core::now();
        let ttl = self.config.ttl;
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30));
        let max_idle = self.config.max_idle_nano_usd;
        let mut admitted: Option<bool> = None;
        let mut told = 0;
        let mut decide = |room: &LeaseRoom| -> i64 {
            let mut st = lock(&lease.state);
            let needs = st.needs();
            let free = room.free_nano_usd();
            let (base, hint, wanted) = match purpose {
                Purpose::Call(estimate) => {
                    let fits = needs.saturating_add(estimate) <= free;
                    admitted = Some(fits);
                    if fits {
                        st.in_flight += estimate;
                        st.admitted += 1;
                        st.last_admitted = Some(Instant::now());
                    }
                    let hint = st.largest_estimate.max(estimate);
                    (st.needs(), hint, fits)
                }
                Purpose::Upkeep => {
                    let quiet = st
                        .last_admitted
                        .is_none_or(|t| started.duration_since(t) >= ttl / 3);
                    (needs, st.largest_estimate, !quiet)
                }
            };
            // Idle headroom, only while calls come: a quarter of what is
            // free beyond the calls' needs, capped, and none once that is
            // less than one call's estimate — near the limit every call
            // syncs, as a per-call reservation would.
            let spare = free.saturating_sub(base).max(0);
            let idle = if wanted { (spare / 4).min(max_idle) } else { 0 };
            let idle = if idle < hint.max(1) { 0 } else { idle };
            let amount = base + idle;
            st.pending = Some((amount, st.landed));
            st.outside = free - amount;
            told = st.outside + idle;
            amount
        };
        let key = LeaseKey {
            budget_id: &lease.budget_id,
            period_key: &lease.period_key,
            holder: &self.holder,
        };
        let result = self
            .store
            .set_budget_lease(key, now, until, &mut decide)
            .await;
        let mut st = lock(&lease.state);
        match result {
            Ok(Some(_)) => {
                if let Some((amount, landed_then)) = st.pending.take() {
                    st.amount = amount;
                    st.landed -= landed_then;
                }
                st.usable_until = Some(started + ttl * 2 / 3);
                st.last_sync = Some(started);
                st.admitted = 0;
                Ok(match admitted {
                    Some(true) => Synced::Admitted(told),
                    Some(false) => Synced::Refused(told),
                    None => Synced::Kept,
                })
            }
            Ok(None) => {
                // The budget was deleted, and its leases with it.
                st.pending = None;
                st.amount = 0;
                st.landed = 0;
                st.usable_until = None;
                Ok(Synced::Gone)
            }
            Err(e) => {
                st.settle_doubt();
                if let (Some(true), Purpose::Call(estimate)) = (admitted, purpose) {
                    st.in_flight -= estimate;
                    st.admitted = st.admitted.saturating_sub(1);
                }
                Err(e)
            }
        }
    }

    /// One round of upkeep: renews leases before they expire, tops up
    /// leases that calls are draining, gives back idle headroom and
    /// reconciles landed costs (at most once a tick per lease), and forgets
    /// leases that hold nothing.
    pub(crate) async fn upkeep(&self) {
        let now = Instant::now();
        let renew_after = self.config.ttl / 3;
        let tick = self.tick();
        let quiet_after = self.config.ttl / 3;
        let leases: Vec<Arc<Lease>> = {
            let mut map = lock(&self.map);
            map.retain(|_, periods| {
                periods.retain(|_, l| {
                    let mut st = lock(&l.state);
                    let forget = st.is_empty()
                        && st.last_sync.is_none_or(|t| now.duration_since(t) >= tick)
                        && st
                            .last_admitted
                            .is_none_or(|t| now.duration_since(t) >= quiet_after)
                        && Arc::strong_count(l) == 1;
                    if forget {
                        st.retired = true;
                    }
                    !forget
                });
                !periods.is_empty()
            });
            map.values().flat_map(HashMap::values).cloned().collect()
        };
        for lease in leases {
            let due = {
                let st = lock(&lease.state);
                let since = st.last_sync.map(|t| now.duration_since(t));
                let held = st.amount > 0 || st.needs() > 0 || st.pending.is_some();
                let renew = since.is_none_or(|s| s >= renew_after);
                let settled_once = since.is_none_or(|s| s >= tick);
                let quiet = st
                    .last_admitted
                    .is_none_or(|t| now.duration_since(t) >= quiet_after);
                let idle_left = quiet && st.amount > st.needs();
                let running_low =
                    st.admitted > 0 && st.available(now) < st.largest_estimate.saturating_mul(4);
                held && (renew || (settled_once && (st.landed > 0 || idle_left || running_low)))
            };
            if !due {
                continue;
            }
            let Ok(_turn) = lease.syncing.try_lock() else {
                continue;
            };
            if let Err(e) = self.sync(&lease, Purpose::Upkeep).await {
                tracing::warn!(error = %e, budget_id = %lease.budget_id, "could not renew a budget lease; retrying");
            }
        }
    }

    /// Deletes this replica's lease rows (after its usage is written), so
    /// that their headroom is free at once rather than at expiry.
    pub(crate) async fn release(&self) -> Result<u64, StoreError> {
        let n = self.store.release_budget_leases(&self.holder).await?;
        for lease in lock(&self.map).values().flat_map(HashMap::values) {
            let mut st = lock(&lease.state);
            st.amount = 0;
            st.landed = 0;
            st.pending = None;
            st.usable_until = None;
        }
        Ok(n)
    }

    /// This replica's leases: (budget id, period key, amount, needs).
    pub(crate) fn snapshot(&self) -> Vec<(String, String, i64, i64)> {
        let map = lock(&self.map);
        let mut all: Vec<_> = map
            .values()
            .flat_map(HashMap::values)
            .map(|l| {
                let (amount, needs) = l.held();
                (l.budget_id.clone(), l.period_key.clone(), amount, needs)
            })
            .collect();
        all.sort();
        all
    }
}

enum Synced {
    Admitted(i64),
    Refused(i64),
    Kept,
    Gone,
}

pub(crate) fn reservation(charges: Vec<(Charge, i64)>) -> Option<Reservation> {
    if charges.is_empty() {
        return None;
    }
    let remaining = charges.iter().map(|(_, left)| *left).min().unwrap_or(0);
    Some(Reservation {
        charges: charges.into_iter().map(|(c, _)| c).collect(),
        remaining_nano_usd: remaining,
    })
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
