//! `switchyard budgets …`: USD budgets per key or project, through the same
//! budget service (and audit records) as the admin API.

use crate::open_store;
use clap::Subcommand;
use std::process::ExitCode;
use switchyard_core::Config;
use switchyard_server::audit::Actor;

#[derive(Subcommand)]
pub enum BudgetsCommand {
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

pub async fn budgets_command(config: &Config, cmd: BudgetsCommand) -> anyhow::Result<ExitCode> {
    use switchyard_core::budget::{usd, BudgetPeriod, BudgetScope};
    use switchyard_server::budgets::{BudgetError, BudgetRequest, Budgets};
    let store = open_store(config).await?;
    let metrics =
        switchyard_server::metrics::Metrics::new(config.environment.as_str(), None, false);
    // The CLI leases nothing: it only sets, lists and deletes budgets.
    let budgets = Budgets::new(
        store.clone(),
        metrics,
        config.key_cache_ttl,
        config.limits.budget_lease,
        switchyard_server::replica::replica_id(),
    );
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
                    "ID", "SCOPE", "SUBJECT", "PERIOD", "LIMIT USD", "SPENT USD", "LEASED USD"
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
                        usd(s.leased_nano_usd)
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
