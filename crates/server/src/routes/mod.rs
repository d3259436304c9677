//! The HTTP surface: the router with its middleware stack, one handler
//! module per area, the OpenAPI document, and how gateway failures read to
//! clients. Nothing outside this folder depends on it but the application
//! that serves it.

pub mod admin_audit;
pub mod admin_budgets;
pub mod admin_keys;
pub mod batch;
pub mod chat;
pub mod console;
pub mod debug;
pub mod docs;
pub mod gateway_error;
pub mod messages;
pub mod models;
pub mod openapi;
pub mod probes;
pub mod responses;
pub mod route;
pub mod sse;
pub mod stream;
pub mod tasks;
pub mod tokens;
pub mod usage;
pub mod wire_schemas;

use crate::auth::{self, AuthState};
use crate::error::ApiError;
use crate::fn_layer::FnLayer;
use crate::middleware::{self, Edge, EdgeSettings};
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

/// Bodies smaller than this are sent uncompressed.
pub const COMPRESS_MIN_BYTES: u16 = 1000;

async fn not_found() -> Response {
    ApiError::not_found("no such route")
        .with_code("route_not_found")
        .into_response()
}

/// The complete router: routes, then (inner to outer) rate limits, the
/// console's session gate, authentication, body limit, timeout, compression, panic recovery and
/// request context. Each layer gets only the state it needs.
pub fn router(state: AppState) -> Router {
    let mut routes = Router::new()
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/db-check", get(probes::db_check))
        .route("/redis-check", get(probes::redis_check))
        .route("/metrics", get(probes::metrics))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/docs", get(docs::index))
        .route("/docs/", get(docs::index))
        .route("/docs/swagger-ui-bundle.js", get(docs::swagger_js))
        .route("/docs/swagger-ui.css", get(docs::swagger_css))
        .route("/v1/models", get(models::list_models))
        .route("/v1/auth/token", post(tokens::create_token))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/route", post(route::explain))
        .route("/v1/batch", post(batch::batch))
        .route("/v1/task", post(tasks::create))
        .route("/v1/tasks", get(tasks::list))
        .route("/v1/capabilities", get(tasks::capabilities))
        .route("/v1/stream", get(stream::stream))
        .route("/v1/tasks/{id}", get(tasks::get))
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/v1/tasks/{id}/events", get(tasks::events))
        .route("/v1/tasks/{id}/artifacts/{*path}", get(tasks::artifact))
        .route("/v1/admin/audit", get(admin_audit::list_audit))
        .route(
            "/v1/admin/budgets",
            get(admin_budgets::list_budgets).put(admin_budgets::set_budget),
        )
        .route(
            "/v1/admin/budgets/{id}",
            delete(admin_budgets::delete_budget),
        )
        .route(
            "/v1/admin/keys",
            get(admin_keys::list_keys).post(admin_keys::create_key),
        )
        .route(
            "/v1/admin/keys/{id}",
            get(admin_keys::get_key)
                .patch(admin_keys::update_key)
                .delete(admin_keys::revoke_key),
        )
        .route(
            "/v1/admin/keys/{id}/task-profile",
            put(admin_keys::set_task_profile),
        )
        .route("/v1/admin/keys/{id}/rotate", post(admin_keys::rotate_key))
        .route("/v1/admin/keys/{id}/expiry", put(admin_keys::set_expiry));
    routes = console::routes(routes);
    if state.config.debug {
        routes = routes
            .route("/debug/sleep", get(debug::sleep))
            .route("/debug/panic", get(debug::panic));
    }
    let compress_when = SizeAbove::new(COMPRESS_MIN_BYTES)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE);
    let auth = AuthState {
        keys: state.authority.clone(),
        limits: state.limits.clone(),
        diagnostics_require_admin: state.config.diagnostics_require_admin,
        tokens: state.tokens.clone(),
        rotation: state.config.keys.rotation,
    };
    let max_body = state.config.max_body_bytes;
    let edge = Edge(Arc::new(EdgeSettings {
        metrics: state.metrics.clone(),
        trusted_proxies: state.config.limits.trusted_proxies.clone().into(),
        slot: state
            .config
            .deployment_slot
            .as_deref()
            .and_then(|s| axum::http::HeaderValue::from_str(s).ok()),
        draining: state.draining_flag(),
        api_timeout: state.config.api_timeout,
        max_body_bytes: max_body,
    }));
    // One layer of the whole stack, outermost first: `Router::layer` boxes
    // each layer it is given around every route, and each would clone the
    // boxed rest of the stack beneath it on every request. The middleware
    // functions hold the rest of the stack by its type (crate::fn_layer).
    let stack = tower::ServiceBuilder::new()
        .layer(FnLayer::new(edge, middleware::request_context))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(CompressionLayer::new().compress_when(compress_when))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(FnLayer::new(Arc::new(auth), auth::authenticate))
        .layer(FnLayer::new(
            Arc::new(console::gate_state(&state)),
            console::gate::gate,
        ))
        .layer(FnLayer::new(
            state.limits.clone(),
            crate::ratelimit::limit_requests,
        ));
    routes.fallback(not_found).layer(stack).with_state(state)
}
