//! One model call in progress and its accounting: every call that got past
//! validation — served, failed, refused by a budget, cut off — ends in
//! [`Call::close`], which updates the metrics and queues exactly one usage
//! row together with the settlement of the call's budget reservation.

use super::catalog::ModelRoute;
use super::error::GatewayError;
use crate::budgets::{Reservation, Settlement};
use crate::context::Caller;
use crate::metrics::Metrics;
use crate::usage::UsageRecorder;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_models::openai_wire::{ChatRequest, Usage};
use switchyard_store::UsageRecord;

/// The endpoint usage rows of gateway calls are recorded under.
pub const ENDPOINT: &str = "/v1/chat/completions";

/// Output tokens assumed for budgeting when neither the request nor the
/// catalog bounds them.
const DEFAULT_OUTPUT_ESTIMATE: u32 = 4096;

/// An upper bound on a call's cost: input estimated at four characters per
/// token (plus framing), output at the most the request allows.
pub fn estimate_nano_usd(route: &ModelRoute, req: &ChatRequest) -> i64 {
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
pub(crate) fn take_reported_cost(
    extra: &mut serde_json::Map<String, serde_json::Value>,
) -> Option<u64> {
    let usd = extra
        .remove(switchyard_models::claude_cli::COST_FIELD)?
        .as_f64()?;
    (usd.is_finite() && usd >= 0.0).then(|| (usd * 1e9).round() as u64)
}

/// Where ended calls go: the metrics and the usage writer's queue.
#[derive(Clone)]
pub struct Ledger {
    pub usage: UsageRecorder,
    pub metrics: Metrics,
}

/// Who makes a call and under which request id.
#[derive(Clone, Debug)]
pub struct CallOrigin {
    pub caller: Caller,
    pub request_id: String,
    /// Recorded as the usage row's endpoint.
    pub endpoint: &'static str,
}

/// What is known about a call when it ends, for its usage row.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub usage: Usage,
    /// The cost the backend itself reported (the Claude CLI's
    /// `total_cost_usd`), preferred over the catalog's prices.
    pub reported_cost_nano: Option<u64>,
    /// 200, or the status the caller got.
    pub status: u16,
    pub error_type: Option<String>,
    pub upstream: Option<Duration>,
}

impl Outcome {
    pub fn served(usage: Usage, reported_cost_nano: Option<u64>, upstream: Duration) -> Self {
        Self {
            usage,
            reported_cost_nano,
            status: 200,
            error_type: None,
            upstream: Some(upstream),
        }
    }

    pub fn failed(e: &GatewayError, upstream: Option<Duration>) -> Self {
        Self::ended(e.status(), e.code(), Usage::default(), upstream)
    }

    /// A call that ended with `status` after some tokens (a stream cut off).
    pub fn ended(status: u16, code: &str, usage: Usage, upstream: Option<Duration>) -> Self {
        Self {
            usage,
            reported_cost_nano: None,
            status,
            error_type: Some(code.to_owned()),
            upstream,
        }
    }
}

/// A call whose budget is reserved and whose model is chosen. Dropping one
/// without closing it still records it (as cut off), so no path loses a
/// usage row.
pub struct Call {
    pub(super) ledger: Ledger,
    pub(super) origin: CallOrigin,
    pub(super) requested: String,
    pub(super) route: Arc<ModelRoute>,
    pub(super) started: Instant,
    pub(super) reservation: Option<Reservation>,
    /// The call's trace span (GenAI semantic conventions); ends with the call.
    pub(super) span: tracing::Span,
    closed: bool,
}

impl Call {
    pub(super) fn new(
        ledger: Ledger,
        origin: CallOrigin,
        requested: String,
        route: Arc<ModelRoute>,
    ) -> Self {
        let span = tracing::info_span!(
            target: crate::telemetry::TRACE_TARGET,
            "chat",
            otel.name = tracing::field::Empty,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            gen_ai.operation.name = "chat",
            gen_ai.request.model = %requested,
            gen_ai.provider.name = tracing::field::Empty,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        if !span.is_disabled() {
            span.record("otel.name", format!("chat {requested}"));
        }
        Self {
            ledger,
            origin,
            requested,
            route,
            started: Instant::now(),
            reservation: None,
            span,
            closed: false,
        }
    }

    /// The call's trace span: upstream attempts run inside it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The model serving the call (after fallbacks, the one that answered).
    pub fn route(&self) -> &Arc<ModelRoute> {
        &self.route
    }

    /// The smallest amount left in the caller's budgets after this call's
    /// reservation; `None` when no budget applies.
    pub fn remaining_nano_usd(&self) -> Option<i64> {
        self.reservation.as_ref().map(|r| r.remaining_nano_usd)
    }

    /// Ends the call: metrics, and its usage row with the settlement of its
    /// reservation at the actual cost.
    pub async fn close(mut self, o: Outcome) {
        self.closed = true;
        let (record, settlement) = self.accounting(&o);
        self.ledger.usage.record(record, settlement).await;
    }

    fn accounting(&mut self, o: &Outcome) -> (UsageRecord, Option<Settlement>) {
        let route = self.route.clone();
        let model = route.entry.id.clone();
        let cached = o.usage.cached_tokens();
        let cost = o.reported_cost_nano.unwrap_or_else(|| {
            route
                .pricing
                .cost_nano_usd(o.usage.prompt_tokens, cached, o.usage.completion_tokens)
        });
        let total = self.started.elapsed();
        let m = &self.ledger.metrics;
        let series = route.series(m);
        series.count_tokens(o.usage.prompt_tokens, o.usage.completion_tokens, cached);
        series.count_cost(cost);
        if let Some(up) = o.upstream {
            series.observe_upstream_latency(up.as_secs_f64());
            m.gateway_overhead
                .observe(total.saturating_sub(up).as_secs_f64());
        }
        self.trace(o, &model);
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let settlement = self
            .reservation
            .take()
            .map(|reservation| reservation.end(to_i64(cost)));
        let millis = |d: Duration| to_i64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let record = UsageRecord {
            timestamp: switchyard_core::now(),
            request_id: self.origin.request_id.clone(),
            key_id: self.origin.caller.key.id.clone(),
            project: self.origin.caller.key.project.clone(),
            endpoint: self.origin.endpoint.to_owned(),
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
            error_type: o.error_type.clone(),
        };
        (record, settlement)
    }
}

impl Call {
    /// Records the outcome on the call's span.
    fn trace(&self, o: &Outcome, model: &str) {
        let span = &self.span;
        if span.is_disabled() {
            return;
        }
        span.record("gen_ai.provider.name", self.route.backend.name());
        span.record("gen_ai.response.model", model);
        span.record("gen_ai.usage.input_tokens", o.usage.prompt_tokens);
        span.record("gen_ai.usage.output_tokens", o.usage.completion_tokens);
        if let Some(error) = &o.error_type {
            span.record("error.type", error.as_str());
        }
        if o.status >= 500 {
            span.record("otel.status_code", "error");
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // A call abandoned without an outcome (its task was cancelled): it
        // still leaves its row, as cut off.
        let outcome = Outcome::ended(499, "client_closed", Usage::default(), None);
        let (record, settlement) = self.accounting(&outcome);
        let usage = self.ledger.usage.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { usage.record(record, settlement).await });
            }
            Err(_) => usage.record_now(record, settlement),
        }
    }
}
