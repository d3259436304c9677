//! `POST /v1/messages`: Anthropic's Messages API, served by any backend of
//! the catalog, streaming included: passed through as sent to Anthropic
//! upstreams (only the credentials and the model renamed), translated
//! through the chat form for the others. Errors use Anthropic's error shape
//! (`middleware::as_anthropic_error`).

use super::chat::{origin_at, with_remaining};
use crate::context::Authenticated;
use crate::error::ApiError;
use crate::gateway::{Passthrough, Reply};
use crate::json::{json_ok, ApiJson, ApiJsonAndValue};
use crate::routes::sse::{stream_pieces_response, WireKind};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchyard_models::anthropic::{anthropic_from_chat, chat_request_from_anthropic};
use switchyard_models::anthropic_wire::MessagesRequest;
use switchyard_models::native::{Dialect, Forward};

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
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ApiJsonAndValue(req, body): ApiJsonAndValue<MessagesRequest>,
) -> Response {
    let mut chat = match chat_request_from_anthropic(&req) {
        Ok(c) => c,
        Err(m) => return anthropic_error(ApiError::invalid_request(m), None),
    };
    chat.stream = Some(false);
    let call = Passthrough {
        dialect: Dialect::Messages,
        forward: Forward {
            body,
            headers: forwarded_headers(&headers),
            query,
        },
        chat,
    };
    let gateway = &state.gateway;
    let origin = origin_at(&auth, ENDPOINT);
    if req.is_stream() {
        // On the heap, as in `chat_completions`.
        return Box::pin(async move {
            let prepared = match gateway.prepare(origin, &call.chat).await {
                Ok(prepared) => prepared,
                Err(e) => return anthropic_error(e, None),
            };
            let remaining = prepared.remaining_nano_usd();
            match gateway.stream_pieces(prepared, &call).await {
                Ok(stream) => stream_pieces_response(gateway, stream, WireKind::Anthropic),
                Err(e) => anthropic_error(e, remaining),
            }
        })
        .await;
    }
    match gateway.reply_detached(origin, call).await {
        (Ok(Reply::Native(reply)), remaining) => with_remaining(json_ok(&reply.body), remaining),
        (Ok(Reply::Chat(completion)), remaining) => {
            let message = anthropic_from_chat(&completion, &completion.model);
            with_remaining(json_ok(&message), remaining)
        }
        (Err(e), remaining) => anthropic_error(e, remaining),
    }
}

/// The usage rows' endpoint for Messages calls.
const ENDPOINT: &str = "/v1/messages";

/// The request headers of Anthropic's API that an Anthropic upstream sees
/// as the client sent them (the API version and beta features).
fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    ["anthropic-version", "anthropic-beta"]
        .into_iter()
        .filter_map(|name| {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| (name.to_owned(), values.join(",")))
        })
        .collect()
}

/// How a count was made: by the upstream, or estimated here.
pub const TOKEN_COUNT_HEADER: &str = "x-switchyard-token-count";

/// Counts a Messages request's input tokens without running the model
/// (Anthropic's `count_tokens`): Anthropic models count it themselves, the
/// local model with its own template and tokenizer; for other backends it
/// is estimated (about four characters per token, tools included). The
/// `x-switchyard-token-count` header says which: `upstream`, `tokenizer`
/// or `estimated`.
#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "models",
    security(("api_key" = [])),
    request_body = ref("#/components/schemas/AnthropicMessagesRequest"),
    responses((status = 200, description = "`{\"input_tokens\": N}`; `x-switchyard-token-count` is `upstream`, `tokenizer` or `estimated`",
            body = ref("#/components/schemas/AnthropicTokenCount")),
        (status = 400, body = ref("#/components/schemas/AnthropicError")),
        (status = 404, body = ref("#/components/schemas/AnthropicError"))))]
pub async fn count_tokens(
    State(state): State<AppState>,
    _auth: Authenticated,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Response {
    // The count takes no max_tokens; the request type wants one.
    let mut with_max = body.clone();
    if let Some(fields) = with_max.as_object_mut() {
        fields
            .entry("max_tokens")
            .or_insert(serde_json::Value::from(1));
    }
    let req: MessagesRequest = match serde_json::from_value(with_max) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::invalid_request(format!("invalid request: {e}")).into_response()
        }
    };
    let Some(route) = state.gateway.resolve(&req.model) else {
        return ApiError::not_found(format!("model `{}` is not in the catalog", req.model))
            .with_code("model_not_found")
            .into_response();
    };
    let counted = match &route.backend {
        crate::gateway::catalog::Backend::Anthropic(b) => match b.count_tokens(body).await {
            Ok(n) => Ok((n, "upstream")),
            Err(e) => Err(e),
        },
        #[cfg(feature = "local")]
        crate::gateway::catalog::Backend::Local(b) => match chat_request_from_anthropic(&req) {
            Ok(chat) => b.count_prompt_tokens(&chat).await.map(|n| (n, "tokenizer")),
            Err(m) => return ApiError::invalid_request(m).into_response(),
        },
        _ => match chat_request_from_anthropic(&req) {
            Ok(chat) => {
                let mut text = crate::gateway::conversation_text(&chat.messages);
                if let Some(tools) = &chat.tools {
                    text.push_str(&serde_json::to_string(tools).unwrap_or_default());
                }
                Ok((crate::gateway::estimate_tokens(&text), "estimated"))
            }
            Err(m) => return ApiError::invalid_request(m).into_response(),
        },
    };
    match counted {
        Ok((n, how)) => (
            [(TOKEN_COUNT_HEADER, how)],
            Json(serde_json::json!({"input_tokens": n})),
        )
            .into_response(),
        Err(e) => ApiError::from(crate::gateway::GatewayError::Upstream(e)).into_response(),
    }
}
