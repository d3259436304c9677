//! Diagnostics mounted only when `DEBUG=true` (which production refuses):
//! a request that takes as long as asked, for checking timeouts, draining and
//! graceful shutdown end to end, and one that panics, for checking that a
//! handler's panic becomes a 500 and is reported. Needs the `admin` scope.

use crate::error::{ApiError, ApiResult};
use axum::extract::Query;
use axum::Json;
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
pub struct SleepParams {
    /// Milliseconds to wait, at most 600000.
    pub ms: u64,
}

pub async fn sleep(Query(p): Query<SleepParams>) -> ApiResult<Json<serde_json::Value>> {
    if p.ms > 600_000 {
        return Err(ApiError::invalid_request("ms must be at most 600000").with_param("ms"));
    }
    tokio::time::sleep(Duration::from_millis(p.ms)).await;
    Ok(Json(serde_json::json!({ "slept_ms": p.ms })))
}

#[derive(Deserialize)]
pub struct PanicParams {
    /// What the panic says.
    pub message: Option<String>,
}

/// Panics with `message`: the panic layer answers 500, error reporting
/// captures it once.
#[allow(clippy::panic, reason = "this route exists to panic")]
pub async fn panic(Query(p): Query<PanicParams>) -> Json<serde_json::Value> {
    panic!(
        "debug panic: {}",
        p.message.as_deref().unwrap_or("requested")
    )
}
