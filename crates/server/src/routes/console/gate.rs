//! The console's gate, a middleware over every `/console` path: the
//! assets and the sign-in page are open; every other path needs a session
//! cookie naming a key that is still usable, and every request that changes
//! something must carry the session's CSRF token (form field `csrf` or
//! header `x-csrf-token`), else 403. It sets the console's security headers
//! (CSP without `unsafe-inline`, no framing, no caching of pages) and hands
//! handlers the [`Viewer`].

use super::html::{bare_page, esc, Problem};
use crate::auth::{check_usable, is_console, KeyAuthority};
use crate::context::{Caller, ClientIp};
use crate::error::ApiError;
use crate::fn_layer::{Next, Stack};
use crate::ratelimit::{Limits, Scope as LimitScope};
use crate::session::{self, Sessions, CSRF_FIELD, CSRF_HEADER};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use switchyard_core::keys::{ApiKey, Scope, Scopes};
use switchyard_core::rotation::RotationPolicy;
use switchyard_core::tokens::TokenClaims;

/// The console's Content Security Policy: scripts, styles and connections
/// from this origin only, no inline code, no framing, forms posting here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// What the gate needs.
#[derive(Clone)]
pub struct GateState {
    pub keys: KeyAuthority,
    pub limits: Limits,
    pub sessions: Arc<Sessions>,
    pub rotation: RotationPolicy,
    /// This process serves HTTPS itself (cookies are then `Secure`).
    pub serves_tls: bool,
    pub max_body: usize,
}

/// The signed-in session, for handlers: its claims and CSRF token.
#[derive(Clone, Debug)]
pub struct Session {
    pub claims: TokenClaims,
    pub csrf: String,
}

fn open_path(path: &str) -> bool {
    path.starts_with("/console/assets/") || path == "/console/login"
}

