//! Error reporting to Sentry, end to end: the real server, driven into a
//! 5xx (an upstream failure) and a handler panic, sends its envelopes to a
//! local HTTP server standing in for Sentry, which parses them. The events
//! carry the request's context; no secret and no prompt is anywhere in the
//! bytes sent; 4xx answers are not reported; shutdown waits for the queue.
//!
//! The Sentry client is process-wide, so these tests take turns.

#![cfg(feature = "sentry")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::TestApp;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One Sentry client per process: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CATALOG: &str = r#"
[[models]]
id = "fast"
base_url = "{openai}"
upstream_model = "echo-1"
api_key_env = "FAKE_UPSTREAM_KEY"

[[models]]
id = "fail-500"
base_url = "{openai}"
api_key_env = "FAKE_UPSTREAM_KEY"
retries = 0
"#;

/// The upstream provider's key: never reported either.
const UPSTREAM_KEY: &str = "sk-test-UPSTREAMSECRET0123456789abcdef";

/// A key-shaped string in a prompt, one in a panic message, one presented
/// but unknown.
const PROMPT_KEY: &str = "sy_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const PANIC_KEY: &str = "sy_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const UNKNOWN_KEY: &str = "sy_cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
/// The prompt text, recognisable anywhere.
const PROMPT_SECRET: &str = "PROMPT-SECRET-hunter2-launch-codes";

