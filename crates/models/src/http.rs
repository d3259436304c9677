//! HTTP plumbing shared by the HTTP backends: error mapping, opening and
//! reading server-sent event streams, and turning a producer task into a
//! chunk stream.

use crate::backend::{BackendError, BackendStream, ChunkStream};
use crate::client::{HttpError, RequestBuilder, Response};
use crate::sse::SseEvent;
use futures_util::StreamExt;
use std::sync::OnceLock;
use std::time::Duration;

/// Writes the trace context of the current span into a request's headers
/// (W3C `traceparent`, `tracestate`).
pub type TracePropagator = fn(&mut http::HeaderMap);

static TRACE_PROPAGATOR: OnceLock<TracePropagator> = OnceLock::new();

/// Installs the function that adds trace context to every upstream model
/// request, so an upstream's own spans join the caller's trace. Set once,
/// by the process's telemetry set-up; later calls are ignored.
pub fn set_trace_propagator(propagate: TracePropagator) {
    let _ = TRACE_PROPAGATOR.set(propagate);
}

/// `req` with the current trace context, when a propagator is installed.
pub(crate) fn traced(req: RequestBuilder<'_>) -> RequestBuilder<'_> {
    match TRACE_PROPAGATOR.get() {
        None => req,
        Some(propagate) => {
            let mut headers = http::HeaderMap::new();
            propagate(&mut headers);
            if headers.is_empty() {
                req
            } else {
                req.headers(headers)
            }
        }
    }
}

pub(crate) fn request_error(e: HttpError, timeout: Duration) -> BackendError {
    match e {
        HttpError::Timeout => BackendError::Timeout(timeout),
        HttpError::Connect(e) => BackendError::Connect(e),
        HttpError::Other(e) => BackendError::Protocol(e),
    }
}

/// A non-success upstream reply as an error; both OpenAI's and Anthropic's
/// error bodies carry the message at `error.message`.
pub(crate) async fn status_error(resp: Response) -> BackendError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // On the heap: this error path would otherwise add its kilobytes to
    // the future of every upstream call.
    let body = Box::pin(resp.text()).await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(500).collect());
    BackendError::Status {
        status,
        message,
        retry_after,
    }
}

/// Sends a request and returns the body of a successful reply, all within
/// `timeout`; connection failures, timeouts and non-2xx replies become
/// backend errors.
pub(crate) async fn fetch_bytes(
    req: RequestBuilder<'_>,
    timeout: Duration,
) -> Result<bytes::Bytes, BackendError> {
    let call = async {
        let resp = req.send().await.map_err(|e| request_error(e, timeout))?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        resp.bytes().await.map_err(|e| request_error(e, timeout))
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| BackendError::Timeout(timeout))?
}

pub(crate) use crate::openai_wire::unix_now;

/// Runs `produce` in a task feeding a bounded channel, and returns the
/// channel as a stream. Dropping the stream stops the producer at its next
/// send.
pub(crate) fn async_stream<T, F, Fut>(produce: F) -> BackendStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, BackendError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    tokio::spawn(produce(tx));
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Opens a streamed completion: sends `req` and checks the reply's status,
/// all before `deadline`.
pub(crate) async fn open_stream(
    req: RequestBuilder<'_>,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<Response, BackendError> {
    let resp = tokio::time::timeout_at(deadline, req.send())
        .await
        .map_err(|_| BackendError::Timeout(timeout))?
        .map_err(|e| request_error(e, timeout))?;
    if !resp.status().is_success() {
        return Err(status_error(resp).await);
    }
    Ok(resp)
}

/// Streams the chunks `decode` makes of each server-sent event's data, until
/// `decode` reports the end (`Ok((chunks, true))`) or fails; the whole stream
/// is bounded by `deadline`. A body that ends first is a protocol error that
/// names the `end` marker it lacked.
pub(crate) fn sse_stream<D>(
    resp: Response,
    deadline: tokio::time::Instant,
    timeout: Duration,
    end: &'static str,
    mut decode: D,
) -> ChunkStream
where
    D: FnMut(&str) -> Result<(Vec<crate::openai_wire::ChatChunk>, bool), BackendError>
        + Send
        + 'static,
{
    sse_events(resp, deadline, timeout, end, move |event| {
        decode(&event.data)
    })
}

/// Streams the items `decode` makes of each server-sent event (its name and
/// data), as [`sse_stream`] does.
pub(crate) fn sse_events<T, D>(
    resp: Response,
    deadline: tokio::time::Instant,
    timeout: Duration,
    end: &'static str,
    mut decode: D,
) -> BackendStream<T>
where
    T: Send + 'static,
    D: FnMut(SseEvent) -> Result<(Vec<T>, bool), BackendError> + Send + 'static,
{
    let mut bytes = resp.bytes_stream();
    async_stream(move |tx| async move {
        let mut decoder = crate::sse::SseDecoder::default();
        loop {
            let err = match tokio::time::timeout_at(deadline, bytes.next()).await {
                Err(_) => BackendError::Timeout(timeout),
                Ok(None) => BackendError::Protocol(format!("the stream ended before {end}")),
                Ok(Some(Err(e))) => request_error(e, timeout),
                Ok(Some(Ok(chunk))) => {
                    for event in decoder.feed_events(&chunk) {
                        let (chunks, finished) = match decode(event) {
                            Ok(decoded) => decoded,
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        };
                        for c in chunks {
                            // A closed receiver means the caller went away.
                            if tx.send(Ok(c)).await.is_err() {
                                return;
                            }
                        }
                        if finished {
                            return;
                        }
                    }
                    continue;
                }
            };
            let _ = tx.send(Err(err)).await;
            return;
        }
    })
}
