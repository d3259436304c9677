//! Console sessions: an API key exchanged for a short signed token (the
//! service's own HS256 tokens, under a secret derived from `JWT_SECRET` for
//! this one purpose) kept in an HttpOnly cookie, the CSRF token bound to
//! each session, and sessions ended by signing out. Every replica with the
//! same `JWT_SECRET` accepts a session; without one, sessions are signed
//! with a secret made at start-up and live only in this process. A sign-out
//! is recorded in the database, so every replica sharing it refuses the
//! session, after a restart too.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;
use switchyard_core::keys::{new_id, ApiKey, Scope};
use switchyard_core::tokens::{TokenClaims, TokenError, TokenKeys, ISSUER, MAX_TTL_SECONDS};
use switchyard_core::Secret;
use switchyard_store::Store;

/// The session cookie.
pub const COOKIE: &str = "sy_console";
/// The sign-in form's own CSRF cookie (before there is a session).
pub const LOGIN_COOKIE: &str = "sy_console_login";
/// The form field (or `x-csrf-token` header) every state-changing console
/// request carries.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts without use: the longest a signed token may
/// live. A session in use is renewed once past half of it.
pub const SESSION_SECONDS: i64 = MAX_TTL_SECONDS;
/// The longest a session lives, renewals included, from its sign-in: a
/// working day, then the key is asked for again.
pub const SESSION_MAX_SECONDS: i64 = 12 * 3600;

type HmacSha256 = Hmac<Sha256>;

fn hmac(secret: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(data);
    mac
}

/// A secret for one purpose, derived from the configured one, so that a
/// console session never verifies as an API access token, nor the reverse.
fn derive(secret: &Secret, purpose: &str) -> Secret {
    let mac = hmac(secret.expose().as_bytes(), purpose.as_bytes());
    Secret::new(hex::encode(mac.finalize().into_bytes()))
}

/// When a session's token signed at `now` ends: [`SESSION_SECONDS`] later,
/// but never past the key's `expiry` nor [`SESSION_MAX_SECONDS`] after the
/// sign-in.
fn token_end(now: i64, signed_in: i64, expiry: Option<DateTime<Utc>>) -> i64 {
    let end = (now + SESSION_SECONDS).min(signed_in + SESSION_MAX_SECONDS);
    expiry.map_or(end, |at| end.min(at.timestamp()))
}

/// A new session: the signed token for the cookie and what it says.
pub struct Issued {
    pub token: String,
    pub claims: TokenClaims,
}

/// Signs, verifies and ends console sessions.
pub struct Sessions {
    keys: TokenKeys,
    csrf: Secret,
    /// No `JWT_SECRET`: sessions hold only on this process.
    pub ephemeral: bool,
    /// Sessions signed out on this replica, by `jti`, until they expire.
    ended: Mutex<HashMap<String, i64>>,
    /// Where sign-outs are recorded for every replica (none in unit tests
    /// of the tokens alone).
    store: Option<Store>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// From `JWT_SECRET` (and the previous one while it is rotated), else a
    /// random secret of this process.
    pub fn new(current: Option<&Secret>, previous: Option<&Secret>, store: Option<Store>) -> Self {
        let (base, ephemeral) = match current {
            Some(s) => (s.clone(), false),
            None => (Secret::new(hex::encode(rand::random::<[u8; 32]>())), true),
        };
        let purpose = "switchyard.console.session";
        let previous = previous.map(|p| derive(p, purpose));
        Self {
            keys: TokenKeys::new(&derive(&base, purpose), previous.as_ref()),
            csrf: derive(&base, "switchyard.console.csrf"),
            ephemeral,
            ended: Mutex::new(HashMap::new()),
            store,
        }
    }

