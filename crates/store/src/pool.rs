//! Connecting: the pool settings (size, pre-ping, recycling, statement cache,
//! statement echo), health probes and migrations.

use crate::{migrations, on_pool, Result, StoreError};
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, PgPool, SqlitePool};
use std::str::FromStr;
use std::time::{Duration, Instant};
use switchyard_core::config::{DatabaseConfig, DatabaseKind};

/// The database, SQLite or PostgreSQL. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(Sqlite),
    Postgres(PgPool),
    /// PostgreSQL behind a transaction-pooling proxy (pgbouncer
    /// `pool_mode = transaction`): every operation is one transaction.
    PostgresPooled(PgPool),
}

/// A SQLite pool, and one connection of its own for the hot writes.
///
/// SQLite admits one writer at a time, and a connection that finds the
/// database locked waits in SQLite's busy handler, which sleeps 1, 2, 5 …
/// milliseconds between tries. The writes on the request path (budget
/// reservations) and the usage writer's batches therefore take turns on one
/// dedicated connection behind a fair in-process queue: they wait only as
/// long as the write ahead of them, and skip the pool's hand-over (a ping on
/// every return, each a trip to the connection's thread). Other processes
/// on the same file still meet the busy handler.
#[derive(Clone, Debug)]
pub struct Sqlite {
    pub(crate) pool: SqlitePool,
    options: std::sync::Arc<SqliteConnectOptions>,
    writer: std::sync::Arc<tokio::sync::Mutex<Option<sqlx::SqliteConnection>>>,
}

/// This process's turn on the SQLite writer connection.
pub(crate) struct WriterTurn<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<sqlx::SqliteConnection>>,
}

impl WriterTurn<'_> {
    pub(crate) fn conn(&mut self) -> Result<&mut sqlx::SqliteConnection> {
        self.slot
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("the SQLite writer connection is missing".into()))
    }

    /// Drops the connection after a failure; the next turn opens a new one.
    pub(crate) fn discard(&mut self) {
        *self.slot = None;
    }
}

impl Sqlite {
    /// Waits for this process's turn to write, opening the writer
    /// connection if there is none.
    pub(crate) async fn writer(&self) -> Result<WriterTurn<'_>> {
        let mut slot = self.writer.lock().await;
        if slot.is_none() {
            *slot = Some(self.options.connect().await?);
        }
        Ok(WriterTurn { slot })
    }
}

/// How each operation starts behind a transaction-pooling proxy. The proxy
/// hands this client a server connection for the length of one transaction
/// only, and that connection may still hold named statements prepared by
/// other clients; dropping them first means the statements this transaction
/// prepares can neither collide with nor outlive it.
pub const POOLER_BEGIN: &str = "BEGIN; DEALLOCATE ALL";

/// Key of the transaction-scoped advisory lock that serialises migrations
/// when session locks are unavailable (behind a transaction-pooling proxy).
const MIGRATION_LOCK: i64 = 0x5357_4954_4348; // "SWITCH"

/// Connection pool occupancy, for `/db-check` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// sqlx logs statements through `log` levels; `DATABASE_ECHO` lifts them to info.
fn statement_log_level(echo: bool) -> log::LevelFilter {
    if echo {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Off
    }
}

/// A connection idle for longer than this is pinged before it is handed
/// out; one returned to the pool more recently has just worked, and pinging
/// it would cost every query an extra round trip.
const PRE_PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Pool settings shared by both engines: size, pre-ping, recycling, timeouts.
fn pool_options<DB: sqlx::Database>(cfg: &DatabaseConfig) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(cfg.pool_size)
        .min_connections(0)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PRE_PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .max_lifetime(cfg.max_lifetime)
        .idle_timeout(Duration::from_secs(600))
        .acquire_timeout(cfg.acquire_timeout)
}

