//! The key service: issuing, revoking and changing API keys, shared by the
//! admin API and the `keys` CLI so both write the same rows and the same
//! audit events. A change evicts the key from this replica's cache (and the
//! shared tier) at once; other replicas follow within the cache TTL.

use crate::audit::{self, Actor};
use crate::auth::KeyAuthority;
use chrono::{DateTime, Utc};
use switchyard_core::audit::AuditKind;
use switchyard_core::keys::{
    new_id, ApiKey, KeyUnusable, NewKeySecret, NewKeySpec, RateLimit, Scopes, TaskProfile,
};
use switchyard_core::rotation::{RotationPolicy, MAX_GRACE_DAYS};
use switchyard_core::Secret;
use switchyard_store::{AuditEvent, KeyInsert, Store, StoreError};

/// A new key and its secret, which exists in the clear only in this value.
pub struct IssuedKey {
    pub key: ApiKey,
    pub secret: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    #[error("{0}")]
    Invalid(String),
}

/// Why a key was not rotated.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("no key with id `{0}`")]
    NotFound(String),
    #[error("the key `{0}` is revoked; issue a new key instead")]
    Revoked(String),
    #[error("the key `{0}` has expired; issue a new key instead")]
    Expired(String),
    #[error("the key `{id}` was rotated already; its successor is `{successor}`")]
    AlreadyRotated { id: String, successor: String },
    #[error("grace_days must be from 0 to {max}", max = MAX_GRACE_DAYS)]
    Grace,
    #[error(transparent)]
    Issue(#[from] IssueError),
}

impl From<StoreError> for RotateError {
    fn from(e: StoreError) -> Self {
        Self::Issue(IssueError::Store(e))
    }
}

/// A rotation's outcome: the successor with its secret, and the old key as
/// it is now (rotated, expiring at the end of its grace period).
pub struct Rotated {
    pub successor: IssuedKey,
    pub previous: ApiKey,
}

/// What start-up did about the first admin key.
pub enum Bootstrap {
    /// Keys already existed; nothing was done.
    NotNeeded,
    /// The operator's `ADMIN_API_KEY` was installed.
    Installed(ApiKey),
    /// A key was generated; its secret must be shown once.
    Generated(IssuedKey),
}

#[derive(Clone)]
pub struct Keys {
    store: Store,
    /// The serving cache to evict changed keys from; none in the CLI.
    authority: Option<KeyAuthority>,
}

fn insert_for<'a>(secret: &NewKeySecret, spec: &'a NewKeySpec, at: DateTime<Utc>) -> KeyInsert<'a> {
    KeyInsert {
        id: new_id("key"),
        spec,
        hash: secret.hash(),
        prefix: secret.display_prefix(),
        created_at: at,
    }
}

impl Keys {
    pub fn new(store: Store, authority: Option<KeyAuthority>) -> Self {
        Self { store, authority }
    }

    pub async fn get(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.store.get_key(id).await
    }

    pub async fn list(&self, include_revoked: bool) -> Result<Vec<ApiKey>, StoreError> {
        self.store.list_keys(include_revoked).await
    }

    /// The working, unrotated keys past their due date under `policy`, with
    /// that date, oldest due first.
    pub async fn due(
        &self,
        policy: &RotationPolicy,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ApiKey, DateTime<Utc>)>, StoreError> {
        let mut due: Vec<(ApiKey, DateTime<Utc>)> = self
            .store
            .list_keys(false)
            .await?
            .into_iter()
            .filter(|k| policy.is_due(k, now))
            .filter_map(|k| policy.due_at(&k).map(|at| (k, at)))
            .collect();
        due.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
        Ok(due)
    }

    pub async fn issue(&self, spec: &NewKeySpec, actor: &Actor) -> Result<IssuedKey, IssueError> {
        let secret = NewKeySecret::generate().map_err(|e| IssueError::Random(e.to_string()))?;
        let now = switchyard_core::now();
        let key = self
            .store
            .insert_key(&insert_for(&secret, spec, now))
            .await?;
        self.audit(AuditKind::KeyCreated, &key, actor, key_details(&key))
            .await;
        tracing::info!(key_id = %key.id, prefix = %key.prefix, project = %key.project, "API key created");
        Ok(IssuedKey {
            key,
            secret: secret.secret().clone(),
        })
    }

