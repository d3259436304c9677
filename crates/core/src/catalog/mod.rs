//! The model catalog: which model ids the service offers, as configured.

mod builtin;
mod fields;

pub use builtin::{default_catalog, local_model, ANTHROPIC_BASE_URL, LOCAL_MODEL_ID};
use fields::ModelFields;
use serde::{Deserialize, Serialize};

/// Which kind of upstream serves a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Any server speaking OpenAI's chat completions API (OpenAI, vLLM,
    /// Ollama, llama.cpp server, LM Studio).
    #[default]
    Openai,
    /// Anthropic's Messages API (`{base_url}/v1/messages`).
    Anthropic,
    /// The Claude Code CLI (`claude -p --output-format stream-json`), run as
    /// a subprocess per call.
    ClaudeCli,
    /// A GGUF llama-family model run in-process on the CPU (`path`; the
    /// built-in SmolLM2 when none is given, fetched on first use).
    Local,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Openai => "openai",
            BackendKind::Anthropic => "anthropic",
            BackendKind::ClaudeCli => "claude_cli",
            BackendKind::Local => "local",
        }
    }
}

/// One model the service offers: what `/v1/models` shows, where requests
/// for it go, and what its tokens cost. Read from the configuration file's
/// flat fields (`backend`, `base_url`, `command`, `path`) into a checked
/// [`Upstream`], so a bad `base_url` fails `config check`, not every call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelFields", into = "ModelFields")]
pub struct ModelEntry {
    /// The id clients send as `model`.
    pub id: String,
    /// Organisation shown as `owned_by` in `/v1/models`.
    pub owned_by: String,
    /// Other names that resolve to this model.
    pub aliases: Vec<String>,
    /// Free-form description for humans.
    pub description: Option<String>,
    /// Maximum context window in tokens, when known.
    pub context_window: Option<u32>,
    /// Largest `max_tokens` a request may ask for.
    pub max_output_tokens: Option<u32>,
    /// Free-form size class (`small`, `medium`, `large`) for routing.
    pub tier: Option<String>,
    /// Where calls go.
    pub upstream: Upstream,
    /// The model name the upstream knows (defaults to `id`).
    pub upstream_model: Option<String>,
    /// Environment variable holding the upstream API key.
    pub api_key_env: Option<String>,
    /// File holding the upstream API key (mounted secret).
    pub api_key_file: Option<std::path::PathBuf>,
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// USD per million input tokens served from the upstream's prompt cache.
    pub cached_input_per_mtok: Option<f64>,
    /// The date the prices above took effect (YYYY-MM-DD).
    pub prices_effective: Option<String>,
    /// Seconds before an upstream call is abandoned (default 300).
    pub timeout_seconds: Option<u32>,
    /// Models to try, in order, when this one fails after its retries or is
    /// unavailable (circuit open, queue full).
    pub fallbacks: Vec<String>,
    /// Retries after a retryable failure (default 2).
    pub retries: u32,
    /// Calls in flight to this model at most (default 64).
    pub max_concurrency: u32,
    /// Calls waiting for a free slot at most (default 256).
    pub max_queue: u32,
    /// Consecutive failures that open the circuit breaker (default 5).
    pub breaker_threshold: u32,
    /// Seconds the breaker stays open before one trial call (default 30).
    pub breaker_cooldown_seconds: u32,
}

/// Where a model's calls go, checked when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// OpenAI's chat completions API at `{base_url}/chat/completions`;
    /// with `responses`, also the Responses API at `{base_url}/responses`.
    Openai { base_url: url::Url, responses: bool },
    /// Anthropic's Messages API at `{base_url}/v1/messages` (`None`:
    /// Anthropic's own, [`ANTHROPIC_BASE_URL`]).
    Anthropic { base_url: Option<url::Url> },
    /// The Claude Code CLI, run as `command` (default `claude` on PATH),
    /// talking to Anthropic's Messages API at `base_url` when given
    /// (`ANTHROPIC_BASE_URL` in its environment), Anthropic's own otherwise.
    ClaudeCli {
        command: std::path::PathBuf,
        base_url: Option<url::Url>,
    },
    /// A GGUF file run in-process; `None`: the built-in model under
    /// `MODELS_DIR`, fetched on first use.
    Local { path: Option<std::path::PathBuf> },
}

