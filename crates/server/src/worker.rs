//! Task workers: claim queued tasks under a lease, run them with the agent
//! loop over the gateway, keep the lease fresh (noticing cancellation), and
//! record events, outcome, usage and audit.

use crate::context::Caller;
use crate::gateway::{self, CallOrigin, GatewayError, ModelRoute, Outcome};
use crate::state::AppState;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use switchyard_agent::protocol::{TaskEvent, TaskOutcome, TaskSpec};
use switchyard_agent::runner::{self, Model, ModelFuture, ModelReply};
use switchyard_agent::sandbox::BashPolicy;
use switchyard_agent::tools::{ToolName, WriteInput};
use switchyard_agent::Workspace;
use switchyard_models::openai_wire::{ChatRequest, Message, Tool};
use switchyard_store::{AuditEvent, TaskRow};
use tokio::sync::watch;

/// How often an idle worker looks for work.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A file to place in the workspace before the task starts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    pub path: String,
    pub content: String,
}

/// What is stored for a queued task: the validated request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSpec {
    pub description: String,
    pub tools: Vec<ToolName>,
    pub model: String,
    pub timeout_seconds: u64,
    pub max_cost_nano_usd: u64,
    pub max_turns: u32,
    pub files: Vec<SeedFile>,
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub skills: Vec<String>,
}

/// The outcome as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredOutcome {
    pub status: String,
    pub summary: String,
    pub error: Option<String>,
    pub usage: serde_json::Value,
    pub artifacts: serde_json::Value,
}

/// The gateway as the agent loop's model: every call goes through budgets,
/// resilience and usage accounting like an API call of the task's key.
struct GatewayModel {
    state: AppState,
    caller: Caller,
    model: String,
    request_id: String,
}

impl GatewayModel {
    fn request(&self, messages: &[Message], tools: &[Tool]) -> ChatRequest {
        ChatRequest {
            model: self.model.clone(),
            messages: messages.to_vec(),
            temperature: None,
            top_p: None,
            max_tokens: None,
            max_completion_tokens: None,
            stop: None,
            tools: (!tools.is_empty()).then(|| tools.to_vec()),
            tool_choice: None,
            user: None,
            stream: Some(false),
            stream_options: None,
            extra: Default::default(),
        }
    }
}

impl GatewayModel {
    fn origin(&self) -> CallOrigin {
        CallOrigin {
            caller: self.caller.clone(),
            request_id: self.request_id.clone(),
            endpoint: gateway::ENDPOINT,
        }
    }
}

impl Model for GatewayModel {
    fn call<'a>(&'a self, messages: &'a [Message], tools: &'a [Tool]) -> ModelFuture<'a> {
        Box::pin(async move {
            let req = self.request(messages, tools);
            let gateway = &self.state.gateway;
            let call = gateway
                .prepare(self.origin(), &req)
                .await
                .map_err(|e| e.to_string())?;
            let completion = gateway
                .complete(call, &req)
                .await
                .map_err(|e| e.to_string())?;
            let usage = completion.usage.unwrap_or_default();
            let cost = gateway.resolve(&completion.model).map_or(0, |r| {
                r.pricing.cost_nano_usd(
                    usage.prompt_tokens,
                    usage.cached_tokens(),
                    usage.completion_tokens,
                )
            });
            let message = completion
                .choices
                .into_iter()
                .next()
                .map(|c| c.message)
                .ok_or_else(|| "the model returned no choices".to_owned())?;
            Ok(ModelReply {
                message,
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                cost_nano_usd: cost,
                model: completion.model,
            })
        })
    }

    fn for_model(&self, name: &str) -> Option<Box<dyn Model>> {
        self.state.gateway.resolve(name)?;
        Some(Box::new(GatewayModel {
            state: self.state.clone(),
            caller: self.caller.clone(),
            model: name.to_owned(),
            request_id: self.request_id.clone(),
        }))
    }

    fn estimate_nano_usd(&self, messages: &[Message]) -> u64 {
        let req = self.request(messages, &[]);
        let gateway = &self.state.gateway;
        let name = if self.model == gateway::AUTO {
            gateway.routing().medium.clone()
        } else {
            self.model.clone()
        };
        gateway.resolve(&name).map_or(0, |r| {
            u64::try_from(gateway::estimate_nano_usd(&r, &req)).unwrap_or(0)
        })
    }
}

