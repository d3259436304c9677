//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard",
        description = "LLM completions and agentic tasks behind one front door: keys, budgets, limits, usage, audit.",
    ),
    paths(
        super::probes::health,
        super::probes::ready,
        super::probes::db_check,
        super::probes::redis_check,
        super::probes::metrics,
        super::models::list_models,
        super::chat::chat_completions,
        super::messages::messages,
        super::messages::count_tokens,
        super::responses::responses,
        super::usage::usage,
        super::route::explain,
        super::batch::batch,
        super::stream::stream,
        super::tasks::create,
        super::tasks::list,
        super::tasks::capabilities,
        super::tasks::get,
        super::tasks::cancel,
        super::tasks::events,
        super::tasks::artifact,
        super::admin_audit::list_audit,
        super::admin_budgets::set_budget,
        super::admin_budgets::list_budgets,
        super::admin_budgets::delete_budget,
        super::admin_keys::create_key,
        super::admin_keys::list_keys,
        super::admin_keys::get_key,
        super::admin_keys::update_key,
        super::admin_keys::revoke_key,
        super::admin_keys::set_task_profile,
        super::admin_keys::rotate_key,
        super::admin_keys::set_expiry,
        super::tokens::create_token,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&Security),
    tags(
        (name = "probes", description = "Liveness, readiness, dependency checks and metrics (no key needed)"),
        (name = "models", description = "The model catalog"),
        (name = "admin", description = "Keys, budgets and the audit log (admin scope)"),
        (name = "auth", description = "Short-lived access tokens exchanged for an API key"),
        (name = "tasks", description = "Agent tasks"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer sy_…`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "x_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}