impl Upstream {
    pub fn kind(&self) -> BackendKind {
        match self {
            Upstream::Openai { .. } => BackendKind::Openai,
            Upstream::Anthropic { .. } => BackendKind::Anthropic,
            Upstream::ClaudeCli { .. } => BackendKind::ClaudeCli,
            Upstream::Local { .. } => BackendKind::Local,
        }
    }
}

/// Prices in integer micro-USD per million tokens, so that cost arithmetic
/// is exact: a token costs `price / 1000` nano-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pricing {
    pub input_micros_per_mtok: u64,
    pub output_micros_per_mtok: u64,
    pub cached_input_micros_per_mtok: u64,
}

fn micros(usd_per_mtok: f64) -> u64 {
    if usd_per_mtok.is_finite() && usd_per_mtok > 0.0 {
        (usd_per_mtok * 1_000_000.0).round() as u64
    } else {
        0
    }
}

impl Pricing {
    /// Cost in nano-USD of a call's tokens. `cached` input tokens are part of
    /// `input` and are charged at the cached rate instead.
    pub fn cost_nano_usd(&self, input: u64, cached: u64, output: u64) -> u64 {
        let cached = cached.min(input);
        let total = u128::from(input - cached) * u128::from(self.input_micros_per_mtok)
            + u128::from(cached) * u128::from(self.cached_input_micros_per_mtok)
            + u128::from(output) * u128::from(self.output_micros_per_mtok);
        u64::try_from(total.div_ceil(1000)).unwrap_or(u64::MAX)
    }
}

impl ModelEntry {
    pub fn pricing(&self) -> Pricing {
        Pricing {
            input_micros_per_mtok: micros(self.input_per_mtok),
            output_micros_per_mtok: micros(self.output_per_mtok),
            cached_input_micros_per_mtok: micros(
                self.cached_input_per_mtok.unwrap_or(self.input_per_mtok),
            ),
        }
    }

    /// The upstream API base of an HTTP model (Anthropic's own for
    /// `anthropic` models without one); `None` for the others.
    pub fn base_url(&self) -> Option<&str> {
        match &self.upstream {
            Upstream::Openai { base_url, .. }
            | Upstream::Anthropic {
                base_url: Some(base_url),
            } => Some(base_url.as_str()),
            Upstream::Anthropic { base_url: None } => Some(ANTHROPIC_BASE_URL),
            Upstream::ClaudeCli { .. } | Upstream::Local { .. } => None,
        }
    }

    pub fn backend(&self) -> BackendKind {
        self.upstream.kind()
    }

    /// Whether the upstream serves OpenAI's Responses API, so that
    /// `/v1/responses` calls pass through to it as sent.
    pub fn speaks_responses(&self) -> bool {
        matches!(
            self.upstream,
            Upstream::Openai {
                responses: true,
                ..
            }
        )
    }

    /// The name to send upstream.
    pub fn upstream_model(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or(&self.id)
    }

    /// How long an upstream call may take before it is abandoned.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout_seconds.map_or(DEFAULT_UPSTREAM_TIMEOUT, |s| {
            std::time::Duration::from_secs(u64::from(s))
        })
    }
}

/// Finds a model by the name a client sent: `get` looks a name up among the
/// catalog's ids and aliases. An exact name wins; otherwise a dated
/// Anthropic id (`claude-sonnet-4-5-20250929`, what Claude Code and
/// Anthropic's SDKs send) finds the model its undated form names
/// (`claude-sonnet-4-5`), so a catalog that lists a family once serves
/// every snapshot id of it.
pub fn resolve_name<T>(name: &str, get: impl Fn(&str) -> Option<T>) -> Option<T> {
    get(name).or_else(|| undated_anthropic_id(name).and_then(&get))
}

/// `claude-…-YYYYMMDD` → `claude-…`; `None` for any other name (a name
/// without that prefix, or without a valid date as its last part).
pub fn undated_anthropic_id(name: &str) -> Option<&str> {
    let (base, date) = name.rsplit_once('-')?;
    let dated = date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
        && chrono::NaiveDate::parse_from_str(date, "%Y%m%d").is_ok();
    (dated && base.starts_with("claude-") && base.len() > "claude-".len()).then_some(base)
}

