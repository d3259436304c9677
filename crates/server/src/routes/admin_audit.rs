//! `GET /v1/admin/audit`: the audit log, newest first, filtered by time,
//! event, key and project, one page at a time behind an opaque cursor.
//! Needs the `admin` scope.

use crate::audit_trail::{self, AuditPage, FilterInput, InvalidQuery};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Records at or after this time: RFC 3339, `YYYY-MM-DD` (UTC), or an
    /// age such as `7d`, `12h`, `30m`.
    pub from: Option<String>,
    /// Records before this time, in the same forms.
    pub to: Option<String>,
    /// One event name, e.g. `key.created`.
    pub event: Option<String>,
    /// Records of actions by this key or on it.
    pub key_id: Option<String>,
    /// Records of this project.
    pub project: Option<String>,
    /// Records per page, 1–1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl From<InvalidQuery> for ApiError {
    fn from(e: InvalidQuery) -> Self {
        ApiError::invalid_request(e.to_string())
            .with_code("invalid_parameter")
            .with_param(e.field)
    }
}

/// Reads the audit log, newest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin",
    security(("api_key" = [])), params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    let Query(p) = query.map_err(|r| {
        ApiError::invalid_request(format!("invalid query string: {}", r.body_text()))
            .with_code("invalid_parameter")
    })?;
    let filter = FilterInput {
        from: p.from.as_deref(),
        to: p.to.as_deref(),
        event: p.event.as_deref(),
        key_id: p.key_id.as_deref(),
        project: p.project.as_deref(),
    }
    .parse(chrono::Utc::now())?;
    let cursor = p
        .cursor
        .as_deref()
        .map(audit_trail::parse_cursor)
        .transpose()?;
    let limit = p
        .limit
        .as_deref()
        .map(audit_trail::parse_limit)
        .transpose()?
        .unwrap_or(audit_trail::DEFAULT_PAGE);
    Ok(Json(
        audit_trail::page(&state.store, &filter, cursor, limit).await?,
    ))
}
