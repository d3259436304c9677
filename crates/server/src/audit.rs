//! Writing audit records, and who an action is attributed to. The action
//! being audited has already happened, so a failed write is logged loudly
//! rather than undoing it.

use chrono::{DateTime, Utc};
use switchyard_store::{AuditEvent, Store};

/// Who did something, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub key_id: Option<String>,
    /// Redacted key (`sy_1a2b3c4d…`).
    pub key: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    /// `api`, `cli`, `bootstrap` or `worker`.
    pub via: &'static str,
}

impl Actor {
    /// An operator at the command line.
    pub fn cli() -> Self {
        Self {
            via: "cli",
            ..Self::default()
        }
    }

    /// Fills the actor fields of an audit event.
    pub fn stamp(&self, mut event: AuditEvent) -> AuditEvent {
        event.actor_key_id = self.key_id.clone();
        event.actor_key = self.key.clone();
        event.client_ip = self.client_ip.clone();
        event.request_id = self.request_id.clone();
        event
    }
}

pub async fn record(store: &Store, entry: &AuditEvent, at: DateTime<Utc>) {
    if let Err(e) = store.record_audit(entry, at).await {
        tracing::error!(error = %e, event = %entry.event, "could not write audit record");
    }
}
