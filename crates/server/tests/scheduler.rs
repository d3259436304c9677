//! The job scheduler across replicas: schedulers with their own replica ids
//! and store pools over one database (SQLite and PostgreSQL), on a clock the
//! tests move by hand. Most tests tick the schedulers explicitly, so every
//! step is deterministic; the spawned-loop test waits on conditions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::Duration as Span;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::clock::ManualClock;
use switchyard_core::config::DatabaseKind;
use switchyard_core::Config;
use switchyard_server::jobs::{self, job, JobContext, Scheduler};
use switchyard_server::metrics::Metrics;
use switchyard_store::{NewTask, Store};
use switchyard_testkit::TestDatabase;
use tokio::sync::{watch, Semaphore};

const JOB: &str = "test.count";

switchyard_testkit::on_both_engines!(multi_thread:
    one_replica_runs_the_job_once_per_interval,
    a_stopped_replica_hands_over_at_once,
    a_crashed_replica_is_taken_over_once_its_lease_expires,
    a_takeover_does_not_run_the_job_again_early,
    a_long_run_keeps_its_lease,
    a_replica_that_lost_its_lease_cuts_its_run_off,
    spawned_schedulers_hand_over_on_stop_and_on_crash,
    the_settle_job_fails_tasks_whose_worker_died,
    the_service_runs_its_jobs_and_releases_them_on_stop,
);

/// One database, migrated, and a store pool per replica.
struct Deployment {
    db: TestDatabase,
    store: Store,
    clock: Arc<ManualClock>,
}

impl Deployment {
    async fn new(kind: DatabaseKind) -> Self {
        let db = TestDatabase::of_kind(kind);
        let store = Store::connect_lazy(&db.config()).unwrap();
        store.migrate().await.unwrap();
        Self {
            db,
            store,
            clock: Arc::new(ManualClock::starting_now()),
        }
    }

    /// A replica's scheduler on its own pool, leases of `lease_s` seconds.
    fn replica(&self, id: &str, lease_s: u64) -> Scheduler {
        let store = Store::connect_lazy(&self.db.config()).unwrap();
        Scheduler::new(store, Duration::from_secs(lease_s))
            .with_clock(self.clock.clone())
            .with_replica_id(id)
            .with_tick(Duration::from_millis(10))
    }

    fn advance(&self, secs: f64) {
        self.clock
            .advance(Span::microseconds((secs * 1e6).round() as i64));
    }

    async fn holder(&self) -> Option<String> {
        self.store.get_lease(JOB).await.unwrap().map(|l| l.holder)
    }
}

/// A job that counts its runs.
fn counting(interval_s: u64, runs: &Arc<AtomicUsize>) -> impl jobs::Job {
    let runs = runs.clone();
    job(JOB, Duration::from_secs(interval_s), move |_ctx| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
}

/// A job that counts its runs and then waits for a permit from `gate`;
/// `dropped` turns true when a run is dropped before it got one.
fn gated(
    interval_s: u64,
    runs: &Arc<AtomicUsize>,
    gate: &Arc<Semaphore>,
    dropped: &Arc<AtomicBool>,
) -> impl jobs::Job {
    struct Guard(Arc<AtomicBool>, bool);
    impl Drop for Guard {
        fn drop(&mut self) {
            if !self.1 {
                self.0.store(true, Ordering::SeqCst);
            }
        }
    }
    let (runs, gate, dropped) = (runs.clone(), gate.clone(), dropped.clone());
    job(JOB, Duration::from_secs(interval_s), move |_ctx| {
        let (runs, gate, dropped) = (runs.clone(), gate.clone(), dropped.clone());
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let mut guard = Guard(dropped, false);
            gate.acquire().await?.forget();
            guard.1 = true;
            Ok(())
        }
    })
}

/// Both replicas tick (a first), then wait for their runs to finish.
async fn round(a: &mut Scheduler, b: &mut Scheduler) {
    a.tick().await;
    b.tick().await;
    a.wait_idle().await;
    b.wait_idle().await;
}

