//! Writing audit records. The action being audited has already happened, so
//! a failed write is logged loudly rather than undoing it.

use chrono::{DateTime, Utc};
use switchyard_store::{AuditEvent, Store};

pub async fn record(store: &Store, entry: &AuditEvent, at: DateTime<Utc>) {
    if let Err(e) = store.record_audit(entry, at).await {
        tracing::error!(error = %e, event = entry.event, "could not write audit record");
    }
}
