//! The task repository: a durable queue. Workers claim the oldest runnable
//! task under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas
//! never claim the same task; SQLite has a single writer), renew the lease
//! while they run it, and finish it only while they still hold the lease. A
//! task whose lease expired is claimed again while it has attempts left.

use crate::{on_pool, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use switchyard_core::config::DatabaseKind;
use switchyard_core::tasks::TaskStatus;

/// Runs a task gets at most (the first, and one retry after a lost worker).
pub const MAX_ATTEMPTS: i32 = 2;

/// A task to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewTask<'a> {
    pub id: &'a str,
    pub key_id: &'a str,
    pub project: &'a str,
    /// The validated request, as JSON.
    pub spec: &'a str,
    pub at: DateTime<Utc>,
}

/// How a worker's run of a task ended.
#[derive(Debug, Clone, Copy)]
pub struct TaskFinish<'a> {
    pub id: &'a str,
    /// The worker that must still hold the task's lease.
    pub worker: &'a str,
    pub status: TaskStatus,
    /// The outcome, as JSON.
    pub result: &'a str,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRow {
    pub id: String,
    pub key_id: String,
    pub project: String,
    pub status: TaskStatus,
    /// The validated request, as JSON.
    pub spec: String,
    /// The outcome, as JSON, once finished.
    pub result: Option<String>,
    pub cancel_requested: bool,
    pub attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl TaskRow {
    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }
}

/// A task as its columns hold it, before the status is parsed.
#[derive(sqlx::FromRow)]
struct RawTask {
    id: String,
    key_id: String,
    project: String,
    status: String,
    spec: String,
    result: Option<String>,
    cancel_requested: bool,
    attempts: i32,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<RawTask> for TaskRow {
    type Error = StoreError;
    fn try_from(r: RawTask) -> Result<Self> {
        Ok(TaskRow {
            status: r.status.parse().map_err(StoreError::Corrupt)?,
            id: r.id,
            key_id: r.key_id,
            project: r.project,
            spec: r.spec,
            result: r.result,
            cancel_requested: r.cancel_requested,
            attempts: r.attempts,
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

macro_rules! task_columns {
    () => {
        "id, key_id, project, status, spec, result, cancel_requested, attempts, lease_owner, \
         lease_expires_at, created_at, started_at, finished_at"
    };
}

/// The stored result of a task cancelled before a worker claimed it.
macro_rules! cancelled_before_start {
    () => {
        "'{\"status\":\"cancelled\",\"error\":\"cancelled before it started\"}'"
    };
}

const CLAIM_POSTGRES: &str = concat!(
    "UPDATE tasks SET status = 'running', lease_owner = $1, lease_expires_at = $2, ",
    "attempts = attempts + 1, started_at = COALESCE(started_at, $3) WHERE id = (",
    "SELECT id FROM tasks WHERE attempts < $4 AND cancel_requested = FALSE AND ",
    "(status = 'queued' OR (status = 'running' AND lease_expires_at < $3)) ",
    "ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ",
    task_columns!()
);
const CLAIM_SQLITE: &str = concat!(
    "UPDATE tasks SET status = 'running', lease_owner = $1, lease_expires_at = $2, ",
    "attempts = attempts + 1, started_at = COALESCE(started_at, $3) WHERE id = (",
    "SELECT id FROM tasks WHERE attempts < $4 AND cancel_requested = FALSE AND ",
    "(status = 'queued' OR (status = 'running' AND lease_expires_at < $3)) ",
    "ORDER BY created_at LIMIT 1) RETURNING ",
    task_columns!()
);

impl Store {
    pub async fn insert_task(&self, t: &NewTask<'_>) -> Result<()> {
        const SQL: &str = "INSERT INTO tasks (id, key_id, project, status, spec, created_at) \
            VALUES ($1, $2, $3, 'queued', $4, $5)";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(t.id)
            .bind(t.key_id)
            .bind(t.project)
            .bind(t.spec)
            .bind(t.at)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn get_task(&self, id: &str) -> Result<Option<TaskRow>> {
        const SQL: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1");
        let row: Option<RawTask> =
            crate::read_pool!(self, p => sqlx::query_as(SQL).bind(id).fetch_optional(p).await)?;
        row.map(TaskRow::try_from).transpose()
    }

    /// A key's tasks, newest first.
    pub async fn list_tasks(&self, key_id: &str, limit: i64) -> Result<Vec<TaskRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE key_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        );
        let rows: Vec<RawTask> = crate::read_pool!(self, p => sqlx::query_as(SQL)
            .bind(key_id)
            .bind(limit)
            .fetch_all(p)
            .await)?;
        rows.into_iter().map(TaskRow::try_from).collect()
    }

    /// Every key's tasks, newest first (the admin console's list).
    pub async fn list_recent_tasks(&self, limit: i64) -> Result<Vec<TaskRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks ORDER BY created_at DESC, id LIMIT $1"
        );
        let rows: Vec<RawTask> = crate::read_pool!(self, p => sqlx::query_as(SQL)
            .bind(limit)
            .fetch_all(p)
            .await)?;
        rows.into_iter().map(TaskRow::try_from).collect()
    }

    /// How many tasks are running now, on every replica.
    pub async fn running_tasks(&self) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM tasks WHERE status = 'running'";
        Ok(crate::read_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await)?)
    }

    /// A key's queued and running tasks.
    pub async fn active_tasks(&self, key_id: &str) -> Result<i64> {
        const SQL: &str =
            "SELECT COUNT(*) FROM tasks WHERE key_id = $1 AND status IN ('queued', 'running')";
        Ok(crate::read_pool!(self, p => sqlx::query_scalar(SQL).bind(key_id).fetch_one(p).await)?)
    }

