//! Request rate limits: per key (`API_RATE_LIMIT`/minute or the key's own
//! override), per route and key (`[limits.routes]`, `POST /v1/task` 10/minute
//! by default), per client IP for unauthenticated traffic, and per client IP
//! for failed authentications. Limited responses carry
//! `x-ratelimit-{limit,remaining,reset}-requests`; a denial is a 429 with
//! `Retry-After`.

use crate::context::Caller;
use crate::error::ApiError;
use crate::fn_layer::{Next, Stack};
use crate::metrics::Metrics;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::decimal;
use switchyard_core::keys::ApiKey;
use switchyard_core::Config;
use switchyard_limits::{Decision, Limiter, Quota};

/// Which limit a decision applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Key,
    Route,
    Ip,
    AuthFailure,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Route => "route",
            Scope::Ip => "ip",
            Scope::AuthFailure => "auth_failure",
        }
    }

    fn denial(self) -> (&'static str, &'static str) {
        match self {
            Scope::Key => (
                "key_rate_limit",
                "this API key's request rate limit is exceeded",
            ),
            Scope::Route => (
                "route_rate_limit",
                "this API key's request rate limit for this route is exceeded",
            ),
            Scope::Ip => (
                "ip_rate_limit",
                "too many unauthenticated requests from this address",
            ),
            Scope::AuthFailure => (
                "auth_failure_rate_limit",
                "too many failed authentication attempts from this address",
            ),
        }
    }
}

/// The quotas in force, built once from the configuration.
pub struct Quotas {
    pub default_key: Quota,
    pub routes: HashMap<String, Quota>,
    /// The paths `routes` names (without their methods).
    pub route_paths: std::collections::HashSet<String>,
    pub unauthenticated: Quota,
    pub auth_failures: Quota,
}

impl Quotas {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let per_minute =
            |what: &str, n: u32| Quota::per_minute(n).map_err(|e| anyhow::anyhow!("{what}: {e}"));
        let mut routes = HashMap::new();
        for (route, n) in &config.limits.routes {
            routes.insert(route.clone(), per_minute(route, *n)?);
        }
        let route_paths = routes
            .keys()
            .map(|r| {
                r.split_once(' ')
                    .map_or(r.as_str(), |(_, path)| path)
                    .to_owned()
            })
            .collect();
        Ok(Self {
            default_key: per_minute("API_RATE_LIMIT", config.api_rate_limit)?,
            routes,
            route_paths,
            unauthenticated: per_minute(
                "UNAUTHENTICATED_RATE_LIMIT",
                config.limits.unauthenticated_per_minute,
            )?,
            auth_failures: per_minute(
                "AUTH_FAILURE_RATE_LIMIT",
                config.limits.auth_failures_per_minute,
            )?,
        })
    }

    /// The key's own rate when it has one, else `API_RATE_LIMIT` per minute.
    pub fn for_key(&self, key: &ApiKey) -> Quota {
        key.rate_limit
            .and_then(|r| {
                Quota::new(
                    r.requests(),
                    Duration::from_secs(u64::from(r.period_seconds())),
                    None,
                )
                .ok()
            })
            .unwrap_or(self.default_key)
    }
}

/// `1m30s`, `6s`, `250ms`: the duration style of OpenAI's rate-limit headers.
pub fn format_reset(us: u64) -> String {
    let mut out = String::with_capacity(16);
    if us < 1_000_000 {
        decimal::push(&mut out, us.div_ceil(1000), 0);
        out.push_str("ms");
        return out;
    }
    let secs = us.div_ceil(1_000_000);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    for (n, unit, shown) in [(h, 'h', h > 0), (m, 'm', h > 0 || m > 0), (s, 's', true)] {
        if shown {
            decimal::push(&mut out, n, 0);
            out.push(unit);
        }
    }
    out
}

// Header names built once: a name given as a string is checked and copied
// into a new buffer at every insert.
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");

fn set_headers(headers: &mut HeaderMap, d: &Decision) {
    headers.insert(LIMIT_REQUESTS, HeaderValue::from(d.limit));
    headers.insert(REMAINING_REQUESTS, HeaderValue::from(d.remaining));
    if let Ok(v) = HeaderValue::try_from(format_reset(d.reset_after_us)) {
        headers.insert(RESET_REQUESTS, v);
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    /// Over the limit of `scope`: 429 with `Retry-After`.
    Denied { scope: Scope, decision: Decision },
    /// The shared limiter is unreachable and the policy is to refuse: 503.
    Unavailable,
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Denied { scope, decision } => {
                let (code, message) = scope.denial();
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    message,
                )
                .with_code(code)
                .with_header(
                    "retry-after",
                    decision.retry_after_secs().max(1).to_string(),
                )
            }
            Rejection::Unavailable => {
                ApiError::unavailable("the shared rate limiter is unavailable; try again shortly")
                    .with_code("rate_limiter_unavailable")
                    .with_header("retry-after", "1")
            }
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = ApiError::from(self).into_response();
        if let Rejection::Denied { decision, .. } = self {
            set_headers(response.headers_mut(), &decision);
        }
        response
    }
}

