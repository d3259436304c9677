//! The `local` backend: OpenAI-shaped chat calls answered by the embedded
//! model. The model is loaded (and, for the built-in default, fetched) on
//! first use, once, and shared by every call.

use crate::engine::{Engine, EngineConfig, Event, Job, LocalError, LocalModel};
use crate::fetch::{self, ModelSource};
use crate::sampler::SamplingParams;
use crate::template::TemplateMessage;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::catalog::ModelEntry;
use switchyard_models::openai_wire::{
    ChatChunk, ChatCompletion, ChatRequest, Delta, FinishReason, Role, Stop, Usage,
};
use switchyard_models::{BackendError, ChunkStream};
use tokio::sync::{mpsc, OnceCell};

/// Answer length when the request sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 512;

#[derive(Clone)]
pub struct LocalBackend {
    model_id: String,
    path: PathBuf,
    /// Where a missing model file can be fetched from (the built-in
    /// default); `None` for models configured by path.
    source: Option<(&'static ModelSource, fetch::FetchOptions)>,
    engine: Arc<OnceCell<Arc<Engine>>>,
    config: EngineConfig,
    max_output: Option<u32>,
    timeout: Duration,
    http: reqwest::Client,
}

fn rejected(message: String) -> BackendError {
    BackendError::Status {
        status: 400,
        message,
        retry_after: None,
    }
}

fn unavailable(message: String) -> BackendError {
    BackendError::Status {
        status: 503,
        message,
        retry_after: None,
    }
}

impl From<LocalError> for BackendError {
    fn from(e: LocalError) -> Self {
        match e {
            LocalError::PromptTooLong { .. } | LocalError::Template(_) => rejected(e.to_string()),
            LocalError::QueueFull(_) => BackendError::Status {
                status: 429,
                message: e.to_string(),
                retry_after: Some(1),
            },
            LocalError::Load { .. } | LocalError::Stopped(_) => unavailable(e.to_string()),
        }
    }
}

/// The conversation as the chat template sees it: plain strings, tool
/// calls written out as JSON (small local models do not call tools).
fn template_messages(req: &ChatRequest) -> Vec<TemplateMessage> {
    req.messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System | Role::Developer => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            let mut content = m.content.as_ref().map(|c| c.text()).unwrap_or_default();
            for call in m.tool_calls.iter().flatten() {
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(
                    &serde_json::json!({
                        "name": call.function.name,
                        "arguments": call.function.arguments,
                    })
                    .to_string(),
                );
            }
            TemplateMessage {
                role: role.into(),
                content,
            }
        })
        .collect()
}

/// Sampling settings from the request: OpenAI's `temperature`, `top_p`,
/// `seed`, and llama.cpp's `repeat_penalty`.
fn sampling(req: &ChatRequest) -> Result<SamplingParams, BackendError> {
    let mut p = SamplingParams::default();
    if let Some(t) = req.temperature {
        p.temperature = t as f32;
    }
    if let Some(t) = req.top_p {
        p.top_p = t as f32;
    }
    match req.extra.get("seed") {
        None | Some(Value::Null) => {}
        Some(v) => {
            p.seed = Some(
                v.as_u64()
                    .or_else(|| v.as_i64().map(|i| i as u64))
                    .ok_or_else(|| rejected("seed: must be an integer".into()))?,
            );
        }
    }
    match req.extra.get("repeat_penalty") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_f64() {
            Some(r) if r > 0.0 && r <= 10.0 => p.repeat_penalty = r as f32,
            _ => {
                return Err(rejected(
                    "repeat_penalty: must be a number in (0, 10]".into(),
                ))
            }
        },
    }
    Ok(p)
}

fn response_id() -> String {
    format!("chatcmpl-local-{:016x}", rand::random::<u64>())
}

impl LocalBackend {
    /// A backend for a catalog entry; `path` is the GGUF file, `source`
    /// where to fetch it from when it is missing.
    /// `source`: where to fetch the file from (with how) when it is missing.
    pub fn new(
        entry: &ModelEntry,
        path: PathBuf,
        source: Option<(&'static ModelSource, fetch::FetchOptions)>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            model_id: entry.id.clone(),
            path,
            source,
            engine: Arc::new(OnceCell::new()),
            config: EngineConfig {
                slots: 4,
                queue: entry.max_concurrency.max(1) as usize + entry.max_queue as usize,
            },
            max_output: entry.max_output_tokens,
            timeout: entry.timeout(),
            http,
        }
    }

    /// The running engine, loading the model (and fetching it) first if
    /// this is the first call.
    pub async fn engine(&self) -> Result<Arc<Engine>, BackendError> {
        self.engine
            .get_or_try_init(|| async {
                if !self.path.exists() {
                    match &self.source {
                        Some((source, options)) => {
                            fetch::pull(source, &self.path, &self.http, options)
                                .await
                                .map_err(|e| {
                                    tracing::error!(error = %e, "cannot fetch the local model");
                                    unavailable(e.to_string())
                                })?;
                        }
                        None => {
                            return Err(unavailable(format!(
                                "the model file `{}` does not exist",
                                self.path.display()
                            )))
                        }
                    }
                }
                let path = self.path.clone();
                let model = tokio::task::spawn_blocking(move || LocalModel::load(&path))
                    .await
                    .map_err(|e| unavailable(e.to_string()))?
                    .map_err(|e| {
                        tracing::error!(error = %e, "cannot load the local model");
                        BackendError::from(e)
                    })?;
                tracing::info!(
                    model = %self.model_id,
                    path = %self.path.display(),
                    load_ms = model.load_time.as_millis() as u64,
                    "local model loaded"
                );
                let engine = Engine::start(Arc::new(model), self.config)
                    .map_err(|e| unavailable(e.to_string()))?;
                Ok(Arc::new(engine))
            })
            .await
            .cloned()
    }

