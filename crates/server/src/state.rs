//! Shared application state, built once at start-up and cloned into handlers.

use crate::auth::KeyAuthority;
use crate::metrics::Metrics;
use crate::ratelimit::Quotas;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchyard_core::catalog::ModelEntry;
use switchyard_core::config::{LimitBackend, RedisFailurePolicy};
use switchyard_core::Config;
use switchyard_limits::{FailurePolicy, Limiter, Redis, RedisLimiter, SystemClock, TieredCache};
use switchyard_store::Store;

/// How long a rendered `/v1/models` answer is served from memory.
pub const MODELS_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Bound on any single Redis call made while serving a request.
pub const REDIS_CALL_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub redis: Option<Arc<Redis>>,
    pub keys: KeyAuthority,
    pub limiter: Limiter,
    pub quotas: Quotas,
    pub metrics: Metrics,
    pub started: Instant,
    draining: AtomicBool,
    catalog: RwLock<Arc<Vec<ModelEntry>>>,
    /// The rendered `/v1/models` body. In-process only: replicas in a rollout
    /// may serve different catalogs, so a shared copy could be wrong.
    pub models_response: TieredCache<Arc<String>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, store: Store, redis: Option<Arc<Redis>>) -> anyhow::Result<Self> {
        let metrics = Metrics::new(
            config.environment.as_str(),
            config.deployment_slot.as_deref(),
            redis.is_some(),
        );
        let shared_cache = redis.clone().filter(|_| config.limits.shared_cache);
        let keys = KeyAuthority::new(config.key_cache_ttl, shared_cache);
        let limiter = match (&redis, config.limits.backend) {
            (Some(r), LimitBackend::Redis) => Limiter::redis(
                RedisLimiter::new(r.clone(), "sy:rl:", REDIS_CALL_TIMEOUT),
                match config.limits.redis_failure {
                    RedisFailurePolicy::Fallback => FailurePolicy::Fallback,
                    RedisFailurePolicy::Refuse => FailurePolicy::Refuse,
                },
                Arc::new(SystemClock),
            ),
            _ => Limiter::local(Arc::new(SystemClock)),
        };
        let quotas = Quotas::from_config(&config)?;
        let catalog = RwLock::new(Arc::new(config.file.models.clone()));
        Ok(Self(Arc::new(Inner {
            config,
            store,
            redis,
            keys,
            limiter,
            quotas,
            metrics,
            started: Instant::now(),
            draining: AtomicBool::new(false),
            catalog,
            models_response: TieredCache::local(1, MODELS_CACHE_TTL),
        })))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// From now on probes answer 503 so that load balancers stop sending work.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.metrics.draining.set(1);
    }

    pub fn catalog(&self) -> Arc<Vec<ModelEntry>> {
        switchyard_core::sync::read(&self.catalog).clone()
    }

    /// Swaps in a new model catalog (configuration reload) and drops the
    /// cached `/v1/models` answer.
    pub fn replace_catalog(&self, models: Vec<ModelEntry>) {
        *switchyard_core::sync::write(&self.catalog) = Arc::new(models);
        self.models_response.invalidate_local();
    }
}
