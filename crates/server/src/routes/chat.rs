//! `POST /v1/chat/completions`: OpenAI's chat API over any configured
//! backend, streaming included. Every call — success or failure, streamed or
//! not, finished or abandoned by the client — leaves one usage record.

use crate::auth::Caller;
use crate::budget;
use crate::error::ApiError;
use crate::gateway::ModelRoute;
use crate::json::ApiJson;
use crate::metrics::{ModelLabels, TokenLabels};
use crate::middleware::RequestId;
use crate::resilience::{self, CallError};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_models::anthropic::{
    anthropic_error_event, anthropic_error_type, AnthropicEvent, OpenAiToAnthropicEvents,
};
use switchyard_models::openai_wire::{ChatChunk, ChatCompletion, ChatRequest, Usage};
use switchyard_models::BackendError;
use switchyard_store::{Reservation, Settlement, UsageRecord};

const ENDPOINT: &str = "/v1/chat/completions";

/// Maps an upstream failure to what the client sees.
pub fn upstream_error(e: &BackendError) -> ApiError {
    match e {
        BackendError::Timeout(d) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_error",
            format!("the model did not answer within {} s", d.as_secs()),
        )
        .with_code("upstream_timeout"),
        BackendError::Connect(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "the model's upstream cannot be reached",
        )
        .with_code("upstream_unavailable"),
        BackendError::Status {
            status: 429,
            message,
            retry_after,
        } => {
            let err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "upstream_error",
                format!("the model's upstream is rate limiting: {message}"),
            )
            .with_code("upstream_rate_limited");
            match retry_after {
                Some(secs) => err.with_header("retry-after", secs.to_string()),
                None => err,
            }
        }
        BackendError::Status {
            status: 400 | 404 | 422,
            message,
            ..
        } => ApiError::invalid_request(format!(
            "the model's upstream rejected the request: {message}"
        ))
        .with_code("upstream_rejected"),
        BackendError::Status { status, .. } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!("the model's upstream failed (HTTP {status})"),
        )
        .with_code("upstream_failed"),
        BackendError::Protocol(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "the model's upstream sent an invalid reply",
        )
        .with_code("upstream_invalid_reply"),
    }
}

/// What is known about a call when it ends, for its usage record.
struct Outcome {
    usage: Usage,
    /// The cost the backend itself reported (the Claude CLI's
    /// `total_cost_usd`), preferred over the catalog's prices.
    reported_cost_nano: Option<u64>,
    status: u16,
    error_type: Option<String>,
    upstream: Option<Duration>,
}

/// An upper bound on a call's cost: input estimated at four characters per
/// token (plus framing), output at the most the request allows.
pub(crate) fn estimate_nano_usd(route: &ModelRoute, req: &ChatRequest) -> i64 {
    let chars: usize = req
        .messages
        .iter()
        .map(|m| m.content.as_ref().map_or(0, |c| c.text().len()) + 16)
        .sum();
    let input = (chars / 4 + 16) as u64;
    let output = req
        .output_limit()
        .or(route.entry.max_output_tokens)
        .unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
    let nano = route.pricing.cost_nano_usd(input, 0, u64::from(output));
    i64::try_from(nano).unwrap_or(i64::MAX)
}

/// Removes a backend's own cost report from a response, as nano-USD.
fn take_reported_cost(extra: &mut serde_json::Map<String, serde_json::Value>) -> Option<u64> {
    let usd = extra
        .remove(switchyard_models::claude_cli::COST_FIELD)?
        .as_f64()?;
    (usd.is_finite() && usd >= 0.0).then(|| (usd * 1e9).round() as u64)
}

/// Output tokens assumed for budgeting when neither the request nor the
/// catalog bounds them.
const DEFAULT_OUTPUT_ESTIMATE: u32 = 4096;

/// One model call in progress: everything its accounting needs.
pub(crate) struct Call {
    state: AppState,
    caller: Caller,
    request_id: String,
    requested: String,
    route: Arc<ModelRoute>,
    started: Instant,
    reservation: Option<Reservation>,
}

