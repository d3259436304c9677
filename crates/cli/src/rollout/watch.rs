//! Watching a slot while it takes traffic: its own `/metrics`, scraped at
//! the start of a step and again while the step lasts, give the step's
//! requests, 5xx answers and p99 latency — API routes only, never the
//! probes or the scrapes themselves.

use std::collections::BTreeMap;

/// A slot's API counters at one moment (cumulative since it started).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub requests: f64,
    pub errors: f64,
    /// Cumulative count per latency bucket's upper bound, in seconds.
    pub buckets: BTreeMap<u64, f64>,
}

/// One sample line: `name{a="x",b="y"} value`.
struct Line<'a> {
    name: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    value: f64,
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut pairs = Vec::new();
    for part in labels.split("\",").filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once("=\"")?;
        pairs.push((k.trim_start_matches(','), v.trim_end_matches('"')));
    }
    Some(Line {
        name,
        labels: pairs,
        value,
    })
}

fn label<'a>(labels: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Bucket bounds as integer microseconds, so they order and compare exactly.
fn micros(le: &str) -> u64 {
    if le == "+Inf" {
        u64::MAX
    } else {
        le.parse::<f64>()
            .map_or(u64::MAX, |s| (s * 1e6).round() as u64)
    }
}

/// The API traffic in a Prometheus text exposition.
pub fn parse(text: &str) -> Sample {
    let mut s = Sample::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(Line {
            name,
            labels,
            value,
        }) = parse_line(line)
        else {
            continue;
        };
        if !label(&labels, "route").is_some_and(|r| r.starts_with("/v1/")) {
            continue;
        }
        match name {
            "http_requests_total" => {
                s.requests += value;
                if label(&labels, "status").is_some_and(|st| st.starts_with('5')) {
                    s.errors += value;
                }
            }
            "http_request_duration_seconds_bucket" => {
                if let Some(le) = label(&labels, "le") {
                    *s.buckets.entry(micros(le)).or_default() += value;
                }
            }
            _ => {}
        }
    }
    s
}

/// What a slot served between two samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Window {
    pub requests: u64,
    pub errors: u64,
    pub error_ratio: f64,
    /// `None` without requests.
    pub p99_ms: Option<f64>,
}

impl Window {
    pub fn between(before: &Sample, after: &Sample) -> Self {
        let requests = (after.requests - before.requests).max(0.0);
        let errors = (after.errors - before.errors).max(0.0);
        let buckets: Vec<(u64, f64)> = after
            .buckets
            .iter()
            .map(|(le, n)| {
                (
                    *le,
                    (n - before.buckets.get(le).copied().unwrap_or(0.0)).max(0.0),
                )
            })
            .collect();
        Self {
            requests: requests as u64,
            errors: errors as u64,
            error_ratio: if requests > 0.0 {
                errors / requests
            } else {
                0.0
            },
            p99_ms: quantile(0.99, &buckets).map(|s| s * 1000.0),
        }
    }
}

/// The `q` quantile of a cumulative histogram, interpolated inside its
/// bucket as Prometheus's `histogram_quantile` does; a quantile in the
/// `+Inf` bucket is the highest finite bound.
fn quantile(q: f64, buckets: &[(u64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for &(le, count) in buckets {
        if count >= rank {
            if le == u64::MAX {
                return Some(lower_bound);
            }
            let upper = le as f64 / 1e6;
            let in_bucket = count - lower_count;
            let fraction = if in_bucket > 0.0 {
                (rank - lower_count) / in_bucket
            } else {
                1.0
            };
            return Some(lower_bound + (upper - lower_bound) * fraction);
        }
        if le != u64::MAX {
            lower_bound = le as f64 / 1e6;
        }
        lower_count = count;
    }
    Some(lower_bound)
}

/// When a step counts as failed.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Thresholds {
    /// 5xx answers over all API requests, 0 to 1.
    pub max_error_ratio: f64,
    pub max_p99_ms: f64,
    /// Fewer requests than this are not judged.
    pub min_requests: u64,
}

impl Thresholds {
    /// The breached threshold, in words, if any.
    pub fn breach(&self, w: &Window) -> Option<String> {
        if w.requests < self.min_requests.max(1) {
            return None;
        }
        if w.error_ratio > self.max_error_ratio {
            return Some(format!(
                "error ratio {:.1} % ({} of {} requests answered 5xx) is over the threshold of {:.1} %",
                w.error_ratio * 100.0,
                w.errors,
                w.requests,
                self.max_error_ratio * 100.0
            ));
        }
        match w.p99_ms {
            Some(p99) if p99 > self.max_p99_ms => Some(format!(
                "p99 latency {p99:.0} ms is over the threshold of {:.0} ms",
                self.max_p99_ms
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_requests Total HTTP requests
# TYPE http_requests counter
http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 90
http_requests_total{method="POST",route="/v1/chat/completions",status="502"} 10
http_requests_total{method="GET",route="/metrics",status="200"} 500
http_requests_total{method="GET",route="/health",status="503"} 7
http_request_duration_seconds_bucket{method="POST",route="/v1/chat/completions",le="0.01"} 50
http_request_duration_seconds_bucket{method="POST",route="/v1/chat/completions",le="0.1"} 98
http_request_duration_seconds_bucket{method="POST",route="/v1/chat/completions",le="1.0"} 100
http_request_duration_seconds_bucket{method="POST",route="/v1/chat/completions",le="+Inf"} 100
http_request_duration_seconds_bucket{method="GET",route="/metrics",le="+Inf"} 500
"#;

    #[test]
    fn api_traffic_is_counted_and_probes_are_not() {
        let s = parse(TEXT);
        assert_eq!((s.requests, s.errors), (100.0, 10.0));
        let w = Window::between(&Sample::default(), &s);
        assert_eq!((w.requests, w.errors), (100, 10));
        assert!((w.error_ratio - 0.1).abs() < 1e-9);
        // 99th of 100 lies in (0.1, 1.0]: half way through its two requests.
        let p99 = w.p99_ms.unwrap();
        assert!((p99 - 550.0).abs() < 1e-6, "{p99}");
    }

    #[test]
    fn a_window_is_the_difference_and_is_judged_against_thresholds() {
        let before = parse(TEXT);
        let after = parse(&TEXT.replace("} 90", "} 190"));
        let w = Window::between(&before, &after);
        assert_eq!((w.requests, w.errors), (100, 0));
        let t = Thresholds {
            max_error_ratio: 0.01,
            max_p99_ms: 1000.0,
            min_requests: 1,
        };
        assert_eq!(t.breach(&w), None);
        let bad = Window::between(&Sample::default(), &parse(TEXT));
        assert!(t.breach(&bad).unwrap().contains("error ratio 10.0 %"));
        let slow = Thresholds {
            max_error_ratio: 0.5,
            max_p99_ms: 100.0,
            min_requests: 1,
        };
        assert!(slow.breach(&bad).unwrap().contains("p99 latency 550 ms"));
        let quiet = Thresholds {
            min_requests: 1000,
            ..t
        };
        assert_eq!(quiet.breach(&bad), None, "too few requests to judge");
    }
}
