//! HTTP handlers, one module per area.

pub mod admin_budgets;
pub mod admin_keys;
pub mod batch;
pub mod chat;
pub mod debug;
pub mod docs;
pub mod messages;
pub mod models;
pub mod probes;
pub mod route;
pub mod stream;
pub mod tasks;
pub mod usage;
