//! The backends' HTTP client against real sockets: a call goes direct or
//! through the proxy that the proxy rules name, compressed replies are
//! decoded, redirects are not followed, and TLS checks the upstream's
//! certificate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hyper_util::client::proxy::matcher::Matcher;
use serde_json::json;
use std::sync::{Arc, Mutex};
use switchyard_core::catalog::ModelEntry;
use switchyard_core::Secret;
use switchyard_models::openai_wire::{ChatRequest, Content};
use switchyard_models::{BackendError, HttpClient, HttpSettings, OpenAiBackend};
use switchyard_testkit::fake_openai::FakeOpenAi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn backend(http: HttpClient, base_url: &str) -> OpenAiBackend {
    let entry: ModelEntry = serde_json::from_value(json!({
        "id": "m", "base_url": base_url, "upstream_model": "up", "timeout_seconds": 10
    }))
    .unwrap();
    OpenAiBackend::new(http, &entry, Some(Secret::new("sk-test")))
}

/// A client that calls everything directly, whatever the environment says.
fn direct() -> HttpClient {
    HttpClient::with_proxies(&HttpSettings::default(), Matcher::builder().build()).unwrap()
}

fn request() -> ChatRequest {
    serde_json::from_value(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap()
}

fn completion() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    }))
    .unwrap()
}

/// A server that answers every request on its port with `reply(head)`
/// (status line, headers and body, as raw bytes) and keeps each request's
/// head.
struct RawServer {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawServer {
    async fn start(reply: fn(&str) -> Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // The head, then as much body as Content-Length says.
                    let (head, body_len) = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            break (head, end + 4 + len);
                        }
                    };
                    while buf.len() < body_len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let out = reply(&head);
                    seen.lock().unwrap().push(head);
                    let _ = sock.write_all(&out).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The text of `backend`'s answer to [`request`].
async fn answer(backend: OpenAiBackend) -> String {
    let c = backend.complete(&request()).await.unwrap();
    match c.choices[0].message.content.as_ref().unwrap() {
        Content::Text(t) => t.clone(),
        other => panic!("not text: {other:?}"),
    }
}

#[tokio::test]
async fn a_call_the_proxy_rules_cover_goes_through_the_proxy() {
    // The "proxy" answers itself, so the call succeeds only if it went there,
    // in the absolute form a client uses with an HTTP proxy.
    let proxy = RawServer::start(|_| {
        response(
            "200 OK",
            &[("content-type", "application/json")],
            &completion(),
        )
    })
    .await;
    let rules = Matcher::builder()
        .http(format!("http://alice:s3cret@127.0.0.1:{}", proxy.port))
        .build();
    let http = HttpClient::with_proxies(&HttpSettings::default(), rules).unwrap();
    assert_eq!(
        answer(backend(http, "http://upstream.invalid/v1")).await,
        "hello"
    );
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with("POST http://upstream.invalid/v1/chat/completions HTTP/1.1"),
        "{}",
        heads[0]
    );
    assert_eq!(header(&heads[0], "authorization"), Some("Bearer sk-test"));
    assert_eq!(header(&heads[0], "host"), Some("upstream.invalid"));
    // The proxy's credentials, from its URL.
    assert_eq!(
        header(&heads[0], "proxy-authorization"),
        Some("Basic YWxpY2U6czNjcmV0")
    );
}

#[tokio::test]
async fn a_host_in_no_proxy_is_called_directly() {
    let proxy = RawServer::start(|_| response("502 Bad Gateway", &[], b"")).await;
    let upstream = FakeOpenAi::start().await;
    let rules = Matcher::builder()
        .http(format!("http://127.0.0.1:{}", proxy.port))
        .no("127.0.0.1")
        .build();
    let http = HttpClient::with_proxies(&HttpSettings::default(), rules).unwrap();
    assert!(answer(backend(http, &upstream.base_url()))
        .await
        .contains("hi"));
    assert!(proxy.heads().is_empty(), "the proxy was called");
    assert_eq!(upstream.received().len(), 1);
    // The direct client sends the service's name and offers compression.
    let plain = RawServer::start(|_| response("200 OK", &[], &completion())).await;
    backend(direct(), &format!("http://127.0.0.1:{}/v1", plain.port))
        .complete(&request())
        .await
        .unwrap();
    let head = &plain.heads()[0];
    let host = format!("127.0.0.1:{}", plain.port);
    assert_eq!(header(head, "host"), Some(host.as_str()), "{head}");
    assert!(
        header(head, "user-agent")
            .unwrap()
            .starts_with("switchyard/"),
        "{head}"
    );
    let accept = header(head, "accept-encoding").unwrap();
    assert!(accept.contains("gzip") && accept.contains("br"), "{head}");
}

#[test]
fn an_endpoint_is_an_absolute_http_url_with_its_host_header() {
    use switchyard_models::Endpoint;
    assert!(Endpoint::parse("https://api.openai.com:443/v1").is_ok());
    assert!(Endpoint::parse("http://[::1]:8080/v1").is_ok());
    for bad in ["/v1/chat", "ftp://host/x", "http://", "not a url"] {
        assert!(Endpoint::parse(bad).is_err(), "{bad}");
    }
}

/// `data` as a gzip member of one stored (uncompressed) deflate block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let len = u16::try_from(data.len()).unwrap();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

#[tokio::test]
async fn a_gzip_reply_is_decoded() {
    let server = RawServer::start(|_| {
        response(
            "200 OK",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            &gzip_stored(&completion()),
        )
    })
    .await;
    let url = format!("http://127.0.0.1:{}/v1", server.port);
    assert_eq!(answer(backend(direct(), &url)).await, "hello");
}

#[tokio::test]
async fn a_redirect_is_an_error_not_followed() {
    let server = RawServer::start(|head| {
        if head.starts_with("POST /v1/chat/completions ") {
            response("307 Temporary Redirect", &[("location", "/elsewhere")], b"")
        } else {
            response("200 OK", &[], &completion())
        }
    })
    .await;
    let err = backend(direct(), &format!("http://127.0.0.1:{}/v1", server.port))
        .complete(&request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Status { status: 307, .. }),
        "{err:?}"
    );
    assert_eq!(server.heads().len(), 1, "the redirect was followed");
}

/// The message of the connection error a call to `base_url` fails with,
/// which a caller may retry.
async fn connect_error(base_url: &str) -> String {
    let err = backend(direct(), base_url)
        .complete(&request())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    match err {
        BackendError::Connect(message) => message,
        other => panic!("not a connection error: {other:?}"),
    }
}

#[tokio::test]
async fn an_upstream_that_refuses_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let message = connect_error(&format!("http://user:secret@127.0.0.1:{port}/v1")).await;
    assert!(message.contains("refused"), "{message}");
    // It names where it tried, without the user-info or the path.
    assert!(
        message.starts_with(&format!("http://127.0.0.1:{port}: ")),
        "{message}"
    );
    assert!(
        !message.contains("secret") && !message.contains("/v1"),
        "{message}"
    );
}

#[tokio::test]
async fn an_upstream_certificate_from_an_unknown_authority_is_refused() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca = switchyard_testkit::tls::TestCa::new("not a public authority");
    let cert = ca.issue(&["localhost"]);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(Mutex::new(Vec::<bool>::new()));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let ok = acceptor.accept(sock).await.is_ok();
            seen.lock().unwrap().push(ok);
        }
    });
    let message = connect_error(&format!("https://localhost:{port}/v1")).await;
    assert!(message.contains("certificate"), "{message}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(*handshakes.lock().unwrap(), vec![false]);
}
