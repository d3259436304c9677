//! Domain types and rules of Switchyard, free of network and database I/O:
//! configuration parsing and validation, API keys, the model catalog.

pub mod audit;
pub mod audit_chain;
pub mod backup;
pub mod budget;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod decimal;
pub mod hex;
pub mod keys;
pub mod rotation;
pub mod routing;
pub mod secret;
pub mod sync;
pub mod tasks;
pub mod tokens;
pub mod tools;

pub use config::{Config, ConfigProblem, Environment, LoadedConfig};
pub use secret::Secret;

/// The target of spans that exist for traces only (model calls and their
/// upstream attempts, database and Redis operations): the log filters it
/// out, the trace exporter keeps it.
pub const TRACE_TARGET: &str = "otel";

/// The current time at the precision both databases store (microseconds), so
/// that a value read back equals the value written.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
