//! The console's static files, embedded in the binary: its own stylesheet
//! and script, and the vendored htmx and uPlot (with their licences; see
//! `assets/console/vendor/README.md`).

use super::html::Problem;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

macro_rules! asset {
    ($path:literal) => {
        include_bytes!(concat!("../../../assets/console/", $path)).as_slice()
    };
}

/// Every file served under `/console/assets/`, with its content type.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        asset!("console.css"),
    ),
    (
        "console.js",
        "application/javascript; charset=utf-8",
        asset!("console.js"),
    ),
    (
        "vendor/htmx.min.js",
        "application/javascript; charset=utf-8",
        asset!("vendor/htmx.min.js"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "application/javascript; charset=utf-8",
        asset!("vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        asset!("vendor/uPlot.min.css"),
    ),
    (
        "vendor/LICENSE-htmx",
        "text/plain; charset=utf-8",
        asset!("vendor/LICENSE-htmx"),
    ),
    (
        "vendor/LICENSE-uplot",
        "text/plain; charset=utf-8",
        asset!("vendor/LICENSE-uplot"),
    ),
    (
        "vendor/README.md",
        "text/plain; charset=utf-8",
        asset!("vendor/README.md"),
    ),
];

pub async fn asset(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => Problem::not_found(format!("no console asset `{path}`")).into_response(),
    }
}
