//! OpenTelemetry traces: `tracing` spans exported over OTLP/HTTP
//! (protobuf) through the service's own reqwest client, with W3C trace
//! context taken from callers and passed on to upstream models.
//!
//! Only spans are exported, and only the service's own: the request span,
//! and the spans the code marks for traces alone (target
//! [`TRACE_TARGET`]: model
//! calls and their upstream attempts, database and Redis operations), which
//! never reach the log.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler as SdkSampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_core::config::{Config, OtelConfig, RootSampler, Sampler};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use switchyard_core::TRACE_TARGET;

/// Whether spans are being exported: set once the exporter is installed.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The exporter OTLP sends through: reqwest, on the runtime the service
/// runs on. The SDK's batch processor exports from a thread of its own, so
/// each export is spawned onto that runtime and awaited from there.
#[derive(Debug)]
struct Transport {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for Transport {
    async fn send_bytes(
        &self,
        request: axum::http::Request<Bytes>,
    ) -> Result<axum::http::Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = sent.await??;
        let mut response = axum::http::Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

fn sampler(s: Sampler) -> SdkSampler {
    let root = |r: RootSampler| match r {
        RootSampler::AlwaysOn => SdkSampler::AlwaysOn,
        RootSampler::AlwaysOff => SdkSampler::AlwaysOff,
        RootSampler::Ratio(f) => SdkSampler::TraceIdRatioBased(f),
    };
    match s {
        Sampler::AlwaysOn => SdkSampler::AlwaysOn,
        Sampler::AlwaysOff => SdkSampler::AlwaysOff,
        Sampler::Ratio(f) => SdkSampler::TraceIdRatioBased(f),
        Sampler::ParentBased(r) => SdkSampler::ParentBased(Box::new(root(r))),
    }
}

/// The resource every span carries: the service, its version, the
/// environment and slot, then the operator's own attributes.
fn resource(config: &Config, otel: &OtelConfig) -> Resource {
    let mut attributes = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new(
            "deployment.environment.name",
            config.environment.to_string(),
        ),
        // The name before semantic conventions 1.27, which some backends
        // (Datadog's unified service tags among them) still read.
        KeyValue::new("deployment.environment", config.environment.to_string()),
    ];
    if let Some(slot) = &config.deployment_slot {
        attributes.push(KeyValue::new("switchyard.deployment.slot", slot.clone()));
    }
    attributes.extend(
        otel.resource_attributes
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    Resource::builder_empty()
        .with_service_name(otel.service_name.clone())
        .with_attributes(attributes)
        .build()
}

/// A running trace exporter; [`Traces::shutdown`] sends what is queued.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Builds the exporter. Must run inside the Tokio runtime exports use.
    pub fn start(config: &Config, otel: &OtelConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(otel.timeout)
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let transport = Transport {
            client,
            runtime: tokio::runtime::Handle::try_current()
                .map_err(|_| anyhow::anyhow!("trace export needs a Tokio runtime"))?,
        };
        let headers: HashMap<String, String> = otel
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(transport)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(otel.traces_endpoint.clone())
            .with_timeout(otel.timeout)
            .with_headers(headers)
            .build()
            .map_err(|e| anyhow::anyhow!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler(otel.sampler))
            .with_resource(resource(config, otel))
            .build();
        switchyard_models::set_trace_propagator(inject_current);
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans: the
    /// service's own spans at INFO and above, with WARN and ERROR events
    /// as span events (an ERROR marks its span failed).
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        EXPORTING.store(true, Ordering::Relaxed);
        let tracer = self.provider.tracer("switchyard");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(|meta| {
                let ours = meta.target() == TRACE_TARGET || meta.target().starts_with("switchyard");
                if meta.is_span() {
                    ours && *meta.level() <= tracing::Level::INFO
                } else {
                    ours && *meta.level() <= tracing::Level::WARN
                }
            }))
    }

    /// Exports what is queued (bounded by `within`) and stops.
    pub async fn shutdown(self, within: Duration) {
        EXPORTING.store(false, Ordering::Relaxed);
        let provider = self.provider;
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(within)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not export the last spans"),
            Err(e) => tracing::warn!(error = %e, "trace exporter shutdown failed"),
        }
    }
}

/// Continues the caller's trace: parents `span` on the request's
/// `traceparent` when it carries a valid one. Returns the span's trace id.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) -> Option<String> {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Writes the current span's trace context into `headers`: what every
/// upstream model request carries.
fn inject_current(headers: &mut axum::http::HeaderMap) {
    if !exporting() {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// Sets an attribute on `span` that only traces carry (not the log).
pub fn set_attribute(
    span: &tracing::Span,
    key: &'static str,
    value: impl Into<opentelemetry::Value>,
) {
    span.set_attribute(key, value);
}
