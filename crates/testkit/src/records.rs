//! Usage rows for tests that need some in a database.

use chrono::{DateTime, Duration, Utc};
use switchyard_store::UsageRecord;

/// A usage row of one successful chat call by `key_id` in project `p` at
/// `at`: one token each way, one nano-USD, no model named. Tests set what
/// they look at with struct update syntax.
pub fn usage_record(request_id: &str, key_id: &str, at: DateTime<Utc>) -> UsageRecord {
    UsageRecord {
        timestamp: at,
        request_id: request_id.into(),
        key_id: key_id.into(),
        project: "p".into(),
        endpoint: "/v1/chat/completions".into(),
        model_requested: None,
        model_used: None,
        backend: None,
        input_tokens: 1,
        output_tokens: 1,
        cached_tokens: 0,
        cost_nano_usd: 1,
        latency_ms: 1,
        upstream_latency_ms: None,
        status: 200,
        error_type: None,
    }
}

/// The `i`th row of a run of calls by `key_a` to model `m` through the
/// `openai` backend, `i` microseconds after `t`, every column set.
pub fn usage_row(i: i64, t: DateTime<Utc>) -> UsageRecord {
    UsageRecord {
        model_requested: Some("m".into()),
        model_used: Some("m".into()),
        backend: Some("openai".into()),
        input_tokens: 10,
        cost_nano_usd: 3,
        latency_ms: 5,
        upstream_latency_ms: Some(4),
        ..usage_record(&format!("req-{i}"), "key_a", t + Duration::microseconds(i))
    }
}
