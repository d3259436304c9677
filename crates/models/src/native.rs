//! Requests passed through to an upstream that speaks the client's own API:
//! a Messages request to an Anthropic upstream, a Responses request to an
//! OpenAI upstream that serves Responses. The body goes as the client sent
//! it with only the model renamed to the upstream's; the reply, or each
//! streamed event, comes back as the upstream sent it with only the model
//! renamed to the catalog's, its usage read on the way for accounting.
//! Fields and events added to those APIs later pass both ways untouched.

use crate::anthropic_wire::{AnthropicUsage, DeltaUsage};
use crate::backend::{BackendError, BackendStream};
use crate::openai_wire::{PromptTokensDetails, Usage};
use crate::sse::SseEvent;
use serde_json::Value;

/// The API a passed-through request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Anthropic's Messages API.
    Messages,
    /// OpenAI's Responses API.
    Responses,
}

impl Dialect {
    /// The event after which a stream is complete.
    pub fn end_event(self) -> &'static str {
        match self {
            Dialect::Messages => "message_stop",
            Dialect::Responses => "response.completed",
        }
    }
}

/// A reply as the upstream sent it (model renamed), with its usage.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeReply {
    pub body: Value,
    pub usage: Usage,
}

/// One streamed event as the upstream sent it (model renamed), with the
/// call's usage so far where the event changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeEvent {
    pub event: Option<String>,
    pub data: String,
    pub usage: Option<Usage>,
}

impl NativeEvent {
    /// The event in SSE framing.
    pub fn to_sse(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 32);
        if let Some(name) = &self.event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
        }
        for line in self.data.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }
}

pub type NativeStream = BackendStream<NativeEvent>;

/// A request to pass through: the client's body, and the headers and
/// query string of its API (`anthropic-beta`, `?beta=true`) that the
/// upstream should see as well.
#[derive(Debug, Clone, Default)]
pub struct Forward {
    pub body: Value,
    pub headers: Vec<(String, String)>,
    pub query: Option<String>,
}

impl Forward {
    /// The value of one of the forwarded headers.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `url` with the forwarded query string.
    pub fn url(&self, url: &str) -> String {
        match &self.query {
            Some(q) if !q.is_empty() => format!("{url}?{q}"),
            _ => url.to_owned(),
        }
    }

    /// The upstream's body (see [`upstream_body`]), serialised.
    pub fn body_for(&self, upstream_model: &str, stream: bool) -> Vec<u8> {
        serde_json::to_vec(&upstream_body(self.body.clone(), upstream_model, stream))
            .unwrap_or_default()
    }
}

/// Sends a passed-through request and reads the reply.
pub(crate) async fn forward(
    req: crate::client::RequestBuilder<'_>,
    dialect: Dialect,
    model_id: &str,
    timeout: std::time::Duration,
) -> Result<NativeReply, BackendError> {
    let bytes = crate::http::fetch_bytes(crate::http::traced(req), timeout).await?;
    reply(dialect, &bytes, model_id)
}

/// Sends a passed-through streamed request; errors before the first byte
/// are returned here, later ones as stream items, and the whole stream is
/// bounded by `timeout`.
pub(crate) async fn forward_stream(
    req: crate::client::RequestBuilder<'_>,
    dialect: Dialect,
    model_id: &str,
    timeout: std::time::Duration,
) -> Result<NativeStream, BackendError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let resp = crate::http::open_stream(crate::http::traced(req), deadline, timeout).await?;
    let mut decoder = EventDecoder::new(dialect, model_id);
    Ok(crate::http::sse_events(
        resp,
        deadline,
        timeout,
        dialect.end_event(),
        move |event| decoder.push(event).map(|(e, done)| (vec![e], done)),
    ))
}

/// A request body for the upstream: the client's, with `model` renamed and
/// `stream` set to how the call is made.
pub fn upstream_body(mut body: Value, upstream_model: &str, stream: bool) -> Value {
    if let Some(fields) = body.as_object_mut() {
        fields.insert("model".into(), Value::String(upstream_model.to_owned()));
        if stream {
            fields.insert("stream".into(), Value::Bool(true));
        } else {
            fields.remove("stream");
        }
    }
    body
}

fn rename_model(object: Option<&mut Value>, model_id: &str) {
    if let Some(Value::Object(fields)) = object {
        if fields.contains_key("model") {
            fields.insert("model".into(), Value::String(model_id.to_owned()));
        }
    }
}

/// The usage of a Responses object (`usage.input_tokens`, …).
pub fn responses_usage(usage: &Value) -> Usage {
    let input = usage["input_tokens"].as_u64().unwrap_or(0);
    let output = usage["output_tokens"].as_u64().unwrap_or(0);
    Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: input + output,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: usage["input_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0),
        }),
    }
}

