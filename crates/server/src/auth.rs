//! Authentication: every route needs an API key except an explicit list of
//! public ones, so a new route cannot skip auth by accident. Key lookups are
//! cached (and single-flighted) so a request costs no database round trip.
//! The authenticated [`Caller`] goes into the request's extensions.

use crate::context::{Caller, ClientIp};
use crate::error::ApiError;
use crate::fn_layer::{Next, Stack};
use crate::metrics::Metrics;
use crate::ratelimit::{Limits, Scope as LimitScope};
use crate::REDIS_CALL_TIMEOUT;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::keys::{ApiKey, KeyHash, KeyUnusable, PresentedKey, Scope, Scopes};
use switchyard_core::rotation::RotationPolicy;
use switchyard_core::tokens::{looks_like_token, TokenError, TokenKeys};
use switchyard_limits::{Redis, TieredCache};
use switchyard_store::{Store, StoreError};
use tracing::Instrument;

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
/// Probes that report on the backing services; `DIAGNOSTICS_REQUIRE_ADMIN`
/// takes them off the public list for installs that expose the API.
const DIAGNOSTIC_PATHS: &[&str] = &["/db-check", "/redis-check"];
/// Paths that need the `admin` scope; everything else needs `user`.
const ADMIN_PREFIXES: &[&str] = &["/v1/admin/", "/debug/"];

/// The web console's paths. They are authenticated by the console's own
/// gate (a session cookie, `routes/console/gate.rs`), which requires a
/// session on every console path but the sign-in page and the assets.
pub fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

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

/// Finding keys by their hash (cached, shared through Redis when
/// configured) and remembering when they were last used.
#[derive(Clone)]
pub struct KeyAuthority(Arc<AuthorityInner>);

struct AuthorityInner {
    store: Store,
    metrics: Metrics,
    cache: TieredCache<Option<Arc<ApiKey>>>,
    last_used: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl KeyAuthority {
    /// `shared`: a Redis tier in front of the database, shared by replicas.
    pub fn new(store: Store, metrics: Metrics, ttl: Duration, shared: Option<Arc<Redis>>) -> Self {
        let cache = match shared {
            Some(redis) => {
                TieredCache::with_redis(100_000, ttl, redis, "sy:key:", REDIS_CALL_TIMEOUT)
            }
            None => TieredCache::local(100_000, ttl),
        };
        Self(Arc::new(AuthorityInner {
            store,
            metrics,
            cache,
            last_used: Mutex::new(HashMap::new()),
        }))
    }

    /// The key with this hash, from cache or database. Concurrent lookups of
    /// one uncached hash share a single query. Unknown hashes are cached too,
    /// so guessing does not reach the database on every try.
    pub async fn lookup(&self, hash: KeyHash) -> Result<Option<Arc<ApiKey>>, Arc<StoreError>> {
        let store = &self.0.store;
        let (found, served) = self
            .0
            .cache
            .get_or_load(&hash.to_hex(), move || async move {
                store.find_key_by_hash(&hash).await.map(|k| k.map(Arc::new))
            })
            .await?;
        self.0.metrics.count_cache("api_keys", served);
        Ok(found)
    }

    /// The key with this id (what an access token names), from cache or
    /// database; cached like lookups by hash, so a revocation reaches
    /// tokens within the same TTL.
    pub async fn lookup_id(&self, id: &str) -> Result<Option<Arc<ApiKey>>, Arc<StoreError>> {
        let store = &self.0.store;
        let (found, served) = self
            .0
            .cache
            .get_or_load(&id_cache_key(id), move || async move {
                store.get_key(id).await.map(|k| k.map(Arc::new))
            })
            .await?;
        self.0.metrics.count_cache("api_keys", served);
        Ok(found)
    }

    /// Evicts a changed key (revoked, re-limited) so the change applies at
    /// once on this replica and in the shared tier; other replicas' memory
    /// follows within the cache TTL.
    pub async fn forget(&self, key_id: &str) -> Result<(), StoreError> {
        if let Some(hash) = self.0.store.key_hash(key_id).await? {
            self.0.cache.invalidate(&hash).await;
        }
        self.0.cache.invalidate(&id_cache_key(key_id)).await;
        Ok(())
    }

    pub fn touch(&self, key_id: &str, at: DateTime<Utc>) {
        let mut seen = switchyard_core::sync::lock(&self.0.last_used);
        match seen.get_mut(key_id) {
            Some(t) => *t = at,
            None => {
                seen.insert(key_id.to_owned(), at);
            }
        }
    }

    /// Takes the last-use times collected since the previous call.
    pub fn drain_last_used(&self) -> Vec<(String, DateTime<Utc>)> {
        let mut seen = switchyard_core::sync::lock(&self.0.last_used);
        seen.drain().collect()
    }

    /// Writes collected last-use times to the database; on failure they are
    /// kept for the next attempt.
    pub async fn flush_last_used(&self) -> Result<usize, StoreError> {
        let batch = self.drain_last_used();
        if batch.is_empty() {
            return Ok(0);
        }
        match self.0.store.touch_last_used(&batch).await {
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
        let mut seen = switchyard_core::sync::lock(&self.0.last_used);
        let entry = seen.entry(id).or_insert(at);
        if *entry < at {
            *entry = at;
        }
    }
}

/// Entries by id live beside those by hash (64 hex digits) in one cache.
fn id_cache_key(id: &str) -> String {
    format!("id:{id}")
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

/// What the authentication layer needs: the keys, and the limits on
/// unauthenticated traffic and failed attempts.
#[derive(Clone)]
pub struct AuthState {
    pub keys: KeyAuthority,
    pub limits: Limits,
    /// `DIAGNOSTICS_REQUIRE_ADMIN`: `/db-check` and `/redis-check` need an
    /// admin key.
    pub diagnostics_require_admin: bool,
    /// Verifies access tokens; `None` without `JWT_SECRET`.
    pub tokens: Option<Arc<TokenKeys>>,
    /// Whether due keys stop working (`KEY_ROTATION_ENFORCE`).
    pub rotation: RotationPolicy,
}

/// `prefix` and the client's address (`unknown` without one), as a rate
/// limiter key. An IPv4 address is written digit by digit: through
/// `Display` it cost more than the limiter's decision on every request.
fn address_key(prefix: &str, ip: Option<std::net::IpAddr>) -> String {
    let mut key = String::with_capacity(prefix.len() + 39);
    key.push_str(prefix);
    match ip {
        Some(std::net::IpAddr::V4(v4)) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    key.push('.');
                }
                switchyard_core::decimal::push(&mut key, u64::from(octet), 0);
            }
        }
        Some(ip) => {
            use std::fmt::Write as _;
            let _ = write!(key, "{ip}");
        }
        None => key.push_str("unknown"),
    }
    key
}

