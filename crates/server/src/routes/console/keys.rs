//! Keys in the console (admin): the list with rotation due dates; create
//! (the secret shown once), rotate, revoke, and a key's rate limit, task
//! profile and expiry. Every action goes through the key service, as the
//! admin API's do, and is audited with `via: console`.

use super::gate::{Admin, FormData, Viewer};
use super::html::{
    self, age, csrf_field, esc, page, q, see_other, table, time_or_dash, PageResult, Problem,
};
use crate::keys::IssueError;
use crate::routes::admin_keys::{expiry_from, key_not_found, rotate_error};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use switchyard_core::keys::{ApiKey, NewKeySpec, RateLimit, Scope, Scopes, TaskProfile};

#[derive(Deserialize, Default)]
pub struct ListQuery {
    /// Show revoked keys too.
    #[serde(default)]
    pub all: Option<String>,
}

/// A rate as `100/minute` (what the form reads back), or `N/Ps` for a
/// period with no unit name.
fn rate_text(r: RateLimit) -> String {
    let unit = match r.period_seconds() {
        1 => "second".to_owned(),
        60 => "minute".to_owned(),
        3600 => "hour".to_owned(),
        86_400 => "day".to_owned(),
        p => format!("{p}s"),
    };
    format!("{}/{unit}", r.requests())
}

fn rate(limit: Option<RateLimit>) -> String {
    limit.map_or_else(|| "default".to_owned(), rate_text)
}

fn status(state: &AppState, key: &ApiKey, now: chrono::DateTime<chrono::Utc>) -> String {
    let policy = state.config.keys.rotation;
    if key.revoked_at.is_some() {
        r#"<span class="badge bad">revoked</span>"#.into()
    } else if policy.check(key, now).is_err() {
        r#"<span class="badge bad">expired</span>"#.into()
    } else if key.successor_id.is_some() {
        r#"<span class="badge">rotated (grace)</span>"#.into()
    } else if policy.is_due(key, now) {
        r#"<span class="badge bad">rotation due</span>"#.into()
    } else {
        r#"<span class="badge good">active</span>"#.into()
    }
}

fn scopes_text(s: &Scopes) -> String {
    s.iter().map(Scope::as_str).collect::<Vec<_>>().join(", ")
}

fn actions(viewer: &Viewer, key: &ApiKey) -> String {
    if key.revoked_at.is_some() {
        return String::new();
    }
    let id = esc(&key.id);
    let csrf = csrf_field(viewer);
    let rotate = if key.successor_id.is_none() {
        format!(
            r#"<form method="post" action="/console/keys/{id}/rotate" class="inline">{csrf}<button type="submit" class="quiet" aria-label="Rotate {name}">Rotate</button></form>"#,
            name = esc(&key.name)
        )
    } else {
        String::new()
    };
    format!(
        r#"<div class="actions">{rotate}<form method="post" action="/console/keys/{id}/revoke" class="inline" data-confirm="Revoke this key? Calls with it stop at once.">{csrf}<button type="submit" class="danger" aria-label="Revoke {name}">Revoke</button></form></div>"#,
        name = esc(&key.name)
    )
}

fn create_form(viewer: &Viewer) -> String {
    format!(
        r#"<section class="card" aria-labelledby="create-h"><h2 id="create-h">Create a key</h2>
<form method="post" action="/console/keys" class="row">{csrf}
<label>Name <input name="name" required maxlength="200" placeholder="billing-service"></label>
<label>Project <input name="project" required maxlength="200" placeholder="billing"></label>
<label>Owner <input name="owner" maxlength="200" placeholder="team@example.com"></label>
<label>Expires in days <input name="expires_in_days" inputmode="numeric" placeholder="none"></label>
<label>Rate limit <input name="rate_limit" placeholder="100/minute"></label>
<label><span>Admin</span><input type="checkbox" name="admin" value="1"></label>
<button type="submit">Create key</button>
</form></section>"#,
        csrf = csrf_field(viewer)
    )
}