pub async fn gate<S: Stack>(g: Arc<GateState>, req: Request, next: Next<S>) -> Response {
    if !is_console(req.uri().path()) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let asset = path.starts_with("/console/assets/");
    let mut response = if asset {
        next.run(req).await
    } else if open_path(&path) {
        let ip = client_ip(&req);
        let quota = g.limits.quotas().unauthenticated;
        match g
            .limits
            .enforce(LimitScope::Ip, &format!("ip:{ip}"), &quota)
            .await
        {
            Ok(_) => next.run(req).await,
            Err(rejection) => rejection.into_response(),
        }
    } else {
        // On the heap: every request's future holds this gate's, and the
        // console's session handling would add kilobytes to each.
        Box::pin(signed_in(&g, req, next)).await
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn client_ip(req: &Request) -> String {
    req.extensions()
        .get::<ClientIp>()
        .and_then(|c| c.0)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// Why a request has no session: GETs go to the sign-in page, anything
/// else is told to sign in again.
fn no_session(method: &Method, why: &str) -> Response {
    let clear = session::set_cookie(session::COOKIE, "", "/console", 0, false);
    let mut response = if method == Method::GET || method == Method::HEAD {
        super::html::see_other("/console/login")
    } else {
        bare_page(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            &format!(
                r#"<p class="error" role="alert">{}</p><p><a href="/console/login">Sign in</a></p>"#,
                esc(why)
            ),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn signed_in<S: Stack>(g: &GateState, req: Request, next: Next<S>) -> Response {
    let ip = client_ip(&req);
    let failures_key = format!("authfail:{ip}");
    let failures = g.limits.quotas().auth_failures;
    if let Err(rejection) = g
        .limits
        .guard(LimitScope::AuthFailure, &failures_key, &failures)
        .await
    {
        return rejection.into_response();
    }
    let method = req.method().clone();
    let secure = session::is_https(req.headers(), g.serves_tls);
    let Some(raw) = session::cookie(req.headers(), session::COOKIE).map(str::to_owned) else {
        return no_session(&method, "sign in to use the console");
    };
    let (caller, mut claims) = match identify(g, &raw).await {
        Ok(found) => found,
        Err(Refused::Store(e)) => return Problem(e).into_response(),
        Err(Refused::Session(why)) => {
            g.limits.count_failure(&failures_key, &failures).await;
            return no_session(&method, &why);
        }
    };
    let now = switchyard_core::now();
    let renewed = g
        .sessions
        .renew(&claims, g.rotation.expiry(&caller.key), now);
    if let Some(r) = &renewed {
        // Handlers see the session as it now stands: a sign-out ends it
        // until the renewed token would have expired.
        claims = r.claims.clone();
    }
    let csrf = g.sessions.csrf_token(&claims.jti);
    let (mut parts, body) = req.into_parts();
    let body = if method == Method::GET || method == Method::HEAD {
        body
    } else {
        let Ok(bytes) = axum::body::to_bytes(body, g.max_body).await else {
            return Problem(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "the form is too large",
            ))
            .into_response();
        };
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| FormData::parse(&bytes).get(CSRF_FIELD).map(str::to_owned));
        let valid = presented.is_some_and(|t| g.sessions.csrf_matches(&claims.jti, &t));
        if !valid {
            tracing::warn!(key_id = %caller.key.id, "console request without a valid CSRF token refused");
            return Problem(ApiError::forbidden(
                "csrf_token_invalid",
                "this form has no valid CSRF token: reload the page and try again",
            ))
            .into_response();
        }
        Body::from(bytes)
    };
    parts.extensions.insert(caller);
    parts.extensions.insert(Session { claims, csrf });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if let Some(r) = renewed {
        renew_cookie(&mut response, &r, now.timestamp(), secure);
    }
    response
}

/// Hands the browser a session's renewed token, unless the response sets
/// the session cookie itself (a sign-out clears it).
fn renew_cookie(response: &mut Response, renewed: &session::Issued, now: i64, secure: bool) {
    let prefix = format!("{}=", session::COOKIE);
    let sets_it = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(prefix.as_bytes()));
    if sets_it {
        return;
    }
    let max_age = renewed.claims.exp - now;
    let cookie = session::set_cookie(session::COOKIE, &renewed.token, "/console", max_age, secure);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
        tracing::debug!(session = %renewed.claims.jti, expires = renewed.claims.exp, "console session renewed");
    }
}

enum Refused {
    Session(String),
    Store(ApiError),
}

/// The caller a session cookie stands for: a valid signature, not signed
/// out, naming a key still usable, with the session's scopes as far as the
/// key still has them.
async fn identify(g: &GateState, raw: &str) -> Result<(Caller, TokenClaims), Refused> {
    let now = switchyard_core::now();
    let claims = g
        .sessions
        .verify(raw, now)
        .map_err(|e| Refused::Session(format!("the session is not valid: {e}")))?;
    if g.sessions.is_ended(&claims.jti).await {
        return Err(Refused::Session("this session was signed out".into()));
    }
    let granted = claims
        .scopes()
        .map_err(|e| Refused::Session(e.to_string()))?;
    let key = g
        .keys
        .lookup_id(&claims.sub)
        .await
        .map_err(|e| Refused::Store(store_failed(&e)))?
        .ok_or_else(|| Refused::Session("the session's key no longer exists".into()))?;
    check_usable(&g.rotation, &key, now, "session's API key")
        .map_err(|e| Refused::Session(e.message))?;
    let kept: Vec<Scope> = granted.iter().filter(|s| key.scopes.allows(*s)).collect();
    let scopes = Scopes::new(kept)
        .map_err(|_| Refused::Session("the session's key has none of its scopes now".into()))?;
    g.keys.touch(&key.id, now);
    let mut acting = ApiKey::clone(&key);
    acting.scopes = scopes;
    Ok((
        Caller {
            redacted: format!("{}… (console)", key.prefix),
            key: Arc::new(acting),
            token: Some(claims.jti.clone()),
        },
        claims,
    ))
}

/// A failed key lookup: 503 when the database is down, else an opaque 500.
fn store_failed(e: &switchyard_store::StoreError) -> ApiError {
    if e.is_unavailable() {
        ApiError::database_unavailable(e, "the database is unavailable")
    } else {
        ApiError::internal(e)
    }
}

/// Who is looking at a console page: the caller, the session's CSRF token,
/// and whether the key is an admin.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub caller: Caller,
    pub csrf: String,
    pub admin: bool,
    pub client_ip: ClientIp,
    pub request_id: String,
}

impl Viewer {
    /// Who did it, for the audit log: the key, through the console.
    pub fn actor(&self) -> crate::audit::Actor {
        crate::audit::Actor {
            key_id: Some(self.caller.key.id.clone()),
            key: Some(self.caller.redacted.clone()),
            client_ip: self.client_ip.0.map(|ip| ip.to_string()),
            request_id: Some(self.request_id.clone()),
            via: "console",
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let caller = parts.extensions.get::<Caller>().cloned();
        let session = parts.extensions.get::<Session>().cloned();
        let (Some(caller), Some(session)) = (caller, session) else {
            return Err(no_session(&parts.method, "sign in to use the console"));
        };
        Ok(Self {
            admin: caller.is_admin(),
            caller,
            csrf: session.csrf,
            client_ip: parts
                .extensions
                .get::<ClientIp>()
                .copied()
                .unwrap_or(ClientIp(None)),
            request_id: parts
                .extensions
                .get::<crate::context::RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
        })
    }
}

/// A viewer whose key has the `admin` scope; anyone else gets 403.
#[derive(Clone, Debug)]
pub struct Admin(pub Viewer);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        if !viewer.admin {
            return Err(Problem::forbidden(
                "this page is for admin keys; your key sees its own usage, budgets and tasks",
            )
            .into_response());
        }
        Ok(Self(viewer))
    }
}

/// An `application/x-www-form-urlencoded` body as name/value pairs.
#[derive(Debug, Default)]
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, as sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed; `None` when missing or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A required field, trimmed.
    pub fn required(&self, name: &str) -> Result<&str, Problem> {
        self.text(name)
            .ok_or_else(|| Problem::bad(name, format!("{name} is required")))
    }

    /// Every value of `name` (checkboxes).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// An optional number field; a value that is not one names the field.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Problem> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Problem::bad(name, format!("{name}: `{v}` is not a number"))),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self::parse(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_read_by_field() {
        let f = FormData::parse(b"name=a+b&scope=admin&scope=user&n=12&bad=x&blank=+");
        assert_eq!(f.get("name"), Some("a b"));
        assert_eq!(f.all("scope"), ["admin", "user"]);
        assert_eq!(f.number::<u32>("n").ok().flatten(), Some(12));
        assert!(f.number::<u32>("bad").is_err());
        assert_eq!(f.text("blank"), None);
        assert!(f.required("missing").is_err());
    }

    #[test]
    fn the_policy_allows_no_inline_code() {
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        assert!(open_path("/console/login") && open_path("/console/assets/console.js"));
        assert!(!open_path("/console") && !open_path("/console/keys"));
    }
}
