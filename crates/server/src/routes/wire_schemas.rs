//! The published schemas of the two wire formats the service speaks —
//! OpenAI's chat completions and Anthropic's Messages — for the OpenAPI
//! document. Their Rust types keep unknown fields and pass them on (so
//! they are not derived): the schemas here describe what the service reads,
//! allow what it passes through, and are referenced from the handlers'
//! annotations as `ref("#/components/schemas/NAME")`.

use serde_json::{json, Map, Value};
use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};

/// The names of the schemas this module adds to `components.schemas`.
pub const CHAT_REQUEST: &str = "ChatCompletionRequest";
pub const CHAT_MESSAGE: &str = "ChatMessage";

/// `{"$ref": …}` to one of this module's schemas.
fn to(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// An array of one of this module's schemas, for a derived type's field
/// (`#[schema(schema_with = …)]`).
fn array_of(name: &str, min: usize, max: Option<usize>) -> RefOr<Schema> {
    let array = ArrayBuilder::new()
        .items(Ref::from_schema_name(name))
        .min_items(Some(min))
        .max_items(max);
    RefOr::T(Schema::Array(array.build()))
}

/// `requests` of `POST /v1/batch`: 1 to 100 chat completion requests.
pub fn batch_requests() -> RefOr<Schema> {
    array_of(CHAT_REQUEST, 1, Some(super::batch::MAX_ITEMS))
}

/// A chat completion, in `POST /v1/batch`'s answer.
pub fn chat_completion() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name("ChatCompletion"))
}

/// `messages` of `POST /v1/route`.
pub fn chat_messages() -> RefOr<Schema> {
    array_of(CHAT_MESSAGE, 0, None)
}

fn string_or_strings() -> Value {
    json!({"oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
    ]})
}

fn openai_schemas() -> Vec<(&'static str, Value)> {
    let usage = json!({
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {
            "prompt_tokens": {"type": "integer", "minimum": 0},
            "completion_tokens": {"type": "integer", "minimum": 0},
            "total_tokens": {"type": "integer", "minimum": 0},
            "prompt_tokens_details": {
                "type": "object",
                "properties": {"cached_tokens": {"type": "integer", "minimum": 0}},
            },
        },
    });
    vec![
        (
            CHAT_REQUEST,
            json!({
                "type": "object",
                "description": "An OpenAI chat completion request. Options not listed here (seed, response_format, logprobs, …) are passed to OpenAI-compatible upstreams unchanged; other backends ignore them.",
                "required": ["model", "messages"],
                "properties": {
                    "model": {"type": "string", "description": "A model id or alias of `GET /v1/models`, or `auto`."},
                    "messages": {"type": "array", "items": to(CHAT_MESSAGE)},
                    "temperature": {"type": "number"},
                    "top_p": {"type": "number"},
                    "max_tokens": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                    "max_completion_tokens": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                    "stop": string_or_strings(),
                    "tools": {"type": "array", "items": to("ChatTool")},
                    "tool_choice": {
                        "description": "`none`, `auto`, `required`, or `{\"type\": \"function\", \"function\": {\"name\": …}}`.",
                        "oneOf": [{"type": "string"}, {"type": "object"}],
                    },
                    "user": {"type": "string"},
                    "stream": {"type": "boolean", "description": "Answer as Server-Sent Events of `chat.completion.chunk` objects, ending with `data: [DONE]`."},
                    "stream_options": {
                        "type": "object",
                        "properties": {"include_usage": {"type": "boolean"}},
                    },
                },
            }),
        ),
        (
            CHAT_MESSAGE,
            json!({
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
                    "content": {"oneOf": [
                        {"type": "string"},
                        {"type": "array", "items": to("ChatContentPart")},
                        {"type": "null"},
                    ]},
                    "name": {"type": "string"},
                    "tool_calls": {"type": "array", "items": to("ChatToolCall")},
                    "tool_call_id": {"type": "string"},
                },
            }),
        ),
        (
            "ChatContentPart",
            json!({
                "type": "object",
                "description": "A part of a message: `{\"type\": \"text\", \"text\"}` is read; other parts (`image_url`, `input_audio`, …) are passed to upstreams that take them.",
                "required": ["type"],
                "properties": {
                    "type": {"type": "string"},
                    "text": {"type": "string"},
                    "image_url": {},
                },
            }),
        ),
        (
            "ChatTool",
            json!({
                "type": "object",
                "required": ["type", "function"],
                "properties": {
                    "type": {"type": "string", "description": "`function`."},
                    "function": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "description": {"type": "string"},
                            "parameters": {"type": "object", "description": "The arguments' JSON Schema."},
                        },
                    },
                },
            }),
        ),
        (
            "ChatToolCall",
            json!({
                "type": "object",
                "required": ["function"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                    "id": {"type": "string"},
                    "type": {"type": "string"},
                    "function": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "arguments": {"type": "string", "description": "JSON text."},
                        },
                    },
                },
            }),
        ),
        (
            "ChatCompletion",
            json!({
                "type": "object",
                "required": ["id", "object", "created", "model", "choices"],
                "properties": {
                    "id": {"type": "string"},
                    "object": {"type": "string", "enum": ["chat.completion"]},
                    "created": {"type": "integer"},
                    "model": {"type": "string"},
                    "choices": {"type": "array", "items": {
                        "type": "object",
                        "required": ["index", "message"],
                        "properties": {
                            "index": {"type": "integer", "minimum": 0},
                            "message": to(CHAT_MESSAGE),
                            "finish_reason": {"type": ["string", "null"]},
                        },
                    }},
                    "usage": usage,
                },
            }),
        ),
    ]
}

