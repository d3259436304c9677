//! `switchyard keys …`: API keys managed directly in the database (the
//! server need not run), through the same key service as the admin API.

use crate::open_store;
use clap::{Args, Subcommand};
use std::process::ExitCode;
use switchyard_core::keys::{ApiKey, NewKeySpec, RateLimit, Scope, Scopes};
use switchyard_core::rotation::{RotationPolicy, MAX_GRACE_DAYS};
use switchyard_core::Config;
use switchyard_server::audit::Actor;
use switchyard_server::keys::Keys;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret once.
    Create(CreateArgs),
    /// List keys (secrets are never shown; only their prefixes), with the
    /// date each is due for rotation.
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
        /// Only the keys due for rotation (older than KEY_ROTATION_DAYS and
        /// not rotated), oldest due first.
        #[arg(long, conflicts_with = "all")]
        due: bool,
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
    /// Rotate a key: issue a successor with the same name, owner, project,
    /// scopes, limits and task profile (its secret printed once), and let the
    /// old key work for the grace period. Calls with the old key meanwhile
    /// carry an `x-switchyard-key-grace-ends` header.
    Rotate {
        id: String,
        /// How many days the old key keeps working (0 ends it at once;
        /// default KEY_ROTATION_GRACE_DAYS, 7).
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_GRACE_DAYS)))]
        grace_days: Option<u32>,
        /// Print JSON (including the new secret) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set a key's expiry: an RFC 3339 time, a number of days from now
    /// (e.g. 30d), or `never`.
    SetExpiry {
        id: String,
        /// 2027-01-31T00:00:00Z, 30d, or never.
        when: String,
    },
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

fn print_key_table(keys: &[ApiKey], policy: &RotationPolicy) {
    println!(
        "{:<28} {:<13} {:<20} {:<16} {:<11} {:<8} {:<26} ROTATION DUE",
        "ID", "PREFIX", "NAME", "PROJECT", "SCOPES", "STATE", "EXPIRES"
    );
    let now = chrono::Utc::now();
    for k in keys {
        let state = match policy.check(k, now) {
            Ok(()) if k.successor_id.is_some() => "grace",
            Ok(()) => "active",
            Err(switchyard_core::keys::KeyUnusable::Revoked) => "revoked",
            Err(switchyard_core::keys::KeyUnusable::Expired) => "expired",
        };
        let due = match policy.due_at(k) {
            Some(at) if at <= now => format!("{} (due)", at.to_rfc3339()),
            Some(at) => at.to_rfc3339(),
            None => "-".to_owned(),
        };
        println!(
            "{:<28} {:<13} {:<20} {:<16} {:<11} {:<8} {:<26} {}",
            k.id,
            k.prefix,
            k.name,
            k.project,
            k.scopes.to_db(),
            state,
            policy
                .expiry(k)
                .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339()),
            due
        );
    }
}

pub async fn keys_command(config: &Config, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let keys = Keys::new(store.clone(), None);
    let actor = Actor::cli();
    let policy = &config.keys.rotation;
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
        KeysCommand::List { all, due, json } => {
            let list = if due {
                let due = keys.due(policy, switchyard_core::now()).await?;
                due.into_iter().map(|(k, _)| k).collect()
            } else {
                keys.list(all).await?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_key_table(&list, policy);
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Show { id, json } => match keys.get(&id).await? {
            Some(k) if json => {
                println!("{}", serde_json::to_string_pretty(&k)?);
                ExitCode::SUCCESS
            }
            Some(k) => {
                print_key_table(std::slice::from_ref(&k), policy);
                ExitCode::SUCCESS
            }
            None => crate::report_failure(json, &format!("no key with id `{id}`"), &[]),
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
        KeysCommand::Rotate {
            id,
            grace_days,
            json,
        } => {
            let grace_days = grace_days.unwrap_or(config.keys.rotation_grace_days);
            let rotated = keys.rotate(&id, grace_days, &actor).await?;
            let (new, old) = (&rotated.successor.key, &rotated.previous);
            if json {
                let mut v = serde_json::to_value(new)?;
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("key".into(), rotated.successor.secret.expose().into());
                    obj.insert("previous".into(), serde_json::to_value(old)?);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", rotated.successor.secret.expose());
                eprintln!(
                    "rotated {} into {} ({}); the secret above is shown only once; the old key works until {}",
                    old.id,
                    new.id,
                    new.name,
                    old.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::SetExpiry { id, when } => {
            let expires_at = parse_expiry(&when, switchyard_core::now())?;
            match keys.set_expiry(&id, expires_at, &actor).await? {
                Some(k) => {
                    println!(
                        "{}: expires {}",
                        k.id,
                        k.expires_at
                            .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
                    );
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

/// `never`, `30d` (days from now, 1 to 3650) or an RFC 3339 time in the future.
fn parse_expiry(
    when: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    let when = when.trim();
    if when == "never" {
        return Ok(None);
    }
    if let Some(days) = when.strip_suffix('d') {
        let days: i64 = days
            .parse()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| anyhow::anyhow!("`{when}`: days must be from 1d to 3650d"))?;
        return Ok(Some(now + chrono::Duration::days(days)));
    }
    let at = chrono::DateTime::parse_from_rfc3339(when)
        .map_err(|e| {
            anyhow::anyhow!(
                "`{when}` is not an RFC 3339 time, a number of days (30d) or `never`: {e}"
            )
        })?
        .with_timezone(&chrono::Utc);
    if at <= now {
        anyhow::bail!("`{when}` is not in the future");
    }
    Ok(Some(at))
}

#[cfg(test)]
mod tests {
    use super::parse_expiry;

    #[test]
    fn expiry_is_never_days_or_a_future_time() {
        let now = switchyard_core::now();
        assert_eq!(parse_expiry("never", now).ok(), Some(None));
        assert_eq!(
            parse_expiry("30d", now).ok().flatten(),
            Some(now + chrono::Duration::days(30))
        );
        assert!(parse_expiry("0d", now).is_err());
        assert!(parse_expiry("2001-01-01T00:00:00Z", now).is_err());
        assert!(parse_expiry("tomorrow", now).is_err());
        assert!(parse_expiry("2999-01-01T00:00:00Z", now).is_ok_and(|t| t.is_some()));
    }
}
