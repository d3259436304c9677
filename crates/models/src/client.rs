//! The HTTP client the model backends send through.
//!
//! A call to an upstream that no proxy setting covers goes through a lean
//! hyper client: HTTP/1.1, rustls with the webpki roots, pooled keep-alive
//! connections, a connect timeout, gzip and brotli replies decoded. A call
//! that the environment's proxy settings (`HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY` and their lower-case forms, less `NO_PROXY`) send to a proxy
//! goes through reqwest, which speaks to proxies; both read the settings
//! with the same rules. Redirects are not followed by either: a model API
//! that answers 3xx is an error the caller sees.
//!
//! The direct path exists for cost: reqwest's own layers (its redirect
//! policy and its response future parse the URL again on every call) were
//! about a tenth of the service's instructions per call
//! (docs/performance.md, "fourth pass").

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT,
};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tower_http::decompression::{Decompression, DecompressionBody};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Direct = HyperClient<Connector, Full<Bytes>>;

/// How the client connects.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// How long an unused pooled connection is kept.
    pub pool_idle_timeout: Duration,
    pub user_agent: &'static str,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            user_agent: concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A failed exchange: no connection, no reply in time, or a broken one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Other(String),
}

/// The model backends' HTTP client; cheap to clone (the connection pool
/// is shared).
#[derive(Clone)]
pub struct HttpClient {
    direct: Direct,
    proxies: Arc<Matcher>,
    /// Model calls that go through a proxy; follows no redirects.
    proxied: reqwest::Client,
    /// File downloads (the local model's weights), which follow redirects.
    downloads: reqwest::Client,
    user_agent: HeaderValue,
}

impl HttpClient {
    /// A client that reads the proxy settings from the environment.
    pub fn new(settings: &HttpSettings) -> Result<Self, HttpError> {
        Self::with_proxies(settings, Matcher::from_system())
    }

    /// A client with the given proxy rules (tests, or settings read
    /// elsewhere).
    pub fn with_proxies(settings: &HttpSettings, proxies: Matcher) -> Result<Self, HttpError> {
        let proxies = Arc::new(proxies);
        let build = |redirects, rules: Option<Arc<Matcher>>| {
            let mut b = reqwest::Client::builder()
                .connect_timeout(settings.connect_timeout)
                .pool_idle_timeout(settings.pool_idle_timeout)
                .user_agent(settings.user_agent)
                .redirect(redirects);
            if let Some(rules) = rules {
                b = b.proxy(reqwest::Proxy::custom(move |url| proxy_for(&rules, url)));
            }
            b.build().map_err(|e| HttpError::Other(error_chain(&e)))
        };
        Ok(Self {
            direct: direct_client(settings)?,
            proxied: build(reqwest::redirect::Policy::none(), Some(proxies.clone()))?,
            // Downloads follow the environment's proxy settings themselves.
            downloads: build(reqwest::redirect::Policy::default(), None)?,
            proxies,
            user_agent: HeaderValue::from_static(settings.user_agent),
        })
    }

    /// A reqwest client with the same settings that follows redirects,
    /// for downloads (a model file's host redirects to its CDN).
    pub fn downloads(&self) -> &reqwest::Client {
        &self.downloads
    }

    /// A POST to `endpoint`.
    pub fn post(&self, endpoint: &Endpoint) -> RequestBuilder<'_> {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, endpoint.host.clone());
        RequestBuilder {
            client: self,
            url: endpoint.uri.clone(),
            headers,
            body: Bytes::new(),
            error: None,
        }
    }

    /// A POST to a URL given as text, parsed here; a bad one fails at
    /// [`RequestBuilder::send`].
    pub fn post_str(&self, url: &str) -> RequestBuilder<'_> {
        match Endpoint::parse(url) {
            Ok(endpoint) => self.post(&endpoint),
            Err(e) => RequestBuilder {
                client: self,
                url: Uri::default(),
                headers: HeaderMap::new(),
                body: Bytes::new(),
                error: Some(e),
            },
        }
    }
}

/// An absolute `http://` or `https://` URL parsed once, with the `Host`
/// header that goes with it, for the calls made to it again and again.
#[derive(Debug, Clone)]
pub struct Endpoint {
    uri: Uri,
    host: HeaderValue,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let default_port = match uri.scheme_str() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return Err(format!("{url}: not an http:// or https:// URL")),
        };
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
        let host = match uri.port_u16() {
            Some(port) if port != default_port => HeaderValue::from_str(&format!("{host}:{port}")),
            _ => HeaderValue::from_str(host),
        }
        .map_err(|e| format!("{url}: {e}"))?;
        Ok(Self { uri, host })
    }
}

/// The proxy that `rules` name for `url`, with its credentials, as
/// reqwest takes it.
fn proxy_for(rules: &Matcher, url: &reqwest::Url) -> Option<reqwest::Url> {
    let uri: Uri = url.as_str().parse().ok()?;
    let intercept = rules.intercept(&uri)?;
    let mut proxy = reqwest::Url::parse(&intercept.uri().to_string()).ok()?;
    // An HTTP proxy's credentials come back as a ready `Basic` value,
    // others' as they were written.
    let credentials = match (intercept.raw_auth(), intercept.basic_auth()) {
        (Some((user, password)), _) => Some((user.to_owned(), password.to_owned())),
        (None, Some(value)) => basic_credentials(value),
        (None, None) => None,
    };
    if let Some((user, password)) = credentials {
        proxy.set_username(&user).ok()?;
        proxy.set_password(Some(&password)).ok()?;
    }
    Some(proxy)
}

