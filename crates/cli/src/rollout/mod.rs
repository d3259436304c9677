//! `switchyard rollout`: moves an nginx-fronted deployment's traffic between
//! slots. Blue/green verifies the new slot and switches everything at once;
//! canary steps the new slot's share (default 1, 5, 50, 100 %). Either way
//! the new slot's own `/metrics` are watched for a window after each change
//! and a breach of the error-ratio or p99 threshold puts all traffic back on
//! the old slot and exits non-zero naming it. `back` switches back by hand,
//! `retire` drains and stops a slot that no longer takes traffic, `status`
//! shows the shares. Every decision goes to stderr (progress), to stdout as
//! JSON lines with `--json`, and to the audit log.

mod upstream;
mod watch;

use crate::verify::{run_checks, VerifyArgs};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use switchyard_core::audit::AuditKind;
use switchyard_core::Config;
use switchyard_server::audit::Actor;
use switchyard_store::{AuditEvent, Store};
use upstream::{Shares, Slot};
use watch::{Sample, Thresholds, Window};

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// Verify the new slot, move all traffic to it, watch it for a window;
    /// on a breach move everything back and exit 1.
    BlueGreen {
        /// The slot to move traffic to.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        common: Common,
    },
    /// Verify the new slot, then give it a growing share step by step,
    /// watching it for a window after each; on a breach move everything
    /// back and exit 1.
    Canary {
        /// The slot to move traffic to.
        #[arg(long)]
        to: String,
        /// The new slot's share at each step, in percent.
        #[arg(long, value_delimiter = ',', default_value = "1,5,50,100")]
        steps: Vec<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// Put all traffic back on the slot that was live before the last change.
    Back {
        #[command(flatten)]
        common: Common,
    },
    /// Drain a slot that no longer takes traffic (wait for its requests in
    /// flight), then stop it with --stop-command.
    Retire {
        /// The slot to retire.
        slot: String,
        /// The command that stops a slot, `{slot}` replaced by its name
        /// (split on spaces, run without a shell), e.g.
        /// `systemctl stop switchyard@{slot}`.
        #[arg(long, env = "SWITCHYARD_ROLLOUT_STOP")]
        stop_command: String,
        /// How long to wait for requests in flight to finish, in seconds.
        #[arg(long, default_value_t = 60)]
        drain_timeout: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Show each slot's share now.
    Status {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Clone)]
pub struct Common {
    /// A slot and its URL as this host reaches it, `NAME=URL`; repeat for
    /// each (or SWITCHYARD_ROLLOUT_SLOTS, comma-separated).
    #[arg(
        long = "slot",
        env = "SWITCHYARD_ROLLOUT_SLOTS",
        value_delimiter = ',',
        required = true
    )]
    slots: Vec<Slot>,
    /// The nginx upstream file this command manages.
    #[arg(long, env = "SWITCHYARD_ROLLOUT_UPSTREAM_FILE")]
    upstream_file: PathBuf,
    /// Checks a rewritten configuration before the reload (split on spaces,
    /// no shell), e.g. `nginx -t`; nothing when empty.
    #[arg(long, env = "SWITCHYARD_ROLLOUT_CHECK", default_value = "")]
    check_command: String,
    /// Makes nginx load the rewritten file (split on spaces, no shell).
    #[arg(
        long,
        env = "SWITCHYARD_ROLLOUT_RELOAD",
        default_value = "nginx -s reload"
    )]
    reload_command: String,
    /// How long nginx keeps an idle connection to a slot open, in ms; keep
    /// it below the slots' SHUTDOWN_DELAY_SECONDS (see docs/deployment.md).
    #[arg(long, default_value_t = 1000)]
    keepalive_timeout_ms: u64,
    /// Seconds to watch the new slot after each change.
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Seconds between two looks at the new slot's metrics.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// The most 5xx answers the new slot may give, as a share of its API
    /// requests (0.01 = 1 %).
    #[arg(long, default_value_t = 0.01)]
    max_error_ratio: f64,
    /// The highest p99 latency the new slot may show, in milliseconds.
    #[arg(long, default_value_t = 5000.0)]
    max_p99_ms: f64,
    /// Fewer API requests than this in a window are not judged.
    #[arg(long, default_value_t = 1)]
    min_requests: u64,
    /// An API key for verifying the new slot's authenticated routes (or
    /// SWITCHYARD_VERIFY_KEY).
    #[arg(long, env = "SWITCHYARD_VERIFY_KEY", hide_env_values = true)]
    verify_key: Option<String>,
    /// Decisions as JSON lines on stdout.
    #[arg(long)]
    json: bool,
}

