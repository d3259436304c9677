//! Anthropic's Messages API as a backend (`POST {base_url}/v1/messages`),
//! and the translations between it and the OpenAI chat format in both
//! directions: OpenAI requests to Anthropic upstreams, and Anthropic clients
//! (a `/v1/messages` endpoint) served by any backend. The translations are
//! pure functions and stream state machines, without I/O.

use crate::anthropic_wire::{
    AnthropicMessage, AnthropicRole, AnthropicTool, AnthropicUsage, BlockDelta, ContentBlock,
    DeltaUsage, ErrorResponse, MessageContent, MessageDeltaBody, MessagesRequest, MessagesResponse,
    StopReason, StreamEvent, SystemPrompt, ToolChoice, ToolChoiceKind, ANTHROPIC_VERSION,
};
use crate::backend::{BackendError, ChunkStream};
use crate::client::{Endpoint, HttpClient, RequestBuilder};
use crate::http::{fetch_bytes, open_stream, sse_stream, unix_now};
use crate::native::{Dialect, Forward, NativeReply, NativeStream};
use crate::openai_wire::{
    ChatChunk, ChatCompletion, ChatRequest, Choice, ChunkChoice, Content, ContentPart, Delta,
    FinishReason, FunctionCall, FunctionDef, Message, Role, Stop, StreamOptions, Tool, ToolCall,
    Usage,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;
use switchyard_core::catalog::ModelEntry;
use switchyard_core::Secret;

const VERSION_HEADER: http::HeaderName = http::HeaderName::from_static("anthropic-version");
const BETA_HEADER: http::HeaderName = http::HeaderName::from_static("anthropic-beta");
const API_KEY_HEADER: http::HeaderName = http::HeaderName::from_static("x-api-key");

/// `max_tokens` when neither the request nor the catalog entry sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

mod serve;
mod upstream;

pub use serve::*;
pub use upstream::*;

// ---------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------

/// An Anthropic Messages API upstream.
#[derive(Clone)]
pub struct AnthropicBackend {
    http: HttpClient,
    url: String,
    /// `url`, parsed once for the calls that use it as it is.
    uri: Result<Endpoint, String>,
    model_id: String,
    upstream_model: String,
    api_key: Option<Secret>,
    timeout: Duration,
    default_max_tokens: u32,
}

impl AnthropicBackend {
    pub fn new(http: HttpClient, entry: &ModelEntry, api_key: Option<Secret>) -> Self {
        let base = entry
            .base_url()
            .unwrap_or(switchyard_core::catalog::ANTHROPIC_BASE_URL)
            .trim_end_matches('/');
        let url = format!("{base}/v1/messages");
        Self {
            http,
            uri: Endpoint::parse(&url),
            url,
            model_id: entry.id.clone(),
            upstream_model: entry.upstream_model().to_owned(),
            api_key,
            timeout: entry.timeout(),
            default_max_tokens: entry.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        }
    }

    fn post(&self, body: &MessagesRequest) -> RequestBuilder<'_> {
        let r = match &self.uri {
            Ok(uri) => self.http.post(uri),
            Err(raw) => self.http.post_str(raw),
        };
        let mut r = r.header(VERSION_HEADER, ANTHROPIC_VERSION).json(body);
        if let Some(k) = &self.api_key {
            r = r.secret_header(API_KEY_HEADER, k.expose());
        }
        crate::http::traced(r)
    }

    /// The upstream request; a request Anthropic cannot express is a 400.
    fn upstream_request(
        &self,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<MessagesRequest, BackendError> {
        let mut up = to_anthropic(req, &self.upstream_model, self.default_max_tokens).map_err(
            |message| BackendError::Status {
                status: 400,
                message,
                retry_after: None,
            },
        )?;
        up.stream = stream.then_some(true);
        Ok(up)
    }

    /// Anthropic's own count of a Messages request's input tokens
    /// (`/v1/messages/count_tokens`): the request as the client sent it,
    /// only the model renamed to the upstream's and the fields the count
    /// does not take (`max_tokens`, `stream`) left out.
    pub async fn count_tokens(&self, mut body: Value) -> Result<u64, BackendError> {
        if let Some(fields) = body.as_object_mut() {
            fields.insert("model".into(), Value::String(self.upstream_model.clone()));
            fields.remove("max_tokens");
            fields.remove("stream");
        }
        let mut r = self
            .http
            .post_str(&format!("{}/count_tokens", self.url))
            .header(VERSION_HEADER, ANTHROPIC_VERSION)
            .json(&body);
        if let Some(k) = &self.api_key {
            r = r.secret_header(API_KEY_HEADER, k.expose());
        }
        let bytes = fetch_bytes(crate::http::traced(r), self.timeout).await?;
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["input_tokens"].as_u64())
            .ok_or_else(|| BackendError::Protocol("invalid count_tokens response".into()))
    }

    /// A Messages request passed through as the client sent it: the body
    /// with only the model renamed, the client's `anthropic-version` (else
    /// this service's) and `anthropic-beta` headers and its query string.
    fn forwarded(&self, f: &Forward, stream: bool) -> RequestBuilder<'_> {
        let mut r = self
            .http
            .post_str(&f.url(&self.url))
            .header(
                VERSION_HEADER,
                f.header("anthropic-version").unwrap_or(ANTHROPIC_VERSION),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(f.body_for(&self.upstream_model, stream));
        if let Some(beta) = f.header("anthropic-beta") {
            r = r.header(BETA_HEADER, beta);
        }
        if let Some(k) = &self.api_key {
            r = r.secret_header(API_KEY_HEADER, k.expose());
        }
        r
    }

    /// Passes a Messages request through (see [`crate::native`]).
    pub async fn forward(&self, f: &Forward) -> Result<NativeReply, BackendError> {
        let req = self.forwarded(f, false);
        crate::native::forward(req, Dialect::Messages, &self.model_id, self.timeout).await
    }

    /// Passes a streamed Messages request through, event by event.
    pub async fn forward_stream(&self, f: &Forward) -> Result<NativeStream, BackendError> {
        let req = self.forwarded(f, true);
        crate::native::forward_stream(req, Dialect::Messages, &self.model_id, self.timeout).await
    }

    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, BackendError> {
        let body = self.upstream_request(req, false)?;
        let bytes = fetch_bytes(self.post(&body), self.timeout).await?;
        serde_json::from_slice::<MessagesResponse>(&bytes)
            .map(|r| from_anthropic(r, &self.model_id))
            .map_err(|e| BackendError::Protocol(format!("invalid messages response: {e}")))
    }

    /// Starts a streamed completion, translated into OpenAI chunks; errors
    /// before the first byte are returned here, later ones as stream items.
    /// The stream ends after the upstream's `message_stop` (after the final
    /// usage chunk), and the whole stream is bounded by the timeout.
    pub async fn stream(&self, req: &ChatRequest) -> Result<ChunkStream, BackendError> {
        let body = self.upstream_request(req, true)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let resp = open_stream(self.post(&body), deadline, self.timeout).await?;
        let mut translator = AnthropicToOpenAiStream::new(&self.model_id);
        Ok(sse_stream(
            resp,
            deadline,
            self.timeout,
            "message_stop",
            move |data| {
                let chunks = translator.push(data)?;
                Ok((chunks, translator.is_finished()))
            },
        ))
    }
}

#[cfg(test)]
mod tests;
