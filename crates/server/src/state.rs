//! Shared application state, built once at start-up and cloned into handlers.

use crate::auth::KeyAuthority;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::ratelimit::Quotas;
use crate::usage::UsageRecorder;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchyard_agent::definitions::Definitions;
use switchyard_core::catalog::ModelEntry;
use switchyard_core::config::LimitBackend;
use switchyard_core::Config;
use switchyard_limits::{Limiter, Redis, RedisLimiter, SystemClock, TieredCache};
use switchyard_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a rendered `/v1/models` answer is served from memory.
pub const MODELS_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Bound on any single Redis call made while serving a request.
pub const REDIS_CALL_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

fn load_definitions(agents: &std::path::Path, skills: &std::path::Path) -> Definitions {
    let defs = Definitions::load(agents, skills);
    for p in &defs.problems {
        tracing::warn!(problem = %p, "an agent or skill definition was skipped");
    }
    defs
}

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
    gateway: RwLock<Arc<Gateway>>,
    /// Budgets applying to (key, project), cached like keys.
    pub budgets: TieredCache<Arc<Vec<switchyard_core::budget::Budget>>>,
    pub http: reqwest::Client,
    pub usage: UsageRecorder,
    definitions: RwLock<Arc<Definitions>>,
    usage_stop: watch::Sender<bool>,
    usage_writer: Mutex<Option<JoinHandle<()>>>,
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
        let key_cache_ttl = config.key_cache_ttl;
        let keys = KeyAuthority::new(key_cache_ttl, shared_cache);
        let limiter = match (&redis, config.limits.backend) {
            (Some(r), LimitBackend::Redis) => Limiter::redis(
                RedisLimiter::new(r.clone(), "sy:rl:", REDIS_CALL_TIMEOUT),
                config.limits.redis_failure,
                Arc::new(SystemClock),
            ),
            _ => Limiter::local(Arc::new(SystemClock)),
        };
        let quotas = Quotas::from_config(&config)?;
        let catalog = RwLock::new(Arc::new(config.file.models.clone()));
        let config_tasks_dirs = (
            config.tasks.agents_dir.clone(),
            config.tasks.skills_dir.clone(),
        );
        let http = crate::gateway::http_client()?;
        let gateway = RwLock::new(Arc::new(Gateway::new(&config, &config.file.models, &http)));
        let (usage_stop, stop_rx) = watch::channel(false);
        let (usage, writer) = UsageRecorder::spawn(store.clone(), metrics.clone(), stop_rx);
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
            gateway,
            budgets: TieredCache::local(100_000, key_cache_ttl),
            http,
            usage,
            definitions: RwLock::new(Arc::new(load_definitions(
                &config_tasks_dirs.0,
                &config_tasks_dirs.1,
            ))),
            usage_stop,
            usage_writer: Mutex::new(Some(writer)),
        })))
    }

    /// The sub-agents and skills on disk (reloaded with the configuration).
    pub fn definitions(&self) -> Arc<Definitions> {
        switchyard_core::sync::read(&self.definitions).clone()
    }

    pub fn gateway(&self) -> Arc<Gateway> {
        switchyard_core::sync::read(&self.gateway).clone()
    }

    /// Stops the usage writer after it has written everything queued, waiting
    /// at most `within`. Returns false when records were still unwritten.
    pub async fn flush_usage(&self, within: Duration) -> bool {
        let _ = self.usage_stop.send(true);
        let handle = switchyard_core::sync::lock(&self.usage_writer).take();
        match handle {
            None => true,
            Some(h) => tokio::time::timeout(within, h).await.is_ok(),
        }
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

    /// Swaps in a reloaded configuration's model catalog (and the upstream
    /// keys it names) and drops the cached `/v1/models` answer.
    pub fn replace_catalog(&self, config: &Config) {
        let models = config.file.models.clone();
        *switchyard_core::sync::write(&self.gateway) =
            Arc::new(Gateway::new(config, &models, &self.http));
        *switchyard_core::sync::write(&self.catalog) = Arc::new(models);
        *switchyard_core::sync::write(&self.definitions) = Arc::new(load_definitions(
            &config.tasks.agents_dir,
            &config.tasks.skills_dir,
        ));
        self.models_response.invalidate_local();
    }
}
