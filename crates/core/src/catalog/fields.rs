//! A model entry as the configuration file writes it (flat fields), and its
//! conversion to and from the checked [`ModelEntry`].

use super::{BackendKind, ModelEntry, Upstream};
use serde::{Deserialize, Serialize};

/// A model as the configuration file writes it, before it is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelFields {
    /// The id clients send as `model`.
    id: String,
    /// Organisation shown as `owned_by` in `/v1/models`.
    #[serde(default = "default_owner")]
    owned_by: String,
    /// Other names that resolve to this model.
    #[serde(default)]
    aliases: Vec<String>,
    /// Free-form description for humans.
    #[serde(default)]
    description: Option<String>,
    /// Maximum context window in tokens, when known.
    #[serde(default)]
    context_window: Option<u32>,
    /// Largest `max_tokens` a request may ask for.
    #[serde(default)]
    max_output_tokens: Option<u32>,
    /// Free-form size class (`small`, `medium`, `large`) for routing.
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    backend: BackendKind,
    /// Upstream API base, e.g. `https://api.openai.com/v1`.
    #[serde(default)]
    base_url: Option<String>,
    /// Whether an `openai` upstream also serves the Responses API at
    /// `{base_url}/responses`, so that `/v1/responses` calls pass through
    /// to it as sent (default: true for `api.openai.com`, else false).
    #[serde(default)]
    responses_api: Option<bool>,
    /// The model name the upstream knows (defaults to `id`).
    #[serde(default)]
    upstream_model: Option<String>,
    /// Environment variable holding the upstream API key.
    #[serde(default)]
    api_key_env: Option<String>,
    /// File holding the upstream API key (mounted secret).
    #[serde(default)]
    api_key_file: Option<std::path::PathBuf>,
    /// USD per million input tokens.
    #[serde(default)]
    input_per_mtok: f64,
    /// USD per million output tokens.
    #[serde(default)]
    output_per_mtok: f64,
    /// USD per million input tokens served from the upstream's prompt cache.
    #[serde(default)]
    cached_input_per_mtok: Option<f64>,
    /// The date the prices above took effect (YYYY-MM-DD).
    #[serde(default)]
    prices_effective: Option<String>,
    /// Seconds before an upstream call is abandoned (default 300).
    #[serde(default)]
    timeout_seconds: Option<u32>,
    /// The executable of a `claude_cli` model (default `claude` on PATH).
    #[serde(default)]
    command: Option<std::path::PathBuf>,
    /// The GGUF file of a `local` model (default: the built-in SmolLM2,
    /// fetched into `MODELS_DIR` on first use).
    #[serde(default)]
    path: Option<std::path::PathBuf>,
    /// Models to try, in order, when this one fails after its retries or is
    /// unavailable (circuit open, queue full).
    #[serde(default)]
    fallbacks: Vec<String>,
    /// Retries after a retryable failure (429, 5xx, timeout, connection), with
    /// jittered exponential backoff honouring `Retry-After` (default 2).
    #[serde(default = "default_retries")]
    retries: u32,
    /// Calls in flight to this model at most (default 64).
    #[serde(default = "default_max_concurrency")]
    max_concurrency: u32,
    /// Calls waiting for a free slot at most; beyond it, 503 `overloaded`
    /// (default 256).
    #[serde(default = "default_max_queue")]
    max_queue: u32,
    /// Consecutive failures that open the circuit breaker (default 5).
    #[serde(default = "default_breaker_threshold")]
    breaker_threshold: u32,
    /// Seconds the breaker stays open before one trial call (default 30).
    #[serde(default = "default_breaker_cooldown")]
    breaker_cooldown_seconds: u32,
}

