//! Anthropic clients (`/v1/messages`) served by any backend: their requests
//! into OpenAI's chat format, and completions and chunk streams back into
//! Anthropic's replies and event sequence.

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// Anthropic clients served by any backend
// ---------------------------------------------------------------------------

/// Translates an Anthropic Messages request into an OpenAI chat request (the
/// inverse of [`to_anthropic`]), for serving `/v1/messages` from any
/// backend. Tool results become tool messages ahead of the rest of their
/// user message; thinking blocks are dropped; `top_k` and Anthropic-only
/// options are dropped. The error names the offending field.
pub fn chat_request_from_anthropic(req: &MessagesRequest) -> Result<ChatRequest, String> {
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        let content = match system {
            SystemPrompt::Text(t) => Content::Text(t.clone()),
            // Only text has a chat counterpart; other blocks are dropped.
            SystemPrompt::Blocks(blocks) => Content::Parts(
                blocks
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Text { text, .. } => {
                            Some(ContentPart::Text { text: text.clone() })
                        }
                        _ => None,
                    })
                    .collect(),
            ),
        };
        messages.push(message(Role::System, Some(content)));
    }
    for (i, m) in req.messages.iter().enumerate() {
        match (m.role, &m.content) {
            (role, MessageContent::Text(t)) => {
                let role = match role {
                    AnthropicRole::User => Role::User,
                    AnthropicRole::Assistant => Role::Assistant,
                    AnthropicRole::System => Role::System,
                };
                messages.push(message(role, Some(Content::Text(t.clone()))));
            }
            // Instructions in the conversation: their text, where they are;
            // other blocks (cache_control rides on text blocks) have no
            // place in an OpenAI system message and are dropped.
            (AnthropicRole::System, MessageContent::Blocks(blocks)) => {
                let text = MessageContent::Blocks(blocks.clone()).text();
                messages.push(message(Role::System, Some(Content::Text(text))));
            }
            (AnthropicRole::User, MessageContent::Blocks(blocks)) => {
                let mut parts = Vec::new();
                for (k, b) in blocks.iter().enumerate() {
                    let at = format!("messages[{i}].content[{k}]");
                    match b {
                        ContentBlock::Text { text, .. } => {
                            parts.push(ContentPart::Text { text: text.clone() });
                        }
                        ContentBlock::Image { source, .. } => parts.push(ContentPart::ImageUrl {
                            image_url: image_url_of(source)
                                .ok_or_else(|| format!("{at}.source: unsupported image source"))?,
                        }),
                        ContentBlock::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                            ..
                        } => {
                            let mut text = match content {
                                None => String::new(),
                                Some(MessageContent::Text(t)) => t.clone(),
                                // A chat tool message carries text only: the
                                // result's other blocks (images, …) are dropped.
                                Some(content) => content.text(),
                            };
                            if *is_error == Some(true) {
                                text = format!("Error: {text}");
                            }
                            let mut tool = message(Role::Tool, Some(Content::Text(text)));
                            tool.tool_call_id = Some(tool_use_id.clone());
                            messages.push(tool);
                        }
                        ContentBlock::ToolUse { .. } => {
                            return Err(format!(
                                "{at}: tool_use blocks belong in assistant messages"
                            ))
                        }
                        // Blocks other backends cannot express (documents,
                        // thinking, search results, …) are dropped, as
                        // docs/gateway.md lists.
                        ContentBlock::Other(_) => {}
                    }
                }
                if !parts.is_empty() {
                    messages.push(message(Role::User, Some(Content::Parts(parts))));
                }
            }
            (AnthropicRole::Assistant, MessageContent::Blocks(blocks)) => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for (k, b) in blocks.iter().enumerate() {
                    match b {
                        ContentBlock::Text { text: t, .. } => text.push_str(t),
                        ContentBlock::ToolUse {
                            id, name, input, ..
                        } => calls.push(ToolCall {
                            index: None,
                            id: Some(id.clone()),
                            kind: Some("function".into()),
                            function: FunctionCall {
                                name: Some(name.clone()),
                                arguments: tool_arguments(input),
                            },
                        }),
                        ContentBlock::Image { .. } | ContentBlock::ToolResult { .. } => {
                            return Err(format!(
                                "messages[{i}].content[{k}]: not allowed in assistant messages"
                            ))
                        }
                        // Thinking and other blocks have no OpenAI counterpart.
                        ContentBlock::Other(_) => {}
                    }
                }
                let mut m = message(
                    Role::Assistant,
                    (!text.is_empty() || calls.is_empty()).then_some(Content::Text(text)),
                );
                m.tool_calls = (!calls.is_empty()).then_some(calls);
                messages.push(m);
            }
        }
    }

    // Server tools (web search, code execution, …: a `type` and no input
    // schema) run at Anthropic; other backends have no counterpart, and they
    // are dropped like the blocks above rather than refusing the request.
    let tools: Vec<Tool> = req
        .tools
        .iter()
        .flatten()
        .filter(|t| !t.input_schema.is_null())
        .map(|t| Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: Some(t.input_schema.clone()),
            },
        })
        .collect();
    let tools = (!tools.is_empty()).then_some(tools);

    let mut extra = Map::new();
    let tool_choice = req.tool_choice.as_ref().map(|c| {
        if c.disable_parallel_tool_use == Some(true) {
            extra.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
        match c.kind {
            ToolChoiceKind::Auto => json!("auto"),
            ToolChoiceKind::Any => json!("required"),
            ToolChoiceKind::None => json!("none"),
            ToolChoiceKind::Tool => {
                json!({"type": "function", "function": {"name": c.name.clone().unwrap_or_default()}})
            }
        }
    });
    let stream = req.is_stream();
    Ok(ChatRequest {
        model: req.model.clone(),
        messages,
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: Some(req.max_tokens),
        max_completion_tokens: None,
        stop: req.stop_sequences.clone().map(Stop::Many),
        tools,
        tool_choice,
        user: req
            .metadata
            .as_ref()
            .and_then(|m| m["user_id"].as_str())
            .map(str::to_owned),
        stream: req.stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
        extra,
    })
}

