//! The vocabulary of backups: where they go ([`Destination`]), when they
//! run ([`CronSchedule`]), how they are named ([`BackupId`]) and what each
//! one records about itself ([`Manifest`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where backups are written: a local directory, or a bucket (and key
/// prefix) of S3-compatible object storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid_bucket {
                return Err(format!(
                    "`{bucket}` is not an S3 bucket name: 3 to 63 lowercase letters, digits, `-` and `.`"
                ));
            }
            return Ok(Destination::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if s.contains("://") {
            return Err(format!(
                "`{s}` is not a backup destination: expected a directory or s3://bucket/prefix"
            ));
        }
        if s.is_empty() {
            return Err("expected a directory or s3://bucket/prefix".into());
        }
        Ok(Destination::Dir(PathBuf::from(s)))
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Dir(p) => write!(f, "{}", p.display()),
            Destination::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Destination::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// A cron schedule (five fields, minute granularity, UTC), as
/// `BACKUP_SCHEDULE` and `BACKUP_VERIFY_SCHEDULE` take it.
#[derive(Clone)]
pub struct CronSchedule {
    text: String,
    cron: croner::Cron,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl FromStr for CronSchedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim().to_owned();
        if text.split_whitespace().count() != 5 && !text.starts_with('@') {
            return Err(format!(
                "`{text}` is not a cron schedule: expected five fields (minute hour day-of-month month day-of-week), e.g. `0 3 * * *`"
            ));
        }
        let cron = text
            .parse::<croner::Cron>()
            .map_err(|e| format!("`{text}` is not a cron schedule: {e}"))?;
        Ok(Self { text, cron })
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl CronSchedule {
    /// The first time the schedule fires strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The last time the schedule fired at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&t, true).ok()
    }
}

/// A backup's name: `switchyard-YYYYMMDDTHHMMSSZ-ENGINE`, sortable by time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

impl BackupId {
    pub fn new(at: DateTime<Utc>, engine: &str) -> Self {
        Self(format!(
            "switchyard-{}-{engine}",
            at.format("%Y%m%dT%H%M%SZ")
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BackupId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ok = s.starts_with("switchyard-")
            && s.len() <= 80
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a backup id: expected switchyard-YYYYMMDDTHHMMSSZ-ENGINE (see `switchyard backup list`)"
            ))
        }
    }
}

impl TryFrom<String> for BackupId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One table as the backup saw it, inside the snapshot it copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    pub name: String,
    pub rows: u64,
    /// SHA-256 over the rows in primary-key order, one canonical text line
    /// each (the engine's own text form of each value).
    pub sha256: String,
}

/// What a backup records about itself, stored beside the archive as
/// `ID.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: BackupId,
    /// Always 1 for this layout.
    pub format: u32,
    pub created_at: DateTime<Utc>,
    /// `sqlite` or `postgres`.
    pub engine: String,
    /// The service version that wrote it.
    pub service_version: String,
    /// The newest schema migration applied to the database backed up.
    pub schema_version: i64,
    /// The archive's file name (beside the manifest).
    pub archive: String,
    /// The archive's size in bytes, and its SHA-256.
    pub size_bytes: u64,
    pub sha256: String,
    /// For PostgreSQL, the server's major version and the pg_dump that
    /// wrote the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    pub duration_ms: u64,
    pub tables: Vec<TableSummary>,
}

impl Manifest {
    pub const FORMAT: u32 = 1;

    /// The manifest's file name for a backup.
    pub fn file_name(id: &BackupId) -> String {
        format!("{id}.json")
    }
}

/// Which backups pruning deletes: those older than `retention_days`, but
/// never so many that fewer than `keep_min` remain (the newest are kept).
/// `backups` are (id, created_at) in any order; the answer is sorted.
pub fn to_prune(
    backups: &[(BackupId, DateTime<Utc>)],
    now: DateTime<Utc>,
    retention_days: u32,
    keep_min: u32,
) -> Vec<BackupId> {
    let mut sorted: Vec<&(BackupId, DateTime<Utc>)> = backups.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let cutoff = now - chrono::Duration::days(i64::from(retention_days));
    let mut out: Vec<BackupId> = sorted
        .iter()
        .skip(keep_min as usize)
        .filter(|(_, at)| *at < cutoff)
        .map(|(id, _)| id.clone())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn destinations_parse_and_print() {
        assert_eq!(
            "s3://my-bucket/switchyard/prod/".parse::<Destination>(),
            Ok(Destination::S3 {
                bucket: "my-bucket".into(),
                prefix: "switchyard/prod".into()
            })
        );
        assert_eq!(
            "s3://my-bucket".parse::<Destination>().unwrap().to_string(),
            "s3://my-bucket"
        );
        assert_eq!(
            "/var/backups/switchyard".parse::<Destination>(),
            Ok(Destination::Dir("/var/backups/switchyard".into()))
        );
        assert!("s3://A_B/x"
            .parse::<Destination>()
            .unwrap_err()
            .contains("bucket"));
        assert!("gs://b/x"
            .parse::<Destination>()
            .unwrap_err()
            .contains("s3://"));
        assert!("".parse::<Destination>().is_err());
    }

    #[test]
    fn schedules_take_five_fields_and_find_the_next_time() {
        let daily: CronSchedule = "0 3 * * *".parse().unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap();
        assert_eq!(
            daily.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 0).unwrap())
        );
        assert_eq!(daily.last_at_or_before(t), Some(t));
        assert!("0 3 * *"
            .parse::<CronSchedule>()
            .unwrap_err()
            .contains("five fields"));
        assert!("0 25 * * *".parse::<CronSchedule>().is_err());
        assert!("* * * * * *".parse::<CronSchedule>().is_err());
        assert!("@daily".parse::<CronSchedule>().is_ok());
    }

    #[test]
    fn ids_sort_by_time_and_reject_paths() {
        let a = BackupId::new(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(), "sqlite");
        assert_eq!(a.as_str(), "switchyard-20260102T030405Z-sqlite");
        let b = BackupId::new(Utc.with_ymd_and_hms(2026, 1, 3, 0, 0, 0).unwrap(), "sqlite");
        assert!(a < b);
        assert!("../etc/passwd".parse::<BackupId>().is_err());
        assert!("switchyard-x/../y".parse::<BackupId>().is_err());
    }

    #[test]
    fn pruning_keeps_the_newest_minimum_and_everything_recent() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let backups: Vec<(BackupId, DateTime<Utc>)> = (0..10)
            .map(|d| {
                let at = now - chrono::Duration::days(d * 10);
                (BackupId::new(at, "sqlite"), at)
            })
            .collect();
        // Ages 0, 10, …, 90 days; 30-day retention keeps 0–30 (4 backups).
        assert_eq!(to_prune(&backups, now, 30, 2).len(), 6);
        // A minimum of 7 keeps the newest 7 whatever their age.
        assert_eq!(to_prune(&backups, now, 30, 7).len(), 3);
        assert!(to_prune(&backups, now, 1000, 0).is_empty());
        let pruned = to_prune(&backups, now, 30, 0);
        assert!(pruned.iter().all(|id| id.as_str() < backups[3].0.as_str()));
    }
}