    /// The prompt tokens the request would take, counted with the model's
    /// own chat template and tokenizer (what a completion's usage reports
    /// as `prompt_tokens`).
    pub async fn count_prompt_tokens(&self, req: &ChatRequest) -> Result<u64, BackendError> {
        let engine = self.engine().await?;
        let messages = template_messages(req);
        let model = engine.model.clone();
        let prompt = tokio::task::spawn_blocking(move || model.prompt(&messages))
            .await
            .map_err(|e| unavailable(e.to_string()))??;
        Ok(prompt.len() as u64)
    }

    /// Renders, tokenizes and queues the request; events arrive on the
    /// returned receiver.
    async fn start(
        &self,
        req: &ChatRequest,
    ) -> Result<mpsc::UnboundedReceiver<Event>, BackendError> {
        let params = sampling(req)?;
        let engine = self.engine().await?;
        let messages = template_messages(req);
        let model = engine.model.clone();
        let prompt = tokio::task::spawn_blocking(move || model.prompt(&messages))
            .await
            .map_err(|e| unavailable(e.to_string()))??;
        let context = engine.model.weights.hyper.context;
        let room = context.saturating_sub(prompt.len()) as u32;
        let asked = req
            .output_limit()
            .or(self.max_output.map(|m| m.min(DEFAULT_MAX_TOKENS)))
            .unwrap_or(DEFAULT_MAX_TOKENS);
        let stop = match &req.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        engine.submit(Job {
            prompt,
            max_tokens: asked.min(room).max(1) as usize,
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            params,
            events: tx,
        })?;
        Ok(rx)
    }

    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, BackendError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut rx = self.start(req).await?;
        let mut text = String::new();
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(BackendError::Timeout(self.timeout)),
                Ok(None) => return Err(unavailable("the local model stopped".into())),
                Ok(Some(Event::Text(t))) => text.push_str(&t),
                Ok(Some(Event::Failed(m))) => return Err(unavailable(m)),
                Ok(Some(Event::Done {
                    prompt_tokens,
                    completion_tokens,
                    finish,
                })) => {
                    return Ok(ChatCompletion::assistant(
                        response_id(),
                        self.model_id.clone(),
                        text,
                        finish.into(),
                        usage(prompt_tokens, completion_tokens),
                    ));
                }
            }
        }
    }

    /// Streams the answer token by token; the last chunk carries the usage.
    pub async fn stream(&self, req: &ChatRequest) -> Result<ChunkStream, BackendError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let rx = self.start(req).await?;
        let state = StreamState {
            rx,
            id: response_id(),
            model: self.model_id.clone(),
            deadline,
            timeout: self.timeout,
            pending: Vec::new(),
            opened: false,
            done: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            state,
            |mut s| async move {
                let next = s.next().await?;
                Some((next, s))
            },
        )))
    }
}

struct StreamState {
    rx: mpsc::UnboundedReceiver<Event>,
    id: String,
    model: String,
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// Chunks ready to go, last first.
    pending: Vec<Result<ChatChunk, BackendError>>,
    opened: bool,
    done: bool,
}

impl StreamState {
    fn chunk(&self, delta: Delta, finish: Option<FinishReason>, usage: Option<Usage>) -> ChatChunk {
        ChatChunk::new(&self.id, &self.model, delta, finish, usage)
    }

    async fn next(&mut self) -> Option<Result<ChatChunk, BackendError>> {
        if let Some(next) = self.pending.pop() {
            return Some(next);
        }
        if self.done {
            return None;
        }
        if !self.opened {
            self.opened = true;
            let first = Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Delta::default()
            };
            return Some(Ok(self.chunk(first, None, None)));
        }
        let event = tokio::time::timeout_at(self.deadline, self.rx.recv()).await;
        let event = match event {
            Err(_) => Event::Failed(String::new()),
            Ok(None) => Event::Failed("the local model stopped".into()),
            Ok(Some(e)) => e,
        };
        match event {
            Event::Text(t) => {
                let delta = Delta {
                    content: Some(t),
                    ..Delta::default()
                };
                Some(Ok(self.chunk(delta, None, None)))
            }
            Event::Failed(m) => {
                self.done = true;
                Some(Err(if m.is_empty() {
                    BackendError::Timeout(self.timeout)
                } else {
                    unavailable(m)
                }))
            }
            Event::Done {
                prompt_tokens,
                completion_tokens,
                finish,
            } => {
                self.done = true;
                let u = usage(prompt_tokens, completion_tokens);
                self.pending
                    .push(Ok(self.chunk(Delta::default(), None, Some(u))));
                Some(Ok(self.chunk(Delta::default(), Some(finish.into()), None)))
            }
        }
    }
}

fn usage(prompt: usize, completion: usize) -> Usage {
    Usage {
        prompt_tokens: prompt as u64,
        completion_tokens: completion as u64,
        total_tokens: (prompt + completion) as u64,
        prompt_tokens_details: None,
    }
}
