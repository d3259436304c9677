//! The scheduler: one per replica, ticking every quarter lease. On each tick
//! it renews the leases it holds (or tries to take the jobs it does not
//! hold), and starts each held job that is due. A run goes on in a task of
//! its own while the ticks keep renewing its lease; if a renewal fails the
//! replica has lost the job, and the run is cut off. Stopping waits a while
//! for runs in progress, then releases every lease, so that another replica
//! takes the jobs over at its next tick.

use super::{Job, JobContext};
use crate::metrics::{JobLabels, JobRunLabels, Metrics};
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::clock::{Clock, SystemClock};
use switchyard_store::{JobRunStatus, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// How long stopping waits for runs in progress unless told otherwise.
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Bounds on a job's interval (the upper one keeps time arithmetic finite).
const MIN_INTERVAL: Duration = Duration::from_millis(1);
const MAX_INTERVAL: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
/// Bounds on the lease.
const MIN_LEASE: Duration = Duration::from_secs(1);
const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

pub use crate::replica::replica_id;

/// This replica's scheduler; see the [module](super) documentation.
pub struct Scheduler {
    shared: Shared,
    slots: Vec<Slot>,
}

/// What every job's handling needs.
struct Shared {
    store: Store,
    clock: Arc<dyn Clock>,
    replica: Arc<str>,
    lease: chrono::Duration,
    tick: Duration,
    stop_grace: Duration,
    metrics: Option<Metrics>,
    /// Stopping: no new leases, no new runs.
    draining: bool,
}

/// One registered job and this replica's view of it.
struct Slot {
    job: Arc<dyn Job>,
    name: Arc<str>,
    interval: chrono::Duration,
    /// The lease's expiry while this replica holds it.
    held_until: Option<DateTime<Utc>>,
    /// When the job is due by the shared record; unknown right after the
    /// lease was taken.
    next_due: Option<DateTime<Utc>>,
    run: Option<Run>,
}

/// A run in progress; dropping it (as a crash would) cuts the run off.
struct Run {
    started_at: DateTime<Utc>,
    handle: JoinHandle<()>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Scheduler {
    /// A scheduler over `store` whose leases last `lease` (clamped to 1 s ..
    /// 1 day), on the system clock, with a fresh [`replica_id`], ticking
    /// every quarter lease.
    pub fn new(store: Store, lease: Duration) -> Self {
        let lease = lease.clamp(MIN_LEASE, MAX_LEASE);
        Self {
            shared: Shared {
                store,
                clock: Arc::new(SystemClock),
                replica: replica_id().into(),
                lease: chrono_duration(lease),
                tick: lease / 4,
                stop_grace: DEFAULT_STOP_GRACE,
                metrics: None,
                draining: false,
            },
            slots: Vec::new(),
        }
    }

    /// Reads time from `clock` (leases, due times, runs' `started_at`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.shared.clock = clock;
        self
    }

    pub fn with_replica_id(mut self, id: impl Into<String>) -> Self {
        self.shared.replica = id.into().into();
        self
    }

    /// How often [`Scheduler::spawn`]'s loop ticks (default: a quarter of
    /// the lease). A job runs at most once per tick.
    pub fn with_tick(mut self, every: Duration) -> Self {
        self.shared.tick = every.max(Duration::from_millis(1));
        self
    }

    /// How long stopping waits for runs in progress before cutting them off.
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.shared.stop_grace = grace;
        self
    }

    /// Reports runs, leadership and last successes in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.shared.metrics = Some(metrics);
        for slot in &self.slots {
            self.shared.set_leader(&slot.name, false);
        }
        self
    }

    /// Adds a job. Its name must be unique here, and its interval between
    /// a millisecond and ten years.
    pub fn register(&mut self, job: impl Job) -> anyhow::Result<&mut Self> {
        let name: Arc<str> = job.name().into();
        let interval = job.interval();
        if name.is_empty() {
            anyhow::bail!("a scheduled job needs a name");
        }
        if self.slots.iter().any(|s| s.name == name) {
            anyhow::bail!("the scheduled job `{name}` is registered twice");
        }
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            anyhow::bail!("the scheduled job `{name}` has an interval of {interval:?}, outside 1 ms .. 10 years");
        }
        self.shared.set_leader(&name, false);
        self.slots.push(Slot {
            job: Arc::new(job),
            name,
            interval: chrono_duration(interval),
            held_until: None,
            next_due: None,
            run: None,
        });
        Ok(self)
    }

    pub fn replica_id(&self) -> &str {
        &self.shared.replica
    }

    pub fn job_names(&self) -> Vec<&str> {
        self.slots.iter().map(|s| &*s.name).collect()
    }

    /// Whether this replica believes it holds the job's lease.
    pub fn holds(&self, job: &str) -> bool {
        self.slot(job).is_some_and(|s| s.held_until.is_some())
    }

    /// Whether a run of the job is in progress here.
    pub fn is_running(&self, job: &str) -> bool {
        self.slot(job)
            .and_then(|s| s.run.as_ref())
            .is_some_and(|r| !r.handle.is_finished())
    }

    fn slot(&self, job: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| &*s.name == job)
    }

    /// One round: for each job, renew or take its lease, and start it when
    /// this replica holds it, it is due, and it is not running already.
    pub async fn tick(&mut self) {
        for slot in &mut self.slots {
            self.shared.tick_job(slot).await;
        }
    }

    /// Waits until no run is in progress here (leases are not renewed
    /// meanwhile: for tests and short runs).
    pub async fn wait_idle(&mut self) {
        for slot in &mut self.slots {
            if let Some(mut run) = slot.run.take() {
                let _ = (&mut run.handle).await;
            }
        }
    }

    /// Stops: no new runs; runs in progress get the stop grace to finish
    /// (their leases renewed meanwhile), then are cut off; every lease held
    /// is released so that another replica takes the jobs over at once.
    pub async fn shutdown(mut self) {
        self.shared.draining = true;
        let deadline = Instant::now() + self.shared.stop_grace;
        loop {
            self.tick().await;
            let runs: Vec<&mut JoinHandle<()>> = self
                .slots
                .iter_mut()
                .filter_map(|s| s.run.as_mut().map(|r| &mut r.handle))
                .collect();
            if runs.is_empty() || Instant::now() >= deadline {
                break;
            }
            let wake = (Instant::now() + self.shared.tick).min(deadline);
            let _ = tokio::time::timeout_at(wake, futures_util::future::select_all(runs)).await;
        }
        for slot in &mut self.slots {
            if let Some(run) = slot.run.take() {
                self.shared
                    .cut_off(&slot.name, run, "cut off when its replica stopped")
                    .await;
            }
            if slot.held_until.take().is_some() {
                self.shared.set_leader(&slot.name, false);
                match self
                    .shared
                    .store
                    .release_lease(&slot.name, &self.shared.replica)
                    .await
                {
                    Ok(_) => tracing::info!(job = %slot.name, "released the job's lease"),
                    Err(e) => tracing::warn!(job = %slot.name, error = %e,
                        "could not release the job's lease; another replica takes it over when it expires"),
                }
            }
        }
    }

    /// Ticks every [`Scheduler::with_tick`] until `stop` turns true (or its
    /// sender goes away), then [`Scheduler::shutdown`]s. Aborting the
    /// returned task instead is a crash: runs are cut off, leases are left
    /// to expire.
    pub fn spawn(mut self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.shared.tick);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                if *stop.borrow_and_update() {
                    break;
                }
                tokio::select! {
                    _ = ticks.tick() => self.tick().await,
                    changed = stop.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
            self.shutdown().await;
        })
    }
}

