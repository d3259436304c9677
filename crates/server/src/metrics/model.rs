//! One model's per-call series, looked up once per model: a call then
//! updates them without hashing label sets or copying the model's name.

use super::{Metrics, ModelLabels, TokenLabels, UpstreamLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Handles on one model's series in [`Metrics`]; they share the
/// registry's values, so updating them is updating the exposed series.
#[derive(Clone)]
pub struct ModelSeries {
    input_tokens: Counter,
    output_tokens: Counter,
    cached_tokens: Counter,
    cost_nano_usd: Counter,
    upstream_latency: Histogram,
    upstream_ok: Counter,
}

impl Metrics {
    /// The per-call series of `model`, created (at zero) where missing.
    pub fn model_series(&self, model: &str) -> ModelSeries {
        let tokens = |direction| {
            self.tokens
                .get_or_create(&TokenLabels {
                    model: model.to_owned(),
                    direction,
                })
                .clone()
        };
        let labels = ModelLabels {
            model: model.to_owned(),
        };
        ModelSeries {
            input_tokens: tokens("input"),
            output_tokens: tokens("output"),
            cached_tokens: tokens("cached"),
            cost_nano_usd: self.cost_nano_usd.get_or_create(&labels).clone(),
            upstream_latency: self.upstream_latency.get_or_create(&labels).clone(),
            upstream_ok: self
                .upstream_calls
                .get_or_create(&UpstreamLabels {
                    model: model.to_owned(),
                    result: "ok",
                })
                .clone(),
        }
    }
}

impl ModelSeries {
    /// Counts a call's tokens: prompt (input), completion (output) and the
    /// part of the prompt served from the upstream's cache.
    pub fn count_tokens(&self, input: u64, output: u64, cached: u64) {
        for (counter, n) in [
            (&self.input_tokens, input),
            (&self.output_tokens, output),
            (&self.cached_tokens, cached),
        ] {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }

    pub fn count_cost(&self, nano_usd: u64) {
        if nano_usd > 0 {
            self.cost_nano_usd.inc_by(nano_usd);
        }
    }

    pub fn observe_upstream_latency(&self, seconds: f64) {
        self.upstream_latency.observe(seconds);
    }

    /// Counts one attempt at the model's upstream that answered.
    pub fn count_upstream_ok(&self) {
        self.upstream_ok.inc();
    }
}
