//! The Redis limiter: the same GCRA step, run by one Lua script per decision
//! (atomic on the server, one round trip), so any number of replicas share
//! one limit.

use crate::gcra::{Decision, Quota};
use crate::redis_conn::{Redis, RedisUnavailable};
use std::time::Duration;

/// KEYS[1]: the TAT key. ARGV: interval µs, tolerance µs, cost, now µs (or -1
/// for the Redis server's clock, so replicas with skewed clocks agree),
/// record (1) or peek (0), burst, limit.
/// Returns {allowed, remaining, retry_after µs, reset_after µs}. Numbers stay
/// below 2^53 (microsecond timestamps), so Lua's doubles are exact.
const SCRIPT: &str = r#"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local record = ARGV[5] == '1'
local burst = tonumber(ARGV[6])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
local function remaining(t)
  local free = tolerance - (t - now)
  if free < 0 then free = 0 end
  return math.floor(free / interval)
end
if cost <= burst and allow_at <= now then
  if record then
    redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
  end
  return {1, remaining(new_tat), 0, new_tat - now}
end
local retry = -1
if cost <= burst then retry = allow_at - now end
return {0, remaining(tat), retry, tat - now}
"#;

pub struct RedisLimiter {
    redis: std::sync::Arc<Redis>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    /// Injected "now" for tests; `None` uses the Redis server's clock.
    clock: Option<std::sync::Arc<dyn crate::clock::Clock>>,
}

impl RedisLimiter {
    pub fn new(redis: std::sync::Arc<Redis>, prefix: &str, timeout: Duration) -> Self {
        Self {
            redis,
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
            timeout,
            clock: None,
        }
    }

    /// Uses this clock instead of the Redis server's (tests).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn crate::clock::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub async fn check(
        &self,
        key: &str,
        quota: &Quota,
        cost: u32,
    ) -> Result<Decision, RedisUnavailable> {
        self.apply(key, quota, cost, true).await
    }

    pub async fn peek(
        &self,
        key: &str,
        quota: &Quota,
        cost: u32,
    ) -> Result<Decision, RedisUnavailable> {
        self.apply(key, quota, cost, false).await
    }

    async fn apply(
        &self,
        key: &str,
        quota: &Quota,
        cost: u32,
        record: bool,
    ) -> Result<Decision, RedisUnavailable> {
        let mut conn = self.redis.connection(self.timeout).await?;
        let now: i64 = match &self.clock {
            Some(c) => i64::try_from(c.now_us()).unwrap_or(i64::MAX),
            None => -1,
        };
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation
            .arg(quota.interval_us())
            .arg(quota.tolerance_us())
            .arg(cost)
            .arg(now)
            .arg(if record { 1 } else { 0 })
            .arg(quota.burst());
        let reply: Vec<i64> = tracing::Instrument::instrument(
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)),
            crate::redis_conn::span("EVALSHA"),
        )
        .await
        .map_err(|_| RedisUnavailable::Timeout(self.timeout))??;
        let [allowed, remaining, retry, reset] = reply[..] else {
            return Err(RedisUnavailable::Protocol(format!(
                "rate-limit script returned {} values, expected 4",
                reply.len()
            )));
        };
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Decision {
            allowed: allowed == 1,
            limit: quota.limit(),
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after_us: if retry < 0 { u64::MAX } else { to_u64(retry) },
            reset_after_us: to_u64(reset),
        })
    }
}
