//! The retention section: how long audit records, usage records and
//! finished tasks (with their execution logs) are kept, and how many rows a
//! deletion takes at a time. The scheduled job `retention.delete_expired`
//! applies them.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use chrono::{DateTime, Utc};

declare_settings! { Section::Retention;
    AUDIT_RETENTION_DAYS: value("90"),
        "Days an audit record is kept (1–36500); older records are deleted oldest first, the hash chain staying verifiable from the oldest kept one.";
    USAGE_RETENTION_DAYS: value("400"),
        "Days a usage record is kept (1–36500); budgets keep their own totals.";
    TASK_RETENTION_DAYS: value("90"),
        "Days a finished task is kept with its execution log, prompts and outputs (1–36500); its workspace goes with it at the latest.";
    RETENTION_BATCH_SIZE: value("1000"),
        "Rows one deletion statement removes at most (1–10000): each batch is one short transaction.";
}

/// How long each kind of data is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Days audit records are kept (`AUDIT_RETENTION_DAYS`).
    pub audit_days: u32,
    /// Days usage records are kept (`USAGE_RETENTION_DAYS`).
    pub usage_days: u32,
    /// Days finished tasks and their execution logs are kept
    /// (`TASK_RETENTION_DAYS`).
    pub task_days: u32,
    /// Rows one deletion removes at most (`RETENTION_BATCH_SIZE`).
    pub batch_size: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            audit_days: 90,
            usage_days: 400,
            task_days: 90,
            batch_size: 1000,
        }
    }
}

/// The first instant that is kept when data `days` old goes, as of `now`.
fn cutoff(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    now - chrono::Duration::days(i64::from(days))
}

impl RetentionConfig {
    /// Audit records before this are deleted.
    pub fn audit_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        cutoff(now, self.audit_days)
    }

    /// Usage records before this are deleted.
    pub fn usage_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        cutoff(now, self.usage_days)
    }

    /// Tasks finished before this are deleted.
    pub fn task_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        cutoff(now, self.task_days)
    }
}

pub(super) fn load(r: &mut Reader<'_>) -> RetentionConfig {
    fn days(r: &mut Reader<'_>, s: &super::Setting) -> u32 {
        r.integer(s, 1, 36_500) as u32
    }
    RetentionConfig {
        audit_days: days(r, &AUDIT_RETENTION_DAYS),
        usage_days: days(r, &USAGE_RETENTION_DAYS),
        task_days: days(r, &TASK_RETENTION_DAYS),
        batch_size: r.integer(&RETENTION_BATCH_SIZE, 1, 10_000) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, variables};
    use super::*;

    #[test]
    fn retention_defaults_follow_the_policy_and_bounds_are_checked() {
        let l = load(&[]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.config.retention, RetentionConfig::default());
        let l = load(&[
            ("AUDIT_RETENTION_DAYS", "0"),
            ("USAGE_RETENTION_DAYS", "forever"),
            ("TASK_RETENTION_DAYS", "7"),
            ("RETENTION_BATCH_SIZE", "10001"),
        ]);
        assert_eq!(
            variables(&l),
            [
                "AUDIT_RETENTION_DAYS",
                "USAGE_RETENTION_DAYS",
                "RETENTION_BATCH_SIZE"
            ]
        );
        assert_eq!(l.config.retention.task_days, 7);
        let now = crate::now();
        assert_eq!(
            l.config.retention.task_cutoff(now),
            now - chrono::Duration::days(7)
        );
    }
}
