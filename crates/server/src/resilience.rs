//! Keeping model calls alive when upstreams are not: a circuit breaker and a
//! bounded worker pool (concurrency limit plus bounded queue) per catalog
//! model, retries with jittered exponential backoff that honour
//! `Retry-After`, and the model's fallback chain.

use crate::gateway::ModelRoute;
use crate::metrics::{Metrics, ModelLabels};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_models::BackendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured before moving on to a fallback.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is out; its outcome decides.
    HalfOpen,
}

/// A circuit breaker: opens after `threshold` consecutive failures, lets one
/// trial call through after `cooldown`, closes again when it succeeds.
pub struct Breaker {
    state: Mutex<BreakerState>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// Whether a call may go out now (taking the trial slot when half-open).
    pub fn try_acquire(&self) -> bool {
        let mut s = switchyard_core::sync::lock(&self.state);
        match *s {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if Instant::now() >= until => {
                *s = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    pub fn record(&self, success: bool) {
        let mut s = switchyard_core::sync::lock(&self.state);
        *s = match (*s, success) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => BreakerState::Open {
                until: Instant::now() + self.cooldown,
            },
        };
    }

    /// A call that took the trial slot never reached the upstream.
    pub fn release_trial(&self) {
        let mut s = switchyard_core::sync::lock(&self.state);
        if *s == BreakerState::HalfOpen {
            *s = BreakerState::Open {
                until: Instant::now(),
            };
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(
            *switchyard_core::sync::lock(&self.state),
            BreakerState::Closed { .. }
        )
    }

    /// 0 closed, 1 open, 2 half-open (the `llm_circuit_state` gauge).
    pub fn state_code(&self) -> i64 {
        match *switchyard_core::sync::lock(&self.state) {
            BreakerState::Closed { .. } => 0,
            BreakerState::Open { .. } => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// The worker pool of one model: at most `max_concurrency` calls in flight,
/// at most `max_queue` waiting.
pub struct Pool {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queue: usize,
}

impl Pool {
    pub fn new(max_concurrency: u32, max_queue: u32) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrency.max(1) as usize)),
            waiting: AtomicUsize::new(0),
            max_queue: max_queue as usize,
        }
    }

    /// A slot, waiting in line if needed; `None` when the line is full.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let permit = self.permits.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit
    }
}

/// Why no model of the chain produced an answer.
#[derive(Debug, Clone)]
pub enum CallError {
    Backend(BackendError),
    /// Every model's queue was full.
    Overloaded,
    /// Every model's circuit breaker was open.
    CircuitOpen,
}

/// A successful call: the model that served it, its result, and the pool
/// slot, held until the caller is done with the result (a stream).
pub struct Served<T> {
    pub route: Arc<ModelRoute>,
    pub value: T,
    pub permit: OwnedSemaphorePermit,
}

fn backoff(attempt: u32, error: &BackendError) -> Duration {
    if let BackendError::Status {
        retry_after: Some(secs),
        ..
    } = error
    {
        return Duration::from_secs(*secs).min(RETRY_AFTER_CAP);
    }
    let exp = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(10))
        .min(BACKOFF_CAP);
    // Full range jitter around the exponential step: 50–150 %.
    let factor = 0.5 + rand::random::<f64>();
    exp.mul_f64(factor)
}

/// Runs `op` against the chain: each model in turn (breaker permitting, a
/// pool slot available), retrying retryable failures. A non-retryable
/// failure (the upstream rejected the request itself) ends the chain at once.
pub async fn call<T, F, Fut>(
    chain: &[Arc<ModelRoute>],
    metrics: &Metrics,
    mut op: F,
) -> Result<Served<T>, CallError>
where
    F: FnMut(Arc<ModelRoute>) -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let mut last = CallError::CircuitOpen;
    for (i, route) in chain.iter().enumerate() {
        let labels = ModelLabels {
            model: route.entry.id.clone(),
        };
        if i > 0 {
            metrics.llm_fallbacks.get_or_create(&labels).inc();
        }
        if !route.breaker.try_acquire() {
            metrics.llm_circuit_rejections.get_or_create(&labels).inc();
            if !matches!(last, CallError::Backend(_)) {
                last = CallError::CircuitOpen;
            }
            continue;
        }
        let Some(permit) = route.pool.acquire().await else {
            route.breaker.release_trial();
            metrics.llm_overloaded.get_or_create(&labels).inc();
            last = CallError::Overloaded;
            continue;
        };
        let mut attempt = 0;
        loop {
            match op(route.clone()).await {
                Ok(value) => {
                    route.breaker.record(true);
                    return Ok(Served {
                        route: route.clone(),
                        value,
                        permit,
                    });
                }
                Err(e) if e.is_retryable() => {
                    route.breaker.record(false);
                    tracing::warn!(error = %e, model = %route.entry.id, attempt, "upstream call failed");
                    let may_retry = attempt < route.entry.retries && !route.breaker.is_open();
                    if !may_retry {
                        last = CallError::Backend(e);
                        break;
                    }
                    metrics.llm_retries.get_or_create(&labels).inc();
                    tokio::time::sleep(backoff(attempt, &e)).await;
                    attempt += 1;
                }
                Err(e) => {
                    route.breaker.record(true);
                    return Err(CallError::Backend(e));
                }
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_half_opens_and_closes() {
        let b = Breaker::new(2, Duration::from_millis(30));
        assert!(b.try_acquire());
        b.record(false);
        assert_eq!(b.state_code(), 0);
        b.record(false);
        assert_eq!(b.state_code(), 1);
        assert!(!b.try_acquire());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.try_acquire(), "one trial after the cooldown");
        assert_eq!(b.state_code(), 2);
        assert!(!b.try_acquire(), "only one trial at a time");
        b.record(false);
        assert_eq!(b.state_code(), 1, "a failed trial reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.try_acquire());
        b.record(true);
        assert_eq!(b.state_code(), 0);
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let e = BackendError::Connect("x".into());
        for attempt in 0..4 {
            let d = backoff(attempt, &e);
            let step = BACKOFF_BASE * (1 << attempt);
            assert!(d >= step / 2 && d <= step * 3 / 2, "{attempt}: {d:?}");
        }
        assert!(backoff(20, &e) <= BACKOFF_CAP * 3 / 2);
        let limited = BackendError::Status {
            status: 429,
            message: String::new(),
            retry_after: Some(7),
        };
        assert_eq!(backoff(0, &limited), Duration::from_secs(7));
    }

    #[tokio::test]
    async fn the_pool_bounds_the_queue() {
        let pool = Arc::new(Pool::new(1, 1));
        let first = pool.acquire().await.unwrap();
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.acquire().await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(pool.acquire().await.is_none(), "the queue of one is taken");
        drop(first);
        assert!(waiter.await.unwrap());
    }
}
