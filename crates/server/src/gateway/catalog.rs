//! The served catalog: each model (by id and alias) with its prices, its
//! backend, and the breaker and worker pool that guard it.

use crate::resilience::{Breaker, Pool};
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_core::catalog::{BackendKind, ModelEntry, Pricing};
use switchyard_core::Config;
use switchyard_models::openai_wire::{ChatCompletion, ChatRequest};
use switchyard_models::{
    AnthropicBackend, BackendError, ChunkStream, ClaudeCliBackend, HttpClient, HttpSettings,
    OpenAiBackend,
};

/// How a model is served.
#[derive(Clone)]
pub enum Backend {
    OpenAi(OpenAiBackend),
    Anthropic(AnthropicBackend),
    ClaudeCli(ClaudeCliBackend),
    #[cfg(feature = "local")]
    Local(switchyard_local::LocalBackend),
    /// A backend this build leaves out (a cargo feature turned off).
    #[cfg(not(feature = "local"))]
    NotBuilt(&'static str),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::OpenAi(_) => "openai",
            Backend::Anthropic(_) => "anthropic",
            Backend::ClaudeCli(_) => "claude_cli",
            #[cfg(feature = "local")]
            Backend::Local(_) => "local",
            #[cfg(not(feature = "local"))]
            Backend::NotBuilt(name) => name,
        }
    }

    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, BackendError> {
        match self {
            Backend::OpenAi(b) => b.complete(req).await,
            Backend::Anthropic(b) => b.complete(req).await,
            Backend::ClaudeCli(b) => b.complete(req).await,
            #[cfg(feature = "local")]
            Backend::Local(b) => b.complete(req).await,
            #[cfg(not(feature = "local"))]
            Backend::NotBuilt(name) => Err(not_built(name)),
        }
    }

    pub async fn stream(&self, req: &ChatRequest) -> Result<ChunkStream, BackendError> {
        match self {
            Backend::OpenAi(b) => b.stream(req).await,
            Backend::Anthropic(b) => b.stream(req).await,
            Backend::ClaudeCli(b) => b.stream(req).await,
            #[cfg(feature = "local")]
            Backend::Local(b) => b.stream(req).await,
            #[cfg(not(feature = "local"))]
            Backend::NotBuilt(name) => Err(not_built(name)),
        }
    }
}

#[cfg(not(feature = "local"))]
fn not_built(name: &str) -> BackendError {
    BackendError::Status {
        status: 503,
        message: format!(
            "this build of switchyard has no `{name}` backend (cargo feature `{name}`)"
        ),
        retry_after: None,
    }
}

/// The backend of a `local` model: its GGUF file, or the built-in model's
/// file under `MODELS_DIR`, fetched on first use.
#[cfg(feature = "local")]
fn local_backend(config: &Config, entry: &ModelEntry, http: &HttpClient) -> Backend {
    let builtin = &switchyard_local::SMOLLM2_135M;
    let path = match &entry.upstream {
        switchyard_core::catalog::Upstream::Local { path } => path.as_ref(),
        _ => None,
    };
    let (path, source) = match path {
        Some(p) => (p.clone(), None),
        None => (
            config.models_dir.join(builtin.file_name),
            Some((builtin, (&config.model_fetch).into())),
        ),
    };
    Backend::Local(switchyard_local::LocalBackend::new(
        entry,
        path,
        source,
        http.downloads().clone(),
    ))
}

pub struct ModelRoute {
    /// The environment variable whose absence makes the model unusable (a
    /// built-in catalog model without its key).
    pub missing_key: Option<String>,
    pub entry: ModelEntry,
    pub pricing: Pricing,
    pub backend: Backend,
    pub breaker: Breaker,
    pub pool: Pool,
    /// The model's per-call metric series, looked up at its first call.
    series: std::sync::OnceLock<crate::metrics::ModelSeries>,
}

impl ModelRoute {
    /// The model's per-call series in `metrics` (the gateway's own).
    pub fn series(&self, metrics: &crate::metrics::Metrics) -> &crate::metrics::ModelSeries {
        self.series
            .get_or_init(|| metrics.model_series(&self.entry.id))
    }
}

