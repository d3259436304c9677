//! How a gateway failure reads to an HTTP client: status, error type, code,
//! message and headers. Upstream causes stay in the log; the client learns
//! what failed and whether to retry.

use crate::error::ApiError;
use crate::gateway::GatewayError;
use axum::http::StatusCode;
use switchyard_core::budget::usd;
use switchyard_models::BackendError;

/// The header carrying the smallest remaining budget, in USD.
pub const REMAINING_HEADER: &str = "x-budget-remaining-usd";

/// Sets the remaining-budget header when a budget applied.
pub fn set_remaining_header(headers: &mut axum::http::HeaderMap, remaining_nano_usd: Option<i64>) {
    if let Some(left) = remaining_nano_usd {
        if let Ok(v) = axum::http::HeaderValue::try_from(usd(left.max(0))) {
            const NAME: axum::http::HeaderName =
                axum::http::HeaderName::from_static(REMAINING_HEADER);
            headers.insert(NAME, v);
        }
    }
}

fn status(e: &GatewayError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn upstream(e: &BackendError, err: &GatewayError) -> ApiError {
    let message = match e {
        BackendError::Timeout(d) => format!("the model did not answer within {} s", d.as_secs()),
        BackendError::Connect(_) => "the model's upstream cannot be reached".to_owned(),
        BackendError::Status {
            status: 429,
            message,
            ..
        } => format!("the model's upstream is rate limiting: {message}"),
        BackendError::Status {
            status: 400 | 404 | 422,
            message,
            ..
        } => {
            return ApiError::invalid_request(format!(
                "the model's upstream rejected the request: {message}"
            ))
            .with_code(err.code());
        }
        BackendError::Status { status, .. } => {
            format!("the model's upstream failed (HTTP {status})")
        }
        BackendError::Protocol(_) => "the model's upstream sent an invalid reply".to_owned(),
    };
    let api = ApiError::new(status(err), "upstream_error", message).with_code(err.code());
    match e {
        BackendError::Status {
            status: 429,
            retry_after: Some(secs),
            ..
        } => api.with_header("retry-after", secs.to_string()),
        _ => api,
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match &e {
            GatewayError::InvalidRequest { param, message } => {
                ApiError::invalid_request(format!("{param}: {message}")).with_param(param.clone())
            }
            GatewayError::ModelNotFound { .. } | GatewayError::RoutedToUnknownModel { .. } => {
                ApiError::not_found(e.to_string())
                    .with_code(e.code())
                    .with_param("model")
            }
            GatewayError::MissingKey { .. } => {
                ApiError::unavailable(e.to_string()).with_code(e.code())
            }
            GatewayError::BudgetExceeded(b) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "budget_exceeded",
                e.to_string(),
            )
            .with_code(e.code())
            .with_header(REMAINING_HEADER, usd(b.remaining_nano_usd.max(0))),
            GatewayError::Upstream(b) => upstream(b, &e),
            GatewayError::Overloaded => ApiError::unavailable(e.to_string())
                .with_code(e.code())
                .with_header("retry-after", "1"),
            GatewayError::CircuitOpen => ApiError::unavailable(e.to_string())
                .with_code(e.code())
                .with_header("retry-after", "5"),
            GatewayError::ShuttingDown => ApiError::unavailable(e.to_string())
                .with_code(e.code())
                .with_header("retry-after", "1"),
            GatewayError::Store(s) if s.is_unavailable() => ApiError::database_unavailable(
                &**s,
                "the database is unavailable; try again shortly",
            ),
            GatewayError::Store(s) => ApiError::internal(&**s),
            GatewayError::Internal(cause) => ApiError::internal(cause),
        }
    }
}