/// The user and password of a `Basic` authorization value.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn direct_client(settings: &HttpSettings) -> Result<Direct, HttpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Other(e.to_string()))?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(15)));
    http.set_keepalive_interval(Some(Duration::from_secs(15)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .build(https))
}

/// A request being built; errors in its parts surface at `send`.
pub struct RequestBuilder<'a> {
    client: &'a HttpClient,
    url: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// The first part that could not be made (the URL, a header, the body).
    error: Option<String>,
}

impl RequestBuilder<'_> {
    /// Sets a header; a value that is not a valid header value fails the
    /// request.
    pub fn header(self, name: HeaderName, value: &str) -> Self {
        self.set_header(name, value, false)
    }

    /// Sets a header whose value is a secret: marked sensitive, so that it
    /// is never written into debug output.
    pub fn secret_header(self, name: HeaderName, value: &str) -> Self {
        self.set_header(name, value, true)
    }

    fn set_header(mut self, name: HeaderName, value: &str, sensitive: bool) -> Self {
        match HeaderValue::from_str(value) {
            Ok(mut v) => {
                v.set_sensitive(sensitive);
                self.headers.insert(name, v);
            }
            Err(_) => self.fail(format!("invalid value for the {name} header")),
        }
        self
    }

    /// Keeps the first error; `send` reports it.
    fn fail(&mut self, error: String) {
        self.error.get_or_insert(error);
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: &str) -> Self {
        self.secret_header(AUTHORIZATION, &format!("Bearer {token}"))
    }

    /// The body, as JSON, with its content type.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = Bytes::from(bytes);
                self.headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Err(e) => self.fail(format!("the request body: {e}")),
        }
        self
    }

    /// A raw body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds the headers of `extra` (trace context), replacing any of the
    /// same name.
    pub fn headers(mut self, extra: HeaderMap) -> Self {
        for (name, value) in extra {
            if let Some(name) = name {
                self.headers.insert(name, value);
            }
        }
        self
    }

    /// Sends the request and waits for the reply's head.
    pub async fn send(self) -> Result<Response, HttpError> {
        if let Some(e) = self.error {
            return Err(HttpError::Other(e));
        }
        let url = self.url;
        let mut headers = self.headers;
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, self.client.user_agent.clone());
        }
        if self.client.proxies.intercept(&url).is_some() {
            return send_reqwest(&self.client.proxied, &url, headers, self.body).await;
        }
        // For a connection error, which in hyper does not say where it
        // tried: scheme, host and port, never user-info or path.
        let (scheme, authority) = (url.scheme().cloned(), url.authority().cloned());
        let mut req = Request::new(Full::new(self.body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = url;
        *req.headers_mut() = headers;
        let resp = Decompression::new(&self.client.direct)
            .gzip(true)
            .br(true)
            .oneshot(req)
            .await;
        let resp = match resp {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => {
                let host = authority.as_ref().map_or("", |a| a.host());
                let port = authority.as_ref().and_then(|a| a.port_u16());
                let scheme = scheme.as_ref().map_or("http", |s| s.as_str());
                let place = match port {
                    Some(port) => format!("{scheme}://{host}:{port}"),
                    None => format!("{scheme}://{host}"),
                };
                return Err(HttpError::Connect(format!("{place}: {}", error_chain(&e))));
            }
            Err(e) => return Err(HttpError::Other(error_chain(&e))),
        };
        let (parts, body) = resp.into_parts();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: Body::Direct(body),
        })
    }
}

async fn send_reqwest(
    client: &reqwest::Client,
    url: &Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let resp = client
        .post(url.to_string())
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(reqwest_error)?;
    Ok(Response {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: Body::Proxied(resp),
    })
}

fn reqwest_error(e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_connect() {
        HttpError::Connect(error_chain(&e))
    } else {
        HttpError::Other(error_chain(&e))
    }
}

/// An error with its sources, `outer: inner: innermost`, since the outer
/// errors of both HTTP stacks say little ("client error (Connect)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A reply whose head has arrived.
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

// Not boxed: the direct body is the common case, and a box would be one
// more allocation per call for the sake of the rare proxied one.
#[allow(clippy::large_enum_variant)]
enum Body {
    Direct(DecompressionBody<hyper::body::Incoming>),
    Proxied(reqwest::Response),
}

/// A reply body as a stream of byte chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, HttpError>> + Send>>;

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The whole body. Combinators rather than an `async fn`, which would
    /// hold the response twice (as its argument and while reading it) in
    /// the future of every upstream call.
    pub fn bytes(self) -> impl std::future::Future<Output = Result<Bytes, HttpError>> + Send {
        use futures_util::future::{Either, FutureExt};
        match self.body {
            Body::Direct(body) => Either::Left(body.collect().map(|collected| {
                collected
                    .map(|b| b.to_bytes())
                    .map_err(|e| HttpError::Other(error_chain(&*e)))
            })),
            Body::Proxied(resp) => {
                Either::Right(resp.bytes().map(|read| read.map_err(reqwest_error)))
            }
        }
    }

    /// The whole body as text; bytes that are not UTF-8 are replaced.
    pub async fn text(self) -> Result<String, HttpError> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The body, chunk by chunk as it arrives.
    pub fn bytes_stream(self) -> ByteStream {
        match self.body {
            Body::Direct(body) => Box::pin(
                BodyDataStream::new(body)
                    .map(|r| r.map_err(|e| HttpError::Other(error_chain(&*e)))),
            ),
            Body::Proxied(resp) => Box::pin(resp.bytes_stream().map(|r| r.map_err(reqwest_error))),
        }
    }
}
