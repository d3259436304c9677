//! The task API: `POST /v1/task` (waits, or `"async": true` → 202),
//! `GET /v1/tasks`, `GET /v1/tasks/{id}`, `GET /v1/tasks/{id}/events` (SSE,
//! replayed from the start), `POST /v1/tasks/{id}/cancel` and
//! `GET /v1/tasks/{id}/artifacts/{path}`. A key sees only its own tasks.

use crate::context::{Authenticated, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use crate::tasks::{follow_events, workspace_dir, Followed, StoredOutcome, SubmitError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_agent::sandbox::SandboxStatus;
use switchyard_agent::Workspace;
use switchyard_core::audit::AuditKind;
use switchyard_core::budget::nano_from_usd;
use switchyard_core::tasks::{SeedFile, TaskSpec, TaskStatus};
use switchyard_core::tools::ToolName;
use switchyard_store::{AuditEvent, TaskRow};
use utoipa::ToSchema;

pub const MAX_TIMEOUT_SECONDS: u64 = 600;
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 300;
pub const MAX_COST_USD: f64 = 10.0;
pub const DEFAULT_COST_USD: f64 = 1.0;
pub const DEFAULT_MAX_TURNS: u32 = 30;
const MAX_SEED_BYTES: usize = 10 * 1024 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    /// What the agent should do.
    pub description: String,
    /// Tools from Read, Write, Edit, Glob, Grep, Bash (default: all but Bash).
    #[serde(default)]
    pub allow_tools: Option<Vec<String>>,
    /// Sub-agents the task may delegate to (see `GET /v1/capabilities`).
    #[serde(default)]
    pub allow_agents: Option<Vec<String>>,
    /// Skills the task may invoke (see `GET /v1/capabilities`).
    #[serde(default)]
    pub allow_skills: Option<Vec<String>>,
    /// A catalog model or `auto` (default `TASK_DEFAULT_MODEL`).
    #[serde(default)]
    pub model: Option<String>,
    /// Seconds, 1 to 600 (default 300).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// USD, above 0 and at most 10 (default 1.00).
    #[serde(default)]
    pub max_cost: Option<f64>,
    /// Model turns at most, 1 to 200 (default 30).
    #[serde(default)]
    pub max_turns: Option<u32>,
    /// Files to place in the workspace first.
    #[serde(default)]
    pub files: Option<Vec<SeedFile>>,
    /// Answer 202 at once instead of waiting for the result.
    #[serde(default, rename = "async")]
    pub run_async: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TaskView {
    pub task_id: String,
    pub status: TaskStatus,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
    #[schema(value_type = Object)]
    pub usage: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub artifacts: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub execution_log: Vec<serde_json::Value>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(format!("{field}: {}", message.into())).with_param(field)
}

fn validate(state: &AppState, req: TaskRequest) -> ApiResult<(TaskSpec, bool)> {
    if req.description.trim().is_empty() {
        return Err(bad("description", "must not be empty"));
    }
    let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout) {
        return Err(bad(
            "timeout",
            format!("must be 1 to {MAX_TIMEOUT_SECONDS} seconds"),
        ));
    }
    let cost = req.max_cost.unwrap_or(DEFAULT_COST_USD);
    if !(cost > 0.0 && cost <= MAX_COST_USD) {
        return Err(bad(
            "max_cost",
            format!("must be above 0 and at most {MAX_COST_USD} USD"),
        ));
    }
    let max_turns = req.max_turns.unwrap_or(DEFAULT_MAX_TURNS);
    if !(1..=200).contains(&max_turns) {
        return Err(bad("max_turns", "must be 1 to 200"));
    }
    let tools = match req.allow_tools {
        None => ToolName::DEFAULT.to_vec(),
        Some(names) => {
            let mut tools = Vec::new();
            for (i, n) in names.iter().enumerate() {
                let t: ToolName = n
                    .parse()
                    .map_err(|e: String| bad(&format!("allow_tools[{i}]"), e))?;
                if !tools.contains(&t) {
                    tools.push(t);
                }
            }
            tools
        }
    };
    let defs = state.definitions();
    let agents = req.allow_agents.unwrap_or_default();
    for (i, name) in agents.iter().enumerate() {
        if !defs.agents.contains_key(name) {
            return Err(bad(
                &format!("allow_agents[{i}]"),
                format!("no sub-agent `{name}` is configured (GET /v1/capabilities)"),
            ));
        }
    }
    let skills = req.allow_skills.unwrap_or_default();
    for (i, name) in skills.iter().enumerate() {
        if !defs.skills.contains_key(name) {
            return Err(bad(
                &format!("allow_skills[{i}]"),
                format!("no skill `{name}` is configured (GET /v1/capabilities)"),
            ));
        }
    }
    let files = req.files.unwrap_or_default();
    if files.iter().map(|f| f.content.len()).sum::<usize>() > MAX_SEED_BYTES {
        return Err(bad(
            "files",
            format!("at most {MAX_SEED_BYTES} bytes in all"),
        ));
    }
    let model = req
        .model
        .unwrap_or_else(|| state.config.tasks.default_model.clone());
    if model != crate::gateway::AUTO && state.gateway.resolve(&model).is_none() {
        return Err(
            ApiError::not_found(format!("the model `{model}` does not exist"))
                .with_code("model_not_found")
                .with_param("model"),
        );
    }
    Ok((
        TaskSpec {
            description: req.description,
            tools,
            model,
            timeout_seconds: timeout,
            max_cost_nano_usd: nano_from_usd(cost)
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            max_turns,
            files,
            agents,
            skills,
        },
        req.run_async,
    ))
}

/// The task, where the caller may see it: its owner or an admin.
pub(crate) async fn owned(state: &AppState, caller: &Caller, id: &str) -> ApiResult<TaskRow> {
    let task = state.store.get_task(id).await?;
    match task {
        Some(t) if t.key_id == caller.key.id || caller.is_admin() => Ok(t),
        _ => {
            Err(ApiError::not_found(format!("no task with id `{id}`")).with_code("task_not_found"))
        }
    }
}

async fn view(state: &AppState, task: TaskRow) -> ApiResult<TaskView> {
    let outcome: Option<StoredOutcome> = task
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let log = state
        .store
        .task_events(&task.id, 0)
        .await?
        .into_iter()
        .filter_map(|(_, e)| serde_json::from_str(&e).ok())
        .collect();
    Ok(TaskView {
        task_id: task.id,
        status: task.status,
        created_at: task.created_at,
        started_at: task.started_at,
        finished_at: task.finished_at,
        result: serde_json::json!({
            "summary": outcome.as_ref().map(|o| o.summary.clone()),
            "error": outcome.as_ref().and_then(|o| o.error.clone()),
        }),
        usage: outcome
            .as_ref()
            .map(|o| o.usage.clone())
            .unwrap_or_else(|| serde_json::json!({})),
        artifacts: outcome
            .map(|o| o.artifacts)
            .unwrap_or_else(|| serde_json::json!([])),
        execution_log: log,
    })
}

/// Runs an agent task.
#[utoipa::path(post, path = "/v1/task", tag = "tasks", security(("api_key" = [])),
    request_body = TaskRequest,
    responses((status = 200, body = TaskView), (status = 202, body = TaskView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<TaskRequest>,
) -> ApiResult<Response> {
    let (spec, run_async) = validate(&state, req)?;
    let caller = &auth.caller;
    let id = crate::tasks::submit(&state, caller, &auth.actor(), &spec)
        .await
        .map_err(|e| match e {
            SubmitError::NotPermitted(reason) => ApiError::forbidden("task_not_permitted", reason),
            SubmitError::Store(s) => s.into(),
        })?;
    if run_async {
        let task = owned(&state, caller, &id).await?;
        return Ok((StatusCode::ACCEPTED, Json(view(&state, task).await?)).into_response());
    }
    // Wait for a worker (of any replica) to finish it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(spec.timeout_seconds + 60);
    loop {
        let task = owned(&state, caller, &id).await?;
        if task.is_finished() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(view(&state, task).await?).into_response());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tools, sub-agents and skills tasks may use, and the resource limits
/// of their Bash commands: the service's defaults, the caller's (after its
/// key's task profile) and which caps are in force on this host.
#[utoipa::path(get, path = "/v1/capabilities", tag = "tasks", security(("api_key" = [])),
    responses((status = 200, description = "tools, agents, skills and resource limits")))]
pub async fn capabilities(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Json<serde_json::Value> {
    let defs = state.definitions();
    let tools: Vec<serde_json::Value> = switchyard_agent::runner::tool_definitions(&ToolName::ALL)
        .into_iter()
        .map(
            |t| serde_json::json!({"name": t.function.name, "description": t.function.description}),
        )
        .collect();
    let sandbox = crate::tasks::sandbox_status().await;
    let status = match &sandbox {
        SandboxStatus::Available => "available",
        SandboxStatus::Missing => "missing",
        SandboxStatus::Unusable(_) => "unusable",
    };
    Json(serde_json::json!({
        "tools": tools,
        "agents": defs.agents.values().collect::<Vec<_>>(),
        "skills": defs.skills.values().collect::<Vec<_>>(),
        "bash_sandboxed": sandbox.is_available(),
        "sandbox": {"status": status, "detail": sandbox.describe()},
        "resource_limits": resource_limits(&state, &auth.caller),
    }))
}

/// The caps on Bash commands: defaults, the caller's, and how each is
/// enforced here.
fn resource_limits(state: &AppState, caller: &Caller) -> serde_json::Value {
    let defaults = state.config.tasks.limits;
    let bounds = caller
        .key
        .task_profile
        .as_ref()
        .and_then(|p| p.max_resources.as_ref());
    let yours = bounds.map_or(defaults, |b| defaults.bounded_by(b));
    serde_json::json!({
        "defaults": defaults,
        "this_key": yours,
        "enforcement": crate::tasks::bash_policy(state).enforcement(),
        "per": {"memory_mb": "process", "processes": "command", "cpu_seconds": "process",
                "file_size_mb": "file", "workspace_mb": "task", "open_files": "process"},
    })
}

/// One task of the caller's.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", security(("api_key" = [])),
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, body = TaskView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let task = owned(&state, &auth.caller, &id).await?;
    Ok(Json(view(&state, task).await?))
}

/// The caller's tasks, newest first (without their logs).
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", security(("api_key" = [])),
    responses((status = 200, description = "a list of tasks")))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let tasks = state.store.list_tasks(&auth.caller.key.id, 100).await?;
    let data: Vec<serde_json::Value> = tasks
        .into_iter()
        .map(|t| {
            serde_json::json!({"task_id": t.id, "status": t.status, "created_at": t.created_at,
                               "finished_at": t.finished_at})
        })
        .collect();
    Ok(Json(serde_json::json!({"object": "list", "data": data})))
}

