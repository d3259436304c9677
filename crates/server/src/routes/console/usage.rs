//! Usage in the console: requests, errors, tokens and cost by model, key,
//! project or day over a chosen period, as a daily chart and a table, and
//! the same table as CSV. A non-admin key sees only its own usage.

use super::gate::Viewer;
use super::html::{self, chart, esc, money, q, table, PageResult, Problem};
use crate::routes::usage::{window, UsageParams};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use switchyard_core::budget::usd;
use switchyard_store::{UsageFilter, UsageGroup, UsageGrouping};

#[derive(Deserialize, Default, Clone)]
pub struct UsageQuery {
    /// `day`, `week`, `month`, `30d` (default) or `custom`.
    pub period: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `model` (default), `key`, `project` or `day`.
    pub group_by: Option<String>,
    pub key_id: Option<String>,
    pub project: Option<String>,
}

fn blank(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// What a usage view covers, checked.
pub struct Report {
    pub period: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: &'static str,
    pub key_id: Option<String>,
    pub project: Option<String>,
    pub groups: Vec<UsageGroup>,
    /// Per UTC day over the window, days without usage included.
    pub days: Vec<UsageGroup>,
}

/// The days from `from` up to `to`, at most 400.
fn day_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut d = from.date_naive();
    while d <= (to - Duration::seconds(1)).date_naive() && out.len() < 400 {
        out.push(d);
        d += Duration::days(1);
    }
    out
}

pub async fn report(
    state: &AppState,
    viewer: &Viewer,
    query: &UsageQuery,
) -> Result<Report, Problem> {
    let own = &viewer.caller.key;
    let mut key_id = blank(&query.key_id);
    let mut project = blank(&query.project);
    if !viewer.admin {
        if key_id.as_deref().is_some_and(|k| k != own.id) || project.is_some() {
            return Err(Problem::forbidden(
                "only admin keys may read the usage of other keys or projects",
            ));
        }
        key_id = Some(own.id.clone());
        project = None;
    }
    let (grouping, group_by) = match query.group_by.as_deref().unwrap_or("model") {
        "model" => (UsageGrouping::Model, "model"),
        "key" => (UsageGrouping::Key, "key"),
        "project" => (UsageGrouping::Project, "project"),
        "day" => (UsageGrouping::Day, "day"),
        other => {
            return Err(Problem::bad(
                "group_by",
                format!("group_by: `{other}` is not model, key, project or day"),
            ))
        }
    };
    let now = switchyard_core::now();
    let period = query.period.clone().unwrap_or_else(|| "30d".into());
    let (period, from, to) = if period == "30d" {
        let start = (now - Duration::days(29)).date_naive();
        let from = start.and_hms_opt(0, 0, 0).map_or(now, |d| d.and_utc());
        (period, from, now + Duration::seconds(1))
    } else {
        let custom = period == "custom";
        window(
            &UsageParams {
                period: Some(period),
                from: if custom { blank(&query.from) } else { None },
                to: if custom { blank(&query.to) } else { None },
                group_by: None,
                key_id: None,
                project: None,
            },
            now,
        )?
    };
    let filter = UsageFilter {
        key_id: key_id.clone(),
        project: project.clone(),
        from: Some(from),
        to: Some(to),
    };
    let groups = state.store.usage_summary(&filter, grouping).await?;
    let by_day = state
        .store
        .usage_summary(&filter, UsageGrouping::Day)
        .await?;
    let days = day_range(from, to)
        .into_iter()
        .map(|d| {
            let name = d.format("%Y-%m-%d").to_string();
            by_day
                .iter()
                .find(|g| g.group == name)
                .cloned()
                .unwrap_or_else(|| UsageGroup::total(&[]).renamed(&name))
        })
        .collect();
    Ok(Report {
        period,
        from,
        to,
        group_by,
        key_id,
        project,
        groups,
        days,
    })
}

trait Renamed {
    fn renamed(self, name: &str) -> Self;
}

impl Renamed for UsageGroup {
    fn renamed(mut self, name: &str) -> Self {
        self.group = name.to_owned();
        self
    }
}

/// Nano-USD as a float of dollars, for charts.
pub fn dollars(nano: i64) -> f64 {
    usd(nano).parse().unwrap_or(0.0)
}

/// The daily chart of a report: cost and requests.
pub fn daily_chart(id: &str, title: &str, days: &[UsageGroup]) -> String {
    let labels: Vec<String> = days.iter().map(|d| d.group.clone()).collect();
    chart(
        id,
        title,
        &labels,
        &[
            (
                "cost (USD)",
                days.iter().map(|d| dollars(d.cost_nano_usd)).collect(),
            ),
            ("requests", days.iter().map(|d| d.requests as f64).collect()),
            ("errors", days.iter().map(|d| d.errors as f64).collect()),
        ],
    )
}

fn group_cell(group_by: &str, g: &str) -> String {
    match group_by {
        "key" => format!(
            r#"<a href="/console/usage?key_id={}"><code>{}</code></a>"#,
            q(g),
            esc(g)
        ),
        "project" => format!(
            r#"<a href="/console/usage?project={}">{}</a>"#,
            q(g),
            esc(g)
        ),
        _ => esc(g),
    }
}

