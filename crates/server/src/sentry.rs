//! Error reporting to Sentry (`SENTRY_DSN`): a 5xx response becomes one
//! event, a panic another (a handler's panic once, not twice), each with the
//! request id, route, method, status, the caller's key id, environment,
//! release and deployment slot; `SENTRY_TRACES_SAMPLE_RATE` of requests
//! become performance transactions.
//!
//! Nothing leaves the process unscrubbed ([`scrub`]): no credentials, no
//! request bodies. Envelopes go out through the service's own HTTP client on
//! a thread of their own ([`transport`]), and are flushed at shutdown.
//!
//! The client is process-wide, as Sentry's is: [`init`] installs it when the
//! application is built, [`shutdown`] flushes and closes it when the
//! application stops. Each request runs under a hub of its own
//! ([`observe`]), so that what one request adds to its scope (the key id)
//! never reaches another, and a panic's event carries its request's tags.

pub mod scrub;
pub mod transport;

use ::sentry::protocol::{Event, Level, SpanStatus};
use ::sentry::{Client, ClientOptions, Hub, SentryFutureExt, Transaction, TransactionContext};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use switchyard_core::Config;

/// The release events carry: `switchyard@VERSION`.
pub const RELEASE: &str = concat!("switchyard@", env!("CARGO_PKG_VERSION"));

/// How long shutdown waits for queued events to be sent.
pub const SHUTDOWN_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// How long the SDK's own flushes wait for the transport: the one after a
/// panic (in the panic hook, on the panicking thread) and one without a
/// limit.
const SDK_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Tag names, shared with the tests and the docs.
pub mod tags {
    pub const REQUEST_ID: &str = "request_id";
    pub const ROUTE: &str = "route";
    pub const METHOD: &str = "http.method";
    pub const STATUS: &str = "http.status_code";
    pub const KEY_ID: &str = "key_id";
    pub const SLOT: &str = "deployment_slot";
}

/// The installed client and the hub requests start from (its scope holds
/// what every event carries: the slot).
struct Active {
    client: Arc<Client>,
    base: Arc<Hub>,
}

static ACTIVE: RwLock<Option<Active>> = RwLock::new(None);

tokio::task_local! {
    /// The hub of the request being served, for [`set_caller`].
    static REQUEST_HUB: Arc<Hub>;
}

/// The options of a client reporting to `dsn` for this configuration.
fn options(config: &Config, dsn: ::sentry::types::Dsn) -> ClientOptions {
    use ::sentry::integrations::{backtrace, contexts, panic};
    let mut options = ClientOptions::new().traces_sample_rate(config.sentry_traces_sample_rate);
    options.dsn = Some(dsn);
    options.release = Some(Cow::Borrowed(RELEASE));
    options.environment = Some(Cow::Borrowed(config.environment.as_str()));
    options.send_default_pii = false;
    options.in_app_include = vec!["switchyard"];
    options.user_agent = Cow::Borrowed(transport::USER_AGENT);
    options.shutdown_timeout = SDK_FLUSH_LIMIT;
    // The SDK's defaults, minus the ones that read the process environment
    // behind the configuration's back (`apply_defaults`).
    options.default_integrations = false;
    options.integrations = vec![
        Arc::new(contexts::ContextIntegration::default()),
        Arc::new(panic::PanicIntegration::default()),
        Arc::new(backtrace::ProcessStacktraceIntegration),
    ];
    options.before_send = Some(Arc::new(scrub::event));
    options.transport = Some(Arc::new(transport::Factory));
    options
}

/// Installs the process's Sentry client when `SENTRY_DSN` is set; without
/// it, nothing happens and reporting stays off. A client installed before
/// (by an application built earlier in this process) is replaced.
pub fn init(config: &Config) -> anyhow::Result<()> {
    let Some(dsn) = &config.sentry_dsn else {
        return Ok(());
    };
    let dsn: ::sentry::types::Dsn = dsn
        .expose()
        .parse()
        .map_err(|e| anyhow::anyhow!("SENTRY_DSN: not a Sentry DSN ({e})"))?;
    let client = Arc::new(Client::with_options(options(config, dsn)));
    let base = Arc::new(Hub::new(Some(client.clone()), Default::default()));
    if let Some(slot) = &config.deployment_slot {
        base.configure_scope(|s| s.set_tag(tags::SLOT, slot));
    }
    // Events captured outside a request (a panic in a background task) go
    // through the process's main hub.
    let main = Hub::main();
    main.bind_client(Some(client.clone()));
    if let Some(slot) = &config.deployment_slot {
        main.configure_scope(|s| s.set_tag(tags::SLOT, slot));
    }
    let previous = ACTIVE
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .replace(Active { client, base });
    if let Some(previous) = previous {
        previous.client.close(Some(Duration::ZERO));
    }
    tracing::info!(
        environment = config.environment.as_str(),
        release = RELEASE,
        traces_sample_rate = config.sentry_traces_sample_rate,
        "reporting errors to Sentry"
    );
    Ok(())
}

/// Whether a client is installed.
pub fn is_active() -> bool {
    ACTIVE
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
}