/// The request limits in force: the limiter (in-process or Redis), the
/// quotas, and the metrics of their decisions.
#[derive(Clone)]
pub struct Limits(Arc<LimitsInner>);

struct LimitsInner {
    limiter: Limiter,
    quotas: Quotas,
    metrics: Metrics,
}

impl Limits {
    pub fn new(limiter: Limiter, quotas: Quotas, metrics: Metrics) -> Self {
        Self(Arc::new(LimitsInner {
            limiter,
            quotas,
            metrics,
        }))
    }

    pub fn quotas(&self) -> &Quotas {
        &self.0.quotas
    }

    pub fn limiter(&self) -> &Limiter {
        &self.0.limiter
    }

    async fn decide(
        &self,
        scope: Scope,
        key: &str,
        quota: &Quota,
        record: bool,
    ) -> Result<Decision, Rejection> {
        let limiter = &self.0.limiter;
        let verdict = if record {
            limiter.check(key, quota, 1).await
        } else {
            limiter.peek(key, quota, 1).await
        };
        let (result, backend_error) = match &verdict {
            Ok(v) => (
                if v.decision.allowed {
                    "allowed"
                } else {
                    "denied"
                },
                v.backend_error,
            ),
            Err(refused) => ("refused", refused.backend_error),
        };
        let metrics = &self.0.metrics;
        if backend_error {
            metrics.ratelimit_backend_errors.inc();
        }
        metrics.count_decision(scope.as_str(), result);
        match verdict {
            Ok(v) => Ok(v.decision),
            Err(_) => Err(Rejection::Unavailable),
        }
    }

    /// Records one request against `key`; the rejection when denied.
    pub async fn enforce(
        &self,
        scope: Scope,
        key: &str,
        quota: &Quota,
    ) -> Result<Decision, Rejection> {
        let decision = self.decide(scope, key, quota, true).await?;
        if decision.allowed {
            Ok(decision)
        } else {
            Err(Rejection::Denied { scope, decision })
        }
    }

    /// Checks without recording: refuses when `key` has no room left.
    pub async fn guard(&self, scope: Scope, key: &str, quota: &Quota) -> Result<(), Rejection> {
        let decision = self.decide(scope, key, quota, false).await?;
        if decision.allowed {
            Ok(())
        } else {
            Err(Rejection::Denied { scope, decision })
        }
    }

    /// Counts one failed authentication against the client's address.
    pub async fn count_failure(&self, key: &str, quota: &Quota) {
        // The limit itself is enforced by `guard` on the next attempt.
        let _ = self.decide(Scope::AuthFailure, key, quota, true).await;
    }

    /// Records one request of the caller's key against its rate.
    pub async fn check_key(&self, caller: &Caller) -> Result<Decision, Rejection> {
        let quota = self.0.quotas.for_key(&caller.key);
        self.enforce(Scope::Key, &format!("key:{}", caller.key.id), &quota)
            .await
    }
}

/// The middleware for authenticated requests: route limit, then key limit;
/// the tighter of the two goes into the response headers.
pub async fn limit_requests<S: Stack>(limits: Limits, req: Request, next: Next<S>) -> Response {
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    // Per-route quotas are few: the route's name is made only for a path
    // that has one.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .filter(|m| limits.quotas().route_paths.contains(m.as_str()))
        .map(|m| format!("{} {}", req.method(), m.as_str()));
    let mut tightest: Option<Decision> = None;
    if let Some(quota) = route.as_ref().and_then(|r| limits.quotas().routes.get(r)) {
        let key = format!("route:{}:{}", route.as_deref().unwrap_or(""), caller.key.id);
        match limits.enforce(Scope::Route, &key, quota).await {
            Ok(d) => tightest = Some(d),
            Err(rejection) => return rejection.into_response(),
        }
    }
    let key_decision = match limits.check_key(&caller).await {
        Ok(d) => d,
        Err(rejection) => return rejection.into_response(),
    };
    let shown = match tightest {
        Some(route_decision) if route_decision.remaining < key_decision.remaining => route_decision,
        _ => key_decision,
    };
    let mut response = next.run(req).await;
    set_headers(response.headers_mut(), &shown);
    response
}

#[cfg(test)]
mod tests {
    use super::format_reset;

    #[test]
    fn reset_durations_read_like_openai_headers() {
        assert_eq!(format_reset(0), "0ms");
        assert_eq!(format_reset(249_001), "250ms");
        assert_eq!(format_reset(6_000_000), "6s");
        assert_eq!(format_reset(90_000_000), "1m30s");
        assert_eq!(format_reset(360_000_000), "6m0s");
        assert_eq!(format_reset(3_600_000_001), "1h0m1s");
    }
}
