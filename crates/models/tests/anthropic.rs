//! The Anthropic backend against the fake Anthropic upstream: plain and
//! streamed completions, tool calls, and upstream errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard_core::catalog::ModelEntry;
use switchyard_core::Secret;
use switchyard_models::openai_wire::{ChatChunk, ChatRequest, Content, FinishReason};
use switchyard_models::{AnthropicBackend, BackendError};
use switchyard_testkit::fake_anthropic::FakeAnthropic;

fn entry(id: &str, base_url: &str, upstream: &str) -> ModelEntry {
    serde_json::from_value(json!({
        "id": id, "base_url": base_url, "upstream_model": upstream,
        "max_output_tokens": 256, "timeout_seconds": 10
    }))
    .unwrap()
}

fn backend(fake: &FakeAnthropic, upstream: &str) -> AnthropicBackend {
    AnthropicBackend::new(
        switchyard_models::HttpClient::new(&Default::default()).unwrap(),
        &entry("claude", &format!("{}/", fake.base_url()), upstream),
        Some(Secret::new("sk-ant-test")),
    )
}

fn request(extra: Value) -> ChatRequest {
    let mut v = json!({"model": "claude", "messages": [
        {"role": "system", "content": "be very brief"},
        {"role": "user", "content": "hi there"}]});
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    serde_json::from_value(v).unwrap()
}

async fn collect(stream: switchyard_models::ChunkStream) -> Vec<Result<ChatChunk, BackendError>> {
    stream.collect().await
}

#[tokio::test]
async fn completes_and_sends_the_anthropic_request() {
    let fake = FakeAnthropic::start().await;
    let c = backend(&fake, "claude-up")
        .complete(&request(json!({"temperature": 1.5})))
        .await
        .unwrap();
    assert_eq!(c.object, "chat.completion");
    assert_eq!(c.id, "msg_fake");
    assert_eq!(c.model, "claude");
    let text = "Hello from claude-up! You said: hi there";
    assert_eq!(
        c.choices[0].message.content,
        Some(Content::Text(text.into()))
    );
    assert_eq!(
        c.choices[0]
            .finish_reason
            .as_ref()
            .map(FinishReason::as_str),
        Some("stop")
    );
    let usage = c.usage.unwrap();
    // 3 system words + 2 message words, plus 2 cache-read tokens.
    assert_eq!(usage.prompt_tokens, 7);
    assert_eq!(usage.cached_tokens(), 2);
    assert_eq!(usage.completion_tokens, 7);
    assert_eq!(usage.total_tokens, 14);

    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].api_key.as_deref(), Some("sk-ant-test"));
    assert_eq!(received[0].anthropic_version.as_deref(), Some("2023-06-01"));
    assert_eq!(
        received[0].body,
        json!({"model": "claude-up", "max_tokens": 256, "system": "be very brief",
               "temperature": 1.0, "messages": [{"role": "user", "content": "hi there"}]})
    );
}

#[tokio::test]
async fn streams_openai_chunks() {
    let fake = FakeAnthropic::start().await;
    let chunks: Vec<ChatChunk> = collect(
        backend(&fake, "claude-up")
            .stream(&request(json!({"stream": true, "max_tokens": 50})))
            .await
            .unwrap(),
    )
    .await
    .into_iter()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(fake.received()[0].body["stream"], true);
    assert_eq!(fake.received()[0].body["max_tokens"], 50);
    assert_eq!(
        chunks[0].choices[0].delta.role,
        Some(switchyard_models::openai_wire::Role::Assistant)
    );
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|ch| ch.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Hello from claude-up! You said: hi there");
    let finish: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|ch| ch.finish_reason.as_ref().map(FinishReason::as_str))
        .collect();
    assert_eq!(finish, ["stop"]);
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let usage = last.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens()
        ),
        (7, 7, 2)
    );
    assert!(chunks
        .iter()
        .all(|c| c.id == "msg_fake" && c.model == "claude"));
}

