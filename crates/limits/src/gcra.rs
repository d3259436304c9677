//! The Generic Cell Rate Algorithm, as pure integer arithmetic on
//! microseconds, shared by the in-process and the Redis backends.
//!
//! A [`Quota`] of `limit` units per `period` with a `burst` of B admits B units
//! at once from rest and then one unit every `period / limit` (the emission
//! interval). The state is one number per key, the theoretical arrival time
//! (TAT): the moment the key would be back at rest. A request of `cost` units
//! is admitted when `max(TAT, now) + cost × interval − B × interval ≤ now`.
//!
//! **Burst rule:** the burst defaults to the limit, so a limit of N per
//! minute admits exactly N requests in a burst, then one more every 60/N
//! seconds. In any window of length w a key is admitted at most
//! `B + w / interval` units (fewer than `B + w / interval` exactly).

use std::time::Duration;

/// Why a quota cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("the limit must be at least 1")]
    ZeroLimit,
    #[error("the burst must be at least 1")]
    ZeroBurst,
    #[error("the period must be at least one second")]
    PeriodTooShort,
    #[error("more than one unit per microsecond cannot be limited")]
    TooFine,
}

/// A rate: `limit` units per `period`, admitting up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u32,
    burst: u32,
    period_us: u64,
    /// Microseconds one unit occupies (`period / limit`, rounded down).
    interval_us: u64,
    /// How far ahead of now the TAT may run (`burst × interval`).
    tolerance_us: u64,
}

impl Quota {
    pub fn new(limit: u32, period: Duration, burst: Option<u32>) -> Result<Self, QuotaError> {
        if limit == 0 {
            return Err(QuotaError::ZeroLimit);
        }
        if period < Duration::from_secs(1) {
            return Err(QuotaError::PeriodTooShort);
        }
        let burst = burst.unwrap_or(limit);
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        let interval_us = period_us / u64::from(limit);
        if interval_us == 0 {
            return Err(QuotaError::TooFine);
        }
        Ok(Self {
            limit,
            burst,
            period_us,
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst)),
        })
    }

    /// `limit` per minute, burst `limit`.
    pub fn per_minute(limit: u32) -> Result<Self, QuotaError> {
        Self::new(limit, Duration::from_secs(60), None)
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub fn period(&self) -> Duration {
        Duration::from_micros(self.period_us)
    }

    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    pub fn tolerance_us(&self) -> u64 {
        self.tolerance_us
    }
}

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The quota's limit, for `x-ratelimit-limit-*`.
    pub limit: u32,
    /// Units that could still be admitted right now after this decision.
    pub remaining: u32,
    /// When denied: microseconds until the same request would be admitted
    /// (`u64::MAX` when its cost exceeds the burst and it never will be).
    pub retry_after_us: u64,
    /// Microseconds until the key is back at rest (full burst available).
    pub reset_after_us: u64,
}

impl Decision {
    /// Retry-After in whole seconds, rounded up so a client that waits that
    /// long is admitted.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_us.div_ceil(1_000_000)
    }
}

/// The outcome of applying a request to a stored TAT: the decision and the
/// TAT to store (unchanged when denied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub decision: Decision,
    pub tat_us: u64,
}

