//! Authentication: every route needs an API key except an explicit list of
//! public ones, so a new route cannot skip auth by accident. Key lookups are
//! cached (and single-flighted) so a request costs no database round trip.

use crate::error::ApiError;
use crate::middleware::ClientIp;
use crate::ratelimit::{self, Scope as LimitScope};
use crate::state::{AppState, REDIS_CALL_TIMEOUT};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::keys::{ApiKey, KeyHash, KeyUnusable, PresentedKey, Scope};
use switchyard_limits::{Redis, Served, TieredCache};
use switchyard_store::{Store, StoreError};

/// Paths served without a key: probes, metrics and API documentation.
const PUBLIC_PATHS: &[&str] = &[
    "/health",
    "/ready",
    "/db-check",
    "/redis-check",
    "/metrics",
    "/openapi.json",
    "/docs",
];
const PUBLIC_PREFIXES: &[&str] = &["/docs/"];
/// Public paths for infrastructure (probes, scrapes), exempt from the
/// per-IP limit on unauthenticated traffic.
const INFRASTRUCTURE_PATHS: &[&str] =
    &["/health", "/ready", "/db-check", "/redis-check", "/metrics"];
/// Paths that need the `admin` scope; everything else needs `user`.
const ADMIN_PREFIXES: &[&str] = &["/v1/admin/", "/debug/"];

pub fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path) || PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p))
}

fn needed_scope(path: &str) -> Scope {
    if ADMIN_PREFIXES.iter().any(|p| path.starts_with(p)) {
        Scope::Admin
    } else {
        Scope::User
    }
}

/// The authenticated caller, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct Caller {
    pub key: Arc<ApiKey>,
    /// `sy_1a2b3c4d…`, safe for logs and audit records.
    pub redacted: String,
}

/// The key cache and the in-memory record of when keys were last used.
pub struct KeyAuthority {
    cache: TieredCache<Option<Arc<ApiKey>>>,
    last_used: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl KeyAuthority {
    /// `shared`: a Redis tier in front of the database, shared by replicas.
    pub fn new(ttl: Duration, shared: Option<Arc<Redis>>) -> Self {
        let cache = match shared {
            Some(redis) => {
                TieredCache::with_redis(100_000, ttl, redis, "sy:key:", REDIS_CALL_TIMEOUT)
            }
            None => TieredCache::local(100_000, ttl),
        };
        Self {
            cache,
            last_used: Mutex::new(HashMap::new()),
        }
    }

    /// The key with this hash, from cache or database. Concurrent lookups of
    /// one uncached hash share a single query. Unknown hashes are cached too,
    /// so guessing does not reach the database on every try.
    pub async fn lookup(
        &self,
        store: &Store,
        hash: KeyHash,
    ) -> Result<(Option<Arc<ApiKey>>, Served), Arc<StoreError>> {
        self.cache
            .get_or_load(&hash.to_hex(), async move {
                store.find_key_by_hash(&hash).await.map(|k| k.map(Arc::new))
            })
            .await
    }

    /// Evicts a changed key (revoked, re-limited) so the change applies at
    /// once on this replica and in the shared tier; other replicas' memory
    /// follows within the cache TTL.
    pub async fn forget(&self, store: &Store, key_id: &str) -> Result<(), StoreError> {
        if let Some(hash) = store.key_hash(key_id).await? {
            self.cache.invalidate(&hash).await;
        }
        Ok(())
    }

    pub fn touch(&self, key_id: &str, at: DateTime<Utc>) {
        let mut seen = switchyard_core::sync::lock(&self.last_used);
        match seen.get_mut(key_id) {
            Some(t) => *t = at,
            None => {
                seen.insert(key_id.to_owned(), at);
            }
        }
    }

    /// Takes the last-use times collected since the previous call.
    pub fn drain_last_used(&self) -> Vec<(String, DateTime<Utc>)> {
        let mut seen = switchyard_core::sync::lock(&self.last_used);
        seen.drain().collect()
    }

    /// Writes collected last-use times to the database; on failure they are
    /// kept for the next attempt.
    pub async fn flush_last_used(&self, store: &Store) -> Result<usize, StoreError> {
        let batch = self.drain_last_used();
        if batch.is_empty() {
            return Ok(0);
        }
        match store.touch_last_used(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                for (id, at) in batch {
                    self.touch_if_newer(id, at);
                }
                Err(e)
            }
        }
    }

    fn touch_if_newer(&self, id: String, at: DateTime<Utc>) {
        let mut seen = switchyard_core::sync::lock(&self.last_used);
        let entry = seen.entry(id).or_insert(at);
        if *entry < at {
            *entry = at;
        }
    }
}

