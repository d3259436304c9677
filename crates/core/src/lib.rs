//! Domain types and rules of Switchyard, free of network and database I/O:
//! configuration parsing and validation, API keys, the model catalog.

pub mod audit;
pub mod audit_chain;
pub mod budget;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod keys;
pub mod routing;
pub mod secret;
pub mod sync;
pub mod tasks;
pub mod tools;

pub use config::{Config, ConfigProblem, Environment, LoadedConfig};
pub use secret::Secret;

/// The current time at the precision both databases store (microseconds), so
/// that a value read back equals the value written.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