/// Polls `check` every 10 ms until it holds; fails after 20 s.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn one_replica_runs_the_job_once_per_interval(kind: DatabaseKind) {
    let d = Deployment::new(kind).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let (metrics_a, metrics_b) = (
        Metrics::new("development", None, false),
        Metrics::new("development", None, false),
    );
    let mut a = d.replica("replica-a", 30).with_metrics(metrics_a.clone());
    a.register(counting(10, &runs)).unwrap();
    let mut b = d.replica("replica-b", 30).with_metrics(metrics_b.clone());
    b.register(counting(10, &runs)).unwrap();

    for interval in 1..=5 {
        for _ in 0..3 {
            round(&mut a, &mut b).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), interval, "interval {interval}");
        d.advance(9.999_999);
        round(&mut a, &mut b).await;
        assert_eq!(runs.load(Ordering::SeqCst), interval, "not due yet");
        d.advance(0.000_001);
    }
    assert!(a.holds(JOB) && !b.holds(JOB));
    let lease = d.store.get_lease(JOB).await.unwrap().unwrap();
    assert_eq!(lease.holder, "replica-a");
    assert_eq!(
        lease.expires_at,
        d.clock_now() - Span::microseconds(1) + Span::seconds(30),
        "renewed on every tick"
    );
    let record = d.store.get_job(JOB).await.unwrap().unwrap();
    assert_eq!(
        (
            record.runs,
            record.last_holder.as_str(),
            record.last_status.as_str()
        ),
        (5, "replica-a", "ok")
    );
    assert_eq!(record.interval_ms, 10_000);

    let text_a = metrics_a.render().unwrap();
    let text_b = metrics_b.render().unwrap();
    assert!(
        text_a.contains("switchyard_job_leader{job=\"test.count\"} 1"),
        "{text_a}"
    );
    assert!(
        text_b.contains("switchyard_job_leader{job=\"test.count\"} 0"),
        "{text_b}"
    );
    assert!(
        text_a.contains("switchyard_job_runs_total{job=\"test.count\",result=\"ok\"} 5"),
        "{text_a}"
    );
    assert!(!text_b.contains("switchyard_job_runs_total{"), "{text_b}");
    assert!(
        text_a.contains("switchyard_job_last_success_timestamp_seconds{job=\"test.count\"} 1"),
        "{text_a}"
    );
}

impl Deployment {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use switchyard_core::clock::Clock;
        self.clock.now()
    }
}

async fn a_stopped_replica_hands_over_at_once(kind: DatabaseKind) {
    let d = Deployment::new(kind).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut a = d.replica("replica-a", 30);
    a.register(counting(10, &runs)).unwrap();
    let mut b = d.replica("replica-b", 30);
    b.register(counting(10, &runs)).unwrap();
    round(&mut a, &mut b).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(d.holder().await.as_deref(), Some("replica-a"));

    d.advance(5.0);
    a.shutdown().await;
    assert_eq!(d.holder().await, None, "released on stop");
    // The other replica takes the job at its next tick, long before the
    // lease would have expired, but does not run it before it is due.
    b.tick().await;
    b.wait_idle().await;
    assert!(b.holds(JOB));
    assert_eq!(d.holder().await.as_deref(), Some("replica-b"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    d.advance(5.0);
    b.tick().await;
    b.wait_idle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let record = d.store.get_job(JOB).await.unwrap().unwrap();
    assert_eq!((record.runs, record.last_holder.as_str()), (2, "replica-b"));
}

async fn a_crashed_replica_is_taken_over_once_its_lease_expires(kind: DatabaseKind) {
    let d = Deployment::new(kind).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut a = d.replica("replica-a", 10);
    a.register(counting(4, &runs)).unwrap();
    let mut b = d.replica("replica-b", 10);
    b.register(counting(4, &runs)).unwrap();
    round(&mut a, &mut b).await; // t = 0: a runs
    d.advance(1.0);
    round(&mut a, &mut b).await; // t = 1: a renews until 11
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // a crashes: no release, its lease stays until it expires.
    drop(a);
    for (step, t) in [(3.0, "4"), (6.999_999, "10.999999")] {
        d.advance(step);
        b.tick().await;
        b.wait_idle().await;
        assert!(!b.holds(JOB), "t = {t}: the crashed replica's lease holds");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "t = {t}");
    }
    d.advance(0.000_001); // t = 11: expired
    b.tick().await;
    b.wait_idle().await;
    assert!(b.holds(JOB));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "overdue since 4: runs at once"
    );
    d.advance(3.999_999);
    b.tick().await;
    b.wait_idle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "next due at 15");
    d.advance(0.000_001);
    b.tick().await;
    b.wait_idle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