fn key_rows(state: &AppState, viewer: &Viewer, keys: &[ApiKey]) -> Vec<Vec<String>> {
    let now = switchyard_core::now();
    let policy = state.config.keys.rotation;
    keys.iter()
        .map(|k| {
            vec![
                format!(r#"<code>{}…</code>"#, esc(&k.prefix)),
                format!(
                    r#"<a href="/console/keys/{}">{}</a>"#,
                    esc(&k.id),
                    esc(&k.name)
                ),
                esc(&k.project),
                esc(k.owner.as_deref().unwrap_or("—")),
                esc(&scopes_text(&k.scopes)),
                age(k.created_at, now),
                k.last_used_at
                    .map_or_else(|| "never".into(), |t| format!("{} ago", age(t, now))),
                time_or_dash(policy.due_at(k)),
                status(state, k, now),
                actions(viewer, k),
            ]
        })
        .collect()
}

const HEADERS: &[&str] = &[
    "Prefix",
    "Name",
    "Project",
    "Owner",
    "Scopes",
    "Age",
    "Last used",
    "Rotation due",
    "Status",
    "Actions",
];

pub async fn list(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let all = query.all.is_some();
    let keys = state.keys.list(all).await?;
    let toggle = if all {
        r#"<a href="/console/keys">Hide revoked keys</a>"#
    } else {
        r#"<a href="/console/keys?all=1">Show revoked keys</a>"#
    };
    let body = format!(
        "{}<p>{toggle}</p>{}",
        create_form(&viewer),
        table("API keys", HEADERS, &key_rows(&state, &viewer, &keys))
    );
    Ok(page(&viewer, "/console/keys", "Keys", &body))
}

/// The page that shows a new secret, once.
fn secret_page(viewer: &Viewer, title: &str, secret: &str, key: &ApiKey, note: &str) -> PageResult {
    let body = format!(
        r#"<div class="secret" role="status"><strong>Secret:</strong> <code id="secret">{secret}</code>
<button type="button" data-copy="secret">Copy</button></div>
<p class="warn">This is the only time the secret is shown. Store it now; only its hash is kept.</p>
<p>{note}</p>
<p>Key <a href="/console/keys/{id}">{name}</a> (<code>{id}</code>) in project {project}.</p>
<p><a href="/console/keys">Back to keys</a></p>"#,
        secret = esc(secret),
        note = esc(note),
        id = esc(&key.id),
        name = esc(&key.name),
        project = esc(&key.project),
    );
    let mut response = page(viewer, "/console/keys", title, &body);
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

fn parse_rate(form: &FormData) -> Result<Option<RateLimit>, Problem> {
    form.text("rate_limit")
        .map(|r| {
            r.parse::<RateLimit>()
                .map_err(|e| Problem::bad("rate_limit", format!("rate_limit: {e}")))
        })
        .transpose()
}

pub async fn create(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    form: FormData,
) -> PageResult {
    let now = switchyard_core::now();
    let scopes = if form.text("admin").is_some() {
        Scopes::admin()
    } else {
        Scopes::user()
    };
    let days = form.number::<u32>("expires_in_days")?;
    let expires_at = expiry_from(None, days, now)?;
    let mut spec = NewKeySpec::new(
        form.required("name")?,
        form.text("owner"),
        form.required("project")?,
        scopes,
        expires_at,
        now,
    )
    .map_err(|e| Problem::bad(e.field, e.to_string()))?;
    spec.rate_limit = parse_rate(&form)?;
    let issued = state
        .keys
        .issue(&spec, &viewer.actor())
        .await
        .map_err(|e| match e {
            IssueError::Store(s) => Problem::from(s),
            other => Problem(crate::error::ApiError::internal(&other)),
        })?;
    secret_page(
        &viewer,
        "Key created",
        issued.secret.expose(),
        &issued.key,
        "The key works now.",
    )
}

pub async fn rotate(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    let grace = form
        .number::<u32>("grace_days")?
        .unwrap_or(state.config.keys.rotation_grace_days);
    let rotated = state
        .keys
        .rotate(&id, grace, &viewer.actor())
        .await
        .map_err(rotate_error)?;
    let note = format!(
        "The old key {} keeps working until {}.",
        rotated.previous.prefix,
        html::time_or_dash(rotated.previous.expires_at)
    );
    secret_page(
        &viewer,
        "Key rotated",
        rotated.successor.secret.expose(),
        &rotated.successor.key,
        &note,
    )
}

pub async fn revoke(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    Path(id): Path<String>,
) -> PageResult {
    state
        .keys
        .revoke(&id, &viewer.actor())
        .await?
        .ok_or_else(|| key_not_found(&id))?;
    Ok(see_other("/console/keys?all=1"))
}

pub async fn rate_limit(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    let limit = parse_rate(&form)?;
    state
        .keys
        .set_rate_limit(&id, limit, &viewer.actor())
        .await?
        .ok_or_else(|| key_not_found(&id))?;
    Ok(see_other(&format!("/console/keys/{}", q(&id))))
}

pub async fn task_profile(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    let profile: Option<TaskProfile> = match form.text("task_profile") {
        None => None,
        Some(text) => {
            let p: TaskProfile = serde_json::from_str(text)
                .map_err(|e| Problem::bad("task_profile", format!("task_profile: {e}")))?;
            p.validate()
                .map_err(|m| Problem::bad("task_profile", format!("task_profile: {m}")))?;
            Some(p)
        }
    };
    state
        .keys
        .set_task_profile(&id, profile.as_ref(), &viewer.actor())
        .await?
        .ok_or_else(|| key_not_found(&id))?;
    Ok(see_other(&format!("/console/keys/{}", q(&id))))
}

pub async fn expiry(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    let now = switchyard_core::now();
    let days = form.number::<u32>("expires_in_days")?;
    let at = expiry_from(None, days, now)?;
    state
        .keys
        .set_expiry(&id, at, &viewer.actor())
        .await?
        .ok_or_else(|| key_not_found(&id))?;
    Ok(see_other(&format!("/console/keys/{}", q(&id))))
}

pub async fn show(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    Path(id): Path<String>,
) -> PageResult {
    let key = state
        .keys
        .get(&id)
        .await?
        .ok_or_else(|| key_not_found(&id))?;
    let now = switchyard_core::now();
    let csrf = csrf_field(&viewer);
    let id = esc(&key.id);
    let profile = key
        .task_profile
        .as_ref()
        .and_then(|p| serde_json::to_string_pretty(p).ok())
        .unwrap_or_default();
    let facts = table(
        "Key",
        &["Field", "Value"],
        &[
            vec!["Id".into(), format!("<code>{id}</code>")],
            vec![
                "Prefix".into(),
                format!("<code>{}…</code>", esc(&key.prefix)),
            ],
            vec!["Project".into(), esc(&key.project)],
            vec!["Owner".into(), esc(key.owner.as_deref().unwrap_or("—"))],
            vec!["Scopes".into(), esc(&scopes_text(&key.scopes))],
            vec!["Created".into(), html::time(key.created_at)],
            vec!["Last used".into(), time_or_dash(key.last_used_at)],
            vec!["Expires".into(), time_or_dash(key.expires_at)],
            vec![
                "Rotation due".into(),
                time_or_dash(state.config.keys.rotation.due_at(&key)),
            ],
            vec!["Rate limit".into(), esc(&rate(key.rate_limit))],
            vec!["Status".into(), status(&state, &key, now)],
        ],
    );
    let forms = if key.revoked_at.is_some() {
        String::new()
    } else {
        format!(
            r#"<section class="card"><h2>Rate limit</h2>
<form method="post" action="/console/keys/{id}/rate-limit" class="row">{csrf}
<label>Requests per period <input name="rate_limit" value="{rate}" placeholder="100/minute; empty for the default"></label>
<button type="submit">Set rate limit</button></form></section>
<section class="card"><h2>Expiry</h2>
<form method="post" action="/console/keys/{id}/expiry" class="row">{csrf}
<label>Expires in days <input name="expires_in_days" inputmode="numeric" placeholder="empty: never"></label>
<button type="submit">Set expiry</button></form></section>
<section class="card"><h2>Task profile</h2>
<form method="post" action="/console/keys/{id}/task-profile" class="stack">{csrf}
<label for="tp">What this key's agent tasks may use, as JSON (empty clears it), e.g. <code>{{"allowed_tools": ["Read", "Grep"], "max_cost_usd": 0.5}}</code></label>
<textarea id="tp" name="task_profile">{profile}</textarea>
<button type="submit">Set task profile</button></form></section>
<section class="card"><h2>Rotate or revoke</h2>{actions}</section>"#,
            rate = esc(&key.rate_limit.map(rate_text).unwrap_or_default()),
            profile = esc(&profile),
            actions = actions(&viewer, &key),
        )
    };
    let audit = format!(
        r#"<p><a href="/console/audit?key_id={}">Audit records of this key</a> · <a href="/console/usage?key_id={}">Its usage</a></p>"#,
        q(&key.id),
        q(&key.id)
    );
    let title = format!("Key {}", key.name);
    Ok(page(
        &viewer,
        "/console/keys",
        &title,
        &format!("{facts}{audit}{forms}"),
    )
    .into_response())
}