impl Shared {
    fn set_leader(&self, job: &str, leader: bool) {
        if let Some(m) = &self.metrics {
            m.job_leader
                .get_or_create(&JobLabels {
                    job: job.to_owned(),
                })
                .set(i64::from(leader));
        }
    }

    async fn tick_job(&self, slot: &mut Slot) {
        if slot.run.as_ref().is_some_and(|r| r.handle.is_finished()) {
            slot.run = None;
        }
        let now = self.clock.now();
        let until = now + self.lease;
        if let Some(held_until) = slot.held_until {
            match self
                .store
                .renew_lease(&slot.name, &self.replica, now, until)
                .await
            {
                Ok(Some(lease)) => slot.held_until = Some(lease.expires_at),
                Ok(None) => {
                    self.lose(slot, "another replica took it over, or it expired")
                        .await;
                }
                Err(e) if now < held_until => {
                    tracing::warn!(job = %slot.name, error = %e, "could not renew the job's lease; will retry");
                }
                Err(e) => {
                    tracing::warn!(job = %slot.name, error = %e, "could not renew the job's lease");
                    self.lose(slot, "it expired before it could be renewed")
                        .await;
                }
            }
        }
        if slot.held_until.is_none() {
            if self.draining {
                return;
            }
            match self
                .store
                .acquire_lease(&slot.name, &self.replica, now, until)
                .await
            {
                Ok(Some(lease)) => {
                    slot.held_until = Some(lease.expires_at);
                    slot.next_due = None;
                    self.set_leader(&slot.name, true);
                    tracing::info!(job = %slot.name, replica = %self.replica, "holding the job's lease");
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(job = %slot.name, error = %e, "could not try to take the job's lease");
                    return;
                }
            }
        }
        if slot.run.is_some() || self.draining || slot.next_due.is_some_and(|due| now < due) {
            return;
        }
        match self
            .store
            .start_job_run(&slot.name, &self.replica, slot.interval, now)
            .await
        {
            Ok(true) => {
                slot.next_due = Some(now + slot.interval);
                slot.run = Some(self.start(slot, now));
            }
            // Not due by the shared record (or the lease just went): learn
            // when it is.
            Ok(false) => match self.store.get_job(&slot.name).await {
                Ok(record) => {
                    slot.next_due = record.map(|r| r.last_started_at + slot.interval);
                }
                Err(e) => {
                    tracing::warn!(job = %slot.name, error = %e, "could not read the job's last run");
                }
            },
            Err(e) => {
                tracing::warn!(job = %slot.name, error = %e, "could not start the job");
            }
        }
    }

