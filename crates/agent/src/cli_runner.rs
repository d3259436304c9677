//! Tasks run by the Claude Code CLI instead of the built-in loop: the same
//! request, executed by `claude -p` inside the workspace with
//! `--allowedTools` set to the task's tools and `--max-turns` to its turn cap,
//! its stream-json events turned into the same execution log and outcome.
//!
//! The CLI runs its own tools, with its own permission checks, and runs them
//! inside the same sandbox as the built-in loop's Bash commands
//! ([`BashPolicy::confine_program`]): only the workspace writable, other
//! tasks' workspaces and the data directory hidden, the task's caps on every
//! process, the workspace quota watched, root dropped; unlike Bash it keeps
//! the host's network, which it needs to reach its API. Its process group is
//! killed on timeout, cancel or an exceeded quota.
//!
//! The CLI has no cost cap of its own. Its cost is known exactly only from
//! its final `result` event; meanwhile each assistant message carries its
//! tokens, which the catalog model's prices turn into a running cost
//! ([`Spend`]). That running cost stops the run once it passes the task's
//! cap, and is what a run stopped before its result (timeout, cancel,
//! quota, a crash) is charged. `--max-turns` bounds the run as well.

use crate::artifacts;
use crate::confine::{prepare_workspace, Confinement};
use crate::limits::{over_quota, QuotaWatcher};
use crate::policy::BashPolicy;
use crate::protocol::TaskEvent;
use crate::protocol::{EventKind, RunSpec, TaskOutcome, TaskStatus, TaskUsage};
use crate::runner::{snapshot, Log};
use crate::workspace::Workspace;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Instant;
use switchyard_core::catalog::{ModelEntry, Pricing};
use switchyard_models::claude_cli::{usage_of, Invocation};
use switchyard_models::{BackendError, ClaudeCliBackend};
use tokio::sync::watch;

fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

/// The tokens of a run's assistant messages so far, priced. The CLI may
/// send one message as several events (a block each), each with the
/// message's usage so far: a message counts once, at the most it reported.
#[derive(Debug, Default)]
pub struct Spend {
    /// Input (cached included), cached and output tokens per message id.
    messages: HashMap<String, (u64, u64, u64)>,
    /// How many events had no message id (each counted on its own).
    unnamed_events: u32,
    /// The tokens of every message and unnamed event so far.
    total: (u64, u64, u64),
}

impl Spend {
    /// Counts the usage of one `assistant` event.
    pub fn add(&mut self, event: &Value) {
        let message = &event["message"];
        let u = usage_of(&message["usage"]);
        let cached = u
            .prompt_tokens_details
            .as_ref()
            .map_or(0, |d| d.cached_tokens);
        let seen = (u.prompt_tokens, cached, u.completion_tokens);
        // What this event adds: all of it without an id, else what it
        // reports beyond the most its message reported before.
        let added = match message["id"].as_str() {
            Some(id) => {
                let m = self.messages.entry(id.to_owned()).or_default();
                let before = *m;
                *m = (m.0.max(seen.0), m.1.max(seen.1), m.2.max(seen.2));
                (m.0 - before.0, m.1 - before.1, m.2 - before.2)
            }
            None => {
                self.unnamed_events += 1;
                seen
            }
        };
        let t = &mut self.total;
        *t = (t.0 + added.0, t.1 + added.1, t.2 + added.2);
    }

    /// The model calls so far: one per message, however many events
    /// carried it.
    pub fn messages(&self) -> u32 {
        u32::try_from(self.messages.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.unnamed_events)
    }

    /// Input (cached included), cached and output tokens so far.
    pub fn tokens(&self) -> (u64, u64, u64) {
        self.total
    }

    /// The tokens so far at `pricing`, in nano-USD.
    pub fn cost_nano_usd(&self, pricing: &Pricing) -> u64 {
        let (input, cached, output) = self.tokens();
        pricing.cost_nano_usd(input, cached, output)
    }
}

/// How a CLI run ended.
enum Ended {
    Ran(Result<Value, BackendError>),
    Cancelled,
    /// The workspace grew past the quota (bytes when stopped).
    OverQuota(u64),
    /// It could not be started under the task's sandbox.
    Refused(String),
}

