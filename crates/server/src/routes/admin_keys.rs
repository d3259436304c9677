//! Admin API for keys: create, list, show, revoke. Needs the `admin` scope
//! (enforced by the auth layer for every `/v1/admin/` path).

use crate::context::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::keys::{IssueError, RotateError};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::keys::{ApiKey, NewKeySpec, RateLimit, Scope, Scopes, TaskProfile};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// What the key is for, e.g. `billing-service`.
    pub name: String,
    /// The project the key acts for and is billed to.
    pub project: String,
    /// Who to notify about the key (rotation, expiry).
    #[serde(default)]
    pub owner: Option<String>,
    /// Defaults to `["user"]`.
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
    /// Absolute expiry time (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Expiry relative to now, in days (1 to 3650); exclusive with `expires_at`.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// This key's own request rate, replacing `API_RATE_LIMIT` per minute.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    /// The key's own request rate; `null` returns it to `API_RATE_LIMIT`.
    pub rate_limit: Option<RateLimit>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The secret. Shown only in this response; store it now.
    pub key: String,
    #[serde(flatten)]
    pub record: ApiKey,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub object: &'static str,
    pub data: Vec<ApiKey>,
}

#[derive(Deserialize, IntoParams)]
pub struct ListParams {
    /// Include revoked keys (default false).
    #[serde(default)]
    pub include_revoked: bool,
    /// Only the keys due for rotation (`KEY_ROTATION_DAYS`), oldest due
    /// first.
    #[serde(default)]
    pub due: bool,
}

/// A key's expiry from `expires_at` or `expires_in_days` (1 to 3650), at
/// most one of them; neither is no expiry.
pub(crate) fn expiry_from(
    at: Option<DateTime<Utc>>,
    in_days: Option<u32>,
    now: DateTime<Utc>,
) -> ApiResult<Option<DateTime<Utc>>> {
    match (at, in_days) {
        (Some(_), Some(_)) => Err(ApiError::invalid_request(
            "give either expires_at or expires_in_days, not both",
        )
        .with_param("expires_in_days")),
        (Some(at), None) => Ok(Some(at)),
        (None, Some(days)) if (1..=3650).contains(&days) => {
            Ok(Some(now + chrono::Duration::days(i64::from(days))))
        }
        (None, Some(_)) => Err(
            ApiError::invalid_request("expires_in_days must be from 1 to 3650")
                .with_param("expires_in_days"),
        ),
        (None, None) => Ok(None),
    }
}

fn spec_from(req: CreateKeyRequest) -> ApiResult<NewKeySpec> {
    let now = switchyard_core::now();
    let scopes = match req.scopes {
        None => Scopes::user(),
        Some(list) => Scopes::new(list)
            .map_err(|m| ApiError::invalid_request(format!("scopes: {m}")).with_param("scopes"))?,
    };
    let expires_at = expiry_from(req.expires_at, req.expires_in_days, now)?;
    let rate_limit = req.rate_limit;
    let mut spec = NewKeySpec::new(
        &req.name,
        req.owner.as_deref(),
        &req.project,
        scopes,
        expires_at,
        now,
    )
    .map_err(|e| ApiError::invalid_request(e.to_string()).with_param(e.field))?;
    spec.rate_limit = rate_limit;
    Ok(spec)
}

/// Creates a key and returns its secret once.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin",
    security(("api_key" = [])),
    request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let spec = spec_from(req)?;
    let issued = state
        .keys
        .issue(&spec, &auth.actor())
        .await
        .map_err(|e| match e {
            IssueError::Store(s) => ApiError::from(s),
            other => ApiError::internal(&other),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: issued.secret.expose().to_owned(),
            record: issued.key,
        }),
    ))
}

/// Lists keys, newest first. Secrets are never returned.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    security(("api_key" = [])), params(ListParams),
    responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<KeyList>> {
    let data = if params.due {
        let policy = state.config.keys.rotation;
        let due = state.keys.due(&policy, switchyard_core::now()).await?;
        due.into_iter().map(|(k, _)| k).collect()
    } else {
        state.keys.list(params.include_revoked).await?
    };
    Ok(Json(KeyList {
        object: "list",
        data,
    }))
}

/// One key by id.
#[utoipa::path(get, path = "/v1/admin/keys/{id}", tag = "admin",
    security(("api_key" = [])), params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = ApiKey), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKey>> {
    state
        .keys
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| key_not_found(&id))
}

/// Revokes a key. Takes effect on this replica at once and on every replica
/// within `KEY_CACHE_TTL_SECONDS`. Revoking twice keeps the first time.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin",
    security(("api_key" = [])), params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = ApiKey), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKey>> {
    let revoked = state.keys.revoke(&id, &auth.actor()).await?;
    revoked.map(Json).ok_or_else(|| key_not_found(&id))
}

pub(crate) fn key_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no key with id `{id}`")).with_code("key_not_found")
}

