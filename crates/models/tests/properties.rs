//! Property tests of the parsers that read outside input: the SSE decoder,
//! and the OpenAI ⇄ Anthropic wire conversions in both directions
//! (requests, responses, streamed events). Whatever arrives, they answer a
//! value or an error; none panics.
//!
//! Inputs are valid examples mutated at random (a subtree replaced by any
//! JSON value, a key removed, an array element repeated), so the
//! conversions are reached with inputs that are almost right, where the
//! corner cases are.

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard_models::anthropic::{
    anthropic_from_chat, chat_request_from_anthropic, from_anthropic, to_anthropic,
    AnthropicToOpenAiStream, OpenAiToAnthropicEvents,
};
use switchyard_models::anthropic_wire::{MessagesRequest, MessagesResponse};
use switchyard_models::openai_wire::{ChatChunk, ChatCompletion, ChatRequest};
use switchyard_models::sse::SseDecoder;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z_]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "assistant",
            "system",
            "tool",
            "text",
            "tool_use",
            "tool_result",
            "image",
            "function",
            "auto",
            "any",
            "none",
            "required",
            "end_turn",
            "max_tokens",
            "stop_sequence",
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "text_delta",
            "input_json_delta",
            "thinking",
            "base64",
            "ephemeral",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// How to change one node of a document.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
    Repeat,
}

fn mutations() -> impl Strategy<Value = Vec<(usize, Mutation)>> {
    prop::collection::vec(
        (
            any::<usize>(),
            prop_oneof![
                3 => any_json().prop_map(Mutation::Replace),
                1 => Just(Mutation::Remove),
                1 => Just(Mutation::Repeat),
            ],
        ),
        0..4,
    )
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// Applies `m` to the `n`th node (pre-order) below the root's children.
fn apply(v: &mut Value, n: &mut usize, m: &Mutation) -> bool {
    match v {
        Value::Array(items) => {
            for i in 0..items.len() {
                if *n == 0 {
                    match m {
                        Mutation::Replace(x) => items[i] = x.clone(),
                        Mutation::Remove => {
                            items.remove(i);
                        }
                        Mutation::Repeat => {
                            let copy = items[i].clone();
                            items.insert(i, copy);
                        }
                    }
                    return true;
                }
                *n -= 1;
                if apply(&mut items[i], n, m) {
                    return true;
                }
            }
            false
        }
        Value::Object(fields) => {
            let keys: Vec<String> = fields.keys().cloned().collect();
            for k in keys {
                if *n == 0 {
                    match m {
                        Mutation::Replace(x) => {
                            fields.insert(k, x.clone());
                        }
                        Mutation::Remove => {
                            fields.remove(&k);
                        }
                        Mutation::Repeat => {
                            let copy = fields[&k].clone();
                            fields.insert(format!("{k}_"), copy);
                        }
                    }
                    return true;
                }
                *n -= 1;
                if let Some(child) = fields.get_mut(&k) {
                    if apply(child, n, m) {
                        return true;
                    }
                }
            }
            false
        }
        _ => false,
    }
}

fn mutate(seed: &Value, changes: &[(usize, Mutation)]) -> Value {
    let mut doc = seed.clone();
    for (at, m) in changes {
        let nodes = count(&doc).saturating_sub(1).max(1);
        let mut n = at % nodes;
        apply(&mut doc, &mut n, m);
    }
    doc
}

fn anthropic_requests() -> Vec<Value> {
    vec![
        json!({"model": "claude", "max_tokens": 64, "system": "be brief",
            "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "claude", "max_tokens": 64, "stream": true, "temperature": 0.2,
            "stop_sequences": ["\n\n"], "system": [{"type": "text", "text": "s"}],
            "tools": [{"name": "get", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get"},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                {"role": "assistant", "content": [{"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "tu_1", "name": "get", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1",
                    "content": [{"type": "text", "text": "cold"}], "is_error": false}]}]}),
    ]
}

fn chat_requests() -> Vec<Value> {
    vec![
        json!({"model": "gpt", "messages": [{"role": "system", "content": "s"},
            {"role": "user", "content": "hi"}], "max_tokens": 10, "stop": "\n"}),
        json!({"model": "gpt", "stream": true, "stream_options": {"include_usage": true},
            "max_completion_tokens": 20, "temperature": 1, "top_p": 0.5, "stop": ["a", "b"],
            "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get"}},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "get", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "cold"}]}),
    ]
}

