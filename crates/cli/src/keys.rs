//! `switchyard keys …`: API keys managed directly in the database (the
//! server need not run), through the same key service as the admin API.

use crate::open_store;
use clap::{Args, Subcommand};
use std::process::ExitCode;
use switchyard_core::keys::{ApiKey, NewKeySpec, RateLimit, Scope, Scopes};
use switchyard_core::Config;
use switchyard_server::audit::Actor;
use switchyard_server::keys::Keys;

#[derive(Subcommand)]
pub enum KeysCommand {
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
pub struct CreateArgs {
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

pub async fn keys_command(config: &Config, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
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
