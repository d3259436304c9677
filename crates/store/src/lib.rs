//! Persistence for Switchyard: one [`Store`] over SQLite (default) or
//! PostgreSQL, with embedded migrations and the repositories the service uses.
//!
//! SQL is static text with `$N` parameters, which both drivers accept, so each
//! query is written once and run on whichever pool is configured.

mod audit;
mod budgets;
mod jobs;
mod keys;
mod leases;
mod migrations;
mod pool;
mod tasks;
mod usage;

pub use audit::{AuditEntry, AuditEvent};
pub use budgets::{BudgetState, Exceeded, Reservation};
pub use jobs::{JobRecord, JobRunStatus};
pub use keys::KeyInsert;
pub use leases::Lease;
pub use pool::{PoolStats, Store};
pub use tasks::{TaskRow, MAX_ATTEMPTS};
pub use usage::{Settlement, UsageFilter, UsageGroup, UsageGrouping, UsageRecord, MAX_BATCH};

/// Everything that can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the directory for the SQLite database `{path}`: {source}")]
    SqliteDirectory {
        path: String,
        source: std::io::Error,
    },
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl StoreError {
    /// True when the error says the database is unreachable rather than that a
    /// query was wrong.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Timeout(_)
                | StoreError::Database(
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Tls(_)
                )
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs the same statement-building expression against whichever database
/// the store holds. The expression is expanded once per driver, so type
/// inference works for each. Behind a transaction-pooling proxy the
/// expression runs inside one transaction (see [`pool::POOLER_BEGIN`]).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::pool::Store::Sqlite(sqlite) => {
                let $pool = &sqlite.pool;
                $body
            }
            $crate::pool::Store::Postgres($pool) => $body,
            $crate::pool::Store::PostgresPooled(pool) => {
                let mut tx = pool.begin_with($crate::pool::POOLER_BEGIN).await?;
                let out = {
                    let $pool = &mut *tx;
                    $body
                };
                tx.commit().await?;
                out
            }
        }
    };
}
pub(crate) use on_pool;
