//! Scheduled-job bookkeeping shared by all replicas: when each job last
//! started and finished, on which replica, and how it ended.
//!
//! Starting a run is one conditional statement, tied to the job's lease
//! (the lease named after the job): it succeeds only for the lease's valid
//! holder and only when the job is due, so a replica that takes a job over
//! does not run it again early, and no interval's run happens twice.

use crate::{on_pool, Result, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How a job's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRunStatus {
    Ok,
    Failed,
    /// Cut off because its replica lost the job's lease.
    Lost,
}

impl JobRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobRunStatus::Ok => "ok",
            JobRunStatus::Failed => "failed",
            JobRunStatus::Lost => "lost",
        }
    }
}

/// A scheduled job as recorded: a row exists once it has started at least once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct JobRecord {
    pub name: String,
    /// The interval the job last started with, in milliseconds.
    pub interval_ms: i64,
    /// Runs started, on any replica.
    pub runs: i64,
    /// Runs that failed or were cut off.
    pub failures: i64,
    /// The replica that started the latest run.
    pub last_holder: String,
    pub last_started_at: DateTime<Utc>,
    /// When the latest finished run ended (the latest run's, unless it is
    /// still running).
    pub last_finished_at: Option<DateTime<Utc>>,
    /// running, ok, failed or lost.
    pub last_status: String,
    pub last_error: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
}

impl JobRecord {
    /// When the job is next due: its latest start plus its interval.
    pub fn next_due_at(&self) -> DateTime<Utc> {
        self.last_started_at + chrono::Duration::milliseconds(self.interval_ms)
    }
}

macro_rules! job_columns {
    () => {
        "name, interval_ms, runs, failures, last_holder, last_started_at, last_finished_at, \
         last_status, last_error, last_success_at"
    };
}

impl Store {
    /// Records that `holder` starts a run of job `name` at `now`, if it
    /// holds the lease named `name` (valid at `now`) and the job is due:
    /// never started, or last started at least `interval` before `now`.
    /// Returns whether the run may go ahead.
    pub async fn start_job_run(
        &self,
        name: &str,
        holder: &str,
        interval: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // The SELECT needs its WHERE for SQLite to parse ON CONFLICT after it.
        const SQL: &str = "INSERT INTO scheduled_jobs \
            (name, interval_ms, runs, failures, last_holder, last_started_at, last_status) \
            SELECT $1, $3, 1, 0, $2, $4, 'running' FROM leases \
            WHERE leases.name = $1 AND leases.holder = $2 AND leases.expires_at > $4 \
            ON CONFLICT (name) DO UPDATE SET interval_ms = excluded.interval_ms, \
            runs = scheduled_jobs.runs + 1, last_holder = excluded.last_holder, \
            last_started_at = excluded.last_started_at, last_status = 'running' \
            WHERE scheduled_jobs.last_started_at <= $5";
        let n = on_pool!(self, p => sqlx::query(SQL)
            .bind(name)
            .bind(holder)
            .bind(interval.num_milliseconds())
            .bind(now)
            .bind(now - interval)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Records how the run that `holder` started at `started_at` ended; false
    /// when that run is no longer the job's latest (it was recorded already,
    /// or another replica has started a newer run).
    pub async fn finish_job_run(
        &self,
        name: &str,
        holder: &str,
        started_at: DateTime<Utc>,
        status: JobRunStatus,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        const SQL: &str = "UPDATE scheduled_jobs SET last_finished_at = $4, last_status = $5, \
            last_error = $6, failures = failures + $7, \
            last_success_at = CASE WHEN $7 = 0 THEN $4 ELSE last_success_at END \
            WHERE name = $1 AND last_holder = $2 AND last_started_at = $3 \
            AND last_status = 'running'";
        let failed = i64::from(status != JobRunStatus::Ok);
        let n = on_pool!(self, p => sqlx::query(SQL)
            .bind(name)
            .bind(holder)
            .bind(started_at)
            .bind(at)
            .bind(status.as_str())
            .bind(error)
            .bind(failed)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    pub async fn get_job(&self, name: &str) -> Result<Option<JobRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            job_columns!(),
            " FROM scheduled_jobs WHERE name = $1"
        );
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(name).fetch_optional(p).await)?)
    }

    /// Every job that has started at least once, by name.
    pub async fn list_jobs(&self) -> Result<Vec<JobRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            job_columns!(),
            " FROM scheduled_jobs ORDER BY name"
        );
        Ok(on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await)?)
    }
}
