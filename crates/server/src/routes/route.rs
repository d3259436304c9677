//! `POST /v1/route` and the `auto` model: which model the routing policy
//! picks for a prompt, and why — without calling any model.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::gateway::ModelRoute;
use crate::json::ApiJson;
use crate::state::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use switchyard_core::budget::NANO_PER_USD;
use switchyard_core::routing::{self, RouteDecision, RouteInput};
use switchyard_models::openai_wire::Message;
use utoipa::ToSchema;

/// The name that asks for routing.
pub const AUTO: &str = "auto";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// A plain prompt …
    #[serde(default)]
    pub prompt: Option<String>,
    /// … or OpenAI-style messages.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub messages: Option<Vec<Message>>,
}

#[derive(Serialize, ToSchema)]
pub struct RouteAnswer {
    #[serde(flatten)]
    pub decision: RouteDecision,
    /// The catalog id the chosen name resolves to.
    pub model_id: String,
    pub estimated_input_tokens: u64,
    /// The smallest remaining budget that applied, in USD.
    pub remaining_budget_usd: Option<f64>,
}

/// The text of a conversation, for routing and estimates.
pub fn conversation_text(messages: &[Message]) -> String {
    messages
        .iter()
        .filter_map(|m| m.content.as_ref().map(|c| c.text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// About four characters per token.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

async fn remaining_budget_usd(state: &AppState, caller: &Caller) -> ApiResult<Option<f64>> {
    let budgets = state
        .store
        .budgets_for(&caller.key.id, &caller.key.project)
        .await?;
    let now = switchyard_core::now();
    let mut least: Option<i64> = None;
    for b in &budgets {
        let left = state.store.budget_state(b, now).await?.remaining_nano_usd();
        least = Some(least.map_or(left, |l| l.min(left)));
    }
    Ok(least.map(|n| n.max(0) as f64 / NANO_PER_USD as f64))
}

/// Applies the policy to `text`; the decision and the model it resolves to.
pub async fn decide(
    state: &AppState,
    caller: &Caller,
    text: &str,
) -> ApiResult<(RouteAnswer, Arc<ModelRoute>)> {
    let estimated = estimate_tokens(text);
    let remaining = remaining_budget_usd(state, caller).await?;
    let decision = routing::route(
        &state.config.file.routing,
        &RouteInput {
            text,
            estimated_input_tokens: estimated,
            remaining_budget_usd: remaining,
        },
    );
    let target = state.gateway().resolve(&decision.model).ok_or_else(|| {
        ApiError::not_found(format!(
            "routing chose `{}` ({}), which is not in the model catalog; configure [routing] or the catalog",
            decision.model, decision.tier
        ))
        .with_code("model_not_found")
        .with_param("model")
    })?;
    Ok((
        RouteAnswer {
            model_id: target.entry.id.clone(),
            decision,
            estimated_input_tokens: estimated,
            remaining_budget_usd: remaining,
        },
        target,
    ))
}

/// Which model `auto` would pick for this prompt, and why.
#[utoipa::path(post, path = "/v1/route", tag = "models",
    security(("api_key" = [])), request_body = RouteRequest,
    responses((status = 200, body = RouteAnswer), (status = 400, body = crate::error::ErrorBody)))]
pub async fn explain(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<RouteRequest>,
) -> ApiResult<Json<RouteAnswer>> {
    let text = match (&req.prompt, &req.messages) {
        (Some(p), None) => p.clone(),
        (None, Some(m)) if !m.is_empty() => conversation_text(m),
        (Some(_), Some(_)) => {
            return Err(
                ApiError::invalid_request("give either prompt or messages, not both")
                    .with_param("prompt"),
            )
        }
        _ => {
            return Err(
                ApiError::invalid_request("a prompt or messages are required").with_param("prompt"),
            )
        }
    };
    if text.trim().is_empty() {
        return Err(ApiError::invalid_request("the prompt is empty").with_param("prompt"));
    }
    Ok(Json(decide(&state, &caller, &text).await?.0))
}
