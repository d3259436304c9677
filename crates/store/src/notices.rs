//! The `key_notices` repository: which rotation notices were sent to key
//! owners, so that no replica sends one twice.
//!
//! A replica claims a notice before sending it: an insert that succeeds only
//! for a new notice, or one whose earlier claim was never completed and has
//! gone stale (its sender failed or died). Times come from the caller's
//! clock.

use crate::{on_pool, Result, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One notice as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct NoticeRecord {
    pub key_id: String,
    /// `days_14`, `days_7` or `due`.
    pub notice: String,
    pub due_at: DateTime<Utc>,
    /// The replica that claimed it last.
    pub claimed_by: String,
    pub claimed_at: DateTime<Utc>,
    /// Delivery attempts over all claims.
    pub attempts: i64,
    /// When the webhook accepted it; `None` while it is unsent.
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl Store {
    /// Claims the notice for `replica`: true when this call may send it. A
    /// notice already sent is never claimed again; an unsent one only when
    /// its last claim is older than `stale_before`.
    pub async fn claim_notice(
        &self,
        key_id: &str,
        notice: &str,
        due_at: DateTime<Utc>,
        replica: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool> {
        const SQL: &str = concat!(
            "INSERT INTO key_notices (key_id, notice, due_at, claimed_by, claimed_at, attempts) ",
            "VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (key_id, notice) DO UPDATE SET ",
            "due_at = excluded.due_at, claimed_by = excluded.claimed_by, ",
            "claimed_at = excluded.claimed_at ",
            "WHERE key_notices.sent_at IS NULL AND key_notices.claimed_at < $6"
        );
        let claimed = on_pool!(self, p => sqlx::query(SQL)
            .bind(key_id)
            .bind(notice)
            .bind(due_at)
            .bind(replica)
            .bind(now)
            .bind(stale_before)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(claimed > 0)
    }

    /// Records how `replica`'s claim ended: `attempts` more delivery
    /// attempts, sent at `sent_at` or failed with `error`. A claim another
    /// replica has taken over since is left alone.
    pub async fn finish_notice(
        &self,
        key_id: &str,
        notice: &str,
        replica: &str,
        attempts: i64,
        sent_at: Option<DateTime<Utc>>,
        error: Option<&str>,
    ) -> Result<bool> {
        const SQL: &str = "UPDATE key_notices SET attempts = attempts + $4, sent_at = $5, \
            last_error = $6 WHERE key_id = $1 AND notice = $2 AND claimed_by = $3";
        let updated = on_pool!(self, p => sqlx::query(SQL)
            .bind(key_id)
            .bind(notice)
            .bind(replica)
            .bind(attempts)
            .bind(sent_at)
            .bind(error)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(updated > 0)
    }

    /// Every notice, by key and notice.
    pub async fn list_notices(&self) -> Result<Vec<NoticeRecord>> {
        const SQL: &str = "SELECT key_id, notice, due_at, claimed_by, claimed_at, attempts, \
            sent_at, last_error FROM key_notices ORDER BY key_id, notice";
        Ok(crate::read_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await)?)
    }
}
