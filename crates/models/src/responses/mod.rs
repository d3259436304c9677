//! OpenAI's Responses API (`POST /v1/responses`), served through the chat
//! completion form every backend speaks: a request becomes a chat request
//! ([`chat_request_from_responses`]), a completion becomes a response
//! ([`response_from_chat`]), and a stream of chat chunks becomes the
//! Responses event sequence ([`ChatToResponseEvents`]).
//!
//! Responses are not stored: `previous_response_id` is refused, and the
//! conversation travels in `input` (as Codex sends it, with `store: false`).

use crate::openai_wire::{
    ChatCompletion, Content, ContentPart, FinishReason, FunctionCall, FunctionDef, Message, Role,
    StreamOptions, Tool, ToolCall, Usage,
};
use serde_json::{json, Map, Value};

/// A request field the chat form cannot carry, or a malformed one: the
/// field's path and what is wrong.
pub type Invalid = (String, String);

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    (field.into(), message.into())
}

fn new_message(role: Role, content: Option<Content>) -> Message {
    Message {
        role,
        content,
        name: None,
        tool_calls: None,
        tool_call_id: None,
    }
}

/// The text of a content list: `input_text` / `output_text` / `text` parts.
fn content_of(v: &Value, at: &str) -> Result<Content, Invalid> {
    match v {
        Value::String(s) => Ok(Content::Text(s.clone())),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (k, p) in parts.iter().enumerate() {
                match p["type"].as_str() {
                    Some("input_text" | "output_text" | "text") => out.push(ContentPart::Text {
                        text: p["text"].as_str().unwrap_or_default().to_owned(),
                    }),
                    Some("input_image") => {
                        let url = p["image_url"].as_str().ok_or_else(|| {
                            invalid(
                                format!("{at}[{k}].image_url"),
                                "only image URLs are supported",
                            )
                        })?;
                        out.push(ContentPart::ImageUrl {
                            image_url: json!({"url": url}),
                        });
                    }
                    // Refusals and files have no chat counterpart.
                    _ => {}
                }
            }
            Ok(Content::Parts(out))
        }
        _ => Err(invalid(at, "expected a string or a list of content parts")),
    }
}

/// The chat request a Responses request asks for.
pub fn chat_request_from_responses(
    req: &Value,
) -> Result<crate::openai_wire::ChatRequest, Invalid> {
    let Some(fields) = req.as_object() else {
        return Err(invalid("", "the request must be a JSON object"));
    };
    if fields
        .get("previous_response_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err(invalid(
            "previous_response_id",
            "responses are not stored here: send the whole conversation in `input` (with `store: false`)",
        ));
    }
    let model = fields
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("model", "is required"))?;
    let mut messages = Vec::new();
    if let Some(instructions) = fields.get("instructions").and_then(Value::as_str) {
        messages.push(new_message(
            Role::System,
            Some(Content::Text(instructions.to_owned())),
        ));
    }
    match fields.get("input") {
        None | Some(Value::Null) => return Err(invalid("input", "is required")),
        Some(Value::String(s)) => {
            messages.push(new_message(Role::User, Some(Content::Text(s.clone()))))
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("input[{i}]");
                match item["type"].as_str().unwrap_or("message") {
                    "message" => {
                        let role = match item["role"].as_str() {
                            Some("user") => Role::User,
                            Some("assistant") => Role::Assistant,
                            Some("system") => Role::System,
                            Some("developer") => Role::Developer,
                            _ => {
                                return Err(invalid(
                                    format!("{at}.role"),
                                    "expected user, assistant, system or developer",
                                ))
                            }
                        };
                        let content = content_of(&item["content"], &format!("{at}.content"))?;
                        messages.push(new_message(role, Some(content)));
                    }
                    "function_call" => {
                        let call = ToolCall {
                            index: None,
                            id: item["call_id"].as_str().map(str::to_owned),
                            kind: Some("function".into()),
                            function: FunctionCall {
                                name: item["name"].as_str().map(str::to_owned),
                                arguments: item["arguments"].as_str().unwrap_or("{}").to_owned(),
                            },
                        };
                        // Consecutive calls belong to one assistant turn.
                        match messages.last_mut() {
                            Some(m) if m.role == Role::Assistant && m.tool_calls.is_some() => {
                                if let Some(calls) = m.tool_calls.as_mut() {
                                    calls.push(call);
                                }
                            }
                            _ => {
                                let mut m = new_message(Role::Assistant, None);
                                m.tool_calls = Some(vec![call]);
                                messages.push(m);
                            }
                        }
                    }
                    "function_call_output" => {
                        let output = match &item["output"] {
                            Value::String(s) => s.clone(),
                            other => content_of(other, &format!("{at}.output"))?.text(),
                        };
                        let mut m = new_message(Role::Tool, Some(Content::Text(output)));
                        m.tool_call_id = Some(
                            item["call_id"]
                                .as_str()
                                .ok_or_else(|| invalid(format!("{at}.call_id"), "is required"))?
                                .to_owned(),
                        );
                        messages.push(m);
                    }
                    // Reasoning items are the model's own notes; other
                    // backends have no place for them.
                    "reasoning" => {}
                    other => {
                        return Err(invalid(
                            format!("{at}.type"),
                            format!("`{other}` items are not supported"),
                        ))
                    }
                }
            }
        }
        Some(_) => return Err(invalid("input", "expected a string or a list of items")),
    }
    // Function tools become chat tools; the kinds that run at OpenAI or
    // need its own protocol (web search, file search, computer use,
    // namespaces, custom grammar tools) have no chat counterpart and are
    // dropped, as Messages' server tools are.
    let tools = match fields.get("tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(tools)) => {
            let mut out = Vec::new();
            for (k, t) in tools.iter().enumerate() {
                if t["type"].as_str() != Some("function") {
                    continue;
                }
                out.push(Tool {
                    kind: "function".into(),
                    function: FunctionDef {
                        name: t["name"]
                            .as_str()
                            .ok_or_else(|| invalid(format!("tools[{k}].name"), "is required"))?
                            .to_owned(),
                        description: t["description"].as_str().map(str::to_owned),
                        parameters: t.get("parameters").cloned(),
                    },
                });
            }
            (!out.is_empty()).then_some(out)
        }
        Some(_) => return Err(invalid("tools", "expected a list")),
    };
    let tool_choice = match fields.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Value::String(s.clone())),
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            Some(
                json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(Value::Null)}}),
            )
        }
        Some(_) => {
            return Err(invalid(
                "tool_choice",
                "expected auto, none, required or a function",
            ))
        }
    };
    let number = |name: &str| fields.get(name).and_then(Value::as_f64);
    let max_tokens = match fields.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid("max_output_tokens", "expected a positive integer"))?,
        ),
    };
    let mut extra = Map::new();
    if let Some(p) = fields.get("parallel_tool_calls").filter(|v| v.is_boolean()) {
        extra.insert("parallel_tool_calls".into(), p.clone());
    }
    let stream = fields.get("stream").and_then(Value::as_bool);
    Ok(crate::openai_wire::ChatRequest {
        model: model.to_owned(),
        messages,
        temperature: number("temperature"),
        top_p: number("top_p"),
        max_tokens,
        max_completion_tokens: None,
        stop: None,
        tools,
        tool_choice,
        user: fields
            .get("user")
            .and_then(Value::as_str)
            .map(str::to_owned),
        stream,
        stream_options: stream.filter(|s| *s).map(|_| StreamOptions {
            include_usage: true,
        }),
        extra,
    })
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex_id())
}

