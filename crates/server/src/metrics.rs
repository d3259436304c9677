//! Prometheus metrics: one registry per application instance, rendered in the
//! text exposition format by `GET /metrics`.

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use switchyard_core::tasks::TaskStatus;

pub mod backup;
mod fixed;
mod http;
mod model;
#[cfg(target_os = "linux")]
pub mod process;
mod text;
pub mod tls;

pub use http::{method_label, RequestLabels, RouteLabels};
pub use model::ModelSeries;
pub use text::openmetrics_to_prometheus_text;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub environment: &'static str,
    pub slot: String,
}

const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The service's metrics. Cloning shares the same series (and costs one
/// reference count: every request clones it).
#[derive(Clone)]
pub struct Metrics(Arc<Series>);

impl std::ops::Deref for Metrics {
    type Target = Series;
    fn deref(&self) -> &Series {
        &self.0
    }
}

/// The series of [`Metrics`].
pub struct Series {
    registry: Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
    pub database_up: Gauge,
    pub redis_up: Gauge,
    pub pool_connections: Family<PoolLabels, Gauge>,
    pub pool_max: Gauge,
    pub draining: Gauge,
    pub cache_requests: Family<CacheLabels, Counter>,
    pub ratelimit_decisions: Family<DecisionLabels, Counter>,
    /// Handles on `cache_requests`: three caches by hit and miss.
    cache_counts: fixed::FixedCounters<6>,
    /// Handles on `ratelimit_decisions`: four scopes by three results.
    decision_counts: fixed::FixedCounters<12>,
    pub ratelimit_backend_errors: Counter,
    pub ratelimit_degraded: Gauge,
    pub usage_queue_depth: Gauge,
    pub usage_records_written: Counter,
    pub usage_records_dropped: Counter,
    pub usage_write_errors: Counter,
    pub tokens: Family<TokenLabels, Counter>,
    pub cost_nano_usd: Family<ModelLabels, Counter>,
    pub upstream_latency: Family<ModelLabels, Histogram, fn() -> Histogram>,
    pub gateway_overhead: Histogram,
    pub llm_retries: Family<ModelLabels, Counter>,
    pub llm_fallbacks: Family<ModelLabels, Counter>,
    pub llm_overloaded: Family<ModelLabels, Counter>,
    pub llm_circuit_rejections: Family<ModelLabels, Counter>,
    pub llm_circuit_state: Family<ModelLabels, Gauge>,
    pub job_runs: Family<JobRunLabels, Counter>,
    pub job_leader: Family<JobLabels, Gauge>,
    pub job_last_success: Family<JobLabels, Gauge<f64, AtomicU64>>,
    pub upstream_calls: Family<UpstreamLabels, Counter>,
    pub tasks_queued: Gauge,
    pub task_queue_oldest: Gauge<f64, AtomicU64>,
    pub tasks_finished: Family<TaskStatusLabels, Counter>,
    pub budget_used: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    /// Headroom leased by replicas from each budget's current period (USD).
    pub budget_leased: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    /// Working keys past their rotation due date, deployment-wide.
    pub keys_rotation_due: Gauge,
    /// The budgets `budget_used` has a series for, so that a deleted
    /// budget's series goes too.
    budget_series: Arc<Mutex<HashSet<BudgetLabels>>>,
    pub tls_certificate: tls::CertificateExpiry,
    /// The last good backup and restore test, deployment-wide.
    pub backups: backup::BackupGauges,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub model: String,
    /// `ok`; `error`: the upstream failed (5xx, 429, 401/403, a timeout, a
    /// connection error, a reply that is not the protocol); or `rejected`:
    /// it refused the request itself as invalid (400, 404, 422).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskStatusLabels {
    /// A finished task's status: `completed`, `failed`, `timeout`,
    /// `cost_exceeded` or `cancelled`.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// `key` or `project`.
    pub scope: &'static str,
    /// The key id or project name.
    pub subject: String,
    /// `daily`, `monthly` or `total`.
    pub period: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: String,
    /// `input`, `output` or `cached`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

const OVERHEAD_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub scope: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobRunLabels {
    pub job: String,
    /// `ok`, `failed` or `lost`.
    pub result: &'static str,
}

impl Metrics {
    pub fn new(environment: &'static str, slot: Option<&str>, redis_enabled: bool) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status code",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving a request to sending its response headers",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being processed now",
            in_flight.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                environment,
                slot: slot.unwrap_or("").to_owned(),
            })
            .set(1);
        registry.register(
            "switchyard_build_info",
            "Always 1; labels carry the version, environment and deployment slot",
            build,
        );
        let database_up = Gauge::default();
        registry.register(
            "switchyard_database_up",
            "1 when the last database probe succeeded, else 0",
            database_up.clone(),
        );
        let redis_up = Gauge::default();
        if redis_enabled {
            registry.register(
                "switchyard_redis_up",
                "1 when the last Redis probe succeeded, else 0 (absent when Redis is not configured)",
                redis_up.clone(),
            );
        }
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "switchyard_db_pool_connections",
            "Open database connections by state (idle, in_use)",
            pool_connections.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "switchyard_db_pool_max_connections",
            "Configured maximum database connections (DATABASE_POOL_SIZE)",
            pool_max.clone(),
        );
        let draining = Gauge::default();
        registry.register(
            "switchyard_draining",
            "1 once shutdown has begun and probes answer 503",
            draining.clone(),
        );
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_requests",
            "Cache lookups by cache (api_keys, models) and result (hit, miss)",
            cache_requests.clone(),
        );
        let ratelimit_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "ratelimit_decisions",
            "Rate-limit decisions by scope (key, route, ip, auth_failure) and result (allowed, denied, refused)",
            ratelimit_decisions.clone(),
        );
        let ratelimit_backend_errors = Counter::default();
        registry.register(
            "ratelimit_backend_errors",
            "Failed calls to the shared (Redis) rate-limit backend",
            ratelimit_backend_errors.clone(),
        );
        let ratelimit_degraded = Gauge::default();
        registry.register(
            "ratelimit_degraded",
            "1 while the Redis rate limiter is unreachable and decisions fall back or are refused",
            ratelimit_degraded.clone(),
        );
        let usage_queue_depth = Gauge::default();
        registry.register(
            "usage_queue_depth",
            "Usage records accepted but not yet written",
            usage_queue_depth.clone(),
        );
        let usage_records_written = Counter::default();
        registry.register(
            "usage_records_written",
            "Usage records written to the database",
            usage_records_written.clone(),
        );
        let usage_records_dropped = Counter::default();
        registry.register(
            "usage_records_dropped",
            "Usage records lost (only possible after shutdown began); stays 0",
            usage_records_dropped.clone(),
        );
        let usage_write_errors = Counter::default();
        registry.register(
            "usage_write_errors",
            "Failed batch writes of usage records (each is retried)",
            usage_write_errors.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "llm_tokens",
            "Tokens by model and direction (input, output, cached)",
            tokens.clone(),
        );
        let cost_nano_usd = Family::<ModelLabels, Counter>::default();
        registry.register(
            "llm_cost_nano_usd",
            "Cost of model calls in nano-USD, by model",
            cost_nano_usd.clone(),
        );
        let upstream_latency =
            Family::<ModelLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "llm_upstream_latency_seconds",
            "Time spent waiting for the upstream model, by model",
            upstream_latency.clone(),
        );
        let gateway_overhead = Histogram::new(OVERHEAD_BUCKETS);
        registry.register(
            "llm_gateway_overhead_seconds",
            "Time a model call spent in the gateway itself (total minus upstream)",
            gateway_overhead.clone(),
        );
        let llm_retries = Family::<ModelLabels, Counter>::default();
        registry.register(
            "llm_retries",
            "Upstream calls retried after a retryable failure, by model",
            llm_retries.clone(),
        );
        let llm_fallbacks = Family::<ModelLabels, Counter>::default();
        registry.register(
            "llm_fallbacks",
            "Calls handed to a fallback model, by the fallback model",
            llm_fallbacks.clone(),
        );
        let llm_overloaded = Family::<ModelLabels, Counter>::default();
        registry.register(
            "llm_overloaded",
            "Calls turned away because the model's queue was full",
            llm_overloaded.clone(),
        );
        let llm_circuit_rejections = Family::<ModelLabels, Counter>::default();
        registry.register(
            "llm_circuit_rejections",
            "Calls not sent because the model's circuit breaker was open",
            llm_circuit_rejections.clone(),
        );
        let llm_circuit_state = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "llm_circuit_state",
            "Circuit breaker per model: 0 closed, 1 open, 2 half-open",
            llm_circuit_state.clone(),
        );
        let job_runs = Family::<JobRunLabels, Counter>::default();
        registry.register(
            "switchyard_job_runs",
            "Scheduled job runs on this replica, by job and result (ok, failed, lost)",
            job_runs.clone(),
        );
        let job_leader = Family::<JobLabels, Gauge>::default();
        registry.register(
            "switchyard_job_leader",
            "1 while this replica holds the scheduled job's lease, else 0",
            job_leader.clone(),
        );
        let job_last_success = Family::<JobLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "switchyard_job_last_success_timestamp_seconds",
            "When a run of the scheduled job last succeeded on this replica (Unix time)",
            job_last_success.clone(),
        );
        let upstream_calls = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "switchyard_upstream_calls",
            "Attempts at a model's upstream (retries each count), by model and result (ok, error, rejected)",
            upstream_calls.clone(),
        );
        let tasks_queued = Gauge::default();
        registry.register(
            "switchyard_tasks_queued",
            "Agent tasks waiting for a worker (the whole deployment's queue)",
            tasks_queued.clone(),
        );
        let task_queue_oldest = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "switchyard_task_queue_oldest_seconds",
            "Age of the oldest queued agent task in seconds; 0 when none waits",
            task_queue_oldest.clone(),
        );
        let tasks_finished = Family::<TaskStatusLabels, Counter>::default();
        for status in TaskStatus::ALL.into_iter().filter(|s| s.is_finished()) {
            // Every outcome from 0, so that the first of each is a rise.
            tasks_finished
                .get_or_create(&TaskStatusLabels {
                    status: status.as_str(),
                })
                .inc_by(0);
        }
        registry.register(
            "switchyard_tasks_finished",
            "Agent tasks this replica's workers finished, by final status",
            tasks_finished.clone(),
        );
        let budget_used = Family::<BudgetLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "switchyard_budget_used_ratio",
            "Share of each budget used in its current period: (spent + leased) / limit",
            budget_used.clone(),
        );
        let budget_leased = Family::<BudgetLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "switchyard_budget_leased_usd",
            "Headroom of each budget's current period held in live replica leases (calls in flight, costs not yet written, idle), USD, deployment-wide",
            budget_leased.clone(),
        );
        let keys_rotation_due = Gauge::default();
        registry.register("switchyard_keys_rotation_due", "API keys past their rotation due date (KEY_ROTATION_DAYS after creation) and not rotated, deployment-wide", keys_rotation_due.clone());
        #[cfg(target_os = "linux")]
        registry.register_collector(Box::new(process::ProcessCollector));
        let tls_certificate = tls::CertificateExpiry::default();
        registry.register_collector(Box::new(tls_certificate.clone()));
        let backups = backup::BackupGauges::register(&mut registry);
        Self(Arc::new(Series {
            registry: Arc::new(registry),
            requests,
            duration,
            in_flight,
            database_up,
            redis_up,
            pool_connections,
            pool_max,
            draining,
            cache_requests,
            ratelimit_decisions,
            cache_counts: fixed::FixedCounters::default(),
            decision_counts: fixed::FixedCounters::default(),
            ratelimit_backend_errors,
            ratelimit_degraded,
            usage_queue_depth,
            usage_records_written,
            usage_records_dropped,
            usage_write_errors,
            tokens,
            cost_nano_usd,
            upstream_latency,
            gateway_overhead,
            llm_retries,
            llm_fallbacks,
            llm_overloaded,
            llm_circuit_rejections,
            llm_circuit_state,
            job_runs,
            job_leader,
            job_last_success,
            upstream_calls,
            tasks_queued,
            task_queue_oldest,
            tasks_finished,
            budget_used,
            budget_leased,
            keys_rotation_due,
            budget_series: Arc::default(),
            tls_certificate,
            backups,
        }))
    }

    /// Counts one failed attempt at a model's upstream: `rejected` when the
    /// upstream refused the request itself as invalid (400, 404, 422, which
    /// the caller sees as a 400), else `error`.
    pub fn count_upstream_failure(&self, model: &str, e: &switchyard_models::BackendError) {
        let result = match e {
            switchyard_models::BackendError::Status {
                status: 400 | 404 | 422,
                ..
            } => "rejected",
            _ => "error",
        };
        self.upstream_calls
            .get_or_create(&UpstreamLabels {
                model: model.to_owned(),
                result,
            })
            .inc();
    }

    /// Counts a task a worker finished.
    pub fn count_task_finished(&self, status: TaskStatus) {
        self.tasks_finished
            .get_or_create(&TaskStatusLabels {
                status: status.as_str(),
            })
            .inc();
    }

    /// The task queue: how many wait, and for how long the oldest has.
    pub fn set_task_queue(&self, queued: i64, oldest: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        self.tasks_queued.set(queued);
        let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        self.task_queue_oldest.set(age);
    }

    /// One series per budget with its share used in the current period; a
    /// deleted budget's series is removed.
    pub fn set_budgets(&self, states: &[switchyard_store::BudgetState]) {
        let mut current = HashSet::with_capacity(states.len());
        for s in states {
            let labels = BudgetLabels {
                scope: s.budget.scope.as_str(),
                subject: s.budget.subject.clone(),
                period: s.budget.period.as_str(),
            };
            self.budget_used.get_or_create(&labels).set(used_ratio(s));
            self.budget_leased
                .get_or_create(&labels)
                .set(s.leased_nano_usd as f64 / 1e9);
            current.insert(labels);
        }
        let mut known = self
            .budget_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for gone in known.difference(&current) {
            self.budget_used.remove(gone);
            self.budget_leased.remove(gone);
        }
        *known = current;
    }

    pub fn set_pool(&self, stats: switchyard_store::PoolStats) {
        let in_use = stats.size.saturating_sub(stats.idle);
        self.pool_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(i64::from(stats.idle));
        self.pool_connections
            .get_or_create(&PoolLabels { state: "in_use" })
            .set(i64::from(in_use));
        self.pool_max.set(i64::from(stats.max));
    }

    /// Counts one cache lookup: a load from the source is a miss, anything
    /// else (memory, Redis, another caller's load) a hit.
    pub fn count_cache(&self, cache: &'static str, served: switchyard_limits::Served) {
        let result = if served == switchyard_limits::Served::Loaded {
            "miss"
        } else {
            "hit"
        };
        let slot = fixed::slot(
            &["api_keys", "budgets", "models"],
            cache,
            &["hit", "miss"],
            result,
        );
        self.cache_counts
            .inc(slot, &self.cache_requests, || CacheLabels { cache, result });
    }

    /// Counts one rate-limit decision: `scope` is `key`, `route`, `ip` or
    /// `auth_failure`, `result` is `allowed`, `denied` or `refused` (the
    /// limiter could not decide).
    pub fn count_decision(&self, scope: &'static str, result: &'static str) {
        let slot = fixed::slot(
            &["key", "route", "ip", "auth_failure"],
            scope,
            &["allowed", "denied", "refused"],
            result,
        );
        self.decision_counts
            .inc(slot, &self.ratelimit_decisions, || DecisionLabels {
                scope,
                result,
            });
    }

    /// The OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `(spent + leased) / limit`; a budget with no limit left to give (a
/// limit of 0) counts as fully used.
fn used_ratio(s: &switchyard_store::BudgetState) -> f64 {
    let used = s.spent_nano_usd.saturating_add(s.leased_nano_usd) as f64;
    if s.budget.limit_nano_usd > 0 {
        used / s.budget.limit_nano_usd as f64
    } else {
        1.0
    }
}
