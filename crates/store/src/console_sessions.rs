//! The `console_sessions_ended` repository: console sessions signed out
//! before their token expired, shared by every replica of the database.

use crate::{on_pool, Result, Store};

impl Store {
    /// Records that the session `jti`, whose token is good until
    /// `expires_at` (unix seconds), was signed out; records already past
    /// their expiry at `now` are dropped on the way. Ending a session twice
    /// keeps the first record.
    pub async fn end_console_session(&self, jti: &str, expires_at: i64, now: i64) -> Result<()> {
        const EXPIRED: &str = "DELETE FROM console_sessions_ended WHERE expires_at <= $1";
        const END: &str = "INSERT INTO console_sessions_ended (jti, expires_at) VALUES ($1, $2) \
            ON CONFLICT (jti) DO NOTHING";
        on_pool!(self, p => sqlx::query(EXPIRED).bind(now).execute(p).await.map(|_| ()))?;
        on_pool!(self, p => sqlx::query(END).bind(jti).bind(expires_at).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Whether the session `jti` was signed out (and its token has not
    /// expired by `now`).
    pub async fn console_session_ended(&self, jti: &str, now: i64) -> Result<bool> {
        const SQL: &str = "SELECT COUNT(*) FROM console_sessions_ended \
            WHERE jti = $1 AND expires_at > $2";
        let n: i64 =
            on_pool!(self, p => sqlx::query_scalar(SQL).bind(jti).bind(now).fetch_one(p).await)?;
        Ok(n > 0)
    }
}