/// The middleware: authenticates every non-public request and checks scope.
/// Unauthenticated traffic is limited per client IP, and an IP that keeps
/// failing authentication is refused for a while (brute-force protection).
pub async fn authenticate<S: Stack>(
    auth: Arc<AuthState>,
    mut req: Request,
    next: Next<S>,
) -> Response {
    let path = req.uri().path();
    let ip = req.extensions().get::<ClientIp>().and_then(|c| c.0);
    if is_console(path) {
        return next.run(req).await;
    }
    let restricted = auth.diagnostics_require_admin && DIAGNOSTIC_PATHS.contains(&path);
    if is_public(path) && !restricted {
        if !INFRASTRUCTURE_PATHS.contains(&path) {
            let quota = auth.limits.quotas().unauthenticated;
            if let Err(rejection) = auth
                .limits
                .enforce(LimitScope::Ip, &address_key("ip:", ip), &quota)
                .await
            {
                return rejection.into_response();
            }
        }
        return next.run(req).await;
    }
    let failures_key = address_key("authfail:", ip);
    let failures = auth.limits.quotas().auth_failures;
    if let Err(rejection) = auth
        .limits
        .guard(LimitScope::AuthFailure, &failures_key, &failures)
        .await
    {
        return rejection.into_response();
    }
    let needed = if restricted {
        Scope::Admin
    } else {
        needed_scope(path)
    };
    let span = tracing::info_span!(
        target: crate::telemetry::TRACE_TARGET,
        "auth",
        otel.name = "authenticate",
        switchyard.key_id = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    match identify(&auth, req.headers(), needed)
        .instrument(span.clone())
        .await
    {
        Ok(caller) => {
            span.record("switchyard.key_id", caller.key.id.as_str());
            tracing::Span::current().record("key_id", caller.key.id.as_str());
            #[cfg(feature = "sentry")]
            crate::sentry::set_caller(&caller.key.id);
            let grace_ends = caller.key.grace_ends_at();
            req.extensions_mut().insert(caller);
            let mut response = next.run(req).await;
            if let Some(at) = grace_ends {
                announce_grace(response.headers_mut(), at);
            }
            response
        }
        Err(e) => {
            span.record("error.type", e.code.unwrap_or(e.kind));
            if e.status == axum::http::StatusCode::UNAUTHORIZED {
                auth.limits.count_failure(&failures_key, &failures).await;
            }
            e.into_response()
        }
    }
}

/// The header on every answer to a rotated key in its grace period: when
/// the grace ends (RFC 3339). `sunset` (RFC 8594) says the same as an HTTP
/// date.
pub const GRACE_HEADER: &str = "x-switchyard-key-grace-ends";

fn announce_grace(headers: &mut HeaderMap, ends: DateTime<Utc>) {
    let rfc3339 = ends.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let http_date = ends.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    for (name, value) in [(GRACE_HEADER, rfc3339), ("sunset", http_date)] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

fn lookup_failed(e: &StoreError) -> ApiError {
    if e.is_unavailable() {
        ApiError::database_unavailable(e, "cannot verify the API key: the database is unavailable")
    } else {
        ApiError::internal(e)
    }
}

async fn identify(
    auth: &AuthState,
    headers: &HeaderMap,
    needed: Scope,
) -> Result<Caller, ApiError> {
    let keys = &auth.keys;
    let raw = presented(headers)?;
    if looks_like_token(raw) {
        return identify_token(auth, raw, needed).await;
    }
    let key = PresentedKey::parse(raw).map_err(|_| malformed())?;
    let found = keys
        .lookup(key.hash())
        .await
        .map_err(|e| lookup_failed(&e))?;
    let Some(api_key) = found else {
        return Err(ApiError::unauthenticated(
            "invalid_api_key",
            "the API key is not valid",
        ));
    };
    let now = Utc::now();
    check_usable(&auth.rotation, &api_key, now, "API key")?;
    if !api_key.scopes.allows(needed) {
        return Err(ApiError::forbidden(
            "insufficient_scope",
            format!("this key lacks the `{}` scope", needed.as_str()),
        ));
    }
    keys.touch(&api_key.id, now);
    Ok(Caller {
        redacted: key.redacted(),
        key: api_key,
        token: None,
    })
}

/// A request with an access token: a valid signature by a known secret,
/// unexpired, naming a key that is still usable; it acts with the token's
/// scopes, as far as the key still has them.
async fn identify_token(auth: &AuthState, raw: &str, needed: Scope) -> Result<Caller, ApiError> {
    let Some(tokens) = &auth.tokens else {
        return Err(ApiError::unauthenticated(
            "invalid_token",
            "access tokens are not accepted: this service has no JWT_SECRET",
        ));
    };
    let now = Utc::now();
    let claims = tokens.verify(raw, now).map_err(|e| match e {
        TokenError::Expired => ApiError::unauthenticated(
            "token_expired",
            "the access token has expired; exchange the API key for a new one at POST /v1/auth/token",
        ),
        other => ApiError::unauthenticated("invalid_token", other.to_string()),
    })?;
    let granted = claims
        .scopes()
        .map_err(|e| ApiError::unauthenticated("invalid_token", e.to_string()))?;
    let Some(key) = auth
        .keys
        .lookup_id(&claims.sub)
        .await
        .map_err(|e| lookup_failed(&e))?
    else {
        return Err(ApiError::unauthenticated(
            "invalid_token",
            "the access token's API key no longer exists",
        ));
    };
    check_usable(&auth.rotation, &key, now, "access token's API key")?;
    // The token's scopes, as far as the key still has them.
    let kept: Vec<Scope> = granted.iter().filter(|s| key.scopes.allows(*s)).collect();
    let Ok(scopes) = Scopes::new(kept) else {
        return Err(ApiError::forbidden(
            "insufficient_scope",
            "the access token's key no longer has any of the token's scopes",
        ));
    };
    if !scopes.allows(needed) {
        return Err(ApiError::forbidden(
            "insufficient_scope",
            format!("this access token lacks the `{}` scope", needed.as_str()),
        ));
    }
    auth.keys.touch(&key.id, now);
    let redacted = format!("{}… (token)", key.prefix);
    let mut acting = ApiKey::clone(&key);
    acting.scopes = scopes;
    Ok(Caller {
        key: Arc::new(acting),
        redacted,
        token: Some(claims.jti),
    })
}

/// 401 `key_revoked` or `key_expired` for a key that may not be used now
/// (expired by itself, or due and unrotated past the grace when rotation is
/// enforced); `what` names the credential (the API key, or the token's key).
pub(crate) fn check_usable(
    policy: &RotationPolicy,
    key: &ApiKey,
    now: DateTime<Utc>,
    what: &str,
) -> Result<(), ApiError> {
    match policy.check(key, now) {
        Ok(()) => Ok(()),
        Err(KeyUnusable::Revoked) => Err(ApiError::unauthenticated(
            "key_revoked",
            format!("the {what} has been revoked"),
        )),
        Err(KeyUnusable::Expired) => Err(ApiError::unauthenticated(
            "key_expired",
            format!("the {what} has expired"),
        )),
    }
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
        assert!(is_console("/console") && is_console("/console/keys"));
        assert!(!is_console("/consoles") && !is_console("/v1/console"));
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

    #[test]
    fn address_keys_match_the_addresses_display() {
        for ip in [
            "0.0.0.0",
            "10.0.0.9",
            "192.168.100.255",
            "255.255.255.255",
            "2001:db8::1",
        ] {
            let addr: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(address_key("ip:", Some(addr)), format!("ip:{addr}"));
        }
        assert_eq!(address_key("authfail:", None), "authfail:unknown");
    }
}
