//! Budgets in the console: each budget's spend against its limit as a bar;
//! admins set and delete them through the budget service (audited, as the
//! admin API's changes are); other keys see their key's and project's.

use super::gate::{Admin, FormData, Viewer};
use super::html::{csrf_field, esc, money, page, see_other, table, PageResult, Problem};
use crate::budgets::{BudgetError, BudgetRequest};
use crate::state::AppState;
use axum::extract::{Path, State};
use switchyard_core::budget::{BudgetPeriod, BudgetScope};
use switchyard_store::BudgetState;

fn rows(viewer: &Viewer, states: &[BudgetState]) -> Vec<Vec<String>> {
    states
        .iter()
        .map(|s| {
            let b = &s.budget;
            let used = s.spent_nano_usd + s.leased_nano_usd;
            let pct = if b.limit_nano_usd > 0 {
                (used as f64 / b.limit_nano_usd as f64 * 100.0).min(100.0)
            } else {
                100.0
            };
            let mut row = vec![
                esc(b.scope.as_str()),
                format!("<code>{}</code>", esc(&b.subject)),
                esc(b.period.as_str()),
                money(s.spent_nano_usd),
                money(s.leased_nano_usd),
                money(b.limit_nano_usd),
                format!(
                    r#"<meter min="0" max="100" low="70" high="90" optimum="0" value="{pct:.1}" aria-label="{pct:.0}% of the limit used">{pct:.0}%</meter> {pct:.0}%"#
                ),
            ];
            if viewer.admin {
                row.push(format!(
                    r#"<form method="post" action="/console/budgets/{}/delete" class="inline" data-confirm="Delete this budget and its spend history?">{}<button type="submit" class="danger">Delete</button></form>"#,
                    esc(&b.id),
                    csrf_field(viewer)
                ));
            }
            row
        })
        .collect()
}

fn set_form(viewer: &Viewer) -> String {
    format!(
        r#"<section class="card"><h2>Set a budget</h2>
<form method="post" action="/console/budgets" class="row">{}
<label>Scope <select name="scope"><option value="project">project</option><option value="key">key</option></select></label>
<label>Subject <input name="subject" required placeholder="project name or key id"></label>
<label>Period <select name="period"><option value="monthly">monthly</option><option value="daily">daily</option><option value="total">total</option></select></label>
<label>Limit (USD) <input name="limit_usd" required inputmode="decimal" placeholder="100"></label>
<button type="submit">Set budget</button></form>
<p class="hint">Setting a budget for the same scope, subject and period replaces it.</p></section>"#,
        csrf_field(viewer)
    )
}

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let states = if viewer.admin {
        state.budgets.list().await?
    } else {
        let key = &viewer.caller.key;
        state.budgets.states_for(&key.id, &key.project).await?
    };
    let mut headers = vec![
        "Scope", "Subject", "Period", "Spent", "Leased", "Limit", "Used",
    ];
    if viewer.admin {
        headers.push("Actions");
    }
    let form = if viewer.admin {
        set_form(&viewer)
    } else {
        String::new()
    };
    let body = format!(
        "{form}{}",
        table(
            "Budgets in their current period",
            &headers,
            &rows(&viewer, &states)
        )
    );
    Ok(page(&viewer, "/console/budgets", "Budgets", &body))
}

pub async fn set(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    form: FormData,
) -> PageResult {
    let scope: BudgetScope = form
        .required("scope")?
        .parse()
        .map_err(|e: String| Problem::bad("scope", format!("scope: {e}")))?;
    let period: BudgetPeriod = form
        .required("period")?
        .parse()
        .map_err(|e: String| Problem::bad("period", format!("period: {e}")))?;
    let limit_usd = form
        .number::<f64>("limit_usd")?
        .ok_or_else(|| Problem::bad("limit_usd", "limit_usd is required"))?;
    let req = BudgetRequest {
        scope,
        subject: form.required("subject")?.to_owned(),
        period,
        limit_usd,
    };
    state
        .budgets
        .set(&req, &viewer.actor())
        .await
        .map_err(|e| match e {
            BudgetError::Invalid(field, message) => Problem::bad(field, message),
            BudgetError::Store(s) => Problem::from(s),
        })?;
    Ok(see_other("/console/budgets"))
}

pub async fn delete(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    Path(id): Path<String>,
) -> PageResult {
    state
        .budgets
        .delete(&id, &viewer.actor())
        .await?
        .ok_or_else(|| Problem::not_found(format!("no budget with id `{id}`")))?;
    Ok(see_other("/console/budgets"))
}
