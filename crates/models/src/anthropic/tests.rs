//! Unit tests of the Anthropic translations.
use super::*;
use crate::openai_wire::PromptTokensDetails;

fn chat(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn messages(v: Value) -> MessagesRequest {
    serde_json::from_value(v).unwrap()
}

fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

#[test]
fn system_messages_roles_and_tool_results_are_translated_and_merged() {
    let req = chat(json!({"model": "m", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "use metric units"},
        {"role": "user", "content": "weather?"},
        {"role": "user", "content": [{"type": "text", "text": "in Berlin"}]},
        {"role": "assistant", "content": "checking", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Berlin\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "12C"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "you are welcome"}
    ]}));
    let out = to_anthropic(&req, "claude-up", 1000).unwrap();
    assert_eq!(out.model, "claude-up");
    assert_eq!(out.max_tokens, 1000);
    assert_eq!(
        out.system,
        Some(SystemPrompt::Text("be brief\n\nuse metric units".into()))
    );
    assert_eq!(
        to_json(&out.messages),
        json!([
            {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "text", "text": "in Berlin"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Berlin"}},
                {"type": "tool_use", "id": "c2", "name": "get_time", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "c1", "content": "12C"},
                {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "noon"}]},
                {"type": "text", "text": "thanks"}]},
            {"role": "assistant", "content": "you are welcome"}
        ])
    );
}

#[test]
fn system_parts_become_text_blocks() {
    let req = chat(json!({"model": "m", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": "hi"}]}));
    let out = to_anthropic(&req, "c", 10).unwrap();
    assert_eq!(
        to_json(&out.system),
        json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    );
}

#[test]
fn options_tools_and_tool_choice_are_translated() {
    let mut req = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "temperature": 1.7, "top_p": 0.5, "max_tokens": 50, "stop": "END", "user": "u-1",
        "stream": true, "seed": 3, "parallel_tool_calls": false,
        "tools": [{"type": "function", "function": {"name": "f", "description": "does f",
                    "parameters": {"type": "object", "properties": {"x": {"type": "number"}}}}},
                  {"type": "function", "function": {"name": "g"}}],
        "tool_choice": "required"}),
    );
    let out = to_anthropic(&req, "c", 4096).unwrap();
    assert_eq!(out.temperature, Some(1.0));
    assert_eq!(out.top_p, Some(0.5));
    assert_eq!(out.max_tokens, 50);
    assert_eq!(out.stop_sequences, Some(vec!["END".to_owned()]));
    assert_eq!(out.metadata, Some(json!({"user_id": "u-1"})));
    assert_eq!(out.stream, Some(true));
    assert!(out.extra.is_empty(), "OpenAI-only options are not sent");
    assert_eq!(
        to_json(&out.tools),
        json!([{"name": "f", "description": "does f",
                "input_schema": {"type": "object", "properties": {"x": {"type": "number"}}}},
               {"name": "g", "input_schema": {"type": "object", "properties": {}}}])
    );
    assert_eq!(
        to_json(&out.tool_choice),
        json!({"type": "any", "disable_parallel_tool_use": true})
    );

    req.extra.clear();
    req.max_completion_tokens = Some(20);
    req.temperature = Some(0.3);
    req.stop = Some(Stop::Many(vec!["a".into(), "b".into()]));
    for (choice, expected) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        req.tool_choice = Some(choice);
        let out = to_anthropic(&req, "c", 4096).unwrap();
        assert_eq!(to_json(&out.tool_choice), expected);
        assert_eq!(out.max_tokens, 20);
        assert_eq!(out.temperature, Some(0.3));
        assert_eq!(out.stop_sequences, Some(vec!["a".into(), "b".into()]));
    }
    req.max_completion_tokens = None;
    req.max_tokens = None;
    req.tool_choice = Some(json!("sometimes"));
    assert!(to_anthropic(&req, "c", 4096)
        .unwrap_err()
        .contains("tool_choice"));
    req.tool_choice = None;
    assert_eq!(to_anthropic(&req, "c", 4096).unwrap().max_tokens, 4096);
}

