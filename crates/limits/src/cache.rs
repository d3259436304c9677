//! A read-through cache: in-process (moka) in front of an optional shared
//! Redis tier, with single-flight loading so a cold key costs one load per
//! process however many requests ask for it at once.
//!
//! Redis is an accelerator, never a dependency: a Redis error or timeout
//! counts as a miss and the value is loaded from the source.

use crate::redis_conn::Redis;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Shared {
    redis: Arc<Redis>,
    prefix: String,
    timeout: Duration,
}

/// Where a lookup was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// In-process memory, or another caller's load that this one waited for.
    Local,
    /// The shared Redis tier.
    Shared,
    /// The source (this call ran the loader).
    Loaded,
}

pub struct TieredCache<V> {
    local: moka::future::Cache<String, V>,
    shared: Option<Shared>,
    ttl: Duration,
}

impl<V> TieredCache<V>
where
    V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
{
    /// In-process only.
    pub fn local(capacity: u64, ttl: Duration) -> Self {
        Self {
            local: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            shared: None,
            ttl,
        }
    }

    /// In-process in front of Redis; both tiers expire entries after `ttl`.
    pub fn with_redis(
        capacity: u64,
        ttl: Duration,
        redis: Arc<Redis>,
        prefix: &str,
        timeout: Duration,
    ) -> Self {
        let mut cache = Self::local(capacity, ttl);
        cache.shared = Some(Shared {
            redis,
            prefix: prefix.to_owned(),
            timeout,
        });
        cache
    }

    pub fn has_shared_tier(&self) -> bool {
        self.shared.is_some()
    }

    /// The value for `key`: from memory, else Redis, else the future
    /// `load` makes (run once for all concurrent callers of this process).
    ///
    /// `load` makes the future only on a miss: a loading future (a database
    /// query) passed in as it is would be held, unpolled, by every lookup's
    /// future, and so by every future that awaits a lookup, hits included.
    pub async fn get_or_load<E, F, L>(&self, key: &str, load: L) -> Result<(V, Served), Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
        L: FnOnce() -> F,
    {
        if let Some(v) = self.local.get(key).await {
            return Ok((v, Served::Local));
        }
        let from_shared = AtomicBool::new(false);
        let loaded = AtomicBool::new(false);
        // A miss goes through the cache's own loading future, which is over
        // ten kilobytes; on the heap, it does not make every future that
        // awaits this one (a request's whole middleware and call chain) that
        // much larger, and so that much longer to move, for the hits too.
        let value = Box::pin(self.local.try_get_with_by_ref(key, async {
            if let Some(v) = self.shared_get(key).await {
                from_shared.store(true, Ordering::Relaxed);
                return Ok(v);
            }
            let v = load().await?;
            loaded.store(true, Ordering::Relaxed);
            self.shared_set(key, &v).await;
            Ok(v)
        }))
        .await?;
        let served = if loaded.load(Ordering::Relaxed) {
            Served::Loaded
        } else if from_shared.load(Ordering::Relaxed) {
            Served::Shared
        } else {
            Served::Local
        };
        Ok((value, served))
    }

    /// Forgets `key` in this process and in Redis.
    pub async fn invalidate(&self, key: &str) {
        self.local.invalidate(key).await;
        if let Some(shared) = &self.shared {
            let full = format!("{}{key}", shared.prefix);
            let deleted: Result<i64, _> = shared
                .redis
                .query(redis::cmd("DEL").arg(&full), shared.timeout)
                .await;
            if deleted.is_err() {
                tracing::error!(key = %full, "could not evict a cache entry from Redis; it expires within the cache TTL");
            }
        }
    }

    /// Forgets everything held in this process (not in Redis).
    pub fn invalidate_local(&self) {
        self.local.invalidate_all();
    }

    async fn shared_get(&self, key: &str) -> Option<V> {
        let shared = self.shared.as_ref()?;
        let text: Option<String> = shared
            .redis
            .query(
                redis::cmd("GET").arg(format!("{}{key}", shared.prefix)),
                shared.timeout,
            )
            .await
            .ok()?;
        serde_json::from_str(&text?).ok()
    }

    async fn shared_set(&self, key: &str, value: &V) {
        let Some(shared) = &self.shared else { return };
        let Ok(text) = serde_json::to_string(value) else {
            return;
        };
        let ttl_ms = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let stored: Result<(), _> = shared
            .redis
            .query(
                redis::cmd("SET")
                    .arg(format!("{}{key}", shared.prefix))
                    .arg(text)
                    .arg("PX")
                    .arg(ttl_ms),
                shared.timeout,
            )
            .await;
        if stored.is_err() {
            tracing::debug!("could not write a cache entry to Redis");
        }
    }
}
