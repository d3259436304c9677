//! The primitives that keep model calls alive when upstreams are not: a
//! circuit breaker and a bounded worker pool (concurrency limit plus bounded
//! queue) per catalog model, and jittered exponential backoff that honours
//! `Retry-After`. The gateway's fallback loop (`gateway::chain`) uses them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock, so that tests can pause and move time.
use switchyard_models::BackendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

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

/// How long to wait before retry `attempt` after `error`: the upstream's
/// `Retry-After` when it sent one (capped), else a jittered exponential step.
pub fn backoff(attempt: u32, error: &BackendError) -> Duration {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_half_opens_and_closes() {
        let b = Breaker::new(2, Duration::from_secs(30));
        assert!(b.try_acquire());
        b.record(false);
        assert_eq!(b.state_code(), 0);
        b.record(false);
        assert_eq!(b.state_code(), 1);
        assert!(!b.try_acquire());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!b.try_acquire(), "still open before the cooldown ends");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.try_acquire(), "one trial after the cooldown");
        assert_eq!(b.state_code(), 2);
        assert!(!b.try_acquire(), "only one trial at a time");
        b.record(false);
        assert_eq!(b.state_code(), 1, "a failed trial reopens");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.try_acquire());
        b.record(true);
        assert_eq!(b.state_code(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_that_never_reached_the_upstream_frees_the_slot() {
        let b = Breaker::new(1, Duration::from_secs(5));
        b.record(false);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.try_acquire());
        b.release_trial();
        assert!(b.try_acquire(), "the released trial slot is free at once");
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
        // Wait until the waiter is in line, not for a guessed time.
        while pool.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(pool.acquire().await.is_none(), "the queue of one is taken");
        drop(first);
        assert!(waiter.await.unwrap());
    }
}
