//! Persistence for Switchyard: one [`Store`] over SQLite (default) or
//! PostgreSQL, with embedded migrations and the repositories the service uses.
//!
//! SQL is static text with `$N` parameters, which both drivers accept, so each
//! query is written once and run on whichever pool is configured.

mod audit;
mod audit_chain;
mod backup_runs;
mod budget_leases;
mod budgets;
mod console_sessions;
mod jobs;
mod keys;
mod leases;
mod migrations;
mod notices;
mod pool;
mod retention;
mod snapshot;
mod tasks;
mod trace;
mod usage;

pub use audit::{AuditEntry, AuditEvent, AuditFilter, AuditOrder, AuditRecord};
pub use audit_chain::{AuditAnchor, BrokenLink, ChainReport, MAX_AUDIT_BATCH};
pub use backup_runs::BackupRun;
pub use budget_leases::{BudgetLease, Decide, LeaseKey, LeaseRoom};
pub use budgets::{BudgetState, NewBudget};
pub use jobs::{JobRecord, JobRunStatus};
pub use keys::KeyInsert;
pub use leases::Lease;
pub use notices::NoticeRecord;
pub use pool::{PoolStats, Store};
pub use snapshot::PgSnapshot;
pub use tasks::{NewTask, TaskFinish, TaskRow, MAX_ATTEMPTS};
pub use usage::{Settlement, UsageFilter, UsageGroup, UsageGrouping, UsageRecord, MAX_BATCH};

/// Everything that can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}{hint}", hint = tls_hint(.0))]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}{hint}", hint = migration_tls_hint(.0))]
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
    /// True when the error says the database cannot be reached right now —
    /// down, restarting, failing over, refusing connections, or a connection
    /// cut under a query — rather than that a query was wrong. Callers answer
    /// these with 503 and retry them where that is safe.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Timeout(_) => true,
            StoreError::Database(e) => sqlx_error_is_unavailable(e),
            StoreError::Migration(sqlx::migrate::MigrateError::Execute(e)) => {
                sqlx_error_is_unavailable(e)
            }
            _ => false,
        }
    }
}

/// What to check when the TLS handshake with PostgreSQL failed; rustls's
/// own message says which name or authority did not match.
const TLS_HINT: &str = " (DATABASE_URL's TLS settings: with sslmode=verify-full the host in the URL must be a name the server's certificate holds; with verify-ca or verify-full, sslrootcert must name the CA that signed it)";

/// A failed TLS handshake shows as `Tls`, or as `Io` carrying rustls's
/// error when the certificate is refused.
fn tls_hint(e: &sqlx::Error) -> &'static str {
    let tls = match e {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    };
    if tls {
        TLS_HINT
    } else {
        ""
    }
}

fn migration_tls_hint(e: &sqlx::migrate::MigrateError) -> &'static str {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => tls_hint(e),
        _ => "",
    }
}

/// PostgreSQL SQLSTATEs that mean the server or the connection went away:
/// class 08 (connection exception), 57P01 admin_shutdown ("terminating
/// connection due to administrator command"), 57P02 crash_shutdown, 57P03
/// cannot_connect_now ("the database system is starting up"), 53300
/// too_many_connections.
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

fn sqlx_error_is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| unavailable_sqlstate(&c)),
        _ => false,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs the same statement-building expression against whichever database
/// the store holds. The expression is expanded once per driver, so type
/// inference works for each. Behind a transaction-pooling proxy the
/// expression runs inside one transaction (see [`pool::POOLER_BEGIN`]).
///
/// Each expansion is one operation of the trace: a span named after the
/// store method it is in.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {{
        let store: &$crate::pool::Store = $store;
        let span = $crate::trace::db_span!(store);
        ::tracing::Instrument::instrument(
            async {
                ::std::result::Result::<_, $crate::StoreError>::Ok(match store {
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
                })
            },
            span,
        )
        .await?
    }};
}
pub(crate) use on_pool;

/// `on_pool!` for statements that only read: when the database turns out to
/// be unreachable (typically a pooled connection killed by a restart or a
/// failover), the read is tried once more on another connection.
macro_rules! read_pool {
    ($store:expr, $pool:ident => $body:expr) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            let attempt: $crate::Result<_> =
                async { Ok($crate::on_pool!($store, $pool => $body)?) }.await;
            match attempt {
                Err(e) if tries < 2 && e.is_unavailable() => {
                    tracing::debug!(error = %e, "a read met a lost database connection; trying once more");
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use read_pool;
