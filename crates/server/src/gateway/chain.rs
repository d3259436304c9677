//! Running one call down a model's fallback chain: each model in turn,
//! breaker permitting and a pool slot free, retrying retryable failures
//! with jittered backoff. The primitives (breaker, pool, backoff) live in
//! `crate::resilience`.

use super::catalog::ModelRoute;
use super::error::GatewayError;
use crate::metrics::{Metrics, ModelLabels};
use crate::resilience::backoff;
use std::future::Future;
use std::sync::Arc;
use switchyard_models::BackendError;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// A successful call: the model that served it, its result, and the pool
/// slot, held until the caller is done with the result (a stream).
pub struct Served<T> {
    pub route: Arc<ModelRoute>,
    pub value: T,
    pub permit: OwnedSemaphorePermit,
}

/// Runs `op` against the chain. A non-retryable failure (the upstream
/// rejected the request itself) ends the chain at once; otherwise the last
/// model's failure is returned, or `Overloaded`/`CircuitOpen` when no model
/// could be tried.
pub async fn run<T, F, Fut>(
    chain: &[Arc<ModelRoute>],
    metrics: &Metrics,
    mut op: F,
) -> Result<Served<T>, GatewayError>
where
    F: FnMut(Arc<ModelRoute>) -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let mut last = GatewayError::CircuitOpen;
    for (i, route) in chain.iter().enumerate() {
        let labels = || ModelLabels {
            model: route.entry.id.clone(),
        };
        if i > 0 {
            metrics.llm_fallbacks.get_or_create(&labels()).inc();
        }
        if !route.breaker.try_acquire() {
            metrics
                .llm_circuit_rejections
                .get_or_create(&labels())
                .inc();
            if !matches!(last, GatewayError::Upstream(_)) {
                last = GatewayError::CircuitOpen;
            }
            continue;
        }
        let Some(permit) = route.pool.acquire().await else {
            route.breaker.release_trial();
            metrics.llm_overloaded.get_or_create(&labels()).inc();
            last = GatewayError::Overloaded;
            continue;
        };
        let mut attempt = 0;
        loop {
            let span = attempt_span(route);
            let result = op(route.clone()).instrument(span.clone()).await;
            if let Err(e) = &result {
                record_failure(&span, e);
            }
            match result {
                Ok(value) => {
                    route.breaker.record(true);
                    route.series(metrics).count_upstream_ok();
                    return Ok(Served {
                        route: route.clone(),
                        value,
                        permit,
                    });
                }
                Err(e) if e.is_retryable() => {
                    route.breaker.record(false);
                    metrics.count_upstream_failure(&route.entry.id, &e);
                    tracing::warn!(error = %e, model = %route.entry.id, attempt, "upstream call failed");
                    let may_retry = attempt < route.entry.retries && !route.breaker.is_open();
                    if !may_retry {
                        last = GatewayError::Upstream(e);
                        break;
                    }
                    metrics.llm_retries.get_or_create(&labels()).inc();
                    tokio::time::sleep(backoff(attempt, &e)).await;
                    attempt += 1;
                }
                Err(e) => {
                    route.breaker.record(true);
                    metrics.count_upstream_failure(&route.entry.id, &e);
                    return Err(GatewayError::Upstream(e));
                }
            }
        }
    }
    Err(last)
}

/// The trace span of one attempt on one model: a GenAI client span named
/// for the upstream's own model name.
fn attempt_span(route: &ModelRoute) -> tracing::Span {
    let upstream_model = route.entry.upstream_model();
    let span = tracing::info_span!(
        target: crate::telemetry::TRACE_TARGET,
        "upstream",
        otel.name = tracing::field::Empty,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = route.backend.name(),
        gen_ai.request.model = upstream_model,
        switchyard.model = %route.entry.id,
        error.type = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("chat {upstream_model}"));
    }
    span
}

fn record_failure(span: &tracing::Span, e: &BackendError) {
    if span.is_disabled() {
        return;
    }
    span.record("otel.status_code", "error");
    span.record("error.type", e.kind());
    if let BackendError::Status { status, .. } = e {
        span.record("http.response.status_code", *status);
    }
}
