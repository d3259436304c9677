//! The limiter the service uses: in-process, or Redis with a failure policy.
//!
//! With Redis, a failed call (error or timeout) marks the backend degraded
//! for [`RETRY_INTERVAL`]; meanwhile decisions come from each replica's own
//! in-process limiter (`fallback`, the default) or are refused (`refuse`).
//! The first successful call after that ends the degraded state by itself.

use crate::clock::Clock;
use crate::gcra::{Decision, Quota};
use crate::local::LocalLimiter;
use crate::redis_limiter::RedisLimiter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How long the Redis backend is left alone after a failure.
pub const RETRY_INTERVAL_US: u64 = 1_000_000;

/// What to do while Redis is unreachable: the configuration's
/// `RATE_LIMIT_REDIS_FAILURE`, one type for both.
pub use switchyard_core::config::RedisFailurePolicy as FailurePolicy;

/// Which backend made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    Redis,
    Fallback,
}

/// A decision and where it came from; `backend_error` is set when this call
/// found Redis failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub source: Source,
    pub backend_error: bool,
}

/// Redis is down and the policy is to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared rate limiter (Redis) is unavailable")]
pub struct Refused {
    pub backend_error: bool,
}

enum Backend {
    Local(LocalLimiter),
    Redis(Shared),
}

/// Limits shared through Redis, with the in-process fallback.
struct Shared {
    redis: RedisLimiter,
    fallback: LocalLimiter,
    policy: FailurePolicy,
    /// 0 while healthy; else when to try Redis again (µs).
    retry_at_us: AtomicU64,
}

pub struct Limiter {
    backend: Backend,
    clock: Arc<dyn Clock>,
    backend_errors: AtomicU64,
}

impl Limiter {
    pub fn local(clock: Arc<dyn Clock>) -> Self {
        Self {
            backend: Backend::Local(LocalLimiter::new(clock.clone())),
            clock,
            backend_errors: AtomicU64::new(0),
        }
    }

    pub fn redis(redis: RedisLimiter, policy: FailurePolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            backend: Backend::Redis(Shared {
                redis,
                fallback: LocalLimiter::new(clock.clone()),
                policy,
                retry_at_us: AtomicU64::new(0),
            }),
            clock,
            backend_errors: AtomicU64::new(0),
        }
    }

    /// Decides and, when admitted, records `cost` units against `key`.
    pub async fn check(&self, key: &str, quota: &Quota, cost: u32) -> Result<Verdict, Refused> {
        self.apply(key, quota, cost, true).await
    }

    /// Decides without recording: would `cost` units be admitted now?
    pub async fn peek(&self, key: &str, quota: &Quota, cost: u32) -> Result<Verdict, Refused> {
        self.apply(key, quota, cost, false).await
    }

    async fn apply(
        &self,
        key: &str,
        quota: &Quota,
        cost: u32,
        record: bool,
    ) -> Result<Verdict, Refused> {
        match &self.backend {
            Backend::Local(local) => {
                let decision = if record {
                    local.check(key, quota, cost)
                } else {
                    local.peek(key, quota, cost)
                };
                Ok(Verdict {
                    decision,
                    source: Source::Local,
                    backend_error: false,
                })
            }
            // The shared path's future (a Redis round trip, some kilobytes)
            // is on the heap: every request's middleware futures hold the
            // future of a decision, so the in-process path's stays small.
            Backend::Redis(shared) => {
                Box::pin(self.apply_shared(shared, key, quota, cost, record)).await
            }
        }
    }

    async fn apply_shared(
        &self,
        shared: &Shared,
        key: &str,
        quota: &Quota,
        cost: u32,
        record: bool,
    ) -> Result<Verdict, Refused> {
        let Shared {
            redis,
            fallback,
            policy,
            retry_at_us: retry_at,
        } = shared;
        let now = self.clock.now_us();
        let waiting = retry_at.load(Ordering::Acquire);
        let mut backend_error = false;
        if waiting == 0 || now >= waiting {
            let result = if record {
                redis.check(key, quota, cost).await
            } else {
                redis.peek(key, quota, cost).await
            };
            match result {
                Ok(decision) => {
                    if waiting != 0 && retry_at.swap(0, Ordering::AcqRel) != 0 {
                        tracing::info!(
                            "Redis rate limiter reachable again; limits are shared across replicas"
                        );
                    }
                    return Ok(Verdict {
                        decision,
                        source: Source::Redis,
                        backend_error: false,
                    });
                }
                Err(e) => {
                    backend_error = true;
                    self.backend_errors.fetch_add(1, Ordering::Relaxed);
                    let previous = retry_at.swap(now + RETRY_INTERVAL_US, Ordering::AcqRel);
                    if previous == 0 {
                        tracing::error!(error = %e, policy = ?policy, "Redis rate limiter unavailable");
                    }
                }
            }
        }
        match policy {
            FailurePolicy::Refuse => Err(Refused { backend_error }),
            FailurePolicy::Fallback => {
                let decision = if record {
                    fallback.check(key, quota, cost)
                } else {
                    fallback.peek(key, quota, cost)
                };
                Ok(Verdict {
                    decision,
                    source: Source::Fallback,
                    backend_error,
                })
            }
        }
    }

    /// True while Redis is failing and decisions fall back or are refused.
    pub fn is_degraded(&self) -> bool {
        match &self.backend {
            Backend::Local(_) => false,
            Backend::Redis(shared) => shared.retry_at_us.load(Ordering::Acquire) != 0,
        }
    }

    /// Redis failures seen so far.
    pub fn backend_errors(&self) -> u64 {
        self.backend_errors.load(Ordering::Relaxed)
    }

    /// `local` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Local(_) => "local",
            Backend::Redis(_) => "redis",
        }
    }

    /// Drops in-process state of keys back at rest; call periodically.
    pub fn purge_idle(&self) -> usize {
        match &self.backend {
            Backend::Local(l) => l.purge_idle(),
            Backend::Redis(shared) => shared.fallback.purge_idle(),
        }
    }
}
