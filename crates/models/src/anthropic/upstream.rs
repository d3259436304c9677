//! OpenAI chat requests to an Anthropic upstream, and its replies and
//! streams back into OpenAI's shapes.

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// OpenAI request → Anthropic request
// ---------------------------------------------------------------------------

/// Translates an OpenAI chat request into an Anthropic Messages request for
/// `upstream_model`. System and developer messages become `system`;
/// consecutive messages of one role are merged (Anthropic requires
/// alternating roles); tool messages become `tool_result` blocks of a user
/// message. The error names the offending field.
pub fn to_anthropic(
    req: &ChatRequest,
    upstream_model: &str,
    default_max_tokens: u32,
) -> Result<MessagesRequest, String> {
    let mut system_texts: Vec<String> = Vec::new();
    let mut system_blocks: Vec<ContentBlock> = Vec::new();
    let mut system_plain = true;
    let mut messages: Vec<AnthropicMessage> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => match &m.content {
                Some(Content::Text(t)) if !t.is_empty() => {
                    system_texts.push(t.clone());
                    system_blocks.push(ContentBlock::text(t.clone()));
                }
                None | Some(Content::Text(_)) => {}
                Some(Content::Parts(parts)) => {
                    system_plain = false;
                    for (k, p) in parts.iter().enumerate() {
                        match p {
                            ContentPart::Text { text } => {
                                system_blocks.push(ContentBlock::text(text.clone()));
                            }
                            _ => {
                                return Err(format!(
                                "messages[{i}].content[{k}]: system messages may contain only text"
                            ))
                            }
                        }
                    }
                }
            },
            Role::User => {
                let content = match &m.content {
                    None => return Err(format!("messages[{i}].content is required")),
                    Some(Content::Text(t)) => MessageContent::Text(t.clone()),
                    Some(Content::Parts(parts)) => {
                        MessageContent::Blocks(user_blocks(&format!("messages[{i}]"), parts)?)
                    }
                };
                push_merged(&mut messages, AnthropicRole::User, content);
            }
            Role::Assistant => {
                push_merged(
                    &mut messages,
                    AnthropicRole::Assistant,
                    assistant_content(i, m)?,
                );
            }
            Role::Tool => {
                let tool_use_id = m
                    .tool_call_id
                    .clone()
                    .ok_or_else(|| format!("messages[{i}].tool_call_id is required"))?;
                let content = match &m.content {
                    None => None,
                    Some(Content::Text(t)) => Some(MessageContent::Text(t.clone())),
                    Some(Content::Parts(parts)) => Some(MessageContent::Blocks(user_blocks(
                        &format!("messages[{i}]"),
                        parts,
                    )?)),
                };
                let block = ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error: None,
                    extra: Map::new(),
                };
                push_merged(
                    &mut messages,
                    AnthropicRole::User,
                    MessageContent::Blocks(vec![block]),
                );
            }
        }
    }
    let system = if system_blocks.is_empty() {
        None
    } else if system_plain {
        Some(SystemPrompt::Text(system_texts.join("\n\n")))
    } else {
        Some(SystemPrompt::Blocks(system_blocks))
    };

    let tools = match &req.tools {
        None => None,
        Some(tools) => Some(
            tools
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    if t.kind != "function" {
                        return Err(format!("tools[{k}]: type `{}` is not supported", t.kind));
                    }
                    Ok(AnthropicTool {
                        name: t.function.name.clone(),
                        description: t.function.description.clone(),
                        input_schema: t
                            .function
                            .parameters
                            .clone()
                            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                        extra: Map::new(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?,
        ),
    };

    let mut tool_choice = match &req.tool_choice {
        None => None,
        Some(v) => Some(anthropic_tool_choice(v)?),
    };
    if req.extra.get("parallel_tool_calls") == Some(&Value::Bool(false)) && tools.is_some() {
        let choice = tool_choice.get_or_insert_with(|| ToolChoice::of(ToolChoiceKind::Auto));
        if choice.kind != ToolChoiceKind::None {
            choice.disable_parallel_tool_use = Some(true);
        }
    }

    Ok(MessagesRequest {
        model: upstream_model.to_owned(),
        max_tokens: req.output_limit().unwrap_or(default_max_tokens),
        messages,
        system,
        temperature: req.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p,
        top_k: None,
        stop_sequences: req.stop.as_ref().map(|s| match s {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(list) => list.clone(),
        }),
        stream: req.stream,
        tools,
        tool_choice,
        metadata: req.user.as_ref().map(|u| json!({"user_id": u})),
        extra: Map::new(),
    })
}

/// Appends a message, merging it into the previous one when both have the
/// same role. In a merged user message, tool results come first, as
/// Anthropic requires.
fn push_merged(messages: &mut Vec<AnthropicMessage>, role: AnthropicRole, content: MessageContent) {
    match messages.last_mut() {
        Some(last) if last.role == role => {
            let previous = std::mem::replace(&mut last.content, MessageContent::Blocks(Vec::new()));
            let mut blocks = previous.into_blocks();
            blocks.extend(content.into_blocks());
            if role == AnthropicRole::User {
                let (mut results, rest): (Vec<_>, Vec<_>) = blocks
                    .into_iter()
                    .partition(|b| matches!(b, ContentBlock::ToolResult { .. }));
                results.extend(rest);
                blocks = results;
            }
            last.content = MessageContent::Blocks(blocks);
        }
        _ => messages.push(AnthropicMessage { role, content }),
    }
}

fn user_blocks(at: &str, parts: &[ContentPart]) -> Result<Vec<ContentBlock>, String> {
    parts
        .iter()
        .enumerate()
        .map(|(k, p)| match p {
            ContentPart::Text { text } => Ok(ContentBlock::text(text.clone())),
            ContentPart::ImageUrl { image_url } => Ok(ContentBlock::Image {
                source: image_source(image_url)
                    .map_err(|e| format!("{at}.content[{k}].image_url: {e}"))?,
                extra: Map::new(),
            }),
            ContentPart::Other(v) => Err(format!(
                "{at}.content[{k}]: content of type `{}` is not supported by Anthropic models",
                v["type"].as_str().unwrap_or("unknown")
            )),
        })
        .collect()
}

/// An OpenAI `image_url` (`{"url": …}` or a bare string) as an Anthropic
/// image source: data URLs become base64 sources.
fn image_source(image_url: &Value) -> Result<Value, String> {
    let url = image_url["url"]
        .as_str()
        .or_else(|| image_url.as_str())
        .ok_or("a url is required")?;
    match url.strip_prefix("data:") {
        None => Ok(json!({"type": "url", "url": url})),
        Some(rest) => {
            let (meta, data) = rest.split_once(',').ok_or("malformed data URL")?;
            let media_type = meta
                .strip_suffix(";base64")
                .ok_or("only base64 data URLs are supported")?;
            Ok(json!({"type": "base64", "media_type": media_type, "data": data}))
        }
    }
}

/// The inverse of `image_source`.
pub(super) fn image_url_of(source: &Value) -> Option<Value> {
    match source["type"].as_str()? {
        "base64" => Some(json!({"url": format!(
            "data:{};base64,{}",
            source["media_type"].as_str()?,
            source["data"].as_str()?
        )})),
        "url" => Some(json!({"url": source["url"].as_str()?})),
        _ => None,
    }
}

fn assistant_content(i: usize, m: &Message) -> Result<MessageContent, String> {
    let calls = m.tool_calls.as_deref().unwrap_or_default();
    if calls.is_empty() {
        if let Some(Content::Text(t)) = &m.content {
            return Ok(MessageContent::Text(t.clone()));
        }
    }
    let mut blocks = Vec::new();
    match &m.content {
        Some(Content::Text(t)) if !t.is_empty() => blocks.push(ContentBlock::text(t.clone())),
        None | Some(Content::Text(_)) => {}
        Some(Content::Parts(parts)) => {
            for p in parts {
                // Refusal and other parts have no Anthropic counterpart.
                if let ContentPart::Text { text } = p {
                    blocks.push(ContentBlock::text(text.clone()));
                }
            }
        }
    }
    for (j, call) in calls.iter().enumerate() {
        let at = format!("messages[{i}].tool_calls[{j}]");
        let id = call
            .id
            .clone()
            .ok_or_else(|| format!("{at}.id is required"))?;
        let name = call
            .function
            .name
            .clone()
            .ok_or_else(|| format!("{at}.function.name is required"))?;
        let args = call.function.arguments.trim();
        let input = if args.is_empty() {
            json!({})
        } else {
            serde_json::from_str::<Value>(args)
                .map_err(|e| format!("{at}.function.arguments is not valid JSON: {e}"))?
        };
        if !input.is_object() {
            return Err(format!("{at}.function.arguments must be a JSON object"));
        }
        blocks.push(ContentBlock::tool_use(id, name, input));
    }
    Ok(MessageContent::Blocks(blocks))
}

fn anthropic_tool_choice(v: &Value) -> Result<ToolChoice, String> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::of(ToolChoiceKind::Auto)),
            "required" => Ok(ToolChoice::of(ToolChoiceKind::Any)),
            "none" => Ok(ToolChoice::of(ToolChoiceKind::None)),
            other => Err(format!("tool_choice: `{other}` is not supported")),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = v["function"]["name"]
                .as_str()
                .ok_or("tool_choice.function.name is required")?;
            let mut choice = ToolChoice::of(ToolChoiceKind::Tool);
            choice.name = Some(name.to_owned());
            Ok(choice)
        }
        _ => Err("tool_choice: expected auto, required, none or a function".into()),
    }
}