fn responses_schemas() -> Vec<(&'static str, Value)> {
    let item = json!({
        "type": "object",
        "description": "A message (`role` and `content`: a string or `input_text` / `output_text` / `input_image` parts), a `function_call` (`call_id`, `name`, `arguments`), a `function_call_output` (`call_id`, `output`), or a `reasoning` item (ignored).",
        "properties": {
            "type": {"type": "string", "enum": ["message", "function_call", "function_call_output", "reasoning"]},
            "role": {"type": "string", "enum": ["user", "assistant", "system", "developer"]},
            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
            "call_id": {"type": "string"},
            "name": {"type": "string"},
            "arguments": {"type": "string"},
            "output": {},
        },
    });
    vec![
        (
            "ResponsesRequest",
            json!({
                "type": "object",
                "description": "An OpenAI Responses request, served through the chat completion form by any backend. Responses are not stored: `previous_response_id` is refused.",
                "required": ["model", "input"],
                "properties": {
                    "model": {"type": "string"},
                    "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": item}]},
                    "instructions": {"type": "string"},
                    "tools": {"type": "array", "items": {
                        "type": "object",
                        "required": ["type", "name"],
                        "properties": {
                            "type": {"type": "string", "enum": ["function"]},
                            "name": {"type": "string"},
                            "description": {"type": "string"},
                            "parameters": {"type": "object"},
                            "strict": {"type": "boolean"},
                        },
                    }},
                    "tool_choice": {"oneOf": [{"type": "string", "enum": ["auto", "none", "required"]}, {"type": "object"}]},
                    "max_output_tokens": {"type": "integer", "minimum": 1, "maximum": u32::MAX},
                    "temperature": {"type": "number"},
                    "top_p": {"type": "number"},
                    "parallel_tool_calls": {"type": "boolean"},
                    "stream": {"type": "boolean"},
                    "store": {"type": "boolean", "description": "Accepted; nothing is stored."},
                    "user": {"type": "string"},
                },
            }),
        ),
        (
            "Response",
            json!({
                "type": "object",
                "required": ["id", "object", "created_at", "status", "model", "output"],
                "properties": {
                    "id": {"type": "string"},
                    "object": {"type": "string", "enum": ["response"]},
                    "created_at": {"type": "integer"},
                    "status": {"type": "string", "enum": ["completed", "incomplete", "in_progress"]},
                    "model": {"type": "string"},
                    "output": {"type": "array", "items": {"type": "object", "required": ["type"]}},
                    "usage": {"type": ["object", "null"]},
                },
            }),
        ),
    ]
}

