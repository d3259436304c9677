//! Budget enforcement around model calls: reserve the estimated cost before
//! the call (atomically, in the shared database); the usage writer settles
//! it with the actual cost, in the same transaction as the call's usage row
//! (see `usage`). Exceeded → 429 `budget_exceeded`.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;
use switchyard_core::budget::{usd, Budget};
use switchyard_store::Reservation;

/// The header carrying the smallest remaining budget, in USD.
pub const REMAINING_HEADER: &str = "x-budget-remaining-usd";

async fn applicable(state: &AppState, caller: &Caller) -> Result<Arc<Vec<Budget>>, ApiError> {
    let cache_key = format!("{}\u{1f}{}", caller.key.id, caller.key.project);
    let store = &state.store;
    let (budgets, served) = state
        .budgets
        .get_or_load(&cache_key, async {
            store
                .budgets_for(&caller.key.id, &caller.key.project)
                .await
                .map(Arc::new)
        })
        .await
        .map_err(|e| match Arc::try_unwrap(e) {
            Ok(e) => ApiError::from(e),
            Err(shared) => ApiError::internal(&shared),
        })?;
    state.metrics.count_cache("budgets", served);
    Ok(budgets)
}

/// Reserves `estimate_nano_usd` against every budget of the caller's key and
/// project; `None` when no budget applies.
pub async fn reserve(
    state: &AppState,
    caller: &Caller,
    estimate_nano_usd: i64,
) -> Result<Option<Reservation>, ApiError> {
    let budgets = applicable(state, caller).await?;
    if budgets.is_empty() {
        return Ok(None);
    }
    match state
        .store
        .reserve_budget(&budgets, estimate_nano_usd, switchyard_core::now())
        .await?
    {
        Ok(r) => Ok(Some(r)),
        Err(exceeded) => {
            let b = &exceeded.budget;
            let e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "budget_exceeded",
                format!(
                    "the {} {} budget of {} USD for {} `{}` cannot cover this request (estimated {} USD, {} USD left)",
                    b.period.as_str(),
                    b.scope.as_str(),
                    usd(b.limit_nano_usd),
                    b.scope.as_str(),
                    b.subject,
                    usd(estimate_nano_usd),
                    usd(exceeded.remaining_nano_usd.max(0)),
                ),
            )
            .with_code("budget_exceeded")
            .with_header(REMAINING_HEADER, usd(exceeded.remaining_nano_usd.max(0)));
            Err(e)
        }
    }
}

/// Sets the remaining-budget header when a budget applied.
pub fn set_remaining_header(headers: &mut HeaderMap, remaining_nano_usd: Option<i64>) {
    if let Some(left) = remaining_nano_usd {
        if let Ok(v) = HeaderValue::from_str(&usd(left.max(0))) {
            headers.insert(REMAINING_HEADER, v);
        }
    }
}
