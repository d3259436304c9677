//! The gateway as the agent loop's model, and tasks run through the Claude
//! Code CLI: either way every model call of a task is budgeted, resilient
//! and accounted like an API call of the task's key.

use crate::context::Caller;
use crate::gateway::{self, CallOrigin, GatewayError, ModelRoute, Outcome};
use crate::state::AppState;
use std::sync::Arc;
use switchyard_agent::protocol::TaskOutcome;
use switchyard_agent::runner::{Model, ModelFuture, ModelReply};
use switchyard_models::openai_wire::{ChatRequest, Message, Tool};

/// The gateway as the agent loop's model: every call goes through budgets,
/// resilience and usage accounting like an API call of the task's key.
pub(super) struct GatewayModel {
    pub(super) state: AppState,
    pub(super) caller: Caller,
    pub(super) model: String,
    pub(super) request_id: String,
}

impl GatewayModel {
    fn request(&self, messages: &[Message], tools: &[Tool]) -> ChatRequest {
        ChatRequest {
            model: self.model.clone(),
            messages: messages.to_vec(),
            temperature: None,
            top_p: None,
            max_tokens: None,
            max_completion_tokens: None,
            stop: None,
            tools: (!tools.is_empty()).then(|| tools.to_vec()),
            tool_choice: None,
            user: None,
            stream: Some(false),
            stream_options: None,
            extra: Default::default(),
        }
    }
}

impl GatewayModel {
    fn origin(&self) -> CallOrigin {
        CallOrigin {
            caller: self.caller.clone(),
            request_id: self.request_id.clone(),
            endpoint: gateway::ENDPOINT,
        }
    }
}

impl Model for GatewayModel {
    fn call<'a>(&'a self, messages: &'a [Message], tools: &'a [Tool]) -> ModelFuture<'a> {
        Box::pin(async move {
            let req = self.request(messages, tools);
            let gateway = &self.state.gateway;
            let call = gateway
                .prepare(self.origin(), &req)
                .await
                .map_err(|e| e.to_string())?;
            let completion = gateway
                .complete(call, &req)
                .await
                .map_err(|e| e.to_string())?;
            let usage = completion.usage.unwrap_or_default();
            let cost = gateway.resolve(&completion.model).map_or(0, |r| {
                r.pricing.cost_nano_usd(
                    usage.prompt_tokens,
                    usage.cached_tokens(),
                    usage.completion_tokens,
                )
            });
            let message = completion
                .choices
                .into_iter()
                .next()
                .map(|c| c.message)
                .ok_or_else(|| "the model returned no choices".to_owned())?;
            Ok(ModelReply {
                message,
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                cost_nano_usd: cost,
                model: completion.model,
            })
        })
    }

    fn for_model(&self, name: &str) -> Option<Box<dyn Model>> {
        self.state.gateway.resolve(name)?;
        Some(Box::new(GatewayModel {
            state: self.state.clone(),
            caller: self.caller.clone(),
            model: name.to_owned(),
            request_id: self.request_id.clone(),
        }))
    }

    fn estimate_nano_usd(&self, messages: &[Message]) -> u64 {
        let req = self.request(messages, &[]);
        let gateway = &self.state.gateway;
        let name = if self.model == gateway::AUTO {
            gateway.routing().medium.clone()
        } else {
            self.model.clone()
        };
        gateway.resolve(&name).map_or(0, |r| {
            u64::try_from(gateway::estimate_nano_usd(&r, &req)).unwrap_or(0)
        })
    }
}

/// A task run through the Claude Code CLI is one upstream call: its cost
/// cap is reserved against the key's budgets before it starts, and the cost
/// the CLI reports settles the reservation with the call's usage row.
pub(super) async fn run_through_cli(
    state: &AppState,
    origin: CallOrigin,
    route: &Arc<ModelRoute>,
    run: impl std::future::Future<Output = TaskOutcome>,
    cap_nano_usd: u64,
) -> Result<TaskOutcome, String> {
    let estimate = i64::try_from(cap_nano_usd).unwrap_or(i64::MAX);
    let call = state
        .gateway
        .open(origin, route.entry.id.clone(), route.clone(), estimate)
        .await
        .map_err(|e: GatewayError| e.to_string())?;
    let started = std::time::Instant::now();
    let outcome = run.await;
    let usage = switchyard_models::openai_wire::Usage {
        prompt_tokens: outcome.usage.input_tokens,
        completion_tokens: outcome.usage.output_tokens,
        ..Default::default()
    };
    let took = started.elapsed();
    let ended = match &outcome.error {
        None => Outcome::served(usage, Some(outcome.usage.total_cost_nano_usd), took),
        Some(e) => {
            let mut o = Outcome::ended(502, e, usage, Some(took));
            o.reported_cost_nano = Some(outcome.usage.total_cost_nano_usd);
            o
        }
    };
    call.close(ended).await;
    Ok(outcome)
}
