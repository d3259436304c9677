//! The audit log's hash chain in the database: holding it while appending
//! or deleting, the anchor retention leaves behind, walking it to verify
//! it, and deleting its oldest records without breaking it.
//!
//! Whoever appends or deletes holds the chain for one short transaction: on
//! PostgreSQL a transaction-scoped advisory lock (it works through a
//! transaction-pooling proxy too), on SQLite the database's write lock,
//! taken at `BEGIN IMMEDIATE` (and this process's writer connection).
//! Retention deletes a prefix of the chain in id order and records the
//! newest deleted record as the anchor, so that the chain verifies from the
//! oldest kept record and a prefix deleted any other way does not.

use crate::audit::{audit_record_columns, AuditEvent, AuditRecord};
use crate::{Result, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use switchyard_core::audit_chain::{
    chain_hash, chain_time, BreakKind, ChainBreak, ChainCheck, ChainedFields, GENESIS_HASH,
};

/// Key of the advisory lock that serialises the chain on PostgreSQL.
const CHAIN_LOCK: i64 = 0x0053_5941_5544_4954; // "SYAUDIT"

/// The chain's newest record's hash (`NULL` when it predates the chain).
pub(crate) const HEAD: &str = "SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1";
/// The anchor's hash, when retention has deleted chained records.
pub(crate) const ANCHOR_HASH: &str = "SELECT record_hash FROM audit_chain_anchor WHERE id = 1";

/// Opens a PostgreSQL transaction that holds the chain.
pub(crate) async fn begin_chain_pg<'p>(
    store: &Store,
    pool: &'p sqlx::PgPool,
) -> Result<sqlx::Transaction<'p, sqlx::Postgres>> {
    let mut tx = match store {
        Store::PostgresPooled(_) => pool.begin_with(crate::pool::POOLER_BEGIN).await?,
        _ => pool.begin().await?,
    };
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CHAIN_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Evaluates `$body` with `$tx`, a `&mut` transaction that holds the chain,
/// and commits; the whole is a `Result` of the body's value. The body
/// reaches the connection as `&mut **$tx`.
macro_rules! in_chain_tx {
    ($store:expr, $tx:ident => $body:expr) => {{
        let store: &$crate::Store = $store;
        match store {
            $crate::Store::Sqlite(sqlite) => {
                let mut turn = sqlite.writer().await?;
                let done: $crate::Result<_> = async {
                    let mut tx =
                        sqlx::Connection::begin_with(turn.conn()?, "BEGIN IMMEDIATE").await?;
                    let out = {
                        let $tx = &mut tx;
                        $body
                    };
                    tx.commit().await?;
                    Ok(out)
                }
                .await;
                if done.is_err() {
                    turn.discard();
                }
                done
            }
            $crate::Store::Postgres(pool) | $crate::Store::PostgresPooled(pool) => {
                let mut tx = $crate::audit_chain::begin_chain_pg(store, pool).await?;
                let out = {
                    let $tx = &mut tx;
                    $body
                };
                tx.commit().await?;
                Ok::<_, $crate::StoreError>(out)
            }
        }
    }};
}

impl Store {
    /// Appends an event to the audit log's hash chain: the record carries
    /// the hash of the newest record (or of retention's anchor, or the
    /// genesis hash) and its own. Appends are serialised so that concurrent
    /// writers, in this process or any other replica, never fork the chain:
    /// on PostgreSQL by a transaction-scoped advisory lock, on SQLite by the
    /// database's write lock taken at `BEGIN IMMEDIATE`.
    pub async fn record_audit(&self, e: &AuditEvent, at: DateTime<Utc>) -> Result<()> {
        let span = crate::trace::db_span!(self);
        tracing::Instrument::instrument(self.append_audit(e, at), span).await
    }

    async fn append_audit(&self, e: &AuditEvent, at: DateTime<Utc>) -> Result<()> {
        let at = chain_time(at);
        let details = if e.details.is_null() {
            "{}".to_owned()
        } else {
            e.details.to_string()
        };
        let fields = ChainedFields {
            timestamp: at,
            event: e.event.as_str(),
            actor_key_id: e.actor_key_id.as_deref(),
            actor_key: e.actor_key.as_deref(),
            project: e.project.as_deref(),
            target: e.target.as_deref(),
            task_id: e.task_id.as_deref(),
            client_ip: e.client_ip.as_deref(),
            request_id: e.request_id.as_deref(),
            details: &details,
        };
        const INSERT: &str = "INSERT INTO audit_log (timestamp, event, actor_key_id, actor_key, \
            project, target, task_id, client_ip, request_id, details, prev_hash, hash) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        let _hash: String = in_chain_tx!(self, tx => {
            let tail: Option<Option<String>> = sqlx::query_scalar(HEAD)
                .fetch_optional(&mut **tx)
                .await?;
            let prev = match tail {
                Some(Some(hash)) => hash,
                // The newest record predates the chain.
                Some(None) => GENESIS_HASH.to_owned(),
                None => sqlx::query_scalar::<_, String>(ANCHOR_HASH)
                    .fetch_optional(&mut **tx)
                    .await?
                    .unwrap_or_else(|| GENESIS_HASH.to_owned()),
            };
            let hash = chain_hash(&prev, &fields);
            sqlx::query(INSERT)
                .bind(at)
                .bind(e.event.as_str())
                .bind(&e.actor_key_id)
                .bind(&e.actor_key)
                .bind(&e.project)
                .bind(&e.target)
                .bind(&e.task_id)
                .bind(&e.client_ip)
                .bind(&e.request_id)
                .bind(&details)
                .bind(&prev)
                .bind(&hash)
                .execute(&mut **tx)
                .await?;
            hash
        })?;
        Ok(())
    }
}