fn anthropic_usage_of(v: &Value) -> AnthropicUsage {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// Reads a non-streamed reply: its usage, and its `model` renamed to
/// `model_id`.
pub fn reply(dialect: Dialect, bytes: &[u8], model_id: &str) -> Result<NativeReply, BackendError> {
    let mut body: Value = serde_json::from_slice(bytes)
        .map_err(|e| BackendError::Protocol(format!("invalid reply: {e}")))?;
    if !body.is_object() {
        return Err(BackendError::Protocol(
            "invalid reply: not an object".into(),
        ));
    }
    let usage = match dialect {
        Dialect::Messages => anthropic_usage_of(&body["usage"]).to_openai(),
        Dialect::Responses => responses_usage(&body["usage"]),
    };
    rename_model(Some(&mut body), model_id);
    Ok(NativeReply { body, usage })
}

/// Follows a passed-through stream: renames the model where events carry
/// it, keeps the running usage, and says when the stream is complete.
#[derive(Debug)]
pub struct EventDecoder {
    dialect: Dialect,
    model_id: String,
    /// Messages: the counts so far (`message_start`, then each
    /// `message_delta`'s cumulative ones).
    anthropic: AnthropicUsage,
}

impl EventDecoder {
    pub fn new(dialect: Dialect, model_id: &str) -> Self {
        Self {
            dialect,
            model_id: model_id.to_owned(),
            anthropic: AnthropicUsage::default(),
        }
    }

    /// One upstream event, as it goes to the client, and whether the stream
    /// is complete. An `error` event is the upstream giving up mid-stream.
    pub fn push(&mut self, event: SseEvent) -> Result<(NativeEvent, bool), BackendError> {
        let untouched = |event: SseEvent| {
            let SseEvent { event, data } = event;
            Ok((
                NativeEvent {
                    event,
                    data,
                    usage: None,
                },
                false,
            ))
        };
        if !self.may_matter(&event) {
            return untouched(event);
        }
        let Ok(mut data) = serde_json::from_str::<Value>(&event.data) else {
            // Not JSON (a future keep-alive, say): passed on as it is.
            return untouched(event);
        };
        let kind = event
            .event
            .clone()
            .or_else(|| data["type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if kind == "error" {
            let error = if data["error"].is_object() {
                &data["error"]
            } else {
                &data
            };
            return Err(BackendError::Status {
                status: 502,
                message: format!(
                    "{}: {}",
                    error["type"].as_str().unwrap_or("error"),
                    error["message"].as_str().unwrap_or("the upstream failed")
                ),
                retry_after: None,
            });
        }
        let (usage, finished, renamed) = match self.dialect {
            Dialect::Messages => self.messages_event(&kind, &mut data),
            Dialect::Responses => responses_event(&kind, &mut data, &self.model_id),
        };
        let data = if renamed {
            serde_json::to_string(&data).unwrap_or(event.data)
        } else {
            event.data
        };
        Ok((
            NativeEvent {
                event: event.event,
                data,
                usage,
            },
            finished,
        ))
    }

    /// Whether an event may carry what is read here (a model, usage, the
    /// end, an error). Events named otherwise — the bulk of a stream, its
    /// deltas — pass on without being parsed.
    fn may_matter(&self, event: &SseEvent) -> bool {
        let Some(name) = event.event.as_deref() else {
            return true;
        };
        match self.dialect {
            Dialect::Messages => matches!(
                name,
                "message_start" | "message_delta" | "message_stop" | "error"
            ),
            // The lifecycle events carry the response object.
            Dialect::Responses => name == "error" || event.data.contains("\"response\""),
        }
    }

    /// (usage, finished, renamed) for a Messages event.
    fn messages_event(&mut self, kind: &str, data: &mut Value) -> (Option<Usage>, bool, bool) {
        match kind {
            "message_start" => {
                self.anthropic = anthropic_usage_of(&data["message"]["usage"]);
                rename_model(data.get_mut("message"), &self.model_id);
                (Some(self.anthropic.to_openai()), false, true)
            }
            "message_delta" => {
                let Ok(delta) = serde_json::from_value::<DeltaUsage>(data["usage"].clone()) else {
                    return (None, false, false);
                };
                let u = &mut self.anthropic;
                u.output_tokens = delta.output_tokens;
                if let Some(n) = delta.input_tokens {
                    u.input_tokens = n;
                }
                if delta.cache_creation_input_tokens.is_some() {
                    u.cache_creation_input_tokens = delta.cache_creation_input_tokens;
                }
                if delta.cache_read_input_tokens.is_some() {
                    u.cache_read_input_tokens = delta.cache_read_input_tokens;
                }
                (Some(u.to_openai()), false, false)
            }
            "message_stop" => (None, true, false),
            _ => (None, false, false),
        }
    }
}

/// (usage, finished, renamed) for a Responses event: the `response.*`
/// lifecycle events carry the response object (and at the end its usage).
fn responses_event(kind: &str, data: &mut Value, model_id: &str) -> (Option<Usage>, bool, bool) {
    if !data["response"].is_object() {
        return (None, false, false);
    }
    rename_model(data.get_mut("response"), model_id);
    let terminal = matches!(
        kind,
        "response.completed" | "response.incomplete" | "response.failed"
    );
    let usage = (terminal && data["response"]["usage"].is_object())
        .then(|| responses_usage(&data["response"]["usage"]));
    (usage, terminal, true)
}

#[cfg(test)]
#[path = "native_tests.rs"]
mod tests;