/// Applies a request of `cost` units at `now_us` to a key whose stored TAT is
/// `tat_us` (0 when the key has no state). Never overflows: all arithmetic
/// saturates.
pub fn step(tat_us: u64, now_us: u64, cost: u32, q: &Quota) -> Step {
    let tat = tat_us.max(now_us);
    let increment = q.interval_us.saturating_mul(u64::from(cost));
    let new_tat = tat.saturating_add(increment);
    let allow_at = new_tat.saturating_sub(q.tolerance_us);
    let remaining_at = |t: u64| -> u32 {
        let used = t.saturating_sub(now_us);
        let free = q.tolerance_us.saturating_sub(used) / q.interval_us;
        u32::try_from(free).unwrap_or(u32::MAX)
    };
    if cost <= q.burst && allow_at <= now_us {
        Step {
            decision: Decision {
                allowed: true,
                limit: q.limit,
                remaining: remaining_at(new_tat),
                retry_after_us: 0,
                reset_after_us: new_tat - now_us,
            },
            tat_us: new_tat,
        }
    } else {
        let retry_after_us = if cost > q.burst {
            u64::MAX
        } else {
            allow_at - now_us
        };
        Step {
            decision: Decision {
                allowed: false,
                limit: q.limit,
                remaining: remaining_at(tat),
                retry_after_us,
                reset_after_us: tat - now_us,
            },
            tat_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: u64 = 60_000_000;

    #[test]
    fn a_limit_of_n_admits_n_in_a_burst_then_one_per_interval() {
        let q = Quota::per_minute(10).unwrap();
        assert_eq!(q.interval_us(), 6_000_000);
        let now = 1_000 * MIN;
        let mut tat = 0;
        for i in 0..10 {
            let s = step(tat, now, 1, &q);
            assert!(s.decision.allowed, "request {i}");
            assert_eq!(s.decision.remaining, 9 - i);
            tat = s.tat_us;
        }
        let denied = step(tat, now, 1, &q);
        assert!(!denied.decision.allowed);
        assert_eq!(denied.decision.retry_after_us, 6_000_000);
        assert_eq!(denied.decision.retry_after_secs(), 6);
        assert_eq!(denied.decision.reset_after_us, MIN);
        assert_eq!(denied.tat_us, tat, "a denial changes nothing");
        // One microsecond early: still denied; on schedule: admitted.
        assert!(!step(tat, now + 5_999_999, 1, &q).decision.allowed);
        let on_time = step(tat, now + 6_000_000, 1, &q);
        assert!(on_time.decision.allowed);
        assert_eq!(on_time.decision.remaining, 0);
    }

    #[test]
    fn weighted_costs_and_impossible_requests() {
        let q = Quota::new(1000, Duration::from_secs(60), None).unwrap();
        let s = step(0, MIN, 600, &q);
        assert!(s.decision.allowed);
        assert_eq!(s.decision.remaining, 400);
        let s2 = step(s.tat_us, MIN, 500, &q);
        assert!(!s2.decision.allowed);
        assert_eq!(s2.decision.remaining, 400);
        assert_eq!(s2.decision.retry_after_us, 100 * 60_000);
        let never = step(0, MIN, 1001, &q);
        assert!(!never.decision.allowed);
        assert_eq!(never.decision.retry_after_us, u64::MAX);
    }

    #[test]
    fn quotas_are_validated() {
        assert_eq!(Quota::per_minute(0), Err(QuotaError::ZeroLimit));
        assert_eq!(
            Quota::new(1, Duration::from_millis(10), None),
            Err(QuotaError::PeriodTooShort)
        );
        assert_eq!(
            Quota::new(1, Duration::from_secs(1), Some(0)),
            Err(QuotaError::ZeroBurst)
        );
        assert_eq!(
            Quota::new(2_000_000, Duration::from_secs(1), None),
            Err(QuotaError::TooFine)
        );
        let q = Quota::new(5, Duration::from_secs(3600), Some(2)).unwrap();
        assert_eq!(
            (q.limit(), q.burst(), q.period()),
            (5, 2, Duration::from_secs(3600))
        );
    }

    fn quota() -> impl Strategy<Value = Quota> {
        (
            1u32..=10_000,
            1u64..=86_400,
            proptest::option::of(1u32..=10_000),
        )
            .prop_filter_map("valid quota", |(limit, secs, burst)| {
                Quota::new(limit, Duration::from_secs(secs), burst).ok()
            })
    }

    proptest! {
        #[test]
        fn never_overflows_or_panics(tat in any::<u64>(), now in any::<u64>(), cost in any::<u32>(), q in quota()) {
            let s = step(tat, now, cost, &q);
            prop_assert!(s.decision.remaining <= q.burst());
            prop_assert!(s.tat_us >= tat.max(now) || !s.decision.allowed);
        }

        #[test]
        fn state_is_monotone_and_denials_change_nothing(
            q in quota(),
            start in 0u64..1u64 << 50,
            gaps in proptest::collection::vec((0u64..10_000_000, 1u32..5), 1..200),
        ) {
            let mut tat = 0u64;
            let mut now = start;
            for (gap, cost) in gaps {
                now += gap;
                let s = step(tat, now, cost, &q);
                prop_assert!(s.tat_us >= tat, "TAT never moves backwards");
                if !s.decision.allowed {
                    prop_assert_eq!(s.tat_us, tat);
                    if s.decision.retry_after_us != u64::MAX {
                        // Waiting exactly retry_after admits the same request.
                        let later = step(tat, now + s.decision.retry_after_us, cost, &q);
                        prop_assert!(later.decision.allowed);
                        if s.decision.retry_after_us > 0 {
                            let early = step(tat, now + s.decision.retry_after_us - 1, cost, &q);
                            prop_assert!(!early.decision.allowed);
                        }
                    }
                }
                // A cheaper request is admitted whenever a dearer one is.
                if s.decision.allowed && cost > 1 {
                    prop_assert!(step(tat, now, cost - 1, &q).decision.allowed);
                }
                tat = s.tat_us;
            }
        }

        #[test]
        fn never_admits_more_than_the_burst_plus_the_rate_in_any_window(
            q in quota(),
            gaps in proptest::collection::vec(0u64..5_000_000, 1..400),
            window_start in 0usize..400,
            window_len_us in 1u64..120_000_000,
        ) {
            let mut tat = 0u64;
            let mut now = MIN;
            let mut admitted: Vec<u64> = Vec::new();
            for gap in gaps {
                now += gap;
                let s = step(tat, now, 1, &q);
                if s.decision.allowed {
                    admitted.push(now);
                }
                tat = s.tat_us;
            }
            if let Some(&a) = admitted.get(window_start.min(admitted.len().saturating_sub(1))) {
                let count = admitted.iter().filter(|&&t| t >= a && t < a + window_len_us).count() as u64;
                // count × interval < burst × interval + window
                prop_assert!(
                    count * q.interval_us() < q.tolerance_us() + window_len_us,
                    "{} admitted in {} µs (burst {}, interval {} µs)",
                    count, window_len_us, q.burst(), q.interval_us()
                );
            }
        }
    }
}