/// Where the chain starts once retention has deleted older records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditAnchor {
    /// The newest record retention deleted: the oldest kept record names
    /// its hash as its predecessor.
    pub record_id: i64,
    pub record_hash: String,
    pub record_timestamp: DateTime<Utc>,
    /// Chained records retention has deleted in all.
    pub deleted_total: i64,
    pub updated_at: DateTime<Utc>,
}

/// A broken link with the record it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    #[serde(flatten)]
    pub link: ChainBreak,
    pub timestamp: DateTime<Utc>,
    pub event: String,
    /// What the break means.
    pub reason: &'static str,
}

/// The outcome of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Every link held.
    pub ok: bool,
    /// Records whose links held (up to the break, if any).
    pub checked: u64,
    /// Records written before the chain existed (before migration 8).
    pub unchained: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    /// The newest verified record's hash: record it elsewhere to detect a
    /// rewrite of the whole chain later.
    pub head: Option<String>,
    pub anchor: Option<AuditAnchor>,
    /// The first broken link.
    pub broken: Option<BrokenLink>,
}

/// Records retention deletes from the audit log per transaction at most.
pub const MAX_AUDIT_BATCH: i64 = 10_000;

impl Store {
    /// Retention's anchor, when it has deleted chained records.
    pub async fn audit_anchor(&self) -> Result<Option<AuditAnchor>> {
        const SQL: &str = "SELECT record_id, record_hash, record_timestamp, deleted_total, \
            updated_at FROM audit_chain_anchor WHERE id = 1";
        Ok(crate::read_pool!(self, p => sqlx::query_as(SQL).fetch_optional(p).await)?)
    }

    /// Up to `limit` records after id `after`, in chain (id) order.
    pub async fn audit_chain_page(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            audit_record_columns!(),
            " FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"
        );
        Ok(
            crate::read_pool!(self, p => sqlx::query_as(SQL).bind(after).bind(limit).fetch_all(p).await)?,
        )
    }

    /// Walks the whole chain, `page` records per query, from the oldest kept
    /// record, and stops at the first broken link. Appends while it runs
    /// are fine; a retention run that moves the anchor meanwhile makes the
    /// walk start over once.
    pub async fn verify_audit_chain(&self, page: i64) -> Result<ChainReport> {
        let mut report = self.walk_chain(page.max(1)).await?;
        if report
            .broken
            .as_ref()
            .is_some_and(|b| b.link.kind == BreakKind::AnchorMismatch)
            && self.audit_anchor().await? != report.anchor
        {
            report = self.walk_chain(page.max(1)).await?;
        }
        Ok(report)
    }

    async fn walk_chain(&self, page: i64) -> Result<ChainReport> {
        let anchor = self.audit_anchor().await?;
        let mut check = ChainCheck::new(anchor.as_ref().map(|a| a.record_hash.as_str()));
        let mut after = 0;
        let mut broken = None;
        'pages: loop {
            let records = self.audit_chain_page(after, page).await?;
            for r in &records {
                if let Err(link) = check.feed(&r.link()) {
                    broken = Some(BrokenLink {
                        reason: link.kind.explain(),
                        link,
                        timestamp: r.timestamp,
                        event: r.event.clone(),
                    });
                    break 'pages;
                }
                after = r.id;
            }
            if records.len() < usize::try_from(page).unwrap_or(usize::MAX) {
                break;
            }
        }
        Ok(ChainReport {
            ok: broken.is_none(),
            checked: check.checked,
            unchained: check.unchained,
            first_id: check.first_id,
            last_id: check.last_id,
            head: check.head,
            anchor,
            broken,
        })
    }

    /// Deletes up to `batch` of the oldest records (in chain order) whose
    /// time is before `before`, stopping at the first record that is not, so
    /// that only a prefix of the chain goes; records the newest deleted one
    /// as the anchor, in the same transaction. Returns how many went.
    pub async fn prune_audit(
        &self,
        before: DateTime<Utc>,
        batch: i64,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        const OLDEST: &str = "SELECT id, timestamp, hash FROM audit_log ORDER BY id LIMIT $1";
        const DELETE: &str = "DELETE FROM audit_log WHERE id <= $1";
        const ANCHOR: &str = "INSERT INTO audit_chain_anchor (id, record_id, record_hash, \
            record_timestamp, deleted_total, updated_at) VALUES (1, $1, $2, $3, $4, $5) \
            ON CONFLICT (id) DO UPDATE SET record_id = excluded.record_id, \
            record_hash = excluded.record_hash, record_timestamp = excluded.record_timestamp, \
            deleted_total = audit_chain_anchor.deleted_total + excluded.deleted_total, \
            updated_at = excluded.updated_at";
        let batch = batch.clamp(1, MAX_AUDIT_BATCH);
        in_chain_tx!(self, tx => {
            let oldest: Vec<(i64, DateTime<Utc>, Option<String>)> =
                sqlx::query_as(OLDEST).bind(batch).fetch_all(&mut **tx).await?;
            let expired = oldest.iter().take_while(|(_, t, _)| *t < before);
            match expired.last() {
                None => 0,
                Some((last_id, last_time, last_hash)) => {
                    let deleted = sqlx::query(DELETE)
                        .bind(*last_id)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                    // Records from before the chain leave no anchor: the
                    // chain still starts at the genesis hash.
                    if let Some(hash) = last_hash {
                        sqlx::query(ANCHOR)
                            .bind(*last_id)
                            .bind(hash)
                            .bind(*last_time)
                            .bind(i64::try_from(deleted).unwrap_or(i64::MAX))
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                    }
                    deleted
                }
            }
        })
    }
}