impl Call {
    /// Ends the call: updates metrics and queues its usage record with the
    /// settlement of its budget reservation (the actual cost).
    async fn account(&self, o: Outcome) {
        let (state, route) = (&self.state, &self.route);
        let model = route.entry.id.clone();
        let cached = o.usage.cached_tokens();
        let cost = o.reported_cost_nano.unwrap_or_else(|| {
            route
                .pricing
                .cost_nano_usd(o.usage.prompt_tokens, cached, o.usage.completion_tokens)
        });
        let total = self.started.elapsed();
        let m = &state.metrics;
        for (direction, n) in [
            ("input", o.usage.prompt_tokens),
            ("output", o.usage.completion_tokens),
            ("cached", cached),
        ] {
            if n > 0 {
                m.tokens
                    .get_or_create(&TokenLabels {
                        model: model.clone(),
                        direction,
                    })
                    .inc_by(n);
            }
        }
        if cost > 0 {
            m.cost_nano_usd
                .get_or_create(&ModelLabels {
                    model: model.clone(),
                })
                .inc_by(cost);
        }
        if let Some(up) = o.upstream {
            m.upstream_latency
                .get_or_create(&ModelLabels {
                    model: model.clone(),
                })
                .observe(up.as_secs_f64());
            m.gateway_overhead
                .observe(total.saturating_sub(up).as_secs_f64());
        }
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let settlement = self.reservation.clone().map(|reservation| Settlement {
            reservation,
            actual_nano_usd: to_i64(cost),
        });
        let millis = |d: Duration| to_i64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        state
            .usage
            .record(
                UsageRecord {
                    timestamp: switchyard_core::now(),
                    request_id: self.request_id.clone(),
                    key_id: self.caller.key.id.clone(),
                    project: self.caller.key.project.clone(),
                    endpoint: ENDPOINT.to_owned(),
                    model_requested: Some(self.requested.clone()),
                    model_used: Some(model),
                    backend: Some(route.backend.name().to_owned()),
                    input_tokens: to_i64(o.usage.prompt_tokens),
                    output_tokens: to_i64(o.usage.completion_tokens),
                    cached_tokens: to_i64(cached),
                    cost_nano_usd: to_i64(cost),
                    latency_ms: millis(total),
                    upstream_latency_ms: o.upstream.map(millis),
                    status: i32::from(o.status),
                    error_type: o.error_type,
                },
                settlement,
            )
            .await;
    }

    fn with_budget_header(&self, mut response: Response) -> Response {
        budget::set_remaining_header(
            response.headers_mut(),
            self.reservation.as_ref().map(|r| r.remaining_nano_usd),
        );
        response
    }
}

fn call_error(e: &CallError) -> ApiError {
    match e {
        CallError::Backend(b) => upstream_error(b),
        CallError::Overloaded => ApiError::unavailable(
            "the model is at capacity and its queue is full; try again shortly",
        )
        .with_code("overloaded")
        .with_header("retry-after", "1"),
        CallError::CircuitOpen => ApiError::unavailable(
            "the model's upstream is failing and calls to it are paused; try again shortly",
        )
        .with_code("circuit_open")
        .with_header("retry-after", "5"),
    }
}

fn failure(e: &CallError, upstream: Duration) -> (ApiError, Outcome) {
    let err = call_error(e);
    let outcome = Outcome {
        usage: Usage::default(),
        reported_cost_nano: None,
        status: err.status.as_u16(),
        error_type: err.code.map(str::to_owned),
        upstream: Some(upstream),
    };
    (err, outcome)
}