#[test]
fn untranslatable_requests_name_the_field() {
    let bad_args = chat(json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "{not json"}}]}]}));
    let err = to_anthropic(&bad_args, "c", 10).unwrap_err();
    assert!(
        err.starts_with("messages[1].tool_calls[0].function.arguments is not valid JSON"),
        "{err}"
    );
    let not_object = chat(json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "[1]"}}]}]}));
    assert!(to_anthropic(&not_object, "c", 10)
        .unwrap_err()
        .contains("must be a JSON object"));
    let no_id = chat(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}));
    assert_eq!(
        to_anthropic(&no_id, "c", 10).unwrap_err(),
        "messages[0].tool_call_id is required"
    );
    let audio = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {}}]}]}),
    );
    assert!(to_anthropic(&audio, "c", 10)
        .unwrap_err()
        .starts_with("messages[0].content[0]: content of type `input_audio`"));
    let tool_kind = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "custom", "function": {"name": "f"}}]}),
    );
    assert!(to_anthropic(&tool_kind, "c", 10)
        .unwrap_err()
        .starts_with("tools[0]"));
}

#[test]
fn images_translate_both_ways() {
    let req = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}],
        "max_tokens": 10}),
    );
    let out = to_anthropic(&req, "m", 10).unwrap();
    assert_eq!(
        to_json(&out.messages[0].content),
        json!([{"type": "text", "text": "what is this?"},
               {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
               {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}])
    );
    assert_eq!(chat_request_from_anthropic(&out).unwrap(), req);
}

fn response(v: Value) -> MessagesResponse {
    serde_json::from_value(v).unwrap()
}

#[test]
fn responses_become_completions() {
    let resp = response(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 20}}),
    );
    let c = from_anthropic(resp, "claude");
    assert_eq!(c.id, "msg_1");
    assert_eq!(c.object, "chat.completion");
    assert_eq!(c.model, "claude");
    assert!(c.created > 1_700_000_000);
    assert_eq!(c.choices[0].message.role, Role::Assistant);
    assert_eq!(
        c.choices[0].message.content,
        Some(Content::Text("Hello there".into()))
    );
    assert_eq!(c.choices[0].message.tool_calls, None);
    assert_eq!(
        c.choices[0]
            .finish_reason
            .as_ref()
            .map(FinishReason::as_str),
        Some("stop")
    );
    assert_eq!(
        c.usage,
        Some(Usage {
            prompt_tokens: 130,
            completion_tokens: 5,
            total_tokens: 135,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: 100 }),
        })
    );

    let tool = response(
        json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "c",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Berlin"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 1, "output_tokens": 2}}),
    );
    let c = from_anthropic(tool, "c");
    assert_eq!(c.choices[0].message.content, None);
    assert_eq!(
        c.choices[0]
            .finish_reason
            .as_ref()
            .map(FinishReason::as_str),
        Some("tool_calls")
    );
    assert_eq!(
        to_json(&c.choices[0].message.tool_calls),
        json!([{"id": "toolu_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Berlin\"}"}}])
    );
    assert_eq!(c.usage.unwrap().cached_tokens(), 0);
    assert_eq!(c.usage.unwrap().prompt_tokens, 1);
}

#[test]
fn stop_reasons_map_both_ways() {
    for (stop, finish, back) in [
        (StopReason::EndTurn, "stop", StopReason::EndTurn),
        (StopReason::StopSequence, "stop", StopReason::EndTurn),
        (StopReason::MaxTokens, "length", StopReason::MaxTokens),
        (StopReason::ToolUse, "tool_calls", StopReason::ToolUse),
        (StopReason::Refusal, "content_filter", StopReason::Refusal),
        (StopReason::PauseTurn, "stop", StopReason::EndTurn),
        (StopReason::Other("x".into()), "stop", StopReason::EndTurn),
    ] {
        assert_eq!(finish_reason(&stop), finish, "{stop:?}");
        assert_eq!(stop_reason(&FinishReason::from(finish)), back, "{finish}");
    }
}

fn anthropic_text_stream() -> Vec<Value> {
    vec![
        json!({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant",
            "model": "claude-up", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 4}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " world"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 2}}),
        json!({"type": "message_stop"}),
    ]
}

fn translate(events: &[Value]) -> Vec<ChatChunk> {
    let mut t = AnthropicToOpenAiStream::new("claude");
    let mut out = Vec::new();
    for e in events {
        assert!(!t.is_finished());
        out.extend(t.push(&e.to_string()).unwrap());
    }
    assert!(t.is_finished());
    out
}

