//! Edge middleware: request context (id, span, access log, metrics, the
//! request timeout and the declared body size), and JSON for framework
//! errors. The cheap per-request checks share the outermost layer rather
//! than each taking a layer of its own: every layer costs each request a
//! boxed future and a clone of its state.

use crate::context::{ClientIp, RequestId, REQUEST_ID_HEADER};
use crate::error::ApiError;
use crate::fn_layer::{Next, Stack};
use crate::metrics::{method_label, Metrics, RequestLabels, RouteLabels};
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::IpNet;
use tracing::Instrument;

/// The header naming the deployment slot that served a response.
pub const SLOT_HEADER: &str = "x-switchyard-slot";

/// What the outermost layer needs: the metrics it records, the proxies
/// whose `X-Forwarded-For` it believes, the slot it names on every response
/// (`DEPLOYMENT_SLOT`), so a rollout can see which slot served what,
/// whether the service is draining, `API_TIMEOUT` and
/// `MAX_REQUEST_BODY_BYTES`. Cloned for every request: one reference count.
#[derive(Clone)]
pub struct Edge(pub Arc<EdgeSettings>);

/// The settings of [`Edge`].
pub struct EdgeSettings {
    pub metrics: Metrics,
    pub trusted_proxies: Arc<[IpNet]>,
    pub slot: Option<HeaderValue>,
    pub draining: Arc<AtomicBool>,
    pub api_timeout: Duration,
    pub max_body_bytes: usize,
}

fn acceptable_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

fn generate_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    switchyard_core::hex::encode(&bytes)
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy,
/// in which case `X-Forwarded-For` is read from the right, skipping trusted
/// hops, and the first untrusted address is the client. A malformed entry
/// stops the walk and the last trusted hop is used, so a forged header can
/// never make traffic look like it came from somewhere it did not pass.
pub fn client_ip(
    peer: Option<std::net::IpAddr>,
    headers: &axum::http::HeaderMap,
    trusted: &[switchyard_core::config::IpNet],
) -> Option<std::net::IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut last_trusted = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) if is_trusted(ip) => last_trusted = ip,
            Ok(ip) => return Some(ip),
            Err(_) => return Some(last_trusted),
        }
    }
    Some(last_trusted)
}

/// Outermost layer: assigns the request id, opens the span every log line of
/// the request carries, refuses a declared body over the limit, ends a
/// request that runs past `API_TIMEOUT`, and records the access log line and
/// metrics.
pub async fn request_context<S: Stack>(edge: Edge, mut req: Request, next: Next<S>) -> Response {
    let edge = &*edge.0;
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(acceptable_request_id)
        .unwrap_or_else(generate_request_id);
    let method = req.method().clone();
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let client = client_ip(peer, req.headers(), &edge.trusted_proxies);
    req.extensions_mut().insert(ClientIp(client));
    req.extensions_mut().insert(RequestId(id.clone()));
    // At ERROR level, so that it exists (and its ids reach the log lines
    // inside it) even with `LOG_LEVEL=error`.
    // Fields given as `&str` are written as they are; `%` would format
    // each through `Display`.
    let span = tracing::error_span!(
        "request",
        request_id = id.as_str(),
        method = method.as_str(),
        route = route.as_str(),
        key_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(trace_id) =
        crate::telemetry::request_started(&span, method.as_str(), &route, req.headers())
    {
        span.record("trace_id", trace_id);
    }
    edge.metrics.in_flight.inc();
    let response = if declares_too_large(&req, edge.max_body_bytes) {
        payload_too_large().into_response()
    } else {
        let handled = timeout(edge.api_timeout, next.run(req)).instrument(span.clone());
        #[cfg(feature = "sentry")]
        let handled = crate::sentry::observe(handled, &id, &method, &route);
        handled.await
    };
    edge.metrics.in_flight.dec();
    let mut response = as_json_error(response, &method).await;
    if route.starts_with(ANTHROPIC_ROUTES) {
        response = as_anthropic_error(response).await;
    }

    let status = response.status();
    let elapsed = started.elapsed();
    edge.metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method_label(&method),
            route: route.clone(),
            status: status.as_u16(),
        })
        .inc();
    edge.metrics
        .duration
        .get_or_create(&RouteLabels {
            method: method_label(&method),
            route,
        })
        .observe(elapsed.as_secs_f64());
    crate::telemetry::request_finished(&span, status);
    span.in_scope(|| {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, "request finished");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        const NAME: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
        response.headers_mut().insert(NAME, v);
    }
    if let Some(slot) = &edge.slot {
        const NAME: HeaderName = HeaderName::from_static(SLOT_HEADER);
        response.headers_mut().insert(NAME, slot.clone());
    }
    // While draining, an HTTP/1 connection is closed after its response, so
    // that a proxy holding it in its keep-alive pool cannot send the next
    // request on it just as the listener closes; its next request opens a
    // new connection, which the proxy can safely retry elsewhere when it is
    // refused.
    if http1 && edge.draining.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The framework's own rejections (a query string, path or header that
