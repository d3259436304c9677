//! The web console at `/console`: server-rendered pages over the same
//! services as the admin API (keys, budgets, usage, tasks, audit), signed
//! in with an API key exchanged for a session cookie. Assets (htmx, uPlot,
//! the console's own CSS and JS) are embedded in the binary. See
//! docs/console.md.

pub mod assets;
pub mod audit;
pub mod budgets;
pub mod gate;
pub mod html;
pub mod keys;
pub mod models;
pub mod overview;
pub mod tasks;
pub mod usage;

use crate::auth::check_usable;
use crate::context::ClientIp;
use crate::ratelimit::Scope as LimitScope;
use crate::session::{self, LOGIN_COOKIE};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use gate::{FormData, GateState, Session, Viewer};
use html::{bare_page, esc, see_other};
use switchyard_core::keys::PresentedKey;

/// The console's routes (the gate is layered in `routes::router`).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/console", get(overview::page))
        .route("/console/", get(overview::page))
        .route("/console/overview/queue", get(overview::queue_fragment))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/assets/{*path}", get(assets::asset))
        .route("/console/keys", get(keys::list).post(keys::create))
        .route("/console/keys/{id}", get(keys::show))
        .route("/console/keys/{id}/rotate", post(keys::rotate))
        .route("/console/keys/{id}/revoke", post(keys::revoke))
        .route("/console/keys/{id}/rate-limit", post(keys::rate_limit))
        .route("/console/keys/{id}/task-profile", post(keys::task_profile))
        .route("/console/keys/{id}/expiry", post(keys::expiry))
        .route("/console/budgets", get(budgets::list).post(budgets::set))
        .route("/console/budgets/{id}/delete", post(budgets::delete))
        .route("/console/usage", get(usage::page))
        .route("/console/usage.csv", get(usage::csv))
        .route("/console/tasks", get(tasks::list))
        .route("/console/tasks/{id}", get(tasks::show))
        .route("/console/tasks/{id}/cancel", post(tasks::cancel))
        .route("/console/tasks/{id}/events", get(super::tasks::events))
        .route(
            "/console/tasks/{id}/artifacts/{*path}",
            get(super::tasks::artifact),
        )
        .route("/console/audit", get(audit::page))
        .route("/console/audit/verify", get(audit::verify))
        .route("/console/models", get(models::page))
        .route("/console/rollouts", get(audit::rollouts))
}

/// The gate's state, from the application's.
pub fn gate_state(state: &AppState) -> GateState {
    GateState {
        keys: state.authority.clone(),
        limits: state.limits.clone(),
        sessions: state.sessions.clone(),
        rotation: state.config.keys.rotation,
        serves_tls: state.config.tls.is_some(),
        max_body: state.config.max_body_bytes,
    }
}

fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn login_page(status: StatusCode, nonce: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"{error}<form method="post" action="/console/login" class="stack">
<input type="hidden" name="login_csrf" value="{nonce}">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="off" required autofocus placeholder="sy_…">
<p class="hint">Any key signs in. Admin keys see and manage everything; other keys see their own usage, budgets and tasks. The session ends after an hour without use, twelve hours after signing in, or when the key expires.</p>
<button type="submit">Sign in</button>
</form>"#,
        nonce = esc(nonce)
    );
    bare_page(status, "Sign in", &body)
}

/// A sign-in form with its own CSRF nonce (a cookie the form must echo).
fn fresh_login(status: StatusCode, error: Option<&str>, secure: bool) -> Response {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let mut response = login_page(status, &nonce, error);
    set_cookie(
        &mut response,
        &session::set_cookie(LOGIN_COOKIE, &nonce, "/console/login", 600, secure),
    );
    response
}

pub async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let secure = session::is_https(&headers, state.config.tls.is_some());
    fresh_login(StatusCode::OK, None, secure)
}

/// Exchanges an API key for a session cookie.
pub async fn login(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    form: FormData,
) -> Response {
    let secure = session::is_https(&headers, state.config.tls.is_some());
    let nonce = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if nonce.is_empty() || form.get("login_csrf") != Some(nonce) {
        return fresh_login(
            StatusCode::FORBIDDEN,
            Some("the sign-in form expired or did not come from this console; try again"),
            secure,
        );
    }
    let ip =
        ip.0.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let failures_key = format!("authfail:{ip}");
    let failures = state.limits.quotas().auth_failures;
    if let Err(rejection) = state
        .limits
        .guard(LimitScope::AuthFailure, &failures_key, &failures)
        .await
    {
        return rejection.into_response();
    }
    let raw = form.get("key").unwrap_or_default().trim();
    let refused = |why: &str| fresh_login(StatusCode::UNAUTHORIZED, Some(why), secure);
    let Ok(presented) = PresentedKey::parse(raw) else {
        state.limits.count_failure(&failures_key, &failures).await;
        return refused("that is not an API key: expected `sy_` followed by 64 hex digits");
    };
    let key = match state.authority.lookup(presented.hash()).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            state.limits.count_failure(&failures_key, &failures).await;
            return refused("the API key is not valid");
        }
        Err(e) => return html::Problem(crate::error::ApiError::internal(&e)).into_response(),
    };
    let now = switchyard_core::now();
    if let Err(e) = check_usable(&state.config.keys.rotation, &key, now, "API key") {
        state.limits.count_failure(&failures_key, &failures).await;
        return refused(&e.message);
    }
    let Some(issued) = state.sessions.issue(&key, state.key_expiry(&key), now) else {
        return refused("the API key expires within a second");
    };
    tracing::info!(key_id = %key.id, session = %issued.claims.jti, "console session started");
    let home = if key.scopes.allows(switchyard_core::keys::Scope::Admin) {
        "/console"
    } else {
        "/console/usage"
    };
    let mut response = see_other(home);
    let max_age = issued.claims.exp - now.timestamp();
    set_cookie(
        &mut response,
        &session::set_cookie(session::COOKIE, &issued.token, "/console", max_age, secure),
    );
    set_cookie(
        &mut response,
        &session::set_cookie(LOGIN_COOKIE, "", "/console/login", 0, secure),
    );
    response
}

/// Ends the session: refused from now on, and the cookie removed.
pub async fn logout(
    State(state): State<AppState>,
    viewer: Viewer,
    Extension(current): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    state.sessions.end(&current.claims).await;
    tracing::info!(key_id = %viewer.caller.key.id, session = %current.claims.jti, "console session ended");
    let secure = session::is_https(&headers, state.config.tls.is_some());
    let mut response = see_other("/console/login");
    set_cookie(
        &mut response,
        &session::set_cookie(session::COOKIE, "", "/console", 0, secure),
    );
    response
}
