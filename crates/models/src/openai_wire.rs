//! OpenAI's chat completions wire format: the request Switchyard accepts on
//! `/v1/chat/completions`, and the responses and stream chunks it returns.
//! Fields the service does not interpret are kept in `extra` and forwarded,
//! so newer client options still reach OpenAI-compatible upstreams.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Other OpenAI options (seed, response_format, …), passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// Message content: a string, or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: Value,
    },
    #[serde(untagged)]
    Other(Value),
}

impl Content {
    /// The text of the content, parts joined; non-text parts are skipped.
    pub fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: String,
}

/// Token counts as OpenAI reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

impl Usage {
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a model stopped: OpenAI's `finish_reason`. Values this service
/// does not know (some OpenAI-compatible servers have their own) are kept
/// as they came and passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
    Other(String),
}

impl FinishReason {
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::FunctionCall => "function_call",
            FinishReason::Other(s) => s,
        }
    }
}

impl PartialEq<&str> for FinishReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<&str> for FinishReason {
    fn from(s: &str) -> Self {
        match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            "function_call" => FinishReason::FunctionCall,
            other => FinishReason::Other(other.to_owned()),
        }
    }
}

impl Serialize for FinishReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(FinishReason::from(s.as_ref()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: Message,
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Present (possibly null) on every chunk when usage was requested;
    /// filled on the final one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletion {
    /// A completion holding one assistant message of plain text.
    pub fn assistant(
        id: String,
        model: String,
        text: String,
        finish: FinishReason,
        usage: Usage,
    ) -> Self {
        ChatCompletion {
            id,
            object: "chat.completion".into(),
            created: unix_now(),
            model,
            choices: vec![Choice {
                index: 0,
                message: Message {
                    role: Role::Assistant,
                    content: Some(Content::Text(text)),
                    name: None,
                    tool_calls: None,
                    tool_call_id: None,
                },
                finish_reason: Some(finish),
                extra: Map::new(),
            }],
            usage: Some(usage),
            extra: Map::new(),
        }
    }
}

impl ChatChunk {
    /// A stream chunk: one choice with `delta` (and `finish`), or, when
    /// `usage` is given, the choiceless chunk that reports it.
    pub fn new(
        id: &str,
        model: &str,
        delta: Delta,
        finish: Option<FinishReason>,
        usage: Option<Usage>,
    ) -> Self {
        ChatChunk {
            id: id.to_owned(),
            object: "chat.completion.chunk".into(),
            created: unix_now(),
            model: model.to_owned(),
            choices: if usage.is_some() {
                Vec::new()
            } else {
                vec![ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason: finish,
                    extra: Map::new(),
                }]
            },
            usage,
            extra: Map::new(),
        }
    }
}

impl ChatRequest {
    /// The largest number of tokens the request allows the model to produce.
    pub fn output_limit(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Checks what serde cannot: ranges and required content. Returns the
    /// offending field and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, msg: &str| Err((field.to_owned(), msg.to_owned()));
        if self.model.trim().is_empty() {
            return bad("model", "must not be empty");
        }
        if self.messages.is_empty() {
            return bad("messages", "must contain at least one message");
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return bad("temperature", "must be between 0 and 2");
            }
        }
        if let Some(p) = self.top_p {
            if !(0.0..=1.0).contains(&p) {
                return bad("top_p", "must be between 0 and 1");
            }
        }
        for (field, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if v == Some(0) {
                return bad(field, "must be at least 1");
            }
        }
        if let Some(Stop::Many(list)) = &self.stop {
            if list.len() > 4 {
                return bad("stop", "at most 4 stop sequences");
            }
        }
        for (i, m) in self.messages.iter().enumerate() {
            if m.role == Role::Tool && m.tool_call_id.is_none() {
                return bad(
                    &format!("messages[{i}].tool_call_id"),
                    "is required for tool messages",
                );
            }
            if m.content.is_none() && m.tool_calls.is_none() {
                return bad(&format!("messages[{i}].content"), "is required");
            }
        }
        Ok(())
    }
}

