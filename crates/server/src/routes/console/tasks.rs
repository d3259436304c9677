//! Tasks in the console: the list with status, cost and duration (an admin
//! sees every key's, anyone else their own), and one task's page with its
//! execution log followed live (SSE from `/console/tasks/{id}/events`, the
//! API's own stream), its artifacts and a cancel button.

use super::gate::Viewer;
use super::html::{csrf_field, esc, page, q, see_other, table, time, PageResult, Problem};
use crate::error::ApiError;
use crate::routes::tasks::owned;
use crate::state::AppState;
use crate::tasks::StoredOutcome;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::tasks::TaskStatus;
use switchyard_store::TaskRow;

fn outcome(t: &TaskRow) -> Option<StoredOutcome> {
    t.result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
}

fn cost(t: &TaskRow) -> String {
    outcome(t)
        .and_then(|o| {
            o.usage
                .get("total_cost")
                .and_then(serde_json::Value::as_f64)
        })
        .map_or_else(|| "—".to_owned(), |c| format!("${c:.6}"))
}

fn duration(t: &TaskRow) -> String {
    match (t.started_at, t.finished_at) {
        (Some(s), Some(f)) => format!("{:.1} s", (f - s).num_milliseconds() as f64 / 1000.0),
        (Some(s), None) => format!(
            "{} s so far",
            (switchyard_core::now() - s).num_seconds().max(0)
        ),
        _ => "—".into(),
    }
}

fn status_badge(t: &TaskRow) -> String {
    let class = match t.status {
        TaskStatus::Completed => "badge good",
        TaskStatus::Failed
        | TaskStatus::Timeout
        | TaskStatus::CostExceeded
        | TaskStatus::Cancelled => "badge bad",
        TaskStatus::Queued | TaskStatus::Running => "badge",
    };
    format!(
        r#"<span class="{class}" data-status="{s}">{s}</span>"#,
        s = esc(t.status.as_str())
    )
}

/// The rows of a task list (also the overview's live queue).
pub fn rows(tasks: &[TaskRow], with_key: bool) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            let mut row = vec![
                format!(
                    r#"<a href="/console/tasks/{}"><code>{}</code></a>"#,
                    q(&t.id),
                    esc(&t.id)
                ),
                status_badge(t),
                time(t.created_at),
                duration(t),
                cost(t),
            ];
            if with_key {
                row.push(format!("<code>{}</code>", esc(&t.key_id)));
                row.push(esc(&t.project));
            }
            row
        })
        .collect()
}

pub const HEADERS: &[&str] = &[
    "Task", "Status", "Created", "Duration", "Cost", "Key", "Project",
];

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let tasks = if viewer.admin {
        state.store.list_recent_tasks(200).await?
    } else {
        state.store.list_tasks(&viewer.caller.key.id, 200).await?
    };
    let headers = if viewer.admin { HEADERS } else { &HEADERS[..5] };
    let body = format!(
        r#"<p class="muted">Newest first. Submit tasks with <code>POST /v1/task</code>.</p>{}"#,
        table("Tasks", headers, &rows(&tasks, viewer.admin))
    );
    Ok(page(&viewer, "/console/tasks", "Tasks", &body))
}

fn artifacts(task_id: &str, o: Option<&StoredOutcome>) -> String {
    let list = o
        .and_then(|o| o.artifacts.as_array().cloned())
        .unwrap_or_default();
    if list.is_empty() {
        return r#"<p class="muted">No artifacts.</p>"#.into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .filter_map(|a| {
            let path = a.get("path")?.as_str()?;
            Some(vec![
                format!(
                    r#"<a href="/console/tasks/{}/artifacts/{}" download>{}</a>"#,
                    q(task_id),
                    path.split('/').map(q).collect::<Vec<_>>().join("/"),
                    esc(path)
                ),
                a.get("size_bytes")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
                    .to_string(),
                esc(a
                    .get("change")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")),
            ])
        })
        .collect();
    table("Artifacts", &["File", "Bytes", "Change"], &rows)
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    let task = owned(&state, &viewer.caller, &id).await?;
    let o = outcome(&task);
    let tid = esc(&task.id);
    let cancel = if task.is_finished() {
        String::new()
    } else {
        format!(
            r#"<form method="post" action="/console/tasks/{tid}/cancel" class="inline" data-confirm="Cancel this task?">{}<button type="submit" class="danger">Cancel task</button></form>"#,
            csrf_field(&viewer)
        )
    };
    let summary = o
        .as_ref()
        .map(|o| {
            let error = o
                .error
                .as_deref()
                .map(|e| format!(r#"<p class="error">{}</p>"#, esc(e)))
                .unwrap_or_default();
            format!("<p>{}</p>{error}", esc(&o.summary))
        })
        .unwrap_or_default();
    let body = format!(
        r#"<section class="card"><p>Status: <strong id="task-status">{status}</strong> · created {created} · duration {duration} · cost {cost}</p>
{summary}<div class="actions">{cancel}</div></section>
<h2>Execution log</h2>
<p class="muted">Replayed from the start and followed live until the task ends.</p>
<ol class="log" id="log" data-sse="/console/tasks/{tid}/events" data-status="task-status" aria-live="polite"></ol>
<h2>Artifacts</h2>{artifacts}"#,
        status = esc(task.status.as_str()),
        created = time(task.created_at),
        duration = duration(&task),
        cost = cost(&task),
        artifacts = artifacts(&task.id, o.as_ref()),
    );
    Ok(page(
        &viewer,
        "/console/tasks",
        &format!("Task {}", task.id),
        &body,
    ))
}

pub async fn cancel(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    let task = owned(&state, &viewer.caller, &id).await?;
    if !state.store.request_task_cancel(&task.id).await? {
        return Err(Problem(
            ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!("task `{id}` has already finished"),
            )
            .with_code("task_finished"),
        ));
    }
    tracing::info!(task_id = %task.id, key_id = %viewer.caller.key.id, "task cancellation requested from the console");
    Ok(see_other(&format!("/console/tasks/{}", q(&task.id))))
}

pub fn queue_html(queued: i64, running: i64, recent: &[TaskRow]) -> String {
    format!(
        r#"<p><span class="stat">{queued}</span> queued · <span class="stat">{running}</span> running</p>{}"#,
        table("Recent tasks", HEADERS, &rows(recent, true))
    )
}
