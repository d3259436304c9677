//! The Switchyard HTTP service: the model gateway, the services shared with
//! the CLI (keys, budgets), task workers, and the axum application around
//! them (middleware, handlers, metrics, OpenAPI).

pub mod app;
pub mod audit;
pub mod audit_trail;
pub mod auth;
pub mod budgets;
pub mod context;
pub mod error;
pub mod fn_layer;
pub mod gateway;
pub mod jobs;
pub mod json;
pub mod keys;
pub mod log_json;
pub mod log_sink;
pub mod metrics;
pub mod middleware;
#[cfg(feature = "otel")]
pub mod otel;
pub mod ratelimit;
pub mod replica;
pub mod resilience;
pub mod routes;
#[cfg(feature = "sentry")]
pub mod sentry;
pub mod session;
pub mod state;
pub mod tasks;
pub mod telemetry;
pub mod tls;
pub mod usage;

pub use app::Application;
pub use routes::router;
pub use state::AppState;

/// Bound on any single Redis call made while serving a request.
pub const REDIS_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// How long a probe waits for the database or Redis before calling it down.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
