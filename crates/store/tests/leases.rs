//! Named leases and scheduled-job bookkeeping, each test run on SQLite and
//! on PostgreSQL, each on a fresh database of its own. Time is passed in by
//! hand, as the scheduler's clock would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use switchyard_core::config::DatabaseKind;
use switchyard_store::{JobRunStatus, Store};
use switchyard_testkit::TestDatabase;

async fn fresh(kind: DatabaseKind) -> (TestDatabase, Store) {
    let db = TestDatabase::of_kind(kind);
    let store = Store::connect_lazy(&db.config()).unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

switchyard_testkit::on_both_engines!(
    a_lease_has_one_holder_until_it_expires_or_is_released,
    a_holder_cannot_renew_a_lease_that_expired,
    concurrent_acquirers_have_exactly_one_winner,
    job_runs_start_only_for_the_holder_and_only_when_due,
    concurrent_job_starts_have_exactly_one_winner,
);

/// Whole seconds after a fixed start, at microsecond precision.
fn clock() -> impl Fn(i64) -> DateTime<Utc> {
    let t0 = switchyard_core::now();
    move |n| t0 + Duration::seconds(n)
}

async fn a_lease_has_one_holder_until_it_expires_or_is_released(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let at = clock();
    assert_eq!(store.get_lease("job.x").await.unwrap(), None);

    let a = store
        .acquire_lease("job.x", "a", at(0), at(30))
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(
        (a.holder.as_str(), a.acquired_at, a.expires_at),
        ("a", at(0), at(30))
    );
    assert!(a.is_valid_at(at(29)) && !a.is_valid_at(at(30)));

    // A second holder is refused while the lease is valid.
    assert_eq!(
        store
            .acquire_lease("job.x", "b", at(10), at(40))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get_lease("job.x").await.unwrap(), Some(a.clone()));

    // Renewing extends it and keeps the acquisition time; so does acquiring
    // again as the same holder.
    let renewed = store
        .renew_lease("job.x", "a", at(20), at(50))
        .await
        .unwrap()
        .expect("the holder renews");
    assert_eq!(
        (renewed.acquired_at, renewed.renewed_at, renewed.expires_at),
        (at(0), at(20), at(50))
    );
    let again = store
        .acquire_lease("job.x", "a", at(25), at(55))
        .await
        .unwrap()
        .expect("the holder acquires again");
    assert_eq!((again.acquired_at, again.expires_at), (at(0), at(55)));
    assert_eq!(
        store
            .acquire_lease("job.x", "b", at(54), at(84))
            .await
            .unwrap(),
        None,
        "still valid until the renewed expiry"
    );
    assert_eq!(
        store
            .renew_lease("job.x", "b", at(54), at(84))
            .await
            .unwrap(),
        None,
        "only the holder renews"
    );

    // Expired: another holder takes it over, and the old one has lost it.
    let b = store
        .acquire_lease("job.x", "b", at(55), at(85))
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert_eq!(
        (b.holder.as_str(), b.acquired_at, b.expires_at),
        ("b", at(55), at(85))
    );
    assert_eq!(
        store
            .renew_lease("job.x", "a", at(56), at(86))
            .await
            .unwrap(),
        None
    );
    assert!(!store.release_lease("job.x", "a").await.unwrap());
    assert_eq!(
        store.get_lease("job.x").await.unwrap().unwrap().holder,
        "b",
        "a lost holder's release changes nothing"
    );

    // Released: anyone takes it at once, long before it would have expired.
    assert!(store.release_lease("job.x", "b").await.unwrap());
    assert_eq!(store.get_lease("job.x").await.unwrap(), None);
    assert!(!store.release_lease("job.x", "b").await.unwrap());
    let c = store
        .acquire_lease("job.x", "c", at(57), at(87))
        .await
        .unwrap()
        .expect("a released lease is free");
    assert_eq!((c.holder.as_str(), c.acquired_at), ("c", at(57)));

    // Leases are independent by name.
    assert!(store
        .acquire_lease("job.y", "a", at(57), at(87))
        .await
        .unwrap()
        .is_some());
    let names: Vec<(String, String)> = store
        .list_leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.name, l.holder))
        .collect();
    assert_eq!(
        names,
        [("job.x".into(), "c".into()), ("job.y".into(), "a".into())]
    );
}

async fn a_holder_cannot_renew_a_lease_that_expired(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let at = clock();
    store
        .acquire_lease("job.x", "a", at(0), at(10))
        .await
        .unwrap()
        .unwrap();
    // Nobody took it over, but its guarantee lapsed: renewal is refused,
    // and the holder must acquire it anew (a new acquisition time).
    assert_eq!(
        store
            .renew_lease("job.x", "a", at(10), at(20))
            .await
            .unwrap(),
        None
    );
    let again = store
        .acquire_lease("job.x", "a", at(11), at(21))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.acquired_at, at(0), "the row was never another's");
    assert_eq!(again.expires_at, at(21));
}