/// does not parse, a method the route does not take) come as plain text or
/// with no body; they leave in the service's one JSON error shape, with
/// the framework's message, so every client error is read the same way.
async fn as_json_error(response: Response, method: &axum::http::Method) -> Response {
    let status = response.status();
    if !status.is_client_error() || response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    let plain = match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v.as_bytes().starts_with(b"text/plain"),
    };
    if !plain {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("method {method} is not allowed on this route"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => return payload_too_large().into_response(),
        StatusCode::NOT_FOUND => ("not_found", text),
        _ => ("invalid_request", text),
    };
    let message = if message.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned()
    } else {
        message
    };
    let kind = if status == StatusCode::NOT_FOUND {
        "not_found_error"
    } else {
        "invalid_request_error"
    };
    let mut response = ApiError::new(status, kind, message)
        .with_code(code)
        .into_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// The routes of Anthropic's API, whose clients read errors in Anthropic's
/// shape.
const ANTHROPIC_ROUTES: &str = "/v1/messages";

/// An error leaving an Anthropic route — from the handler, authentication,
/// a rate limit or the framework — in Anthropic's shape,
/// `{"type": "error", "error": {"type", "message"}}`, with the type
/// Anthropic gives that status, so an Anthropic SDK reads every error the
/// same way. Headers (`retry-after`, the budget headers) stay as they were.
async fn as_anthropic_error(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.is_success() || !json || response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| match v.pointer("/error/message") {
            Some(serde_json::Value::String(m)) if v.get("type").is_none() => Some(m.clone()),
            _ => None,
        });
    let Some(message) = message else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let body = serde_json::json!({
        "type": "error",
        "error": {
            "type": switchyard_models::anthropic::anthropic_error_type(status.as_u16()),
            "message": message,
        },
    });
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut response = (status, axum::Json(body)).into_response();
    for (name, value) in parts.headers.drain().filter_map(|(n, v)| Some((n?, v))) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Ends a request that exceeds `API_TIMEOUT` with a 504 JSON error. A
/// combinator, not an `async fn`: that would hold `handled` twice, as its
/// argument and inside the timeout it awaits.
fn timeout(
    limit: Duration,
    handled: impl Future<Output = Response>,
) -> impl Future<Output = Response> {
    use futures_util::FutureExt;
    tokio::time::timeout(limit, handled).map(move |done| match done {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_s = limit.as_secs(), "request timed out");
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "the request did not complete within API_TIMEOUT ({} s)",
                    limit.as_secs()
                ),
            )
            .with_code("request_timeout")
            .into_response()
        }
    })
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "the request body is larger than the limit (MAX_REQUEST_BODY_BYTES)",
    )
    .with_code("payload_too_large")
}

/// Whether a request declares a `Content-Length` over the limit: refused
/// before its body is read. Bodies without one are capped while read
/// (`DefaultBodyLimit`).
fn declares_too_large(req: &Request, max_bytes: usize) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > max_bytes as u64)
}

/// A panic in a handler becomes an opaque 500 JSON error; the process lives on.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic payload)");
    ApiError::internal(&format!("handler panicked: {detail}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<switchyard_core::config::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.1.1.1"),
        );
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        // Through trusted hops: the first untrusted address from the right.
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("203.0.113.7"));
        // No header: the peer.
        assert_eq!(
            client_ip(ip("10.2.2.2"), &axum::http::HeaderMap::new(), &trusted),
            ip("10.2.2.2")
        );
        // Garbage stops the walk at the last trusted hop.
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, junk, 10.9.9.9"),
        );
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("10.9.9.9"));
        assert_eq!(client_ip(None, &h, &trusted), None);
    }

    #[test]
    fn client_request_ids_are_checked() {
        let ok = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(acceptable_request_id(&ok).as_deref(), Some("abc-123_x.y:z"));
        for bad in ["", "has space", "quote\"", &"a".repeat(129)] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert_eq!(acceptable_request_id(&v), None, "{bad:?}");
        }
        assert_eq!(generate_request_id().len(), 32);
    }
}
