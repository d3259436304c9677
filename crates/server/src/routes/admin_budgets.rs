//! Admin API for budgets: set (create or replace), list with current spend,
//! delete. Needs the `admin` scope.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::middleware::{ClientIp, RequestId};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use switchyard_core::budget::{nano_from_usd, usd, Budget, BudgetPeriod, BudgetScope};
use switchyard_core::keys::new_id;
use switchyard_store::{AuditEvent, BudgetState};
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
    pub reserved_usd: String,
    pub remaining_usd: String,
}

impl From<BudgetState> for BudgetView {
    fn from(s: BudgetState) -> Self {
        Self {
            period_key: s.period_key.clone(),
            limit_usd: usd(s.budget.limit_nano_usd),
            spent_usd: usd(s.spent_nano_usd),
            reserved_usd: usd(s.reserved_nano_usd),
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

async fn audit(
    state: &AppState,
    event: &'static str,
    b: &Budget,
    caller: &Caller,
    rid: &RequestId,
    ip: ClientIp,
) {
    let entry = AuditEvent {
        event,
        actor_key_id: Some(caller.key.id.clone()),
        actor_key: Some(caller.redacted.clone()),
        project: (b.scope == BudgetScope::Project).then(|| b.subject.clone()),
        target: Some(b.id.clone()),
        client_ip: ip.0.map(|i| i.to_string()),
        request_id: Some(rid.0.clone()),
        details: serde_json::json!({
            "scope": b.scope, "subject": b.subject, "period": b.period,
            "limit_usd": usd(b.limit_nano_usd),
        }),
        ..AuditEvent::default()
    };
    crate::audit::record(&state.store, &entry, switchyard_core::now()).await;
}

/// Creates or replaces the budget for (scope, subject, period).
#[utoipa::path(put, path = "/v1/admin/budgets", tag = "admin",
    security(("api_key" = [])), request_body = SetBudgetRequest,
    responses((status = 200, body = BudgetView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn set_budget(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    Extension(ip): Extension<ClientIp>,
    ApiJson(req): ApiJson<SetBudgetRequest>,
) -> ApiResult<Json<BudgetView>> {
    let subject = req.subject.trim();
    if subject.is_empty() {
        return Err(ApiError::invalid_request("subject must not be empty").with_param("subject"));
    }
    let limit = nano_from_usd(req.limit_usd).ok_or_else(|| {
        ApiError::invalid_request("limit_usd must be a non-negative amount up to 1e9")
            .with_param("limit_usd")
    })?;
    if req.scope == BudgetScope::Key && state.store.get_key(subject).await?.is_none() {
        return Err(
            ApiError::invalid_request(format!("no key with id `{subject}`")).with_param("subject"),
        );
    }
    let now = switchyard_core::now();
    let budget = state
        .store
        .set_budget(req.scope, subject, req.period, limit, &new_id("bud"), now)
        .await?;
    state.budgets.invalidate_local();
    audit(&state, "budget.set", &budget, &caller, &rid, ip).await;
    Ok(Json(state.store.budget_state(&budget, now).await?.into()))
}

/// Lists budgets with their spend in the current period.
#[utoipa::path(get, path = "/v1/admin/budgets", tag = "admin",
    security(("api_key" = [])), responses((status = 200, body = BudgetList)))]
pub async fn list_budgets(State(state): State<AppState>) -> ApiResult<Json<BudgetList>> {
    let now = switchyard_core::now();
    let mut data = Vec::new();
    for b in state.store.list_budgets().await? {
        data.push(state.store.budget_state(&b, now).await?.into());
    }
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
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let existing = state
        .store
        .list_budgets()
        .await?
        .into_iter()
        .find(|b| b.id == id);
    let Some(budget) = existing else {
        return Err(
            ApiError::not_found(format!("no budget with id `{id}`")).with_code("budget_not_found")
        );
    };
    state.store.delete_budget(&id).await?;
    state.budgets.invalidate_local();
    audit(&state, "budget.deleted", &budget, &caller, &rid, ip).await;
    Ok(Json(serde_json::json!({"id": id, "deleted": true})))
}