/// Changes a key's rate-limit override. Takes effect on this replica at once
/// and on every replica within `KEY_CACHE_TTL_SECONDS`.
#[utoipa::path(patch, path = "/v1/admin/keys/{id}", tag = "admin",
    security(("api_key" = [])), params(("id" = String, Path, description = "key id")),
    request_body = UpdateKeyRequest,
    responses((status = 200, body = ApiKey), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn update_key(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateKeyRequest>,
) -> ApiResult<Json<ApiKey>> {
    let rate_limit = req.rate_limit;
    let updated = state
        .keys
        .set_rate_limit(&id, rate_limit, &auth.actor())
        .await?;
    updated.map(Json).ok_or_else(|| key_not_found(&id))
}

/// Sets (or with `null` clears) what a key's agent tasks may use. Takes
/// effect on this replica at once and everywhere within
/// `KEY_CACHE_TTL_SECONDS`.
#[utoipa::path(put, path = "/v1/admin/keys/{id}/task-profile", tag = "admin",
    security(("api_key" = [])), params(("id" = String, Path, description = "key id")),
    request_body = Option<TaskProfile>,
    responses((status = 200, body = ApiKey), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn set_task_profile(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(profile): ApiJson<Option<TaskProfile>>,
) -> ApiResult<Json<ApiKey>> {
    if let Some(p) = &profile {
        p.validate()
            .map_err(|m| ApiError::invalid_request(m).with_param("task_profile"))?;
    }
    let updated = state
        .keys
        .set_task_profile(&id, profile.as_ref(), &auth.actor())
        .await?;
    let Some(key) = updated else {
        return Err(key_not_found(&id));
    };
    Ok(Json(key))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How many days the old key keeps working (0 to 90; default
    /// `KEY_ROTATION_GRACE_DAYS`, 7). 0 ends it at once.
    #[serde(default)]
    pub grace_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct RotatedKey {
    /// The successor's secret. Shown only in this response; store it now.
    pub key: String,
    /// The successor.
    #[serde(flatten)]
    pub record: ApiKey,
    /// The old key, now expiring at the end of its grace period.
    pub previous: ApiKey,
}

/// Rotates a key: issues a successor with the same name, owner, project,
/// scopes, limits and task profile, and lets the old key work until the end
/// of its grace period (its new `expires_at`). Calls made with the old key
/// meanwhile carry `x-switchyard-key-grace-ends` and `sunset` headers.
#[utoipa::path(post, path = "/v1/admin/keys/{id}/rotate", tag = "admin",
    security(("api_key" = [])), params(("id" = String, Path, description = "key id")),
    request_body(content = Option<RotateKeyRequest>, description = "optional; `{}` or no body for the defaults"),
    responses((status = 201, body = RotatedKey), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn rotate_key(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<RotatedKey>)> {
    let req: RotateKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKeyRequest::default()
    } else {
        crate::json::parse_body(&body)?
    };
    let grace_days = req
        .grace_days
        .unwrap_or(state.config.keys.rotation_grace_days);
    let rotated = state
        .keys
        .rotate(&id, grace_days, &auth.actor())
        .await
        .map_err(rotate_error)?;
    Ok((
        StatusCode::CREATED,
        Json(RotatedKey {
            key: rotated.successor.secret.expose().to_owned(),
            record: rotated.successor.key,
            previous: rotated.previous,
        }),
    ))
}

pub(crate) fn rotate_error(e: RotateError) -> ApiError {
    let conflict = |code, message: String| {
        ApiError::new(StatusCode::CONFLICT, "conflict_error", message).with_code(code)
    };
    match e {
        RotateError::NotFound(id) => key_not_found(&id),
        e @ RotateError::Revoked(_) => conflict("key_revoked", e.to_string()),
        e @ RotateError::Expired(_) => conflict("key_expired", e.to_string()),
        e @ RotateError::AlreadyRotated { .. } => conflict("key_already_rotated", e.to_string()),
        e @ RotateError::Grace => ApiError::invalid_request(e.to_string()).with_param("grace_days"),
        RotateError::Issue(IssueError::Store(s)) => ApiError::from(s),
        RotateError::Issue(other) => ApiError::internal(&other),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetExpiryRequest {
    /// The new expiry (RFC 3339, in the future), or `null` for none.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Expiry relative to now, in days (1 to 3650); exclusive with `expires_at`.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// Sets (or with `{"expires_at": null}` clears) a key's expiry. Takes effect
/// on this replica at once and everywhere within `KEY_CACHE_TTL_SECONDS`.
#[utoipa::path(put, path = "/v1/admin/keys/{id}/expiry", tag = "admin",
    security(("api_key" = [])), params(("id" = String, Path, description = "key id")),
    request_body = SetExpiryRequest,
    responses((status = 200, body = ApiKey), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn set_expiry(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetExpiryRequest>,
) -> ApiResult<Json<ApiKey>> {
    let now = switchyard_core::now();
    let expires_at = expiry_from(req.expires_at, req.expires_in_days, now)?;
    if expires_at.is_some_and(|at| at <= now) {
        return Err(
            ApiError::invalid_request("expires_at must be in the future").with_param("expires_at"),
        );
    }
    let updated = state
        .keys
        .set_expiry(&id, expires_at, &auth.actor())
        .await?;
    updated.map(Json).ok_or_else(|| key_not_found(&id))
}
