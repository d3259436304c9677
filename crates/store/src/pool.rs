//! Connecting: the pool settings (size, pre-ping, recycling, statement cache,
//! statement echo), health probes and migrations.

use crate::{migrations, on_pool, Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, PgPool, SqlitePool};
use std::str::FromStr;
use std::time::{Duration, Instant};
use switchyard_core::config::{DatabaseConfig, DatabaseKind};

/// The database, SQLite or PostgreSQL. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

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
                let pool = SqlitePoolOptions::new()
                    .max_connections(cfg.pool_size)
                    .min_connections(0)
                    .test_before_acquire(true)
                    .max_lifetime(cfg.max_lifetime)
                    .idle_timeout(Duration::from_secs(600))
                    .acquire_timeout(cfg.acquire_timeout)
                    .connect_lazy_with(opts);
                Ok(Store::Sqlite(pool))
            }
            DatabaseKind::Postgres => {
                let opts = PgConnectOptions::from_str(url)?
                    .statement_cache_capacity(cfg.statement_cache_capacity)
                    .application_name("switchyard")
                    .log_statements(statement_log_level(cfg.echo));
                let pool = PgPoolOptions::new()
                    .max_connections(cfg.pool_size)
                    .min_connections(0)
                    .test_before_acquire(true)
                    .max_lifetime(cfg.max_lifetime)
                    .idle_timeout(Duration::from_secs(600))
                    .acquire_timeout(cfg.acquire_timeout)
                    .connect_lazy_with(opts);
                Ok(Store::Postgres(pool))
            }
        }
    }

    pub fn kind(&self) -> DatabaseKind {
        match self {
            Store::Sqlite(_) => DatabaseKind::Sqlite,
            Store::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize> {
        let before = self.applied_versions().await.unwrap_or_default().len();
        let migrator = migrations::migrator(self.kind()).await?;
        on_pool!(self, p => migrator.run(p).await)?;
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

    /// A round trip to the database, bounded by `timeout`; returns its latency.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let query = async {
            on_pool!(self, p => sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(p).await)
        };
        tokio::time::timeout(timeout, query)
            .await
            .map_err(|_| StoreError::Timeout(timeout))??;
        Ok(started.elapsed())
    }

    pub fn pool_stats(&self) -> PoolStats {
        on_pool!(self, p => PoolStats {
            size: p.size(),
            idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
            max: p.options().get_max_connections(),
        })
    }

    /// Closes every connection; waits for checked-out ones to come back.
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}
