//! Wall-clock time as a dependency: code that decides by the time (leases,
//! schedules) asks a [`Clock`] instead of calling [`crate::now`] itself, so
//! that tests can hold time still and move it by hand with a [`ManualClock`].
//!
//! Every clock answers at microsecond precision, the precision both
//! databases store, so a time written and read back compares equal.

use chrono::{DateTime, SubsecRound, Utc};
use std::sync::Mutex;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time, truncated to microseconds.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        crate::now()
    }
}

/// A clock that stands still until it is moved: for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start` (truncated to microseconds).
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start.trunc_subsecs(6)),
        }
    }

    /// A clock showing the current system time, then standing still.
    pub fn starting_now() -> Self {
        Self::new(crate::now())
    }

    /// Moves the clock forward (or back, for a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = crate::sync::lock(&self.now);
        *now = (*now + by).trunc_subsecs(6);
    }

    /// Sets the clock to `to` (truncated to microseconds).
    pub fn set(&self, to: DateTime<Utc>) {
        *crate::sync::lock(&self.now) = to.trunc_subsecs(6);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *crate::sync::lock(&self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn manual_clock_moves_only_by_hand_at_microsecond_precision() {
        let start = Utc
            .timestamp_opt(1_700_000_000, 123_456_789)
            .single()
            .unwrap_or_default();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now().timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(clock.now(), clock.now());
        clock.advance(Duration::milliseconds(1500));
        assert_eq!(
            clock.now() - start.trunc_subsecs(6),
            Duration::milliseconds(1500)
        );
        clock.set(start);
        assert_eq!(clock.now(), start.trunc_subsecs(6));
    }

    #[test]
    fn system_clock_is_truncated_to_microseconds() {
        let t = SystemClock.now();
        assert_eq!(t.timestamp_subsec_nanos() % 1000, 0);
    }
}
