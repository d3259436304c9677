use super::*;
use serde_json::json;

fn event(name: &str, data: Value) -> SseEvent {
    SseEvent {
        event: Some(name.into()),
        data: data.to_string(),
    }
}

#[test]
fn the_body_goes_as_sent_with_the_model_renamed() {
    let sent =
        json!({"model": "claude", "stream": true, "future": {"x": [1, 2.5]}, "max_tokens": 5});
    let up = upstream_body(sent.clone(), "claude-up", false);
    assert_eq!(
        up,
        json!({"model": "claude-up", "future": {"x": [1, 2.5]}, "max_tokens": 5})
    );
    assert_eq!(upstream_body(sent, "m", true)["stream"], true);
}

#[test]
fn a_messages_stream_keeps_its_events_and_counts_usage() {
    let mut d = EventDecoder::new(Dialect::Messages, "claude");
    let (start, done) = d
        .push(event(
            "message_start",
            json!({"type": "message_start", "message": {"model": "claude-up", "future": 1,
                "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4}}}),
        ))
        .unwrap();
    assert!(!done);
    let data: Value = serde_json::from_str(&start.data).unwrap();
    assert_eq!(data["message"]["model"], "claude");
    assert_eq!(data["message"]["future"], 1);
    assert_eq!(start.usage.unwrap().prompt_tokens, 14);

    // Events the service does not know pass untouched, byte for byte.
    let raw = r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"s"}}"#;
    let (same, _) = d
        .push(SseEvent {
            event: Some("content_block_delta".into()),
            data: raw.into(),
        })
        .unwrap();
    assert_eq!(same.data, raw);
    assert_eq!(same.usage, None);

    let (delta, _) = d
        .push(event(
            "message_delta",
            json!({"type": "message_delta", "usage": {"output_tokens": 7}}),
        ))
        .unwrap();
    let usage = delta.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (14, 7));
    assert_eq!(usage.cached_tokens(), 4);
    let (stop, done) = d
        .push(event("message_stop", json!({"type": "message_stop"})))
        .unwrap();
    assert!(done);
    assert_eq!(
        String::from_utf8(stop.to_sse()).unwrap(),
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
}

#[test]
fn an_error_event_ends_the_stream_as_a_failure() {
    let mut d = EventDecoder::new(Dialect::Messages, "claude");
    let err = d
        .push(event(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ))
        .unwrap_err();
    assert!(
        err.to_string().contains("overloaded_error: Overloaded"),
        "{err}"
    );
}

#[test]
fn a_responses_stream_renames_the_model_and_reads_the_final_usage() {
    let mut d = EventDecoder::new(Dialect::Responses, "gpt");
    let (created, done) = d
        .push(event(
            "response.created",
            json!({"type": "response.created", "response": {"model": "gpt-up", "usage": null}}),
        ))
        .unwrap();
    assert!(!done && created.usage.is_none());
    assert!(
        created.data.contains(r#""model":"gpt""#),
        "{}",
        created.data
    );
    let (text, _) = d
        .push(event(
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "delta": "hi"}),
        ))
        .unwrap();
    assert_eq!(text.usage, None);
    let (completed, done) = d
        .push(event(
            "response.completed",
            json!({"type": "response.completed", "response": {"model": "gpt-up", "usage":
                {"input_tokens": 9, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 5}}}}),
        ))
        .unwrap();
    assert!(done);
    let usage = completed.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens()
        ),
        (9, 3, 5)
    );
}

#[test]
fn a_reply_is_read_with_its_usage() {
    let body = br#"{"id": "msg_1", "model": "claude-up", "usage": {"input_tokens": 3, "output_tokens": 2, "cache_creation_input_tokens": 1}}"#;
    let r = reply(Dialect::Messages, body, "claude").unwrap();
    assert_eq!(r.body["model"], "claude");
    assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (4, 2));
    let r = reply(
        Dialect::Responses,
        br#"{"model": "x", "usage": {"input_tokens": 8, "output_tokens": 1}}"#,
        "gpt",
    )
    .unwrap();
    assert_eq!(r.body["model"], "gpt");
    assert_eq!(r.usage.total_tokens, 9);
    assert!(reply(Dialect::Messages, b"[1]", "x").is_err());
}