/// A request as an upstream is sent it: the caller's request with the
/// upstream's model name and this call's stream settings, serialised from
/// borrows of the caller's request rather than from a copy of it.
#[derive(Serialize)]
pub struct UpstreamChat<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a Stop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [Tool]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    stream: bool,
    /// Usage is always requested of a stream, so that every streamed call
    /// is accounted.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl ChatRequest {
    /// This request as `model` upstream is sent it (see [`UpstreamChat`]).
    pub fn for_upstream<'a>(&'a self, model: &'a str, stream: bool) -> UpstreamChat<'a> {
        // Taken apart without `..`, so that a field added to the request
        // does not compile until it is passed on here too.
        let ChatRequest {
            model: _,
            messages,
            temperature,
            top_p,
            max_tokens,
            max_completion_tokens,
            stop,
            tools,
            tool_choice,
            user,
            stream: _,
            stream_options: _,
            extra,
        } = self;
        UpstreamChat {
            model,
            messages,
            temperature: *temperature,
            top_p: *top_p,
            max_tokens: *max_tokens,
            max_completion_tokens: *max_completion_tokens,
            stop: stop.as_ref(),
            tools: tools.as_deref(),
            tool_choice: tool_choice.as_ref(),
            user: user.as_deref(),
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            extra,
        }
    }
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_keep_unknown_fields() {
        let text = r#"{"model":"m","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]},
            {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"}],
            "stream":true,"stream_options":{"include_usage":true},"seed":7,"stop":"END"}"#;
        let req: ChatRequest = serde_json::from_str(text).unwrap();
        assert!(req.validate().is_ok());
        assert_eq!(req.messages[1].content.as_ref().unwrap().text(), "hi there");
        assert_eq!(req.extra["seed"], 7);
        assert_eq!(req.stop, Some(Stop::One("END".into())));
        let again: ChatRequest =
            serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        assert_eq!(again, req);
    }

    #[test]
    fn the_upstream_is_sent_the_request_with_its_model_and_stream_settings() {
        let text = r#"{"model":"alias","messages":[{"role":"user","content":"hi"}],
            "temperature":0.5,"top_p":0.9,"max_tokens":7,"max_completion_tokens":8,
            "stop":["a","b"],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],
            "tool_choice":"auto","user":"u1","stream":false,
            "stream_options":{"include_usage":false},"seed":7,"response_format":{"type":"text"}}"#;
        let req: ChatRequest = serde_json::from_str(text).unwrap();
        for stream in [false, true] {
            let mut expected = req.clone();
            expected.model = "upstream-1".into();
            expected.stream = Some(stream);
            expected.stream_options = stream.then_some(StreamOptions {
                include_usage: true,
            });
            assert_eq!(
                serde_json::to_string(&req.for_upstream("upstream-1", stream)).unwrap(),
                serde_json::to_string(&expected).unwrap(),
                "stream: {stream}"
            );
        }
        let bare: ChatRequest =
            serde_json::from_str(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#)
                .unwrap();
        assert_eq!(
            serde_json::to_string(&bare.for_upstream("up", false)).unwrap(),
            r#"{"model":"up","messages":[{"role":"user","content":"x"}],"stream":false}"#
        );
    }

    #[test]
    fn validation_names_the_field() {
        let mut req: ChatRequest =
            serde_json::from_str(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#)
                .unwrap();
        req.temperature = Some(3.0);
        assert_eq!(req.validate().unwrap_err().0, "temperature");
        req.temperature = None;
        req.messages.clear();
        assert_eq!(req.validate().unwrap_err().0, "messages");
        let tool: ChatRequest =
            serde_json::from_str(r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#)
                .unwrap();
        assert_eq!(tool.validate().unwrap_err().0, "messages[0].tool_call_id");
    }
}
