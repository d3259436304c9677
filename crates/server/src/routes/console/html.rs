//! Rendering for the console: escaping, the page layout with its
//! navigation, error pages, and small formatters. Every value from outside
//! reaches the page through [`esc`]; no markup carries a `style` attribute
//! or inline script (the CSP allows neither).

use super::gate::Viewer;
use crate::error::ApiError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::fmt::Write;
use switchyard_core::budget::usd;
use switchyard_store::StoreError;

/// `text` safe inside an element or a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `value` as URL query text.
pub fn q(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A console section: its path, its name, and whether it is for admins.
pub struct Section {
    pub path: &'static str,
    pub name: &'static str,
    pub admin: bool,
}

pub const SECTIONS: &[Section] = &[
    Section {
        path: "/console",
        name: "Overview",
        admin: true,
    },
    Section {
        path: "/console/keys",
        name: "Keys",
        admin: true,
    },
    Section {
        path: "/console/budgets",
        name: "Budgets",
        admin: false,
    },
    Section {
        path: "/console/usage",
        name: "Usage",
        admin: false,
    },
    Section {
        path: "/console/tasks",
        name: "Tasks",
        admin: false,
    },
    Section {
        path: "/console/audit",
        name: "Audit",
        admin: true,
    },
    Section {
        path: "/console/models",
        name: "Models",
        admin: false,
    },
    Section {
        path: "/console/rollouts",
        name: "Rollouts",
        admin: true,
    },
];

const HEAD: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<link rel="icon" href="data:,">
<meta name="htmx-config" content='{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"selfRequestsOnly":true}'>
<link rel="stylesheet" href="/console/assets/vendor/uPlot.min.css">
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/vendor/htmx.min.js" defer></script>
<script src="/console/assets/vendor/uPlot.iife.min.js" defer></script>
<script src="/console/assets/console.js" defer></script>
"#;

/// The hidden CSRF field every form of a session carries.
pub fn csrf_field(viewer: &Viewer) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        esc(&viewer.csrf)
    )
}

/// A page of the console: the layout, the navigation for what `viewer`
/// may see (`active` marked), and `body`.
pub fn page(viewer: &Viewer, active: &str, title: &str, body: &str) -> Response {
    let mut nav = String::new();
    for s in SECTIONS.iter().filter(|s| viewer.admin || !s.admin) {
        let current = if s.path == active {
            r#" aria-current="page""#
        } else {
            ""
        };
        let _ = write!(
            nav,
            r#"<li><a href="{}"{current}>{}</a></li>"#,
            s.path, s.name
        );
    }
    let key = &viewer.caller.key;
    let role = if viewer.admin { "admin" } else { "user" };
    let html = format!(
        r##"{HEAD}<title>{title} · Switchyard</title>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="/console">Switchyard</a>
<nav aria-label="Console sections"><ul>{nav}</ul></nav>
<form method="post" action="/console/logout" class="signout">{csrf}
<span class="who" title="{name}">{prefix}… · {project} · {role}</span>
<button type="submit">Sign out</button>
</form>
</header>
<main id="main">
<h1>{title}</h1>
{body}
</main>
</body>
</html>"##,
        title = esc(title),
        csrf = csrf_field(viewer),
        name = esc(&key.name),
        prefix = esc(&key.prefix),
        project = esc(&key.project),
    );
    html_response(StatusCode::OK, html)
}

/// A page outside a session (sign-in, errors): the layout without
/// navigation.
pub fn bare_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        r##"{HEAD}<title>{title} · Switchyard</title>
</head>
<body class="bare">
<main id="main">
<p class="brand">Switchyard</p>
<h1>{title}</h1>
{body}
</main>
</body>
</html>"##,
        title = esc(title),
    );
    html_response(status, html)
}

pub fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// 303 to `to`.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// A failed console request, shown as a page that says what is wrong
/// (a 5xx says only that it failed; the cause is logged).
#[derive(Debug)]
pub struct Problem(pub ApiError);

pub type PageResult = Result<Response, Problem>;

impl Problem {
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        Self(ApiError::invalid_request(message.into()).with_param(field))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self(ApiError::not_found(message.into()))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self(ApiError::forbidden("insufficient_scope", message.into()))
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        Self(ApiError::from(e))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let e = self.0;
        let field = e
            .param
            .as_deref()
            .map(|p| format!(r#"<p>Field: <code>{}</code></p>"#, esc(p)))
            .unwrap_or_default();
        let title = e
            .status
            .canonical_reason()
            .unwrap_or("Something went wrong");
        let body = format!(
            r#"<p class="error" role="alert">{}</p>{field}<p><a href="/console">Back to the console</a></p>"#,
            esc(&e.message)
        );
        bare_page(e.status, title, &body)
    }
}

/// Nano-USD as dollars with four decimals (`$0.0123`).
pub fn money(nano: i64) -> String {
    let exact = usd(nano);
    match exact.parse::<f64>() {
        // Small amounts (a few tokens) keep their digits.
        Ok(v) if v != 0.0 && v.abs() < 0.01 => format!("${v:.6}"),
        Ok(v) => format!("${v:.4}"),
        Err(_) => format!("${exact}"),
    }
}

/// A UTC time to the minute.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An optional time, or a dash.
pub fn time_or_dash(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "—".to_owned(), time)
}

/// How long ago `at` was, roughly (`3d`, `5h`, `12m`, `now`).
pub fn age(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds().max(0);
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        _ => "now".into(),
    }
}

/// A `<table>` with a caption, a header row and rows of already-rendered
/// cells; an empty table says so.
pub fn table(caption: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        r#"<div class="table-wrap"><table><caption>{}</caption><thead><tr>"#,
        esc(caption)
    );
    for h in headers {
        let _ = write!(out, r#"<th scope="col">{}</th>"#, esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            r#"<tr><td colspan="{}" class="empty">Nothing yet.</td></tr>"#,
            headers.len()
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A chart drawn by console.js with uPlot: x are UTC days (`YYYY-MM-DD`),
/// each series a name and one value per day. The data travel in an
/// attribute, escaped, never as script.
pub fn chart(id: &str, title: &str, days: &[String], series: &[(&str, Vec<f64>)]) -> String {
    let data = serde_json::json!({
        "title": title,
        "days": days,
        "series": series.iter().map(|(name, values)| serde_json::json!({"name": name, "values": values})).collect::<Vec<_>>(),
    });
    format!(
        r#"<figure class="chart" id="{id}" data-chart="{}" role="img" aria-label="{}"><figcaption>{}</figcaption></figure>"#,
        esc(&data.to_string()),
        esc(title),
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(q("a b&c"), "a+b%26c");
    }

    #[test]
    fn formatters_read_well() {
        assert_eq!(money(12_300_000), "$0.0123");
        assert_eq!(money(25_000), "$0.000025");
        assert_eq!(money(0), "$0.0000");
        let now = Utc::now();
        assert_eq!(age(now - chrono::Duration::hours(5), now), "5h");
        assert_eq!(age(now, now), "now");
        let t = table("c", &["a"], &[]);
        assert!(t.contains("Nothing yet."));
        let c = chart("x", "A<b", &["2026-01-01".into()], &[("cost", vec![1.0])]);
        assert!(c.contains("A&lt;b") && !c.contains("A<b"));
    }
}
