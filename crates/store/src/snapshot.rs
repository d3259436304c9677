//! What backups need from the database: a consistent copy (SQLite's
//! `VACUUM INTO`, or a PostgreSQL snapshot exported for `pg_dump
//! --snapshot`), and a summary of every table — row count and a checksum of
//! its rows in primary-key order — computed inside that same snapshot, so
//! that a restore can be compared with what was copied.
//!
//! The checksum is SHA-256 over one line per row, the row in the engine's
//! own canonical text (PostgreSQL's record text under fixed output
//! settings; SQLite's `quote()` of each column): it compares a database
//! with a restore of it on the same engine.

use crate::{Result, Store, StoreError};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, SqliteConnection};
use std::path::Path;
use switchyard_core::backup::TableSummary;

/// Output settings that make PostgreSQL's text form of a row independent of
/// the session (time zone, date style, float digits, bytea format).
const PG_STABLE_OUTPUT: [&str; 5] = [
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, MDY'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL bytea_output = 'hex'",
];

/// `"name"`, quoted for SQL.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A database name that needs no quoting.
fn plain_name(name: &str) -> Result<&str> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Corrupt(format!(
            "`{name}` is not a plain database name"
        )))
    }
}

/// Hashes a stream of row lines into a summary.
async fn summarise(
    name: &str,
    mut rows: BoxStream<'_, std::result::Result<String, sqlx::Error>>,
) -> Result<TableSummary> {
    let mut hash = Sha256::new();
    let mut count = 0u64;
    while let Some(line) = rows.try_next().await? {
        hash.update(line.as_bytes());
        hash.update(b"\n");
        count += 1;
    }
    Ok(TableSummary {
        name: name.to_owned(),
        rows: count,
        sha256: hex::encode(hash.finalize()),
    })
}

async fn pg_tables(conn: &mut PgConnection) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY c.relname::text",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// (Boxed here, where the connection's lifetime is known, so that callers'
/// futures are `Send` for any lifetime.)
fn pg_summaries(conn: &mut PgConnection) -> BoxFuture<'_, Result<Vec<TableSummary>>> {
    Box::pin(pg_summaries_inner(conn))
}

async fn pg_summaries_inner(conn: &mut PgConnection) -> Result<Vec<TableSummary>> {
    for setting in PG_STABLE_OUTPUT {
        sqlx::query(setting).execute(&mut *conn).await?;
    }
    let mut out = Vec::new();
    for table in pg_tables(conn).await? {
        let key: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = (quote_ident(current_schema()) || '.' || quote_ident($1))::regclass \
               AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
        )
        .bind(table.clone())
        .fetch_all(&mut *conn)
        .await?;
        let order = if key.is_empty() {
            "1".to_owned()
        } else {
            key.iter()
                .map(|c| format!("t.{}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!(
            "SELECT t::text COLLATE \"C\" FROM {} t ORDER BY {order}",
            ident(&table)
        );
        let rows = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *conn);
        out.push(summarise(&table, rows).await?);
    }
    Ok(out)
}

fn sqlite_summaries(conn: &mut SqliteConnection) -> BoxFuture<'_, Result<Vec<TableSummary>>> {
    Box::pin(sqlite_summaries_inner(conn))
}

async fn sqlite_summaries_inner(conn: &mut SqliteConnection) -> Result<Vec<TableSummary>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for table in tables {
        let columns: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, pk FROM pragma_table_info($1) ORDER BY cid")
                .bind(table.clone())
                .fetch_all(&mut *conn)
                .await?;
        if columns.is_empty() {
            return Err(StoreError::Corrupt(format!("table {table} has no columns")));
        }
        let line = columns
            .iter()
            .map(|(c, _)| format!("quote({})", ident(c)))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let mut key: Vec<&(String, i64)> = columns.iter().filter(|(_, pk)| *pk > 0).collect();
        key.sort_by_key(|(_, pk)| *pk);
        // Without a declared key, rowids are not stable across VACUUM:
        // order by the row's text instead.
        let order = if key.is_empty() {
            "1".to_owned()
        } else {
            key.iter()
                .map(|(c, _)| ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!("SELECT {line} FROM {} ORDER BY {order}", ident(&table));
        let rows = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *conn);
        out.push(summarise(&table, rows).await?);
    }
    Ok(out)
}

/// A PostgreSQL transaction holding an exported snapshot: `pg_dump
/// --snapshot=ID` copies exactly what [`PgSnapshot::table_summaries`] sees,
/// for as long as this lives.
pub struct PgSnapshot {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    id: String,
}

/// The newest schema migration applied (0: none).
const SCHEMA_VERSION_SQL: &str =
    "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";

impl PgSnapshot {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub async fn table_summaries(&mut self) -> Result<Vec<TableSummary>> {
        pg_summaries(&mut self.tx).await
    }

