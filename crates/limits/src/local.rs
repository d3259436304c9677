//! The in-process limiter: TATs in sharded maps, no allocation on the path of
//! a key already seen.

use crate::clock::Clock;
use crate::gcra::{step, Decision, Quota};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

/// Theoretical arrival times by key.
type Shard = Mutex<HashMap<Box<str>, u64>>;

#[derive(Debug)]
pub struct LocalLimiter {
    shards: Box<[Shard]>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
}

impl LocalLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            clock,
        }
    }

    fn shard(&self, key: &str) -> &Shard {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[i]
    }

    /// Decides, and records the admission when allowed.
    pub fn check(&self, key: &str, quota: &Quota, cost: u32) -> Decision {
        self.apply(key, quota, cost, true)
    }

    /// Decides without recording anything: would `cost` units be admitted now?
    pub fn peek(&self, key: &str, quota: &Quota, cost: u32) -> Decision {
        self.apply(key, quota, cost, false)
    }

    fn apply(&self, key: &str, quota: &Quota, cost: u32, record: bool) -> Decision {
        let now = self.clock.now_us();
        let mut map = switchyard_core::sync::lock(self.shard(key));
        // One lookup for a key already seen (each hashes the key).
        if let Some(tat) = map.get_mut(key) {
            let s = step(*tat, now, cost, quota);
            if record && s.decision.allowed {
                *tat = s.tat_us;
            }
            return s.decision;
        }
        let s = step(0, now, cost, quota);
        if record && s.decision.allowed {
            map.insert(key.into(), s.tat_us);
        }
        s.decision
    }

    /// Forgets keys that are back at rest (their state equals no state).
    /// Returns how many keys remain.
    pub fn purge_idle(&self) -> usize {
        let now = self.clock.now_us();
        self.shards
            .iter()
            .map(|shard| {
                let mut map = switchyard_core::sync::lock(shard);
                map.retain(|_, tat| *tat > now);
                map.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn keys_are_independent_and_idle_keys_are_purged() {
        let clock = ManualClock::starting_at(1_000_000_000);
        let l = LocalLimiter::new(Arc::new(clock.clone()));
        let q = Quota::per_minute(2).unwrap();
        assert!(l.check("a", &q, 1).allowed);
        assert!(l.check("a", &q, 1).allowed);
        assert!(!l.check("a", &q, 1).allowed);
        assert!(l.peek("b", &q, 1).allowed);
        assert!(l.check("b", &q, 1).allowed);
        assert_eq!(l.purge_idle(), 2);
        clock.advance_us(60_000_000);
        assert_eq!(l.purge_idle(), 0);
        assert!(l.check("a", &q, 2).allowed);
    }
}
