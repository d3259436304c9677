//! `POST /v1/chat/completions`: OpenAI's chat API over any configured
//! backend, streaming included. Every call — success or failure, streamed or
//! not, finished or abandoned by the client — leaves one usage record (the
//! gateway sees to it).

use crate::context::Authenticated;
use crate::error::ApiError;
use crate::gateway::{CallOrigin, ENDPOINT};
use crate::json::{json_ok, ApiJson};
use crate::routes::gateway_error::set_remaining_header;
use crate::routes::sse::{stream_response, WireKind};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use switchyard_models::openai_wire::ChatRequest;

/// The origin of a call made by an HTTP request to the chat API.
pub(crate) fn origin(auth: &Authenticated) -> CallOrigin {
    origin_at(auth, ENDPOINT)
}

/// The origin of a call made by an HTTP request to `endpoint` (the usage
/// row's endpoint).
pub(crate) fn origin_at(auth: &Authenticated, endpoint: &'static str) -> CallOrigin {
    CallOrigin {
        caller: auth.caller.clone(),
        request_id: auth.request_id.0.clone(),
        endpoint,
    }
}

/// A response with the remaining-budget header when a budget applied.
pub(crate) fn with_remaining(mut response: Response, remaining: Option<i64>) -> Response {
    set_remaining_header(response.headers_mut(), remaining);
    response
}

/// Creates a chat completion (OpenAI wire format).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "models",
    security(("api_key" = [])),
    request_body = ref("#/components/schemas/ChatCompletionRequest"),
    responses((status = 200, description = "A chat completion, or with `stream: true` an SSE stream of `chat.completion.chunk` objects ending with `data: [DONE]`",
            content((ref("#/components/schemas/ChatCompletion") = "application/json"), (String = "text/event-stream"))),
        (status = 401, body = crate::error::ErrorBody), (status = 402, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),
        (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 502, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn chat_completions(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Response {
    let gateway = &state.gateway;
    if req.is_stream() {
        // On the heap: preparing and opening a stream are futures of some
        // kilobytes, which the handler's future would otherwise carry for
        // every call, streamed or not.
        return Box::pin(async move {
            let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
            let call = match gateway.prepare(origin(&auth), &req).await {
                Ok(call) => call,
                Err(e) => return ApiError::from(e).into_response(),
            };
            let remaining = call.remaining_nano_usd();
            match gateway.stream(call, &req).await {
                Ok(stream) => stream_response(gateway, stream, WireKind::OpenAi { include_usage }),
                Err(e) => with_remaining(ApiError::from(e).into_response(), remaining),
            }
        })
        .await;
    }
    match gateway.complete_detached(origin(&auth), req).await {
        (Ok(completion), remaining) => with_remaining(json_ok(&completion), remaining),
        (Err(e), remaining) => with_remaining(ApiError::from(e).into_response(), remaining),
    }
}
