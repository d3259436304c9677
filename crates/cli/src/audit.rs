//! `switchyard audit …`: exporting the audit log and verifying its hash
//! chain, directly on the database (the server need not run), through the
//! same reading code as `GET /v1/admin/audit`.

use crate::open_store;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard_core::Config;
use switchyard_server::audit_trail::{self, ExportFormat, FilterInput};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write the audit records since a time, oldest first, as JSON lines
    /// (the API's record shape) or CSV with a header row.
    Export(ExportArgs),
    /// Walk the hash chain from the oldest kept record to the newest and
    /// name the first broken link. Exit 1 when one is broken.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct ExportArgs {
    /// Records at or after this time: RFC 3339, YYYY-MM-DD (UTC) or an age
    /// such as 7d, 12h, 30m.
    #[arg(long)]
    since: String,
    /// Records before this time, in the same forms.
    #[arg(long)]
    until: Option<String>,
    /// Only this event, e.g. key.created.
    #[arg(long)]
    event: Option<String>,
    /// Only actions by this key id or on it.
    #[arg(long)]
    key: Option<String>,
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    format: FormatArg,
    /// Write to this file instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Jsonl,
    Csv,
}

pub async fn audit_command(config: &Config, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Export(args) => export(config, &args).await,
        AuditCommand::Verify { json } => verify(config, json).await,
    }
}

async fn export(config: &Config, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let filter = FilterInput {
        from: Some(&args.since),
        to: args.until.as_deref(),
        event: args.event.as_deref(),
        key_id: args.key.as_deref(),
        project: args.project.as_deref(),
    }
    .parse(switchyard_core::now())
    .map_err(|e| {
        let flag = match e.field {
            "from" => "--since",
            "to" => "--until",
            "key_id" => "--key",
            "event" => "--event",
            _ => "--project",
        };
        anyhow::anyhow!("{flag}: {}", e.message)
    })?;
    let format = match args.format {
        FormatArg::Jsonl => ExportFormat::Jsonl,
        FormatArg::Csv => ExportFormat::Csv,
    };
    let store = open_store(config).await?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let written = audit_trail::export(&store, &filter, format, &mut *out).await;
    drop(out);
    store.close().await;
    let written = written?;
    if let Some(path) = &args.output {
        eprintln!("wrote {written} audit record(s) to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let report = store.verify_audit_chain(audit_trail::EXPORT_PAGE).await;
    store.close().await;
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match (report.first_id, report.last_id) {
            (Some(first), Some(last)) => println!(
                "audit chain: {} record(s) verified, #{first} to #{last}",
                report.checked
            ),
            _ => println!("audit chain: no chained records"),
        }
        if report.unchained > 0 {
            println!(
                "{} older record(s) were written before the chain existed and are not covered",
                report.unchained
            );
        }
        if let Some(a) = &report.anchor {
            println!(
                "retention has deleted {} record(s), through #{} ({}); the chain continues from its hash",
                a.deleted_total,
                a.record_id,
                a.record_timestamp.to_rfc3339()
            );
        }
        if let Some(head) = &report.head {
            println!("head: {head}");
        }
        if let Some(b) = &report.broken {
            println!(
                "BROKEN at record #{} ({} {}): {}",
                b.link.id,
                b.timestamp.to_rfc3339(),
                b.event,
                b.reason
            );
            if let (Some(expected), found) = (&b.link.expected, &b.link.found) {
                println!(
                    "  expected {expected}, found {}",
                    found.as_deref().unwrap_or("nothing")
                );
            }
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
