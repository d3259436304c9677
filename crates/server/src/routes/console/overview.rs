//! The console's overview (admin): requests, errors and spend today and
//! over 30 days, the top keys and models by cost, the live task queue
//! (refreshed by htmx), and the health of the database, Redis and each
//! model's circuit. Other keys are sent to their usage.

use super::gate::Viewer;
use super::html::{self, esc, money, see_other, table, PageResult};
use super::models::circuit;
use super::tasks::queue_html;
use super::usage::{daily_chart, report, UsageQuery};
use crate::state::AppState;
use crate::PROBE_TIMEOUT;
use axum::extract::State;
use switchyard_store::{UsageFilter, UsageGroup, UsageGrouping};

async fn top(
    state: &AppState,
    grouping: UsageGrouping,
    filter: &UsageFilter,
) -> Result<Vec<UsageGroup>, super::html::Problem> {
    let mut groups = state.store.usage_summary(filter, grouping).await?;
    groups.sort_by(|a, b| {
        b.cost_nano_usd
            .cmp(&a.cost_nano_usd)
            .then(b.requests.cmp(&a.requests))
    });
    groups.truncate(5);
    Ok(groups)
}

fn top_table(caption: &str, what: &str, groups: &[UsageGroup]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                format!("<code>{}</code>", esc(&g.group)),
                g.requests.to_string(),
                money(g.cost_nano_usd),
            ]
        })
        .collect();
    table(caption, &[what, "Requests", "Cost"], &rows)
}

async fn health(state: &AppState) -> String {
    let db = match state.store.ping(PROBE_TIMEOUT).await {
        Ok(d) => format!(
            r#"<span class="badge good">up</span> {:.1} ms ({})"#,
            d.as_secs_f64() * 1000.0,
            state.store.kind().as_str()
        ),
        Err(e) => format!(
            r#"<span class="badge bad">down</span> {}"#,
            esc(&e.to_string())
        ),
    };
    let redis = match &state.redis {
        None => r#"<span class="badge">not configured</span>"#.to_owned(),
        Some(r) => match r.ping(PROBE_TIMEOUT).await {
            Ok(d) => format!(
                r#"<span class="badge good">up</span> {:.1} ms"#,
                d.as_secs_f64() * 1000.0
            ),
            Err(e) => format!(
                r#"<span class="badge bad">down</span> {}"#,
                esc(&e.to_string())
            ),
        },
    };
    let mut rows = vec![vec!["Database".into(), db], vec!["Redis".into(), redis]];
    let mut models = state.gateway.catalog().models();
    models.sort_by(|a, b| a.entry.id.cmp(&b.entry.id));
    for m in models {
        rows.push(vec![
            format!("Model <code>{}</code>", esc(&m.entry.id)),
            circuit(m.breaker.state_code()).into(),
        ]);
    }
    table(
        "Database, Redis and each model's circuit",
        &["Component", "State"],
        &rows,
    )
}

async fn queue(state: &AppState) -> Result<String, super::html::Problem> {
    let (queued, _) = state.store.task_queue().await?;
    let running = state.store.running_tasks().await?;
    let recent = state.store.list_recent_tasks(5).await?;
    Ok(queue_html(queued, running, &recent))
}

/// The queue fragment htmx polls.
pub async fn queue_fragment(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    if !viewer.admin {
        return Err(super::html::Problem::forbidden(
            "the task queue is for admin keys",
        ));
    }
    Ok(super::html::html_response(
        axum::http::StatusCode::OK,
        queue(&state).await?,
    ))
}

pub async fn page(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    if !viewer.admin {
        return Ok(see_other("/console/usage"));
    }
    let month = report(&state, &viewer, &UsageQuery::default()).await?;
    let today = month
        .days
        .last()
        .cloned()
        .unwrap_or_else(|| UsageGroup::total(&[]));
    let total = UsageGroup::total(&month.days);
    let filter = UsageFilter {
        from: Some(month.from),
        to: Some(month.to),
        ..UsageFilter::default()
    };
    let keys = top(&state, UsageGrouping::Key, &filter).await?;
    let models = top(&state, UsageGrouping::Model, &filter).await?;
    let stat = |label: &str, today: String, month: String| {
        format!(
            r#"<section class="card"><h2>{label}</h2><p class="stat">{today}</p><p class="muted">today · {month} in 30 days</p></section>"#
        )
    };
    let body = format!(
        r#"<div class="grid">{}{}{}</div>
{}
<div class="grid"><div>{}</div><div>{}</div></div>
<h2>Task queue</h2>
<div id="queue" hx-get="/console/overview/queue" hx-trigger="every 5s" hx-swap="innerHTML">{}</div>
<h2>Health</h2>{}"#,
        stat(
            "Requests",
            today.requests.to_string(),
            total.requests.to_string()
        ),
        stat("Errors", today.errors.to_string(), total.errors.to_string()),
        stat(
            "Spend",
            money(today.cost_nano_usd),
            money(total.cost_nano_usd)
        ),
        daily_chart(
            "overview-chart",
            "Last 30 days: cost, requests and errors per day",
            &month.days
        ),
        top_table("Top keys by cost (30 days)", "Key", &keys),
        top_table("Top models by cost (30 days)", "Model", &models),
        queue(&state).await?,
        health(&state).await,
    );
    Ok(html::page(&viewer, "/console", "Overview", &body))
}