    /// Runs the job in a task of its own, which records how it ended.
    fn start(&self, slot: &Slot, started_at: DateTime<Utc>) -> Run {
        let name = slot.name.clone();
        let run = slot.job.run(JobContext {
            job: name.clone(),
            replica: self.replica.clone(),
            started_at,
        });
        let (store, clock, metrics, replica) = (
            self.store.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            self.replica.clone(),
        );
        tracing::debug!(job = %name, "job run started");
        let handle = tokio::spawn(async move {
            let (status, error) = match AssertUnwindSafe(run).catch_unwind().await {
                Ok(Ok(())) => (JobRunStatus::Ok, None),
                Ok(Err(e)) => (JobRunStatus::Failed, Some(format!("{e:#}"))),
                Err(_) => (JobRunStatus::Failed, Some("the job panicked".to_owned())),
            };
            let finished = clock.now();
            match &error {
                None => tracing::debug!(job = %name, "job run succeeded"),
                Some(e) => tracing::warn!(job = %name, error = %e, "job run failed"),
            }
            if let Some(m) = &metrics {
                m.job_runs
                    .get_or_create(&JobRunLabels {
                        job: name.to_string(),
                        result: status.as_str(),
                    })
                    .inc();
                if status == JobRunStatus::Ok {
                    m.job_last_success
                        .get_or_create(&JobLabels {
                            job: name.to_string(),
                        })
                        .set(finished.timestamp_micros() as f64 / 1e6);
                }
            }
            if let Err(e) = store
                .finish_job_run(
                    &name,
                    &replica,
                    started_at,
                    status,
                    error.as_deref(),
                    finished,
                )
                .await
            {
                tracing::warn!(job = %name, error = %e, "could not record how the job's run ended");
            }
        });
        Run { started_at, handle }
    }

    /// This replica no longer holds the job: forget it, and cut off its run.
    async fn lose(&self, slot: &mut Slot, why: &str) {
        slot.held_until = None;
        slot.next_due = None;
        self.set_leader(&slot.name, false);
        tracing::warn!(job = %slot.name, replica = %self.replica, why, "lost the job's lease");
        if let Some(run) = slot.run.take() {
            self.cut_off(&slot.name, run, "cut off when its replica lost the lease")
                .await;
        }
    }

    /// Stops a run; when it had not finished, records it as lost.
    async fn cut_off(&self, name: &str, mut run: Run, why: &str) {
        run.handle.abort();
        if (&mut run.handle).await.is_ok() {
            return; // it had finished, and recorded itself
        }
        tracing::warn!(job = %name, why, "job run cut off");
        if let Some(m) = &self.metrics {
            m.job_runs
                .get_or_create(&JobRunLabels {
                    job: name.to_owned(),
                    result: JobRunStatus::Lost.as_str(),
                })
                .inc();
        }
        let recorded = self
            .store
            .finish_job_run(
                name,
                &self.replica,
                run.started_at,
                JobRunStatus::Lost,
                Some(why),
                self.clock.now(),
            )
            .await;
        if let Err(e) = recorded {
            tracing::warn!(job = %name, error = %e, "could not record a cut-off run");
        }
    }
}
