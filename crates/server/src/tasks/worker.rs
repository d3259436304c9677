//! Task workers: claim queued tasks under a lease, run them with the agent
//! loop over the gateway (or through the Claude Code CLI), keep the lease
//! fresh (noticing cancellation), and record events, outcome, usage and audit.

use super::model::{run_through_cli, GatewayModel};
use super::{clean_up_workspaces, workspace_dir, StoredOutcome};
use crate::context::Caller;
use crate::gateway::{self, CallOrigin};
use crate::state::AppState;
use std::sync::Arc;
use std::time::Duration;
use switchyard_agent::protocol::{RunSpec, TaskEvent, TaskOutcome};
use switchyard_agent::runner;
use switchyard_agent::sandbox::BashPolicy;
use switchyard_agent::tools::WriteInput;
use switchyard_agent::Workspace;
use switchyard_core::audit::AuditKind;
use switchyard_core::tasks::TaskSpec;
use switchyard_store::{AuditEvent, TaskFinish, TaskRow};
use tokio::sync::watch;

/// How often an idle worker looks for work.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often a worker looks for expired workspaces.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// Starts this replica's workers; they stop when `stop` turns true.
pub fn spawn_workers(
    state: &AppState,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // Before the policy, which can hide only a folder that exists.
    if let Err(e) = std::fs::create_dir_all(&state.config.tasks.dir) {
        tracing::error!(error = %e, dir = %state.config.tasks.dir.display(), "cannot create TASKS_DIR");
    }
    let bash = Arc::new(super::bash_policy(state));
    if state.config.tasks.workers > 0 {
        let status = bash.probe();
        if !status.is_available() {
            tracing::warn!(
                allow_unsandboxed = state.config.tasks.allow_unsandboxed_bash,
                "{}",
                status.describe()
            );
        }
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
                            tracing::error!(error = %e, "could not claim a task");
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
        Err(message) => StoredOutcome::failed(message),
    };
    let result = serde_json::to_string(&outcome).unwrap_or_else(|_| "{}".into());
    let finish = TaskFinish {
        id: &task.id,
        worker,
        status: outcome.status,
        result: &result,
        at: switchyard_core::now(),
    };
    match state.store.finish_task(&finish).await {
        Ok(true) => {
            state.metrics.count_task_finished(outcome.status);
            tracing::info!(status = %outcome.status, "task finished")
        }
        Ok(false) => {
            tracing::warn!("task lease was lost before it finished; its result was dropped")
        }
        Err(e) => tracing::error!(error = %e, "could not record a task's outcome"),
    }
    let description: String = serde_json::from_str::<TaskSpec>(&task.spec)
        .map(|s| s.description.chars().take(500).collect())
        .unwrap_or_default();
    let audit = AuditEvent {
        actor_key_id: Some(task.key_id.clone()),
        project: Some(task.project.clone()),
        task_id: Some(task.id.clone()),
        details: serde_json::json!({"status": outcome.status, "usage": outcome.usage, "description": description,
                                    "attempt": task.attempts}),
        ..AuditEvent::new(AuditKind::TaskFinished)
    };
    crate::audit::record(&state.store, &audit, switchyard_core::now()).await;
}

async fn prepare_and_run(
    state: &AppState,
    bash: &BashPolicy,
    worker: &str,
    task: &TaskRow,
) -> Result<StoredOutcome, String> {
    let spec: TaskSpec =
        serde_json::from_str(&task.spec).map_err(|e| format!("stored task is invalid: {e}"))?;
    let key = state
        .store
        .get_key(&task.key_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the task's key no longer exists")?;
    // Each command's caps: the service's defaults, lowered by the key's
    // task profile.
    let limits = match key
        .task_profile
        .as_ref()
        .and_then(|p| p.max_resources.as_ref())
    {
        Some(bounds) => state.config.tasks.limits.bounded_by(bounds),
        None => state.config.tasks.limits,
    };
    let bash = bash.clone().with_limits(limits);
    let bash = &bash;
    // What a skill's `allowed-tools` may add stays within the profile.
    let profile = key.task_profile.clone();
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
    let run_spec = RunSpec::for_task(&spec, &state.definitions(), profile.as_ref());
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
                        actor_key_id: Some(key_id.clone()),
                        actor_key: Some(actor_key.clone()),
                        project: Some(project.clone()),
                        task_id: Some(id.clone()),
                        details: serde_json::json!({"tool": e.tool, "call": e.summary}),
                        ..AuditEvent::new(AuditKind::TaskTool)
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
                bash,
                &route.entry,
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
    Ok(StoredOutcome::of(outcome))
}
