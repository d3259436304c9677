//! Configuration: twelve-factor environment variables (each secret also from
//! `NAME_FILE`) plus an optional TOML file for structured settings.
//!
//! Every variable is declared once, as a [`Setting`] in the file of its
//! section (`server`, `observability`, `otel`, `security`, `keys`, `tls`, `database`,
//! `redis`, `limits`, `file`, `models`, `tasks`, `retention`, `backup`); loading, [`Config::describe`] (what
//! `switchyard config check` prints) and the CLI's help ([`env_help`]) all
//! come from those declarations. This file holds the assembled [`Config`],
//! the problem types, the order sections load in, and the production checks
//! that span sections.
//!
//! Loading never stops at the first mistake: every problem is collected with
//! the variable it belongs to, so an operator fixes them all in one pass.

mod backup;
mod database;
mod file;
mod keys;
mod limits;
mod models;
mod observability;
mod otel;
mod reader;
mod redis;
mod retention;
mod security;
mod server;
mod setting;
mod tasks;
#[cfg(test)]
mod tests;
mod tls;

pub use backup::{BackupConfig, S3Config};
pub use database::{DatabaseConfig, DatabaseKind, DEFAULT_DATABASE_URL};
pub use file::{FileConfig, LimitsFile, RouteLimit};
pub use keys::{KeysConfig, NotifyConfig, NOTIFY_ATTEMPTS};
pub use limits::{
    BudgetLeaseConfig, CacheBackend, IpNet, LimitBackend, LimitsConfig, RedisFailurePolicy,
    DEFAULT_ROUTE_LIMITS,
};
pub use models::ModelFetchConfig;
pub use observability::LogFormat;
pub use otel::{parse_key_values, OtelConfig, RootSampler, Sampler};
pub use redis::{is_tls_url, RedisConfig};
pub use retention::RetentionConfig;
pub use server::Environment;
pub use setting::{env_help, setting, settings, DefaultValue, Section, Setting, ENV_HELP_SHORT};
pub use tasks::TasksConfig;
pub use tls::TlsConfig;

use crate::secret::Secret;
use reader::Reader;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The effective, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    /// `LOG_LEVEL`: a level (`info`) or a tracing filter directive (`info,sqlx=warn`).
    pub log_level: String,
    pub log_format: LogFormat,
    pub debug: bool,
    pub host: IpAddr,
    pub port: u16,
    pub jwt_secret: Option<Secret>,
    /// The HTTPS listener's certificate and key (`TLS_CERT_FILE`,
    /// `TLS_KEY_FILE`); `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Requests per minute per key (`API_RATE_LIMIT`).
    pub api_rate_limit: u32,
    /// Longest a request may take before a 504 (`API_TIMEOUT`).
    pub api_timeout: Duration,
    pub database: DatabaseConfig,
    pub redis: Option<RedisConfig>,
    pub sentry_dsn: Option<Secret>,
    /// Share of requests sent to Sentry as transactions (`SENTRY_TRACES_SAMPLE_RATE`).
    pub sentry_traces_sample_rate: f32,
    /// `SENTRY_PROFILES_SAMPLE_RATE`: validated; the Rust SDK has no profiler.
    pub sentry_profiles_sample_rate: f32,
    /// Trace export over OTLP; `None` unless an endpoint is set.
    pub otel: Option<OtelConfig>,
    /// `DEPLOYMENT_SLOT`, e.g. blue or green; reported by `/health`.
    pub deployment_slot: Option<String>,
    /// `/db-check` and `/redis-check` need an admin key
    /// (`DIAGNOSTICS_REQUIRE_ADMIN`).
    pub diagnostics_require_admin: bool,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long probes answer 503 before the listener closes, so that load
    /// balancers stop routing here first (`SHUTDOWN_DELAY_SECONDS`).
    pub shutdown_delay: Duration,
    /// Largest accepted request body (`MAX_REQUEST_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// How long a key lookup is cached; the bound on revocation propagation
    /// across replicas (`KEY_CACHE_TTL_SECONDS`).
    pub key_cache_ttl: Duration,
    /// How often `last_used_at` is written back (`KEY_LAST_USED_FLUSH_SECONDS`).
    pub last_used_flush: Duration,
    /// The admin key to create on an empty database (`ADMIN_API_KEY`).
    pub admin_api_key: Option<Secret>,
    /// Key rotation, its notices, and access tokens.
    pub keys: KeysConfig,
    pub allow_sqlite_in_production: bool,
    /// `SWITCHYARD_CONFIG`, when set.
    pub config_path: Option<PathBuf>,
    pub file: FileConfig,
    pub limits: LimitsConfig,
    /// Upstream API keys by model id, read from each model's `api_key_env`
    /// or `api_key_file`.
    pub model_keys: BTreeMap<String, Secret>,
    /// The files secrets are kept in: every `NAME_FILE` read, `TLS_KEY_FILE`,
    /// the models' `api_key_file`s and a PostgreSQL client key (`sslkey`).
    /// Task sandboxes hide them.
    pub secret_files: Vec<PathBuf>,
    pub tasks: TasksConfig,
    /// How long audit, usage and task data are kept.
    pub retention: RetentionConfig,
    pub backup: BackupConfig,
    /// Where `local` models without a `path` are kept and fetched to
    /// (`MODELS_DIR`).
    pub models_dir: PathBuf,
    /// Whether `serve` loads the local models at start rather than on
    /// first use (`LOCAL_MODEL_PRELOAD`).
    pub local_preload: bool,
    /// Where the local model is fetched from (`HF_ENDPOINT`,
    /// `HF_HUB_OFFLINE`, `PYTHON`).
    pub model_fetch: ModelFetchConfig,
    /// What [`Config::describe`] returns: each setting load read and its
    /// effective value, secrets redacted.
    described: Vec<(&'static str, String)>,
}

