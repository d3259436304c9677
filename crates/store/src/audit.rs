//! The `audit_log` repository: significant events, with the acting key
//! redacted to its display prefix.

use crate::{on_pool, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use switchyard_core::audit::AuditKind;

/// One event to record. `actor_key` is already redacted (`sy_1a2b3c4d…`).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub event: AuditKind,
    pub actor_key_id: Option<String>,
    pub actor_key: Option<String>,
    pub project: Option<String>,
    pub target: Option<String>,
    pub task_id: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// An event of `kind` with no other field set yet.
    pub fn new(kind: AuditKind) -> Self {
        Self {
            event: kind,
            actor_key_id: None,
            actor_key: None,
            project: None,
            target: None,
            task_id: None,
            client_ip: None,
            request_id: None,
            details: serde_json::Value::Null,
        }
    }
}

/// A recorded event as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    pub event: AuditKind,
    pub actor_key_id: Option<String>,
    pub actor_key: Option<String>,
    pub project: Option<String>,
    pub target: Option<String>,
    pub task_id: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
}

/// An event as its columns hold it.
#[derive(sqlx::FromRow)]
struct RawEntry {
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

impl TryFrom<RawEntry> for AuditEntry {
    type Error = StoreError;
    fn try_from(r: RawEntry) -> Result<Self> {
        Ok(AuditEntry {
            event: r.event.parse().map_err(StoreError::Corrupt)?,
            id: r.id,
            timestamp: r.timestamp,
            actor_key_id: r.actor_key_id,
            actor_key: r.actor_key,
            project: r.project,
            target: r.target,
            task_id: r.task_id,
            client_ip: r.client_ip,
            request_id: r.request_id,
            details: r.details,
        })
    }
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
            .bind(e.event.as_str())
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
        let rows: Vec<RawEntry> =
            on_pool!(self, p => sqlx::query_as(SQL).bind(limit).fetch_all(p).await)?;
        rows.into_iter().map(AuditEntry::try_from).collect()
    }
}
