//! The in-memory side of a lease: what admissions may use while a change
//! is in doubt, and what ending, landing and dropping calls give back.

use super::*;

fn lease_with(amount: i64) -> Arc<Lease> {
    let lease = Arc::new(Lease::new("bud", "2026-11"));
    {
        let mut st = lock(&lease.state);
        st.amount = amount;
        st.usable_until = Some(Instant::now() + Duration::from_secs(60));
    }
    lease
}

fn admit(lease: &Arc<Lease>, estimate: i64) -> Option<Charge> {
    match lease.try_admit(estimate, Instant::now()) {
        Admit::Yes(_) => Some(Charge {
            lease: lease.clone(),
            estimate,
            ended: false,
        }),
        Admit::Short | Admit::Retired => None,
    }
}

#[test]
fn admissions_fit_in_the_amount_and_a_dropped_charge_gives_its_estimate_back() {
    let lease = lease_with(100);
    let a = admit(&lease, 60).unwrap();
    assert!(admit(&lease, 50).is_none());
    let b = admit(&lease, 40).unwrap();
    assert_eq!(lease.held(), (100, 100));
    drop(a);
    assert_eq!(lease.held(), (100, 40));
    drop(b);
    assert_eq!(lease.held(), (100, 0));
}

#[test]
fn an_ended_call_holds_its_cost_until_it_lands_then_counts_as_landed() {
    let lease = lease_with(100);
    let charge = admit(&lease, 60).unwrap();
    let settlement = reservation(vec![(charge, 0)]).unwrap().end(25);
    assert_eq!(settlement.store.actual_nano_usd, 25);
    assert_eq!(lease.held(), (100, 25));
    // 100 − 25 owed: 75 left.
    assert!(admit(&lease, 76).is_none());
    settlement.landing.landed();
    // Landed costs stay counted against the amount until it is set again.
    assert_eq!(lease.held(), (100, 0));
    assert_eq!(lock(&lease.state).landed, 25);
    assert!(admit(&lease, 76).is_none());
    assert!(admit(&lease, 75).is_some());
}

#[test]
fn a_cost_that_never_lands_is_no_longer_held() {
    let lease = lease_with(100);
    let charge = admit(&lease, 60).unwrap();
    let settlement = reservation(vec![(charge, 0)]).unwrap().end(25);
    drop(settlement);
    assert_eq!(lease.held(), (100, 0));
    assert_eq!(lock(&lease.state).landed, 0);
}

#[test]
fn while_a_change_is_in_doubt_admissions_fit_under_both_amounts() {
    let lease = lease_with(100);
    let _held = admit(&lease, 30).unwrap();
    // A change to 40 (the 30 owed plus 10 idle) is on its way.
    lock(&lease.state).pending = Some((40, 0));
    assert!(admit(&lease, 11).is_none());
    let _more = admit(&lease, 10).unwrap();
    // Its outcome is unknown: the smaller amount stays.
    lock(&lease.state).settle_doubt();
    assert_eq!(lease.held(), (40, 40));
    // A grow in doubt keeps the old amount instead.
    lock(&lease.state).pending = Some((500, 0));
    lock(&lease.state).settle_doubt();
    assert_eq!(lease.held(), (40, 40));
}

#[test]
fn a_lease_past_its_usable_time_admits_nothing() {
    let lease = lease_with(100);
    lock(&lease.state).usable_until = Some(Instant::now());
    assert!(admit(&lease, 1).is_none());
}
