//! The retention job: deletes audit records, usage records and finished
//! tasks (their execution logs and workspaces with them) once they are
//! older than their retention, in bounded batches, once per deployment.

use super::{job, Job, JobContext};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_core::audit::AuditKind;
use switchyard_core::config::RetentionConfig;
use switchyard_store::{AuditEvent, Store, StoreError};

/// The job's name (and its lease's).
pub const RETENTION: &str = "retention.delete_expired";

/// How often the job runs. Each run deletes everything that has expired
/// since the last, however much that is, one batch at a time.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// What one run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub audit: u64,
    pub usage: u64,
    pub tasks: u64,
    pub task_events: u64,
    /// Task workspaces still on this replica's disk.
    pub workspaces: u64,
}

impl Deleted {
    fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// Calls `batch` until it deletes less than a full batch, letting other
/// work run between batches; returns the total.
async fn drain<F, Fut>(size: u32, mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < u64::from(size) {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// A task id that names a directory under the tasks directory and nothing
/// else.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Deletes what has outlived its retention as of `now`: the audit log's
/// oldest records (a prefix of the chain, leaving the anchor), usage
/// records, then the execution logs of expired tasks and the tasks with
/// their workspaces under `tasks_dir`. When anything went, one
/// `retention.deleted` audit record says how much.
pub async fn delete_expired(
    store: &Store,
    policy: &RetentionConfig,
    tasks_dir: &Path,
    now: DateTime<Utc>,
) -> Result<Deleted, StoreError> {
    let size = policy.batch_size.max(1);
    let batch = i64::from(size);
    let mut deleted = Deleted::default();
    let audit_cutoff = policy.audit_cutoff(now);
    deleted.audit = drain(size, || store.prune_audit(audit_cutoff, batch, now)).await?;
    let usage_cutoff = policy.usage_cutoff(now);
    deleted.usage = drain(size, || store.prune_usage(usage_cutoff, batch)).await?;
    let task_cutoff = policy.task_cutoff(now);
    deleted.task_events = drain(size, || store.prune_task_events(task_cutoff, batch)).await?;
    loop {
        let ids = store.prune_tasks(task_cutoff, batch).await?;
        deleted.tasks += ids.len() as u64;
        for id in ids.iter().filter(|id| is_plain_id(id)) {
            let dir = tasks_dir.join(id);
            if tokio::fs::remove_dir_all(&dir).await.is_ok() {
                deleted.workspaces += 1;
            }
        }
        if ids.len() < size as usize {
            break;
        }
        tokio::task::yield_now().await;
    }
    if deleted.any() {
        let event = AuditEvent {
            details: serde_json::json!({
                "via": "scheduler",
                "deleted": deleted,
                "before": {
                    "audit": audit_cutoff,
                    "usage": usage_cutoff,
                    "tasks": task_cutoff,
                },
            }),
            ..AuditEvent::new(AuditKind::RetentionDeleted)
        };
        crate::audit::record(store, &event, now).await;
    }
    Ok(deleted)
}

/// The job: [`delete_expired`] every [`RETENTION_INTERVAL`], with the run's
/// start as "now".
pub fn retention(store: Store, policy: RetentionConfig, tasks_dir: PathBuf) -> impl Job {
    job(RETENTION, RETENTION_INTERVAL, move |ctx: JobContext| {
        let store = store.clone();
        let tasks_dir = tasks_dir.clone();
        async move {
            let d = delete_expired(&store, &policy, &tasks_dir, ctx.started_at).await?;
            if d.any() {
                tracing::info!(
                    audit = d.audit,
                    usage = d.usage,
                    tasks = d.tasks,
                    task_events = d.task_events,
                    workspaces = d.workspaces,
                    "deleted data past its retention"
                );
            }
            Ok(())
        }
    })
}
