//! The model catalog in the console: prices, fallbacks and each model's
//! circuit breaker as this replica sees it.

use super::gate::Viewer;
use super::html::{self, esc, table, PageResult};
use crate::state::AppState;
use axum::extract::State;

/// A breaker's state as a badge.
pub fn circuit(code: i64) -> &'static str {
    match code {
        0 => r#"<span class="badge good">closed</span>"#,
        1 => r#"<span class="badge bad">open</span>"#,
        _ => r#"<span class="badge">half-open</span>"#,
    }
}

pub async fn page(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let catalog = state.gateway.catalog();
    let routes = catalog.models();
    let mut rows = Vec::new();
    for entry in catalog.entries() {
        let Some(route) = routes.iter().find(|r| r.entry.id == entry.id) else {
            continue;
        };
        let usable = match &route.missing_key {
            Some(var) => format!(r#"<span class="badge bad">needs {}</span>"#, esc(var)),
            None => r#"<span class="badge good">ready</span>"#.into(),
        };
        let cached = entry
            .cached_input_per_mtok
            .map_or_else(|| "—".into(), |p| format!("${p}"));
        rows.push(vec![
            format!("<code>{}</code>", esc(&entry.id)),
            esc(&entry.aliases.join(", ")),
            esc(entry.upstream.kind().as_str()),
            format!("${}", entry.input_per_mtok),
            format!("${}", entry.output_per_mtok),
            cached,
            esc(&entry.fallbacks.join(" → ")),
            circuit(route.breaker.state_code()).into(),
            usable,
        ]);
    }
    let body = format!(
        r#"<p class="muted">Prices in USD per million tokens. Circuit state is this replica's.</p>{}"#,
        table(
            "Models",
            &[
                "Model",
                "Aliases",
                "Backend",
                "Input",
                "Output",
                "Cached input",
                "Fallbacks",
                "Circuit",
                "Usable"
            ],
            &rows,
        )
    );
    Ok(html::page(&viewer, "/console/models", "Models", &body))
}