// ---------------------------------------------------------------------------
// Anthropic response → OpenAI completion
// ---------------------------------------------------------------------------

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop: &StopReason) -> FinishReason {
    match stop {
        StopReason::MaxTokens => FinishReason::Length,
        StopReason::ToolUse => FinishReason::ToolCalls,
        StopReason::Refusal => FinishReason::ContentFilter,
        StopReason::EndTurn
        | StopReason::StopSequence
        | StopReason::PauseTurn
        | StopReason::Other(_) => FinishReason::Stop,
    }
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish: &FinishReason) -> StopReason {
    match finish {
        FinishReason::Length => StopReason::MaxTokens,
        FinishReason::ToolCalls | FinishReason::FunctionCall => StopReason::ToolUse,
        FinishReason::ContentFilter => StopReason::Refusal,
        FinishReason::Stop | FinishReason::Other(_) => StopReason::EndTurn,
    }
}

/// Translates an Anthropic reply into an OpenAI chat completion for
/// `model_id`. Text blocks are joined; tool_use blocks become tool calls;
/// other blocks (thinking, …) are dropped.
pub fn from_anthropic(resp: MessagesResponse, model_id: &str) -> ChatCompletion {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in resp.content {
        match block {
            ContentBlock::Text { text: t, .. } => text.push_str(&t),
            ContentBlock::ToolUse {
                id, name, input, ..
            } => calls.push(ToolCall {
                index: None,
                id: Some(id),
                kind: Some("function".into()),
                function: FunctionCall {
                    name: Some(name),
                    arguments: tool_arguments(&input),
                },
            }),
            _ => {}
        }
    }
    let content = if text.is_empty() && !calls.is_empty() {
        None
    } else {
        Some(Content::Text(text))
    };
    ChatCompletion {
        id: resp.id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: model_id.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: Role::Assistant,
                content,
                name: None,
                tool_calls: (!calls.is_empty()).then_some(calls),
                tool_call_id: None,
            },
            finish_reason: resp.stop_reason.as_ref().map(finish_reason),
            extra: Map::new(),
        }],
        usage: Some(resp.usage.to_openai()),
        extra: Map::new(),
    }
}