fn row(group: String, g: &UsageGroup) -> Vec<String> {
    vec![
        group,
        g.requests.to_string(),
        g.errors.to_string(),
        g.input_tokens.to_string(),
        g.output_tokens.to_string(),
        g.cached_tokens.to_string(),
        money(g.cost_nano_usd),
    ]
}

fn selected(current: &str, value: &str) -> &'static str {
    if current == value {
        " selected"
    } else {
        ""
    }
}

fn filters(viewer: &Viewer, r: &Report, query: &UsageQuery) -> String {
    let periods = [
        ("30d", "Last 30 days"),
        ("day", "Today"),
        ("week", "This week"),
        ("month", "This month"),
        ("custom", "Custom"),
    ];
    let groups = [
        ("model", "Model"),
        ("key", "Key"),
        ("project", "Project"),
        ("day", "Day"),
    ];
    let mut period_opts = String::new();
    for (v, label) in periods {
        period_opts.push_str(&format!(
            r#"<option value="{v}"{}>{label}</option>"#,
            selected(&r.period, v)
        ));
    }
    let mut group_opts = String::new();
    for (v, label) in groups {
        group_opts.push_str(&format!(
            r#"<option value="{v}"{}>{label}</option>"#,
            selected(r.group_by, v)
        ));
    }
    let admin_filters = if viewer.admin {
        format!(
            r#"<label>Key id <input name="key_id" value="{}"></label><label>Project <input name="project" value="{}"></label>"#,
            esc(r.key_id.as_deref().unwrap_or("")),
            esc(r.project.as_deref().unwrap_or(""))
        )
    } else {
        String::new()
    };
    format!(
        r#"<form method="get" action="/console/usage" class="row card" aria-label="Usage filters">
<label>Period <select name="period">{period_opts}</select></label>
<label>From <input name="from" type="date" value="{from}"></label>
<label>To <input name="to" type="date" value="{to}"></label>
<label>Group by <select name="group_by">{group_opts}</select></label>
{admin_filters}<button type="submit">Show</button></form>"#,
        from = esc(query.from.as_deref().unwrap_or("")),
        to = esc(query.to.as_deref().unwrap_or("")),
    )
}

fn query_string(r: &Report, query: &UsageQuery) -> String {
    let mut parts = vec![
        format!("period={}", q(&r.period)),
        format!("group_by={}", r.group_by),
    ];
    if r.period == "custom" {
        for (name, v) in [("from", &query.from), ("to", &query.to)] {
            if let Some(v) = blank(v) {
                parts.push(format!("{name}={}", q(&v)));
            }
        }
    }
    for (name, v) in [("key_id", &r.key_id), ("project", &r.project)] {
        if let Some(v) = v {
            parts.push(format!("{name}={}", q(v)));
        }
    }
    parts.join("&")
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<UsageQuery>,
) -> PageResult {
    let r = report(&state, &viewer, &query).await?;
    let mut rows: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|g| row(group_cell(r.group_by, &g.group), g))
        .collect();
    let total = UsageGroup::total(&r.groups);
    if !r.groups.is_empty() {
        rows.push(row("<strong>Total</strong>".into(), &total));
    }
    let scope = match (&r.key_id, &r.project) {
        (Some(k), _) => format!("key <code>{}</code>", esc(k)),
        (None, Some(p)) => format!("project {}", esc(p)),
        (None, None) => "every key".into(),
    };
    let body = format!(
        r#"{filters}<p class="muted">{scope}, {from} to {to} (UTC) · <a href="/console/usage.csv?{qs}" download>Download CSV</a></p>
{chart}{table}"#,
        filters = filters(&viewer, &r, &query),
        from = r.from.format("%Y-%m-%d %H:%M"),
        to = r.to.format("%Y-%m-%d %H:%M"),
        qs = esc(&query_string(&r, &query)),
        chart = daily_chart("usage-chart", "Cost, requests and errors per day", &r.days),
        table = table(
            &format!("Usage by {}", r.group_by),
            &[
                r.group_by,
                "Requests",
                "Errors",
                "Input tokens",
                "Output tokens",
                "Cached tokens",
                "Cost"
            ],
            &rows,
        ),
    );
    Ok(html::page(&viewer, "/console/usage", "Usage", &body))
}

/// One CSV field, quoted per RFC 4180 when it needs to be.
fn field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

pub fn csv_text(r: &Report) -> String {
    let mut out = format!(
        "{},requests,errors,input_tokens,output_tokens,cached_tokens,cost_usd\r\n",
        r.group_by
    );
    for g in &r.groups {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\r\n",
            field(&g.group),
            g.requests,
            g.errors,
            g.input_tokens,
            g.output_tokens,
            g.cached_tokens,
            usd(g.cost_nano_usd)
        ));
    }
    out
}

pub async fn csv(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<UsageQuery>,
) -> PageResult {
    let r = report(&state, &viewer, &query).await?;
    let name = format!(
        "attachment; filename=\"usage-by-{}-{}-{}.csv\"",
        r.group_by,
        r.from.format("%Y%m%d"),
        r.to.format("%Y%m%d")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        csv_text(&r),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(field("gpt-4o"), "gpt-4o");
        assert_eq!(field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn day_ranges_cover_the_window() {
        let from = "2026-01-01T00:00:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap_or_default();
        let to = from + Duration::days(3);
        assert_eq!(day_range(from, to).len(), 3);
        assert_eq!(day_range(from, from + Duration::seconds(5)).len(), 1);
    }
}
