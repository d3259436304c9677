//! Probes and metrics: `/health` (liveness), `/ready` (readiness),
//! `/db-check`, `/redis-check` and `/metrics`.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::PROBE_TIMEOUT;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `draining` once shutdown has begun.
    pub status: &'static str,
    pub version: &'static str,
    pub environment: &'static str,
    pub deployment_slot: Option<String>,
    pub uptime_seconds: u64,
}

fn status_code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Liveness: the process is up. 503 once draining.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses((status = 200, body = Health), (status = 503, body = Health, description = "draining")))]
pub async fn health(State(state): State<AppState>) -> Response {
    let draining = state.is_draining();
    let body = Health {
        status: if draining { "draining" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        environment: state.config.environment.as_str(),
        deployment_slot: state.config.deployment_slot.clone(),
        uptime_seconds: state.started.elapsed().as_secs(),
    };
    (status_code(!draining), Json(body)).into_response()
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `degraded` (Redis down; the service still works), `not_ready` or `draining`.
    pub status: &'static str,
    /// `ok` or `down`.
    pub database: &'static str,
    /// Migrations this binary expects that the database lacks.
    pub pending_migrations: Vec<i64>,
    /// `ok`, `down` or `disabled`.
    pub redis: &'static str,
    /// `local`, `redis`, or `redis (degraded)` while Redis is unreachable and
    /// decisions fall back to each replica (or are refused, by policy).
    pub rate_limiter: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Readiness: 200 when the database answers and is migrated; 503 otherwise
/// and while draining. Reports Redis and the rate limiter without failing on
/// them (`degraded`).
#[utoipa::path(get, path = "/ready", tag = "probes",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let (db_ok, pending, error) = match state.store.ping(PROBE_TIMEOUT).await {
        Ok(_) => match state.store.pending_migrations().await {
            Ok(p) => (true, p, None),
            Err(e) => (false, Vec::new(), Some(e.to_string())),
        },
        Err(e) => (false, Vec::new(), Some(e.to_string())),
    };
    state.metrics.database_up.set(i64::from(db_ok));
    let redis = redis_state(&state).await;
    let draining = state.is_draining();
    let limiter_degraded = state.limits.limiter().is_degraded();
    state
        .metrics
        .ratelimit_degraded
        .set(i64::from(limiter_degraded));
    let ready = db_ok && pending.is_empty() && !draining;
    let status = if draining {
        "draining"
    } else if !ready {
        "not_ready"
    } else if redis == "down" || limiter_degraded {
        "degraded"
    } else {
        "ready"
    };
    let body = Readiness {
        status,
        database: if db_ok { "ok" } else { "down" },
        pending_migrations: pending,
        redis,
        rate_limiter: match (state.limits.limiter().backend_name(), limiter_degraded) {
            ("redis", true) => "redis (degraded)",
            ("redis", false) => "redis",
            _ => "local",
        },
        error,
    };
    (status_code(ready), Json(body)).into_response()
}

async fn redis_state(state: &AppState) -> &'static str {
    match &state.redis {
        None => "disabled",
        Some(r) => {
            let up = r.ping(PROBE_TIMEOUT).await.is_ok();
            state.metrics.redis_up.set(i64::from(up));
            if up {
                "ok"
            } else {
                "down"
            }
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DbCheck {
    /// `ok` or `down`.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub latency_ms: Option<f64>,
    pub pool: PoolReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PoolReport {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// A database round trip with its latency and the pool's occupancy.
#[utoipa::path(get, path = "/db-check", tag = "probes",
    responses((status = 200, body = DbCheck), (status = 503, body = DbCheck)))]
pub async fn db_check(State(state): State<AppState>) -> Response {
    let result = state.store.ping(PROBE_TIMEOUT).await;
    let stats = state.store.pool_stats();
    state.metrics.database_up.set(i64::from(result.is_ok()));
    let body = DbCheck {
        status: if result.is_ok() { "ok" } else { "down" },
        backend: state.store.kind().as_str(),
        latency_ms: result.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
        pool: PoolReport {
            size: stats.size,
            idle: stats.idle,
            max: stats.max,
        },
        error: result.err().map(|e| e.to_string()),
    };
    (status_code(body.status == "ok"), Json(body)).into_response()
}

#[derive(Serialize, ToSchema)]
pub struct RedisCheck {
    /// `ok`, `down` or `disabled` (REDIS_URL unset).
    pub status: &'static str,
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A Redis `PING` with its latency; `disabled` when `REDIS_URL` is unset.
#[utoipa::path(get, path = "/redis-check", tag = "probes",
    responses((status = 200, body = RedisCheck), (status = 503, body = RedisCheck)))]
pub async fn redis_check(State(state): State<AppState>) -> Response {
    let Some(redis) = &state.redis else {
        return Json(RedisCheck {
            status: "disabled",
            latency_ms: None,
            error: None,
        })
        .into_response();
    };
    let result = redis.ping(PROBE_TIMEOUT).await;
    state.metrics.redis_up.set(i64::from(result.is_ok()));
    let body = RedisCheck {
        status: if result.is_ok() { "ok" } else { "down" },
        latency_ms: result.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
        error: result.err().map(|e| e.to_string()),
    };
    (status_code(body.status == "ok"), Json(body)).into_response()
}

/// Prometheus metrics: OpenMetrics when the scraper asks for it (Prometheus
/// does), else the classic text format.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format (OpenMetrics on request)")))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.metrics.set_pool(state.store.pool_stats());
    state
        .metrics
        .ratelimit_degraded
        .set(i64::from(state.limits.limiter().is_degraded()));
    for route in state.gateway.catalog().models() {
        state
            .metrics
            .llm_circuit_state
            .get_or_create(&crate::metrics::ModelLabels {
                model: route.entry.id.clone(),
            })
            .set(route.breaker.state_code());
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    match state.metrics.render() {
        Ok(text) if openmetrics => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::metrics::openmetrics_to_prometheus_text(&text),
        )
            .into_response(),
        Err(e) => ApiError::internal(&e).into_response(),
    }
}
