//! Why the gateway did not answer a call. Each variant says what went wrong
//! in the caller's terms; `routes/` turns it into an HTTP response, and the
//! usage record of a failed call stores its [`status`](GatewayError::status)
//! and [`code`](GatewayError::code).

use std::sync::Arc;
use switchyard_core::budget::{usd, Budget};
use switchyard_models::BackendError;
use switchyard_store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The request itself is wrong; `param` names the field.
    #[error("{param}: {message}")]
    InvalidRequest { param: String, message: String },
    #[error("the model `{model}` does not exist; GET /v1/models lists the available ones")]
    ModelNotFound { model: String },
    /// The routing policy picked a name the catalog does not have.
    #[error("routing chose `{model}` ({tier}), which is not in the model catalog; configure [routing] or the catalog")]
    RoutedToUnknownModel { model: String, tier: String },
    /// A built-in catalog model whose upstream key is not configured.
    #[error("the model `{model}` needs an upstream API key: set {variable} (or {variable}_FILE) and restart")]
    MissingKey { model: String, variable: String },
    #[error("{0}")]
    BudgetExceeded(Box<BudgetExceeded>),
    /// The last model of the chain failed.
    #[error("{0}")]
    Upstream(BackendError),
    /// Every model of the chain had a full queue.
    #[error("the model is at capacity and its queue is full; try again shortly")]
    Overloaded,
    /// Every model of the chain had its circuit breaker open.
    #[error("the model's upstream is failing and calls to it are paused; try again shortly")]
    CircuitOpen,
    /// The database failed while reserving budget.
    #[error("{0}")]
    Store(Arc<StoreError>),
    /// A bug: the call's task failed (the cause goes to the log only).
    #[error("internal error: {0}")]
    Internal(String),
    /// The service stopped before the call finished.
    #[error("the service is shutting down; the call was cut off")]
    ShuttingDown,
}

/// A budget that cannot cover a call's estimated cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetExceeded {
    pub budget: Budget,
    pub estimate_nano_usd: i64,
    pub remaining_nano_usd: i64,
}

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.budget;
        write!(
            f,
            "the {} {} budget of {} USD for {} `{}` cannot cover this request (estimated {} USD, {} USD left)",
            b.period.as_str(),
            b.scope.as_str(),
            usd(b.limit_nano_usd),
            b.scope.as_str(),
            b.subject,
            usd(self.estimate_nano_usd),
            usd(self.remaining_nano_usd.max(0)),
        )
    }
}

impl From<StoreError> for GatewayError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

impl GatewayError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            param: param.into(),
            message: message.into(),
        }
    }

    /// The HTTP status the caller gets, also stored in the call's usage row.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidRequest { .. } => 400,
            Self::ModelNotFound { .. } | Self::RoutedToUnknownModel { .. } => 404,
            Self::BudgetExceeded(_) => 429,
            Self::MissingKey { .. } | Self::Overloaded | Self::CircuitOpen | Self::ShuttingDown => {
                503
            }
            Self::Store(e) if e.is_unavailable() => 503,
            Self::Store(_) | Self::Internal(_) => 500,
            Self::Upstream(e) => match e {
                BackendError::Timeout(_) => 504,
                BackendError::Status { status: 429, .. } => 429,
                BackendError::Status {
                    status: 400 | 404 | 422,
                    ..
                } => 400,
                BackendError::Connect(_)
                | BackendError::Status { .. }
                | BackendError::Protocol(_) => 502,
            },
        }
    }

    /// The machine-readable error code (the `code` of the JSON error, the
    /// `error_type` of the usage row).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::ModelNotFound { .. } | Self::RoutedToUnknownModel { .. } => "model_not_found",
            Self::MissingKey { .. } => "model_unavailable",
            Self::BudgetExceeded(_) => "budget_exceeded",
            Self::Overloaded => "overloaded",
            Self::CircuitOpen => "circuit_open",
            Self::ShuttingDown => "server_shutdown",
            Self::Store(e) if e.is_unavailable() => "database_unavailable",
            Self::Store(_) | Self::Internal(_) => "internal",
            Self::Upstream(e) => match e {
                BackendError::Timeout(_) => "upstream_timeout",
                BackendError::Connect(_) => "upstream_unavailable",
                BackendError::Status { status: 429, .. } => "upstream_rate_limited",
                BackendError::Status {
                    status: 400 | 404 | 422,
                    ..
                } => "upstream_rejected",
                BackendError::Status { .. } => "upstream_failed",
                BackendError::Protocol(_) => "upstream_invalid_reply",
            },
        }
    }
}
