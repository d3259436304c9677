//! Configuration: twelve-factor environment variables (each secret also from
//! `NAME_FILE`) plus an optional TOML file for structured settings.
//!
//! Loading never stops at the first mistake: every problem is collected with
//! the variable it belongs to, so an operator fixes them all in one pass.

use crate::catalog::{self, ModelEntry};
use crate::secret::{redact_url, Secret};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Where the service runs; production turns on the strict checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "staging" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("expected development, staging or production".into()),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            _ => Err("expected json or pretty".into()),
        }
    }
}

/// Which database engine a `DATABASE_URL` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Database connection and pool settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connection URL; may carry a password, hence secret.
    pub url: Secret,
    pub kind: DatabaseKind,
    /// Maximum open connections (`DATABASE_POOL_SIZE`).
    pub pool_size: u32,
    /// Log every SQL statement (`DATABASE_ECHO`).
    pub echo: bool,
    /// Prepared statements cached per connection; 0 for pgbouncer in
    /// transaction pooling mode (`DATABASE_STATEMENT_CACHE_CAPACITY`).
    pub statement_cache_capacity: usize,
    /// Connections are closed and replaced after this age (`DATABASE_MAX_LIFETIME_SECONDS`).
    pub max_lifetime: Duration,
    /// How long a request waits for a free connection (`DATABASE_ACQUIRE_TIMEOUT_SECONDS`).
    pub acquire_timeout: Duration,
    /// Apply pending migrations when `serve` starts (`DATABASE_MIGRATE_ON_START`).
    pub migrate_on_start: bool,
    /// The database is reached through a transaction-pooling proxy such as
    /// pgbouncer with `pool_mode = transaction` (`DATABASE_TRANSACTION_POOLING`):
    /// no statement cache, and every operation runs in one transaction so a
    /// statement never outlives the server connection it was prepared on.
    pub transaction_pooling: bool,
}

/// Redis connection settings; absent when `REDIS_URL` is unset.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    pub password: Option<Secret>,
}

/// A per-route limit from the TOML file, e.g. `"POST /v1/task" = { per_minute = 10 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimit {
    pub per_minute: u32,
}

/// Where rate-limit state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitBackend {
    /// In this process; each replica counts alone.
    Local,
    /// In Redis; every replica shares one count.
    Redis,
}

/// What the Redis limiter does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailurePolicy {
    /// Each replica falls back to its own in-process limiter.
    Fallback,
    /// Limited requests are refused with 503.
    Refuse,
}

/// An IP network (`10.0.0.0/8`, `::1/128`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or network"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0 to {width}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Rate limiting and caching settings.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// `RATE_LIMIT_BACKEND`; defaults to `redis` when `REDIS_URL` is set.
    pub backend: LimitBackend,
    /// `RATE_LIMIT_REDIS_FAILURE`.
    pub redis_failure: RedisFailurePolicy,
    /// Requests per minute per client IP for requests without a valid key
    /// (`UNAUTHENTICATED_RATE_LIMIT`); probes and `/metrics` are exempt.
    pub unauthenticated_per_minute: u32,
    /// Failed authentications per minute per client IP before that IP is
    /// refused (`AUTH_FAILURE_RATE_LIMIT`).
    pub auth_failures_per_minute: u32,
    /// Peers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// Per-route limits (`METHOD /template` → per minute): built-in defaults
    /// overlaid with `[limits.routes]` from the TOML file.
    pub routes: BTreeMap<String, u32>,
    /// Use Redis as a shared cache tier (`CACHE_BACKEND`); defaults to
    /// `redis` when `REDIS_URL` is set.
    pub shared_cache: bool,
}

/// Built-in per-route limits, per key per minute.
pub const DEFAULT_ROUTE_LIMITS: &[(&str, u32)] = &[("POST /v1/task", 10)];

/// `[limits]` section of the TOML file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    #[serde(default)]
    pub routes: BTreeMap<String, RouteLimit>,
}

/// The structured settings read from `SWITCHYARD_CONFIG`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub routing: crate::routing::RoutingConfig,
}

