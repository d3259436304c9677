//! `switchyard backup …`: take, list, prune, restore and restore-test
//! backups of the database, to a directory or S3-compatible storage, with
//! the same code as the service's scheduled backup jobs. Progress goes to
//! standard error; the result to standard output (`--json` for machines).

use crate::open_store;
use clap::Subcommand;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_backup::{Backups, Progress};
use switchyard_core::backup::{BackupId, Destination, Manifest};
use switchyard_core::Config;
use switchyard_store::Store;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Take a consistent backup of the database while the service runs
    /// (SQLite: VACUUM INTO; PostgreSQL: pg_dump of an exported snapshot),
    /// with a manifest of row counts and checksums, and write it to the
    /// destination.
    Create {
        /// A directory or s3://bucket/prefix (default: BACKUP_DESTINATION).
        #[arg(long)]
        to: Option<Destination>,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the backups at the destination, newest first.
    List {
        /// A directory or s3://bucket/prefix (default: BACKUP_DESTINATION).
        #[arg(long)]
        from: Option<Destination>,
        #[arg(long)]
        json: bool,
    },
    /// Delete backups older than BACKUP_RETENTION_DAYS, always keeping the
    /// newest BACKUP_KEEP_MIN.
    Prune {
        #[arg(long)]
        from: Option<Destination>,
        /// Say what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into an empty database (refused when it holds
    /// tables, unless --force), then apply this version's migrations.
    Restore {
        /// The backup's id (see `backup list`).
        id: BackupId,
        /// The database to restore into: sqlite://PATH or postgres://…, of
        /// the backup's engine.
        #[arg(long)]
        target: String,
        #[arg(long)]
        from: Option<Destination>,
        /// Replace what the target database holds.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// The recovery test: restore a backup (default: the newest) into a
    /// scratch database, compare every table's rows and checksum with the
    /// manifest, look every key up as the service does, and drop the scratch
    /// database. Exit 1 on any difference, naming it.
    Verify {
        id: Option<BackupId>,
        #[arg(long)]
        from: Option<Destination>,
        #[arg(long)]
        json: bool,
    },
}

/// Progress on standard error: each step on its own line with the time
/// since the start; transfers as a line that updates in place on a
/// terminal.
struct Terminal {
    started: Instant,
    tty: bool,
    last: Mutex<(Instant, bool)>,
}

impl Terminal {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new((Instant::now(), false)),
        }
    }

    fn end_line(&self) {
        if let Ok(mut last) = self.last.lock() {
            if last.1 {
                eprintln!();
                last.1 = false;
            }
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Progress for Terminal {
    fn phase(&self, what: &str) {
        self.end_line();
        eprintln!("[{:>6.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn bytes(&self, what: &str, done: u64, total: Option<u64>) {
        if !self.tty {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let finished = total == Some(done);
        if !finished && last.0.elapsed() < Duration::from_millis(100) {
            return;
        }
        let line = match total {
            Some(t) if t > 0 => format!(
                "         {what} {} of {} ({}%)",
                mib(done),
                mib(t),
                done * 100 / t
            ),
            _ => format!("         {what} {}", mib(done)),
        };
        let mut err = std::io::stderr();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
        *last = (Instant::now(), true);
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn summary(m: &Manifest) -> String {
    let rows: u64 = m.tables.iter().map(|t| t.rows).sum();
    format!(
        "{}  {}  {}  schema {}  {} tables, {} rows  {}",
        m.id,
        m.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        m.engine,
        m.schema_version,
        m.tables.len(),
        rows,
        mib(m.size_bytes)
    )
}

pub async fn backup_command(config: &Config, cmd: BackupCommand) -> anyhow::Result<ExitCode> {
    // Taking and restore-testing a backup record their runs in the live
    // database; the other verbs do not touch it (a restore may run while
    // it is gone).
    let store = match &cmd {
        BackupCommand::Create { .. } | BackupCommand::Verify { .. } => open_store(config).await?,
        _ => Store::connect_lazy(&config.database)?,
    };
    let backups = Backups::new(store.clone(), config);
    let progress = Terminal::new();
    let outcome = run(&backups, cmd, &progress).await;
    progress.end_line();
    store.close().await;
    outcome
}

async fn run(
    backups: &Backups,
    cmd: BackupCommand,
    progress: &Terminal,
) -> anyhow::Result<ExitCode> {
    match cmd {
        BackupCommand::Create { to, json } => {
            let target = backups.target(to.as_ref())?;
            let manifest = backups.create(&target, progress).await?;
            progress.end_line();
            if json {
                print_json(&manifest)?;
            } else {
                println!("backed up to {}: {}", target.shown(), summary(&manifest));
                println!(
                    "archive {} ({} bytes, sha256 {}) in {:.1}s",
                    manifest.archive,
                    manifest.size_bytes,
                    manifest.sha256,
                    manifest.duration_ms as f64 / 1000.0
                );
            }
        }
        BackupCommand::List { from, json } => {
            let target = backups.source(from.as_ref())?;
            let all = backups.list(&target).await?;
            if json {
                print_json(&all)?;
            } else if all.is_empty() {
                println!("no backups in {}", target.shown());
            } else {
                for m in &all {
                    println!("{}", summary(m));
                }
                println!("{} backups in {}", all.len(), target.shown());
            }
        }
        BackupCommand::Prune {
            from,
            dry_run,
            json,
        } => {
            let target = backups.source(from.as_ref())?;
            let doomed = backups
                .prune(&target, switchyard_core::now(), dry_run)
                .await?;
            if json {
                print_json(&serde_json::json!({"dry_run": dry_run, "deleted": doomed}))?;
            } else {
                let verb = if dry_run { "would delete" } else { "deleted" };
                for id in &doomed {
                    println!("{verb} {id}");
                }
                println!(
                    "{verb} {} backups (retention {} days, keeping at least {})",
                    doomed.len(),
                    backups.config.retention_days,
                    backups.config.keep_min
                );
            }
        }
        BackupCommand::Restore {
            id,
            target: url,
            from,
            force,
            json,
        } => {
            let target = backups.source(from.as_ref())?;
            let report = backups.restore(&target, &id, &url, force, progress).await?;
            progress.end_line();
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "restored {}: {} tables, {} rows; {} migrations applied since; {:.1}s",
                    report.id,
                    report.tables,
                    report.rows,
                    report.migrations_applied,
                    report.duration_ms as f64 / 1000.0
                );
            }
        }
        BackupCommand::Verify { id, from, json } => {
            let target = backups.source(from.as_ref())?;
            let report = backups.verify(&target, id.as_ref(), progress).await?;
            progress.end_line();
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "verified {}: {} tables and {} rows match the manifest; {} keys found by \
                     their hash; {} migrations applied cleanly; {:.1}s",
                    report.id,
                    report.tables,
                    report.rows,
                    report.keys_looked_up,
                    report.migrations_applied,
                    report.duration_ms as f64 / 1000.0
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A backup or restore test older than this is reported (the alerts'
/// thresholds: BackupStale, RestoreUntested).
const BACKUP_STALE: chrono::Duration = chrono::Duration::hours(26);
const RESTORE_UNTESTED: chrono::Duration = chrono::Duration::days(35);

/// `preflight`'s backup lines: the destination reachable, the PostgreSQL
/// client tools fit the server, and the last good backup and restore test
/// recent enough.
pub async fn preflight(store: &Store, config: &Config) -> Vec<crate::report::Check> {
    use crate::report::Check;
    let mut checks = Vec::new();
    let Some(destination) = &config.backup.destination else {
        checks.push(Check::warn(
            "backups",
            "BACKUP_DESTINATION is unset: nothing backs the database up (docs/operations.md, Backups)",
        ));
        return checks;
    };
    let listed = async {
        let target = switchyard_backup::destination::Target::open(destination, &config.backup.s3)?;
        Backups::new(store.clone(), config).list(&target).await
    };
    checks.push(match listed.await {
        Ok(all) => Check::pass(
            "backup destination",
            format!("{destination} reachable, {} backup(s)", all.len()),
        ),
        Err(e) => Check::fail("backup destination", format!("{destination}: {e}")),
    });
    if store.kind() == switchyard_core::config::DatabaseKind::Postgres {
        let bin = config.backup.pg_bin_dir.as_deref();
        let fits = async {
            let tool = switchyard_backup::pg::find("pg_dump", bin).await?;
            let server = store.pg_server_major().await?;
            switchyard_backup::pg::require_at_least(&tool, server, "the server")?;
            Ok::<_, switchyard_backup::BackupError>(format!("{} for server {server}", tool.version))
        };
        checks.push(match fits.await {
            Ok(detail) => Check::pass("pg_dump", detail),
            Err(e) => Check::fail("pg_dump", e.to_string()),
        });
    }
    let now = switchyard_core::now();
    let age = |run: &switchyard_store::BackupRun| {
        let hours = (now - run.finished_at).num_minutes() as f64 / 60.0;
        format!(
            "{hours:.1} h ago ({})",
            run.backup_id.as_deref().unwrap_or("?")
        )
    };
    checks.push(match store.last_backup_run("backup", true).await {
        Ok(None) => Check::warn(
            "last backup",
            "none recorded: run `switchyard backup create`",
        ),
        Ok(Some(r)) if now - r.finished_at > BACKUP_STALE => Check::warn(
            "last backup",
            format!("{}: older than 26 h, BackupStale fires", age(&r)),
        ),
        Ok(Some(r)) => Check::pass("last backup", age(&r)),
        Err(e) => Check::fail("last backup", e.to_string()),
    });
    checks.push(match store.last_backup_run("verify", true).await {
        Ok(None) => Check::warn(
            "restore test",
            "no backup was ever restore-tested: run `switchyard backup verify`",
        ),
        Ok(Some(r)) if now - r.finished_at > RESTORE_UNTESTED => Check::warn(
            "restore test",
            format!("{}: older than 35 days, RestoreUntested fires", age(&r)),
        ),
        Ok(Some(r)) => Check::pass("restore test", age(&r)),
        Err(e) => Check::fail("restore test", e.to_string()),
    });
    checks
}
