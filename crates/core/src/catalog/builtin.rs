//! The built-in catalog: the embedded local model, and Anthropic's models
//! at their published prices, used when the configuration names no models.

use super::fields::{
    default_breaker_cooldown, default_breaker_threshold, default_max_concurrency,
    default_max_queue, default_retries,
};
use super::{ModelEntry, Upstream};

/// Anthropic's API, the default `base_url` of `anthropic` models.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

fn anthropic(
    id: &str,
    alias: &str,
    tier: &str,
    input: f64,
    output: f64,
    cached: f64,
) -> ModelEntry {
    ModelEntry {
        id: id.into(),
        owned_by: "anthropic".into(),
        aliases: vec![alias.into()],
        description: None,
        context_window: Some(200_000),
        max_output_tokens: Some(64_000),
        tier: Some(tier.into()),
        upstream: Upstream::Anthropic { base_url: None },
        upstream_model: None,
        api_key_env: Some("ANTHROPIC_API_KEY".into()),
        api_key_file: None,
        input_per_mtok: input,
        output_per_mtok: output,
        cached_input_per_mtok: Some(cached),
        prices_effective: Some("2025-11-24".into()),
        timeout_seconds: None,
        fallbacks: Vec::new(),
        retries: default_retries(),
        max_concurrency: default_max_concurrency(),
        max_queue: default_max_queue(),
        breaker_threshold: default_breaker_threshold(),
        breaker_cooldown_seconds: default_breaker_cooldown(),
    }
}

/// The id of the embedded default model (SmolLM2-135M-Instruct), also
/// reachable as `local`.
pub const LOCAL_MODEL_ID: &str = "smollm2-135m-instruct";

/// The embedded model: free, offline, small. Tokens are priced at 0 unless
/// a configuration prices them.
pub fn local_model() -> ModelEntry {
    ModelEntry {
        id: LOCAL_MODEL_ID.into(),
        owned_by: "switchyard".into(),
        aliases: vec!["local".into()],
        description: Some("SmolLM2-135M-Instruct (Q4_1 GGUF), run in-process on the CPU".into()),
        context_window: Some(8192),
        max_output_tokens: Some(4096),
        tier: Some("small".into()),
        upstream: Upstream::Local { path: None },
        upstream_model: None,
        api_key_env: None,
        api_key_file: None,
        input_per_mtok: 0.0,
        output_per_mtok: 0.0,
        cached_input_per_mtok: None,
        prices_effective: None,
        timeout_seconds: Some(600),
        fallbacks: Vec::new(),
        // A local failure is not transient: retrying only queues it again.
        retries: 0,
        max_concurrency: 16,
        max_queue: 64,
        breaker_threshold: default_breaker_threshold(),
        breaker_cooldown_seconds: default_breaker_cooldown(),
    }
}

/// The catalog used when `SWITCHYARD_CONFIG` defines no models: the
/// embedded local model, and the Anthropic family at its published prices
/// (USD per million tokens, as of `prices_effective`), reachable as
/// `haiku`, `sonnet` and `opus`, with the key from `ANTHROPIC_API_KEY`.
pub fn default_catalog() -> Vec<ModelEntry> {
    vec![
        local_model(),
        anthropic("claude-haiku-4-5", "haiku", "small", 1.0, 5.0, 0.10),
        anthropic("claude-sonnet-4-5", "sonnet", "medium", 3.0, 15.0, 0.30),
        anthropic("claude-opus-4-5", "opus", "large", 5.0, 25.0, 0.50),
    ]
}
