//! The Switchyard HTTP service: router, middleware, handlers, metrics and
//! OpenAPI, plus the key service shared with the CLI.

pub mod app;
pub mod audit;
pub mod auth;
pub mod budget;
pub mod error;
pub mod gateway;
pub mod jobs;
pub mod json;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod ratelimit;
pub mod resilience;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod usage;
pub mod worker;

pub use app::{router, Application};
pub use state::AppState;
