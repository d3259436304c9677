//! Scheduled jobs: work that must run once per deployment, not once per
//! replica (sweeps, expiries, notices, backups).
//!
//! A job is a name, an interval and an async run function. Every replica
//! runs a [`Scheduler`] with the same jobs; each job is guarded by its own
//! database lease named after it, so at any time one replica at most holds
//! a job and only the holder runs it, when it is due by the shared record
//! of its last start (last start + interval). The holder keeps renewing the
//! lease, also while a run takes long; a replica that stops releases its
//! leases, so another takes over at its next tick; one that dies is taken
//! over once its lease expires (`SCHEDULER_LEASE_SECONDS`).
//!
//! A later change adds a job in [`service_scheduler`]:
//!
//! ```ignore
//! scheduler.register(job("keys.rotation_notices", Duration::from_secs(3600), {
//!     let store = state.store.clone();
//!     move |ctx: JobContext| {
//!         let store = store.clone();
//!         async move { notify_rotations(&store, ctx.started_at).await }
//!     }
//! }))?;
//! ```
//!
//! Runs must be safe to cut off at any `.await`: a run whose replica loses
//! the lease is dropped there, as it would be by a crash.

mod backup;
mod keys;
mod retention;
mod scheduler;
mod tasks;

pub use backup::{create_job, due, verify_job, BACKUP_CREATE, BACKUP_VERIFY};
pub use keys::{
    rotation_notices, send_rotation_notices, Attempt, NoticeReport, Notifier, DELIVERY_HEADER,
    ROTATION_NOTICES, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
pub use retention::{delete_expired, retention, Deleted, RETENTION, RETENTION_INTERVAL};
pub use scheduler::{replica_id, Scheduler};
pub use tasks::{settle_abandoned, settle_interval, SETTLE_ABANDONED};

use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use switchyard_store::{Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a run returns: `Err` is recorded as a failed run with its message.
pub type JobResult = anyhow::Result<()>;

/// A run in progress.
pub type JobFuture = Pin<Box<dyn Future<Output = JobResult> + Send + 'static>>;

/// What a run is told about itself.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's name (also its lease's name).
    pub job: Arc<str>,
    /// The replica running it.
    pub replica: Arc<str>,
    /// When the run started, by the scheduler's clock: jobs use it as "now".
    pub started_at: DateTime<Utc>,
}

/// Work the scheduler runs once per `interval` across all replicas.
pub trait Job: Send + Sync + 'static {
    /// Unique among the scheduler's jobs; also the name of the job's lease.
    fn name(&self) -> &str;
    /// How long after a run starts the next one is due.
    fn interval(&self) -> Duration;
    fn run(&self, ctx: JobContext) -> JobFuture;
}

/// A job made of a name, an interval and a function; see [`job`].
pub struct FnJob<F> {
    name: String,
    interval: Duration,
    run: F,
}

/// A job from a name, an interval and an async function of its context.
pub fn job<F, Fut>(name: impl Into<String>, interval: Duration, run: F) -> FnJob<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = JobResult> + Send + 'static,
{
    FnJob {
        name: name.into(),
        interval,
        run,
    }
}

impl<F, Fut> Job for FnJob<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = JobResult> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn run(&self, ctx: JobContext) -> JobFuture {
        Box::pin((self.run)(ctx))
    }
}

/// The service's scheduler: its jobs over the application's state, with
/// the configured lease, the system clock and the service's metrics.
pub fn service_scheduler(state: &AppState) -> anyhow::Result<Scheduler> {
    let mut scheduler = Scheduler::new(state.store.clone(), state.config.tasks.scheduler_lease)
        .with_metrics(state.metrics.clone())
        .with_stop_grace(state.config.shutdown_grace / 2);
    scheduler.register(settle_abandoned(
        state.store.clone(),
        state.config.tasks.lease,
    ))?;
    if let Some(notify) = &state.config.keys.notify {
        scheduler.register(rotation_notices(
            state.store.clone(),
            state.config.keys.rotation,
            Notifier::new(notify.clone())?,
            notify.interval,
        ))?;
    }
    scheduler.register(retention(
        state.store.clone(),
        state.config.retention,
        state.config.tasks.dir.clone(),
    ))?;
    let backup = &state.config.backup;
    if backup.schedule.is_some() || backup.verify_schedule.is_some() {
        let backups = Arc::new(switchyard_backup::Backups::new(
            state.store.clone(),
            &state.config,
        ));
        if let Some(schedule) = &backup.schedule {
            scheduler.register(create_job(backups.clone(), schedule.clone()))?;
        }
        if let Some(schedule) = &backup.verify_schedule {
            scheduler.register(verify_job(backups, schedule.clone()))?;
        }
    }
    Ok(scheduler)
}

/// Starts the service's scheduler; it releases its leases and ends when
/// `stop` turns true.
pub fn spawn(state: &AppState, stop: watch::Receiver<bool>) -> anyhow::Result<JoinHandle<()>> {
    let scheduler = service_scheduler(state)?;
    tracing::info!(replica = scheduler.replica_id(), jobs = ?scheduler.job_names(), "job scheduler started");
    Ok(scheduler.spawn(stop))
}

/// One job (or other lease) as operators see it: who holds it, and how its
/// latest run went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub name: String,
    /// The replica holding the lease; `None` when released or never taken.
    pub holder: Option<String>,
    pub lease_acquired_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Whether the lease is still valid now (an expired one is free to take).
    pub lease_valid: bool,
    pub interval_seconds: Option<f64>,
    pub runs: i64,
    pub failures: i64,
    pub last_holder: Option<String>,
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_finished_at: Option<DateTime<Utc>>,
    /// running, ok, failed or lost; `None` before the first run.
    pub last_status: Option<String>,
    pub last_error: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub next_due_at: Option<DateTime<Utc>>,
}

/// Every job that has run or whose lease is held, by name, as of `now`.
pub async fn overview(store: &Store, now: DateTime<Utc>) -> Result<Vec<JobView>, StoreError> {
    let mut views: std::collections::BTreeMap<String, JobView> = Default::default();
    let blank = |name: &str| JobView {
        name: name.to_owned(),
        holder: None,
        lease_acquired_at: None,
        lease_expires_at: None,
        lease_valid: false,
        interval_seconds: None,
        runs: 0,
        failures: 0,
        last_holder: None,
        last_started_at: None,
        last_finished_at: None,
        last_status: None,
        last_error: None,
        last_success_at: None,
        next_due_at: None,
    };
    for j in store.list_jobs().await? {
        let v = views
            .entry(j.name.clone())
            .or_insert_with(|| blank(&j.name));
        v.interval_seconds = Some(j.interval_ms as f64 / 1000.0);
        v.runs = j.runs;
        v.failures = j.failures;
        v.next_due_at = Some(j.next_due_at());
        v.last_holder = Some(j.last_holder);
        v.last_started_at = Some(j.last_started_at);
        v.last_finished_at = j.last_finished_at;
        v.last_status = Some(j.last_status);
        v.last_error = j.last_error;
        v.last_success_at = j.last_success_at;
    }
    for l in store.list_leases().await? {
        let v = views
            .entry(l.name.clone())
            .or_insert_with(|| blank(&l.name));
        v.lease_valid = l.is_valid_at(now);
        v.holder = Some(l.holder);
        v.lease_acquired_at = Some(l.acquired_at);
        v.lease_expires_at = Some(l.expires_at);
    }
    Ok(views.into_values().collect())
}