/// Sends what is queued, waiting at most `limit`, and closes the client.
/// `false` when events were left unsent. Nothing to do without a client.
pub async fn shutdown(limit: Duration) -> bool {
    let Some(active) = ACTIVE
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    else {
        return true;
    };
    let main = Hub::main();
    if main
        .client()
        .is_some_and(|c| Arc::ptr_eq(&c, &active.client))
    {
        main.bind_client(None);
    }
    let client = active.client;
    // Closing blocks until the transport has drained (or `limit`).
    let sent = tokio::task::spawn_blocking(move || client.close(Some(limit)))
        .await
        .unwrap_or(false);
    if !sent {
        tracing::warn!(
            limit_s = limit.as_secs(),
            "Sentry events were still unsent at shutdown"
        );
    }
    sent
}

/// Records the authenticated caller's key id on the current request's
/// scope (never the secret). Does nothing outside [`observe`].
pub fn set_caller(key_id: &str) {
    let _ = REQUEST_HUB.try_with(|hub| hub.configure_scope(|s| s.set_tag(tags::KEY_ID, key_id)));
}

/// Runs `handled` (the rest of the stack for one request) under a hub of its
/// own, as a transaction when sampled, and reports a 5xx answer as an event,
/// unless the request already produced one (a panic in its handler). Without
/// a client, `handled` runs as it is.
pub fn observe<F>(
    handled: F,
    request_id: &str,
    method: &Method,
    route: &str,
) -> impl Future<Output = Response> + Send
where
    F: Future<Output = Response> + Send,
{
    use futures_util::future::Either;
    // Without a client, `handled` itself: a wrapping future would hold it
    // once as its argument and again while awaiting it.
    match RequestReport::start(request_id, method, route) {
        None => Either::Left(handled),
        Some(request) => Either::Right(Box::pin(async move {
            let hub = request.hub.clone();
            let response = REQUEST_HUB.scope(hub.clone(), handled.bind_hub(hub)).await;
            request.finish(response.status());
            response
        })),
    }
}

/// One request's hub and transaction.
struct RequestReport {
    hub: Arc<Hub>,
    transaction: Transaction,
    name: String,
}

impl RequestReport {
    fn start(request_id: &str, method: &Method, route: &str) -> Option<Self> {
        let base = ACTIVE
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|a| a.base.clone())?;
        let hub = Arc::new(Hub::new_from_top(&base));
        let name = format!("{method} {route}");
        // Callers' `sentry-trace` headers are not followed: a client must not
        // be able to make every request of its own sampled.
        let transaction = hub.start_transaction(TransactionContext::new(&name, "http.server"));
        hub.configure_scope(|s| {
            s.set_tag(tags::REQUEST_ID, request_id);
            s.set_tag(tags::ROUTE, route);
            s.set_tag(tags::METHOD, method.as_str());
            s.set_transaction(Some(&name));
            s.set_span(Some(transaction.clone().into()));
        });
        Some(Self {
            hub,
            transaction,
            name,
        })
    }

    fn finish(self, status: StatusCode) {
        let Self {
            hub,
            transaction,
            name,
        } = self;
        transaction.set_tag(tags::STATUS, status.as_u16());
        transaction.set_status(span_status(status));
        if status.is_server_error() && hub.last_event_id().is_none() {
            hub.configure_scope(|s| s.set_tag(tags::STATUS, status.as_u16()));
            hub.capture_event(server_error_event(&name, status));
        }
        // The transaction takes its tags from the current hub's scope.
        Hub::run(hub, || transaction.finish());
    }
}

/// The event of a request answered with `status`: its message names the
/// route and the status, so one issue groups one route's one failure.
fn server_error_event(name: &str, status: StatusCode) -> Event<'static> {
    Event {
        level: Level::Error,
        message: Some(format!(
            "{name} answered {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )),
        ..Default::default()
    }
}

/// The span status of an HTTP status.
fn span_status(status: StatusCode) -> SpanStatus {
    match status.as_u16() {
        100..=399 => SpanStatus::Ok,
        401 => SpanStatus::Unauthenticated,
        403 => SpanStatus::PermissionDenied,
        404 => SpanStatus::NotFound,
        409 => SpanStatus::AlreadyExists,
        429 => SpanStatus::ResourceExhausted,
        499 => SpanStatus::Cancelled,
        400..=499 => SpanStatus::InvalidArgument,
        501 => SpanStatus::Unimplemented,
        503 => SpanStatus::Unavailable,
        504 => SpanStatus::DeadlineExceeded,
        _ => SpanStatus::InternalError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_read_as_route_and_status() {
        let e = server_error_event("POST /v1/chat/completions", StatusCode::BAD_GATEWAY);
        assert_eq!(
            e.message.as_deref(),
            Some("POST /v1/chat/completions answered 502 Bad Gateway")
        );
        assert_eq!(e.level, Level::Error);
        assert_eq!(span_status(StatusCode::OK), SpanStatus::Ok);
        assert_eq!(
            span_status(StatusCode::TOO_MANY_REQUESTS),
            SpanStatus::ResourceExhausted
        );
        assert_eq!(
            span_status(StatusCode::BAD_GATEWAY),
            SpanStatus::InternalError
        );
        assert_eq!(
            span_status(StatusCode::GATEWAY_TIMEOUT),
            SpanStatus::DeadlineExceeded
        );
    }
}