/// The directory of a task's workspace.
pub fn workspace_dir(state: &AppState, task_id: &str) -> std::path::PathBuf {
    state.config.tasks.dir.join(task_id)
}

/// Deletes the workspaces of tasks finished longer ago than the retention
/// (`TASK_RETENTION_HOURS`); returns how many were removed.
pub async fn clean_up_workspaces(state: &AppState) -> usize {
    let retention = chrono::Duration::from_std(state.config.tasks.retention).unwrap_or_default();
    let before = switchyard_core::now() - retention;
    let Ok(ids) = state.store.tasks_finished_before(before, 1000).await else {
        return 0;
    };
    let mut removed = 0;
    for id in ids {
        let dir = workspace_dir(state, &id);
        if dir.is_dir() && tokio::fs::remove_dir_all(&dir).await.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed expired task workspaces");
    }
    removed
}

/// How often a worker looks for expired workspaces.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// Starts this replica's workers; they stop when `stop` turns true.
pub fn spawn_workers(
    state: &AppState,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let bash = Arc::new(BashPolicy::detect(
        state.config.tasks.allow_unsandboxed_bash,
    ));
    if !bash.sandboxed() {
        tracing::warn!(
            allow_unsandboxed = state.config.tasks.allow_unsandboxed_bash,
            "bubblewrap (bwrap) not found: the Bash tool is refused unless ALLOW_UNSANDBOXED_BASH=true"
        );
    }
    (0..state.config.tasks.workers)
        .map(|n| {
            let state = state.clone();
            let bash = bash.clone();
            let mut stop = stop.clone();
            let worker = format!(
                "{}-{n}-{}",
                std::process::id(),
                switchyard_core::keys::new_id("w")
            );
            tokio::spawn(async move {
                let mut last_cleanup = tokio::time::Instant::now();
                loop {
                    if *stop.borrow() {
                        return;
                    }
                    if n == 0 && last_cleanup.elapsed() >= CLEANUP_INTERVAL {
                        last_cleanup = tokio::time::Instant::now();
                        clean_up_workspaces(&state).await;
                    }
                    let now = switchyard_core::now();
                    let lease =
                        chrono::Duration::from_std(state.config.tasks.lease).unwrap_or_default();
                    match state.store.claim_task(&worker, now + lease, now).await {
                        Ok(Some(task)) => run_claimed(&state, &bash, &worker, task).await,
                        Ok(None) => {
                            tokio::select! {
                                () = tokio::time::sleep(POLL_INTERVAL) => {}
                                _ = stop.changed() => return,
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not claim a task");
                            tokio::time::sleep(POLL_INTERVAL * 4).await;
                        }
                    }
                }
            })
        })
        .collect()
}

async fn run_claimed(state: &AppState, bash: &BashPolicy, worker: &str, task: TaskRow) {
    let span = tracing::info_span!("task", task_id = %task.id, key_id = %task.key_id);
    let _entered = span.enter();
    let outcome = match prepare_and_run(state, bash, worker, &task).await {
        Ok(o) => o,
        Err(message) => StoredOutcome {
            status: "failed".into(),
            summary: String::new(),
            error: Some(message),
            usage: serde_json::json!({}),
            artifacts: serde_json::json!([]),
        },
    };
    let result = serde_json::to_string(&outcome).unwrap_or_else(|_| "{}".into());
    match state
        .store
        .finish_task(
            &task.id,
            worker,
            &outcome.status,
            &result,
            switchyard_core::now(),
        )
        .await
    {
        Ok(true) => tracing::info!(status = %outcome.status, "task finished"),
        Ok(false) => {
            tracing::warn!("task lease was lost before it finished; its result was dropped")
        }
        Err(e) => tracing::error!(error = %e, "could not record a task's outcome"),
    }
    let description: String = serde_json::from_str::<StoredSpec>(&task.spec)
        .map(|s| s.description.chars().take(500).collect())
        .unwrap_or_default();
    let audit = AuditEvent {
        event: "task.finished",
        actor_key_id: Some(task.key_id.clone()),
        project: Some(task.project.clone()),
        task_id: Some(task.id.clone()),
        details: serde_json::json!({"status": outcome.status, "usage": outcome.usage, "description": description,
                                    "attempt": task.attempts}),
        ..AuditEvent::default()
    };
    crate::audit::record(&state.store, &audit, switchyard_core::now()).await;
}

/// A task run through the Claude Code CLI is one upstream call: its cost
/// cap is reserved against the key's budgets before it starts, and the cost
/// the CLI reports settles the reservation with the call's usage row.
async fn run_through_cli(
    state: &AppState,
    origin: CallOrigin,
    route: &Arc<ModelRoute>,
    run: impl std::future::Future<Output = TaskOutcome>,
    cap_nano_usd: u64,
) -> Result<TaskOutcome, String> {
    let estimate = i64::try_from(cap_nano_usd).unwrap_or(i64::MAX);
    let call = state
        .gateway
        .open(origin, route.entry.id.clone(), route.clone(), estimate)
        .await
        .map_err(|e: GatewayError| e.to_string())?;
    let started = std::time::Instant::now();
    let outcome = run.await;
    let usage = switchyard_models::openai_wire::Usage {
        prompt_tokens: outcome.usage.input_tokens,
        completion_tokens: outcome.usage.output_tokens,
        ..Default::default()
    };
    let took = started.elapsed();
    let ended = match &outcome.error {
        None => Outcome::served(usage, Some(outcome.usage.total_cost_nano_usd), took),
        Some(e) => {
            let mut o = Outcome::ended(502, e, usage, Some(took));
            o.reported_cost_nano = Some(outcome.usage.total_cost_nano_usd);
            o
        }
    };
    call.close(ended).await;
    Ok(outcome)
}

async fn prepare_and_run(
    state: &AppState,
    bash: &BashPolicy,
    worker: &str,
    task: &TaskRow,
) -> Result<StoredOutcome, String> {
    let spec: StoredSpec =
        serde_json::from_str(&task.spec).map_err(|e| format!("stored task is invalid: {e}"))?;
    let key = state
        .store
        .get_key(&task.key_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the task's key no longer exists")?;
    let caller = Caller::acting_for(key);
    let ws = Workspace::create(&workspace_dir(state, &task.id))
        .map_err(|e| format!("cannot create the workspace: {e}"))?;
    for f in &spec.files {
        switchyard_agent::tools::write(
            &ws,
            &WriteInput {
                path: f.path.clone(),
                content: f.content.clone(),
            },
        )
        .map_err(|e| format!("files: {e}"))?;
    }
    let model = GatewayModel {
        state: state.clone(),
        caller,
        model: spec.model.clone(),
        request_id: task.id.clone(),
    };
    let defs = state.definitions();
    let run_spec = TaskSpec {
        description: spec.description.clone(),
        tools: spec.tools.clone(),
        timeout: Duration::from_secs(spec.timeout_seconds),
        max_cost_nano_usd: spec.max_cost_nano_usd,
        max_turns: spec.max_turns,
        agents: spec
            .agents
            .iter()
            .filter_map(|n| defs.agents.get(n).cloned())
            .collect(),
        skills: spec
            .skills
            .iter()
            .filter_map(|n| defs.skills.get(n).cloned())
            .collect(),
    };
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let heartbeat = {
        let state = state.clone();
        let (id, worker) = (task.id.clone(), worker.to_owned());
        tokio::spawn(async move {
            let every = state.config.tasks.lease / 3;
            loop {
                tokio::time::sleep(every.min(Duration::from_millis(500))).await;
                let until = switchyard_core::now()
                    + chrono::Duration::from_std(state.config.tasks.lease).unwrap_or_default();
                match state.store.renew_task_lease(&id, &worker, until).await {
                    Ok(Some(false)) => {}
                    Ok(Some(true)) | Ok(None) => {
                        let _ = cancel_tx.send(true);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "could not renew a task lease"),
                }
            }
        })
    };
    let (event_tx, mut event_rx) = tokio::sync::mpsc::unbounded_channel::<TaskEvent>();
    let writer = {
        let store = state.store.clone();
        let (id, key_id, project, actor_key) = (
            task.id.clone(),
            task.key_id.clone(),
            task.project.clone(),
            model.caller.redacted.clone(),
        );
        tokio::spawn(async move {
            while let Some(e) = event_rx.recv().await {
                let json = serde_json::to_string(&e).unwrap_or_else(|_| "{}".into());
                if let Err(err) = store.append_task_event(&id, e.seq as i64, &json).await {
                    tracing::warn!(error = %err, "could not store a task event");
                }
                // Commands and file writes are audited one by one.
                let audited = e.kind == switchyard_agent::protocol::EventKind::ToolCall
                    && matches!(e.tool.as_deref(), Some("Bash" | "Write" | "Edit"));
                if audited {
                    let entry = AuditEvent {
                        event: "task.tool",
                        actor_key_id: Some(key_id.clone()),
                        actor_key: Some(actor_key.clone()),
                        project: Some(project.clone()),
                        task_id: Some(id.clone()),
                        details: serde_json::json!({"tool": e.tool, "call": e.summary}),
                        ..AuditEvent::default()
                    };
                    crate::audit::record(&store, &entry, switchyard_core::now()).await;
                }
            }
        })
    };
    let cli_route = state
        .gateway
        .resolve(&spec.model)
        .filter(|r| matches!(r.backend, gateway::Backend::ClaudeCli(_)));
    let on_event = |e: &TaskEvent| {
        let _ = event_tx.send(e.clone());
    };
    let outcome: Result<TaskOutcome, String> = match &cli_route {
        Some(route) => {
            let gateway::Backend::ClaudeCli(cli) = &route.backend else {
                return Err("internal: not a CLI route".into());
            };
            let origin = CallOrigin {
                caller: model.caller.clone(),
                request_id: task.id.clone(),
                endpoint: "/v1/task",
            };
            let run = switchyard_agent::cli_runner::run_with_cli(
                &ws,
                cli,
                &route.entry.id,
                &run_spec,
                cancel_rx,
                &on_event,
            );
            run_through_cli(state, origin, route, run, spec.max_cost_nano_usd).await
        }
        None => Ok(runner::run(&ws, bash, &model, &run_spec, cancel_rx, &on_event).await),
    };
    drop(event_tx);
    let _ = writer.await;
    heartbeat.abort();
    let outcome = outcome?;
    let status = serde_json::to_value(outcome.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "failed".into());
    Ok(StoredOutcome {
        status,
        summary: outcome.summary,
        error: outcome.error,
        usage: serde_json::json!({
            "input_tokens": outcome.usage.input_tokens,
            "output_tokens": outcome.usage.output_tokens,
            "total_cost": outcome.usage.total_cost_nano_usd as f64 / 1e9,
            "turns": outcome.usage.turns,
            "model_used": outcome.usage.model_used,
            "duration_seconds": outcome.usage.duration_seconds,
        }),
        artifacts: serde_json::to_value(&outcome.artifacts).unwrap_or_default(),
    })
}
