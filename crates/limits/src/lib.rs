//! Rate limiting and caching for Switchyard: the GCRA arithmetic, an
//! in-process and a Redis limiter behind one failure-aware front, a
//! two-tier read-through cache, and the Redis connection they share.

pub mod cache;
pub mod clock;
pub mod gcra;
pub mod limiter;
pub mod local;
pub mod redis_conn;
pub mod redis_limiter;

pub use cache::{Served, TieredCache};
pub use clock::{Clock, ManualClock, SystemClock};
pub use gcra::{Decision, Quota, QuotaError};
pub use limiter::{FailurePolicy, Limiter, Refused, Source, Verdict};
pub use redis_conn::{Redis, RedisUnavailable};
pub use redis_limiter::RedisLimiter;