fn anthropic_schemas() -> Vec<(&'static str, Value)> {
    let blocks = json!({"type": "array", "items": to("AnthropicContentBlock")});
    vec![
        (
            "AnthropicMessagesRequest",
            json!({
                "type": "object",
                "description": "An Anthropic Messages request. Options not listed here (thinking, service_tier, …) are passed to Anthropic upstreams.",
                "required": ["model", "max_tokens", "messages"],
                "properties": {
                    "model": {"type": "string", "description": "A model id or alias of `GET /v1/models`, or `auto`."},
                    "max_tokens": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                    "messages": {"type": "array", "items": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"type": "string", "enum": ["user", "assistant"]},
                            "content": {"oneOf": [{"type": "string"}, blocks]},
                        },
                    }},
                    "system": {"oneOf": [{"type": "string"}, blocks]},
                    "temperature": {"type": "number"},
                    "top_p": {"type": "number"},
                    "top_k": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                    "stop_sequences": {"type": "array", "items": {"type": "string"}},
                    "stream": {"type": "boolean", "description": "Answer as Anthropic's Server-Sent Events (`message_start` … `message_stop`)."},
                    "tools": {"type": "array", "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "description": {"type": "string"},
                            "input_schema": {"type": "object"},
                        },
                    }},
                    "tool_choice": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"type": "string", "enum": ["auto", "any", "tool", "none"]},
                            "name": {"type": "string"},
                            "disable_parallel_tool_use": {"type": "boolean"},
                        },
                    },
                    "metadata": {"type": "object", "properties": {"user_id": {"type": "string"}}},
                },
            }),
        ),
        (
            "AnthropicContentBlock",
            json!({
                "type": "object",
                "description": "A content block: `text`, `image`, `tool_use` and `tool_result` are read; others (`thinking`, `document`, …) are passed to Anthropic upstreams.",
                "required": ["type"],
                "properties": {
                    "type": {"type": "string"},
                    "text": {"type": "string"},
                    "source": {"type": "object"},
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "input": {},
                    "tool_use_id": {"type": "string"},
                    "content": {},
                    "is_error": {"type": "boolean"},
                },
            }),
        ),
        (
            "AnthropicMessage",
            json!({
                "type": "object",
                "required": ["id", "type", "role", "model", "content", "usage"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string", "enum": ["message"]},
                    "role": {"type": "string", "enum": ["assistant"]},
                    "model": {"type": "string"},
                    "content": blocks,
                    "stop_reason": {"type": ["string", "null"]},
                    "stop_sequence": {"type": ["string", "null"]},
                    "usage": {
                        "type": "object",
                        "required": ["input_tokens", "output_tokens"],
                        "properties": {
                            "input_tokens": {"type": "integer", "minimum": 0},
                            "output_tokens": {"type": "integer", "minimum": 0},
                            "cache_creation_input_tokens": {"type": ["integer", "null"], "minimum": 0},
                            "cache_read_input_tokens": {"type": ["integer", "null"], "minimum": 0},
                        },
                    },
                },
            }),
        ),
        (
            "AnthropicTokenCount",
            json!({
                "type": "object",
                "required": ["input_tokens"],
                "properties": {"input_tokens": {"type": "integer", "minimum": 0}},
            }),
        ),
        (
            "AnthropicError",
            json!({
                "type": "object",
                "description": "Every error of the Anthropic routes, in Anthropic's shape.",
                "required": ["type", "error"],
                "properties": {
                    "type": {"type": "string", "enum": ["error"]},
                    "error": {
                        "type": "object",
                        "required": ["type", "message"],
                        "properties": {
                            "type": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
            }),
        ),
    ]
}

/// Adds the wire schemas to a serialised OpenAPI document.
pub fn add_to(document: &mut Value) {
    let Some(root) = document.as_object_mut() else {
        return;
    };
    let components = root
        .entry("components")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(components) = components.as_object_mut() else {
        return;
    };
    let schemas = components
        .entry("schemas")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(schemas) = schemas.as_object_mut() {
        for (name, schema) in openai_schemas()
            .into_iter()
            .chain(responses_schemas())
            .chain(anthropic_schemas())
        {
            schemas.insert(name.to_owned(), schema);
        }
    }
}

/// The OpenAPI document as served at `/openapi.json`.
pub fn document() -> Value {
    use utoipa::OpenApi;
    let mut document =
        serde_json::to_value(super::openapi::ApiDoc::openapi()).unwrap_or(Value::Null);
    add_to(&mut document);
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for r in found {
            let pointer = r.strip_prefix('#').unwrap_or(r);
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn every_json_request_body_has_a_schema_with_properties() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let mut bodies = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let Some(schema) = op.pointer("/requestBody/content/application~1json/schema")
                else {
                    continue;
                };
                bodies += 1;
                let resolved = match schema.get("$ref").and_then(Value::as_str) {
                    Some(r) => doc.pointer(r.strip_prefix('#').unwrap()).unwrap(),
                    None => schema,
                };
                let resolved = resolved
                    .get("oneOf")
                    .and_then(|o| o.as_array())
                    .and_then(|o| o.iter().find(|s| s.get("type") != Some(&json!("null"))))
                    .map(|s| match s.get("$ref").and_then(Value::as_str) {
                        Some(r) => doc.pointer(r.strip_prefix('#').unwrap()).unwrap(),
                        None => s,
                    })
                    .unwrap_or(resolved);
                assert!(
                    resolved.get("properties").is_some(),
                    "{method} {path}: the request body is published without its fields: {schema}"
                );
            }
        }
        assert!(bodies >= 12, "{bodies}");
    }
}