#[test]
fn anthropic_text_streams_become_openai_chunks() {
    let chunks = translate(&anthropic_text_stream());
    let created = chunks[0].created;
    let bodies: Vec<Value> = chunks
        .iter()
        .map(|c| {
            assert_eq!(c.id, "msg_s");
            assert_eq!(c.object, "chat.completion.chunk");
            assert_eq!(c.model, "claude");
            assert_eq!(c.created, created);
            json!({"choices": to_json(&c.choices), "usage": to_json(&c.usage)})
        })
        .collect();
    assert_eq!(
        bodies,
        vec![
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}], "usage": null}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": null}], "usage": null}),
            json!({"choices": [{"index": 0, "delta": {"content": " world"}, "finish_reason": null}], "usage": null}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": null}),
            json!({"choices": [], "usage": {"prompt_tokens": 16, "completion_tokens": 2, "total_tokens": 18,
                                            "prompt_tokens_details": {"cached_tokens": 4}}}),
        ]
    );
}

#[test]
fn anthropic_tool_streams_become_openai_tool_call_chunks() {
    let events = vec![
        json!({"type": "message_start", "message": {"id": "msg_t", "type": "message", "role": "assistant",
            "model": "c", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Berlin\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"output_tokens": 30}}),
        json!({"type": "message_stop"}),
    ];
    let chunks = translate(&events);
    let deltas: Vec<Value> = chunks
        .iter()
        .map(|c| match c.choices.first() {
            Some(ch) => json!([to_json(&ch.delta), ch.finish_reason]),
            None => to_json(&c.usage),
        })
        .collect();
    assert_eq!(
        deltas,
        vec![
            json!([{"role": "assistant", "content": ""}, null]),
            json!([{"content": "Let me check."}, null]),
            json!([{"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function",
                                    "function": {"name": "get_weather", "arguments": ""}}]}, null]),
            json!([{"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}, null]),
            json!([{"tool_calls": [{"index": 0, "function": {"arguments": "\"Berlin\"}"}}]}, null]),
            json!([{"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function",
                                    "function": {"name": "get_time", "arguments": ""}}]}, null]),
            json!([{"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}, null]),
            json!([{}, "tool_calls"]),
            json!({"prompt_tokens": 3, "completion_tokens": 30, "total_tokens": 33,
                   "prompt_tokens_details": {"cached_tokens": 0}}),
        ]
    );
}

#[test]
fn stream_errors_and_garbage_are_errors() {
    let mut t = AnthropicToOpenAiStream::new("c");
    match t.push(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#) {
        Err(BackendError::Status {
            status, message, ..
        }) => {
            assert_eq!(status, 502);
            assert!(message.contains("Overloaded"), "{message}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert!(matches!(t.push("{nope"), Err(BackendError::Protocol(_))));
    assert!(t.push(r#"{"type":"something_new"}"#).unwrap().is_empty());
}

#[test]
fn openai_requests_round_trip_through_anthropic() {
    let req = chat(
        json!({"model": "claude", "max_tokens": 64, "temperature": 0.2, "top_p": 0.9,
        "stop": ["END"], "user": "u", "stream": true, "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "calling", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
            {"role": "assistant", "tool_calls": [{"id": "c2", "type": "function",
                "function": {"name": "f", "arguments": "{\"a\":2}"}}]},
            {"role": "tool", "tool_call_id": "c2", "content": "2"},
            {"role": "assistant", "content": "done"}],
        "tools": [{"type": "function", "function": {"name": "f", "description": "d",
            "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}}),
    );
    let anthropic = to_anthropic(&req, "claude", 10).unwrap();
    assert_eq!(chat_request_from_anthropic(&anthropic).unwrap(), req);
}

#[test]
fn anthropic_requests_become_openai_requests() {
    let req = messages(json!({"model": "any", "max_tokens": 100,
        "system": "sys", "top_k": 3, "stop_sequences": ["X"], "metadata": {"user_id": "u"},
        "thinking": {"type": "enabled", "budget_tokens": 10},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                {"type": "tool_use", "id": "t2", "name": "g", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "bad"}], "is_error": true},
                {"type": "text", "text": "go on", "cache_control": {"type": "ephemeral"}}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}}));
    let out = chat_request_from_anthropic(&req).unwrap();
    assert!(out.validate().is_ok());
    assert_eq!(
        to_json(&out),
        json!({"model": "any", "max_tokens": 100, "stop": ["X"], "user": "u",
            "parallel_tool_calls": false, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"id": "t2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "one"},
                {"role": "tool", "tool_call_id": "t2", "content": "Error: bad"},
                {"role": "user", "content": [{"type": "text", "text": "go on"}]}]})
    );
    // And back: the tool messages and the text merge into one user turn.
    let back = to_anthropic(&out, "up", 1).unwrap();
    assert_eq!(back.messages.len(), 3);
    assert_eq!(
        back.tool_choice.unwrap().disable_parallel_tool_use,
        Some(true)
    );

    let server_tool = messages(json!({"model": "m", "max_tokens": 1,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
    // A server tool has no counterpart elsewhere: dropped, not refused.
    assert_eq!(
        chat_request_from_anthropic(&server_tool).unwrap().tools,
        None
    );
    // Blocks other backends cannot express are dropped; the text stays.
    let document = messages(json!({"model": "m", "max_tokens": 1,
        "messages": [{"role": "user", "content": [{"type": "document", "source": {}},
            {"type": "text", "text": "Summarise it."}]}]}));
    let out = chat_request_from_anthropic(&document).unwrap();
    assert_eq!(out.messages.len(), 1);
    assert_eq!(
        out.messages[0].content.as_ref().unwrap().text(),
        "Summarise it."
    );
}

#[test]
fn system_messages_inside_the_conversation_stay_where_they_are() {
    // As Claude Code sends them: a system-role message after the first turn,
    // in blocks with cache_control.
    let req = messages(json!({"model": "m", "max_tokens": 1, "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "Mind the tools.",
                "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "go"}]}));
    let out = chat_request_from_anthropic(&req).unwrap();
    let roles: Vec<Role> = out.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::System, Role::User]);
    assert_eq!(
        out.messages[2].content.as_ref().unwrap().text(),
        "Mind the tools."
    );
    let back = to_anthropic(&out, "up", 1).unwrap();
    assert!(back
        .messages
        .iter()
        .all(|m| m.role != AnthropicRole::System));
}

fn completion(v: Value) -> ChatCompletion {
    serde_json::from_value(v).unwrap()
}

#[test]
fn completions_become_anthropic_responses() {
    let c = completion(
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sure.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "oops"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
                  "prompt_tokens_details": {"cached_tokens": 60}}}),
    );
    assert_eq!(
        to_json(&anthropic_from_chat(&c, "my-model")),
        json!({"id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "my-model",
            "content": [{"type": "text", "text": "Sure."},
                        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                        {"type": "tool_use", "id": "call_2", "name": "g", "input": "oops"}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 40, "output_tokens": 7, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 60}})
    );
    for (finish, stop) in [("stop", "end_turn"), ("length", "max_tokens")] {
        let c = completion(
            json!({"id": "x", "object": "chat.completion", "created": 1, "model": "gpt",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": finish}]}),
        );
        let r = anthropic_from_chat(&c, "m");
        assert_eq!(to_json(&r.stop_reason), json!(stop));
        assert_eq!(r.usage, AnthropicUsage::default());
    }
}

#[test]
fn responses_round_trip_both_ways() {
    let resp = response(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "hi"},
                    {"type": "tool_use", "id": "t", "name": "f", "input": {"x": [1, 2]}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 5, "output_tokens": 6, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 2}}),
    );
    let c = from_anthropic(resp.clone(), "m");
    assert_eq!(anthropic_from_chat(&c, "m"), resp);
    let mut again = from_anthropic(anthropic_from_chat(&c, "m"), "m");
    again.created = c.created;
    assert_eq!(again, c);
}

fn openai_chunk(delta: Value, finish: Value, usage: Value) -> ChatChunk {
    let choices = if delta.is_null() {
        json!([])
    } else {
        json!([{"index": 0, "delta": delta, "finish_reason": finish}])
    };
    serde_json::from_value(
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk",
        "created": 1, "model": "gpt", "choices": choices, "usage": usage}),
    )
    .unwrap()
}

fn events_of(chunks: &[ChatChunk]) -> Vec<AnthropicEvent> {
    let mut t = OpenAiToAnthropicEvents::new("my-model");
    let mut out = Vec::new();
    for c in chunks {
        out.extend(t.push(c));
    }
    out.extend(t.finish());
    assert!(t.is_done());
    assert!(t.finish().is_empty());
    out
}

fn check_names(events: &[AnthropicEvent]) {
    for (name, data) in events {
        assert_eq!(data["type"], *name, "{data}");
        // Every event parses as what it claims to be.
        let parsed: StreamEvent = serde_json::from_value(data.clone()).unwrap();
        assert_eq!(parsed.name(), *name);
    }
}

#[test]
fn openai_text_streams_become_the_anthropic_event_sequence() {
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                       "prompt_tokens_details": {"cached_tokens": 4}});
    let chunks = [
        openai_chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            Value::Null,
        ),
        openai_chunk(json!({"content": "Hello"}), Value::Null, Value::Null),
        openai_chunk(json!({"content": " there"}), Value::Null, Value::Null),
        openai_chunk(json!({}), json!("stop"), Value::Null),
        openai_chunk(Value::Null, Value::Null, usage),
    ];
    let events = events_of(&chunks);
    check_names(&events);
    assert_eq!(
        events.into_iter().map(|(_, d)| d).collect::<Vec<_>>(),
        vec![
            json!({"type": "message_start", "message": {"id": "chatcmpl-9", "type": "message",
                "role": "assistant", "model": "my-model", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 3, "input_tokens": 6, "cache_read_input_tokens": 4}}),
            json!({"type": "message_stop"}),
        ]
    );
}

#[test]
fn openai_tool_call_streams_become_tool_use_blocks() {
    let chunks = [
        openai_chunk(
            json!({"role": "assistant", "content": "Checking."}),
            Value::Null,
            Value::Null,
        ),
        openai_chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
            Value::Null,
        ),
        openai_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            Value::Null,
            Value::Null,
        ),
        openai_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Berlin\"}"}}]}),
            Value::Null,
            Value::Null,
        ),
        openai_chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
            "function": {"name": "get_time", "arguments": "{}"}}]}),
            Value::Null,
            Value::Null,
        ),
        openai_chunk(json!({}), json!("tool_calls"), Value::Null),
    ];
    // No usage chunk: the end comes from finish().
    let events = events_of(&chunks);
    check_names(&events);
    assert_eq!(
        events
            .into_iter()
            .map(|(_, d)| d)
            .skip(1)
            .collect::<Vec<_>>(),
        vec![
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Berlin\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block":
                {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"output_tokens": 0}}),
            json!({"type": "message_stop"}),
        ]
    );
}