impl FileConfig {
    /// Parses and validates the TOML text of a configuration file.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let file: FileConfig = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut problems = catalog::validate(&file.models);
        problems.extend(file.routing.validate());
        for (route, limit) in &file.limits.routes {
            let well_formed = route.split_once(' ').is_some_and(|(method, path)| {
                !method.is_empty()
                    && method.bytes().all(|b| b.is_ascii_uppercase())
                    && path.starts_with('/')
            });
            if !well_formed {
                problems.push(format!(
                    "limits.routes.\"{route}\": expected \"METHOD /path\", e.g. \"POST /v1/task\""
                ));
            }
            if limit.per_minute == 0 {
                problems.push(format!(
                    "limits.routes.\"{route}\".per_minute: must be at least 1"
                ));
            }
        }
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(problems)
        }
    }
}

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
    /// Requests per minute per key (`API_RATE_LIMIT`).
    pub api_rate_limit: u32,
    /// Longest a request may take before a 504 (`API_TIMEOUT`).
    pub api_timeout: Duration,
    pub database: DatabaseConfig,
    pub redis: Option<RedisConfig>,
    pub sentry_dsn: Option<Secret>,
    /// `DEPLOYMENT_SLOT`, e.g. blue or green; reported by `/health`.
    pub deployment_slot: Option<String>,
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
    pub allow_sqlite_in_production: bool,
    /// `SWITCHYARD_CONFIG`, when set.
    pub config_path: Option<PathBuf>,
    pub file: FileConfig,
    pub limits: LimitsConfig,
    /// Upstream API keys by model id, read from each model's `api_key_env`
    /// or `api_key_file`.
    pub model_keys: BTreeMap<String, Secret>,
    pub tasks: TasksConfig,
    /// How long a replica's lease on a scheduled job lasts without renewal
    /// (`SCHEDULER_LEASE_SECONDS`); another replica takes a dead one's jobs over after it.
    pub scheduler_lease: Duration,
    /// Where `local` models without a `path` are kept and fetched to
    /// (`MODELS_DIR`).
    pub models_dir: PathBuf,
    /// Whether `serve` loads the local models at start rather than on
    /// first use (`LOCAL_MODEL_PRELOAD`).
    pub local_preload: bool,
}

/// Agent task settings.
#[derive(Debug, Clone)]
pub struct TasksConfig {
    /// Tasks this replica runs at once (`TASK_WORKERS`; 0: none, the API
    /// still queues them for other replicas).
    pub workers: u32,
    /// How long a worker's claim on a task lasts without renewal
    /// (`TASK_LEASE_SECONDS`); a dead worker's task is taken over after it.
    pub lease: Duration,
    /// Where task workspaces live (`TASKS_DIR`).
    pub dir: PathBuf,
    /// Run Bash without a sandbox when bubblewrap is missing
    /// (`ALLOW_UNSANDBOXED_BASH`).
    pub allow_unsandboxed_bash: bool,
    /// The model tasks use when the request names none (`TASK_DEFAULT_MODEL`).
    pub default_model: String,
    /// How long a finished task's workspace (its artifacts) is kept
    /// (`TASK_RETENTION_HOURS`).
    pub retention: Duration,
    /// Sub-agent definitions, `*.md` (`AGENTS_DIR`).
    pub agents_dir: PathBuf,
    /// Skills, `<name>/SKILL.md` (`SKILLS_DIR`).
    pub skills_dir: PathBuf,
}

/// One thing wrong with the configuration, tied to the variable that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
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

pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/switchyard.db";
const MIN_JWT_SECRET_BYTES: usize = 32;

/// Reads variables and records problems as it goes.
struct Reader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<ConfigProblem>,
}

impl Reader<'_> {
    fn problem(&mut self, variable: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            variable: variable.to_owned(),
            message: message.into(),
        });
    }

    /// A non-empty, trimmed value.
    fn string(&mut self, name: &str) -> Option<String> {
        (self.env)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A secret from `NAME` or from the file named by `NAME_FILE`.
    fn secret(&mut self, name: &str) -> Option<Secret> {
        let file_var = format!("{name}_FILE");
        let direct = (self.env)(name).filter(|v| !v.is_empty());
        let file = self.string(&file_var);
        match (direct, file) {
            (Some(_), Some(_)) => {
                self.problem(name, format!("set either {name} or {file_var}, not both"));
                None
            }
            (Some(v), None) => Some(Secret::new(v.trim())),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let value = text.trim_end_matches(['\r', '\n']).to_owned();
                    if value.is_empty() {
                        self.problem(&file_var, format!("file `{path}` is empty"));
                        None
                    } else {
                        Some(Secret::new(value))
                    }
                }
                Err(e) => {
                    self.problem(&file_var, format!("cannot read `{path}`: {e}"));
                    None
                }
            },
            (None, None) => None,
        }
    }

    fn parsed<T: FromStr>(&mut self, name: &str, default: T, expect: &str) -> T
    where
        T::Err: fmt::Display,
    {
        match self.string(name) {
            None => default,
            Some(raw) => match raw.parse::<T>() {
                Ok(v) => v,
                Err(e) => {
                    let detail = e.to_string();
                    if detail.is_empty() || detail == expect {
                        self.problem(name, format!("`{raw}` is not valid: {expect}"));
                    } else {
                        self.problem(name, format!("`{raw}` is not valid: {expect} ({detail})"));
                    }
                    default
                }
            },
        }
    }

    fn ranged(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let expect = format!("expected an integer from {min} to {max}");
        let v = self.parsed::<u64>(name, default, &expect);
        if (min..=max).contains(&v) {
            v
        } else {
            self.problem(name, format!("`{v}` is out of range: {expect}"));
            default
        }
    }

    fn seconds(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.ranged(name, default, min, max))
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.string(name) {
            None => default,
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    self.problem(
                        name,
                        format!("`{raw}` is not valid: expected true or false"),
                    );
                    default
                }
            },
        }
    }
}