    /// Revokes a key; `None` when it does not exist. Revoking twice keeps
    /// the first time (and audits once).
    pub async fn revoke(&self, id: &str, actor: &Actor) -> Result<Option<ApiKey>, StoreError> {
        let now = switchyard_core::now();
        let Some(key) = self.store.revoke_key(id, now).await? else {
            return Ok(None);
        };
        self.forget(id).await?;
        if key.revoked_at == Some(now) {
            self.audit(AuditKind::KeyRevoked, &key, actor, key_details(&key))
                .await;
            tracing::info!(key_id = %key.id, prefix = %key.prefix, "API key revoked");
        }
        Ok(Some(key))
    }

    /// Sets or clears a key's rate-limit override; `None` when the key does
    /// not exist.
    pub async fn set_rate_limit(
        &self,
        id: &str,
        rate_limit: Option<RateLimit>,
        actor: &Actor,
    ) -> Result<Option<ApiKey>, StoreError> {
        let Some(key) = self.store.set_key_rate_limit(id, rate_limit).await? else {
            return Ok(None);
        };
        self.forget(id).await?;
        self.audit(
            AuditKind::KeyRateLimitChanged,
            &key,
            actor,
            key_details(&key),
        )
        .await;
        tracing::info!(key_id = %key.id, rate_limit = ?key.rate_limit, "API key rate limit changed");
        Ok(Some(key))
    }

    /// Sets (or with `None` clears) what a key's agent tasks may use;
    /// `None` when the key does not exist.
    pub async fn set_task_profile(
        &self,
        id: &str,
        profile: Option<&TaskProfile>,
        actor: &Actor,
    ) -> Result<Option<ApiKey>, StoreError> {
        let Some(key) = self.store.set_key_task_profile(id, profile).await? else {
            return Ok(None);
        };
        self.forget(id).await?;
        let details = serde_json::to_value(&key.task_profile).unwrap_or_default();
        self.audit(AuditKind::KeyTaskProfileChanged, &key, actor, details)
            .await;
        tracing::info!(key_id = %key.id, "API key task profile changed");
        Ok(Some(key))
    }

    /// Sets (or with `None` clears) a key's expiry; `None` when the key does
    /// not exist. The time is the caller's to check (in the future).
    pub async fn set_expiry(
        &self,
        id: &str,
        expires_at: Option<DateTime<Utc>>,
        actor: &Actor,
    ) -> Result<Option<ApiKey>, StoreError> {
        let Some(key) = self.store.set_key_expiry(id, expires_at).await? else {
            return Ok(None);
        };
        self.forget(id).await?;
        let details = serde_json::json!({ "prefix": key.prefix, "expires_at": key.expires_at });
        self.audit(AuditKind::KeyExpiryChanged, &key, actor, details)
            .await;
        tracing::info!(key_id = %key.id, expires_at = ?key.expires_at, "API key expiry changed");
        Ok(Some(key))
    }