/// Creates a chat completion (OpenAI wire format).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "models",
    security(("api_key" = [])),
    request_body(content = serde_json::Value, description = "OpenAI chat completion request"),
    responses((status = 200, description = "chat.completion object, or an SSE stream of chat.completion.chunk objects ending with `data: [DONE]`"),
        (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 502, body = crate::error::ErrorBody), (status = 504, body = crate::error::ErrorBody)))]
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Response {
    let call = match prepare(state, caller, request_id.0, &req).await {
        Ok(call) => call,
        Err(e) => return e.into_response(),
    };
    if req.is_stream() {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        return stream(call, req, WireKind::OpenAi { include_usage }).await;
    }
    // The call and its accounting run in a task of their own: a client that
    // disconnects, or API_TIMEOUT, cannot cut the usage record off.
    match tokio::spawn(complete(call, req)).await {
        Ok(Ok((completion, remaining))) => {
            let mut response = Json(completion).into_response();
            budget::set_remaining_header(response.headers_mut(), remaining);
            response
        }
        Ok(Err((err, remaining))) => {
            let mut response = err.into_response();
            budget::set_remaining_header(response.headers_mut(), remaining);
            response
        }
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

/// Everything before the upstream call: validation, model resolution
/// (`auto` included), output bound, budget reservation. A refused
/// reservation is itself accounted.
pub(crate) async fn prepare(
    state: AppState,
    caller: Caller,
    request_id: String,
    req: &ChatRequest,
) -> Result<Call, ApiError> {
    let started = Instant::now();
    if let Err((field, message)) = req.validate() {
        return Err(ApiError::invalid_request(format!("{field}: {message}")).with_param(field));
    }
    let route = if req.model == super::route::AUTO {
        let text = super::route::conversation_text(&req.messages);
        super::route::decide(&state, &caller, &text).await?.1
    } else {
        state.gateway().resolve(&req.model).ok_or_else(|| {
            ApiError::not_found(format!(
                "the model `{}` does not exist; GET /v1/models lists the available ones",
                req.model
            ))
            .with_code("model_not_found")
            .with_param("model")
        })?
    };
    if let Some(var) = &route.missing_key {
        return Err(ApiError::unavailable(format!(
            "the model `{}` needs an upstream API key: set {var} (or {var}_FILE) and restart",
            route.entry.id
        ))
        .with_code("model_unavailable"));
    }
    if let (Some(asked), Some(max)) = (req.output_limit(), route.entry.max_output_tokens) {
        if asked > max {
            return Err(ApiError::invalid_request(format!(
                "max_tokens: {asked} exceeds this model's maximum output of {max} tokens"
            ))
            .with_param("max_tokens"));
        }
    }
    let estimate = estimate_nano_usd(&route, req);
    let mut call = Call {
        state,
        caller,
        request_id,
        requested: req.model.clone(),
        route,
        started,
        reservation: None,
    };
    match budget::reserve(&call.state, &call.caller, estimate).await {
        Ok(r) => call.reservation = r,
        Err(e) => {
            call.account(Outcome {
                usage: Usage::default(),
                reported_cost_nano: None,
                status: e.status.as_u16(),
                error_type: e.code.map(str::to_owned),
                upstream: None,
            })
            .await;
            return Err(e);
        }
    }
    Ok(call)
}

/// The smallest remaining budget after a call's reservation, for the header.
pub(crate) type Remaining = Option<i64>;

/// Runs a prepared non-streaming call through the model chain and accounts
/// for it.
pub(crate) async fn complete(
    mut call: Call,
    req: ChatRequest,
) -> Result<(ChatCompletion, Remaining), (ApiError, Remaining)> {
    let remaining = call.reservation.as_ref().map(|r| r.remaining_nano_usd);
    let chain = call.state.gateway().chain(&call.route);
    let upstream_started = Instant::now();
    let result = resilience::call(&chain, &call.state.metrics, |r| {
        let req = req.clone();
        async move { r.backend.complete(&req).await }
    })
    .await;
    let upstream = upstream_started.elapsed();
    match result {
        Ok(served) => {
            call.route = served.route;
            let mut completion = served.value;
            completion.model = call.route.entry.id.clone();
            let reported_cost_nano = take_reported_cost(&mut completion.extra);
            call.account(Outcome {
                usage: completion.usage.unwrap_or_default(),
                reported_cost_nano,
                status: 200,
                error_type: None,
                upstream: Some(upstream),
            })
            .await;
            Ok((completion, remaining))
        }
        Err(e) => {
            let (err, outcome) = failure(&e, upstream);
            call.account(outcome).await;
            Err((err, remaining))
        }
    }
}

/// Runs one request of a batch as `POST /v1/chat/completions` would (without
/// streaming); the key's rate limit has been applied by the caller.
pub async fn run_one(
    state: AppState,
    caller: Caller,
    request_id: String,
    mut req: ChatRequest,
) -> Result<ChatCompletion, ApiError> {
    req.stream = Some(false);
    let call = prepare(state, caller, request_id, &req).await?;
    complete(call, req)
        .await
        .map(|(c, _)| c)
        .map_err(|(e, _)| e)
}

fn sse(data: &impl serde::Serialize) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serialising our own types cannot fail; an empty object is the fallback.
    out.extend(serde_json::to_vec(data).unwrap_or_else(|_| b"{}".to_vec()));
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The wire format a stream is written in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WireKind {
    /// `data: {chunk}` lines ending with `data: [DONE]`.
    OpenAi { include_usage: bool },
    /// Anthropic's named events (`message_start` … `message_stop`).
    Anthropic,
}

/// Encodes chunks for one stream.
enum Encoder {
    OpenAi { include_usage: bool },
    Anthropic(Box<OpenAiToAnthropicEvents>),
}

fn named_event((name, data): AnthropicEvent) -> Bytes {
    let mut out = format!("event: {name}\ndata: ").into_bytes();
    out.extend(serde_json::to_vec(&data).unwrap_or_else(|_| b"{}".to_vec()));
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

impl Encoder {
    fn new(kind: WireKind, model_id: &str) -> Self {
        match kind {
            WireKind::OpenAi { include_usage } => Encoder::OpenAi { include_usage },
            WireKind::Anthropic => {
                Encoder::Anthropic(Box::new(OpenAiToAnthropicEvents::new(model_id)))
            }
        }
    }

    fn chunk(&mut self, mut chunk: ChatChunk) -> Vec<Bytes> {
        match self {
            Encoder::OpenAi { include_usage } => {
                if !*include_usage {
                    if chunk.choices.is_empty() && chunk.usage.is_some() {
                        return Vec::new();
                    }
                    chunk.usage = None;
                }
                vec![sse(&chunk)]
            }
            Encoder::Anthropic(events) => {
                events.push(&chunk).into_iter().map(named_event).collect()
            }
        }
    }

    fn error(&mut self, err: &ApiError) -> Bytes {
        match self {
            Encoder::OpenAi { .. } => sse(&serde_json::json!({"error": {
                "type": err.kind, "message": err.message, "code": err.code,
            }})),
            Encoder::Anthropic(_) => named_event(anthropic_error_event(
                anthropic_error_type(err.status.as_u16()),
                &err.message,
            )),
        }
    }

    fn finish(&mut self) -> Vec<Bytes> {
        match self {
            Encoder::OpenAi { .. } => vec![Bytes::from_static(b"data: [DONE]\n\n")],
            Encoder::Anthropic(events) => events.finish().into_iter().map(named_event).collect(),
        }
    }
}

/// Streams chunks to the client from a task of its own, so that the usage
/// record is written however the stream ends — including a client that
/// disconnects half-way (recorded with status 499 and the tokens seen).
pub(crate) async fn stream(mut call: Call, req: ChatRequest, wire: WireKind) -> Response {
    let upstream_started = Instant::now();
    let chain = call.state.gateway().chain(&call.route);
    let served = resilience::call(&chain, &call.state.metrics, |r| {
        let req = req.clone();
        async move { r.backend.stream(&req).await }
    })
    .await;
    let (mut chunks, permit) = match served {
        Ok(served) => {
            call.route = served.route;
            (served.value, served.permit)
        }
        Err(e) => {
            let (err, outcome) = failure(&e, upstream_started.elapsed());
            call.account(outcome).await;
            return call.with_budget_header(err.into_response());
        }
    };
    let mut encoder = Encoder::new(wire, &call.route.entry.id);
    let mut headers = axum::http::HeaderMap::new();
    budget::set_remaining_header(
        &mut headers,
        call.reservation.as_ref().map(|r| r.remaining_nano_usd),
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        // The pool slot is held until the stream ends.
        let _permit = permit;
        let model_id = call.route.entry.id.clone();
        let mut usage = Usage::default();
        let mut reported_cost_nano = None;
        let mut status = 200u16;
        let mut error_type = None;
        'chunks: while let Some(item) = chunks.next().await {
            let mut chunk: ChatChunk = match item {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, model = %model_id, "upstream stream failed");
                    let err = upstream_error(&e);
                    status = err.status.as_u16();
                    error_type = err.code.map(str::to_owned);
                    let _ = tx.send(encoder.error(&err)).await;
                    break;
                }
            };
            if let Some(u) = chunk.usage {
                usage = u;
            }
            if let Some(cost) = take_reported_cost(&mut chunk.extra) {
                reported_cost_nano = Some(cost);
            }
            chunk.model = model_id.clone();
            for bytes in encoder.chunk(chunk) {
                if tx.send(bytes).await.is_err() {
                    status = 499;
                    error_type = Some("client_closed".to_owned());
                    break 'chunks;
                }
            }
        }
        if status == 200 {
            for bytes in encoder.finish() {
                if tx.send(bytes).await.is_err() {
                    status = 499;
                    error_type = Some("client_closed".to_owned());
                    break;
                }
            }
        }
        drop(tx);
        call.account(Outcome {
            usage,
            reported_cost_nano,
            status,
            error_type,
            upstream: Some(upstream_started.elapsed()),
        })
        .await;
    });
    let body = super::channel_body(rx);
    (
        headers,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}