fn message(role: Role, content: Option<Content>) -> Message {
    Message {
        role,
        content,
        name: None,
        tool_calls: None,
        tool_call_id: None,
    }
}

/// Anthropic usage for OpenAI usage: cached prompt tokens are reported as
/// cache reads, the rest of the prompt as input.
pub fn anthropic_usage(u: &Usage) -> AnthropicUsage {
    let cached = u.cached_tokens();
    AnthropicUsage {
        input_tokens: u.prompt_tokens.saturating_sub(cached),
        output_tokens: u.completion_tokens,
        cache_creation_input_tokens: Some(0),
        cache_read_input_tokens: Some(cached),
    }
}

/// Translates an OpenAI chat completion into an Anthropic reply for
/// `model_id` (the inverse of [`from_anthropic`]). Tool call arguments that
/// are not valid JSON are passed on as a JSON string.
pub fn anthropic_from_chat(c: &ChatCompletion, model_id: &str) -> MessagesResponse {
    let choice = c
        .choices
        .iter()
        .find(|ch| ch.index == 0)
        .or(c.choices.first());
    let mut content = Vec::new();
    if let Some(choice) = choice {
        if let Some(text) = choice.message.content.as_ref().map(Content::text) {
            if !text.is_empty() {
                content.push(ContentBlock::text(text));
            }
        }
        for (j, call) in choice
            .message
            .tool_calls
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let args = call.function.arguments.trim();
            let input = if args.is_empty() {
                json!({})
            } else {
                serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_owned()))
            };
            content.push(ContentBlock::tool_use(
                call.id.clone().unwrap_or_else(|| format!("toolu_{j}")),
                call.function.name.clone().unwrap_or_default(),
                input,
            ));
        }
    }
    MessagesResponse {
        id: c.id.clone(),
        kind: "message".into(),
        role: AnthropicRole::Assistant,
        model: model_id.to_owned(),
        content,
        stop_reason: choice
            .and_then(|ch| ch.finish_reason.as_ref())
            .map(stop_reason),
        stop_sequence: None,
        usage: c.usage.as_ref().map(anthropic_usage).unwrap_or_default(),
        extra: Map::new(),
    }
}

/// An SSE event for an Anthropic client: its name and its data.
pub type AnthropicEvent = (&'static str, Value);

fn event(e: &StreamEvent) -> AnthropicEvent {
    (e.name(), serde_json::to_value(e).unwrap_or(Value::Null))
}

/// The `error` event that ends a stream for an Anthropic client.
pub fn anthropic_error_event(kind: &str, message: &str) -> AnthropicEvent {
    (
        "error",
        serde_json::to_value(ErrorResponse::new(kind, message)).unwrap_or(Value::Null),
    )
}

/// Anthropic's error `type` for an HTTP status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text(u32),
    Tool(u32),
}

