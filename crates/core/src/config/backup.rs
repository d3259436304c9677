//! The backup section: where backups go (a directory or S3-compatible
//! object storage, with its credentials), how long they are kept, when the
//! service makes and restore-tests them, and where a restore test restores
//! to.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::backup::{CronSchedule, Destination};
use crate::secret::Secret;
use std::path::PathBuf;

declare_settings! { Section::Backup;
    BACKUP_DESTINATION: optional,
        "Where `switchyard backup` and the scheduled backups write: a directory, or s3://bucket/prefix (S3-compatible storage, with the AWS_* settings).";
    BACKUP_RETENTION_DAYS: value("30"),
        "Days a backup is kept (1–36500); `backup prune` and the scheduled backup delete older ones.";
    BACKUP_KEEP_MIN: value("7"),
        "Backups kept however old (0–1000): pruning never leaves fewer.";
    BACKUP_SCHEDULE: optional,
        "When the service backs up to BACKUP_DESTINATION and prunes, as a cron schedule in UTC (e.g. `0 3 * * *`); one replica at a time. Unset: no scheduled backups.";
    BACKUP_VERIFY_SCHEDULE: optional,
        "When the service restore-tests the newest backup (`backup verify`), as a cron schedule in UTC (e.g. `0 5 1 * *`). Unset: none.";
    BACKUP_VERIFY_DATABASE_URL: secret,
        "The scratch PostgreSQL database `backup verify` restores into (emptied first, dropped of its tables after). Unset: a temporary database on the backed-up server for PostgreSQL backups, a temporary file for SQLite ones.";
    PG_BIN_DIR: optional,
        "The directory of pg_dump and pg_restore (e.g. /usr/lib/postgresql/17/bin); unset: found on PATH. Their major version must be at least the server's.";
    AWS_ENDPOINT_URL: optional,
        "The S3 endpoint for s3:// destinations (MinIO, Ceph, …); unset: AWS. An http:// endpoint is allowed.";
    AWS_REGION: value("us-east-1"),
        "The S3 region.";
    AWS_ACCESS_KEY_ID: secret,
        "The S3 access key id; unset: the instance's or pod's role (EC2 metadata, web identity).";
    AWS_SECRET_ACCESS_KEY: secret,
        "The S3 secret access key, with AWS_ACCESS_KEY_ID.";
    AWS_SESSION_TOKEN: secret,
        "An S3 session token, for temporary credentials.";
}

/// S3 connection settings.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
}

/// Backups: destination, retention, schedules.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub destination: Option<Destination>,
    pub retention_days: u32,
    pub keep_min: u32,
    pub schedule: Option<CronSchedule>,
    pub verify_schedule: Option<CronSchedule>,
    pub verify_database_url: Option<Secret>,
    pub pg_bin_dir: Option<PathBuf>,
    pub s3: S3Config,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            destination: None,
            retention_days: 30,
            keep_min: 7,
            schedule: None,
            verify_schedule: None,
            verify_database_url: None,
            pg_bin_dir: None,
            s3: S3Config {
                region: "us-east-1".into(),
                ..S3Config::default()
            },
        }
    }
}

pub(super) fn load(r: &mut Reader<'_>) -> BackupConfig {
    let destination = r.parse_with(&BACKUP_DESTINATION, |raw| {
        raw.parse::<Destination>()
            .map_err(|e| format!("`{raw}` is not valid: {e}"))
    });
    let retention_days = r.integer(&BACKUP_RETENTION_DAYS, 1, 36_500) as u32;
    let keep_min = r.integer(&BACKUP_KEEP_MIN, 0, 1000) as u32;
    let schedule = r.parse_with(&BACKUP_SCHEDULE, |raw| raw.parse::<CronSchedule>());
    let verify_schedule = r.parse_with(&BACKUP_VERIFY_SCHEDULE, |raw| raw.parse::<CronSchedule>());
    let verify_database_url = r.secret_url(&BACKUP_VERIFY_DATABASE_URL);
    if let Some(url) = &verify_database_url {
        let u = url.expose();
        if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
            r.problem(
                BACKUP_VERIFY_DATABASE_URL.name,
                "expected a postgres:// URL (SQLite backups are restore-tested in a temporary file)",
            );
        }
    }
    let pg_bin_dir = r.optional_path(&PG_BIN_DIR);
    let endpoint = r.optional_text(&AWS_ENDPOINT_URL);
    if let Some(e) = &endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            r.problem(
                AWS_ENDPOINT_URL.name,
                format!("`{e}` is not an http(s) URL"),
            );
        }
    }
    let region = r.text(&AWS_REGION);
    let access_key_id = r.secret(&AWS_ACCESS_KEY_ID);
    let secret_access_key = r.secret(&AWS_SECRET_ACCESS_KEY);
    if access_key_id.is_some() != secret_access_key.is_some() {
        r.problem(
            AWS_SECRET_ACCESS_KEY.name,
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY together",
        );
    }
    let session_token = r.secret(&AWS_SESSION_TOKEN);
    if (schedule.is_some() || verify_schedule.is_some()) && destination.is_none() {
        r.problem(
            BACKUP_DESTINATION.name,
            "BACKUP_SCHEDULE and BACKUP_VERIFY_SCHEDULE need a BACKUP_DESTINATION",
        );
    }
    BackupConfig {
        destination,
        retention_days,
        keep_min,
        schedule,
        verify_schedule,
        verify_database_url,
        pg_bin_dir,
        s3: S3Config {
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, variables};

    #[test]
    fn backups_default_to_thirty_days_and_no_schedule() {
        let l = load(&[]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let b = &l.config.backup;
        assert_eq!((b.retention_days, b.keep_min), (30, 7));
        assert!(b.destination.is_none() && b.schedule.is_none());
        assert_eq!(b.s3.region, "us-east-1");
    }

    #[test]
    fn bad_backup_settings_are_named() {
        let l = load(&[
            ("BACKUP_SCHEDULE", "daily at three"),
            ("BACKUP_RETENTION_DAYS", "0"),
            ("BACKUP_VERIFY_DATABASE_URL", "sqlite://x.db"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_ENDPOINT_URL", "localhost:9000"),
        ]);
        assert_eq!(
            variables(&l),
            [
                "BACKUP_RETENTION_DAYS",
                "BACKUP_SCHEDULE",
                "BACKUP_VERIFY_DATABASE_URL",
                "AWS_ENDPOINT_URL",
                "AWS_SECRET_ACCESS_KEY",
            ]
        );
        let l = load(&[("BACKUP_SCHEDULE", "0 3 * * *")]);
        assert_eq!(variables(&l), ["BACKUP_DESTINATION"]);
        let l = load(&[
            ("BACKUP_SCHEDULE", "0 3 * * *"),
            ("BACKUP_DESTINATION", "s3://backups/prod"),
        ]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(
            l.config.backup.schedule.map(|s| s.to_string()).as_deref(),
            Some("0 3 * * *")
        );
    }
}
