//! The application's services, built once at start-up from the
//! configuration. Each middleware layer takes only its own part (see
//! `routes::router`); handlers take the whole [`AppState`] and call the
//! service they need.

use crate::auth::KeyAuthority;
use crate::budgets::Budgets;
use crate::gateway::Gateway;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::ratelimit::{Limits, Quotas};
use crate::usage::UsageRecorder;
use crate::REDIS_CALL_TIMEOUT;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use switchyard_agent::definitions::Definitions;
use switchyard_core::config::LimitBackend;
use switchyard_core::keys::ApiKey;
use switchyard_core::tokens::TokenKeys;
use switchyard_core::Config;
use switchyard_limits::{Limiter, Redis, RedisLimiter, SystemClock, TieredCache};
use switchyard_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a rendered `/v1/models` answer is served from memory.
pub const MODELS_CACHE_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub redis: Option<Arc<Redis>>,
    pub metrics: Metrics,
    /// Key lookups for authentication (cached) and last-use times.
    pub authority: KeyAuthority,
    /// Issuing, revoking and changing keys.
    pub keys: Keys,
    /// Signs and verifies access tokens; `None` without `JWT_SECRET`.
    pub tokens: Option<Arc<TokenKeys>>,
    /// Signs and verifies the web console's sessions.
    pub sessions: Arc<crate::session::Sessions>,
    pub limits: Limits,
    pub budgets: Budgets,
    pub gateway: Gateway,
    pub started: Instant,
    draining: Arc<AtomicBool>,
    /// The rendered `/v1/models` body. In-process only: replicas in a rollout
    /// may serve different catalogs, so a shared copy could be wrong.
    pub models_response: TieredCache<Arc<String>>,
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

fn load_definitions(config: &Config) -> Definitions {
    let defs = Definitions::load(&config.tasks.agents_dir, &config.tasks.skills_dir);
    for p in &defs.problems {
        tracing::warn!(problem = %p, "an agent or skill definition was skipped");
    }
    for n in &defs.notes {
        tracing::info!(note = %n, "part of an agent or skill definition is left out");
    }
    defs
}

fn limiter(config: &Config, redis: Option<&Arc<Redis>>) -> Limiter {
    match (redis, config.limits.backend) {
        (Some(r), LimitBackend::Redis) => Limiter::redis(
            RedisLimiter::new(r.clone(), "sy:rl:", REDIS_CALL_TIMEOUT),
            config.limits.redis_failure,
            Arc::new(SystemClock),
        ),
        _ => Limiter::local(Arc::new(SystemClock)),
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
        let authority = KeyAuthority::new(
            store.clone(),
            metrics.clone(),
            config.key_cache_ttl,
            shared_cache,
        );
        let keys = Keys::new(store.clone(), Some(authority.clone()));
        let tokens = config.jwt_secret.as_ref().map(|current| {
            Arc::new(TokenKeys::new(
                current,
                config.keys.jwt_secret_previous.as_ref(),
            ))
        });
        let sessions = Arc::new(crate::session::Sessions::new(
            config.jwt_secret.as_ref(),
            config.keys.jwt_secret_previous.as_ref(),
            Some(store.clone()),
        ));
        if sessions.ephemeral {
            tracing::info!("console sessions are signed with a secret of this process (no JWT_SECRET): they end when it restarts and hold on this replica only");
        }
        let limits = Limits::new(
            limiter(&config, redis.as_ref()),
            Quotas::from_config(&config)?,
            metrics.clone(),
        );
        let budgets = Budgets::new(
            store.clone(),
            metrics.clone(),
            config.key_cache_ttl,
            config.limits.budget_lease,
            crate::replica::replica_id(),
        );
        let (usage_stop, stop_rx) = watch::channel(false);
        let (usage, writer) =
            UsageRecorder::spawn(store.clone(), &config.database, metrics.clone(), stop_rx);
        let gateway = Gateway::new(
            &config,
            crate::gateway::http_client()?,
            budgets.clone(),
            usage,
            metrics.clone(),
        );
        let definitions = RwLock::new(Arc::new(load_definitions(&config)));
        Ok(Self(Arc::new(Inner {
            config,
            store,
            redis,
            metrics,
            authority,
            keys,
            tokens,
            sessions,
            limits,
            budgets,
            gateway,
            started: Instant::now(),
            draining: Arc::new(AtomicBool::new(false)),
            models_response: TieredCache::local(1, MODELS_CACHE_TTL),
            definitions,
            usage_stop,
            usage_writer: Mutex::new(Some(writer)),
        })))
    }

    /// When a key stops working: its expiry, or under an enforced rotation
    /// policy its due date plus grace, whichever comes first.
    pub fn key_expiry(&self, key: &ApiKey) -> Option<chrono::DateTime<chrono::Utc>> {
        self.config.keys.rotation.expiry(key)
    }

    /// The sub-agents and skills on disk (reloaded with the configuration).
    pub fn definitions(&self) -> Arc<Definitions> {
        switchyard_core::sync::read(&self.definitions).clone()
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

    /// The draining flag itself, for the edge layer (which closes
    /// connections after each response while draining).
    pub fn draining_flag(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// From now on probes answer 503 so that load balancers stop sending work.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.metrics.draining.set(1);
    }

    /// Applies a reloaded configuration: the model catalog (and the upstream
    /// keys it names), the routing policy, and the agent and skill
    /// definitions; drops the cached `/v1/models` answer.
    pub fn reload(&self, config: &Config) {
        self.gateway.reload(config);
        *switchyard_core::sync::write(&self.definitions) = Arc::new(load_definitions(config));
        self.models_response.invalidate_local();
    }
}
