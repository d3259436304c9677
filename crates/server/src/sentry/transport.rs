//! The Sentry transport: envelopes are POSTed as
//! `application/x-sentry-envelope` to `{scheme}://{host}/api/{project}/envelope/`
//! with the `X-Sentry-Auth` header from the DSN, by the service's own HTTP
//! client (reqwest), from a thread of their own, so that a capture never
//! blocks a request and a flush from a synchronous context (the SDK's panic
//! hook, shutdown) cannot wait on the runtime it is blocking.
//!
//! The queue is bounded ([`QUEUE_CAPACITY`]): an envelope that finds it full
//! is dropped and counted in the log, never waited for. After a `429` (or a
//! `Retry-After`/`X-Sentry-Rate-Limits` answer) envelopes are dropped until
//! the time Sentry asked for has passed. Transactions are scrubbed here (the
//! SDK has no `before_send` for them) and attachments never leave.

use super::scrub;
use ::sentry::protocol::EnvelopeItem;
use ::sentry::types::Dsn;
use ::sentry::{Envelope, Transport, TransportFactory, TransportOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Envelopes waiting to be sent, at most.
pub const QUEUE_CAPACITY: usize = 100;
/// How long one POST may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to hold off after a 429 that says nothing more.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(60);
/// The longest backoff believed.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Who sends: the `sentry_client` of the auth header and the user agent.
pub const USER_AGENT: &str = concat!("switchyard/", env!("CARGO_PKG_VERSION"));

/// Where envelopes go and how they authenticate, from the DSN.
#[derive(Debug, Clone)]
pub struct Endpoint {
    dsn: Dsn,
    url: String,
}

impl Endpoint {
    pub fn new(dsn: Dsn) -> Self {
        let url = dsn.envelope_api_url().to_string();
        Self { dsn, url }
    }

    /// `{scheme}://{host}[:port][/path]/api/{project_id}/envelope/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `X-Sentry-Auth` header: protocol version 7, the public key (and
    /// the secret key of an old-style DSN), this client, the time.
    pub fn auth_header(&self) -> String {
        self.dsn.to_auth(Some(USER_AGENT)).to_string()
    }
}

/// Makes the transport of a client (`ClientOptions::transport`).
pub struct Factory;

impl TransportFactory for Factory {
    fn create_transport_with_options(&self, options: TransportOptions) -> Arc<dyn Transport> {
        Arc::new(HttpTransport::start(Endpoint::new(options.dsn)))
    }
}

enum Job {
    Send(Box<Envelope>),
    Stop,
}

/// Envelopes handed over and envelopes done with (sent, refused or
/// dropped): a flush waits until the second catches up with the first.
#[derive(Default)]
struct Progress {
    queued: Mutex<u64>,
    done: Mutex<u64>,
    changed: Condvar,
}

impl Progress {
    fn finish_one(&self) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }

    /// Waits until everything queued before the call is done, or `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        let target = *self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = Instant::now() + timeout;
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        while *done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .changed
                .wait_timeout(done, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// The transport: a bounded queue in front of a sending thread.
pub struct HttpTransport {
    queue: mpsc::Sender<Job>,
    progress: Arc<Progress>,
    dropped: AtomicU64,
}

impl HttpTransport {
    /// Starts the sending thread for `endpoint`.
    pub fn start(endpoint: Endpoint) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let progress = Arc::new(Progress::default());
        let worker_progress = progress.clone();
        let spawned = std::thread::Builder::new()
            .name("sentry-transport".into())
            .spawn(move || run(endpoint, jobs, &worker_progress));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the Sentry transport thread; events will be dropped");
        }
        Self {
            queue,
            progress,
            dropped: AtomicU64::new(0),
        }
    }
}

impl Transport for HttpTransport {
    fn send_envelope(&self, envelope: Envelope) {
        *self
            .progress
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        if self.queue.try_send(Job::Send(Box::new(envelope))).is_err() {
            self.progress.finish_one();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(dropped, "Sentry queue full or closed: event dropped");
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.progress.wait(timeout)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout);
        // The thread ends once it has this (or once the queue is dropped
        // with the transport, should the queue be full).
        let _ = self.queue.try_send(Job::Stop);
        flushed
    }
}

/// The sending thread: a runtime of its own, one envelope at a time.
fn run(endpoint: Endpoint, mut jobs: mpsc::Receiver<Job>, progress: &Progress) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let client = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .user_agent(USER_AGENT)
        .build();
    let (runtime, client) = match (runtime, client) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(e), _) => return refuse_all(&mut jobs, progress, &e),
        (_, Err(e)) => return refuse_all(&mut jobs, progress, &e),
    };
    runtime.block_on(async {
        let mut paused_until: Option<Instant> = None;
        while let Some(job) = jobs.recv().await {
            let Job::Send(envelope) = job else { break };
            if paused_until.is_some_and(|t| Instant::now() < t) {
                tracing::debug!("Sentry asked to back off: event dropped");
            } else if let Some(body) = body(*envelope) {
                paused_until = send(&client, &endpoint, body).await;
            }
            progress.finish_one();
        }
    });
}