/// One thing wrong with the configuration, tied to the variable that holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigProblem {
    pub variable: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// A configuration with every problem found while loading it. The service
/// refuses to start unless `problems` is empty.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub problems: Vec<ConfigProblem>,
}

impl LoadedConfig {
    pub fn into_result(self) -> Result<Config, ConfigErrors> {
        if self.problems.is_empty() {
            Ok(self.config)
        } else {
            Err(ConfigErrors(self.problems))
        }
    }
}

/// All problems of a configuration, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> LoadedConfig {
        Self::load(&|name| std::env::var(name).ok())
    }

    /// Loads from any variable source (tests pass a map).
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> LoadedConfig {
        let mut r = Reader::new(env);

        let observability = observability::load(&mut r);
        let otel = otel::load(&mut r);
        let server = server::load(&mut r);
        let security = security::load(&mut r);
        let keys = keys::load(&mut r, security.jwt_secret.as_ref());
        let tls = tls::load(&mut r);
        let (database, allow_sqlite_in_production) = database::load(&mut r);
        let redis = redis::load(&mut r);
        let (config_path, mut file) = file::load(&mut r);
        let models = models::load(&mut r, &mut file);
        let limits = limits::load(&mut r, redis.is_some(), &file);
        let tasks = tasks::load(&mut r);
        let retention = retention::load(&mut r);
        let backup = backup::load(&mut r);

        if server.environment == Environment::Production {
            check_production(
                &mut r,
                server.debug,
                security.jwt_secret.as_ref(),
                database.kind,
                allow_sqlite_in_production,
            );
        }

        if let Some(tls) = &tls {
            r.secret_file(&tls.key_file);
        }
        let secret_files = r.take_secret_files();
        let (problems, described) = r.finish();
        LoadedConfig {
            config: Config {
                environment: server.environment,
                log_level: observability.log_level,
                log_format: observability.log_format,
                debug: server.debug,
                host: server.host,
                port: server.port,
                jwt_secret: security.jwt_secret,
                tls,
                api_rate_limit: server.api_rate_limit,
                api_timeout: server.api_timeout,
                database,
                redis,
                sentry_dsn: observability.sentry_dsn,
                sentry_traces_sample_rate: observability.sentry_traces_sample_rate,
                sentry_profiles_sample_rate: observability.sentry_profiles_sample_rate,
                otel,
                deployment_slot: server.deployment_slot,
                diagnostics_require_admin: server.diagnostics_require_admin,
                shutdown_grace: server.shutdown_grace,
                shutdown_delay: server.shutdown_delay,
                max_body_bytes: server.max_body_bytes,
                key_cache_ttl: security.key_cache_ttl,
                last_used_flush: security.last_used_flush,
                admin_api_key: security.admin_api_key,
                keys,
                allow_sqlite_in_production,
                config_path,
                file,
                limits,
                model_keys: models.model_keys,
                secret_files,
                tasks,
                retention,
                backup,
                models_dir: models.models_dir,
                local_preload: models.local_preload,
                model_fetch: models.fetch,
                described,
            },
            problems,
        }
    }

    /// The effective settings as `(VARIABLE, value)` pairs, secrets redacted:
    /// what `switchyard config check` prints. Exactly the settings load read,
    /// section by section, plus a few rows that are no variable (`route
    /// limits`, `models`).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        self.described.clone()
    }
}

/// What `ENVIRONMENT=production` refuses, across sections.
fn check_production(
    r: &mut Reader<'_>,
    debug: bool,
    jwt_secret: Option<&Secret>,
    database: DatabaseKind,
    allow_sqlite_in_production: bool,
) {
    if debug {
        r.problem(
            server::DEBUG.name,
            "must not be true when ENVIRONMENT=production",
        );
    }
    match jwt_secret {
        None => r.problem(
            security::JWT_SECRET.name,
            "is required when ENVIRONMENT=production (set JWT_SECRET or JWT_SECRET_FILE)",
        ),
        Some(s) if s.expose().len() < security::MIN_JWT_SECRET_BYTES => r.problem(
            security::JWT_SECRET.name,
            format!(
                "must be at least {} bytes when ENVIRONMENT=production",
                security::MIN_JWT_SECRET_BYTES
            ),
        ),
        Some(_) => {}
    }
    if database == DatabaseKind::Sqlite && !allow_sqlite_in_production {
        r.problem(
            database::DATABASE_URL.name,
            "SQLite is refused when ENVIRONMENT=production; use postgres:// or set ALLOW_SQLITE_IN_PRODUCTION=true",
        );
    }
}
