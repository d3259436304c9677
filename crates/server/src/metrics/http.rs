//! The labels of the HTTP request series (`http_requests_total`,
//! `http_request_duration_seconds`).

use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// See [`method_label`].
    pub method: &'static str,
    /// The route template (`/v1/admin/keys/{id}`), never the raw path, so the
    /// series count stays bounded.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// See [`method_label`].
    pub method: &'static str,
    pub route: String,
}

/// A request method as a label: the standard methods by name, any other
/// as `other`, so that a client inventing methods cannot add series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}