    /// Rotates a key: issues a successor with the same name, owner,
    /// project, scopes, rate limit and task profile (and, when the old key
    /// had an expiry, the same lifetime from now), and lets the old key work
    /// for `grace_days` more (0: it stops at once). Both keys are audited.
    pub async fn rotate(
        &self,
        id: &str,
        grace_days: u32,
        actor: &Actor,
    ) -> Result<Rotated, RotateError> {
        if grace_days > MAX_GRACE_DAYS {
            return Err(RotateError::Grace);
        }
        let now = switchyard_core::now();
        let Some(old) = self.store.get_key(id).await? else {
            return Err(RotateError::NotFound(id.to_owned()));
        };
        if let Some(successor) = &old.successor_id {
            return Err(RotateError::AlreadyRotated {
                id: id.to_owned(),
                successor: successor.clone(),
            });
        }
        match old.check_usable(now) {
            Ok(()) => {}
            Err(KeyUnusable::Revoked) => return Err(RotateError::Revoked(id.to_owned())),
            Err(KeyUnusable::Expired) => return Err(RotateError::Expired(id.to_owned())),
        }
        let secret = NewKeySecret::generate().map_err(|e| IssueError::Random(e.to_string()))?;
        let spec = NewKeySpec {
            name: old.name.clone(),
            owner: old.owner.clone(),
            project: old.project.clone(),
            scopes: old.scopes.clone(),
            expires_at: old.expires_at.map(|at| now + (at - old.created_at)),
            rate_limit: old.rate_limit,
        };
        let grace_ends = now + chrono::Duration::days(i64::from(grace_days));
        let insert = insert_for(&secret, &spec, now);
        let Some(successor) = self.store.rotate_key(&old, &insert, grace_ends).await? else {
            // Lost a race with a concurrent rotation or revocation.
            let current = self.store.get_key(id).await?;
            return Err(match current.and_then(|k| k.successor_id) {
                Some(successor) => RotateError::AlreadyRotated {
                    id: id.to_owned(),
                    successor,
                },
                None => RotateError::Revoked(id.to_owned()),
            });
        };
        self.forget(id).await?;
        let previous = self
            .store
            .get_key(id)
            .await?
            .ok_or_else(|| RotateError::NotFound(id.to_owned()))?;
        let mut created = key_details(&successor);
        if let Some(obj) = created.as_object_mut() {
            obj.insert("rotated_from".into(), old.id.clone().into());
        }
        self.audit(AuditKind::KeyCreated, &successor, actor, created)
            .await;
        let rotated = serde_json::json!({
            "prefix": previous.prefix,
            "successor_id": successor.id,
            "successor_prefix": successor.prefix,
            "grace_days": grace_days,
            "grace_ends_at": previous.expires_at,
        });
        self.audit(AuditKind::KeyRotated, &previous, actor, rotated)
            .await;
        tracing::info!(key_id = %previous.id, successor_id = %successor.id,
            grace_ends_at = ?previous.expires_at, "API key rotated");
        Ok(Rotated {
            successor: IssuedKey {
                key: successor,
                secret: secret.secret().clone(),
            },
            previous,
        })
    }

    /// On an empty database, creates the first admin key: the configured
    /// one, or a fresh one whose secret is returned for printing. Safe across
    /// replicas.
    pub async fn bootstrap_admin(
        &self,
        configured: Option<&Secret>,
    ) -> Result<Bootstrap, IssueError> {
        if self.store.count_keys().await? > 0 {
            return Ok(Bootstrap::NotNeeded);
        }
        let secret = match configured {
            Some(s) => NewKeySecret::from_existing(s.expose())
                .map_err(|e| IssueError::Invalid(format!("ADMIN_API_KEY: {e}")))?,
            None => NewKeySecret::generate().map_err(|e| IssueError::Random(e.to_string()))?,
        };
        let now = switchyard_core::now();
        let spec = NewKeySpec::new(
            "bootstrap-admin",
            None,
            "default",
            Scopes::admin(),
            None,
            now,
        )
        .map_err(|e| IssueError::Invalid(e.to_string()))?;
        let Some(key) = self
            .store
            .bootstrap_admin_key(&insert_for(&secret, &spec, now))
            .await?
        else {
            return Ok(Bootstrap::NotNeeded);
        };
        let actor = Actor {
            via: "bootstrap",
            ..Actor::default()
        };
        self.audit(AuditKind::KeyCreated, &key, &actor, key_details(&key))
            .await;
        Ok(if configured.is_some() {
            Bootstrap::Installed(key)
        } else {
            Bootstrap::Generated(IssuedKey {
                key,
                secret: secret.secret().clone(),
            })
        })
    }

    async fn forget(&self, id: &str) -> Result<(), StoreError> {
        match &self.authority {
            Some(a) => a.forget(id).await,
            None => Ok(()),
        }
    }

    async fn audit(
        &self,
        kind: AuditKind,
        key: &ApiKey,
        actor: &Actor,
        details: serde_json::Value,
    ) {
        let mut details = details;
        if let Some(obj) = details.as_object_mut() {
            obj.entry("via").or_insert_with(|| actor.via.into());
        }
        let entry = actor.stamp(AuditEvent {
            project: Some(key.project.clone()),
            target: Some(key.id.clone()),
            details,
            ..AuditEvent::new(kind)
        });
        audit::record(&self.store, &entry, switchyard_core::now()).await;
    }
}

fn key_details(key: &ApiKey) -> serde_json::Value {
    serde_json::json!({
        "name": key.name,
        "prefix": key.prefix,
        "scopes": key.scopes,
        "rate_limit": key.rate_limit,
    })
}
