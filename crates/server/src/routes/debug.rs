//! Diagnostics mounted only when `DEBUG=true` (which production refuses):
//! a request that takes as long as asked, for checking timeouts, draining and
//! graceful shutdown end to end. Needs the `admin` scope.

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
