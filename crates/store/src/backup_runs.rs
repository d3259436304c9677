//! The `backup_runs` repository: every backup and restore test, wherever
//! it ran, so that each replica can say when the last good one was.

use crate::{on_pool, Result, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One backup (`kind` = `backup`) or restore test (`verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BackupRun {
    pub id: String,
    pub kind: String,
    pub backup_id: Option<String>,
    pub destination: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    pub size_bytes: Option<i64>,
    pub error: Option<String>,
}

impl Store {
    pub async fn record_backup_run(&self, run: &BackupRun) -> Result<()> {
        const SQL: &str = concat!(
            "INSERT INTO backup_runs (id, kind, backup_id, destination, started_at, finished_at, ",
            "ok, size_bytes, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        on_pool!(self, p => sqlx::query(SQL)
            .bind(&run.id)
            .bind(&run.kind)
            .bind(&run.backup_id)
            .bind(&run.destination)
            .bind(run.started_at)
            .bind(run.finished_at)
            .bind(run.ok)
            .bind(run.size_bytes)
            .bind(&run.error)
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The latest run of `kind` (`backup` or `verify`), or the latest
    /// successful one.
    pub async fn last_backup_run(&self, kind: &str, only_good: bool) -> Result<Option<BackupRun>> {
        const SQL: &str = concat!(
            "SELECT id, kind, backup_id, destination, started_at, finished_at, ok, size_bytes, ",
            "error FROM backup_runs WHERE kind = $1 AND (ok OR NOT $2) ",
            "ORDER BY finished_at DESC LIMIT 1"
        );
        Ok(on_pool!(self, p => sqlx::query_as::<_, BackupRun>(SQL)
            .bind(kind)
            .bind(only_good)
            .fetch_optional(p)
            .await)?)
    }

    /// The most recent runs, newest first.
    pub async fn recent_backup_runs(&self, limit: i64) -> Result<Vec<BackupRun>> {
        const SQL: &str = concat!(
            "SELECT id, kind, backup_id, destination, started_at, finished_at, ok, size_bytes, ",
            "error FROM backup_runs ORDER BY finished_at DESC LIMIT $1"
        );
        Ok(on_pool!(self, p => sqlx::query_as::<_, BackupRun>(SQL)
            .bind(limit)
            .fetch_all(p)
            .await)?)
    }
}