async fn a_takeover_does_not_run_the_job_again_early(kind: DatabaseKind) {
    let d = Deployment::new(kind).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut a = d.replica("replica-a", 10);
    a.register(counting(60, &runs)).unwrap();
    let mut b = d.replica("replica-b", 10);
    b.register(counting(60, &runs)).unwrap();
    round(&mut a, &mut b).await; // t = 0: a runs; due again at 60
    d.advance(5.0);
    round(&mut a, &mut b).await; // a renews until 15
    drop(a);
    d.advance(10.0); // t = 15: expired
    b.tick().await;
    b.wait_idle().await;
    assert!(b.holds(JOB));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "taken over, not due");
    for _ in 0..4 {
        d.advance(10.0); // up to t = 55
        b.tick().await;
        b.wait_idle().await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    d.advance(5.0); // t = 60
    b.tick().await;
    b.wait_idle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let record = d.store.get_job(JOB).await.unwrap().unwrap();
    assert_eq!((record.runs, record.last_holder.as_str()), (2, "replica-b"));
}

async fn a_long_run_keeps_its_lease(kind: DatabaseKind) {
    let d = Deployment::new(kind).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let mut a = d.replica("replica-a", 10);
    a.register(gated(5, &runs, &gate, &dropped)).unwrap();
    let mut b = d.replica("replica-b", 10);
    b.register(gated(5, &runs, &gate, &dropped)).unwrap();
    a.tick().await;
    b.tick().await;
    // The run takes 40 s, four leases; the ticks keep renewing it, no other
    // run starts though the job falls due, and the other replica stays out.
    for step in 1..=8 {
        d.advance(5.0);
        a.tick().await;
        b.tick().await;
        assert!(a.holds(JOB) && a.is_running(JOB), "step {step}");
        assert!(!b.holds(JOB), "step {step}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    gate.add_permits(1);
    a.wait_idle().await;
    let record = d.store.get_job(JOB).await.unwrap().unwrap();
    assert_eq!((record.runs, record.last_status.as_str()), (1, "ok"));
    assert!(!dropped.load(Ordering::SeqCst));
}

async fn a_replica_that_lost_its_lease_cuts_its_run_off(kind: DatabaseKind) {
    let d = Deployment::new(kind).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let metrics = Metrics::new("development", None, false);
    let mut a = d.replica("replica-a", 10).with_metrics(metrics.clone());
    a.register(gated(60, &runs, &gate, &dropped)).unwrap();
    let mut b = d.replica("replica-b", 10);
    b.register(gated(60, &runs, &gate, &dropped)).unwrap();
    a.tick().await; // t = 0: a's run starts and waits
    b.tick().await;
    assert!(a.is_running(JOB));
    // a stalls past its lease (no ticks), and b takes the job over.
    d.advance(10.0);
    b.tick().await;
    assert!(b.holds(JOB));
    assert!(!b.is_running(JOB), "not due before 60");
    // a's next renewal fails: it lets go of the job and cuts its run off.
    a.tick().await;
    assert!(!a.holds(JOB) && !a.is_running(JOB));
    assert!(dropped.load(Ordering::SeqCst), "the run was dropped");
    let record = d.store.get_job(JOB).await.unwrap().unwrap();
    assert_eq!(
        (
            record.runs,
            record.failures,
            record.last_status.as_str(),
            record.last_holder.as_str()
        ),
        (1, 1, "lost", "replica-a")
    );
    let text = metrics.render().unwrap();
    assert!(
        text.contains("switchyard_job_runs_total{job=\"test.count\",result=\"lost\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("switchyard_job_leader{job=\"test.count\"} 0"),
        "{text}"
    );
    assert_eq!(d.holder().await.as_deref(), Some("replica-b"));
}

async fn spawned_schedulers_hand_over_on_stop_and_on_crash(kind: DatabaseKind) {
    let d = Deployment::new(kind).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let count = || runs.load(Ordering::SeqCst);
    let mut replicas = Vec::new();
    for id in ["replica-a", "replica-b"] {
        let mut s = d.replica(id, 10);
        s.register(counting(30, &runs)).unwrap();
        let (tx, rx) = watch::channel(false);
        replicas.push((id, tx, s.spawn(rx)));
    }
    wait_for("a first run", || async { count() == 1 }).await;
    let first = d.holder().await.unwrap();
    let (idx, other) = if first == "replica-a" {
        (0, "replica-b")
    } else {
        (1, "replica-a")
    };

    // Graceful stop: the other replica holds the job at its next tick, with
    // the clock standing still; it runs it when it is next due.
    let (_, stop, handle) = replicas.remove(idx);
    stop.send(true).unwrap();
    handle.await.unwrap();
    wait_for("the other replica to take over", || async {
        d.holder().await.as_deref() == Some(other)
    })
    .await;
    assert_eq!(count(), 1);
    d.advance(30.0);
    wait_for("the second run", || async { count() == 2 }).await;

    // Crash: the task is dropped without releasing its lease. A new replica
    // cannot take over until the lease (renewed at the current time)
    // expires.
    let (_, _stop, handle) = replicas.remove(0);
    handle.abort();
    assert!(handle.await.unwrap_err().is_cancelled());
    let mut c = d.replica("replica-c", 10);
    c.register(counting(30, &runs)).unwrap();
    c.tick().await;
    assert!(!c.holds(JOB));
    assert_eq!(d.holder().await.as_deref(), Some(other));
    let (stop_c, rx) = watch::channel(false);
    let c = c.spawn(rx);
    d.advance(10.0);
    wait_for("the new replica to take over", || async {
        d.holder().await.as_deref() == Some("replica-c")
    })
    .await;
    // The crashed replica ran the job 10 s ago: not due for another 20 s.
    assert_eq!(count(), 2);
    d.advance(20.0);
    wait_for("the third run", || async { count() == 3 }).await;
    stop_c.send(true).unwrap();
    c.await.unwrap();
    assert_eq!(d.holder().await, None);
    assert_eq!(count(), 3, "one run per interval");
    let record = d.store.get_job(JOB).await.unwrap().unwrap();
    assert_eq!((record.runs, record.last_holder.as_str()), (3, "replica-c"));
}

async fn the_settle_job_fails_tasks_whose_worker_died(kind: DatabaseKind) {
    let d = Deployment::new(kind).await;
    let t0 = d.clock_now();
    let at = |s: i64| t0 + Span::seconds(s);
    d.store
        .insert_task(&NewTask {
            id: "task_dead",
            key_id: "key_1",
            project: "p",
            spec: "{}",
            at: t0,
        })
        .await
        .unwrap();
    // Two workers claim it in turn and die: no attempts are left.
    for (worker, now) in [("w1", 0), ("w2", 10)] {
        let claimed = d
            .store
            .claim_task(worker, at(now + 5), at(now))
            .await
            .unwrap();
        assert!(claimed.is_some(), "{worker}");
    }
    d.advance(20.0);
    let mut s = d.replica("replica-a", 30);
    s.register(jobs::settle_abandoned(
        d.store.clone(),
        Duration::from_secs(30),
    ))
    .unwrap();
    s.tick().await;
    s.wait_idle().await;
    let task = d.store.get_task("task_dead").await.unwrap().unwrap();
    assert_eq!(task.status, "failed");
    assert_eq!(task.finished_at, Some(at(20)));
    let record = d
        .store
        .get_job(jobs::SETTLE_ABANDONED)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (record.last_status.as_str(), record.interval_ms),
        ("ok", 15_000)
    );
    assert_eq!(
        jobs::settle_interval(Duration::from_secs(5)),
        Duration::from_millis(2500)
    );
    assert_eq!(
        jobs::settle_interval(Duration::from_secs(1)),
        Duration::from_secs(1)
    );
}

async fn the_service_runs_its_jobs_and_releases_them_on_stop(kind: DatabaseKind) {
    let d = Deployment::new(kind).await;
    let app = common::TestApp::builder()
        .shared(&d.db)
        .env("SCHEDULER_LEASE_SECONDS", "2")
        .start()
        .await;
    wait_for("the service to run its settle job", || async {
        d.store
            .get_job(jobs::SETTLE_ABANDONED)
            .await
            .unwrap()
            .is_some_and(|r| r.last_status == "ok")
    })
    .await;
    let now = switchyard_core::now();
    let views = jobs::overview(&d.store, now).await.unwrap();
    let view = views
        .iter()
        .find(|v| v.name == jobs::SETTLE_ABANDONED)
        .unwrap();
    assert!(view.lease_valid, "{view:?}");
    assert_eq!(view.holder, view.last_holder);
    assert!(view.runs >= 1);
    assert_eq!(view.interval_seconds, Some(15.0));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("switchyard_job_leader{job=\"tasks.settle_abandoned\"} 1"),
        "{metrics}"
    );
    app.stop().await;
    assert_eq!(
        d.store.get_lease(jobs::SETTLE_ABANDONED).await.unwrap(),
        None,
        "released on stop"
    );
}

#[tokio::test]
async fn jobs_are_registered_once_with_a_sane_interval() {
    let db = TestDatabase::sqlite();
    let store = Store::connect_lazy(&db.config()).unwrap();
    let mut s = Scheduler::new(store, Duration::from_secs(30));
    let runs = Arc::new(AtomicUsize::new(0));
    s.register(counting(10, &runs)).unwrap();
    assert!(s.register(counting(20, &runs)).is_err(), "duplicate name");
    let zero = job("test.zero", Duration::ZERO, |_ctx: JobContext| async {
        Ok(())
    });
    assert!(s.register(zero).is_err());
    assert_eq!(s.job_names(), [JOB]);
    let id = jobs::replica_id();
    assert!(id.contains(&format!("-{}-", std::process::id())), "{id}");
    assert_ne!(id, jobs::replica_id(), "random per scheduler");
}

#[test]
fn the_scheduler_lease_is_configurable_within_its_range() {
    let load = |v: Option<&str>| {
        Config::load(&move |n| match n {
            "SCHEDULER_LEASE_SECONDS" => v.map(str::to_owned),
            _ => None,
        })
    };
    assert_eq!(
        load(None).config.tasks.scheduler_lease,
        Duration::from_secs(30)
    );
    assert_eq!(
        load(Some("2")).config.tasks.scheduler_lease,
        Duration::from_secs(2)
    );
    for bad in ["1", "3601", "soon"] {
        let loaded = load(Some(bad));
        assert!(
            loaded
                .problems
                .iter()
                .any(|p| p.variable == "SCHEDULER_LEASE_SECONDS"),
            "{bad}: {:?}",
            loaded.problems
        );
    }
    assert!(load(None)
        .config
        .describe()
        .contains(&("SCHEDULER_LEASE_SECONDS", "30".to_owned())));
}
