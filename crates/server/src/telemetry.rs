//! Logs and traces. Logs: JSON (or pretty) lines on stderr at `LOG_LEVEL`,
//! each carrying the request's span fields (request id, route, key id,
//! trace id) when inside one. Traces: OpenTelemetry spans exported over
//! OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the `otel` feature).
//!
//! The two are filtered separately: `LOG_LEVEL=error` quiets the log
//! without emptying traces, and spans that exist for traces only (target
//! `otel`) never reach the log.

use crate::log_sink::LogSink;
use axum::http::{HeaderMap, StatusCode};
use switchyard_core::config::{Config, LogFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

pub use switchyard_core::TRACE_TARGET;

/// How long shutdown waits for the last spans to be exported.
#[cfg(feature = "otel")]
const EXPORT_ON_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// What [`init`] started; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    #[cfg(feature = "otel")]
    traces: Option<crate::otel::Traces>,
    /// The batching log writer, when logs are batched.
    sink: Option<LogSink>,
}

impl Telemetry {
    /// Writes the log lines still buffered and exports the spans still
    /// queued.
    pub async fn shutdown(self) {
        if let Some(sink) = &self.sink {
            sink.flush();
        }
        #[cfg(feature = "otel")]
        if let Some(traces) = self.traces {
            traces.shutdown(EXPORT_ON_SHUTDOWN).await;
        }
    }
}

/// The log filter: `LOG_LEVEL`, never showing trace-only spans.
fn log_filter(config: &Config) -> anyhow::Result<EnvFilter> {
    let filter =
        EnvFilter::try_new(&config.log_level).map_err(|e| anyhow::anyhow!("LOG_LEVEL: {e}"))?;
    let hide_trace_spans = format!("{TRACE_TARGET}=off")
        .parse()
        .map_err(|e| anyhow::anyhow!("log filter: {e}"))?;
    Ok(filter.add_directive(hide_trace_spans))
}

/// The log layer: `LOG_FORMAT` lines to `writer`, filtered by `filter`
/// alone when it is given (beside a trace layer that sees more), else by
/// the subscriber's global filter.
fn log_layer<S, W>(
    config: &Config,
    writer: W,
    filter: Option<EnvFilter>,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match (config.log_format, filter) {
        (LogFormat::Json, Some(f)) => crate::log_json::JsonLayer::new(writer)
            .with_filter(f)
            .boxed(),
        (LogFormat::Json, None) => crate::log_json::JsonLayer::new(writer).boxed(),
        (LogFormat::Pretty, Some(f)) => fmt::layer().with_writer(writer).with_filter(f).boxed(),
        (LogFormat::Pretty, None) => fmt::layer().with_writer(writer).boxed(),
    }
}

/// How log lines reach stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Each line written as it is made: commands, whose own output on
    /// stderr interleaves with their log lines.
    Direct,
    /// Info lines in batches, warnings and errors at once
    /// ([`crate::log_sink`]): the service, which logs every request.
    Batched,
}

/// Installs the global subscriber (and, with an OTLP endpoint, the trace
/// exporter). Fails if `LOG_LEVEL` is not a valid filter. Must run inside
/// the Tokio runtime.
pub fn init(config: &Config, output: LogOutput) -> anyhow::Result<Telemetry> {
    let sink = match output {
        LogOutput::Direct => None,
        LogOutput::Batched => Some(
            LogSink::start().map_err(|e| anyhow::anyhow!("cannot start the log writer: {e}"))?,
        ),
    };
    #[cfg(feature = "otel")]
    let traces = config
        .otel
        .as_ref()
        .map(|otel| crate::otel::Traces::start(config, otel))
        .transpose()?;
    #[cfg(feature = "otel")]
    let trace_layer = traces.as_ref().map(|t| t.layer());
    #[cfg(not(feature = "otel"))]
    let trace_layer: Option<tracing_subscriber::layer::Identity> = {
        if config.otel.is_some() {
            eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT is set but this build has no OpenTelemetry support (the otel feature); no traces are exported");
        }
        None
    };
    // With traces exported, the log's filter is the log layer's own, since
    // the trace layer sees spans the log does not. Without, it is the
    // subscriber's: a span or event it rules out is then never built, and
    // no per-layer filter state is kept for each one that is.
    let (global_filter, log_only_filter) = if trace_layer.is_some() {
        (None, Some(log_filter(config)?))
    } else {
        (Some(log_filter(config)?), None)
    };
    let log = match &sink {
        Some(sink) => log_layer(config, sink.clone(), log_only_filter),
        None => log_layer(config, std::io::stderr, log_only_filter),
    };
    tracing_subscriber::registry()
        .with(global_filter)
        .with(log)
        .with(trace_layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    Ok(Telemetry {
        #[cfg(feature = "otel")]
        traces,
        sink,
    })
}

/// The trace id of a W3C `traceparent` header
/// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), when valid.
pub fn traceparent_trace_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?.trim();
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then(|| trace.to_owned())
}

/// Starts a request's trace: continues the caller's `traceparent` and
/// names the span as the HTTP semantic conventions do. Returns the trace
/// id every log line of the request carries: the exported trace's, or
/// without export, the caller's.
pub fn request_started(
    span: &tracing::Span,
    method: &str,
    route: &str,
    headers: &HeaderMap,
) -> Option<String> {
    #[cfg(feature = "otel")]
    if crate::otel::exporting() && !span.is_disabled() {
        span.record("otel.name", format!("{method} {route}"));
        span.record("otel.kind", "server");
        crate::otel::set_attribute(span, "http.request.method", method.to_owned());
        crate::otel::set_attribute(span, "http.route", route.to_owned());
        return crate::otel::continue_trace(span, headers);
    }
    let _ = (span, method, route);
    traceparent_trace_id(headers)
}

/// Ends a request's trace: its status code, and a failure for a 5xx.
pub fn request_finished(span: &tracing::Span, status: StatusCode) {
    #[cfg(feature = "otel")]
    if crate::otel::exporting() && !span.is_disabled() {
        crate::otel::set_attribute(
            span,
            "http.response.status_code",
            i64::from(status.as_u16()),
        );
        if status.is_server_error() {
            span.record("otel.status_code", "error");
            crate::otel::set_attribute(span, "error.type", status.as_u16().to_string());
        }
    }
    let _ = (span, status);
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn traceparent_headers_are_checked() {
        let id = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("traceparent", HeaderValue::from_str(v).unwrap());
            traceparent_trace_id(&h)
        };
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            id(&format!("00-{trace}-00f067aa0ba902b7-01")).as_deref(),
            Some(trace)
        );
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert_eq!(id(bad), None, "{bad}");
        }
        assert_eq!(traceparent_trace_id(&HeaderMap::new()), None);
    }
}