/// Turns a stream of OpenAI chat chunks into the event sequence of an
/// Anthropic stream: `message_start`, `content_block_start` / `_delta` /
/// `_stop` for text and for each tool call, `message_delta` with the stop
/// reason and usage, `message_stop`. Feed every chunk to [`push`], then call
/// [`finish`] when the chunk stream ends; the end events are sent once both
/// a finish reason and usage were seen, or at `finish`.
///
/// [`push`]: OpenAiToAnthropicEvents::push
/// [`finish`]: OpenAiToAnthropicEvents::finish
#[derive(Debug)]
pub struct OpenAiToAnthropicEvents {
    model_id: String,
    started: bool,
    open: Option<OpenBlock>,
    next_index: u32,
    /// OpenAI tool call index → Anthropic block index.
    tools: HashMap<u32, u32>,
    stop: Option<StopReason>,
    usage: Option<Usage>,
    done: bool,
}

impl OpenAiToAnthropicEvents {
    pub fn new(model_id: &str) -> Self {
        Self {
            model_id: model_id.to_owned(),
            started: false,
            open: None,
            next_index: 0,
            tools: HashMap::new(),
            stop: None,
            usage: None,
            done: false,
        }
    }

    /// Whether `message_stop` was produced.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn start(&mut self, id: &str, out: &mut Vec<AnthropicEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = self.usage.as_ref().map(anthropic_usage).unwrap_or_default();
        out.push(event(&StreamEvent::MessageStart {
            message: MessagesResponse {
                id: if id.is_empty() {
                    format!("msg_{:x}", unix_now())
                } else {
                    id.to_owned()
                },
                kind: "message".into(),
                role: AnthropicRole::Assistant,
                model: self.model_id.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: AnthropicUsage {
                    input_tokens: usage.input_tokens,
                    output_tokens: 0,
                    ..usage
                },
                extra: Map::new(),
            },
        }));
    }

    fn close(&mut self, out: &mut Vec<AnthropicEvent>) {
        if let Some(OpenBlock::Text(index) | OpenBlock::Tool(index)) = self.open.take() {
            out.push(event(&StreamEvent::ContentBlockStop { index }));
        }
    }

    fn open(&mut self, block: ContentBlock, out: &mut Vec<AnthropicEvent>) -> u32 {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some(match block {
            ContentBlock::ToolUse { .. } => OpenBlock::Tool(index),
            _ => OpenBlock::Text(index),
        });
        out.push(event(&StreamEvent::ContentBlockStart {
            index,
            content_block: block,
        }));
        index
    }

    fn end(&mut self, out: &mut Vec<AnthropicEvent>) {
        self.close(out);
        let usage = self.usage.as_ref().map(anthropic_usage);
        out.push(event(&StreamEvent::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason: Some(self.stop.clone().unwrap_or(StopReason::EndTurn)),
                stop_sequence: None,
                extra: Map::new(),
            },
            usage: Some(DeltaUsage {
                output_tokens: usage.map_or(0, |u| u.output_tokens),
                input_tokens: usage.map(|u| u.input_tokens),
                cache_creation_input_tokens: None,
                cache_read_input_tokens: usage.and_then(|u| u.cache_read_input_tokens),
            }),
        }));
        out.push(event(&StreamEvent::MessageStop));
        self.done = true;
    }

    /// Feeds one chunk; returns the events it completes.
    pub fn push(&mut self, chunk: &ChatChunk) -> Vec<AnthropicEvent> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        self.start(&chunk.id, &mut out);
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
                let index = match self.open {
                    Some(OpenBlock::Text(index)) => index,
                    _ => self.open(ContentBlock::text(""), &mut out),
                };
                out.push(event(&StreamEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::TextDelta {
                        text: text.to_owned(),
                    },
                }));
            }
            for (position, call) in choice
                .delta
                .tool_calls
                .as_deref()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let key = call
                    .index
                    .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
                let index = match self.tools.get(&key) {
                    Some(&index) => index,
                    None => {
                        let index = self.open(
                            ContentBlock::tool_use(
                                call.id
                                    .clone()
                                    .unwrap_or_else(|| format!("toolu_{}", self.next_index)),
                                call.function.name.clone().unwrap_or_default(),
                                json!({}),
                            ),
                            &mut out,
                        );
                        self.tools.insert(key, index);
                        index
                    }
                };
                if !call.function.arguments.is_empty() {
                    out.push(event(&StreamEvent::ContentBlockDelta {
                        index,
                        delta: BlockDelta::InputJsonDelta {
                            partial_json: call.function.arguments.clone(),
                        },
                    }));
                }
            }
            if let Some(finish) = &choice.finish_reason {
                self.close(&mut out);
                self.stop = Some(stop_reason(finish));
            }
        }
        if self.stop.is_some() && self.usage.is_some() {
            self.end(&mut out);
        }
        out
    }

    /// Ends the message: closes what is open and sends `message_delta` and
    /// `message_stop` unless they were sent already.
    pub fn finish(&mut self) -> Vec<AnthropicEvent> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.start("", &mut out);
        self.end(&mut out);
        out
    }
}
