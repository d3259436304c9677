//! The traces section: OpenTelemetry export over OTLP, configured with the
//! variables the OpenTelemetry specification names
//! (`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER*`), so that a collector, Datadog or New Relic is
//! pointed at with the settings their documentation already gives.
//! Export is off until an endpoint is set.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::secret::Secret;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

declare_settings! { Section::Traces;
    OTEL_EXPORTER_OTLP_ENDPOINT: optional,
        "Base URL of an OTLP/HTTP receiver (a collector, Datadog Agent, New Relic); spans go to its /v1/traces. Unset: no traces are exported.";
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: optional,
        "Full URL spans are posted to, used as is; overrides OTEL_EXPORTER_OTLP_ENDPOINT for traces.";
    OTEL_EXPORTER_OTLP_HEADERS: secret,
        "Headers sent with every export, as key=value pairs separated by commas (values percent-encoded), e.g. api-key=… for New Relic.";
    OTEL_EXPORTER_OTLP_PROTOCOL: value("http/protobuf"),
        "http/protobuf, the only protocol supported (grpc and http/json are refused).";
    OTEL_EXPORTER_OTLP_TIMEOUT: value("10000"),
        "Milliseconds one export may take (100–60000).";
    OTEL_SERVICE_NAME: value("switchyard"),
        "The service.name resource attribute.";
    OTEL_RESOURCE_ATTRIBUTES: optional,
        "More resource attributes, key=value pairs separated by commas; service.version, deployment.environment.name and the slot are always set.";
    OTEL_TRACES_SAMPLER: value("parentbased_always_on"),
        "always_on, always_off, traceidratio, or parentbased_ with one of those (follow the caller's decision when a traceparent came in).";
    OTEL_TRACES_SAMPLER_ARG: value("1"),
        "The ratio (0–1) of traces kept by the traceidratio samplers.";
}

/// How traces are sampled (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Keeps this fraction of traces, decided from the trace id.
    Ratio(f64),
    /// Follows the sampling decision of a caller's `traceparent`; for
    /// traces that start here, uses the inner sampler.
    ParentBased(RootSampler),
}

/// The sampler of a `parentbased_*` sampler for traces that start here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

/// The sampler's name, without its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum SamplerName {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio,
    #[default]
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio,
}

impl SamplerName {
    const ALL: [(SamplerName, &'static str); 6] = [
        (SamplerName::AlwaysOn, "always_on"),
        (SamplerName::AlwaysOff, "always_off"),
        (SamplerName::TraceIdRatio, "traceidratio"),
        (SamplerName::ParentBasedAlwaysOn, "parentbased_always_on"),
        (SamplerName::ParentBasedAlwaysOff, "parentbased_always_off"),
        (
            SamplerName::ParentBasedTraceIdRatio,
            "parentbased_traceidratio",
        ),
    ];

    fn with_ratio(self, ratio: f64) -> Sampler {
        match self {
            SamplerName::AlwaysOn => Sampler::AlwaysOn,
            SamplerName::AlwaysOff => Sampler::AlwaysOff,
            SamplerName::TraceIdRatio => Sampler::Ratio(ratio),
            SamplerName::ParentBasedAlwaysOn => Sampler::ParentBased(RootSampler::AlwaysOn),
            SamplerName::ParentBasedAlwaysOff => Sampler::ParentBased(RootSampler::AlwaysOff),
            SamplerName::ParentBasedTraceIdRatio => Sampler::ParentBased(RootSampler::Ratio(ratio)),
        }
    }
}

impl FromStr for SamplerName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(_, name)| *name == lower)
            .map(|(v, _)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                format!("expected one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for SamplerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(v, _)| v == self)
            .map_or("", |(_, n)| n);
        f.write_str(name)
    }
}

/// The OTLP wire protocol; only HTTP with protobuf bodies is built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct HttpProtobuf;

impl FromStr for HttpProtobuf {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "http/protobuf" => Ok(Self),
            "grpc" | "http/json" => Err(format!(
                "{s} is not supported: expected http/protobuf (every OpenTelemetry collector, the Datadog Agent and New Relic accept it)"
            )),
            _ => Err("expected http/protobuf".into()),
        }
    }
}

impl fmt::Display for HttpProtobuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("http/protobuf")
    }
}

/// Trace export settings; present only when an endpoint is configured.
#[derive(Debug, Clone)]
pub struct OtelConfig {
    /// Where spans are posted (`…/v1/traces`).
    pub traces_endpoint: String,
    /// Extra request headers (authentication, usually): a secret.
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded.
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: Sampler,
}

/// Decodes `%XX` escapes, as the specification asks for the values of
/// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES`.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a % is not followed by two hex digits".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a value does not decode to UTF-8".to_owned())
}

/// `key=value,key=value` with percent-encoded values; empty entries are
/// skipped. Errors name the offending entry by position only, since the
/// list may hold credentials.
pub fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, entry) in s.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let (k, v) = entry
            .split_once('=')
            .ok_or_else(|| format!("entry {} has no `=` (expected key=value)", i + 1))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("entry {} has an empty key", i + 1));
        }
        let v = percent_decode(v.trim()).map_err(|e| format!("entry {}: {e}", i + 1))?;
        out.push((k.to_owned(), v));
    }
    Ok(out)
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

fn http_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("`{s}` is not an http:// or https:// URL"));
    }
    Ok(url.as_str().to_owned())
}

/// The traces URL from a base endpoint: `/v1/traces` appended to its path,
/// as the specification defines for `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

