//! The `auto` model: which model the routing policy picks for a
//! conversation, weighing the caller's remaining budget (read through the
//! budget service's cache).

use super::catalog::{Catalog, ModelRoute};
use super::error::GatewayError;
use crate::budgets::Budgets;
use crate::context::Caller;
use std::sync::Arc;
use switchyard_core::budget::NANO_PER_USD;
use switchyard_core::routing::{self, RouteDecision, RouteInput, RoutingConfig};
use switchyard_models::openai_wire::Message;

/// The model name that asks for routing.
pub const AUTO: &str = "auto";

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

/// What routing decided for a prompt, and why.
pub struct AutoRoute {
    pub decision: RouteDecision,
    /// The catalog model the chosen name resolves to.
    pub target: Arc<ModelRoute>,
    pub estimated_input_tokens: u64,
    /// The smallest remaining budget that applied, in USD.
    pub remaining_budget_usd: Option<f64>,
}

/// Applies the routing `policy` to `text` for `caller`, weighing the
/// caller's remaining budget.
pub async fn route(
    policy: &RoutingConfig,
    catalog: &Catalog,
    budgets: &Budgets,
    caller: &Caller,
    text: &str,
) -> Result<AutoRoute, GatewayError> {
    let estimated = estimate_tokens(text);
    let remaining = budgets
        .remaining(caller)
        .await
        .map_err(GatewayError::Store)?
        .map(|n| n.max(0) as f64 / NANO_PER_USD as f64);
    let decision = routing::route(
        policy,
        &RouteInput {
            text,
            estimated_input_tokens: estimated,
            remaining_budget_usd: remaining,
        },
    );
    let target =
        catalog
            .resolve(&decision.model)
            .ok_or_else(|| GatewayError::RoutedToUnknownModel {
                model: decision.model.clone(),
                tier: decision.tier.to_string(),
            })?;
    Ok(AutoRoute {
        decision,
        target,
        estimated_input_tokens: estimated,
        remaining_budget_usd: remaining,
    })
}