    /// Claims the oldest runnable task for `worker` until `lease_until`.
    pub async fn claim_task(
        &self,
        worker: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskRow>> {
        let sql = match self.kind() {
            DatabaseKind::Postgres => CLAIM_POSTGRES,
            DatabaseKind::Sqlite => CLAIM_SQLITE,
        };
        let row: Option<RawTask> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(worker)
            .bind(lease_until)
            .bind(now)
            .bind(MAX_ATTEMPTS)
            .fetch_optional(p)
            .await)?;
        row.map(TaskRow::try_from).transpose()
    }

    /// Extends a lease; `None` when the worker no longer holds it, else
    /// whether cancellation was requested.
    pub async fn renew_task_lease(
        &self,
        id: &str,
        worker: &str,
        until: DateTime<Utc>,
    ) -> Result<Option<bool>> {
        const SQL: &str = "UPDATE tasks SET lease_expires_at = $3 \
            WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING cancel_requested";
        Ok(
            on_pool!(self, p => sqlx::query_scalar(SQL).bind(id).bind(worker).bind(until).fetch_optional(p).await)?,
        )
    }

    /// Records the outcome, if the worker still holds the task.
    pub async fn finish_task(&self, f: &TaskFinish<'_>) -> Result<bool> {
        const SQL: &str =
            "UPDATE tasks SET status = $3, result = $4, finished_at = $5, lease_owner = NULL, \
            lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'running'";
        let n = on_pool!(self, p => sqlx::query(SQL)
            .bind(f.id)
            .bind(f.worker)
            .bind(f.status.as_str())
            .bind(f.result)
            .bind(f.at)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Fails tasks whose worker vanished and that have no attempts left, and
    /// cancels queued tasks whose cancellation was requested but not applied
    /// (by a version that left that to this sweep). Returns how many changed.
    /// Run once per deployment by the scheduler, not by every worker.
    pub async fn settle_abandoned_tasks(&self, now: DateTime<Utc>) -> Result<u64> {
        const FAIL: &str = "UPDATE tasks SET status = 'failed', finished_at = $1, lease_owner = NULL, \
            result = '{\"status\":\"failed\",\"error\":\"the worker running this task stopped, and it had no attempts left\"}' \
            WHERE status = 'running' AND lease_expires_at < $1 AND attempts >= $2";
        const CANCEL: &str = concat!(
            "UPDATE tasks SET status = 'cancelled', finished_at = $1, result = ",
            cancelled_before_start!(),
            " WHERE status = 'queued' AND cancel_requested = TRUE"
        );
        let failed = on_pool!(self, p => sqlx::query(FAIL).bind(now).bind(MAX_ATTEMPTS).execute(p).await.map(|r| r.rows_affected()))?;
        let cancelled = on_pool!(self, p => sqlx::query(CANCEL).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(failed + cancelled)
    }

    /// Asks for a task to stop; false when there is no such unfinished task.
    /// A queued task is cancelled at once, in the same statement; a running
    /// one is flagged, and its worker stops it when it next renews its lease.
    pub async fn request_task_cancel(&self, id: &str) -> Result<bool> {
        self.cancel_task(id, switchyard_core::now()).await
    }

    /// [`Store::request_task_cancel`] at a given time (`finished_at` of a
    /// task cancelled while queued).
    pub async fn cancel_task(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        // Every right-hand side sees the row as it was before this update.
        const SQL: &str = concat!(
            "UPDATE tasks SET cancel_requested = TRUE, ",
            "status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, ",
            "finished_at = CASE WHEN status = 'queued' THEN $2 ELSE finished_at END, ",
            "result = CASE WHEN status = 'queued' THEN ",
            cancelled_before_start!(),
            " ELSE result END ",
            "WHERE id = $1 AND status IN ('queued', 'running')"
        );
        let n = on_pool!(self, p => sqlx::query(SQL).bind(id).bind(at).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Tasks that finished before `before`, oldest first.
    pub async fn tasks_finished_before(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<String>> {
        const SQL: &str =
            "SELECT id FROM tasks WHERE finished_at IS NOT NULL AND finished_at < $1 \
            ORDER BY finished_at LIMIT $2";
        Ok(
            crate::read_pool!(self, p => sqlx::query_scalar(SQL).bind(before).bind(limit).fetch_all(p).await)?,
        )
    }

    pub async fn append_task_event(&self, id: &str, seq: i64, event: &str) -> Result<()> {
        const SQL: &str = "INSERT INTO task_events (task_id, seq, event) VALUES ($1, $2, $3) \
            ON CONFLICT (task_id, seq) DO NOTHING";
        on_pool!(self, p => sqlx::query(SQL).bind(id).bind(seq).bind(event).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Events after `after_seq`, in order.
    pub async fn task_events(&self, id: &str, after_seq: i64) -> Result<Vec<(i64, String)>> {
        const SQL: &str =
            "SELECT seq, event FROM task_events WHERE task_id = $1 AND seq > $2 ORDER BY seq";
        Ok(
            crate::read_pool!(self, p => sqlx::query_as(SQL).bind(id).bind(after_seq).fetch_all(p).await)?,
        )
    }

    /// The queue as a whole: how many tasks wait for a worker, and when the
    /// oldest of them was queued (`None` when none waits). One query, on the
    /// `(status, created_at)` index; the service's metrics refresh from it.
    pub async fn task_queue(&self) -> Result<(i64, Option<DateTime<Utc>>)> {
        const SQL: &str = "SELECT COUNT(*), MIN(created_at) FROM tasks \
            WHERE status = 'queued' AND cancel_requested = FALSE";
        Ok(crate::read_pool!(self, p => sqlx::query_as(SQL).fetch_one(p).await)?)
    }
}
