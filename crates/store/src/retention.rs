//! Deleting data older than its retention, in bounded batches: usage
//! records, and finished tasks with their execution logs. (The audit log
//! keeps its hash chain whole while it shrinks: `audit_chain.rs`.)
//!
//! Each call deletes one batch in one short statement; the caller loops.
//! On SQLite a batch takes its turn on the writer connection, like the hot
//! writes, so that they wait for at most one batch and never in SQLite's
//! busy handler.

use crate::{on_pool, Result, Store, StoreError};
use chrono::{DateTime, Utc};

/// Runs `$body` with `$c`, a connection that may write: SQLite's writer
/// connection, else the pool as `on_pool!` gives it.
macro_rules! on_writer {
    ($store:expr, $c:ident => $body:expr) => {{
        let store: &Store = $store;
        match store {
            Store::Sqlite(sqlite) => {
                let mut turn = sqlite.writer().await?;
                let done: Result<_> = async {
                    let $c = turn.conn()?;
                    Ok($body?)
                }
                .await;
                if done.is_err() {
                    turn.discard();
                }
                done
            }
            _ => on_pool!(store, $c => $body).map_err(StoreError::from),
        }
    }};
}

impl Store {
    /// Deletes up to `batch` usage records from before `before`; returns
    /// how many went.
    pub async fn prune_usage(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        const SQL: &str = "DELETE FROM usage_log WHERE id IN \
            (SELECT id FROM usage_log WHERE timestamp < $1 ORDER BY timestamp LIMIT $2)";
        on_writer!(self, c => sqlx::query(SQL)
            .bind(before)
            .bind(batch.max(1))
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
    }

    /// Deletes up to `batch` execution-log entries of tasks that finished
    /// before `before`; returns how many went.
    pub async fn prune_task_events(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        const SQL: &str = "DELETE FROM task_events WHERE (task_id, seq) IN \
            (SELECT e.task_id, e.seq FROM task_events e JOIN tasks t ON t.id = e.task_id \
            WHERE t.finished_at IS NOT NULL AND t.finished_at < $1 LIMIT $2)";
        on_writer!(self, c => sqlx::query(SQL)
            .bind(before)
            .bind(batch.max(1))
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
    }

    /// Deletes up to `batch` tasks that finished before `before` (with any
    /// execution log left, by cascade); returns their ids, so that their
    /// workspaces can go too.
    pub async fn prune_tasks(&self, before: DateTime<Utc>, batch: i64) -> Result<Vec<String>> {
        const SQL: &str = "DELETE FROM tasks WHERE id IN \
            (SELECT id FROM tasks WHERE finished_at IS NOT NULL AND finished_at < $1 \
            ORDER BY finished_at LIMIT $2) RETURNING id";
        on_writer!(self, c => sqlx::query_scalar(SQL)
            .bind(before)
            .bind(batch.max(1))
            .fetch_all(c)
            .await)
    }
}