fn argv(command: &str) -> Vec<String> {
    command.split_whitespace().map(str::to_owned).collect()
}

/// What a rollout does, told as it goes.
struct Run {
    common: Common,
    store: Option<Store>,
    strategy: &'static str,
}

impl Run {
    fn slot(&self, name: &str) -> anyhow::Result<&Slot> {
        self.common
            .slots
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                anyhow::anyhow!("no slot named `{name}`: give it with --slot {name}=URL")
            })
    }

    /// Progress for people on stderr, the decision as JSON on stdout, and
    /// a log line; an audit record when `audit` names one.
    async fn tell(&self, audit: Option<AuditKind>, message: &str, details: serde_json::Value) {
        eprintln!("[{}] {message}", self.strategy);
        tracing::info!(strategy = self.strategy, %details, "{message}");
        let mut record = serde_json::json!({
            "at": switchyard_core::now(),
            "strategy": self.strategy,
            "message": message,
        });
        if let (Some(obj), Some(extra)) = (record.as_object_mut(), details.as_object()) {
            obj.extend(extra.clone());
        }
        if self.common.json {
            println!("{record}");
        }
        if let (Some(kind), Some(store)) = (audit, &self.store) {
            let entry = Actor::cli().stamp(AuditEvent {
                details: record,
                ..AuditEvent::new(kind)
            });
            switchyard_server::audit::record(store, &entry, switchyard_core::now()).await;
        }
    }

    /// Writes the shares, checks and reloads; on a failed check or reload
    /// the previous file is put back.
    async fn apply(&self, shares: &Shares) -> anyhow::Result<()> {
        let path = &self.common.upstream_file;
        let before = std::fs::read_to_string(path).ok();
        let text = upstream::render(&self.common.slots, shares, self.common.keepalive_timeout_ms);
        upstream::write_atomic(path, &text)?;
        let applied = upstream::run_command(&argv(&self.common.check_command), "the config check")
            .and_then(|()| upstream::run_command(&argv(&self.common.reload_command), "the reload"));
        if let Err(e) = applied {
            match before {
                Some(text) => upstream::write_atomic(path, &text)?,
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    async fn scrape(&self, slot: &Slot) -> anyhow::Result<Sample> {
        let text = reqwest::Client::new()
            .get(format!("{}/metrics", slot.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| anyhow::anyhow!("cannot read {}'s /metrics: {e}", slot.name))?
            .text()
            .await?;
        Ok(watch::parse(&text))
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_error_ratio: self.common.max_error_ratio,
            max_p99_ms: self.common.max_p99_ms,
            min_requests: self.common.min_requests,
        }
    }

    /// Watches `slot` for one window from `before`; the breach, if any, as
    /// soon as it shows.
    async fn watch(
        &self,
        slot: &Slot,
        before: &Sample,
    ) -> anyhow::Result<(Window, Option<String>)> {
        let window = Duration::from_secs(self.common.window);
        let every = Duration::from_secs_f64(self.common.interval.clamp(0.1, 60.0));
        let started = Instant::now();
        let thresholds = self.thresholds();
        loop {
            let left = window.saturating_sub(started.elapsed());
            tokio::time::sleep(every.min(left)).await;
            let seen = Window::between(before, &self.scrape(slot).await?);
            if let Some(breach) = thresholds.breach(&seen) {
                return Ok((seen, Some(breach)));
            }
            if started.elapsed() >= window {
                return Ok((seen, None));
            }
        }
    }

    /// Verifies `slot` as `switchyard verify` would; the failures, if any.
    async fn verify(&self, slot: &Slot) -> Vec<String> {
        let args = VerifyArgs {
            url: slot.url.clone(),
            key: self.common.verify_key.clone(),
            chat_model: None,
            timeout: 10,
            json: false,
        };
        run_checks(&args)
            .await
            .into_iter()
            .filter(|c| c.verdict == crate::report::Verdict::Fail)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }

    /// Moves traffic to `to` in `steps`, watching after each. Exit 1 when
    /// the new slot fails verification or breaches a threshold.
    async fn promote(&self, to: &str, steps: &[u32]) -> anyhow::Result<ExitCode> {
        let target = self.slot(to)?.clone();
        let current = upstream::read(&self.common.upstream_file)?;
        let from = match current.as_ref().and_then(Shares::live) {
            Some(live) if live != to => live.to_owned(),
            Some(_) => anyhow::bail!("`{to}` already takes the traffic: nothing to roll out"),
            None => self
                .common
                .slots
                .iter()
                .map(|s| s.name.clone())
                .find(|s| s != to)
                .ok_or_else(|| anyhow::anyhow!("give the live slot too: --slot NAME=URL"))?,
        };
        self.slot(&from)?;
        self.tell(
            Some(AuditKind::RolloutStarted),
            &format!("from {from} to {to}, steps {steps:?} %"),
            serde_json::json!({"event": "started", "from": from, "to": to, "steps": steps,
                               "thresholds": self.thresholds()}),
        )
        .await;
        let failures = self.verify(&target).await;
        if !failures.is_empty() {
            self.tell(
                Some(AuditKind::RolloutRolledBack),
                &format!(
                    "{to} failed verification; no traffic moved: {}",
                    failures.join("; ")
                ),
                serde_json::json!({"event": "verify_failed", "slot": to, "failures": failures}),
            )
            .await;
            return Ok(ExitCode::FAILURE);
        }
        for (i, &percent) in steps.iter().enumerate() {
            let shares = Shares::split(&from, to, percent);
            let before = self.scrape(&target).await?;
            self.apply(&shares).await?;
            self.tell(
                Some(AuditKind::RolloutStep),
                &format!(
                    "step {}/{}: {}; watching {} for {} s",
                    i + 1,
                    steps.len(),
                    shares.summary(),
                    to,
                    self.common.window
                ),
                serde_json::json!({"event": "step", "step": i + 1, "shares": shares.percent}),
            )
            .await;
            let (seen, breach) = self.watch(&target, &before).await?;
            if let Some(breach) = breach {
                let back = Shares::all_on(&from, &[&target], Some(to));
                self.apply(&back).await?;
                self.tell(
                    Some(AuditKind::RolloutRolledBack),
                    &format!("rolled back to {from}: {to}'s {breach}"),
                    serde_json::json!({"event": "rolled_back", "reason": breach, "window": seen,
                                       "shares": back.percent}),
                )
                .await;
                return Ok(ExitCode::FAILURE);
            }
            self.tell(
                None,
                &format!(
                    "step {} healthy: {} requests, {:.2} % errors, p99 {}",
                    i + 1,
                    seen.requests,
                    seen.error_ratio * 100.0,
                    seen.p99_ms
                        .map_or_else(|| "-".to_owned(), |p| format!("{p:.0} ms"))
                ),
                serde_json::json!({"event": "step_healthy", "step": i + 1, "window": seen}),
            )
            .await;
        }
        let done = Shares::all_on(to, &[self.slot(&from)?], Some(&from));
        self.apply(&done).await?;
        self.tell(
            Some(AuditKind::RolloutCompleted),
            &format!(
                "{to} takes all traffic; `switchyard rollout retire {from}` once you are sure"
            ),
            serde_json::json!({"event": "completed", "shares": done.percent}),
        )
        .await;
        Ok(ExitCode::SUCCESS)
    }

    async fn back(&self) -> anyhow::Result<ExitCode> {
        let current = upstream::read(&self.common.upstream_file)?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} does not exist: nothing to switch back",
                self.common.upstream_file.display()
            )
        })?;
        let previous = current
            .previous
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the upstream file records no previous slot"))?;
        let live = current.live().unwrap_or_default().to_owned();
        let others: Vec<&Slot> = self
            .common
            .slots
            .iter()
            .filter(|s| s.name != previous)
            .collect();
        let back = Shares::all_on(&previous, &others, Some(&live));
        self.slot(&previous)?;
        self.apply(&back).await?;
        self.tell(
            Some(AuditKind::RolloutRolledBack),
            &format!("switched back to {previous} by hand"),
            serde_json::json!({"event": "rolled_back", "reason": "manual", "shares": back.percent}),
        )
        .await;
        Ok(ExitCode::SUCCESS)
    }

    async fn in_flight(&self, slot: &Slot) -> Option<f64> {
        let text = reqwest::Client::new()
            .get(format!("{}/metrics", slot.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("http_requests_in_flight "))
            .and_then(|v| v.trim().parse().ok())
    }

    async fn retire(&self, name: &str, stop: &str, drain: Duration) -> anyhow::Result<ExitCode> {
        let slot = self.slot(name)?.clone();
        if let Some(current) = upstream::read(&self.common.upstream_file)? {
            if current.of(name) > 0 {
                anyhow::bail!(
                    "`{name}` still takes {} % of the traffic: move it off first",
                    current.of(name)
                );
            }
        }
        let started = Instant::now();
        // The scrape that asks counts itself.
        while let Some(n) = self.in_flight(&slot).await {
            if n <= 1.0 {
                break;
            }
            if started.elapsed() >= drain {
                self.tell(None, &format!("{name} still has {n} requests in flight after {} s; stopping it anyway (its grace period lets them finish)", drain.as_secs()), serde_json::json!({"event": "drain_timeout", "in_flight": n})).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let command: Vec<String> = argv(&stop.replace("{slot}", name));
        upstream::run_command(&command, "the stop command")?;
        self.tell(
            Some(AuditKind::RolloutRetired),
            &format!("{name} drained and stopped"),
            serde_json::json!({"event": "retired", "slot": name}),
        )
        .await;
        Ok(ExitCode::SUCCESS)
    }

    fn status(&self) -> anyhow::Result<ExitCode> {
        match upstream::read(&self.common.upstream_file)? {
            None => println!("{} does not exist yet", self.common.upstream_file.display()),
            Some(s) if self.common.json => println!("{}", serde_json::to_string(&s)?),
            Some(s) => println!(
                "{}{}",
                s.summary(),
                s.previous
                    .map(|p| format!(" (previously {p})"))
                    .unwrap_or_default()
            ),
        }
        Ok(ExitCode::SUCCESS)
    }
}

pub async fn rollout(config: &Config, cmd: RolloutCommand) -> anyhow::Result<ExitCode> {
    // The audit log: best effort, so that a rollout can still be rolled back
    // while the database is down (the decision is logged either way). Only
    // what changes traffic is audited; `status` opens nothing.
    let store = match &cmd {
        RolloutCommand::Status { .. } => None,
        _ => match Store::connect_lazy(&config.database) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the database: rollout decisions are not audited");
                None
            }
        },
    };
    let (strategy, common) = match &cmd {
        RolloutCommand::BlueGreen { common, .. } => ("blue-green", common),
        RolloutCommand::Canary { common, .. } => ("canary", common),
        RolloutCommand::Back { common } => ("back", common),
        RolloutCommand::Retire { common, .. } => ("retire", common),
        RolloutCommand::Status { common } => ("status", common),
    };
    let run = Run {
        common: common.clone(),
        store,
        strategy,
    };
    let code = match &cmd {
        RolloutCommand::BlueGreen { to, .. } => run.promote(to, &[100]).await,
        RolloutCommand::Canary { to, steps, .. } => {
            if steps.is_empty() || steps.iter().any(|s| !(1..=100).contains(s)) {
                anyhow::bail!("--steps: each step is a share from 1 to 100 %");
            }
            run.promote(to, steps).await
        }
        RolloutCommand::Back { .. } => run.back().await,
        RolloutCommand::Retire {
            slot,
            stop_command,
            drain_timeout,
            ..
        } => {
            run.retire(slot, stop_command, Duration::from_secs(*drain_timeout))
                .await
        }
        RolloutCommand::Status { .. } => run.status(),
    };
    if let Some(store) = &run.store {
        store.close().await;
    }
    code
}
