//! `POST /v1/responses`: OpenAI's Responses API (what Codex speaks), over
//! any backend of the catalog, streaming included, with the same keys,
//! limits, budgets and usage records as `/v1/chat/completions`: passed
//! through as sent to upstreams that serve Responses (the catalog's
//! `responses_api`), translated through the chat completion form for the
//! others. Responses are not stored: the conversation travels in `input`,
//! and `previous_response_id` is refused.

use super::chat::{origin_at, with_remaining};
use crate::context::Authenticated;
use crate::error::ApiError;
use crate::gateway::{Passthrough, Reply};
use crate::json::{json_ok, ApiJson};
use crate::routes::sse::{stream_pieces_response, WireKind};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchyard_models::native::{Dialect, Forward};
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
    let chat = match chat_request_from_responses(&body) {
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
    let call = Passthrough {
        dialect: Dialect::Responses,
        forward: Forward {
            body: body.clone(),
            headers: Vec::new(),
            query: None,
        },
        chat,
    };
    let gateway = &state.gateway;
    let origin = origin_at(&auth, ENDPOINT);
    if call.chat.is_stream() {
        // On the heap, as in `chat_completions`.
        return Box::pin(async move {
            let prepared = match gateway.prepare(origin, &call.chat).await {
                Ok(prepared) => prepared,
                Err(e) => return ApiError::from(e).into_response(),
            };
            let remaining = prepared.remaining_nano_usd();
            match gateway.stream_pieces(prepared, &call).await {
                Ok(stream) => {
                    stream_pieces_response(gateway, stream, WireKind::Responses(Box::new(body)))
                }
                Err(e) => with_remaining(ApiError::from(e).into_response(), remaining),
            }
        })
        .await;
    }
    let model = call.chat.model.clone();
    match gateway.reply_detached(origin, call).await {
        (Ok(Reply::Native(reply)), remaining) => with_remaining(json_ok(&reply.body), remaining),
        (Ok(Reply::Chat(completion)), remaining) => {
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

/// The usage rows' endpoint for Responses calls.
const ENDPOINT: &str = "/v1/responses";
