//! The scheduled backups: `backup.create` takes a backup to
//! `BACKUP_DESTINATION` and prunes it to the retention when
//! `BACKUP_SCHEDULE` fires; `backup.verify` restore-tests the newest backup
//! when `BACKUP_VERIFY_SCHEDULE` fires. Each runs on one replica at a time.
//!
//! The scheduler looks every 15 s; a run does the work only when its cron
//! schedule has fired since the last attempt recorded in `backup_runs` (by
//! any replica, or by `switchyard backup` from the command line), so a time
//! missed while the service was down is caught up when it is back, and a
//! failed attempt is not repeated until the schedule fires again (the
//! `BackupStale` and `RestoreUntested` alerts tell). A restore test with no
//! backup to test yet (a new deployment) is not an attempt: it looks again.

use super::{job, Job, JobContext};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use switchyard_backup::{Backups, Progress};
use switchyard_core::backup::CronSchedule;

/// The jobs' names (and their leases').
pub const BACKUP_CREATE: &str = "backup.create";
pub const BACKUP_VERIFY: &str = "backup.verify";

/// How often the scheduler looks whether a schedule has fired.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(15);

/// Whether `schedule` has fired since `last_attempt` (true when there was
/// none and it has ever fired).
pub fn due(
    schedule: &CronSchedule,
    last_attempt: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    match (schedule.last_at_or_before(now), last_attempt) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(fired), Some(last)) => last < fired,
    }
}

/// Progress as log lines.
struct Logged(&'static str);

impl Progress for Logged {
    fn phase(&self, what: &str) {
        tracing::info!(job = self.0, "{what}");
    }
    fn bytes(&self, _: &str, _: u64, _: Option<u64>) {}
}

/// `backup.create`: backup and prune when `schedule` fires.
pub fn create_job(backups: Arc<Backups>, schedule: CronSchedule) -> impl Job {
    job(BACKUP_CREATE, CHECK_INTERVAL, move |ctx: JobContext| {
        let backups = backups.clone();
        let schedule = schedule.clone();
        async move {
            let last = backups.store.last_backup_run("backup", false).await?;
            if !due(&schedule, last.map(|r| r.started_at), ctx.started_at) {
                return Ok(());
            }
            let target = backups.target(None)?;
            let manifest = backups.create(&target, &Logged(BACKUP_CREATE)).await?;
            tracing::info!(
                backup = %manifest.id,
                size_bytes = manifest.size_bytes,
                duration_ms = manifest.duration_ms,
                destination = target.shown(),
                "backup written"
            );
            let pruned = backups.prune(&target, ctx.started_at, false).await?;
            if !pruned.is_empty() {
                tracing::info!(pruned = pruned.len(), "old backups deleted");
            }
            Ok(())
        }
    })
}

/// `backup.verify`: restore-test the newest backup when `schedule` fires.
pub fn verify_job(backups: Arc<Backups>, schedule: CronSchedule) -> impl Job {
    job(BACKUP_VERIFY, CHECK_INTERVAL, move |ctx: JobContext| {
        let backups = backups.clone();
        let schedule = schedule.clone();
        async move {
            let last = backups.store.last_backup_run("verify", false).await?;
            if !due(&schedule, last.map(|r| r.started_at), ctx.started_at) {
                return Ok(());
            }
            let target = backups.target(None)?;
            // Nothing to test yet (a new deployment whose first backup is
            // still being taken): not an attempt; look again next time.
            if backups.list(&target).await?.is_empty() {
                tracing::info!(
                    destination = target.shown(),
                    "no backup to restore-test yet"
                );
                return Ok(());
            }
            let report = backups
                .verify(&target, None, &Logged(BACKUP_VERIFY))
                .await?;
            tracing::info!(
                backup = %report.id,
                tables = report.tables,
                rows = report.rows,
                keys = report.keys_looked_up,
                "backup restore-tested"
            );
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_due_once_per_firing_and_catches_up() {
        let daily: CronSchedule = "0 3 * * *".parse().unwrap();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let now = t("2026-11-29T10:00:00Z");
        assert!(due(&daily, None, now));
        assert!(due(&daily, Some(t("2026-11-28T03:00:05Z")), now));
        assert!(!due(&daily, Some(t("2026-11-29T03:00:01Z")), now));
        // Down at 03:00, back at 10:00: the missed backup runs now.
        assert!(due(&daily, Some(t("2026-11-27T03:00:00Z")), now));
    }
}
