//! `bare-proxy`: the floor under any gateway built on Switchyard's HTTP
//! stacks. It serves every path with the same server (axum on hyper, on a
//! multi-threaded tokio runtime unless `--current-thread`) and forwards each request, its method,
//! path and body, to the upstream with the same client (hyper-util's pooled
//! client, HTTP/1.1, keep-alive), then answers with the upstream's status,
//! content type and body, streamed as it arrives. It does nothing else: no
//! authentication, no limits, no budget, no usage row, no log line, no
//! metrics, no JSON.
//!
//! A gateway benchmark runs it as one more target: what it costs over the
//! upstream is what two sockets and two HTTP stacks cost per call on the
//! machine, and what Switchyard costs over it is what its work costs.
//!
//!   bare-proxy --port 9200 --upstream http://127.0.0.1:9100

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::Router;
use clap::Parser;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;

#[derive(Parser)]
#[command(about = "A forwarding proxy with nothing but the HTTP stacks, for load tests")]
struct Args {
    /// Port on 127.0.0.1 (0: any free one; the chosen port is printed).
    #[arg(long, default_value_t = 9200)]
    port: u16,
    /// The upstream's base URL (http only), e.g. http://127.0.0.1:9100.
    #[arg(long)]
    upstream: String,
    /// Run on tokio's current-thread runtime instead of the multi-threaded
    /// one Switchyard uses: what the runtime's flavour costs per call.
    #[arg(long)]
    current_thread: bool,
}

struct Proxy {
    client: Client<HttpConnector, Full<Bytes>>,
    /// The upstream's base URL, without a trailing `/`.
    base: String,
}

fn bad_gateway(what: &str) -> Response {
    (StatusCode::BAD_GATEWAY, format!("upstream {what}\n")).into_response()
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(target) = Uri::try_from(format!("{}{path}", proxy.base)) else {
        return bad_gateway("URL could not be built");
    };
    let request = Request::builder()
        .method(method)
        .uri(target)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(Full::new(body));
    let Ok(request) = request else {
        return bad_gateway("request could not be built");
    };
    let Ok(answer) = proxy.client.request(request).await else {
        return bad_gateway("did not answer");
    };
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    if let Some(kind) = parts.headers.get(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, kind.clone());
    }
    response
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let base = args.upstream.trim_end_matches('/').to_owned();
    base.parse::<Uri>()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let proxy = Arc::new(Proxy {
        client: Client::builder(TokioExecutor::new()).build(connector),
        base,
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    // As Switchyard's listener: small writes go out at once.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    #[allow(clippy::print_stdout)]
    {
        println!("bare-proxy listening on 127.0.0.1:{port}");
    }
    let app = Router::new().fallback(forward).with_state(proxy);
    axum::serve(listener, app).await?;
    Ok(())
}
