//! Agent tasks: submitting one (the key's task profile checked, the task
//! queued and audited), following its execution log, its stored outcome,
//! its workspace — and the workers that run them (`worker`), whose model
//! calls go through the gateway (`model`).

mod model;
mod worker;

pub use worker::spawn_workers;

use crate::audit::Actor;
use crate::context::Caller;
use crate::state::AppState;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_agent::confine;
use switchyard_agent::protocol::TaskOutcome;
use switchyard_agent::sandbox::{BashPolicy, SandboxStatus};
use switchyard_core::audit::AuditKind;
use switchyard_core::budget::nano_from_usd;
use switchyard_core::keys::new_id;
use switchyard_core::tasks::{TaskSpec, TaskStatus};
use switchyard_store::{AuditEvent, NewTask, StoreError, TaskRow};

/// The outcome as stored with the task and served by the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredOutcome {
    pub status: TaskStatus,
    pub summary: String,
    pub error: Option<String>,
    pub usage: serde_json::Value,
    pub artifacts: serde_json::Value,
}

impl StoredOutcome {
    /// A run that could not start or finish normally.
    pub fn failed(message: String) -> Self {
        Self {
            status: TaskStatus::Failed,
            summary: String::new(),
            error: Some(message),
            usage: serde_json::json!({}),
            artifacts: serde_json::json!([]),
        }
    }

    /// What the agent loop reported.
    pub fn of(outcome: TaskOutcome) -> Self {
        Self {
            status: outcome.status,
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
        }
    }
}

/// Why a task was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The key's task profile does not allow it; the reason says what.
    #[error("{0}")]
    NotPermitted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a task against the key's task profile.
async fn check_profile(
    state: &AppState,
    caller: &Caller,
    spec: &TaskSpec,
) -> Result<(), SubmitError> {
    let Some(p) = &caller.key.task_profile else {
        return Ok(());
    };
    let deny = |reason: String| Err(SubmitError::NotPermitted(reason));
    if let Some(tools) = &p.allowed_tools {
        if let Some(t) = spec.tools.iter().find(|t| !tools.contains(t)) {
            return deny(format!("this key may not use the {t} tool"));
        }
    }
    let allowed = |list: &Option<Vec<String>>, name: &str| {
        list.as_ref().is_none_or(|l| l.iter().any(|n| n == name))
    };
    for a in &spec.agents {
        if !allowed(&p.allowed_agents, a) {
            return deny(format!("this key may not use the sub-agent `{a}`"));
        }
    }
    for s in &spec.skills {
        if !allowed(&p.allowed_skills, s) {
            return deny(format!("this key may not use the skill `{s}`"));
        }
    }
    if let Some(max) = p.max_timeout_seconds {
        if spec.timeout_seconds > max {
            return deny(format!("this key's tasks may run at most {max} s"));
        }
    }
    if let Some(max) = p.max_cost_usd.and_then(nano_from_usd) {
        if spec.max_cost_nano_usd > u64::try_from(max).unwrap_or(0) {
            return deny(format!(
                "this key's tasks may cost at most {} USD",
                p.max_cost_usd.unwrap_or(0.0)
            ));
        }
    }
    if let Some(max) = p.max_concurrent_tasks {
        if state.store.active_tasks(&caller.key.id).await? >= i64::from(max) {
            return deny(format!(
                "this key may have at most {max} tasks queued or running"
            ));
        }
    }
    Ok(())
}