fn anthropic_responses() -> Vec<Value> {
    vec![
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": "hello"},
            {"type": "tool_use", "id": "tu_1", "name": "get", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 1}}),
    ]
}

fn chat_completions() -> Vec<Value> {
    vec![
        json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": "hi", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "get", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
    ]
}

fn anthropic_events() -> Vec<Value> {
    vec![
        json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
            "model": "claude", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 3, "output_tokens": 0}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
        json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "tu", "name": "get", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        json!({"type": "message_stop"}),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
    ]
}

fn chat_chunks() -> Vec<Value> {
    vec![
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": null}]}),
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t", "type": "function",
                "function": {"name": "get", "arguments": "{\"a"}}]}, "finish_reason": null}]}),
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn anthropic_requests_convert_or_are_refused(
        seed in prop::sample::select(anthropic_requests()),
        changes in mutations(),
    ) {
        let doc = mutate(&seed, &changes);
        if let Ok(req) = serde_json::from_value::<MessagesRequest>(doc) {
            if let Ok(chat) = chat_request_from_anthropic(&req) {
                let _ = chat.validate();
                let _ = to_anthropic(&chat, "upstream", 4096);
            }
        }
    }

    #[test]
    fn chat_requests_convert_or_are_refused(
        seed in prop::sample::select(chat_requests()),
        changes in mutations(),
    ) {
        let doc = mutate(&seed, &changes);
        if let Ok(req) = serde_json::from_value::<ChatRequest>(doc) {
            let _ = req.validate();
            let _ = req.output_limit();
            if let Ok(anthropic) = to_anthropic(&req, "upstream", 4096) {
                let _ = chat_request_from_anthropic(&anthropic);
            }
        }
    }

    #[test]
    fn responses_convert_both_ways(
        anthropic in prop::sample::select(anthropic_responses()),
        openai in prop::sample::select(chat_completions()),
        changes in mutations(),
    ) {
        if let Ok(resp) = serde_json::from_value::<MessagesResponse>(mutate(&anthropic, &changes)) {
            let chat = from_anthropic(resp, "m");
            let _ = anthropic_from_chat(&chat, "m");
        }
        if let Ok(chat) = serde_json::from_value::<ChatCompletion>(mutate(&openai, &changes)) {
            let _ = anthropic_from_chat(&chat, "m");
        }
    }

    #[test]
    fn streamed_events_convert_both_ways(
        events in prop::collection::vec((prop::sample::select(anthropic_events()), mutations()), 0..8),
        chunks in prop::collection::vec((prop::sample::select(chat_chunks()), mutations()), 0..8),
        junk in any::<String>(),
    ) {
        let mut up = AnthropicToOpenAiStream::new("m");
        for (seed, changes) in &events {
            let _ = up.push(&mutate(seed, changes).to_string());
        }
        let _ = up.push(&junk);
        let _ = up.is_finished();

        let mut down = OpenAiToAnthropicEvents::new("m");
        for (seed, changes) in &chunks {
            if let Ok(chunk) = serde_json::from_value::<ChatChunk>(mutate(seed, changes)) {
                let _ = down.push(&chunk);
            }
        }
        let _ = down.finish();
    }

    #[test]
    fn the_sse_decoder_takes_any_bytes_in_any_pieces(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut decoder = SseDecoder::default();
        let mut start = 0;
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        for cut in cuts {
            let _ = decoder.feed(&bytes[start..cut.max(start)]);
            start = cut.max(start);
        }
        let _ = decoder.feed(&bytes[start..]);
    }

    #[test]
    fn sse_events_decode_the_same_however_they_are_split(
        datas in prop::collection::vec("[ -~]{0,40}", 1..6),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let stream: String = datas
            .iter()
            .map(|d| format!(": comment{nl}event: x{nl}data: {d}{nl}{nl}"))
            .collect();
        let bytes = stream.as_bytes();
        let mut decoder = SseDecoder::default();
        let mut got = Vec::new();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut start = 0;
        for cut in cuts {
            got.extend(decoder.feed(&bytes[start..cut]));
            start = cut;
        }
        got.extend(decoder.feed(&bytes[start..]));
        let want: Vec<String> = datas.iter().map(|d| d.trim_end_matches('\r').to_owned()).collect();
        prop_assert_eq!(got, want);
    }
}
