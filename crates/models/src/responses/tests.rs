use super::*;
use crate::openai_wire::ChatChunk;

#[test]
fn input_items_become_chat_messages() {
    let req = json!({"model": "m", "instructions": "Be brief.", "max_output_tokens": 64,
        "input": [
            {"role": "user", "content": "list files"},
            {"type": "reasoning", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "thanks"}]}],
        "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "shell"}});
    let chat = chat_request_from_responses(&req).unwrap();
    let roles: Vec<Role> = chat.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(
        chat.messages[2].tool_calls.as_ref().unwrap()[0]
            .function
            .arguments,
        "{\"cmd\":\"ls\"}"
    );
    assert_eq!(chat.messages[3].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(chat.max_tokens, Some(64));
    assert_eq!(chat.tools.as_ref().unwrap()[0].function.name, "shell");
    assert_eq!(
        chat.tool_choice,
        Some(json!({"type": "function", "function": {"name": "shell"}}))
    );
}

#[test]
fn what_cannot_be_served_is_named() {
    let err = |v: Value| chat_request_from_responses(&v).unwrap_err().0;
    assert_eq!(
        err(json!({"model": "m", "input": "x", "previous_response_id": "resp_1"})),
        "previous_response_id"
    );
    assert_eq!(err(json!({"input": "x"})), "model");
    assert_eq!(err(json!({"model": "m"})), "input");
    // Tools with no chat counterpart are dropped, not refused.
    let dropped = chat_request_from_responses(&json!({"model": "m", "input": "x",
        "tools": [{"type": "web_search"}, {"type": "namespace", "name": "ns", "tools": []}]}))
    .unwrap();
    assert_eq!(dropped.tools, None);
    assert_eq!(
        err(json!({"model": "m", "input": [{"type": "computer_call"}]})),
        "input[0].type"
    );
}

fn chunk(v: Value) -> ChatChunk {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_stream_becomes_the_event_sequence() {
    let mut ev = ChatToResponseEvents::new("m", json!({"model": "m", "input": "hi"}));
    let mut all = ev.push(&chunk(
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}),
    ));
    all.extend(ev.push(&chunk(
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
    )));
    all.extend(ev.push(&chunk(
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
    )));
    all.extend(ev.finish());
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let done = &all.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["usage"]["total_tokens"], 5);
    let seq: Vec<u64> = all
        .iter()
        .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..all.len() as u64).collect::<Vec<_>>());
}

#[test]
fn streamed_tool_calls_become_function_call_items() {
    let mut ev = ChatToResponseEvents::new("m", json!({}));
    let mut all = ev.push(&chunk(json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
            "function": {"name": "shell", "arguments": "{\"cmd\""}}]}}]})));
    all.extend(ev.push(&chunk(json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":\"ls\"}"}}]},
            "finish_reason": "tool_calls"}]}))));
    all.extend(ev.finish());
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"response.function_call_arguments.delta"),
        "{names:?}"
    );
    let done = &all.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["type"], "function_call");
    assert_eq!(done["output"][0]["call_id"], "call_9");
    assert_eq!(done["output"][0]["arguments"], "{\"cmd\":\"ls\"}");
}