/// How long an upstream call may take where a model sets no `timeout_seconds`.
pub const DEFAULT_UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Checks ids and aliases (non-empty, printable, unique across the catalog),
/// prices and upstream settings.
pub fn validate(models: &[ModelEntry]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, m) in models.iter().enumerate() {
        for (field, price) in [
            ("input_per_mtok", Some(m.input_per_mtok)),
            ("output_per_mtok", Some(m.output_per_mtok)),
            ("cached_input_per_mtok", m.cached_input_per_mtok),
        ] {
            if let Some(p) = price {
                if !p.is_finite() || !(0.0..=1_000_000.0).contains(&p) {
                    problems.push(format!(
                        "models[{i}].{field}: `{p}` is not a price in USD per million tokens"
                    ));
                }
            }
        }
        if m.api_key_env.is_some() && m.api_key_file.is_some() {
            problems.push(format!(
                "models[{i}]: set api_key_env or api_key_file, not both"
            ));
        }
        if let Some(d) = &m.prices_effective {
            if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
                problems.push(format!(
                    "models[{i}].prices_effective: `{d}` is not a YYYY-MM-DD date"
                ));
            }
        }
        if m.max_concurrency == 0 {
            problems.push(format!("models[{i}].max_concurrency: must be at least 1"));
        }
        if m.breaker_threshold == 0 {
            problems.push(format!("models[{i}].breaker_threshold: must be at least 1"));
        }
        if m.retries > 10 {
            problems.push(format!("models[{i}].retries: at most 10"));
        }
        if m.timeout_seconds == Some(0) {
            problems.push(format!("models[{i}].timeout_seconds: must be at least 1"));
        }
        for name in std::iter::once(&m.id).chain(m.aliases.iter()) {
            if name.trim().is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.push(format!(
                    "models[{i}]: `{name}` is not a valid model id (empty or contains whitespace)"
                ));
            } else if !seen.insert(name.clone()) {
                problems.push(format!("models[{i}]: `{name}` is defined more than once"));
            }
        }
    }
    for (i, m) in models.iter().enumerate() {
        for f in &m.fallbacks {
            if !seen.contains(f) {
                problems.push(format!(
                    "models[{i}].fallbacks: `{f}` is not a model in the catalog"
                ));
            } else if f == &m.id || m.aliases.contains(f) {
                problems.push(format!(
                    "models[{i}].fallbacks: a model cannot fall back to itself"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, aliases: &[&str]) -> ModelEntry {
        let mut m: ModelEntry = toml::from_str(&format!(
            "id = \"{id}\"\nbase_url = \"http://127.0.0.1:1/v1\""
        ))
        .unwrap();
        m.aliases = aliases.iter().map(|a| a.to_string()).collect();
        m
    }

    #[test]
    fn the_default_catalog_is_valid() {
        let models = default_catalog();
        assert!(validate(&models).is_empty(), "{:?}", validate(&models));
        assert_eq!(models[0].id, LOCAL_MODEL_ID);
        assert_eq!(models[0].backend(), BackendKind::Local);
        assert_eq!(models[0].pricing(), Pricing::default());
        assert_eq!(models[2].aliases, ["sonnet"]);
        assert_eq!(models[1].pricing().output_micros_per_mtok, 5_000_000);
        assert_eq!(models[3].base_url(), Some(ANTHROPIC_BASE_URL));
    }

    #[test]
    fn costs_are_exact_integer_arithmetic() {
        let mut m = entry("m", &[]);
        m.input_per_mtok = 3.0;
        m.output_per_mtok = 15.0;
        m.cached_input_per_mtok = Some(0.30);
        let p = m.pricing();
        // 1000 input (200 cached), 500 output:
        // 800 × 3000 + 200 × 300 + 500 × 15000 nano-USD = 9.96 milli-USD.
        assert_eq!(p.cost_nano_usd(1000, 200, 500), 9_960_000);
        assert_eq!(p.cost_nano_usd(0, 0, 0), 0);
        m.input_per_mtok = 0.0375;
        assert_eq!(m.pricing().input_micros_per_mtok, 37_500);
        assert_eq!(m.pricing().cost_nano_usd(3, 0, 0), 113); // 112.5 rounded up
        assert_eq!(m.upstream_model(), "m");
    }

    #[test]
    fn upstreams_are_checked_when_read() {
        let read = |text: &str| toml::from_str::<ModelEntry>(text).map_err(|e| e.to_string());
        let bad = read("id = \"m\"\nbase_url = \"http://exa mple/v1\"").unwrap_err();
        assert!(
            bad.contains("base_url") && bad.contains("not a URL"),
            "{bad}"
        );
        let bad = read("id = \"m\"\nbase_url = \"ftp://example/v1\"").unwrap_err();
        assert!(bad.contains("not an http(s) URL"), "{bad}");
        let bad = read("id = \"m\"").unwrap_err();
        assert!(bad.contains("base_url: required"), "{bad}");
        let bad = read("id = \"m\"\nbackend = \"local\"\nbase_url = \"http://h/v1\"").unwrap_err();
        assert!(
            bad.contains("base_url does not apply to a `local` model"),
            "{bad}"
        );
        let cli = read("id = \"m\"\nbackend = \"claude_cli\"").unwrap();
        assert_eq!(
            cli.upstream,
            Upstream::ClaudeCli {
                command: "claude".into(),
                base_url: None
            }
        );
        let cli = read("id = \"m\"\nbackend = \"claude_cli\"\nbase_url = \"http://127.0.0.1:9\"")
            .unwrap();
        assert_eq!(cli.base_url(), None, "not an HTTP model of the service's");
        let json = serde_json::to_value(&cli).unwrap();
        assert_eq!(json["base_url"], "http://127.0.0.1:9/");
        let again: ModelEntry = serde_json::from_value(json).unwrap();
        assert_eq!(again, cli);
        let anthropic = read("id = \"m\"\nbackend = \"anthropic\"").unwrap();
        assert_eq!(anthropic.base_url(), Some(ANTHROPIC_BASE_URL));
        // What is read is what is written back.
        let openai = read("id = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"").unwrap();
        let json = serde_json::to_value(&openai).unwrap();
        let again: ModelEntry = serde_json::from_value(json).unwrap();
        assert_eq!(again, openai);
    }

    #[test]
    fn dated_anthropic_ids_resolve_to_their_undated_model() {
        let models = default_catalog();
        let find = |name: &str| {
            resolve_name(name, |n| {
                models
                    .iter()
                    .find(|m| m.id == n || m.aliases.iter().any(|a| a == n))
                    .map(|m| m.id.as_str())
            })
        };
        assert_eq!(
            find("claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(find("claude-haiku-4-5-20251001"), Some("claude-haiku-4-5"));
        assert_eq!(find("claude-sonnet-4-5"), Some("claude-sonnet-4-5"));
        assert_eq!(find("sonnet"), Some("claude-sonnet-4-5"));
        // Only a real date is stripped, only from a Claude id, and only when
        // the undated form is in the catalog.
        assert_eq!(find("claude-sonnet-4-5-20251399"), None);
        assert_eq!(find("claude-sonnet-4-5-2025092"), None);
        assert_eq!(find("claude-sonnet-4-20250514"), None);
        assert_eq!(find("sonnet-20250929"), None);
        assert_eq!(undated_anthropic_id("claude-20250929"), None);
        assert_eq!(undated_anthropic_id("gpt-4o-2024-08-06"), None);
        assert_eq!(
            undated_anthropic_id("claude-3-5-haiku-20241022"),
            Some("claude-3-5-haiku")
        );
        // An exact id wins over its undated form.
        let mut dated = entry("claude-opus-4-5-20251101", &[]);
        dated.description = Some("pinned".into());
        let both = [entry("claude-opus-4-5", &["opus"]), dated];
        let pick = |name: &str| {
            resolve_name(name, |n| {
                both.iter()
                    .position(|m| m.id == n || m.aliases.iter().any(|a| a == n))
            })
        };
        assert_eq!(pick("claude-opus-4-5-20251101"), Some(1));
        assert_eq!(pick("claude-opus-4-5-20250101"), Some(0));
    }

    #[test]
    fn duplicate_ids_and_aliases_are_reported() {
        let problems = validate(&[entry("a", &["b"]), entry("b", &[]), entry("c d", &[])]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`b` is defined more than once"));
        assert!(problems[1].contains("`c d` is not a valid model id"));
        assert!(validate(&[entry("a", &["x"]), entry("b", &["y"])]).is_empty());
    }
}
