//! `POST /v1/auth/token`: exchanges an API key for a short-lived access
//! token (an HS256 JWT, at most an hour, never past the key's expiry) that
//! is accepted wherever the key is.

use crate::context::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::keys::{Scope, Scopes};
use switchyard_core::tokens::{TokenClaims, ISSUER, MAX_TTL_SECONDS};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// How long the token lives, 1 to 3600 seconds (default 3600); never
    /// past the key's own expiry.
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
    /// A subset of the key's scopes for the token (default: all of them).
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
    pub expires_at: DateTime<Utc>,
    /// The key the token stands for.
    pub key_id: String,
    pub scopes: Scopes,
}

/// Exchanges the API key this request is made with for an access token.
/// A token cannot mint further tokens. Revoking the key ends its tokens
/// within `KEY_CACHE_TTL_SECONDS`.
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth",
    security(("api_key" = [])),
    request_body(content = Option<TokenRequest>, description = "optional; `{}` or no body for the defaults"),
    responses((status = 201, body = TokenResponse), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 501, body = crate::error::ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    auth: Authenticated,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let req: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        crate::json::parse_body(&body)?
    };
    let Some(signer) = &state.tokens else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "invalid_request_error",
            "access tokens are disabled: this service has no JWT_SECRET",
        )
        .with_code("tokens_disabled"));
    };
    if auth.caller.token.is_some() {
        return Err(ApiError::forbidden(
            "api_key_required",
            "an access token cannot mint further tokens; present the API key itself",
        ));
    }
    let key = &auth.caller.key;
    let ttl = req.ttl_seconds.unwrap_or(MAX_TTL_SECONDS);
    if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(ApiError::invalid_request(format!(
            "ttl_seconds must be from 1 to {MAX_TTL_SECONDS}"
        ))
        .with_param("ttl_seconds"));
    }
    let scopes = match req.scopes {
        None => key.scopes.clone(),
        Some(list) => {
            let scopes = Scopes::new(list).map_err(|m| {
                ApiError::invalid_request(format!("scopes: {m}")).with_param("scopes")
            })?;
            if let Some(s) = scopes.iter().find(|s| !key.scopes.allows(*s)) {
                return Err(ApiError::forbidden(
                    "insufficient_scope",
                    format!(
                        "this key lacks the `{}` scope it asks the token for",
                        s.as_str()
                    ),
                )
                .with_param("scopes"));
            }
            scopes
        }
    };
    let now = switchyard_core::now();
    let mut exp = now.timestamp() + ttl;
    if let Some(expiry) = state.key_expiry(key) {
        // Whole seconds, rounded down: the token never outlives the key.
        exp = exp.min(expiry.timestamp());
    }
    if exp <= now.timestamp() {
        return Err(ApiError::unauthenticated(
            "key_expired",
            "the API key expires within a second; no token can be issued",
        ));
    }
    let claims = TokenClaims {
        iss: ISSUER.into(),
        sub: key.id.clone(),
        scope: scopes
            .iter()
            .map(Scope::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        iat: now.timestamp(),
        exp,
        jti: switchyard_core::keys::new_id("tok"),
        auth_time: None,
    };
    let access_token = signer.sign(&claims).map_err(|e| ApiError::internal(&e))?;
    tracing::info!(key_id = %key.id, jti = %claims.jti, expires_in = exp - now.timestamp(), "access token issued");
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: exp - now.timestamp(),
            expires_at: claims.expires_at(),
            key_id: key.id.clone(),
            scopes,
        }),
    ))
}