/// What the stand-in for Sentry received in one POST.
#[derive(Clone, Debug)]
struct Received {
    project: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Inbox {
    received: Arc<Mutex<Vec<Received>>>,
    /// How long each POST takes before it is recorded and answered.
    delay_ms: Arc<AtomicU64>,
}

/// The stand-in for Sentry: an HTTP server on a thread and runtime of its
/// own (the SDK's panic hook blocks the server's thread while it flushes).
struct FakeSentry {
    addr: SocketAddr,
    inbox: Inbox,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn envelope(
    State(inbox): State<Inbox>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let delay = inbox.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    inbox.received.lock().unwrap().push(Received {
        project,
        headers,
        body,
    });
    StatusCode::OK
}

impl FakeSentry {
    fn start() -> Self {
        let inbox = Inbox::default();
        let app = axum::Router::new()
            .route("/api/{project}/envelope/", axum::routing::post(envelope))
            .with_state(inbox.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                bound.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self {
            addr: addr.recv().unwrap(),
            inbox,
            _stop: stop,
        }
    }

    fn dsn(&self) -> String {
        format!("http://publickey@{}/42", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.inbox.received.lock().unwrap().clone()
    }
}

/// One envelope item: its header and its payload.
#[derive(Debug)]
struct Item {
    ty: String,
    payload: Value,
}

/// Parses an envelope: a header line, then per item a header line and a
/// payload (of the header's `length`, else up to the newline).
fn parse_envelope(bytes: &[u8]) -> (Value, Vec<Item>) {
    let line_end = |from: usize| {
        bytes[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| from + p)
    };
    let end = line_end(0);
    let header: Value = serde_json::from_slice(&bytes[..end]).unwrap();
    let mut at = end + 1;
    let mut items = Vec::new();
    while at < bytes.len() {
        let end = line_end(at);
        if end == at {
            at += 1;
            continue;
        }
        let item: Value = serde_json::from_slice(&bytes[at..end]).unwrap();
        at = end + 1;
        let payload_end = match item["length"].as_u64() {
            Some(len) => at + len as usize,
            None => line_end(at),
        };
        let payload = serde_json::from_slice(&bytes[at..payload_end]).unwrap();
        at = payload_end + 1;
        items.push(Item {
            ty: item["type"].as_str().unwrap().to_owned(),
            payload,
        });
    }
    (header, items)
}

/// Every item of every envelope received, checking how each was sent.
fn items(sentry: &FakeSentry) -> Vec<Item> {
    let mut all = Vec::new();
    for r in sentry.received() {
        assert_eq!(r.project, "42");
        assert_eq!(
            r.headers["content-type"], "application/x-sentry-envelope",
            "{:?}",
            r.headers
        );
        assert!(
            !r.headers.contains_key("content-encoding"),
            "sent uncompressed"
        );
        let auth = r.headers["x-sentry-auth"].to_str().unwrap();
        assert!(
            auth.starts_with("Sentry sentry_key=publickey, sentry_version=7"),
            "{auth}"
        );
        assert!(
            auth.contains(concat!(
                "sentry_client=switchyard/",
                env!("CARGO_PKG_VERSION")
            )),
            "{auth}"
        );
        let (_, items) = parse_envelope(&r.body);
        all.extend(items);
    }
    all
}

fn events(items: &[Item]) -> Vec<&Value> {
    items
        .iter()
        .filter(|i| i.ty == "event")
        .map(|i| &i.payload)
        .collect()
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn server_errors_and_panics_are_reported_once_with_their_context_and_no_secret() {
    let _turn = SERIAL.lock().await;
    let sentry = FakeSentry::start();
    let app = TestApp::builder()
        .catalog(CATALOG)
        .envs(&[
            ("SENTRY_DSN", &sentry.dsn()),
            ("SENTRY_TRACES_SAMPLE_RATE", "1.0"),
            ("ENVIRONMENT", "staging"),
            ("DEPLOYMENT_SLOT", "green"),
            ("DEBUG", "true"),
            ("FAKE_UPSTREAM_KEY", UPSTREAM_KEY),
        ])
        .start()
        .await;
    let admin_id = app.key_id("admin").await;
    let admin = app.admin.clone();
    let prompt = format!("{PROMPT_SECRET}: my key is {PROMPT_KEY}, keep it safe");

    // A 5xx: the upstream fails, the gateway answers 502.
    let failed = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {}", app.admin))
        .json(&json!({"model": "fail-500", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    let failed_id = request_id(&failed);

    // A handler panic: a 500, with a key in its message.
    let panicked = app
        .get(
            &format!("/debug/panic?message=leaked+{PANIC_KEY}"),
            Some(&app.admin),
        )
        .await;
    assert_eq!(panicked.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let panicked_id = request_id(&panicked);

    // 4xx answers: an unknown key, a bad body, a missing route.
    let r = app
        .get_with(
            "/v1/models",
            "authorization",
            &format!("Bearer {UNKNOWN_KEY}"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .chat(json!({"messages": [{"role": "user", "content": prompt}]}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app.get("/v1/nowhere", Some(&app.admin)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // And a success.
    let ok = app
        .chat(json!({"model": "fast", "messages": [{"role": "user", "content": prompt}]}))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);

    // Shutdown sends what is queued before it returns.
    app.stop().await;
    let items = items(&sentry);
    let events = events(&items);
    assert_eq!(
        events.len(),
        2,
        "one event for the 502, one for the panic, none for 4xx: {events:#?}"
    );
    let tagged = |id: &str| {
        events
            .iter()
            .copied()
            .filter(|e| e["tags"]["request_id"] == id)
            .collect::<Vec<_>>()
    };

    let server_error = tagged(&failed_id);
    assert_eq!(server_error.len(), 1, "{events:#?}");
    let e = server_error[0];
    assert_eq!(
        e["message"]["formatted"].as_str().or(e["message"].as_str()),
        Some("POST /v1/chat/completions answered 502 Bad Gateway"),
        "{e:#}"
    );
    // `error` is the default level, left out of the JSON.
    assert_eq!(e["level"].as_str().unwrap_or("error"), "error");
    assert_eq!(e["tags"]["route"], "/v1/chat/completions");
    assert_eq!(e["tags"]["http.method"], "POST");
    assert_eq!(e["tags"]["http.status_code"], "502");
    assert_eq!(e["tags"]["key_id"], admin_id.as_str());
    assert_eq!(e["tags"]["deployment_slot"], "green");
    assert_eq!(e["environment"], "staging");
    assert_eq!(
        e["release"],
        concat!("switchyard@", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(e["transaction"], "POST /v1/chat/completions");
    assert!(e.get("request").is_none_or(|r| r.get("data").is_none()));

    let panic = tagged(&panicked_id);
    assert_eq!(
        panic.len(),
        1,
        "a handler panic is reported once: {events:#?}"
    );
    let p = panic[0];
    let exception = &p["exception"]["values"][0];
    assert_eq!(exception["type"], "panic", "{p:#}");
    assert_eq!(exception["mechanism"]["type"], "panic");
    assert!(
        exception["value"]
            .as_str()
            .unwrap()
            .starts_with("debug panic: leaked "),
        "{exception:#}"
    );
    assert_eq!(p["tags"]["route"], "/debug/panic");
    assert_eq!(p["tags"]["key_id"], admin_id.as_str());
    assert_eq!(p["tags"]["deployment_slot"], "green");
    assert_eq!(p["environment"], "staging");

    // Sampled at 1.0: every request is a transaction, scrubbed as well.
    let transactions: Vec<&Value> = items
        .iter()
        .filter(|i| i.ty == "transaction")
        .map(|i| &i.payload)
        .collect();
    let failed_tx = transactions
        .iter()
        .find(|t| t["tags"]["request_id"] == failed_id.as_str())
        .expect("the failed request's transaction");
    assert_eq!(failed_tx["transaction"], "POST /v1/chat/completions");
    assert_eq!(failed_tx["contexts"]["trace"]["status"], "internal_error");
    assert_eq!(
        e["contexts"]["trace"]["trace_id"], failed_tx["contexts"]["trace"]["trace_id"],
        "the event belongs to its request's trace"
    );

    // No secret anywhere in what was sent.
    let raw: Vec<u8> = sentry
        .received()
        .iter()
        .flat_map(|r| r.body.to_vec())
        .collect();
    let raw = String::from_utf8_lossy(&raw);
    for secret in [
        admin.as_str(),
        &admin[3..],
        PROMPT_KEY,
        PANIC_KEY,
        UNKNOWN_KEY,
        &PROMPT_KEY[3..],
        &PANIC_KEY[3..],
        PROMPT_SECRET,
        "keep it safe",
        UPSTREAM_KEY,
        "UPSTREAMSECRET",
        "Bearer ",
    ] {
        assert!(
            !raw.contains(secret),
            "{secret:?} was sent to Sentry:\n{raw}"
        );
    }
    let any_key = raw.match_indices("sy_").any(|(i, _)| {
        raw[i + 3..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .count()
            >= 32
    });
    assert!(!any_key, "a key was sent to Sentry:\n{raw}");
}

#[tokio::test]
async fn shutdown_waits_for_queued_events_to_be_sent() {
    let _turn = SERIAL.lock().await;
    let sentry = FakeSentry::start();
    // Sentry is slow: each envelope is recorded only after half a second.
    sentry.inbox.delay_ms.store(500, Ordering::SeqCst);
    let app = TestApp::builder()
        .catalog(CATALOG)
        .envs(&[
            ("SENTRY_DSN", &sentry.dsn()),
            ("SENTRY_TRACES_SAMPLE_RATE", "0"),
            ("FAKE_UPSTREAM_KEY", UPSTREAM_KEY),
        ])
        .start()
        .await;
    assert!(switchyard_server::sentry::is_active());
    let r = app
        .chat(json!({"model": "fail-500", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let id = request_id(&r);
    assert!(sentry.received().is_empty(), "still on its way");

    app.stop().await;
    let items = items(&sentry);
    let events = events(&items);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["tags"]["request_id"], id.as_str());
    assert_eq!(events[0]["environment"], "development");
    assert!(
        !switchyard_server::sentry::is_active(),
        "the client is closed at shutdown"
    );
}