/// Models by id and alias, and the entries in their configured order.
#[derive(Default)]
pub struct Catalog {
    routes: HashMap<String, Arc<ModelRoute>>,
    entries: Vec<ModelEntry>,
}

impl Catalog {
    pub fn new(config: &Config, models: &[ModelEntry], http: &HttpClient) -> Self {
        let mut routes = HashMap::new();
        for entry in models {
            let key = config.model_keys.get(&entry.id).cloned();
            let missing_key = match (&key, &entry.api_key_env) {
                (None, Some(var)) => Some(var.clone()),
                _ => None,
            };
            let backend = match entry.backend() {
                BackendKind::Openai => {
                    Backend::OpenAi(OpenAiBackend::new(http.clone(), entry, key))
                }
                BackendKind::Anthropic => {
                    Backend::Anthropic(AnthropicBackend::new(http.clone(), entry, key))
                }
                BackendKind::ClaudeCli => Backend::ClaudeCli(ClaudeCliBackend::new(entry, key)),
                #[cfg(feature = "local")]
                BackendKind::Local => local_backend(config, entry, http),
                #[cfg(not(feature = "local"))]
                BackendKind::Local => Backend::NotBuilt("local"),
            };
            let route = Arc::new(ModelRoute {
                missing_key,
                pricing: entry.pricing(),
                entry: entry.clone(),
                backend,
                breaker: Breaker::new(
                    entry.breaker_threshold,
                    std::time::Duration::from_secs(u64::from(entry.breaker_cooldown_seconds)),
                ),
                pool: Pool::new(entry.max_concurrency, entry.max_queue),
                series: std::sync::OnceLock::new(),
            });
            for name in std::iter::once(&entry.id).chain(entry.aliases.iter()) {
                routes.insert(name.clone(), route.clone());
            }
        }
        Self {
            routes,
            entries: models.to_vec(),
        }
    }

    /// The configured models, in order (for `/v1/models`).
    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }

    /// A model by id or alias; a dated Anthropic id (`claude-sonnet-4-5-20250929`)
    /// that is not itself in the catalog finds its undated form. Every
    /// caller resolves through here: chat completions, Messages, tasks, the
    /// routing policy and fallbacks.
    pub fn resolve(&self, name: &str) -> Option<Arc<ModelRoute>> {
        switchyard_core::catalog::resolve_name(name, |n| self.routes.get(n).cloned())
    }

    /// The model and its fallbacks, in order, without repeats.
    pub fn chain(&self, primary: &Arc<ModelRoute>) -> Vec<Arc<ModelRoute>> {
        let mut chain = vec![primary.clone()];
        for name in &primary.entry.fallbacks {
            if let Some(r) = self.resolve(name) {
                if !chain.iter().any(|c| Arc::ptr_eq(c, &r)) {
                    chain.push(r);
                }
            }
        }
        chain
    }

    /// Starts loading every embedded local model in the background (and
    /// fetching the built-in one if it is missing), so that the first call
    /// does not wait for it. A failure is logged; calls report it too.
    pub fn preload_local(&self) {
        #[cfg(feature = "local")]
        for route in self.models() {
            if let Backend::Local(b) = &route.backend {
                let b = b.clone();
                tokio::spawn(async move {
                    let _ = b.engine().await;
                });
            }
        }
    }

    /// Every distinct model, for per-model gauges.
    pub fn models(&self) -> Vec<Arc<ModelRoute>> {
        let mut seen: Vec<Arc<ModelRoute>> = Vec::new();
        for r in self.routes.values() {
            if !seen.iter().any(|s| Arc::ptr_eq(s, r)) {
                seen.push(r.clone());
            }
        }
        seen
    }
}

/// The HTTP client every HTTP backend shares: pooled connections, rustls,
/// a connect timeout, the environment's proxy settings; per-call deadlines
/// come from each model.
pub fn http_client() -> anyhow::Result<HttpClient> {
    Ok(HttpClient::new(&HttpSettings::default())?)
}
