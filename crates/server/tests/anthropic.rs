//! Anthropic both ways: OpenAI-format calls served by an Anthropic upstream,
//! and Anthropic-format calls (`/v1/messages`) served by any upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Two Anthropic-backed models and one OpenAI-backed model, on fake
/// upstreams.
const CATALOG: &str = r#"
[[models]]
id = "claude"
backend = "anthropic"
base_url = "{anthropic}"
upstream_model = "claude-up"
api_key_env = "FAKE_ANTHROPIC_KEY"
input_per_mtok = 1.0
output_per_mtok = 5.0
cached_input_per_mtok = 0.1

[[models]]
id = "claude-tool"
backend = "anthropic"
base_url = "{anthropic}"
upstream_model = "tool"
api_key_env = "FAKE_ANTHROPIC_KEY"

[[models]]
id = "gpt"
base_url = "{openai}"
upstream_model = "echo-1"
"#;

async fn start() -> TestApp {
    TestApp::builder()
        .catalog(CATALOG)
        .env("FAKE_ANTHROPIC_KEY", "sk-ant-test")
        .start()
        .await
}

fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap()
                .to_owned();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_calls_reach_an_anthropic_upstream() {
    let b = start().await;
    let r = b
        .post("/v1/chat/completions", json!({"model": "claude", "max_tokens": 100,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["model"], "claude");
    assert_eq!(
        c["choices"][0]["message"]["content"],
        "Hello from claude-up! You said: hi there"
    );
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    let sent = &b.anthropic().received()[0];
    assert_eq!(sent.api_key.as_deref(), Some("sk-ant-test"));
    assert_eq!(sent.body["system"], "be brief");
    assert_eq!(sent.body["max_tokens"], 100);

    let r = b
        .post("/v1/chat/completions", json!({"model": "claude", "stream": true,
            "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi there"}]}))
        .await;
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let content: String = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "Hello from claude-up! You said: hi there");

    let r = b
        .post("/v1/chat/completions", json!({"model": "claude-tool", "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}))
        .await;
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        c["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    // Accounted with Anthropic's usage mapped to OpenAI's.
    b.wait_for_usage(3).await;
    let rows = b.state.store.recent_usage(10).await.unwrap();
    assert!(rows
        .iter()
        .all(|r| r.backend.as_deref() == Some("anthropic") && r.status == 200));
    assert!(rows
        .iter()
        .all(|r| r.output_tokens > 0 && r.cached_tokens == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_counted_by_anthropic_or_estimated_and_said_so() {
    let b = start().await;
    let body = |model: &str| {
        json!({"model": model, "system": "be brief",
            "messages": [{"role": "user", "content": "one two three four"},
                {"role": "system", "content": "mind the tools"}],
            "context_management": {"edits": []}})
    };
    let r = b.post("/v1/messages/count_tokens", body("claude")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-switchyard-token-count"], "upstream");
    let counted: Value = r.json().await.unwrap();
    // The fake counts words: 2 + 4 + 3.
    assert_eq!(counted, json!({"input_tokens": 9}));
    let seen = b.anthropic().received().pop().unwrap().body;
    assert_eq!(seen["model"], "claude-up");
    assert_eq!(seen["context_management"], json!({"edits": []}), "{seen}");
    assert!(seen.get("max_tokens").is_none());

    let r = b.post("/v1/messages/count_tokens", body("gpt")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-switchyard-token-count"], "estimated");
    let estimated: Value = r.json().await.unwrap();
    assert!(
        estimated["input_tokens"].as_u64().unwrap() > 5,
        "{estimated}"
    );

    let r = b
        .post(
            "/v1/messages/count_tokens",
            json!({"model": "nope", "messages": []}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "not_found_error");
    let r = b
        .post("/v1/messages/count_tokens", json!({"model": "gpt"}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["type"], "error", "{e}");
}

#[tokio::test]
async fn anthropic_clients_are_served_by_any_backend() {
    let b = start().await;
    for model in ["gpt", "claude"] {
        let r = b
            .post(
                "/v1/messages",
                json!({"model": model, "max_tokens": 50, "system": "be brief",
                "messages": [{"role": "user", "content": "hi there"}]}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{model}");
        let m: Value = r.json().await.unwrap();
        assert_eq!(m["type"], "message");
        assert_eq!(m["role"], "assistant");
        assert_eq!(m["model"], model);
        assert_eq!(m["stop_reason"], "end_turn");
        assert!(
            m["content"][0]["text"]
                .as_str()
                .unwrap()
                .ends_with("You said: hi there"),
            "{m}"
        );
        assert!(m["usage"]["output_tokens"].as_u64().unwrap() > 0);

        let r = b
            .post(
                "/v1/messages",
                json!({"model": model, "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "hi there"}]}),
            )
            .await;
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let evs = events(&r.text().await.unwrap());
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
        assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
        assert!(names.contains(&"content_block_start") && names.contains(&"content_block_stop"));
        let text: String = evs
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert!(text.ends_with("You said: hi there"), "{text}");
        let delta = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "end_turn");
        assert!(delta.1["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
    // Errors come in Anthropic's shape.
    let r = b
        .post("/v1/messages", json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "not_found_error");

    // A body that does not fit names the field at fault, nested or missing.
    for (body, field) in [
        (
            json!({"model": "gpt", "max_tokens": "ten", "messages": []}),
            "`max_tokens`",
        ),
        (json!({"model": "gpt", "max_tokens": 5}), "`messages`"),
        (
            json!({"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": 7}]}),
            "`messages[0].content`",
        ),
    ] {
        let r = b.post("/v1/messages", body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{field}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{field}: {message}");
    }
    let r = b
        .client
        .post(b.url("/v1/messages"))
        .bearer_auth(&b.admin)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("EOF while parsing"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_catalog_needs_its_key_and_says_so() {
    let app = TestApp::builder().start().await;
    let models: Value = app
        .get("/v1/models", Some(&app.admin))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "smollm2-135m-instruct",
            "claude-haiku-4-5",
            "claude-sonnet-4-5",
            "claude-opus-4-5",
            "auto"
        ]
    );
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.admin)
        .json(&json!({"model": "sonnet", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "model_unavailable");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ANTHROPIC_API_KEY"));
    // A dated id, as Claude Code sends, finds its undated catalog model on
    // both APIs (here: the model, unavailable for want of its key); a name
    // that is not a date does not.
    let post = |path: &'static str, model: &'static str| {
        app.client
            .post(app.url(path))
            .bearer_auth(&app.admin)
            .json(&json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
            .send()
    };
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let r = post(path, "claude-sonnet-4-5-20250929").await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("ANTHROPIC_API_KEY"), "{path}: {text}");
        let r = post(path, "claude-sonnet-4-5-20251399").await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claude_cli_backend_serves_chat_and_reports_its_own_cost() {
    let app = TestApp::builder()
        .catalog(&common::claude_cli_catalog(
            &switchyard_testkit::fake_claude(),
            "default",
        ))
        .start()
        .await;
    let post = |body: Value| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&app.admin)
            .json(&body)
            .send()
    };
    let r =
        post(json!({"model": "cli", "messages": [{"role": "user", "content": "hi; rm -rf /"}]}))
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c: Value = r.json().await.unwrap();
    assert_eq!(
        c["choices"][0]["message"]["content"],
        "Hello from claude CLI! You said: hi; rm -rf /"
    );
    assert!(
        c.get("switchyard_cost_usd").is_none(),
        "internal fields are not sent"
    );
    let r = post(
        json!({"model": "cli", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(!text.contains("switchyard_cost_usd"));
    app.wait_for_usage(2).await;
    let rows = app.state.store.recent_usage(10).await.unwrap();
    assert!(rows
        .iter()
        .all(|r| r.backend.as_deref() == Some("claude_cli")));
    assert!(
        rows.iter().all(|r| r.cost_nano_usd == 12_300_000),
        "{rows:?}"
    );
}

/// A Messages request as Claude Code sends it, with a field the service
/// has never heard of.
fn messages_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model, "max_tokens": 64, "stream": stream,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "hi there", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "let me see", "signature": "sig-abc"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "hello"}]},
            {"role": "system", "content": "answer in English"},
            {"role": "user", "content": "and again"}],
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "dev-7"},
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}},
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        "a_field_from_the_future": {"nested": [1, 2.5, "three", null]},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_pass_through_to_anthropic_upstreams_as_sent() {
    let b = start().await;
    let beta = "context-management-2025-06-27,interleaved-thinking-2025-05-14";
    for stream in [false, true] {
        let sent = messages_request("claude", stream);
        let r = b
            .client
            .post(b.url("/v1/messages?beta=true"))
            .bearer_auth(&b.admin)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", beta)
            .json(&sent)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "stream: {stream}");
        let received = b.anthropic().received().last().cloned().unwrap();
        // Only the credentials and the model name differ.
        let mut expected = sent.clone();
        expected["model"] = json!("claude-up");
        if !stream {
            expected.as_object_mut().unwrap().remove("stream");
        }
        assert_eq!(received.body, expected, "stream: {stream}");
        assert_eq!(received.api_key.as_deref(), Some("sk-ant-test"));
        assert_eq!(received.anthropic_beta.as_deref(), Some(beta));
        assert_eq!(received.query.as_deref(), Some("beta=true"));
        if stream {
            let evs = events(&r.text().await.unwrap());
            let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
            // The upstream's own sequence, ping included.
            assert_eq!(
                names[..4],
                [
                    "message_start",
                    "content_block_start",
                    "ping",
                    "content_block_delta"
                ]
            );
            assert_eq!(names.last(), Some(&"message_stop"));
            assert_eq!(evs[0].1["message"]["model"], "claude");
            assert_eq!(evs[0].1["message"]["usage"]["cache_read_input_tokens"], 2);
        } else {
            let m: Value = r.json().await.unwrap();
            assert_eq!(m["model"], "claude");
            assert_eq!(m["id"], "msg_fake");
            assert_eq!(m["usage"]["cache_creation_input_tokens"], 0);
            assert_eq!(
                m["content"][0]["text"],
                "Hello from claude-up! You said: and again"
            );
        }
    }
    // Usage read from the reply and from the stream, under this endpoint.
    let rows = b.usage_rows(2).await;
    for row in &rows {
        assert_eq!(row.endpoint, "/v1/messages");
        assert_eq!(row.status, 200);
        assert_eq!(row.cached_tokens, 2);
        assert!(row.output_tokens > 0 && row.input_tokens > 2, "{row:?}");
        assert!(row.cost_nano_usd > 0, "{row:?}");
    }

    // Towards another backend, what chat can express is translated.
    let r = b.post("/v1/messages", messages_request("gpt", false)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["type"], "message");
    let up = b.openai().received().last().cloned().unwrap();
    let roles: Vec<&str> = up.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "system", "user"]);
    assert!(up.body.get("a_field_from_the_future").is_none());
}