#[tokio::test]
async fn tool_calls_complete_and_stream() {
    let fake = FakeAnthropic::start().await;
    let b = backend(&fake, "tool");
    let req = request(
        json!({"tools": [{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "auto"}),
    );
    let c = b.complete(&req).await.unwrap();
    assert_eq!(
        c.choices[0]
            .finish_reason
            .as_ref()
            .map(FinishReason::as_str),
        Some("tool_calls")
    );
    assert_eq!(c.choices[0].message.content, None);
    let calls = c.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id.as_deref(), Some("toolu_fake"));
    assert_eq!(calls[0].kind.as_deref(), Some("function"));
    assert_eq!(calls[0].function.name.as_deref(), Some("get_weather"));
    assert_eq!(calls[0].function.arguments, r#"{"city":"Berlin"}"#);
    let sent = &fake.received()[0].body;
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));

    let chunks: Vec<ChatChunk> = collect(b.stream(&req).await.unwrap())
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    let calls: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|ch| ch.delta.tool_calls.as_ref())
        .flatten()
        .collect();
    assert_eq!(calls[0].id.as_deref(), Some("toolu_fake"));
    assert_eq!(calls[0].function.name.as_deref(), Some("get_weather"));
    assert!(calls.iter().all(|c| c.index == Some(0)));
    let args: String = calls
        .iter()
        .map(|c| c.function.arguments.as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Berlin"})
    );
    let finish: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|ch| ch.finish_reason.as_ref().map(FinishReason::as_str))
        .collect();
    assert_eq!(finish, ["tool_calls"]);

    // The tool's answer goes back as a tool_result in a user turn.
    let follow_up: ChatRequest = serde_json::from_value(json!({"model": "claude", "messages": [
        {"role": "user", "content": "weather in Berlin?"},
        {"role": "assistant", "tool_calls": [{"id": "toolu_fake", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Berlin\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_fake", "content": "12 degrees"}]}))
    .unwrap();
    backend(&fake, "claude-up")
        .complete(&follow_up)
        .await
        .unwrap();
    let sent = &fake.received()[2].body;
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_fake",
                                             "content": "12 degrees"}]})
    );
}

#[tokio::test]
async fn overloaded_is_a_retryable_529() {
    let fake = FakeAnthropic::start().await;
    let b = backend(&fake, "overloaded");
    for err in [
        b.complete(&request(json!({}))).await.unwrap_err(),
        b.stream(&request(json!({}))).await.err().unwrap(),
    ] {
        match &err {
            BackendError::Status {
                status, message, ..
            } => {
                assert_eq!(*status, 529);
                assert_eq!(message, "Overloaded");
            }
            other => panic!("expected a status error, got {other:?}"),
        }
        assert!(err.is_retryable());
    }
    assert_eq!(fake.calls("overloaded"), 2);
}

#[tokio::test]
async fn upstream_errors_are_mapped() {
    let fake = FakeAnthropic::start().await;
    let err = backend(&fake, "fail-500")
        .complete(&request(json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::Status { status: 500, message, .. } if message == "the fake upstream failed"),
        "{err:?}"
    );
    let err = backend(&fake, "rate-limited")
        .complete(&request(json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::Status {
                status: 429,
                retry_after: Some(7),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_api_key_is_a_401() {
    let fake = FakeAnthropic::start().await;
    let b = AnthropicBackend::new(
        switchyard_models::HttpClient::new(&Default::default()).unwrap(),
        &entry("claude", &fake.base_url(), "claude-up"),
        None,
    );
    let err = b.complete(&request(json!({}))).await.unwrap_err();
    match &err {
        BackendError::Status {
            status, message, ..
        } => {
            assert_eq!(*status, 401);
            assert!(message.contains("x-api-key"), "{message}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(fake.received()[0].api_key, None);
}

#[tokio::test]
async fn a_stream_cut_short_is_an_error() {
    let fake = FakeAnthropic::start().await;
    let items = collect(
        backend(&fake, "drop-stream")
            .stream(&request(json!({})))
            .await
            .unwrap(),
    )
    .await;
    let (last, rest) = items.split_last().unwrap();
    assert!(rest.iter().all(Result::is_ok));
    assert!(
        matches!(last, Err(BackendError::Protocol(m)) if m.contains("message_stop")),
        "{last:?}"
    );
}

#[tokio::test]
async fn untranslatable_requests_fail_without_calling_upstream() {
    let fake = FakeAnthropic::start().await;
    let req: ChatRequest = serde_json::from_value(json!({"model": "claude", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "{broken"}}]}]}))
    .unwrap();
    let err = backend(&fake, "claude-up")
        .complete(&req)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::Status { status: 400, message, .. } if message.contains("messages[1]")),
        "{err:?}"
    );
    assert!(fake.received().is_empty());
}
