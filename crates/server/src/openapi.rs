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
        crate::routes::probes::health,
        crate::routes::probes::ready,
        crate::routes::probes::db_check,
        crate::routes::probes::redis_check,
        crate::routes::probes::metrics,
        crate::routes::models::list_models,
        crate::routes::chat::chat_completions,
        crate::routes::messages::messages,
        crate::routes::usage::usage,
        crate::routes::route::explain,
        crate::routes::batch::batch,
        crate::routes::stream::stream,
        crate::routes::tasks::create,
        crate::routes::tasks::list,
        crate::routes::tasks::capabilities,
        crate::routes::tasks::get,
        crate::routes::tasks::cancel,
        crate::routes::tasks::events,
        crate::routes::tasks::artifact,
        crate::routes::admin_budgets::set_budget,
        crate::routes::admin_budgets::list_budgets,
        crate::routes::admin_budgets::delete_budget,
        crate::routes::admin_keys::create_key,
        crate::routes::admin_keys::list_keys,
        crate::routes::admin_keys::get_key,
        crate::routes::admin_keys::update_key,
        crate::routes::admin_keys::revoke_key,
        crate::routes::admin_keys::set_task_profile,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&Security),
    tags(
        (name = "probes", description = "Liveness, readiness, dependency checks and metrics (no key needed)"),
        (name = "models", description = "The model catalog"),
        (name = "admin", description = "Key management (admin scope)"),
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
