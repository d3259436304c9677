//! The task queue's scheduled job: settling tasks whose worker died.

use super::{job, Job, JobContext};
use std::time::Duration;
use switchyard_store::Store;

/// The job's name (and its lease's).
pub const SETTLE_ABANDONED: &str = "tasks.settle_abandoned";

/// Half the task lease, at least a second: a task whose worker died is
/// settled within about one and a half leases of the worker's last renewal.
pub fn settle_interval(task_lease: Duration) -> Duration {
    (task_lease / 2).max(Duration::from_secs(1))
}

/// Fails running tasks whose worker stopped renewing their lease and that
/// have no attempts left (tasks with attempts left are claimed again by the
/// workers), and cancels queued tasks flagged for cancellation by older
/// versions. Only concerns tasks whose lease expired, so once per interval
/// across the deployment is enough.
pub fn settle_abandoned(store: Store, task_lease: Duration) -> impl Job {
    job(
        SETTLE_ABANDONED,
        settle_interval(task_lease),
        move |ctx: JobContext| {
            let store = store.clone();
            async move {
                let settled = store.settle_abandoned_tasks(ctx.started_at).await?;
                if settled > 0 {
                    tracing::info!(settled, "settled abandoned tasks");
                }
                Ok(())
            }
        },
    )
}