pub(super) fn tool_arguments(input: &Value) -> String {
    if input.is_null() {
        "{}".into()
    } else {
        input.to_string()
    }
}

/// Turns the events of an Anthropic stream, one SSE `data` at a time, into
/// OpenAI chat chunks: a first chunk with the assistant role, text and tool
/// call deltas, a chunk with the finish reason, and at `message_stop` a
/// final chunk without choices that carries the usage.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    model_id: String,
    id: String,
    created: i64,
    usage: AnthropicUsage,
    /// Anthropic block index → OpenAI tool call index.
    tools: HashMap<u32, u32>,
    finished: bool,
}

impl AnthropicToOpenAiStream {
    pub fn new(model_id: &str) -> Self {
        Self {
            model_id: model_id.to_owned(),
            id: String::new(),
            created: unix_now(),
            usage: AnthropicUsage::default(),
            tools: HashMap::new(),
            finished: false,
        }
    }

    /// Whether `message_stop` was seen: nothing more is expected.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<FinishReason>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model_id.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                extra: Map::new(),
            }],
            usage: None,
            extra: Map::new(),
        }
    }

    fn tool_chunk(&self, call: ToolCall) -> ChatChunk {
        self.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Delta::default()
            },
            None,
        )
    }

    fn text_chunk(&self, text: String) -> ChatChunk {
        self.chunk(
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
        )
    }

    /// Feeds one event's data. An `error` event becomes a 502 status error.
    pub fn push(&mut self, data: &str) -> Result<Vec<ChatChunk>, BackendError> {
        let event: StreamEvent = serde_json::from_str(data)
            .map_err(|e| BackendError::Protocol(format!("invalid stream event: {e}")))?;
        let mut out = Vec::new();
        match event {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.usage = message.usage;
                out.push(self.chunk(
                    Delta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                ContentBlock::Text { text, .. } if !text.is_empty() => {
                    out.push(self.text_chunk(text));
                }
                ContentBlock::ToolUse { id, name, .. } => {
                    let n = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    self.tools.insert(index, n);
                    out.push(self.tool_chunk(ToolCall {
                        index: Some(n),
                        id: Some(id),
                        kind: Some("function".into()),
                        function: FunctionCall {
                            name: Some(name),
                            arguments: String::new(),
                        },
                    }));
                }
                _ => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } if !text.is_empty() => {
                    out.push(self.text_chunk(text));
                }
                BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                    if let Some(&n) = self.tools.get(&index) {
                        out.push(self.tool_chunk(ToolCall {
                            index: Some(n),
                            id: None,
                            kind: None,
                            function: FunctionCall {
                                name: None,
                                arguments: partial_json,
                            },
                        }));
                    }
                }
                _ => {}
            },
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.output_tokens = u.output_tokens;
                    if let Some(n) = u.input_tokens {
                        self.usage.input_tokens = n;
                    }
                    if let Some(n) = u.cache_read_input_tokens {
                        self.usage.cache_read_input_tokens = Some(n);
                    }
                    if let Some(n) = u.cache_creation_input_tokens {
                        self.usage.cache_creation_input_tokens = Some(n);
                    }
                }
                if let Some(stop) = &delta.stop_reason {
                    out.push(self.chunk(Delta::default(), Some(finish_reason(stop))));
                }
            }
            StreamEvent::MessageStop => {
                self.finished = true;
                out.push(ChatChunk {
                    id: self.id.clone(),
                    object: "chat.completion.chunk".into(),
                    created: self.created,
                    model: self.model_id.clone(),
                    choices: Vec::new(),
                    usage: Some(self.usage.to_openai()),
                    extra: Map::new(),
                });
            }
            StreamEvent::Error { error } => {
                return Err(BackendError::Status {
                    status: 502,
                    message: format!("{}: {}", error.kind, error.message),
                    retry_after: None,
                })
            }
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Other(_) => {}
        }
        Ok(out)
    }
}
