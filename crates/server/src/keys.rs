//! Issuing and revoking API keys, shared by the admin API and the `keys` CLI
//! so both write the same rows and the same audit events.

use chrono::{DateTime, Utc};
use switchyard_core::keys::{new_id, ApiKey, NewKeySecret, NewKeySpec, RateLimit, Scopes};
use switchyard_core::Secret;
use switchyard_store::{AuditEvent, KeyInsert, Store, StoreError};

/// Who did something, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub key_id: Option<String>,
    /// Redacted key (`sy_1a2b3c4d…`).
    pub key: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    /// `api`, `cli` or `bootstrap`.
    pub via: &'static str,
}

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

fn insert_for<'a>(secret: &NewKeySecret, spec: &'a NewKeySpec, at: DateTime<Utc>) -> KeyInsert<'a> {
    KeyInsert {
        id: new_id("key"),
        spec,
        hash: secret.hash(),
        prefix: secret.display_prefix(),
        created_at: at,
    }
}

async fn audit(store: &Store, event: &'static str, key: &ApiKey, actor: &Actor, at: DateTime<Utc>) {
    let entry = AuditEvent {
        event,
        actor_key_id: actor.key_id.clone(),
        actor_key: actor.key.clone(),
        project: Some(key.project.clone()),
        target: Some(key.id.clone()),
        task_id: None,
        client_ip: actor.client_ip.clone(),
        request_id: actor.request_id.clone(),
        details: serde_json::json!({
            "via": actor.via,
            "name": key.name,
            "prefix": key.prefix,
            "scopes": key.scopes,
            "rate_limit": key.rate_limit,
        }),
    };
    crate::audit::record(store, &entry, at).await;
}

pub async fn issue(
    store: &Store,
    spec: &NewKeySpec,
    actor: &Actor,
) -> Result<IssuedKey, IssueError> {
    let secret = NewKeySecret::generate().map_err(|e| IssueError::Random(e.to_string()))?;
    let now = switchyard_core::now();
    let key = store.insert_key(&insert_for(&secret, spec, now)).await?;
    audit(store, "key.created", &key, actor, now).await;
    tracing::info!(key_id = %key.id, prefix = %key.prefix, project = %key.project, "API key created");
    Ok(IssuedKey {
        key,
        secret: secret.secret().clone(),
    })
}

/// Revokes a key; `None` when it does not exist.
pub async fn revoke(store: &Store, id: &str, actor: &Actor) -> Result<Option<ApiKey>, StoreError> {
    let now = switchyard_core::now();
    let Some(key) = store.revoke_key(id, now).await? else {
        return Ok(None);
    };
    if key.revoked_at == Some(now) {
        audit(store, "key.revoked", &key, actor, now).await;
        tracing::info!(key_id = %key.id, prefix = %key.prefix, "API key revoked");
    }
    Ok(Some(key))
}

/// Sets or clears a key's rate-limit override; `None` when the key does
/// not exist.
pub async fn set_rate_limit(
    store: &Store,
    id: &str,
    rate_limit: Option<RateLimit>,
    actor: &Actor,
) -> Result<Option<ApiKey>, StoreError> {
    let Some(key) = store.set_key_rate_limit(id, rate_limit).await? else {
        return Ok(None);
    };
    let now = switchyard_core::now();
    audit(store, "key.rate_limit_changed", &key, actor, now).await;
    tracing::info!(key_id = %key.id, rate_limit = ?key.rate_limit, "API key rate limit changed");
    Ok(Some(key))
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

/// On an empty database, creates the first admin key: the configured one, or
/// a fresh one whose secret is returned for printing. Safe across replicas.
pub async fn bootstrap_admin(
    store: &Store,
    configured: Option<&Secret>,
) -> Result<Bootstrap, IssueError> {
    if store.count_keys().await? > 0 {
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
    let Some(key) = store
        .bootstrap_admin_key(&insert_for(&secret, &spec, now))
        .await?
    else {
        return Ok(Bootstrap::NotNeeded);
    };
    let actor = Actor {
        via: "bootstrap",
        ..Actor::default()
    };
    audit(store, "key.created", &key, &actor, now).await;
    Ok(if configured.is_some() {
        Bootstrap::Installed(key)
    } else {
        Bootstrap::Generated(IssuedKey {
            key,
            secret: secret.secret().clone(),
        })
    })
}
