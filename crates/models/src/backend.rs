//! What every backend returns: completions, chunk streams, and errors that
//! say whether a retry could help.

use crate::openai_wire::ChatChunk;
use futures_util::Stream;
use std::pin::Pin;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the upstream: {0}")]
    Connect(String),
    #[error("the upstream answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// The upstream's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    #[error("the upstream sent an unexpected reply: {0}")]
    Protocol(String),
}

impl BackendError {
    /// A short, stable name of the failure (a trace's `error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::Timeout(_) => "timeout",
            BackendError::Connect(_) => "connect_error",
            BackendError::Status { .. } => "http_status",
            BackendError::Protocol(_) => "protocol_error",
        }
    }

    /// Whether trying again (here or on a fallback) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackendError::Timeout(_) | BackendError::Connect(_) => true,
            BackendError::Status { status, .. } => *status == 429 || *status >= 500,
            BackendError::Protocol(_) => false,
        }
    }
}

/// A stream of a backend's items (chat chunks, or an upstream's own
/// events); an error ends it.
pub type BackendStream<T> = Pin<Box<dyn Stream<Item = Result<T, BackendError>> + Send>>;

pub type ChunkStream = BackendStream<ChatChunk>;