/// Queues a validated task for the caller (after its task profile allows
/// it) and audits it; returns the task's id.
pub async fn submit(
    state: &AppState,
    caller: &Caller,
    actor: &Actor,
    spec: &TaskSpec,
) -> Result<String, SubmitError> {
    check_profile(state, caller, spec).await?;
    let id = new_id("task");
    let json = serde_json::to_string(spec).unwrap_or_else(|_| "{}".into());
    let now = switchyard_core::now();
    state
        .store
        .insert_task(&NewTask {
            id: &id,
            key_id: &caller.key.id,
            project: &caller.key.project,
            spec: &json,
            at: now,
        })
        .await?;
    let entry = actor.stamp(AuditEvent {
        project: Some(caller.key.project.clone()),
        task_id: Some(id.clone()),
        details: serde_json::json!({
            "description": spec.description.chars().take(500).collect::<String>(),
            "tools": spec.tools,
            "model": spec.model,
            "max_cost_nano_usd": spec.max_cost_nano_usd,
        }),
        ..AuditEvent::new(AuditKind::TaskCreated)
    });
    crate::audit::record(&state.store, &entry, now).await;
    Ok(id)
}

/// Whether task commands can run sandboxed on this host, found out once
/// (it runs bubblewrap) and remembered.
pub async fn sandbox_status() -> SandboxStatus {
    static STATUS: std::sync::OnceLock<SandboxStatus> = std::sync::OnceLock::new();
    if let Some(s) = STATUS.get() {
        return s.clone();
    }
    let probed = tokio::task::spawn_blocking(|| BashPolicy::detect(false).probe())
        .await
        .unwrap_or_else(|e| SandboxStatus::Unusable(format!("the probe failed: {e}")));
    STATUS.get_or_init(|| probed).clone()
}

/// How this replica runs Bash: bubblewrap when present, as
/// `TASK_SANDBOX_USER` when the service is root, with `TASKS_DIR` (other
/// tasks' workspaces), a SQLite database's directory, a local backup
/// destination and the folders of the service's secret files hidden behind
/// empty mounts (the command's own workspace is mounted back), and a secret
/// file in a folder the system shares (`/etc`) made unreadable; each task
/// adds its limits. Only folders that exist are hidden: the workers create
/// TASKS_DIR before they build theirs.
pub fn bash_policy(state: &AppState) -> BashPolicy {
    let database_dir = state
        .config
        .database
        .sqlite_file()
        .and_then(|f| f.parent().map(std::path::Path::to_path_buf))
        .filter(|d| !d.as_os_str().is_empty());
    let backups = match &state.config.backup.destination {
        Some(switchyard_core::backup::Destination::Dir(dir)) => Some(dir.clone()),
        _ => None,
    };
    let secrets = &state.config.secret_files;
    let secret_folders = secrets.iter().filter_map(|f| confine::secret_folder(f));
    BashPolicy::detect(state.config.tasks.allow_unsandboxed_bash)
        .running_as(state.config.tasks.sandbox_user)
        .hiding(
            std::iter::once(state.config.tasks.dir.clone())
                .chain(database_dir)
                .chain(backups)
                .chain(secret_folders),
        )
        .masking(secrets.iter().cloned())
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

/// How following a task's execution log ended.
pub enum Followed {
    /// The task finished, or the deadline passed: its status then, where it
    /// could be read.
    Ended(Option<TaskStatus>),
    /// The receiver went away, or the log could not be read.
    Stopped,
}

/// Replays a task's execution log from the start and follows it live, every
/// 200 ms, until the task finishes or `deadline` passes: each entry (its
/// stored JSON text) goes to `tx` as `entry` makes it.
pub async fn follow_events<T>(
    state: &AppState,
    task_id: &str,
    deadline: tokio::time::Instant,
    tx: &tokio::sync::mpsc::Sender<T>,
    entry: impl Fn(String) -> T,
) -> Followed {
    let mut last = 0i64;
    loop {
        // Read before the events, so that a finished task's last events are
        // in the batch below.
        let task = state.store.get_task(task_id).await.ok().flatten();
        let finished = task.as_ref().is_some_and(TaskRow::is_finished);
        let Ok(batch) = state.store.task_events(task_id, last).await else {
            return Followed::Stopped;
        };
        for (seq, event) in batch {
            last = seq;
            if tx.send(entry(event)).await.is_err() {
                return Followed::Stopped;
            }
        }
        if finished || tokio::time::Instant::now() >= deadline {
            return Followed::Ended(task.map(|t| t.status));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