fn hex_id() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let bump = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}{bump:06x}")
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn usage_of(u: Option<&Usage>) -> Value {
    let u = u.copied().unwrap_or_default();
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens()},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// The response object around `output`.
fn response_object(
    id: &str,
    created_at: i64,
    model: &str,
    status: &str,
    output: Vec<Value>,
    usage: Option<Value>,
    request: &Value,
) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "model": model,
        "output": output,
        "usage": usage,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": request.get("instructions").cloned().unwrap_or(Value::Null),
        "max_output_tokens": request.get("max_output_tokens").cloned().unwrap_or(Value::Null),
        "parallel_tool_calls": request.get("parallel_tool_calls").cloned().unwrap_or(Value::Bool(true)),
        "temperature": request.get("temperature").cloned().unwrap_or(Value::Null),
        "top_p": request.get("top_p").cloned().unwrap_or(Value::Null),
        "tool_choice": request.get("tool_choice").cloned().unwrap_or_else(|| json!("auto")),
        "tools": request.get("tools").cloned().unwrap_or_else(|| json!([])),
        "metadata": request.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "store": false,
        "text": {"format": {"type": "text"}},
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
        "name": name, "arguments": arguments})
}

fn status_of(finish: Option<&FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Length) => "incomplete",
        _ => "completed",
    }
}

/// A completion as a response to `request`.
pub fn response_from_chat(c: &ChatCompletion, model: &str, request: &Value) -> Value {
    let mut output = Vec::new();
    let choice = c.choices.first();
    if let Some(choice) = choice {
        let text = choice
            .message
            .content
            .as_ref()
            .map(Content::text)
            .unwrap_or_default();
        if !text.is_empty() {
            output.push(message_item(&new_id("msg"), &text, "completed"));
        }
        for call in choice.message.tool_calls.iter().flatten() {
            output.push(call_item(
                &new_id("fc"),
                call.id.as_deref().unwrap_or_default(),
                call.function.name.as_deref().unwrap_or_default(),
                &call.function.arguments,
                "completed",
            ));
        }
    }
    let status = status_of(choice.and_then(|c| c.finish_reason.as_ref()));
    response_object(
        &new_id("resp"),
        c.created,
        model,
        status,
        output,
        Some(usage_of(c.usage.as_ref())),
        request,
    )
}

mod stream;
pub use stream::ChatToResponseEvents;

#[cfg(test)]
mod tests;