async fn concurrent_acquirers_have_exactly_one_winner(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let at = clock();
    // Round 0 races for a new row; round 1 for an expired one.
    for (round, now) in [(0, at(0)), (1, at(100))] {
        let mut handles = Vec::new();
        for r in 0..8 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let holder = format!("replica-{round}-{r}");
                store
                    .acquire_lease("job.race", &holder, now, now + Duration::seconds(30))
                    .await
                    .unwrap()
                    .map(|l| l.holder)
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            winners.extend(h.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(
            store.get_lease("job.race").await.unwrap().unwrap().holder,
            winners[0]
        );
    }
}

async fn job_runs_start_only_for_the_holder_and_only_when_due(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let at = clock();
    let every = Duration::seconds(10);
    assert_eq!(store.get_job("job.x").await.unwrap(), None);
    assert!(
        !store
            .start_job_run("job.x", "a", every, at(0))
            .await
            .unwrap(),
        "no lease, no run"
    );
    store
        .acquire_lease("job.x", "a", at(0), at(30))
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .start_job_run("job.x", "a", every, at(0))
        .await
        .unwrap());
    assert!(
        !store
            .start_job_run("job.x", "a", every, at(5))
            .await
            .unwrap(),
        "not due yet"
    );
    let running = store.get_job("job.x").await.unwrap().unwrap();
    assert_eq!(
        (
            running.runs,
            running.last_status.as_str(),
            running.last_holder.as_str()
        ),
        (1, "running", "a")
    );
    assert_eq!(running.next_due_at(), at(10));
    assert!(store
        .finish_job_run("job.x", "a", at(0), JobRunStatus::Ok, None, at(1))
        .await
        .unwrap());
    assert!(
        !store
            .finish_job_run("job.x", "a", at(0), JobRunStatus::Ok, None, at(2))
            .await
            .unwrap(),
        "a run is recorded once"
    );
    let done = store.get_job("job.x").await.unwrap().unwrap();
    assert_eq!(done.last_status, "ok");
    assert_eq!(done.last_finished_at, Some(at(1)));
    assert_eq!(done.last_success_at, Some(at(1)));
    assert_eq!(done.failures, 0);

    // Due again: only the lease's holder may start it.
    assert!(!store
        .start_job_run("job.x", "b", every, at(10))
        .await
        .unwrap());
    assert!(store
        .start_job_run("job.x", "a", every, at(10))
        .await
        .unwrap());
    assert!(store
        .finish_job_run(
            "job.x",
            "a",
            at(10),
            JobRunStatus::Failed,
            Some("boom"),
            at(11)
        )
        .await
        .unwrap());
    let failed = store.get_job("job.x").await.unwrap().unwrap();
    assert_eq!(
        (
            failed.runs,
            failed.failures,
            failed.last_status.as_str(),
            failed.last_error.as_deref()
        ),
        (2, 1, "failed", Some("boom"))
    );
    assert_eq!(failed.last_success_at, Some(at(1)));

    // Handover: the lease expires at 30 and b takes it over. The job last
    // started at 10, so b may not run it before 20 — and a, which lost the
    // lease, not at all.
    let b = store
        .acquire_lease("job.x", "b", at(30), at(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.holder, "b");
    assert!(!store
        .start_job_run("job.x", "a", every, at(30))
        .await
        .unwrap());
    assert!(store
        .start_job_run("job.x", "b", every, at(30))
        .await
        .unwrap());
    assert!(!store
        .start_job_run("job.x", "b", every, at(39))
        .await
        .unwrap());
    // A run cut off by a lost lease is recorded as lost, only by its holder.
    assert!(!store
        .finish_job_run("job.x", "a", at(30), JobRunStatus::Lost, None, at(31))
        .await
        .unwrap());
    assert!(store
        .finish_job_run("job.x", "b", at(30), JobRunStatus::Lost, None, at(31))
        .await
        .unwrap());
    let jobs = store.list_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].runs, jobs[0].failures, jobs[0].last_status.as_str()),
        (3, 2, "lost")
    );
}

async fn concurrent_job_starts_have_exactly_one_winner(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let at = clock();
    store
        .acquire_lease("job.x", "a", at(0), at(30))
        .await
        .unwrap()
        .unwrap();
    // The holder starts the same interval's run from several tasks at once
    // (as two replicas would if both believed they held the lease).
    for round in 0..2 {
        let now = at(round * 10);
        let mut handles = Vec::new();
        for _ in 0..6 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                store
                    .start_job_run("job.x", "a", Duration::seconds(10), now)
                    .await
                    .unwrap()
            }));
        }
        let mut started = 0;
        for h in handles {
            started += usize::from(h.await.unwrap());
        }
        assert_eq!(started, 1, "round {round}");
    }
    assert_eq!(store.get_job("job.x").await.unwrap().unwrap().runs, 2);
}
