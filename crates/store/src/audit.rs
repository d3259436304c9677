//! The `audit_log` repository: significant events, with the acting key
//! redacted to its display prefix, read back in pages. Appending (to the
//! hash chain) is `audit_chain.rs`.

use crate::{on_pool, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use switchyard_core::audit::AuditKind;
use switchyard_core::audit_chain::{ChainLink, ChainedFields};

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

/// A record as stored, with its place in the hash chain; the event is kept
/// as its stored name, so that records of any version read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
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
    /// The details as their stored JSON text.
    pub details: String,
    /// The hash of the record before this one in the chain; `None` for
    /// records written before the chain existed.
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl AuditRecord {
    /// The record as the chain check reads it.
    pub fn link(&self) -> ChainLink<'_> {
        ChainLink {
            id: self.id,
            fields: ChainedFields {
                timestamp: self.timestamp,
                event: &self.event,
                actor_key_id: self.actor_key_id.as_deref(),
                actor_key: self.actor_key.as_deref(),
                project: self.project.as_deref(),
                target: self.target.as_deref(),
                task_id: self.task_id.as_deref(),
                client_ip: self.client_ip.as_deref(),
                request_id: self.request_id.as_deref(),
                details: &self.details,
            },
            prev_hash: self.prev_hash.as_deref(),
            hash: self.hash.as_deref(),
        }
    }
}

/// Which records a listing or an export covers; every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Records at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Records before this time.
    pub to: Option<DateTime<Utc>>,
    /// The event's name, e.g. `key.created`.
    pub event: Option<String>,
    /// Records of actions by this key (the actor) or on it (the target).
    pub key_id: Option<String>,
    pub project: Option<String>,
}

/// Which way a listing runs; the cursor is the last id of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOrder {
    NewestFirst,
    OldestFirst,
}

macro_rules! audit_record_columns {
    () => {
        "id, timestamp, event, actor_key_id, actor_key, project, target, task_id, client_ip, \
         request_id, details, prev_hash, hash"
    };
}
pub(crate) use audit_record_columns;

macro_rules! audit_page_sql {
    ($cursor:literal, $order:literal) => {
        concat!(
            "SELECT ",
            audit_record_columns!(),
            " FROM audit_log WHERE ($1 IS NULL OR timestamp >= $1) ",
            "AND ($2 IS NULL OR timestamp < $2) AND ($3 IS NULL OR event = $3) ",
            "AND ($4 IS NULL OR actor_key_id = $4 OR target = $4) ",
            "AND ($5 IS NULL OR project = $5) AND ($6 IS NULL OR id ",
            $cursor,
            " $6) ORDER BY id ",
            $order,
            " LIMIT $7"
        )
    };
}

impl Store {
    /// Up to `limit` records matching `filter` in `order`, after the record
    /// `after` (the previous page's last id) when given.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        order: AuditOrder,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let sql = match order {
            AuditOrder::NewestFirst => audit_page_sql!("<", "DESC"),
            AuditOrder::OldestFirst => audit_page_sql!(">", "ASC"),
        };
        Ok(crate::read_pool!(self, p => sqlx::query_as(sql)
            .bind(filter.from)
            .bind(filter.to)
            .bind(&filter.event)
            .bind(&filter.key_id)
            .bind(&filter.project)
            .bind(after)
            .bind(limit)
            .fetch_all(p)
            .await)?)
    }
}
