//! A local server that speaks OpenAI's chat completions wire format, for
//! testing the real client code without a paid API.
//!
//! The requested model name picks the behaviour:
//! - anything else: a deterministic answer echoing the last user message;
//!   usage counts words (prompt: all message words; completion: answer words);
//! - `fail-500`: HTTP 500 with an OpenAI error body;
//! - `rate-limited`: HTTP 429 with `Retry-After: 7`;
//! - `slow`: answers after 3 seconds;
//! - `bad-json`: a 200 whose body is not JSON;
//! - `drop-stream`: streams two chunks, then closes without `[DONE]`;
//! - `tool`: answers with a tool call to `get_weather`;
//! - `flaky-N`: the first N calls fail with HTTP 500, later ones answer;
//! - `retry-after`: the first call gets 429 with `Retry-After: 1`, later ones answer;
//! - `sleep-MS`: answers after MS milliseconds;
//! - `trickle-MS`: streams a long answer, one word every MS milliseconds;
//! - `agent`: a scripted agent. By how many tool results the conversation
//!   holds, it writes `notes.txt`, greps it, runs Bash, edits it, and then
//!   answers with a summary;
//! - `agent-sleep`: asks for `sleep 1000` under Bash, forever;
//! - `agent-slow`: first runs `sleep 3` under Bash, then acts as `agent`;
//! - `agent-bash`: runs the task's description under Bash, then answers
//!   with what the tool returned.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::time::Duration;

/// What the fake upstream received: the JSON body, the Authorization
/// header, and the W3C `traceparent` header.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub authorization: Option<String>,
    pub traceparent: Option<String>,
}

type Shared = crate::fake_server::Log<Received>;

pub type FakeOpenAi = crate::fake_server::Upstream<Received>;

impl FakeOpenAi {
    /// Starts on a free port (inside the current Tokio runtime).
    pub async fn start() -> Self {
        Self::serve(|log| {
            Router::new()
                .route("/v1/chat/completions", post(chat))
                .with_state(log)
        })
        .await
    }

    /// The base URL to configure as a model's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

fn words(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(parts) => parts.iter().map(|p| words(&p["text"])).sum(),
        _ => 0,
    }
}

fn answer_for(body: &Value) -> (String, u64) {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let prompt: u64 = messages.iter().map(|m| words(&m["content"])).sum();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let model = body["model"].as_str().unwrap_or("");
    (format!("Hello from {model}! You said: {last_user}"), prompt)
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": prompt / 2}})
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "server_error", "code": null}})),
    )
        .into_response()
}

async fn chat(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let call = shared.record(
        &model,
        Received {
            body: body.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            traceparent: headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        },
    );
    if let Some(n) = model
        .strip_prefix("flaky-")
        .and_then(|n| n.parse::<u64>().ok())
    {
        if call <= n {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "flaky upstream");
        }
    }
    if model == "retry-after" && call == 1 {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "come back in a second");
        r.headers_mut().insert("retry-after", 1.into());
        return r;
    }
    if let Some(ms) = model
        .strip_prefix("sleep-")
        .and_then(|n| n.parse::<u64>().ok())
    {
        // The deliberate delay the model name asks for.
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match model.as_str() {
        "fail-500" => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the fake upstream failed",
            )
        }
        "rate-limited" => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "slow down");
            r.headers_mut().insert("retry-after", 7.into());
            return r;
        }
        "bad-json" => return (StatusCode::OK, "this is not json").into_response(),
        // Deliberately slower than a one-second model timeout.
        "slow" => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    if model.starts_with("agent") {
        return agent_turn(&model, &body);
    }
    let (text, prompt) = answer_for(&body);
    let completion = text.split_whitespace().count() as u64;
    let stream = body["stream"].as_bool().unwrap_or(false);
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let tool = model == "tool";
    if !stream {
        let message = if tool {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                   "function": {"name": "get_weather", "arguments": "{\"city\":\"Berlin\"}"}}]})
        } else {
            json!({"role": "assistant", "content": text})
        };
        return Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
            "model": model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": null,
                         "finish_reason": if tool { "tool_calls" } else { "stop" }}],
            "usage": usage(prompt, completion),
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for (i, w) in text.split_whitespace().enumerate() {
        let piece = if i == 0 {
            w.to_owned()
        } else {
            format!(" {w}")
        };
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
                           "model": model, "choices": [], "usage": usage(prompt, completion)}));
    }
    let drop_early = model == "drop-stream";
    let pause = model
        .strip_prefix("trickle-")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(Duration::from_millis(5), Duration::from_millis);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(async move {
        for (i, e) in events.iter().enumerate() {
            if drop_early && i == 2 {
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "dropped",
                    )))
                    .await;
                return;
            }
            if tx
                .send(Ok(Bytes::from(format!("data: {e}\n\n"))))
                .await
                .is_err()
            {
                return;
            }
            // Paced like a real stream, so chunks arrive separately.
            tokio::time::sleep(pause).await;
        }
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    ([("content-type", "text/event-stream")], body).into_response()
}

/// One turn of the scripted agent.
fn agent_turn(model: &str, body: &Value) -> Response {
    let mut done = body["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count());
    if model == "agent-slow" {
        if done == 0 {
            let msg = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_slow", "type": "function",
                "function": {"name": "Bash", "arguments": json!({"command": "sleep 3"}).to_string()}}]});
            return Json(json!({"id": "chatcmpl-agent", "object": "chat.completion", "created": 1_700_000_000,
                "model": model, "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls"}],
                "usage": usage(100, 20)}))
            .into_response();
        }
        done -= 1;
    }
    let call = |name: &str, args: Value| {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_{done}"), "type": "function",
               "function": {"name": name, "arguments": args.to_string()}}]})
    };
    let message = if model == "agent-sleep" {
        call("Bash", json!({"command": "sleep 1000"}))
    } else if model == "agent-bash" {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        match messages.iter().rev().find(|m| m["role"] == "tool") {
            None => {
                let task = messages.iter().find(|m| m["role"] == "user");
                call(
                    "Bash",
                    json!({"command": task.map_or(Value::Null, |m| m["content"].clone())}),
                )
            }
            Some(result) => json!({"role": "assistant", "content": result["content"].clone()}),
        }
    } else {
        match done {
            0 => call(
                "Write",
                json!({"path": "notes.txt", "content": "hello race condition\n"}),
            ),
            1 => call("Grep", json!({"pattern": "race"})),
            2 => call(
                "Bash",
                json!({"command": "wc -l notes.txt > count.txt && cat count.txt"}),
            ),
            3 => call(
                "Edit",
                json!({"path": "notes.txt", "old_string": "hello", "new_string": "goodbye"}),
            ),
            _ => {
                json!({"role": "assistant", "content": "Found one race condition; see notes.txt."})
            }
        }
    };
    let finish = if message["tool_calls"].is_null() {
        "stop"
    } else {
        "tool_calls"
    };
    Json(json!({
        "id": "chatcmpl-agent", "object": "chat.completion", "created": 1_700_000_000, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage(100, 20),
    }))
    .into_response()
}
