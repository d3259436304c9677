//! The OpenAI-compatible HTTP backend (OpenAI, vLLM, Ollama, llama.cpp
//! server, LM Studio): `POST {base_url}/chat/completions`.

use crate::backend::{BackendError, ChunkStream};
use crate::http::{fetch_bytes, open_stream, sse_stream, traced};
use crate::openai_wire::{ChatChunk, ChatCompletion, ChatRequest, StreamOptions};
use std::time::Duration;
use switchyard_core::catalog::ModelEntry;
use switchyard_core::Secret;

#[derive(Clone)]
pub struct OpenAiBackend {
    http: reqwest::Client,
    /// Parsed once: parsing (IDNA included) is not redone for every call.
    /// The base URL was checked when the configuration was read, so an
    /// error here can only come from a catalog built in code.
    url: Result<reqwest::Url, String>,
    upstream_model: String,
    api_key: Option<Secret>,
    timeout: Duration,
}

impl OpenAiBackend {
    pub fn new(http: reqwest::Client, entry: &ModelEntry, api_key: Option<Secret>) -> Self {
        let base = entry.base_url().unwrap_or("").trim_end_matches('/');
        Self {
            http,
            url: {
                let url = format!("{base}/chat/completions");
                reqwest::Url::parse(&url).map_err(|_| url)
            },
            upstream_model: entry.upstream_model().to_owned(),
            api_key,
            timeout: entry.timeout(),
        }
    }

    fn post(&self, body: &ChatRequest) -> reqwest::RequestBuilder {
        let r = match &self.url {
            Ok(url) => self.http.post(url.clone()),
            Err(raw) => self.http.post(raw.as_str()),
        };
        let mut r = r.json(body);
        if let Some(k) = &self.api_key {
            r = r.bearer_auth(k.expose());
        }
        traced(r)
    }

    fn upstream_request(&self, req: &ChatRequest, stream: bool) -> ChatRequest {
        let mut up = req.clone();
        up.model = self.upstream_model.clone();
        up.stream = Some(stream);
        // Usage is always requested so that every streamed call is accounted.
        up.stream_options = stream.then_some(StreamOptions {
            include_usage: true,
        });
        up
    }

    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, BackendError> {
        let body = self.upstream_request(req, false);
        let bytes = fetch_bytes(self.post(&body), self.timeout).await?;
        serde_json::from_slice::<ChatCompletion>(&bytes)
            .map_err(|e| BackendError::Protocol(format!("invalid chat completion: {e}")))
    }

    /// Starts a streamed completion; errors before the first byte are
    /// returned here, later ones as stream items. The stream ends after the
    /// upstream's `[DONE]`, and the whole stream is bounded by the timeout.
    pub async fn stream(&self, req: &ChatRequest) -> Result<ChunkStream, BackendError> {
        let body = self.upstream_request(req, true);
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
