//! The `audit_log` repository: significant events, with the acting key
//! redacted to its display prefix.

use crate::{on_pool, Result, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One event to record. `actor_key` is already redacted (`sy_1a2b3c4d…`).
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    pub event: &'static str,
    pub actor_key_id: Option<String>,
    pub actor_key: Option<String>,
    pub project: Option<String>,
    pub target: Option<String>,
    pub task_id: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

/// A recorded event as read back.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    pub event: String,
    pub actor_key_id: Option<String>,
    pub actor_key: Option<String>,
    pub project: Option<String>,
    pub target: Option<String>,
    pub task_id: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
}

impl Store {
    pub async fn record_audit(&self, e: &AuditEvent, at: DateTime<Utc>) -> Result<()> {
        const SQL: &str = "INSERT INTO audit_log (timestamp, event, actor_key_id, actor_key, \
            project, target, task_id, client_ip, request_id, details) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        let details = if e.details.is_null() {
            "{}".to_owned()
        } else {
            e.details.to_string()
        };
        on_pool!(self, p => sqlx::query(SQL)
            .bind(at)
            .bind(e.event)
            .bind(&e.actor_key_id)
            .bind(&e.actor_key)
            .bind(&e.project)
            .bind(&e.target)
            .bind(&e.task_id)
            .bind(&e.client_ip)
            .bind(&e.request_id)
            .bind(details)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The most recent events, newest first.
    pub async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        const SQL: &str = "SELECT id, timestamp, event, actor_key_id, actor_key, project, target, \
            task_id, client_ip, request_id, details FROM audit_log \
            ORDER BY timestamp DESC, id DESC LIMIT $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(limit).fetch_all(p).await)?)
    }
}
