//! `POST /v1/responses`: OpenAI's Responses API (what Codex speaks), over
//! any backend of the catalog through the chat completion form, streaming
//! included, with the same keys, limits, budgets and usage records as
//! `/v1/chat/completions`. Responses are not stored: the conversation
//! travels in `input`, and `previous_response_id` is refused.

use super::chat::{origin, with_remaining};
use crate::context::Authenticated;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::routes::sse::{stream_response, WireKind};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchyard_models::responses::{chat_request_from_responses, response_from_chat};

/// Creates a model response (OpenAI Responses API).
#[utoipa::path(post, path = "/v1/responses", tag = "models",
    security(("api_key" = [])),
    request_body = ref("#/components/schemas/ResponsesRequest"),
    responses((status = 200, description = "A response, or with `stream: true` the Responses event stream (`response.created` … `response.completed`)",
            content((ref("#/components/schemas/Response") = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 402, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody)))]
pub async fn responses(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Response {
    let mut chat = match chat_request_from_responses(&body) {
        Ok(c) => c,
        Err((field, message)) => {
            let e = ApiError::invalid_request(format!("{field}: {message}"));
            return if field.is_empty() {
                e
            } else {
                e.with_param(&field)
            }
            .into_response();
        }
    };
    let gateway = &state.gateway;
    if chat.is_stream() {
        let call = match gateway.prepare(origin(&auth), &chat).await {
            Ok(call) => call,
            Err(e) => return ApiError::from(e).into_response(),
        };
        let remaining = call.remaining_nano_usd();
        return match gateway.stream(call, &chat).await {
            Ok(stream) => stream_response(gateway, stream, WireKind::Responses(Box::new(body))),
            Err(e) => with_remaining(ApiError::from(e).into_response(), remaining),
        };
    }
    chat.stream = Some(false);
    let model = chat.model.clone();
    match gateway.complete_detached(origin(&auth), chat).await {
        (Ok(completion), remaining) => {
            let model = if completion.model.is_empty() {
                model
            } else {
                completion.model.clone()
            };
            with_remaining(
                Json(response_from_chat(&completion, &model, &body)).into_response(),
                remaining,
            )
        }
        (Err(e), remaining) => with_remaining(ApiError::from(e).into_response(), remaining),
    }
}
