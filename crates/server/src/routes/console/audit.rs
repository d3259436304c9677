//! The audit log in the console (admin): records filtered as the admin
//! API filters them, paged by cursor, the hash chain verified on request;
//! and rollouts, read from their audit records (the shares the last
//! decision left, and the recent decisions).

use super::gate::Admin;
use super::html::{self, esc, q, table, time, PageResult, Problem};
use crate::audit_trail::{self, AuditRecordView, FilterInput};
use crate::state::AppState;
use axum::extract::{Query, State};
use serde::Deserialize;
use std::fmt::Write;
use switchyard_core::audit::AuditKind;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    pub event: Option<String>,
    pub key_id: Option<String>,
    pub project: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub cursor: Option<String>,
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn details_text(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.len() > 300 {
        let cut: String = text.chars().take(300).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn record_rows(records: &[AuditRecordView]) -> Vec<Vec<String>> {
    records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                time(r.timestamp),
                format!(r#"<span data-event="{e}">{e}</span>"#, e = esc(&r.event)),
                esc(r.actor_key.as_deref().unwrap_or("—")),
                format!("<code>{}</code>", esc(r.target.as_deref().unwrap_or("—"))),
                esc(r.project.as_deref().unwrap_or("—")),
                esc(r.details.get("via").and_then(|v| v.as_str()).unwrap_or("")),
                esc(r.client_ip.as_deref().unwrap_or("—")),
                format!("<code>{}</code>", esc(&details_text(&r.details))),
            ]
        })
        .collect()
}

const HEADERS: &[&str] = &[
    "#",
    "Time",
    "Event",
    "Actor",
    "Target",
    "Project",
    "Via",
    "Client IP",
    "Details",
];

