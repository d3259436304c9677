//! The `api_keys` repository.

use crate::{on_pool, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Connection;
use switchyard_core::keys::{ApiKey, KeyHash, NewKeySpec, RateLimit, Scopes, TaskProfile};

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    prefix: String,
    name: String,
    owner: Option<String>,
    project: String,
    scopes: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    rate_limit_requests: Option<i64>,
    rate_limit_period_seconds: Option<i64>,
    task_profile: Option<String>,
    rotated_at: Option<DateTime<Utc>>,
    successor_id: Option<String>,
    predecessor_id: Option<String>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<Self> {
        let scopes = Scopes::from_db(&r.scopes)
            .map_err(|e| StoreError::Corrupt(format!("api_keys.scopes of {}: {e}", r.id)))?;
        let rate_limit = match (r.rate_limit_requests, r.rate_limit_period_seconds) {
            (Some(n), Some(p)) => {
                let n = u32::try_from(n).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let p = u32::try_from(p).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Some(RateLimit::new(n, p).map_err(|e| {
                    StoreError::Corrupt(format!("api_keys rate limit of {}: {e}", r.id))
                })?)
            }
            _ => None,
        };
        Ok(ApiKey {
            id: r.id,
            name: r.name,
            owner: r.owner,
            project: r.project,
            scopes,
            prefix: r.prefix,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
            rate_limit,
            task_profile: r
                .task_profile
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("api_keys.task_profile: {e}")))?,
            rotated_at: r.rotated_at,
            successor_id: r.successor_id,
            predecessor_id: r.predecessor_id,
        })
    }
}

/// `SELECT <every KeyRow column> FROM api_keys <rest>`, as one static string.
macro_rules! select_keys {
    ($rest:literal) => {
        concat!(
            "SELECT id, prefix, name, owner, project, scopes, created_at, expires_at, ",
            "revoked_at, last_used_at, rate_limit_requests, rate_limit_period_seconds, task_profile, ",
            "rotated_at, successor_id, predecessor_id ",
            "FROM api_keys ",
            $rest
        )
    };
}

const BY_HASH: &str = select_keys!("WHERE key_hash = $1");
const BY_ID: &str = select_keys!("WHERE id = $1");

/// What is written for a new key: the validated spec plus the hash and display
/// prefix of its secret.
pub struct KeyInsert<'a> {
    pub id: String,
    pub spec: &'a NewKeySpec,
    pub hash: KeyHash,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
}

impl KeyInsert<'_> {
    fn record(&self) -> ApiKey {
        ApiKey {
            id: self.id.clone(),
            name: self.spec.name.clone(),
            owner: self.spec.owner.clone(),
            project: self.spec.project.clone(),
            scopes: self.spec.scopes.clone(),
            prefix: self.prefix.clone(),
            created_at: self.created_at,
            expires_at: self.spec.expires_at,
            revoked_at: None,
            last_used_at: None,
            rate_limit: self.spec.rate_limit,
            task_profile: None,
            rotated_at: None,
            successor_id: None,
            predecessor_id: None,
        }
    }
}

const INSERT: &str = "INSERT INTO api_keys \
    (id, key_hash, prefix, name, owner, project, scopes, created_at, expires_at, \
    rate_limit_requests, rate_limit_period_seconds) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

macro_rules! bind_insert {
    ($k:expr) => {
        sqlx::query(INSERT)
            .bind(&$k.id)
            .bind($k.hash.to_hex())
            .bind(&$k.prefix)
            .bind(&$k.spec.name)
            .bind(&$k.spec.owner)
            .bind(&$k.spec.project)
            .bind($k.spec.scopes.to_db())
            .bind($k.created_at)
            .bind($k.spec.expires_at)
            .bind($k.spec.rate_limit.map(|r| i64::from(r.requests())))
            .bind($k.spec.rate_limit.map(|r| i64::from(r.period_seconds())))
    };
}

impl Store {
    pub async fn insert_key(&self, k: &KeyInsert<'_>) -> Result<ApiKey> {
        on_pool!(self, p => bind_insert!(k).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(k.record())
    }

    /// Inserts `k` as the first admin key, once per installation: only when no
    /// key exists yet and no replica has bootstrapped before. Safe to race.
    pub async fn bootstrap_admin_key(&self, k: &KeyInsert<'_>) -> Result<Option<ApiKey>> {
        const COUNT: &str = "SELECT COUNT(*) FROM api_keys";
        const MARK: &str = "INSERT INTO system_state (name, value, updated_at) \
            VALUES ('bootstrap_admin_key', $1, $2) ON CONFLICT (name) DO NOTHING";
        let inserted = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let existing: i64 = sqlx::query_scalar(COUNT).fetch_one(&mut *tx).await?;
            let marked = if existing > 0 {
                0
            } else {
                sqlx::query(MARK)
                    .bind(&k.id)
                    .bind(k.created_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            };
            // Nothing is written unless this call marked the bootstrap;
            // the transaction rolls back when dropped.
            if marked > 0 {
                bind_insert!(k).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            marked > 0
        });
        Ok(inserted.then(|| k.record()))
    }

    pub async fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
        let row: Option<KeyRow> = crate::read_pool!(self, p => sqlx::query_as(BY_HASH)
            .bind(hash.to_hex())
            .fetch_optional(p)
            .await)?;
        row.map(ApiKey::try_from).transpose()
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let row: Option<KeyRow> =
            crate::read_pool!(self, p => sqlx::query_as(BY_ID).bind(id).fetch_optional(p).await)?;
        row.map(ApiKey::try_from).transpose()
    }

