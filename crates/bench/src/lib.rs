//! A minimal, fast fake OpenAI upstream for gateway benchmarks: one fixed
//! small chat completion (or its stream), an optional fixed delay, nothing
//! logged or recorded, so the load generator measures the gateway and not
//! the upstream. The `fake-upstream` binary serves it on a port; benches and
//! tests in process start it on a thread of its own ([`spawn`]).
//!
//! `POST /v1/chat/completions` answers the fixed completion, or with
//! `"stream": true` five server-sent chunks and `[DONE]` (the delay comes
//! before the first byte, so time-to-first-token overhead can be measured);
//! `GET /v1/models` lists the one model.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;

/// The fixed completion every non-streamed call gets.
const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"The capital of Germany is Berlin."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":8,"total_tokens":22}}"#;

const CHUNKS: [&str; 6] = [
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The capital of Germany\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" is Berlin.\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":14,\"completion_tokens\":8,\"total_tokens\":22}}\n\n",
    "data: [DONE]\n\n",
];

const MODELS: &str = r#"{"object":"list","data":[{"id":"bench","object":"model","created":1700000000,"owned_by":"bench"}]}"#;

/// Whether the request asks for a stream; a body that is not JSON is a 400.
fn wants_stream(body: &[u8]) -> Result<bool, ()> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| ())?;
    Ok(v.get("stream").and_then(serde_json::Value::as_bool) == Some(true))
}

async fn chat(delay: Duration, body: Bytes) -> Response {
    let stream =
        match wants_stream(&body) {
            Ok(s) => s,
            Err(()) => return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":{"message":"the body is not JSON","type":"invalid_request_error"}}"#,
            )
                .into_response(),
        };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if stream {
        let chunks = futures_util::stream::iter(
            CHUNKS
                .iter()
                .map(|c| Ok::<_, std::convert::Infallible>(Bytes::from_static(c.as_bytes()))),
        );
        (
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(chunks),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], COMPLETION).into_response()
    }
}

/// The upstream's routes, answering after `delay`.
pub fn router(delay: Duration) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(move |body: Bytes| chat(delay, body)),
        )
        .route(
            "/v1/models",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], MODELS) }),
        )
}

/// Serves the upstream on `127.0.0.1` (any free port) on a thread of its
/// own, with a single-threaded runtime of its own, so that it shares
/// nothing with the caller's runtime (nor its CPU time or allocations with
/// the caller's thread). Returns the bound address; the thread lives as
/// long as the process.
pub fn spawn(delay: Duration) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("fake-upstream".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, router(delay)).await
            })
        })?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn serve(delay: Duration) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router(delay)).await });
        format!("http://127.0.0.1:{port}")
    }

    #[tokio::test]
    async fn answers_plain_streamed_and_bad_requests() {
        let base = serve(Duration::from_millis(20)).await;
        let client = reqwest::Client::new();
        let url = format!("{base}/v1/chat/completions");
        let started = std::time::Instant::now();
        let plain: serde_json::Value = client
            .post(&url)
            .body(r#"{"model":"bench","messages":[]}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(20),
            "the delay applies"
        );
        assert_eq!(plain["usage"]["total_tokens"], 22);
        let stream = client
            .post(&url)
            .body(r#"{"model":"bench","stream":true}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.headers()["content-type"], "text/event-stream");
        let text = stream.text().await.unwrap();
        assert_eq!(text.matches("data: ").count(), 6);
        assert!(text.ends_with("data: [DONE]\n\n"));
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line != "[DONE]" {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        }
        let bad = client.post(&url).body("nope").send().await.unwrap();
        assert_eq!(bad.status(), 400);
        let models: serde_json::Value = client
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(models["data"][0]["id"], "bench");
    }
}
