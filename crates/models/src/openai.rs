//! The OpenAI-compatible HTTP backend (OpenAI, vLLM, Ollama, llama.cpp
//! server, LM Studio): `POST {base_url}/chat/completions`.

use crate::backend::{BackendError, ChunkStream};
use crate::client::{Endpoint, HttpClient, RequestBuilder};
use crate::http::{fetch_bytes, open_stream, sse_stream, traced};
use crate::native::{Dialect, Forward, NativeReply, NativeStream};
use crate::openai_wire::{ChatChunk, ChatCompletion, ChatRequest, UpstreamChat};
use std::time::Duration;
use switchyard_core::catalog::ModelEntry;
use switchyard_core::Secret;

#[derive(Clone)]
pub struct OpenAiBackend {
    http: HttpClient,
    /// Parsed once, not for every call. The base URL was checked when the
    /// configuration was read, so an error here can only come from a
    /// catalog built in code.
    url: Result<Endpoint, String>,
    /// `{base_url}/responses`, for an upstream that serves the Responses
    /// API (the catalog's `responses_api`).
    responses_url: Option<String>,
    /// The catalog id, the `model` of passed-through replies.
    model_id: String,
    upstream_model: String,
    api_key: Option<Secret>,
    timeout: Duration,
}

impl OpenAiBackend {
    pub fn new(http: HttpClient, entry: &ModelEntry, api_key: Option<Secret>) -> Self {
        let base = entry.base_url().unwrap_or("").trim_end_matches('/');
        Self {
            http,
            url: {
                let url = format!("{base}/chat/completions");
                Endpoint::parse(&url)
            },
            responses_url: entry
                .speaks_responses()
                .then(|| format!("{base}/responses")),
            model_id: entry.id.clone(),
            upstream_model: entry.upstream_model().to_owned(),
            api_key,
            timeout: entry.timeout(),
        }
    }

    fn post(&self, body: &UpstreamChat<'_>) -> RequestBuilder<'_> {
        let r = match &self.url {
            Ok(url) => self.http.post(url),
            Err(raw) => self.http.post_str(raw),
        };
        let mut r = r.json(body);
        if let Some(k) = &self.api_key {
            r = r.bearer_auth(k.expose());
        }
        traced(r)
    }

    /// Whether Responses calls pass through to this upstream.
    pub fn speaks_responses(&self) -> bool {
        self.responses_url.is_some()
    }

    fn forwarded(&self, f: &Forward, stream: bool) -> Result<RequestBuilder<'_>, BackendError> {
        let url = self
            .responses_url
            .as_deref()
            .ok_or_else(|| BackendError::Status {
                status: 400,
                message: "this model's upstream does not serve the Responses API".into(),
                retry_after: None,
            })?;
        let mut r = self
            .http
            .post_str(&f.url(url))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(f.body_for(&self.upstream_model, stream));
        if let Some(k) = &self.api_key {
            r = r.bearer_auth(k.expose());
        }
        Ok(r)
    }

    /// Passes a Responses request through (see [`crate::native`]).
    pub async fn forward(&self, f: &Forward) -> Result<NativeReply, BackendError> {
        let req = self.forwarded(f, false)?;
        crate::native::forward(req, Dialect::Responses, &self.model_id, self.timeout).await
    }

    /// Passes a streamed Responses request through, event by event.
    pub async fn forward_stream(&self, f: &Forward) -> Result<NativeStream, BackendError> {
        let req = self.forwarded(f, true)?;
        crate::native::forward_stream(req, Dialect::Responses, &self.model_id, self.timeout).await
    }

    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, BackendError> {
        let body = req.for_upstream(&self.upstream_model, false);
        let bytes = fetch_bytes(self.post(&body), self.timeout).await?;
        serde_json::from_slice::<ChatCompletion>(&bytes)
            .map_err(|e| BackendError::Protocol(format!("invalid chat completion: {e}")))
    }

    /// Starts a streamed completion; errors before the first byte are
    /// returned here, later ones as stream items. The stream ends after the
    /// upstream's `[DONE]`, and the whole stream is bounded by the timeout.
    pub async fn stream(&self, req: &ChatRequest) -> Result<ChunkStream, BackendError> {
        let body = req.for_upstream(&self.upstream_model, true);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let resp = open_stream(self.post(&body), deadline, self.timeout).await?;
        Ok(sse_stream(resp, deadline, self.timeout, "[DONE]", |data| {
            if data == "[DONE]" {
                return Ok((Vec::new(), true));
            }
            parse_chunk(data).map(|c| (vec![c], false))
        }))
    }
}

fn parse_chunk(data: &str) -> Result<ChatChunk, BackendError> {
    match serde_json::from_str::<ChatChunk>(data) {
        Ok(c) => Ok(c),
        Err(e) => {
            // An error object mid-stream is the upstream giving up.
            let v: serde_json::Value = serde_json::from_str(data)
                .map_err(|_| BackendError::Protocol(format!("invalid stream chunk: {e}")))?;
            match v["error"]["message"].as_str() {
                Some(m) => Err(BackendError::Status {
                    status: 502,
                    message: m.to_owned(),
                    retry_after: None,
                }),
                None => Err(BackendError::Protocol(format!("invalid stream chunk: {e}"))),
            }
        }
    }
}