    /// Keys ordered by creation, newest first; revoked ones only when asked.
    pub async fn list_keys(&self, include_revoked: bool) -> Result<Vec<ApiKey>> {
        const SQL: &str =
            select_keys!("WHERE ($1 OR revoked_at IS NULL) ORDER BY created_at DESC, id");
        let rows: Vec<KeyRow> = crate::read_pool!(self, p => sqlx::query_as(SQL).bind(include_revoked).fetch_all(p).await)?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    pub async fn count_keys(&self) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM api_keys";
        Ok(crate::read_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await)?)
    }

    /// Marks a key revoked at `at` (keeping an earlier revocation time). Returns
    /// the key as stored afterwards, or `None` when no such key exists.
    pub async fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        const SQL: &str =
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(id)
            .bind(at)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        self.get_key(id).await
    }

    /// Sets or clears a key's rate-limit override. `None` when no such key.
    pub async fn set_key_rate_limit(
        &self,
        id: &str,
        rate_limit: Option<RateLimit>,
    ) -> Result<Option<ApiKey>> {
        const SQL: &str = "UPDATE api_keys \
            SET rate_limit_requests = $2, rate_limit_period_seconds = $3 WHERE id = $1";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(id)
            .bind(rate_limit.map(|r| i64::from(r.requests())))
            .bind(rate_limit.map(|r| i64::from(r.period_seconds())))
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        self.get_key(id).await
    }

    /// Sets or clears a key's task profile. `None` when no such key.
    pub async fn set_key_task_profile(
        &self,
        id: &str,
        profile: Option<&TaskProfile>,
    ) -> Result<Option<ApiKey>> {
        const SQL: &str = "UPDATE api_keys SET task_profile = $2 WHERE id = $1";
        let json = profile
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        on_pool!(self, p => sqlx::query(SQL)
            .bind(id)
            .bind(json)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        self.get_key(id).await
    }

    /// Sets or clears a key's expiry. `None` when no such key.
    pub async fn set_key_expiry(
        &self,
        id: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Option<ApiKey>> {
        const SQL: &str = "UPDATE api_keys SET expires_at = $2 WHERE id = $1";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(id)
            .bind(expires_at)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        self.get_key(id).await
    }

    /// Rotates `old` in one transaction: inserts its successor (`new`, with
    /// the old key's task profile and a link back) and marks the old key
    /// rotated, expiring at `grace_ends` (or earlier, if it expired sooner
    /// anyway). Only a key that is neither revoked nor rotated already is
    /// rotated, so two concurrent rotations cannot both succeed: the loser
    /// gets `None` and nothing is written.
    pub async fn rotate_key(
        &self,
        old: &ApiKey,
        new: &KeyInsert<'_>,
        grace_ends: DateTime<Utc>,
    ) -> Result<Option<ApiKey>> {
        const MARK: &str = "UPDATE api_keys SET rotated_at = $2, successor_id = $3, \
            expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at < $4 \
            THEN expires_at ELSE $4 END \
            WHERE id = $1 AND successor_id IS NULL AND revoked_at IS NULL";
        const LINK: &str =
            "UPDATE api_keys SET predecessor_id = $2, task_profile = $3 WHERE id = $1";
        let profile = old
            .task_profile
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rotated = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let marked = sqlx::query(MARK)
                .bind(&old.id)
                .bind(new.created_at)
                .bind(&new.id)
                .bind(grace_ends)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Nothing is written unless the old key was marked; the
            // transaction rolls back when dropped.
            if marked > 0 {
                bind_insert!(new).execute(&mut *tx).await?;
                sqlx::query(LINK)
                    .bind(&new.id)
                    .bind(&old.id)
                    .bind(&profile)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            marked > 0
        });
        if !rotated {
            return Ok(None);
        }
        self.get_key(&new.id).await
    }

    /// The stored hash of a key's secret (hex), to evict it from caches.
    pub async fn key_hash(&self, id: &str) -> Result<Option<String>> {
        const SQL: &str = "SELECT key_hash FROM api_keys WHERE id = $1";
        Ok(crate::read_pool!(self, p => sqlx::query_scalar(SQL).bind(id).fetch_optional(p).await)?)
    }

    /// Writes back last-use times collected in memory; never moves one backwards.
    pub async fn touch_last_used(&self, seen: &[(String, DateTime<Utc>)]) -> Result<()> {
        const SQL: &str = "UPDATE api_keys SET last_used_at = $2 \
            WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";
        if seen.is_empty() {
            return Ok(());
        }
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for (id, at) in seen {
                sqlx::query(SQL).bind(id).bind(*at).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
