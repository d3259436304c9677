//! A local server that speaks Anthropic's Messages API (`POST /v1/messages`),
//! for testing the real client code without a paid API.
//!
//! Requests need `x-api-key` and `anthropic-version` headers (401 with an
//! Anthropic error body otherwise), a `max_tokens`, and alternating roles
//! starting with `user` (400 otherwise). The requested model name picks the
//! behaviour:
//! - anything else: "Hello from {model}! You said: {last user text}"; usage
//!   counts words (input: system and all messages; output: the answer) and
//!   reports 2 cache-read tokens;
//! - `fail-500`: HTTP 500 with an `api_error` body;
//! - `overloaded`: HTTP 529 with an `overloaded_error` body;
//! - `rate-limited`: HTTP 429 with `Retry-After: 7`;
//! - `tool`: answers with a `tool_use` block calling `get_weather` with
//!   `{"city":"Berlin"}` and stop reason `tool_use`;
//! - `drop-stream`: streams a few events, then closes without `message_stop`.
//!
//! With `"stream": true` the answer comes as the real event sequence
//! (`message_start`, `content_block_start`, `ping`, `content_block_delta`s,
//! `content_block_stop`, `message_delta`, `message_stop`).

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::time::Duration;

/// What the fake upstream received: the JSON body, the auth and API
/// headers, and the query string.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub api_key: Option<String>,
    pub anthropic_version: Option<String>,
    pub anthropic_beta: Option<String>,
    pub query: Option<String>,
}

type Shared = crate::fake_server::Log<Received>;

pub type FakeAnthropic = crate::fake_server::Upstream<Received>;

impl FakeAnthropic {
    /// Starts on a free port (inside the current Tokio runtime).
    pub async fn start() -> Self {
        Self::serve(|log| {
            Router::new()
                .route("/v1/messages", post(messages))
                .route("/v1/messages/count_tokens", post(count_tokens))
                .with_state(log)
        })
        .await
    }

    /// The base URL to configure as a model's `base_url` (without `/v1`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

/// Words of a string, or of the text (and tool result content) of blocks.
fn words(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| words(&b["text"]) + words(&b["content"]))
            .sum(),
        _ => 0,
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Why the request would be refused by the real API, if it would.
fn invalid(body: &Value) -> Option<String> {
    if !body["max_tokens"].is_u64() {
        return Some("max_tokens: Field required".into());
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Some("messages: at least one message is required".into());
    };
    let mut expected = "user";
    // System messages may stand anywhere (instructions given mid-conversation).
    for (i, m) in messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m["role"] != "system")
    {
        if m["role"] != expected {
            return Some(format!(
                "messages.{i}: roles must alternate between \"user\" and \"assistant\", starting with \"user\""
            ));
        }
        expected = if expected == "user" {
            "assistant"
        } else {
            "user"
        };
    }
    None
}

/// `count_tokens`: the words of the messages and system prompt, recorded
/// like a message call.
async fn count_tokens(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let model = body["model"].as_str().unwrap_or("").to_owned();
    shared.record(
        &model,
        Received {
            body: body.clone(),
            api_key,
            anthropic_version: None,
            anthropic_beta: None,
            query: None,
        },
    );
    let counted: u64 = words(&body["system"])
        + body["messages"]
            .as_array()
            .map_or(0, |m| m.iter().map(|m| words(&m["content"])).sum());
    Json(json!({"input_tokens": counted})).into_response()
}

async fn messages(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let api_key = header("x-api-key");
    let anthropic_version = header("anthropic-version");
    let model = body["model"].as_str().unwrap_or("").to_owned();
    shared.record(
        &model,
        Received {
            body: body.clone(),
            api_key: api_key.clone(),
            anthropic_version: anthropic_version.clone(),
            anthropic_beta: header("anthropic-beta"),
            query,
        },
    );
    if api_key.as_deref().unwrap_or("").is_empty() {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        );
    }
    if anthropic_version.is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "anthropic-version header is required",
        );
    }
    if let Some(problem) = invalid(&body) {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", &problem);
    }
    match model.as_str() {
        "fail-500" => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "the fake upstream failed",
            )
        }
        "overloaded" => {
            return error(
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "overloaded_error",
                "Overloaded",
            )
        }
        "rate-limited" => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "slow down",
            );
            r.headers_mut().insert("retry-after", 7.into());
            return r;
        }
        _ => {}
    }

    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let input_tokens =
        words(&body["system"]) + messages.iter().map(|m| words(&m["content"])).sum::<u64>();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let text = format!("Hello from {model}! You said: {last_user}");
    let tool = model == "tool";
    let output_tokens = if tool {
        12
    } else {
        text.split_whitespace().count() as u64
    };
    let stop_reason = if tool { "tool_use" } else { "end_turn" };
    let id = "msg_fake";

    if !body["stream"].as_bool().unwrap_or(false) {
        let content = if tool {
            json!([{"type": "tool_use", "id": "toolu_fake", "name": "get_weather",
                    "input": {"city": "Berlin"}}])
        } else {
            json!([{"type": "text", "text": text}])
        };
        return Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2},
        }))
        .into_response();
    }

    let mut events: Vec<(&str, Value)> = vec![(
        "message_start",
        json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2}}}),
    )];
    if tool {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block":
                {"type": "tool_use", "id": "toolu_fake", "name": "get_weather", "input": {}}}),
        ));
        events.push(("ping", json!({"type": "ping"})));
        for piece in ["", "{\"city\":", " \"Berlin\"}"] {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
    } else {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ));
        events.push(("ping", json!({"type": "ping"})));
        for (i, w) in text.split_whitespace().enumerate() {
            let piece = if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            };
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
    }
    events.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push((
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));

    let drop_early = model == "drop-stream";
    let frames: Vec<String> = events
        .into_iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(async move {
        for (i, frame) in frames.into_iter().enumerate() {
            if drop_early && i == 4 {
                return;
            }
            if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                return;
            }
            // Paced like a real stream, so events arrive separately.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    ([("content-type", "text/event-stream")], body).into_response()
}
