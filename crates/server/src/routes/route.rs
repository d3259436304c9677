//! `POST /v1/route`: which model the `auto` routing policy picks for a
//! prompt, and why — without calling any model.

use crate::context::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::gateway::conversation_text;
use crate::json::ApiJson;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchyard_core::routing::RouteDecision;
use switchyard_models::openai_wire::Message;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// A plain prompt …
    #[serde(default)]
    pub prompt: Option<String>,
    /// … or OpenAI-style messages.
    #[serde(default)]
    #[schema(schema_with = super::wire_schemas::chat_messages)]
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

/// Which model `auto` would pick for this prompt, and why.
#[utoipa::path(post, path = "/v1/route", tag = "models",
    security(("api_key" = [])), request_body = RouteRequest,
    responses((status = 200, body = RouteAnswer), (status = 400, body = crate::error::ErrorBody)))]
pub async fn explain(
    State(state): State<AppState>,
    auth: Authenticated,
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
    let routed = state.gateway.route_auto(&auth.caller, &text).await?;
    Ok(Json(RouteAnswer {
        model_id: routed.target.entry.id.clone(),
        decision: routed.decision,
        estimated_input_tokens: routed.estimated_input_tokens,
        remaining_budget_usd: routed.remaining_budget_usd,
    }))
}