/// An upstream's base URL: absolute `http` or `https`.
fn http_url(field: &str, raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{field}: `{raw}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(format!("{field}: `{raw}` is not an http(s) URL"));
    }
    Ok(url)
}

impl TryFrom<ModelFields> for ModelEntry {
    type Error = String;
    fn try_from(f: ModelFields) -> Result<Self, String> {
        let id = &f.id;
        let base_url = f
            .base_url
            .as_deref()
            .map(|u| http_url("base_url", u))
            .transpose()
            .map_err(|e| format!("model `{id}`: {e}"))?;
        let misplaced = |field: &str, present: bool| {
            if present {
                Err(format!(
                    "model `{id}`: {field} does not apply to a `{}` model",
                    f.backend.as_str()
                ))
            } else {
                Ok(())
            }
        };
        let upstream = match f.backend {
            BackendKind::Openai => {
                misplaced("command", f.command.is_some())?;
                misplaced("path", f.path.is_some())?;
                let base_url =
                    base_url.ok_or_else(|| format!("model `{id}`: base_url: required"))?;
                Upstream::Openai {
                    responses: f
                        .responses_api
                        .unwrap_or_else(|| responses_by_default(&base_url)),
                    base_url,
                }
            }
            BackendKind::Anthropic => {
                misplaced("responses_api", f.responses_api.is_some())?;
                misplaced("command", f.command.is_some())?;
                misplaced("path", f.path.is_some())?;
                Upstream::Anthropic { base_url }
            }
            BackendKind::ClaudeCli => {
                misplaced("responses_api", f.responses_api.is_some())?;
                misplaced("path", f.path.is_some())?;
                Upstream::ClaudeCli {
                    command: f.command.unwrap_or_else(|| "claude".into()),
                    base_url,
                }
            }
            BackendKind::Local => {
                misplaced("responses_api", f.responses_api.is_some())?;
                misplaced("base_url", base_url.is_some())?;
                misplaced("command", f.command.is_some())?;
                Upstream::Local { path: f.path }
            }
        };
        Ok(ModelEntry {
            id: f.id,
            owned_by: f.owned_by,
            aliases: f.aliases,
            description: f.description,
            context_window: f.context_window,
            max_output_tokens: f.max_output_tokens,
            tier: f.tier,
            upstream,
            upstream_model: f.upstream_model,
            api_key_env: f.api_key_env,
            api_key_file: f.api_key_file,
            input_per_mtok: f.input_per_mtok,
            output_per_mtok: f.output_per_mtok,
            cached_input_per_mtok: f.cached_input_per_mtok,
            prices_effective: f.prices_effective,
            timeout_seconds: f.timeout_seconds,
            fallbacks: f.fallbacks,
            retries: f.retries,
            max_concurrency: f.max_concurrency,
            max_queue: f.max_queue,
            breaker_threshold: f.breaker_threshold,
            breaker_cooldown_seconds: f.breaker_cooldown_seconds,
        })
    }
}

impl From<ModelEntry> for ModelFields {
    fn from(m: ModelEntry) -> Self {
        let backend = m.upstream.kind();
        let (base_url, command, path, responses_api) = match m.upstream {
            Upstream::Openai {
                base_url,
                responses,
            } => {
                let stated = (responses != responses_by_default(&base_url)).then_some(responses);
                (Some(base_url.into()), None, None, stated)
            }
            Upstream::Anthropic { base_url } => (base_url.map(Into::into), None, None, None),
            Upstream::ClaudeCli { command, base_url } => {
                (base_url.map(Into::into), Some(command), None, None)
            }
            Upstream::Local { path } => (None, None, path, None),
        };
        ModelFields {
            id: m.id,
            owned_by: m.owned_by,
            aliases: m.aliases,
            description: m.description,
            context_window: m.context_window,
            max_output_tokens: m.max_output_tokens,
            tier: m.tier,
            backend,
            base_url,
            responses_api,
            upstream_model: m.upstream_model,
            api_key_env: m.api_key_env,
            api_key_file: m.api_key_file,
            input_per_mtok: m.input_per_mtok,
            output_per_mtok: m.output_per_mtok,
            cached_input_per_mtok: m.cached_input_per_mtok,
            prices_effective: m.prices_effective,
            timeout_seconds: m.timeout_seconds,
            command,
            path,
            fallbacks: m.fallbacks,
            retries: m.retries,
            max_concurrency: m.max_concurrency,
            max_queue: m.max_queue,
            breaker_threshold: m.breaker_threshold,
            breaker_cooldown_seconds: m.breaker_cooldown_seconds,
        }
    }
}

/// OpenAI's own API serves Responses; other OpenAI-compatible servers are
/// not assumed to.
fn responses_by_default(base_url: &url::Url) -> bool {
    base_url.host_str() == Some("api.openai.com")
}

pub(super) fn default_retries() -> u32 {
    2
}
pub(super) fn default_max_concurrency() -> u32 {
    64
}
pub(super) fn default_max_queue() -> u32 {
    256
}
pub(super) fn default_breaker_threshold() -> u32 {
    5
}
pub(super) fn default_breaker_cooldown() -> u32 {
    30
}

fn default_owner() -> String {
    "switchyard".into()
}
