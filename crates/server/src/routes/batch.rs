//! `POST /v1/batch`: many chat requests at once, run concurrently under the
//! caller's rate limit and budget, each with its own status.

use super::chat::origin;
use crate::context::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use switchyard_models::openai_wire::{ChatCompletion, ChatRequest};
use utoipa::ToSchema;

pub const MAX_ITEMS: usize = 100;
const DEFAULT_CONCURRENCY: usize = 4;
const MAX_CONCURRENCY: usize = 16;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Chat completion requests (`stream` is ignored); 1 to 100.
    #[schema(schema_with = super::wire_schemas::batch_requests)]
    pub requests: Vec<ChatRequest>,
    /// How many run at once (1 to 16, default 4).
    #[serde(default)]
    pub concurrency: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchItem {
    pub index: usize,
    /// The HTTP status this request alone would have had.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::wire_schemas::chat_completion)]
    pub response: Option<ChatCompletion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    pub object: &'static str,
    pub succeeded: usize,
    pub failed: usize,
    pub data: Vec<BatchItem>,
}

fn item(index: usize, outcome: Result<ChatCompletion, ApiError>) -> BatchItem {
    match outcome {
        Ok(response) => BatchItem {
            index,
            status: 200,
            response: Some(response),
            error: None,
        },
        Err(e) => BatchItem {
            index,
            status: e.status.as_u16(),
            response: None,
            error: Some(e.body()),
        },
    }
}

/// Runs many chat completions; each counts against the key's rate limit and
/// budget like a request of its own.
#[utoipa::path(post, path = "/v1/batch", tag = "models",
    security(("api_key" = [])), request_body = BatchRequest,
    responses((status = 200, body = BatchResponse), (status = 400, body = crate::error::ErrorBody)))]
pub async fn batch(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<BatchRequest>,
) -> ApiResult<Json<BatchResponse>> {
    if req.requests.is_empty() {
        return Err(
            ApiError::invalid_request("requests must contain at least one request")
                .with_param("requests"),
        );
    }
    if req.requests.len() > MAX_ITEMS {
        return Err(
            ApiError::invalid_request(format!("at most {MAX_ITEMS} requests per batch"))
                .with_param("requests"),
        );
    }
    let concurrency = match req.concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(c) if (1..=MAX_CONCURRENCY).contains(&c) => c,
        Some(_) => {
            return Err(ApiError::invalid_request(format!(
                "concurrency must be 1 to {MAX_CONCURRENCY}"
            ))
            .with_param("concurrency"))
        }
    };
    let mut items: Vec<BatchItem> =
        futures_util::stream::iter(req.requests.into_iter().enumerate())
            .map(|(index, request)| {
                let (state, auth) = (state.clone(), auth.clone());
                async move {
                    if let Err(rejection) = state.limits.check_key(&auth.caller).await {
                        return item(index, Err(rejection.into()));
                    }
                    let mut origin = origin(&auth);
                    origin.request_id = format!("{}-{index}", auth.request_id.0);
                    let (result, _) = state.gateway.complete_detached(origin, request).await;
                    item(index, result.map_err(ApiError::from))
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    items.sort_by_key(|i| i.index);
    let succeeded = items.iter().filter(|i| i.status == 200).count();
    Ok(Json(BatchResponse {
        object: "batch",
        succeeded,
        failed: items.len() - succeeded,
        data: items,
    }))
}
