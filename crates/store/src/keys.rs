//! The `api_keys` repository.

use crate::{on_pool, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Connection;
use switchyard_core::keys::{ApiKey, KeyHash, NewKeySpec, Scopes};

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
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<Self> {
        let scopes = Scopes::from_db(&r.scopes)
            .map_err(|e| StoreError::Corrupt(format!("api_keys.scopes of {}: {e}", r.id)))?;
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
        })
    }
}

const BY_HASH: &str = "SELECT id, prefix, name, owner, project, scopes, created_at, \
    expires_at, revoked_at, last_used_at FROM api_keys WHERE key_hash = $1";
const BY_ID: &str = "SELECT id, prefix, name, owner, project, scopes, created_at, \
    expires_at, revoked_at, last_used_at FROM api_keys WHERE id = $1";

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
        }
    }
}

const INSERT: &str = "INSERT INTO api_keys \
    (id, key_hash, prefix, name, owner, project, scopes, created_at, expires_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

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
            if existing > 0 {
                return Ok(None);
            }
            let marked = sqlx::query(MARK)
                .bind(&k.id)
                .bind(k.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if marked == 0 {
                return Ok(None);
            }
            bind_insert!(k).execute(&mut *tx).await?;
            tx.commit().await?;
            true
        });
        Ok(inserted.then(|| k.record()))
    }

    pub async fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
        let row: Option<KeyRow> = on_pool!(self, p => sqlx::query_as(BY_HASH)
            .bind(hash.to_hex())
            .fetch_optional(p)
            .await)?;
        row.map(ApiKey::try_from).transpose()
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let row: Option<KeyRow> =
            on_pool!(self, p => sqlx::query_as(BY_ID).bind(id).fetch_optional(p).await)?;
        row.map(ApiKey::try_from).transpose()
    }

    /// Keys ordered by creation, newest first; revoked ones only when asked.
    pub async fn list_keys(&self, include_revoked: bool) -> Result<Vec<ApiKey>> {
        const SQL: &str =
            "SELECT id, prefix, name, owner, project, scopes, created_at, expires_at, \
            revoked_at, last_used_at FROM api_keys \
            WHERE ($1 OR revoked_at IS NULL) ORDER BY created_at DESC, id";
        let rows: Vec<KeyRow> =
            on_pool!(self, p => sqlx::query_as(SQL).bind(include_revoked).fetch_all(p).await)?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    pub async fn count_keys(&self) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM api_keys";
        Ok(on_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await)?)
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