pub(super) fn load(r: &mut Reader<'_>) -> Option<OtelConfig> {
    let base = r.optional_text(&OTEL_EXPORTER_OTLP_ENDPOINT);
    let traces = r.optional_text(&OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
    let headers = r.secret(&OTEL_EXPORTER_OTLP_HEADERS);
    let _protocol: HttpProtobuf = r.parse(&OTEL_EXPORTER_OTLP_PROTOCOL);
    let timeout = Duration::from_millis(r.integer(&OTEL_EXPORTER_OTLP_TIMEOUT, 100, 60_000));
    let service_name = r.text(&OTEL_SERVICE_NAME);
    let attributes = r.optional_text(&OTEL_RESOURCE_ATTRIBUTES);
    let sampler_name: SamplerName = r.parse(&OTEL_TRACES_SAMPLER);
    let ratio = r
        .parse_with(&OTEL_TRACES_SAMPLER_ARG, |raw| {
            match raw.trim().parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
                _ => Err(format!(
                    "`{raw}` is not valid: expected a number from 0 to 1"
                )),
            }
        })
        .unwrap_or(1.0);

    let endpoint = match (traces, base) {
        (Some(t), _) => http_url(&t).map_err(|e| (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.name, e)),
        (None, Some(b)) => http_url(&b)
            .map(|u| traces_url(&u))
            .map_err(|e| (OTEL_EXPORTER_OTLP_ENDPOINT.name, e)),
        (None, None) => {
            if headers.is_some() {
                r.problem(
                    OTEL_EXPORTER_OTLP_HEADERS.name,
                    "is set but no OTEL_EXPORTER_OTLP_ENDPOINT is",
                );
            }
            return None;
        }
    };
    let headers = match headers.map(|h| parse_key_values(h.expose())) {
        None => Vec::new(),
        Some(Ok(pairs)) => {
            let mut out = Vec::new();
            for (name, value) in pairs {
                if !is_header_name(&name) || !is_header_value(&value) {
                    r.problem(
                        OTEL_EXPORTER_OTLP_HEADERS.name,
                        format!("`{name}` is not a valid header name, or its value is not a valid header value"),
                    );
                } else {
                    out.push((name.to_ascii_lowercase(), Secret::new(value)));
                }
            }
            out
        }
        Some(Err(e)) => {
            r.problem(OTEL_EXPORTER_OTLP_HEADERS.name, e);
            Vec::new()
        }
    };
    let resource_attributes = match attributes.as_deref().map(parse_key_values) {
        None => Vec::new(),
        Some(Ok(pairs)) => pairs,
        Some(Err(e)) => {
            r.problem(OTEL_RESOURCE_ATTRIBUTES.name, e);
            Vec::new()
        }
    };
    let traces_endpoint = match endpoint {
        Ok(url) => url,
        Err((variable, message)) => {
            r.problem(variable, message);
            return None;
        }
    };
    Some(OtelConfig {
        traces_endpoint,
        headers,
        timeout,
        service_name,
        resource_attributes,
        sampler: sampler_name.with_ratio(ratio),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load_with(vars: &[(&str, &str)]) -> (Option<OtelConfig>, Vec<String>) {
        let loaded = Config::load(&|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        });
        let problems = loaded
            .problems
            .iter()
            .filter(|p| p.variable.starts_with("OTEL_"))
            .map(ToString::to_string)
            .collect();
        (loaded.config.otel, problems)
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        let (otel, problems) = load_with(&[]);
        assert!(otel.is_none());
        assert!(problems.is_empty());
        let (_, problems) = load_with(&[("OTEL_EXPORTER_OTLP_HEADERS", "a=b")]);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_and_the_signal_endpoint_is_used_as_is() {
        let (otel, _) = load_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(
            otel.unwrap().traces_endpoint,
            "http://collector:4318/v1/traces"
        );
        let (otel, _) = load_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://otlp.eu01.nr-data.net/v1/traces",
            ),
        ]);
        assert_eq!(
            otel.unwrap().traces_endpoint,
            "https://otlp.eu01.nr-data.net/v1/traces"
        );
    }

    #[test]
    fn headers_samplers_and_protocols_are_checked() {
        let (otel, problems) = load_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=abc%2Cdef, dd-api-key=x",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=llm,region=eu%2Dwest"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let otel = otel.unwrap();
        let headers: Vec<(&str, &str)> = otel
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(headers, [("api-key", "abc,def"), ("dd-api-key", "x")]);
        assert_eq!(otel.sampler, Sampler::ParentBased(RootSampler::Ratio(0.25)));
        assert_eq!(otel.resource_attributes[1].1, "eu-west");

        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "bad header=x"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x/v1/traces"),
        ] {
            let (_, problems) = load_with(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                (var, value),
            ]);
            assert_eq!(problems.len(), 1, "{var}={value}: {problems:?}");
            assert!(problems[0].starts_with(var), "{problems:?}");
        }
        // A secret's value is never echoed in a problem.
        let (_, problems) = load_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=sekrit%zz"),
        ]);
        assert!(!problems[0].contains("sekrit"), "{problems:?}");
    }

    #[test]
    fn sampler_names_print_as_they_parse() {
        for (name, text) in SamplerName::ALL {
            assert_eq!(text.parse::<SamplerName>(), Ok(name));
            assert_eq!(name.to_string(), text);
        }
        assert_eq!(
            SamplerName::default().to_string(),
            OTEL_TRACES_SAMPLER.default.shown()
        );
    }
}
