//! `GET /v1/usage`: requests, tokens and cost by model or day over a period,
//! with the remaining budgets. A key sees its own usage; an admin key may
//! ask for any key or project.

use crate::context::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::routes::admin_budgets::BudgetView;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::budget::usd;
use switchyard_store::{UsageFilter, UsageGroup, UsageGrouping};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// `day` (since 00:00 UTC), `week` (since Monday 00:00 UTC), `month`
    /// (since the 1st, the default) or `custom` (with `from` and `to`).
    pub period: Option<String>,
    /// Start of a custom range: RFC 3339 or `YYYY-MM-DD` (inclusive).
    pub from: Option<String>,
    /// End of a custom range: RFC 3339 or `YYYY-MM-DD` (exclusive).
    pub to: Option<String>,
    /// `model` (default) or `day`.
    pub group_by: Option<String>,
    /// Admin only: another key's usage.
    pub key_id: Option<String>,
    /// Admin only: a project's usage (all its keys).
    pub project: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageRow {
    pub group: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    /// Exact decimal USD.
    pub cost_usd: String,
}

impl From<&UsageGroup> for UsageRow {
    fn from(g: &UsageGroup) -> Self {
        Self {
            group: g.group.clone(),
            requests: g.requests,
            input_tokens: g.input_tokens,
            output_tokens: g.output_tokens,
            cached_tokens: g.cached_tokens,
            cost_usd: usd(g.cost_nano_usd),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    pub object: &'static str,
    pub period: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: &'static str,
    pub key_id: Option<String>,
    pub project: Option<String>,
    pub data: Vec<UsageRow>,
    pub total: UsageRow,
    /// Budgets of the key and its project, in their current periods.
    pub budgets: Vec<BudgetView>,
}

fn parse_instant(field: &'static str, raw: &str) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| Utc.from_utc_datetime(&d))
        .ok_or_else(|| {
            ApiError::invalid_request(format!("{field}: `{raw}` is not RFC 3339 or YYYY-MM-DD"))
                .with_param(field)
        })
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// The `[from, to)` window of a period ending now.
pub(crate) fn window(
    p: &UsageParams,
    now: DateTime<Utc>,
) -> ApiResult<(String, DateTime<Utc>, DateTime<Utc>)> {
    let period = p.period.clone().unwrap_or_else(|| "month".into());
    let today = now.date_naive();
    let from = match period.as_str() {
        "day" => midnight(today),
        "week" => {
            midnight(today - Duration::days(i64::from(today.weekday().num_days_from_monday())))
        }
        "month" => midnight(today.with_day(1).unwrap_or(today)),
        "custom" => {
            let (Some(from), Some(to)) = (&p.from, &p.to) else {
                return Err(
                    ApiError::invalid_request("a custom period needs both from and to")
                        .with_param("from"),
                );
            };
            let (from, to) = (parse_instant("from", from)?, parse_instant("to", to)?);
            if from >= to {
                return Err(ApiError::invalid_request("from must be before to").with_param("to"));
            }
            return Ok((period, from, to));
        }
        other => {
            return Err(ApiError::invalid_request(format!(
                "period: `{other}` is not one of day, week, month, custom"
            ))
            .with_param("period"))
        }
    };
    if p.from.is_some() || p.to.is_some() {
        return Err(
            ApiError::invalid_request("from and to apply only to period=custom")
                .with_param("period"),
        );
    }
    Ok((period, from, now + Duration::seconds(1)))
}

/// The caller's usage and remaining budget.
#[utoipa::path(get, path = "/v1/usage", tag = "models",
    security(("api_key" = [])), params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(p): Query<UsageParams>,
) -> ApiResult<Json<UsageReport>> {
    let caller = &auth.caller;
    let admin = caller.is_admin();
    let asks_other = p.key_id.as_deref().is_some_and(|k| k != caller.key.id)
        || p.project
            .as_deref()
            .is_some_and(|pr| pr != caller.key.project);
    if asks_other && !admin {
        return Err(ApiError::forbidden(
            "insufficient_scope",
            "only admin keys may read the usage of other keys or projects",
        ));
    }
    let (key_id, project) = match (&p.key_id, &p.project) {
        (None, None) => (Some(caller.key.id.clone()), None),
        (k, pr) => (k.clone(), pr.clone()),
    };
    let (grouping, group_by) = match p.group_by.as_deref().unwrap_or("model") {
        "model" => (UsageGrouping::Model, "model"),
        "day" => (UsageGrouping::Day, "day"),
        other => {
            return Err(ApiError::invalid_request(format!(
                "group_by: `{other}` is not model or day"
            ))
            .with_param("group_by"))
        }
    };
    let now = Utc::now();
    let (period, from, to) = window(&p, now)?;
    let filter = UsageFilter {
        key_id: key_id.clone(),
        project: project.clone(),
        from: Some(from),
        to: Some(to),
    };
    let groups = state.store.usage_summary(&filter, grouping).await?;
    let total = UsageGroup::total(&groups);
    let budget_key = key_id.clone().unwrap_or_default();
    let budget_project = project.clone().unwrap_or_else(|| {
        if key_id.as_deref() == Some(caller.key.id.as_str()) {
            caller.key.project.clone()
        } else {
            String::new()
        }
    });
    let budgets = state
        .budgets
        .states_for(&budget_key, &budget_project)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(UsageReport {
        object: "usage",
        period,
        from,
        to,
        group_by,
        key_id,
        project,
        data: groups.iter().map(UsageRow::from).collect(),
        total: UsageRow::from(&total),
        budgets,
    }))
}