fn valid_log_level(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    s.split(',').all(|part| {
        let level = part.rsplit('=').next().unwrap_or(part).trim();
        let target_ok = part
            .split_once('=')
            .is_none_or(|(t, _)| !t.trim().is_empty() && !t.contains(char::is_whitespace));
        target_ok && LEVELS.contains(&level.to_ascii_lowercase().as_str())
    })
}

fn valid_slot(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> LoadedConfig {
        Self::load(&|name| std::env::var(name).ok())
    }

    /// Loads from any variable source (tests pass a map).
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> LoadedConfig {
        let mut r = Reader {
            env,
            problems: Vec::new(),
        };

        let environment = r.parsed(
            "ENVIRONMENT",
            Environment::Development,
            "expected development, staging or production",
        );
        let log_level = r.string("LOG_LEVEL").unwrap_or_else(|| "info".into());
        if !valid_log_level(&log_level) {
            r.problem(
                "LOG_LEVEL",
                format!("`{log_level}` is not valid: expected trace, debug, info, warn, error or off, optionally as target=level directives"),
            );
        }
        let log_format = r.parsed("LOG_FORMAT", LogFormat::Json, "expected json or pretty");
        let debug = r.flag("DEBUG", false);
        let host = match r.string("HOST").as_deref() {
            None => IpAddr::from([127, 0, 0, 1]),
            Some("localhost") => IpAddr::from([127, 0, 0, 1]),
            Some(raw) => match raw.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => {
                    r.problem(
                        "HOST",
                        format!("`{raw}` is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::)"),
                    );
                    IpAddr::from([127, 0, 0, 1])
                }
            },
        };
        let port = r.ranged("PORT", 8000, 0, 65535) as u16;
        let jwt_secret = r.secret("JWT_SECRET");
        let api_rate_limit = r.ranged("API_RATE_LIMIT", 100, 1, 1_000_000) as u32;
        let api_timeout = r.seconds("API_TIMEOUT", 300, 1, 86_400);

        let database_url = r
            .secret("DATABASE_URL")
            .unwrap_or_else(|| Secret::new(DEFAULT_DATABASE_URL));
        let kind = match DatabaseKind::of_url(database_url.expose()) {
            Some(k) => k,
            None => {
                r.problem(
                    "DATABASE_URL",
                    format!(
                        "`{}` is not supported: expected sqlite://PATH or postgres://…",
                        redact_url(database_url.expose())
                    ),
                );
                DatabaseKind::Sqlite
            }
        };
        let database = DatabaseConfig {
            url: database_url,
            kind,
            pool_size: r.ranged("DATABASE_POOL_SIZE", 20, 1, 1000) as u32,
            echo: r.flag("DATABASE_ECHO", false),
            statement_cache_capacity: r.ranged("DATABASE_STATEMENT_CACHE_CAPACITY", 100, 0, 10_000)
                as usize,
            max_lifetime: r.seconds("DATABASE_MAX_LIFETIME_SECONDS", 1800, 1, 86_400),
            acquire_timeout: r.seconds("DATABASE_ACQUIRE_TIMEOUT_SECONDS", 5, 1, 600),
            migrate_on_start: r.flag("DATABASE_MIGRATE_ON_START", true),
            transaction_pooling: r.flag("DATABASE_TRANSACTION_POOLING", false),
        };
        if database.transaction_pooling && kind != DatabaseKind::Postgres {
            r.problem(
                "DATABASE_TRANSACTION_POOLING",
                "applies only to PostgreSQL (a pgbouncer in front of it)",
            );
        }

        let redis_password = r.secret("REDIS_PASSWORD");
        let redis = match r.secret("REDIS_URL") {
            Some(url) => {
                if !(url.expose().starts_with("redis://")
                    || url.expose().starts_with("rediss://")
                    || url.expose().starts_with("redis+unix://")
                    || url.expose().starts_with("unix://"))
                {
                    r.problem(
                        "REDIS_URL",
                        format!(
                            "`{}` is not a Redis URL (redis://host:port/db)",
                            redact_url(url.expose())
                        ),
                    );
                }
                Some(RedisConfig {
                    url,
                    password: redis_password,
                })
            }
            None => {
                if redis_password.is_some() {
                    r.problem("REDIS_PASSWORD", "is set but REDIS_URL is not");
                }
                None
            }
        };

        let sentry_dsn = r.secret("SENTRY_DSN");
        if let Some(dsn) = &sentry_dsn {
            let d = dsn.expose();
            let shaped = (d.starts_with("https://") || d.starts_with("http://"))
                && d.contains('@')
                && d.rsplit('/').next().is_some_and(|p| !p.is_empty());
            if !shaped {
                r.problem(
                    "SENTRY_DSN",
                    "is not a Sentry DSN (https://PUBLIC_KEY@HOST/PROJECT_ID)",
                );
            }
        }

        let deployment_slot = r.string("DEPLOYMENT_SLOT");
        if let Some(slot) = &deployment_slot {
            if !valid_slot(slot) {
                r.problem(
                    "DEPLOYMENT_SLOT",
                    format!("`{slot}` is not valid: use 1-32 of a-z, 0-9, - and _ (e.g. blue)"),
                );
            }
        }
        let shutdown_grace = r.seconds("SHUTDOWN_GRACE_SECONDS", 30, 0, 3600);
        let shutdown_delay = r.seconds("SHUTDOWN_DELAY_SECONDS", 0, 0, 600);
        let max_body_bytes =
            r.ranged("MAX_REQUEST_BODY_BYTES", 10 * 1024 * 1024, 1024, 1 << 30) as usize;
        let key_cache_ttl = r.seconds("KEY_CACHE_TTL_SECONDS", 10, 1, 3600);
        let last_used_flush = r.seconds("KEY_LAST_USED_FLUSH_SECONDS", 30, 1, 3600);
        let admin_api_key = r.secret("ADMIN_API_KEY");
        if let Some(k) = &admin_api_key {
            if crate::keys::PresentedKey::parse(k.expose()).is_err() {
                r.problem(
                    "ADMIN_API_KEY",
                    "must be `sy_` followed by 64 lowercase hex digits (e.g. sy_$(openssl rand -hex 32))",
                );
            }
        }
        let allow_sqlite_in_production = r.flag("ALLOW_SQLITE_IN_PRODUCTION", false);

        let config_path = r.string("SWITCHYARD_CONFIG").map(PathBuf::from);
        let file = match &config_path {
            None => FileConfig::default(),
            Some(path) => match std::fs::read_to_string(path) {
                Err(e) => {
                    r.problem(
                        "SWITCHYARD_CONFIG",
                        format!("cannot read `{}`: {e}", path.display()),
                    );
                    FileConfig::default()
                }
                Ok(text) => match FileConfig::parse(&text) {
                    Ok(f) => f,
                    Err(problems) => {
                        for p in problems {
                            r.problem("SWITCHYARD_CONFIG", format!("{}: {p}", path.display()));
                        }
                        FileConfig::default()
                    }
                },
            },
        };

        let mut file = file;
        let mut model_keys = BTreeMap::new();
        let builtin_catalog = file.models.is_empty();
        if builtin_catalog {
            // The built-in catalog: its key is optional until a call needs it.
            file.models = catalog::default_catalog();
            match r.secret("ANTHROPIC_API_KEY") {
                Some(key) => {
                    for m in file.models.iter().filter(|m| m.api_key_env.is_some()) {
                        model_keys.insert(m.id.clone(), key.clone());
                    }
                }
                // No upstream to call: `auto` (and so tasks) goes to the
                // embedded model, unless the file routes it elsewhere.
                None if file.routing == crate::routing::RoutingConfig::default() => {
                    file.routing = crate::routing::RoutingConfig::all_to("local");
                }
                None => {}
            }
        }
        for (i, m) in file.models.iter().enumerate().filter(|_| !builtin_catalog) {
            if let Some(var) = &m.api_key_env {
                match (r.env)(var).filter(|v| !v.trim().is_empty()) {
                    Some(v) => {
                        model_keys.insert(m.id.clone(), Secret::new(v.trim()));
                    }
                    None => r.problem(
                        "SWITCHYARD_CONFIG",
                        format!("models[{i}].api_key_env: {var} is not set"),
                    ),
                }
            }
            if let Some(path) = &m.api_key_file {
                match std::fs::read_to_string(path) {
                    Ok(text) if !text.trim().is_empty() => {
                        model_keys.insert(m.id.clone(), Secret::new(text.trim()));
                    }
                    Ok(_) => r.problem(
                        "SWITCHYARD_CONFIG",
                        format!("models[{i}].api_key_file: `{}` is empty", path.display()),
                    ),
                    Err(e) => r.problem(
                        "SWITCHYARD_CONFIG",
                        format!(
                            "models[{i}].api_key_file: cannot read `{}`: {e}",
                            path.display()
                        ),
                    ),
                }
            }
        }
        let redis_default = if redis.is_some() { "redis" } else { "local" };
        let backend = match r
            .string("RATE_LIMIT_BACKEND")
            .as_deref()
            .unwrap_or(redis_default)
        {
            "local" => LimitBackend::Local,
            "redis" => {
                if redis.is_none() {
                    r.problem("RATE_LIMIT_BACKEND", "is redis but REDIS_URL is not set");
                }
                LimitBackend::Redis
            }
            other => {
                r.problem(
                    "RATE_LIMIT_BACKEND",
                    format!("`{other}` is not valid: expected local or redis"),
                );
                LimitBackend::Local
            }
        };
        let redis_failure = match r
            .string("RATE_LIMIT_REDIS_FAILURE")
            .as_deref()
            .unwrap_or("fallback")
        {
            "fallback" => RedisFailurePolicy::Fallback,
            "refuse" => RedisFailurePolicy::Refuse,
            other => {
                r.problem(
                    "RATE_LIMIT_REDIS_FAILURE",
                    format!("`{other}` is not valid: expected fallback or refuse"),
                );
                RedisFailurePolicy::Fallback
            }
        };
        let shared_cache = match r
            .string("CACHE_BACKEND")
            .as_deref()
            .unwrap_or(redis_default)
        {
            "local" => false,
            "redis" => {
                if redis.is_none() {
                    r.problem("CACHE_BACKEND", "is redis but REDIS_URL is not set");
                }
                true
            }
            other => {
                r.problem(
                    "CACHE_BACKEND",
                    format!("`{other}` is not valid: expected local or redis"),
                );
                false
            }
        };
        let mut trusted_proxies = Vec::new();
        if let Some(list) = r.string("TRUSTED_PROXIES") {
            for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                match item.parse::<IpNet>() {
                    Ok(net) => trusted_proxies.push(net),
                    Err(e) => r.problem("TRUSTED_PROXIES", e),
                }
            }
        }
        let mut routes: BTreeMap<String, u32> = DEFAULT_ROUTE_LIMITS
            .iter()
            .map(|(route, n)| ((*route).to_owned(), *n))
            .collect();
        for (route, limit) in &file.limits.routes {
            routes.insert(route.clone(), limit.per_minute);
        }
        let limits = LimitsConfig {
            backend,
            redis_failure,
            unauthenticated_per_minute: r.ranged("UNAUTHENTICATED_RATE_LIMIT", 60, 1, 1_000_000)
                as u32,
            auth_failures_per_minute: r.ranged("AUTH_FAILURE_RATE_LIMIT", 10, 1, 1_000_000) as u32,
            trusted_proxies,
            routes,
            shared_cache,
        };

        let models_dir = r
            .string("MODELS_DIR")
            .map_or_else(|| PathBuf::from("./data/models"), PathBuf::from);
        let local_preload = r.flag("LOCAL_MODEL_PRELOAD", true);
        let tasks = TasksConfig {
            workers: r.ranged("TASK_WORKERS", 2, 0, 256) as u32,
            lease: r.seconds("TASK_LEASE_SECONDS", 30, 5, 3600),
            dir: r
                .string("TASKS_DIR")
                .map_or_else(|| PathBuf::from("./data/tasks"), PathBuf::from),
            allow_unsandboxed_bash: r.flag("ALLOW_UNSANDBOXED_BASH", false),
            default_model: r
                .string("TASK_DEFAULT_MODEL")
                .unwrap_or_else(|| "auto".into()),
            retention: Duration::from_secs(
                3600 * r.ranged("TASK_RETENTION_HOURS", 168, 0, 24 * 3650),
            ),
            agents_dir: r
                .string("AGENTS_DIR")
                .map_or_else(|| PathBuf::from("./agents"), PathBuf::from),
            skills_dir: r
                .string("SKILLS_DIR")
                .map_or_else(|| PathBuf::from("./skills"), PathBuf::from),
        };

        if environment == Environment::Production {
            if debug {
                r.problem("DEBUG", "must not be true when ENVIRONMENT=production");
            }
            match &jwt_secret {
                None => r.problem(
                    "JWT_SECRET",
                    "is required when ENVIRONMENT=production (set JWT_SECRET or JWT_SECRET_FILE)",
                ),
                Some(s) if s.expose().len() < MIN_JWT_SECRET_BYTES => r.problem(
                    "JWT_SECRET",
                    format!(
                        "must be at least {MIN_JWT_SECRET_BYTES} bytes when ENVIRONMENT=production"
                    ),
                ),
                Some(_) => {}
            }
            if kind == DatabaseKind::Sqlite && !allow_sqlite_in_production {
                r.problem(
                    "DATABASE_URL",
                    "SQLite is refused when ENVIRONMENT=production; use postgres:// or set ALLOW_SQLITE_IN_PRODUCTION=true",
                );
            }
        }

        LoadedConfig {
            config: Config {
                environment,
                log_level,
                log_format,
                debug,
                host,
                port,
                jwt_secret,
                api_rate_limit,
                api_timeout,
                database,
                redis,
                sentry_dsn,
                deployment_slot,
                shutdown_grace,
                shutdown_delay,
                max_body_bytes,
                key_cache_ttl,
                last_used_flush,
                admin_api_key,
                allow_sqlite_in_production,
                config_path,
                file,
                limits,
                model_keys,
                tasks,
                scheduler_lease: r.seconds("SCHEDULER_LEASE_SECONDS", 30, 2, 3600),
                models_dir,
                local_preload,
            },
            problems: r.problems,
        }
    }

    /// The effective settings as `(VARIABLE, value)` pairs, secrets redacted:
    /// what `switchyard config check` prints.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        fn secret(s: &Option<Secret>) -> String {
            if s.is_some() { "[redacted]" } else { "(unset)" }.to_owned()
        }
        fn secs(d: Duration) -> String {
            d.as_secs().to_string()
        }
        vec![
            ("ENVIRONMENT", self.environment.as_str().to_owned()),
            ("LOG_LEVEL", self.log_level.clone()),
            (
                "LOG_FORMAT",
                format!("{:?}", self.log_format).to_ascii_lowercase(),
            ),
            ("DEBUG", self.debug.to_string()),
            ("HOST", self.host.to_string()),
            ("PORT", self.port.to_string()),
            ("JWT_SECRET", secret(&self.jwt_secret)),
            ("API_RATE_LIMIT", self.api_rate_limit.to_string()),
            ("API_TIMEOUT", secs(self.api_timeout)),
            ("DATABASE_URL", redact_url(self.database.url.expose())),
            ("DATABASE_POOL_SIZE", self.database.pool_size.to_string()),
            ("DATABASE_ECHO", self.database.echo.to_string()),
            (
                "DATABASE_STATEMENT_CACHE_CAPACITY",
                self.database.statement_cache_capacity.to_string(),
            ),
            (
                "DATABASE_MAX_LIFETIME_SECONDS",
                secs(self.database.max_lifetime),
            ),
            (
                "DATABASE_ACQUIRE_TIMEOUT_SECONDS",
                secs(self.database.acquire_timeout),
            ),
            (
                "DATABASE_MIGRATE_ON_START",
                self.database.migrate_on_start.to_string(),
            ),
            (
                "REDIS_URL",
                self.redis
                    .as_ref()
                    .map_or_else(|| "(unset)".to_owned(), |r| redact_url(r.url.expose())),
            ),
            (
                "REDIS_PASSWORD",
                secret(&self.redis.as_ref().and_then(|r| r.password.clone())),
            ),
            ("SENTRY_DSN", secret(&self.sentry_dsn)),
            (
                "DEPLOYMENT_SLOT",
                self.deployment_slot
                    .clone()
                    .unwrap_or_else(|| "(unset)".into()),
            ),
            ("SHUTDOWN_GRACE_SECONDS", secs(self.shutdown_grace)),
            ("SHUTDOWN_DELAY_SECONDS", secs(self.shutdown_delay)),
            ("MAX_REQUEST_BODY_BYTES", self.max_body_bytes.to_string()),
            ("KEY_CACHE_TTL_SECONDS", secs(self.key_cache_ttl)),
            ("KEY_LAST_USED_FLUSH_SECONDS", secs(self.last_used_flush)),
            ("ADMIN_API_KEY", secret(&self.admin_api_key)),
            (
                "ALLOW_SQLITE_IN_PRODUCTION",
                self.allow_sqlite_in_production.to_string(),
            ),
            (
                "SWITCHYARD_CONFIG",
                self.config_path
                    .as_ref()
                    .map_or_else(|| "(unset)".into(), |p| p.display().to_string()),
            ),
            (
                "RATE_LIMIT_BACKEND",
                match self.limits.backend {
                    LimitBackend::Local => "local",
                    LimitBackend::Redis => "redis",
                }
                .to_owned(),
            ),
            (
                "RATE_LIMIT_REDIS_FAILURE",
                match self.limits.redis_failure {
                    RedisFailurePolicy::Fallback => "fallback",
                    RedisFailurePolicy::Refuse => "refuse",
                }
                .to_owned(),
            ),
            (
                "CACHE_BACKEND",
                if self.limits.shared_cache {
                    "redis"
                } else {
                    "local"
                }
                .to_owned(),
            ),
            (
                "UNAUTHENTICATED_RATE_LIMIT",
                self.limits.unauthenticated_per_minute.to_string(),
            ),
            (
                "AUTH_FAILURE_RATE_LIMIT",
                self.limits.auth_failures_per_minute.to_string(),
            ),
            (
                "TRUSTED_PROXIES",
                self.limits
                    .trusted_proxies
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "route limits",
                self.limits
                    .routes
                    .iter()
                    .map(|(r, n)| format!("{r}={n}/min"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("TASK_WORKERS", self.tasks.workers.to_string()),
            ("TASK_LEASE_SECONDS", secs(self.tasks.lease)),
            ("SCHEDULER_LEASE_SECONDS", secs(self.scheduler_lease)),
            ("TASKS_DIR", self.tasks.dir.display().to_string()),
            (
                "ALLOW_UNSANDBOXED_BASH",
                self.tasks.allow_unsandboxed_bash.to_string(),
            ),
            ("TASK_DEFAULT_MODEL", self.tasks.default_model.clone()),
            (
                "TASK_RETENTION_HOURS",
                (self.tasks.retention.as_secs() / 3600).to_string(),
            ),
            ("AGENTS_DIR", self.tasks.agents_dir.display().to_string()),
            ("SKILLS_DIR", self.tasks.skills_dir.display().to_string()),
            ("MODELS_DIR", self.models_dir.display().to_string()),
            ("LOCAL_MODEL_PRELOAD", self.local_preload.to_string()),
            ("models", self.file.models.len().to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> LoadedConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&move |name| map.get(name).cloned())
    }

    #[test]
    fn without_an_upstream_key_auto_routes_to_the_local_model() {
        let c = load(&[]).config;
        assert_eq!(c.file.models[0].backend, crate::catalog::BackendKind::Local);
        assert_eq!(c.file.routing.targets(), ["local"; 4]);
        assert_eq!(c.models_dir, PathBuf::from("./data/models"));
        assert!(c.local_preload);
        assert!(c.model_keys.is_empty());

        let c = load(&[
            ("ANTHROPIC_API_KEY", "sk-ant-x"),
            ("LOCAL_MODEL_PRELOAD", "false"),
        ])
        .config;
        assert_eq!(c.file.routing, crate::routing::RoutingConfig::default());
        assert!(!c.local_preload);
        // The key goes to the Anthropic models only.
        assert_eq!(c.model_keys.len(), 3);
        assert!(!c.model_keys.contains_key(crate::catalog::LOCAL_MODEL_ID));
    }

    fn variables(l: &LoadedConfig) -> Vec<&str> {
        l.problems.iter().map(|p| p.variable.as_str()).collect()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let l = load(&[]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let c = l.config;
        assert_eq!(c.environment, Environment::Development);
        assert_eq!(c.port, 8000);
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!(c.api_rate_limit, 100);
        assert_eq!(c.api_timeout, Duration::from_secs(300));
        assert_eq!(c.database.pool_size, 20);
        assert_eq!(c.database.kind, DatabaseKind::Sqlite);
        assert_eq!(c.database.url.expose(), DEFAULT_DATABASE_URL);
        assert!(c.redis.is_none());
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_variable() {
        let l = load(&[
            ("PORT", "eighty"),
            ("API_TIMEOUT", "0"),
            ("DATABASE_POOL_SIZE", "-1"),
            ("DEBUG", "maybe"),
            ("DATABASE_URL", "mysql://x"),
            ("LOG_LEVEL", "loud"),
            ("HOST", "example.com"),
        ]);
        assert_eq!(
            variables(&l),
            [
                "LOG_LEVEL",
                "DEBUG",
                "HOST",
                "PORT",
                "API_TIMEOUT",
                "DATABASE_URL",
                "DATABASE_POOL_SIZE"
            ]
        );
        let text = ConfigErrors(l.problems).to_string();
        assert!(text.contains("PORT: `eighty` is not valid"), "{text}");
        assert!(text.contains("7 problem(s)"), "{text}");
    }

    #[test]
    fn production_refuses_debug_weak_jwt_and_sqlite() {
        let l = load(&[("ENVIRONMENT", "production"), ("DEBUG", "true")]);
        assert_eq!(variables(&l), ["DEBUG", "JWT_SECRET", "DATABASE_URL"]);

        let l = load(&[
            ("ENVIRONMENT", "production"),
            ("JWT_SECRET", "short"),
            ("DATABASE_URL", "postgres://u@h/db"),
        ]);
        assert_eq!(variables(&l), ["JWT_SECRET"]);

        let l = load(&[
            ("ENVIRONMENT", "production"),
            ("JWT_SECRET", &"x".repeat(32)),
            ("ALLOW_SQLITE_IN_PRODUCTION", "true"),
        ]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile_dir();
        let path = dir.join("jwt");
        std::fs::write(&path, "a-very-long-secret-value-from-a-file-0123\n").unwrap();
        let path_s = path.display().to_string();
        let l = load(&[
            ("JWT_SECRET_FILE", &path_s),
            ("DATABASE_URL", "postgres://app:pw-123@db/sy"),
        ]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let c = &l.config;
        assert_eq!(
            c.jwt_secret.as_ref().map(Secret::expose),
            Some("a-very-long-secret-value-from-a-file-0123")
        );
        let shown = format!("{:?} {:?}", c.describe(), c);
        assert!(!shown.contains("a-very-long-secret"), "{shown}");
        assert!(!shown.contains("pw-123"), "{shown}");

        let l = load(&[("JWT_SECRET", "x"), ("JWT_SECRET_FILE", &path_s)]);
        assert_eq!(variables(&l), ["JWT_SECRET"]);
        let l = load(&[("REDIS_PASSWORD_FILE", "/nonexistent/file")]);
        assert_eq!(variables(&l), ["REDIS_PASSWORD_FILE"]);
        std::fs::remove_dir_all(dir).ok();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sy-config-{}", crate::keys::new_id("t")));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_toml_file_is_validated() {
        let dir = tempfile_dir();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "[[models]]\nid = \"m1\"\nbase_url = \"http://127.0.0.1:1/v1\"\naliases = [\"fast\"]\n\n[limits.routes]\n\"POST /v1/task\" = { per_minute = 10 }\n",
        )
        .unwrap();
        let l = load(&[("SWITCHYARD_CONFIG", &good.display().to_string())]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.config.file.models[0].id, "m1");
        assert_eq!(l.config.file.limits.routes["POST /v1/task"].per_minute, 10);

        let bad = dir.join("bad.toml");
        std::fs::write(
            &bad,
            "[[models]]\nid = \"m1\"\nbase_url = \"http://h/v1\"\ncolour = \"red\"\n",
        )
        .unwrap();
        let l = load(&[("SWITCHYARD_CONFIG", &bad.display().to_string())]);
        assert_eq!(variables(&l), ["SWITCHYARD_CONFIG"]);
        assert!(l.problems[0].message.contains("colour"), "{:?}", l.problems);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn limits_follow_redis_and_are_validated() {
        let c = load(&[]).config;
        assert_eq!(c.limits.backend, LimitBackend::Local);
        assert!(!c.limits.shared_cache);
        assert_eq!(c.limits.routes["POST /v1/task"], 10);
        let c = load(&[("REDIS_URL", "redis://127.0.0.1:6379")]).config;
        assert_eq!(c.limits.backend, LimitBackend::Redis);
        assert!(c.limits.shared_cache);
        let l = load(&[
            ("RATE_LIMIT_BACKEND", "redis"),
            ("RATE_LIMIT_REDIS_FAILURE", "panic"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, nonsense, ::1/129"),
        ]);
        assert_eq!(
            variables(&l),
            [
                "RATE_LIMIT_BACKEND",
                "RATE_LIMIT_REDIS_FAILURE",
                "TRUSTED_PROXIES",
                "TRUSTED_PROXIES"
            ]
        );
    }

    #[test]
    fn ip_networks_match_addresses() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("1.2.3.4/33".parse::<IpNet>().is_err());
    }

    #[test]
    fn log_levels_accept_directives() {
        assert!(valid_log_level("info"));
        assert!(valid_log_level("info,sqlx=warn"));
        assert!(!valid_log_level("verbose"));
        assert!(!valid_log_level("=info"));
    }
}

#[cfg(test)]
mod example_file {
    #[test]
    fn the_shipped_example_configuration_is_valid() {
        let text = include_str!("../../../config/switchyard.example.toml");
        let file = super::FileConfig::parse(text).unwrap();
        assert_eq!(file.models.len(), 2);
        assert_eq!(file.limits.routes["POST /v1/task"].per_minute, 10);
    }
}