/// Asks a task to stop; a running one stops within about a second.
#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", tag = "tasks", security(("api_key" = [])),
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, description = "cancellation requested"), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let task = owned(&state, &auth.caller, &id).await?;
    if !state.store.request_task_cancel(&task.id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!("task `{id}` has already finished"),
        )
        .with_code("task_finished"));
    }
    let entry = auth.actor().stamp(AuditEvent {
        project: Some(task.project.clone()),
        task_id: Some(task.id.clone()),
        details: serde_json::json!({"task_owner_key_id": task.key_id}),
        ..AuditEvent::new(AuditKind::TaskCancelRequested)
    });
    crate::audit::record(&state.store, &entry, switchyard_core::now()).await;
    Ok(Json(
        serde_json::json!({"task_id": id, "cancel_requested": true}),
    ))
}

/// The execution log as Server-Sent Events, replayed from the start and
/// followed live until the task ends with a `done` event.
#[utoipa::path(get, path = "/v1/tasks/{id}/events", tag = "tasks", security(("api_key" = [])),
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, content_type = "text/event-stream", description = "`event: log` per entry, then `event: done`")))]
pub async fn events(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let task = owned(&state, &auth.caller, &id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(MAX_TIMEOUT_SECONDS + 120);
        let log = |event: String| Bytes::from(format!("event: log\ndata: {event}\n\n"));
        if let Followed::Ended(status) = follow_events(&state, &task.id, deadline, &tx, log).await {
            let _ = tx
                .send(Bytes::from(format!(
                    "event: done\ndata: {}\n\n",
                    serde_json::json!({"status": status.map_or("", TaskStatus::as_str)})
                )))
                .await;
        }
    });
    let body = super::sse::channel_body(rx);
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

/// A file from the task's workspace.
#[utoipa::path(get, path = "/v1/tasks/{id}/artifacts/{path}", tag = "tasks", security(("api_key" = [])),
    params(("id" = String, Path, description = "task id"), ("path" = String, Path, description = "file path in the workspace")),
    responses((status = 200, content_type = "application/octet-stream", description = "the file"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn artifact(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((id, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let task = owned(&state, &auth.caller, &id).await?;
    let dir = workspace_dir(&state, &task.id);
    if !dir.is_dir() {
        return Err(
            ApiError::not_found("this task has no workspace").with_code("artifact_not_found")
        );
    }
    let ws = Workspace::create(&dir).map_err(|e| ApiError::internal(&e))?;
    let file = ws
        .resolve(&path)
        .map_err(|e| ApiError::not_found(e.to_string()).with_code("artifact_not_found"))?;
    let bytes = tokio::fs::read(&file).await.map_err(|_| {
        ApiError::not_found(format!("no artifact `{path}`")).with_code("artifact_not_found")
    })?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