/// The presented secret: `Authorization: Bearer <key>` or `x-api-key`.
fn presented(headers: &HeaderMap) -> Result<&str, ApiError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| malformed())?;
        let (scheme, token) = text.trim().split_once(' ').ok_or_else(malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthenticated(
                "invalid_api_key",
                "the Authorization header must use the Bearer scheme",
            ));
        }
        return Ok(token.trim());
    }
    if let Some(value) = headers.get("x-api-key") {
        return value.to_str().map(str::trim).map_err(|_| malformed());
    }
    Err(ApiError::unauthenticated(
        "missing_api_key",
        "an API key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
    ))
}

fn malformed() -> ApiError {
    ApiError::unauthenticated(
        "invalid_api_key",
        "the API key is malformed: expected `sy_` followed by 64 lowercase hex digits",
    )
}

/// The middleware: authenticates every non-public request and checks scope.
/// Unauthenticated traffic is limited per client IP, and an IP that keeps
/// failing authentication is refused for a while (brute-force protection).
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let ip = req
        .extensions()
        .get::<ClientIp>()
        .and_then(|c| c.0)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    if is_public(path) {
        if !INFRASTRUCTURE_PATHS.contains(&path) {
            let quota = state.quotas.unauthenticated;
            if let Err(rejection) =
                ratelimit::enforce(&state, LimitScope::Ip, &format!("ip:{ip}"), &quota).await
            {
                return rejection;
            }
        }
        return next.run(req).await;
    }
    let failures_key = format!("authfail:{ip}");
    let failures = state.quotas.auth_failures;
    if let Err(rejection) =
        ratelimit::guard(&state, LimitScope::AuthFailure, &failures_key, &failures).await
    {
        return rejection;
    }
    let needed = needed_scope(path);
    match identify(&state, req.headers(), needed).await {
        Ok(caller) => {
            tracing::Span::current().record("key_id", caller.key.id.as_str());
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            if e.status == axum::http::StatusCode::UNAUTHORIZED {
                ratelimit::count_failure(&state, &failures_key, &failures).await;
            }
            e.into_response()
        }
    }
}

async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    needed: Scope,
) -> Result<Caller, ApiError> {
    let raw = presented(headers)?;
    let key = PresentedKey::parse(raw).map_err(|_| malformed())?;
    let (found, served) = state
        .keys
        .lookup(&state.store, key.hash())
        .await
        .map_err(|e| {
            if e.is_unavailable() {
                tracing::warn!(error = %e, "key lookup failed: database unavailable");
                ApiError::unavailable("cannot verify the API key: the database is unavailable")
                    .with_code("database_unavailable")
            } else {
                ApiError::internal(&e)
            }
        })?;
    state.metrics.count_cache("api_keys", served);
    let Some(api_key) = found else {
        return Err(ApiError::unauthenticated(
            "invalid_api_key",
            "the API key is not valid",
        ));
    };
    let now = Utc::now();
    match api_key.check_usable(now) {
        Ok(()) => {}
        Err(KeyUnusable::Revoked) => {
            return Err(ApiError::unauthenticated(
                "key_revoked",
                "the API key has been revoked",
            ))
        }
        Err(KeyUnusable::Expired) => {
            return Err(ApiError::unauthenticated(
                "key_expired",
                "the API key has expired",
            ))
        }
    }
    if !api_key.scopes.allows(needed) {
        return Err(ApiError::forbidden(
            "insufficient_scope",
            format!("this key lacks the `{}` scope", needed.as_str()),
        ));
    }
    state.keys.touch(&api_key.id, now);
    Ok(Caller {
        redacted: key.redacted(),
        key: api_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths_are_exact_and_admin_paths_need_admin() {
        assert!(is_public("/health"));
        assert!(is_public("/docs/swagger-ui.css"));
        assert!(!is_public("/health/extra"));
        assert!(!is_public("/v1/models"));
        assert!(!is_public("/metricsx"));
        assert_eq!(needed_scope("/v1/admin/keys"), Scope::Admin);
        assert_eq!(needed_scope("/v1/models"), Scope::User);
    }

    #[test]
    fn credentials_come_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(
            presented(&h).map_err(|e| e.code),
            Err(Some("missing_api_key"))
        );
        h.insert("x-api-key", "abc".parse().unwrap());
        assert_eq!(presented(&h).ok(), Some("abc"));
        h.insert("authorization", "bearer  xyz ".parse().unwrap());
        assert_eq!(presented(&h).ok(), Some("xyz"));
        h.insert("authorization", "Basic xyz".parse().unwrap());
        assert_eq!(
            presented(&h).map_err(|e| e.code),
            Err(Some("invalid_api_key"))
        );
    }
}