#[test]
fn an_empty_openai_stream_still_makes_a_complete_message() {
    let events = events_of(&[]);
    check_names(&events);
    let names: Vec<_> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
}

#[test]
fn streams_survive_both_translations() {
    // Anthropic events → OpenAI chunks → Anthropic events.
    let original = anthropic_text_stream();
    let chunks = translate(&original);
    let events = events_of(&chunks);
    let expected: Vec<Value> = original
        .into_iter()
        .filter(|e| e["type"] != "ping")
        .collect();
    let got: Vec<Value> = events.into_iter().map(|(_, d)| d).collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g["type"], e["type"]);
    }
    assert_eq!(got[3], expected[3]);
    assert_eq!(got[5]["delta"]["stop_reason"], "end_turn");
    assert_eq!(got[5]["usage"]["output_tokens"], 2);
    assert_eq!(got[5]["usage"]["input_tokens"], 12);
    assert_eq!(got[5]["usage"]["cache_read_input_tokens"], 4);
}

#[test]
fn error_events_and_types() {
    let (name, data) = anthropic_error_event("overloaded_error", "busy");
    assert_eq!(name, "error");
    assert_eq!(
        data,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    );
    assert_eq!(anthropic_error_type(529), "overloaded_error");
    assert_eq!(anthropic_error_type(429), "rate_limit_error");
    assert_eq!(anthropic_error_type(500), "api_error");
}