impl Store {
    /// Opens a pool for the configured database. The pool is lazy: no
    /// connection is made until first use, so a database that is down at
    /// start-up is reported by the probes instead of crashing the process.
    pub fn connect_lazy(cfg: &DatabaseConfig) -> Result<Self> {
        let url = cfg.url.expose();
        match cfg.kind {
            DatabaseKind::Sqlite => {
                let mut opts = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
                    .statement_cache_capacity(cfg.statement_cache_capacity.max(1));
                opts = opts.log_statements(statement_log_level(cfg.echo));
                let dir = opts.get_filename().parent().map(|p| p.to_path_buf());
                if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(&dir).map_err(|source| {
                        StoreError::SqliteDirectory {
                            path: dir.display().to_string(),
                            source,
                        }
                    })?;
                }
                let pool = pool_options::<sqlx::Sqlite>(cfg).connect_lazy_with(opts.clone());
                Ok(Store::Sqlite(Sqlite {
                    pool,
                    options: std::sync::Arc::new(opts),
                    writer: Default::default(),
                }))
            }
            DatabaseKind::Postgres => {
                let cache = if cfg.transaction_pooling {
                    0
                } else {
                    cfg.statement_cache_capacity
                };
                let opts = PgConnectOptions::from_str(url)?
                    .statement_cache_capacity(cache)
                    .application_name("switchyard")
                    .log_statements(statement_log_level(cfg.echo));
                let pool = pool_options::<sqlx::Postgres>(cfg).connect_lazy_with(opts);
                Ok(if cfg.transaction_pooling {
                    Store::PostgresPooled(pool)
                } else {
                    Store::Postgres(pool)
                })
            }
        }
    }

    pub fn kind(&self) -> DatabaseKind {
        match self {
            Store::Sqlite(_) => DatabaseKind::Sqlite,
            Store::Postgres(_) | Store::PostgresPooled(_) => DatabaseKind::Postgres,
        }
    }

    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize> {
        let before = self.applied_versions().await.unwrap_or_default().len();
        let mut migrator = migrations::migrator(self.kind()).await?;
        match self {
            Store::Sqlite(s) => migrator.run(&s.pool).await?,
            Store::Postgres(p) => migrator.run(p).await?,
            Store::PostgresPooled(p) => {
                // Session advisory locks do not survive transaction pooling;
                // run every migration in one transaction under a
                // transaction-scoped lock instead.
                migrator.set_locking(false);
                let mut tx = p.begin_with(POOLER_BEGIN).await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await?;
                migrator.run(&mut *tx).await?;
                tx.commit().await?;
            }
        }
        let after = self.applied_versions().await?.len();
        Ok(after.saturating_sub(before))
    }

    async fn applied_versions(&self) -> Result<Vec<i64>> {
        const SQL: &str =
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version";
        Ok(on_pool!(self, p => sqlx::query_scalar::<_, i64>(SQL).fetch_all(p).await)?)
    }

    /// Migrations this binary knows but the database has not applied.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>> {
        let applied = match self.applied_versions().await {
            Ok(v) => v,
            // No migrations table yet: everything is pending.
            Err(StoreError::Database(sqlx::Error::Database(_))) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(migrations::known_versions(self.kind())
            .into_iter()
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// Opens one connection outside the pool and closes it, bounded by
    /// `timeout`: the database's own answer (refused, unknown host, bad
    /// password, TLS) where the pool would only report that it timed out
    /// waiting. For commands, before their first query; SQLite files are
    /// opened (and created) by the pool itself.
    pub async fn reach(&self, timeout: Duration) -> Result<()> {
        let (Store::Postgres(pool) | Store::PostgresPooled(pool)) = self else {
            return Ok(());
        };
        let options = pool.connect_options();
        let conn = tokio::time::timeout(timeout, options.connect())
            .await
            .map_err(|_| StoreError::Timeout(timeout))??;
        sqlx::Connection::close(conn).await?;
        Ok(())
    }

    /// A round trip to the database, bounded by `timeout`; returns its latency.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let query = async {
            on_pool!(self, p => sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(p).await?);
            Ok::<(), StoreError>(())
        };
        tokio::time::timeout(timeout, query)
            .await
            .map_err(|_| StoreError::Timeout(timeout))??;
        Ok(started.elapsed())
    }

    pub fn pool_stats(&self) -> PoolStats {
        fn stats<DB: sqlx::Database>(p: &sqlx::Pool<DB>) -> PoolStats {
            PoolStats {
                size: p.size(),
                idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
                max: p.options().get_max_connections(),
            }
        }
        match self {
            Store::Sqlite(s) => stats(&s.pool),
            Store::Postgres(p) | Store::PostgresPooled(p) => stats(p),
        }
    }

    /// Closes every connection; waits for checked-out ones to come back.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => {
                if let Some(writer) = s.writer.lock().await.take() {
                    if let Err(e) = sqlx::Connection::close(writer).await {
                        tracing::warn!(error = %e, "closing the SQLite writer connection failed");
                    }
                }
                s.pool.close().await;
            }
            Store::Postgres(p) | Store::PostgresPooled(p) => p.close().await,
        }
    }
}
