//! Admin API for budgets: set (create or replace), list with current spend,
//! delete. Needs the `admin` scope.

use crate::budgets::{BudgetError, BudgetRequest};
use crate::context::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use switchyard_core::budget::{usd, Budget, BudgetPeriod, BudgetScope};
use switchyard_store::BudgetState;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudgetRequest {
    pub scope: BudgetScope,
    /// A key id (scope `key`) or a project name (scope `project`).
    pub subject: String,
    pub period: BudgetPeriod,
    /// The limit in USD.
    pub limit_usd: f64,
}

/// A budget with its spend in the current period (amounts in USD, as exact
/// decimal strings).
#[derive(Serialize, ToSchema)]
pub struct BudgetView {
    #[serde(flatten)]
    pub budget: Budget,
    pub period_key: String,
    pub limit_usd: String,
    pub spent_usd: String,
    /// Headroom replicas hold in live leases of the current period: the
    /// estimates of calls in flight, costs not yet written, and idle
    /// headroom a replica gives back when its calls stop (or at expiry).
    pub leased_usd: String,
    /// The same as `leased_usd` (the name before budget leases; kept for
    /// existing clients).
    pub reserved_usd: String,
    /// `limit − spent − leased`, at least 0.
    pub remaining_usd: String,
}

impl From<BudgetState> for BudgetView {
    fn from(s: BudgetState) -> Self {
        Self {
            period_key: s.period_key.clone(),
            limit_usd: usd(s.budget.limit_nano_usd),
            spent_usd: usd(s.spent_nano_usd),
            leased_usd: usd(s.leased_nano_usd),
            reserved_usd: usd(s.leased_nano_usd),
            remaining_usd: usd(s.remaining_nano_usd().max(0)),
            budget: s.budget,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BudgetList {
    pub object: &'static str,
    pub data: Vec<BudgetView>,
}

impl From<BudgetError> for ApiError {
    fn from(e: BudgetError) -> Self {
        match e {
            BudgetError::Invalid(param, message) => {
                ApiError::invalid_request(message).with_param(param)
            }
            BudgetError::Store(s) => s.into(),
        }
    }
}

/// Creates or replaces the budget for (scope, subject, period).
#[utoipa::path(put, path = "/v1/admin/budgets", tag = "admin",
    security(("api_key" = [])), request_body = SetBudgetRequest,
    responses((status = 200, body = BudgetView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn set_budget(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<SetBudgetRequest>,
) -> ApiResult<Json<BudgetView>> {
    let request = BudgetRequest {
        scope: req.scope,
        subject: req.subject,
        period: req.period,
        limit_usd: req.limit_usd,
    };
    Ok(Json(
        state.budgets.set(&request, &auth.actor()).await?.into(),
    ))
}

/// Lists budgets with their spend in the current period.
#[utoipa::path(get, path = "/v1/admin/budgets", tag = "admin",
    security(("api_key" = [])), responses((status = 200, body = BudgetList)))]
pub async fn list_budgets(State(state): State<AppState>) -> ApiResult<Json<BudgetList>> {
    let data = state
        .budgets
        .list()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(BudgetList {
        object: "list",
        data,
    }))
}

/// Deletes a budget and its spend history.
#[utoipa::path(delete, path = "/v1/admin/budgets/{id}", tag = "admin",
    security(("api_key" = [])), params(("id" = String, Path, description = "budget id")),
    responses((status = 200, description = "deleted"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_budget(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    match state.budgets.delete(&id, &auth.actor()).await? {
        Some(_) => Ok(Json(serde_json::json!({"id": id, "deleted": true}))),
        None => {
            Err(ApiError::not_found(format!("no budget with id `{id}`"))
                .with_code("budget_not_found"))
        }
    }
}
