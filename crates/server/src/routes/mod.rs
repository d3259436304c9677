//! HTTP handlers, one module per area.

pub mod admin_budgets;
pub mod admin_keys;
pub mod batch;
pub mod chat;
pub mod debug;
pub mod docs;
pub mod messages;
pub mod models;
pub mod probes;
pub mod route;
pub mod stream;
pub mod tasks;
pub mod usage;

/// A response body that streams whatever a producer task sends; it ends when
/// the producer drops its sender.
pub(crate) fn channel_body(rx: tokio::sync::mpsc::Receiver<axum::body::Bytes>) -> axum::body::Body {
    axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }))
}