fn filter_form(query: &AuditQuery) -> String {
    let mut events = String::from(r#"<option value="">any</option>"#);
    for k in AuditKind::ALL {
        let sel = if blank(&query.event) == Some(k.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            events,
            r#"<option value="{0}"{sel}>{0}</option>"#,
            k.as_str()
        );
    }
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    format!(
        r#"<form method="get" action="/console/audit" class="row card" aria-label="Audit filters">
<label>Event <select name="event">{events}</select></label>
<label>Key id <input name="key_id" value="{}"></label>
<label>Project <input name="project" value="{}"></label>
<label>From <input name="from" value="{}" placeholder="7d or 2026-01-31"></label>
<label>To <input name="to" value="{}" placeholder="RFC 3339 or date"></label>
<button type="submit">Filter</button></form>"#,
        v(&query.key_id),
        v(&query.project),
        v(&query.from),
        v(&query.to)
    )
}

pub async fn page(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    Query(query): Query<AuditQuery>,
) -> PageResult {
    let input = FilterInput {
        from: blank(&query.from),
        to: blank(&query.to),
        event: blank(&query.event),
        key_id: blank(&query.key_id),
        project: blank(&query.project),
    };
    let filter = input
        .parse(switchyard_core::now())
        .map_err(|e| Problem::bad(e.field, e.to_string()))?;
    let cursor = blank(&query.cursor)
        .map(audit_trail::parse_cursor)
        .transpose()
        .map_err(|e| Problem::bad(e.field, e.to_string()))?;
    let records = audit_trail::page(&state.store, &filter, cursor, 100).await?;
    let next = match &records.next_cursor {
        Some(c) => {
            let mut qs = format!("cursor={}", q(c));
            for (name, v) in [
                ("event", &query.event),
                ("key_id", &query.key_id),
                ("project", &query.project),
                ("from", &query.from),
                ("to", &query.to),
            ] {
                if let Some(v) = blank(v) {
                    let _ = write!(qs, "&{name}={}", q(v));
                }
            }
            format!(
                r#"<p><a href="/console/audit?{}">Older records</a></p>"#,
                esc(&qs)
            )
        }
        None => String::new(),
    };
    let body = format!(
        r#"<section class="card" id="chain"><p>The log is hash-chained: <a href="/console/audit/verify">verify the chain now</a> (walks every record).</p></section>
{}{}{next}"#,
        filter_form(&query),
        table(
            "Audit records, newest first",
            HEADERS,
            &record_rows(&records.data)
        )
    );
    Ok(html::page(&viewer, "/console/audit", "Audit", &body))
}

/// Walks the whole chain and shows the result, as `switchyard audit verify`.
pub async fn verify(State(state): State<AppState>, Admin(viewer): Admin) -> PageResult {
    let report = state.store.verify_audit_chain(1000).await?;
    let mut body = String::new();
    if report.ok {
        let _ = write!(
            body,
            r#"<p class="ok" id="chain-status">Chain verified: {} record(s), #{} to #{}.</p>"#,
            report.checked,
            report
                .first_id
                .map_or_else(|| "—".into(), |i| i.to_string()),
            report.last_id.map_or_else(|| "—".into(), |i| i.to_string())
        );
    } else if let Some(b) = &report.broken {
        let _ = write!(
            body,
            r#"<p class="error" id="chain-status">The chain is broken at record #{} ({}, {}): {}.</p>"#,
            b.link.id,
            esc(&b.event),
            time(b.timestamp),
            esc(b.reason)
        );
    }
    if let Some(head) = &report.head {
        let _ = write!(
            body,
            r#"<p>Head hash: <code>{}</code> — record it outside the database to detect a rewrite of the whole chain later.</p>"#,
            esc(head)
        );
    }
    if report.unchained > 0 {
        let _ = write!(
            body,
            "<p>{} record(s) from before the chain existed are not chained.</p>",
            report.unchained
        );
    }
    if let Some(a) = &report.anchor {
        let _ = write!(
            body,
            "<p>Retention has deleted {} record(s), through #{}; the chain continues from its hash.</p>",
            a.deleted_total, a.record_id
        );
    }
    body.push_str(r#"<p><a href="/console/audit">Back to the audit log</a></p>"#);
    Ok(html::page(&viewer, "/console/audit", "Audit chain", &body))
}

/// Rollouts: the shares the newest rollout decision left, and recent
/// decisions (the `rollout.*` audit records the `rollout` command writes).
pub async fn rollouts(State(state): State<AppState>, Admin(viewer): Admin) -> PageResult {
    let mut records = Vec::new();
    for kind in [
        AuditKind::RolloutStarted,
        AuditKind::RolloutStep,
        AuditKind::RolloutRolledBack,
        AuditKind::RolloutCompleted,
        AuditKind::RolloutRetired,
    ] {
        let filter = FilterInput {
            event: Some(kind.as_str()),
            ..FilterInput::default()
        }
        .parse(switchyard_core::now())
        .map_err(|e| Problem::bad(e.field, e.to_string()))?;
        records.extend(
            audit_trail::page(&state.store, &filter, None, 50)
                .await?
                .data,
        );
    }
    records.sort_by_key(|r| std::cmp::Reverse(r.id));
    records.truncate(50);
    let shares = records
        .iter()
        .find_map(|r| r.details.get("shares").and_then(|s| s.as_object()).cloned());
    let now_html = match shares {
        Some(map) => {
            let rows: Vec<Vec<String>> = map
                .iter()
                .map(|(slot, share)| {
                    let pct = share.as_f64().unwrap_or(0.0);
                    vec![
                        esc(slot),
                        format!("{pct}%"),
                        format!(r#"<meter min="0" max="100" value="{pct}" aria-label="{} share">{pct}%</meter>"#, esc(slot)),
                    ]
                })
                .collect();
            table("Shares after the newest decision", &["Slot", "Share", ""], &rows)
        }
        None => r#"<p class="muted">No rollout has recorded shares yet. Rollouts are run with <code>switchyard rollout</code>; their decisions appear here.</p>"#.into(),
    };
    let slot = state
        .config
        .deployment_slot
        .as_deref()
        .map(|s| format!("<p>This replica is slot <strong>{}</strong>.</p>", esc(s)))
        .unwrap_or_default();
    let body = format!(
        "{slot}{now_html}<h2>Recent decisions</h2>{}",
        table(
            "Rollout records, newest first",
            HEADERS,
            &record_rows(&records)
        )
    );
    Ok(html::page(&viewer, "/console/rollouts", "Rollouts", &body))
}
