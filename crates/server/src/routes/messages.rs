//! `POST /v1/messages`: Anthropic's Messages API, served by any backend of
//! the catalog, streaming included. Errors use Anthropic's error shape
//! (`middleware::as_anthropic_error`).

use super::chat::{origin, with_remaining};
use crate::context::Authenticated;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::routes::sse::{stream_response, WireKind};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchyard_models::anthropic::{anthropic_from_chat, chat_request_from_anthropic};
use switchyard_models::anthropic_wire::MessagesRequest;

/// An error response; the request-context layer gives every error of this
/// route Anthropic's shape.
fn anthropic_error(e: impl Into<ApiError>, remaining: Option<i64>) -> Response {
    with_remaining(e.into().into_response(), remaining)
}

/// Creates a message (Anthropic Messages API).
#[utoipa::path(post, path = "/v1/messages", tag = "models",
    security(("api_key" = [])),
    request_body = ref("#/components/schemas/AnthropicMessagesRequest"),
    responses((status = 200, description = "A message, or with `stream: true` Anthropic's SSE event stream",
            content((ref("#/components/schemas/AnthropicMessage") = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = ref("#/components/schemas/AnthropicError")), (status = 401, body = ref("#/components/schemas/AnthropicError")),
        (status = 402, body = ref("#/components/schemas/AnthropicError")), (status = 403, body = ref("#/components/schemas/AnthropicError")),
        (status = 404, body = ref("#/components/schemas/AnthropicError")), (status = 429, body = ref("#/components/schemas/AnthropicError")),
        (status = 502, body = ref("#/components/schemas/AnthropicError")), (status = 504, body = ref("#/components/schemas/AnthropicError"))))]
pub async fn messages(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<MessagesRequest>,
) -> Response {
    let mut chat_req = match chat_request_from_anthropic(&req) {
        Ok(c) => c,
        Err(m) => return anthropic_error(ApiError::invalid_request(m), None),
    };
    chat_req.stream = Some(false);
    let gateway = &state.gateway;
    if req.is_stream() {
        let call = match gateway.prepare(origin(&auth), &chat_req).await {
            Ok(call) => call,
            Err(e) => return anthropic_error(e, None),
        };
        let remaining = call.remaining_nano_usd();
        return match gateway.stream(call, &chat_req).await {
            Ok(stream) => stream_response(gateway, stream, WireKind::Anthropic),
            Err(e) => anthropic_error(e, remaining),
        };
    }
    match gateway.complete_detached(origin(&auth), chat_req).await {
        (Ok(completion), remaining) => {
            let message = anthropic_from_chat(&completion, &completion.model);
            with_remaining(Json(message).into_response(), remaining)
        }
        (Err(e), remaining) => anthropic_error(e, remaining),
    }
}