    /// The newest schema migration as of the snapshot, so that a backup's
    /// manifest names the schema its dump holds even when a migration
    /// lands while it is taken.
    pub async fn schema_version(&mut self) -> Result<i64> {
        Ok(sqlx::query_scalar::<_, i64>(SCHEMA_VERSION_SQL)
            .fetch_one(&mut *self.tx)
            .await?)
    }

    /// Ends the snapshot's transaction.
    pub async fn finish(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl Store {
    /// The newest schema migration the database has applied (0: none).
    pub async fn schema_version(&self) -> Result<i64> {
        Ok(
            crate::on_pool!(self, p => sqlx::query_scalar::<_, i64>(SCHEMA_VERSION_SQL).fetch_one(p).await)?,
        )
    }

    /// The tables of the database (its current schema, for PostgreSQL).
    pub async fn table_names(&self) -> Result<Vec<String>> {
        match self {
            Store::Sqlite(s) => Ok(sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
                 ORDER BY name",
            )
            .fetch_all(&s.pool)
            .await?),
            Store::Postgres(p) | Store::PostgresPooled(p) => {
                let mut conn = p.acquire().await?;
                pg_tables(&mut conn).await
            }
        }
    }

    /// Every table's row count and checksum, read in one consistent
    /// snapshot.
    pub async fn table_summaries(&self) -> Result<Vec<TableSummary>> {
        match self {
            Store::Sqlite(s) => {
                let mut conn = s.pool.acquire().await?;
                let mut tx = conn.begin().await?;
                let out = sqlite_summaries(&mut tx).await?;
                tx.rollback().await?;
                Ok(out)
            }
            Store::Postgres(p) | Store::PostgresPooled(p) => {
                let mut tx = p
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
                let out = pg_summaries(&mut tx).await?;
                tx.rollback().await?;
                Ok(out)
            }
        }
    }

    /// Writes a consistent copy of a SQLite database to `path` (which must
    /// not exist) while the service keeps running: `VACUUM INTO`.
    pub async fn sqlite_copy_into(&self, path: &Path) -> Result<()> {
        let Store::Sqlite(s) = self else {
            return Err(StoreError::Corrupt(
                "VACUUM INTO is for SQLite databases".into(),
            ));
        };
        let target = path.to_str().ok_or_else(|| {
            StoreError::Corrupt(format!("{} is not a UTF-8 path", path.display()))
        })?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&s.pool)
            .await?;
        Ok(())
    }

    /// Opens a read-only, repeatable-read transaction on PostgreSQL and
    /// exports its snapshot for `pg_dump --snapshot`.
    pub async fn pg_export_snapshot(&self) -> Result<PgSnapshot> {
        let pool =
            match self {
                Store::Postgres(p) => p,
                Store::PostgresPooled(_) => return Err(StoreError::Corrupt(
                    "a backup needs a session of its own on PostgreSQL: point DATABASE_URL at the \
                     database itself, not at a transaction-pooling proxy, for `backup create`"
                        .into(),
                )),
                Store::Sqlite(_) => {
                    return Err(StoreError::Corrupt(
                        "snapshots are exported by PostgreSQL only".into(),
                    ))
                }
            };
        let mut tx = pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *tx)
            .await?;
        Ok(PgSnapshot { tx, id })
    }

    /// Creates a PostgreSQL database (a scratch database for a restore
    /// test); `name` is lowercase letters, digits and `_`.
    pub async fn pg_create_database(&self, name: &str) -> Result<()> {
        let sql = format!("CREATE DATABASE {}", plain_name(name)?);
        crate::on_pool!(self, p => sqlx::query(&sql).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Drops a PostgreSQL database, ending its sessions.
    pub async fn pg_drop_database(&self, name: &str) -> Result<()> {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", plain_name(name)?);
        crate::on_pool!(self, p => sqlx::query(&sql).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Empties a PostgreSQL database's `public` schema (a scratch database).
    pub async fn pg_reset_public_schema(&self) -> Result<()> {
        for sql in [
            "DROP SCHEMA IF EXISTS public CASCADE",
            "CREATE SCHEMA public",
        ] {
            crate::on_pool!(self, p => sqlx::query(sql).execute(p).await.map(|_| ()))?;
        }
        Ok(())
    }

    /// The PostgreSQL server's major version (e.g. 15).
    pub async fn pg_server_major(&self) -> Result<u32> {
        let num: String = crate::on_pool!(self, p => sqlx::query_scalar("SHOW server_version_num").fetch_one(p).await)?;
        num.trim()
            .parse::<u32>()
            .map(|n| n / 10_000)
            .map_err(|e| StoreError::Corrupt(format!("server_version_num `{num}`: {e}")))
    }
}
