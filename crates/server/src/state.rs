//! Shared application state, built once at start-up and cloned into handlers.

use crate::auth::KeyAuthority;
use crate::metrics::Metrics;
use crate::redis::Redis;
use axum::body::Bytes;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchyard_core::catalog::ModelEntry;
use switchyard_core::Config;
use switchyard_store::Store;

/// How long a rendered `/v1/models` answer is served from memory.
pub const MODELS_CACHE_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub redis: Option<Redis>,
    pub keys: KeyAuthority,
    pub metrics: Metrics,
    pub started: Instant,
    draining: AtomicBool,
    catalog: RwLock<Arc<Vec<ModelEntry>>>,
    /// The rendered `/v1/models` body.
    pub models_response: moka::future::Cache<(), Bytes>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, store: Store, redis: Option<Redis>) -> Self {
        let metrics = Metrics::new(
            config.environment.as_str(),
            config.deployment_slot.as_deref(),
            redis.is_some(),
        );
        let keys = KeyAuthority::new(config.key_cache_ttl);
        let catalog = RwLock::new(Arc::new(config.file.models.clone()));
        Self(Arc::new(Inner {
            config,
            store,
            redis,
            keys,
            metrics,
            started: Instant::now(),
            draining: AtomicBool::new(false),
            catalog,
            models_response: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(MODELS_CACHE_TTL)
                .build(),
        }))
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
        match self.catalog.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new model catalog (configuration reload) and drops the
    /// cached `/v1/models` answer.
    pub async fn replace_catalog(&self, models: Vec<ModelEntry>) {
        {
            let mut guard = match self.catalog.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            *guard = Arc::new(models);
        }
        self.models_response.invalidate_all();
    }
}