pub async fn run_with_cli(
    ws: &Workspace,
    cli: &ClaudeCliBackend,
    policy: &BashPolicy,
    model: &ModelEntry,
    spec: &RunSpec,
    mut cancel: watch::Receiver<bool>,
    on_event: &(dyn Fn(&TaskEvent) + Send + Sync),
) -> TaskOutcome {
    let started = Instant::now();
    let pricing = &model.pricing();
    let before = snapshot(ws).await;
    let setup = match policy.confine_program(ws.root(), cli.command()) {
        Ok(c) => prepare_workspace(policy, ws.root())
            .await
            .map(|quota| (c, quota))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (confinement, quota, refused) = match setup {
        Ok((c, quota)) => (c, quota, None),
        Err(why) => (Confinement::default(), None, Some(why)),
    };
    let inv = Invocation {
        prompt: spec.description.clone(),
        system: Some(
            "Work only inside the current directory; it is your private workspace.".into(),
        ),
        max_turns: spec.max_turns.max(1),
        allowed_tools: Some(spec.tools.iter().map(|t| t.as_str().to_owned()).collect()),
        cwd: Some(ws.root().to_path_buf()),
        timeout: Some(spec.timeout),
        wrapper: confinement.argv,
        program: confinement.program,
        env: confinement.env,
    };
    let mut log = Log {
        events: Vec::new(),
        on_event,
    };
    let mut calls: HashMap<String, u64> = HashMap::new();
    let mut last_model_event = None;
    let mut summary = String::new();
    let mut spend = Spend::default();
    // The same watcher as a Bash command's; past the quota it ends the run,
    // whose process group goes with it.
    let (over_tx, over_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = quota.map(|threshold| {
        QuotaWatcher::start(ws.root().to_path_buf(), threshold, move || {
            let _ = over_tx.send(());
        })
    });
    let result = if let Some(why) = refused {
        Ended::Refused(why)
    } else {
        let run = cli.invoke(&inv, |event| {
            match event["type"].as_str() {
                Some("assistant") => {
                    spend.add(event);
                    let blocks = event["message"]["content"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let text: String = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
                    if !text.is_empty() {
                        summary = text.clone();
                    }
                    let seq = log.add(EventKind::ModelCall, None, clip(&text), None, None);
                    last_model_event = Some(seq);
                    for b in blocks.iter().filter(|b| b["type"] == "tool_use") {
                        let name = b["name"].as_str().unwrap_or("?");
                        let seq = log.add(
                            EventKind::ToolCall,
                            Some(name),
                            clip(&b["input"].to_string()),
                            None,
                            Some(seq),
                        );
                        if let Some(id) = b["id"].as_str() {
                            calls.insert(id.to_owned(), seq);
                        }
                    }
                }
                Some("user") => {
                    for b in event["message"]["content"].as_array().into_iter().flatten() {
                        if b["type"] != "tool_result" {
                            continue;
                        }
                        let parent = b["tool_use_id"]
                            .as_str()
                            .and_then(|id| calls.get(id).copied());
                        let text = match &b["content"] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        log.add(
                            EventKind::ToolResult,
                            None,
                            clip(&text),
                            None,
                            parent.or(last_model_event),
                        );
                    }
                }
                _ => {}
            }
            // Past the cap, returning false ends the run (its process
            // group is killed) before the CLI reads another event.
            spend.cost_nano_usd(pricing) <= spec.max_cost_nano_usd
        });
        tokio::select! {
            r = run => Ended::Ran(r),
            _ = cancel.changed() => Ended::Cancelled,
            // Without a watcher the sender is gone and this branch is off.
            Ok(()) = over_rx => Ended::OverQuota(
                watcher.as_ref().and_then(QuotaWatcher::exceeded).unwrap_or(0),
            ),
        }
    };
    drop(watcher);
    // Without a result, the run is charged what its messages reported;
    // a result replaces this with the CLI's own figures.
    let (input, _, output) = spend.tokens();
    let mut usage = TaskUsage {
        turns: spend.messages(),
        model_used: Some(model.id.clone()),
        input_tokens: input,
        output_tokens: output,
        total_cost_nano_usd: spend.cost_nano_usd(pricing),
        ..TaskUsage::default()
    };
    // Only the handler above stops a run for its cost, and a run that has
    // not been stopped never gets past the cap.
    let over_cost = usage.total_cost_nano_usd > spec.max_cost_nano_usd;
    let (status, error) = match result {
        Ended::Ran(_) if over_cost => (
            TaskStatus::CostExceeded,
            Some(format!(
                "max_cost reached: the CLI's messages so far cost {} nano-USD at the model's prices",
                usage.total_cost_nano_usd
            )),
        ),
        Ended::Cancelled => (TaskStatus::Cancelled, Some("cancelled".to_owned())),
        Ended::Refused(why) => (TaskStatus::Failed, Some(why)),
        Ended::OverQuota(used) => (
            TaskStatus::Failed,
            policy
                .limits
                .as_ref()
                .map(|l| over_quota(l.workspace_mb, used)),
        ),
        Ended::Ran(Err(BackendError::Timeout(_))) => {
            (TaskStatus::Timeout, Some("the task timed out".to_owned()))
        }
        Ended::Ran(Err(e)) => (TaskStatus::Failed, Some(e.to_string())),
        Ended::Ran(Ok(r)) => {
            let u = usage_of(&r["usage"]);
            usage.input_tokens = u.prompt_tokens;
            usage.output_tokens = u.completion_tokens;
            // A result without a cost keeps the running one.
            usage.total_cost_nano_usd = r["total_cost_usd"]
                .as_f64()
                .filter(|c| c.is_finite() && *c >= 0.0)
                .map_or(usage.total_cost_nano_usd, |c| (c * 1e9).round() as u64);
            if let Some(text) = r["result"].as_str().filter(|t| !t.is_empty()) {
                summary = text.to_owned();
            }
            let is_error = r["is_error"].as_bool().unwrap_or(false);
            let subtype = r["subtype"].as_str().unwrap_or("");
            if usage.total_cost_nano_usd > spec.max_cost_nano_usd {
                (
                    TaskStatus::CostExceeded,
                    Some("the CLI run cost more than max_cost".to_owned()),
                )
            } else if subtype == "error_max_turns" {
                (
                    TaskStatus::Failed,
                    Some(format!("stopped after max_turns ({})", spec.max_turns)),
                )
            } else if is_error {
                (
                    TaskStatus::Failed,
                    Some(format!("the CLI reported {subtype}: {summary}")),
                )
            } else {
                (TaskStatus::Completed, None)
            }
        }
    };
    if let Some(e) = &error {
        log.add(EventKind::Error, None, e.clone(), None, None);
    }
    let after = snapshot(ws).await;
    usage.duration_seconds = started.elapsed().as_secs_f64();
    TaskOutcome {
        status,
        summary,
        error,
        usage,
        artifacts: artifacts::diff(&before, &after),
        execution_log: log.events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: Option<&str>, input: u64, cached: u64, output: u64) -> Value {
        let mut message = json!({"role": "assistant", "content": [], "usage": {
            "input_tokens": input, "cache_read_input_tokens": cached, "output_tokens": output}});
        if let Some(id) = id {
            message["id"] = json!(id);
        }
        json!({"type": "assistant", "message": message})
    }

    #[test]
    fn a_message_counts_once_at_the_most_it_reported() {
        let mut spend = Spend::default();
        spend.add(&event(Some("msg_1"), 100, 50, 1));
        spend.add(&event(Some("msg_1"), 100, 50, 40));
        spend.add(&event(Some("msg_2"), 300, 0, 7));
        // Events without an id are counted each.
        spend.add(&event(None, 10, 0, 2));
        spend.add(&event(None, 10, 0, 2));
        // Input includes the cached tokens.
        assert_eq!(spend.tokens(), (150 + 300 + 20, 50, 40 + 7 + 4));
        assert_eq!(
            spend.messages(),
            4,
            "two messages, two events without an id"
        );
        let pricing = Pricing {
            input_micros_per_mtok: 3_000_000,
            output_micros_per_mtok: 15_000_000,
            cached_input_micros_per_mtok: 300_000,
        };
        // Nano-USD per token: 3,000 input, 300 cached input, 15,000 output.
        assert_eq!(
            spend.cost_nano_usd(&pricing),
            420 * 3_000 + 50 * 300 + 51 * 15_000
        );
        // Without prices, nothing.
        assert_eq!(spend.cost_nano_usd(&Pricing::default()), 0);
    }
}