/// Without a runtime or client nothing can be sent: every job is done at once.
fn refuse_all(jobs: &mut mpsc::Receiver<Job>, progress: &Progress, error: &dyn std::fmt::Display) {
    tracing::error!(error = %error, "cannot start the Sentry transport; events will be dropped");
    while let Some(job) = jobs.blocking_recv() {
        if matches!(job, Job::Stop) {
            break;
        }
        progress.finish_one();
    }
}

/// The envelope's bytes, transactions scrubbed and attachments left out;
/// `None` when nothing is left to send.
fn body(envelope: Envelope) -> Option<Vec<u8>> {
    let mut out = Envelope::new().with_headers(envelope.headers().clone());
    let mut items = 0;
    for item in envelope.into_items() {
        let item = match item {
            EnvelopeItem::Transaction(t) => match scrub::scrubbed(&*t) {
                Some(t) => EnvelopeItem::Transaction(Box::new(t)),
                None => continue,
            },
            EnvelopeItem::Attachment(_) | EnvelopeItem::Raw => continue,
            other => other,
        };
        out.add_item(item);
        items += 1;
    }
    if items == 0 {
        return None;
    }
    let mut bytes = Vec::new();
    match out.to_writer(&mut bytes) {
        Ok(()) => Some(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "a Sentry envelope could not be serialized; dropped");
            None
        }
    }
}

/// POSTs one envelope; returns until when to hold off, if Sentry said so.
async fn send(client: &reqwest::Client, endpoint: &Endpoint, body: Vec<u8>) -> Option<Instant> {
    let sent = client
        .post(endpoint.url())
        .header("content-type", "application/x-sentry-envelope")
        .header("x-sentry-auth", endpoint.auth_header())
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "could not send an event to Sentry");
            return None;
        }
    };
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let backoff = header("x-sentry-rate-limits")
        .and_then(|h| rate_limit_backoff(&h))
        .or_else(|| {
            header("retry-after").and_then(|h| h.trim().parse().ok().map(Duration::from_secs))
        })
        .or_else(|| (status.as_u16() == 429).then_some(DEFAULT_BACKOFF))
        .map(|d| d.min(MAX_BACKOFF));
    if !status.is_success() {
        tracing::warn!(status = status.as_u16(), "Sentry refused an event");
    }
    backoff.map(|d| Instant::now() + d)
}

/// The longest wait in an `X-Sentry-Rate-Limits` header
/// (`60:transaction;error:org, 2700::organization`). Every category is held
/// off for it: simpler than tracking each, and errors are rare.
pub fn rate_limit_backoff(header: &str) -> Option<Duration> {
    header
        .split(',')
        .filter_map(|limit| limit.trim().split(':').next()?.trim().parse::<u64>().ok())
        .max()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_and_auth_header_come_from_the_dsn() {
        let dsn: Dsn = "https://public@o1.ingest.sentry.io/42".parse().unwrap();
        let e = Endpoint::new(dsn);
        assert_eq!(e.url(), "https://o1.ingest.sentry.io/api/42/envelope/");
        let auth = e.auth_header();
        assert!(
            auth.starts_with("Sentry sentry_key=public, sentry_version=7"),
            "{auth}"
        );
        assert!(
            auth.contains(&format!("sentry_client={USER_AGENT}")),
            "{auth}"
        );
        assert!(auth.contains("sentry_timestamp="), "{auth}");
        assert!(!auth.contains("sentry_secret"), "{auth}");

        // A port, a path prefix, and an old-style secret key.
        let dsn: Dsn = "http://pub:sec@127.0.0.1:9000/sub/7".parse().unwrap();
        let e = Endpoint::new(dsn);
        assert_eq!(e.url(), "http://127.0.0.1:9000/sub/api/7/envelope/");
        assert!(e.auth_header().contains("sentry_secret=sec"));

        for bad in [
            "https://o1.ingest.sentry.io/42",
            "https://k@host",
            "ftp://k@host/1",
        ] {
            assert!(bad.parse::<Dsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_limit_headers_give_the_longest_wait() {
        assert_eq!(
            rate_limit_backoff("60:transaction;error:org, 2700::organization"),
            Some(Duration::from_secs(2700))
        );
        assert_eq!(rate_limit_backoff("garbage"), None);
    }

    #[test]
    fn a_flush_waits_for_what_was_queued() {
        let p = Progress::default();
        assert!(p.wait(Duration::ZERO));
        *p.queued.lock().unwrap() += 1;
        assert!(!p.wait(Duration::from_millis(10)));
        p.finish_one();
        assert!(p.wait(Duration::ZERO));
    }
}