    /// A session for `key`, never outliving the key (`expiry`); `None`
    /// when the key expires within a second.
    pub fn issue(
        &self,
        key: &ApiKey,
        expiry: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<Issued> {
        let exp = token_end(now.timestamp(), now.timestamp(), expiry);
        if exp <= now.timestamp() {
            return None;
        }
        let scope = key
            .scopes
            .iter()
            .map(Scope::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let claims = TokenClaims {
            iss: ISSUER.into(),
            sub: key.id.clone(),
            scope,
            iat: now.timestamp(),
            exp,
            jti: new_id("ses"),
            auth_time: Some(now.timestamp()),
        };
        let token = self.keys.sign(&claims).ok()?;
        Some(Issued { token, claims })
    }

    /// A later token for a session in use, once past half its life: the
    /// same session (its `jti`, so its CSRF token and a sign-out still
    /// apply; its scopes; its sign-in time), for another
    /// [`SESSION_SECONDS`], never past the key's `expiry` nor
    /// [`SESSION_MAX_SECONDS`] after the sign-in. `None` while the session
    /// is young, or when a new token would not end later.
    pub fn renew(
        &self,
        claims: &TokenClaims,
        expiry: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<Issued> {
        let now = now.timestamp();
        if now - claims.iat < SESSION_SECONDS / 2 {
            return None;
        }
        let signed_in = claims.auth_time.unwrap_or(claims.iat);
        let exp = token_end(now, signed_in, expiry);
        if exp <= claims.exp {
            return None;
        }
        let claims = TokenClaims {
            iat: now,
            exp,
            auth_time: Some(signed_in),
            ..claims.clone()
        };
        let token = self.keys.sign(&claims).ok()?;
        Some(Issued { token, claims })
    }

    pub fn verify(&self, raw: &str, now: DateTime<Utc>) -> Result<TokenClaims, TokenError> {
        self.keys.verify(raw, now)
    }

    /// The CSRF token of the session `jti`: only this service can make it,
    /// and only a page of the session can read it.
    pub fn csrf_token(&self, jti: &str) -> String {
        let mac = hmac(self.csrf.expose().as_bytes(), jti.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `presented` is the session's CSRF token (constant time).
    pub fn csrf_matches(&self, jti: &str, presented: &str) -> bool {
        let Ok(bytes) = hex::decode(presented.trim()) else {
            return false;
        };
        hmac(self.csrf.expose().as_bytes(), jti.as_bytes())
            .verify_slice(&bytes)
            .is_ok()
    }

    /// Signs a session out: refused here at once, and on every replica
    /// sharing the database, until it would have expired anyway.
    pub async fn end(&self, claims: &TokenClaims) {
        let now = switchyard_core::now().timestamp();
        {
            let mut ended = switchyard_core::sync::lock(&self.ended);
            ended.retain(|_, exp| *exp > now);
            ended.insert(claims.jti.clone(), claims.exp);
        }
        if let Some(store) = &self.store {
            if let Err(e) = store
                .end_console_session(&claims.jti, claims.exp, now)
                .await
            {
                tracing::warn!(error = %e, "could not record a console sign-out in the database; other replicas accept the session until it expires");
            }
        }
    }

    /// Whether the session was signed out, here or on a replica sharing
    /// the database. When the database cannot say, the session is taken as
    /// ended: the console fails closed.
    pub async fn is_ended(&self, jti: &str) -> bool {
        if switchyard_core::sync::lock(&self.ended).contains_key(jti) {
            return true;
        }
        let Some(store) = &self.store else {
            return false;
        };
        let now = switchyard_core::now().timestamp();
        store
            .console_session_ended(jti, now)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not read console sign-outs from the database; the session is refused");
                true
            })
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the console's path,
/// `Secure` when the page was served over HTTPS. `max_age` 0 removes it.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// Whether the client reached the service over HTTPS: this process serves
/// TLS, or a proxy says so. (Trusting the header can only add `Secure`,
/// which makes a cookie stricter, never weaker.)
pub fn is_https(headers: &HeaderMap, serves_tls: bool) -> bool {
    serves_tls
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        let now = switchyard_core::now();
        ApiKey {
            id: "key_1".into(),
            name: "n".into(),
            owner: None,
            project: "p".into(),
            scopes: switchyard_core::keys::Scopes::user(),
            prefix: "sy_12345678".into(),
            created_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            rate_limit: None,
            task_profile: None,
            rotated_at: None,
            successor_id: None,
            predecessor_id: None,
        }
    }

    #[test]
    fn sessions_verify_and_are_not_api_tokens() {
        let secret = Secret::new("s".repeat(40));
        let sessions = Sessions::new(Some(&secret), None, None);
        let now = switchyard_core::now();
        let issued = sessions.issue(&key(), None, now).unwrap();
        assert_eq!(sessions.verify(&issued.token, now).unwrap(), issued.claims);
        // The API's tokens use JWT_SECRET itself: a session is not one of them.
        let api = TokenKeys::new(&secret, None);
        assert_eq!(api.verify(&issued.token, now), Err(TokenError::UnknownKid));
        // Another replica with the same secret accepts it.
        let other = Sessions::new(Some(&secret), None, None);
        assert!(other.verify(&issued.token, now).is_ok());
    }

    #[test]
    fn a_session_never_outlives_its_key() {
        let sessions = Sessions::new(None, None, None);
        assert!(sessions.ephemeral);
        let now = switchyard_core::now();
        let soon = now + chrono::Duration::seconds(90);
        let issued = sessions.issue(&key(), Some(soon), now).unwrap();
        assert_eq!(issued.claims.exp, soon.timestamp());
        assert!(sessions.issue(&key(), Some(now), now).is_none());
    }

    #[test]
    fn a_session_in_use_is_renewed_within_its_limits() {
        let sessions = Sessions::new(Some(&Secret::new("r".repeat(40))), None, None);
        let start = switchyard_core::now();
        let at = |secs: i64| start + chrono::Duration::seconds(secs);
        let first = sessions.issue(&key(), None, start).unwrap();
        assert_eq!(first.claims.auth_time, Some(start.timestamp()));
        // Young: nothing to renew.
        assert!(sessions.renew(&first.claims, None, at(1799)).is_none());
        // Past half its life: the same session, for another hour.
        let renewed = sessions.renew(&first.claims, None, at(1800)).unwrap();
        let c = &renewed.claims;
        assert_eq!(
            (c.jti.as_str(), c.sub.as_str()),
            (first.claims.jti.as_str(), "key_1")
        );
        assert_eq!(c.scope, first.claims.scope);
        assert_eq!(
            (c.iat, c.exp),
            (at(1800).timestamp(), at(1800 + 3600).timestamp())
        );
        assert_eq!(c.auth_time, Some(start.timestamp()));
        assert_eq!(sessions.verify(&renewed.token, at(1800)).unwrap(), *c);
        assert!(
            sessions.verify(&renewed.token, at(3700)).is_ok(),
            "outlives the first token"
        );
        // Never past the key's expiry...
        let key_ends = at(2000);
        assert!(sessions
            .renew(&first.claims, Some(at(3600)), at(1800))
            .is_none());
        let capped = sessions
            .renew(&first.claims, Some(at(5000)), at(1800))
            .unwrap();
        assert_eq!(capped.claims.exp, at(5000).timestamp());
        assert!(sessions
            .renew(&first.claims, Some(key_ends), at(1800))
            .is_none());
        // ...nor twelve hours after the sign-in, however often renewed.
        let mut current = first.claims.clone();
        let mut now = at(1800);
        while let Some(next) = sessions.renew(&current, None, now) {
            current = next.claims;
            now += chrono::Duration::seconds(1800);
        }
        assert_eq!(current.exp, at(SESSION_MAX_SECONDS).timestamp());
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let sessions = Sessions::new(Some(&Secret::new("x".repeat(40))), None, None);
        let token = sessions.csrf_token("ses_a");
        assert!(sessions.csrf_matches("ses_a", &token));
        assert!(!sessions.csrf_matches("ses_b", &token));
        assert!(!sessions.csrf_matches("ses_a", ""));
        assert!(!sessions.csrf_matches("ses_a", "not hex"));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; sy_console=tok".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "sy"), None);
        let c = set_cookie(COOKIE, "v", "/console", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
    }

    #[tokio::test]
    async fn ended_sessions_are_refused() {
        let sessions = Sessions::new(None, None, None);
        let now = switchyard_core::now();
        let issued = sessions.issue(&key(), None, now).unwrap();
        assert!(!sessions.is_ended(&issued.claims.jti).await);
        sessions.end(&issued.claims).await;
        assert!(sessions.is_ended(&issued.claims.jti).await);
    }
}
