//! The model gateway: the call path every model call takes — from the chat
//! API, the Messages API, batches, the WebSocket and task workers alike.
//! Resolve the model (`auto` included), check the request against it,
//! reserve budget, run the fallback chain, and account for the call. It
//! speaks typed values ([`GatewayError`], completions, [`ChatStream`]); the
//! HTTP shape of a result is decided in `routes/`.
//!
//! Work the gateway runs on its own tasks (a call that must finish even if
//! its client leaves) is tracked, so that shutdown waits for it and cuts it
//! off cleanly — each call still leaves its usage row.

mod call;
pub mod catalog;
mod chain;
mod error;
mod native;
mod routing;
mod stream;

pub use call::{estimate_nano_usd, Call, CallOrigin, Ledger, Outcome, ENDPOINT};
pub use catalog::{http_client, Backend, Catalog, ModelRoute};
pub use error::{BudgetExceeded, GatewayError};
pub use native::{Metered, Passthrough, Piece, Reply};
pub use routing::{conversation_text, estimate_tokens, AutoRoute, AUTO};
pub use stream::{ChatStream, StreamEnd, StreamItem};

use crate::budgets::{Budgets, Refusal};
use crate::context::Caller;
use crate::metrics::Metrics;
use crate::usage::UsageRecorder;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchyard_core::routing::RoutingConfig;
use switchyard_core::Config;
use switchyard_models::openai_wire::{ChatCompletion, ChatRequest};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

struct Inner {
    catalog: RwLock<Arc<Catalog>>,
    routing: RwLock<Arc<RoutingConfig>>,
    budgets: Budgets,
    ledger: Ledger,
    http: switchyard_models::HttpClient,
    work: TaskTracker,
    shutdown: CancellationToken,
}

impl Gateway {
    pub fn new(
        config: &Config,
        http: switchyard_models::HttpClient,
        budgets: Budgets,
        usage: UsageRecorder,
        metrics: Metrics,
    ) -> Self {
        Self(Arc::new(Inner {
            catalog: RwLock::new(Arc::new(Catalog::new(config, &config.file.models, &http))),
            routing: RwLock::new(Arc::new(config.file.routing.clone())),
            budgets,
            ledger: Ledger { usage, metrics },
            http,
            work: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }))
    }

    /// Swaps in a reloaded configuration's catalog (with the upstream keys it
    /// names) and routing policy. Calls in flight keep the models they have.
    pub fn reload(&self, config: &Config) {
        let catalog = Catalog::new(config, &config.file.models, &self.0.http);
        *switchyard_core::sync::write(&self.0.catalog) = Arc::new(catalog);
        *switchyard_core::sync::write(&self.0.routing) = Arc::new(config.file.routing.clone());
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        switchyard_core::sync::read(&self.0.catalog).clone()
    }

    pub fn routing(&self) -> Arc<RoutingConfig> {
        switchyard_core::sync::read(&self.0.routing).clone()
    }

    /// A model by id or alias (or a dated Anthropic id; [`Catalog::resolve`]).
    pub fn resolve(&self, name: &str) -> Option<Arc<ModelRoute>> {
        self.catalog().resolve(name)
    }

    /// Whether every target of the routing policy is in the catalog (so
    /// `auto` can be offered).
    pub fn auto_is_routable(&self) -> bool {
        let catalog = self.catalog();
        self.routing()
            .targets()
            .iter()
            .all(|t| catalog.resolve(t).is_some())
    }

    /// Everything before the upstream call: validation, model resolution
    /// (`auto` included), output bound, budget reservation. A refused
    /// reservation is itself accounted.
    pub async fn prepare(
        &self,
        origin: CallOrigin,
        req: &ChatRequest,
    ) -> Result<Call, GatewayError> {
        if let Err((field, message)) = req.validate() {
            return Err(GatewayError::invalid(field, message));
        }
        let route = if req.model == AUTO {
            let text = conversation_text(&req.messages);
            self.route_auto(&origin.caller, &text).await?.target
        } else {
            self.resolve(&req.model)
                .ok_or_else(|| GatewayError::ModelNotFound {
                    model: req.model.clone(),
                })?
        };
        if let Some(variable) = &route.missing_key {
            return Err(GatewayError::MissingKey {
                model: route.entry.id.clone(),
                variable: variable.clone(),
            });
        }
        if let (Some(asked), Some(max)) = (req.output_limit(), route.entry.max_output_tokens) {
            if asked > max {
                return Err(GatewayError::invalid(
                    "max_tokens",
                    format!("{asked} exceeds this model's maximum output of {max} tokens"),
                ));
            }
        }
        let estimate = estimate_nano_usd(&route, req);
        self.open(origin, req.model.clone(), route, estimate).await
    }

    /// Opens a call to `route` with `estimate_nano_usd` reserved against
    /// the caller's budgets. For work the gateway does not run itself (a
    /// task run through the Claude Code CLI), the caller closes the call
    /// with what the work reported.
    pub async fn open(
        &self,
        origin: CallOrigin,
        requested: String,
        route: Arc<ModelRoute>,
        estimate_nano_usd: i64,
    ) -> Result<Call, GatewayError> {
        let mut call = Call::new(self.0.ledger.clone(), origin, requested, route);
        match self
            .0
            .budgets
            .reserve(&call.origin.caller, estimate_nano_usd)
            .await
        {
            Ok(reservation) => {
                call.reservation = reservation;
                Ok(call)
            }
            Err(refusal) => {
                let err = match refusal {
                    Refusal::Exceeded(e) => {
                        GatewayError::BudgetExceeded(Box::new(BudgetExceeded {
                            budget: e.budget,
                            estimate_nano_usd,
                            remaining_nano_usd: e.remaining_nano_usd,
                        }))
                    }
                    Refusal::Store(e) => GatewayError::Store(e),
                };
                // On the heap: a refusal's accounting would otherwise enlarge
                // the future of every call, refused or not.
                Box::pin(call.close(Outcome::failed(&err, None))).await;
                Err(err)
            }
        }
    }

    /// Runs a prepared call through the model chain (without streaming) and
    /// accounts for it.
    pub async fn complete(
        &self,
        call: Call,
        req: &ChatRequest,
    ) -> Result<ChatCompletion, GatewayError> {
        self.complete_with(call, |r| async move { r.backend.complete(req).await })
            .await
    }

    /// Runs a prepared call through the model chain with `op` as each
    /// attempt, and accounts for it.
    async fn complete_with<T, F, Fut>(&self, mut call: Call, op: F) -> Result<T, GatewayError>
    where
        T: Metered,
        F: FnMut(Arc<ModelRoute>) -> Fut,
        Fut: Future<Output = Result<T, switchyard_models::BackendError>>,
    {
        let chain = self.catalog().chain(&call.route);
        let started = Instant::now();
        let attempt =
            chain::run(&chain, &self.0.ledger.metrics, op).instrument(call.span().clone());
        let result = tokio::select! {
            r = attempt => r,
            () = self.0.shutdown.cancelled() => Err(GatewayError::ShuttingDown),
        };
        let upstream = started.elapsed();
        match result {
            Ok(served) => {
                call.route = served.route;
                let mut value = served.value;
                let (usage, reported) = value.meter(&call.route.entry.id);
                call.close(Outcome::served(
                    usage.unwrap_or_default(),
                    reported,
                    upstream,
                ))
                .await;
                Ok(value)
            }
            Err(e) => {
                call.close(Outcome::failed(&e, Some(upstream))).await;
                Err(e)
            }
        }
    }

    /// Prepares and completes one request on a tracked task of its own, so
    /// that neither a client leaving nor a request timeout cuts the call's
    /// accounting off. Returns the remaining budget with the result.
    pub async fn complete_detached(
        &self,
        origin: CallOrigin,
        req: ChatRequest,
    ) -> (Result<ChatCompletion, GatewayError>, Option<i64>) {
        self.detached(origin, req, |gateway, call, req| async move {
            gateway.complete(call, &req).await
        })
        .await
    }

    /// [`Gateway::complete_detached`] for a call in a client's own API:
    /// passed through to models that speak it, translated for the others.
    pub async fn reply_detached(
        &self,
        origin: CallOrigin,
        p: Passthrough,
    ) -> (Result<Reply, GatewayError>, Option<i64>) {
        let Passthrough {
            dialect,
            forward,
            chat,
        } = p;
        self.detached(origin, chat, move |gateway, call, chat| async move {
            let p = &Passthrough {
                dialect,
                forward,
                chat,
            };
            gateway
                .complete_with(call, |r| async move { r.backend.reply(p).await })
                .await
        })
        .await
    }

    /// Prepares `req` and runs `finish` on the prepared call, on a tracked
    /// task of its own.
    async fn detached<T, F, Fut>(
        &self,
        origin: CallOrigin,
        mut req: ChatRequest,
        finish: F,
    ) -> (Result<T, GatewayError>, Option<i64>)
    where
        T: Send + 'static,
        F: FnOnce(Gateway, Call, ChatRequest) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, GatewayError>> + Send,
    {
        req.stream = Some(false);
        let gateway = self.clone();
        let work = self.spawn(async move {
            let call = match gateway.prepare(origin, &req).await {
                Ok(call) => call,
                Err(e) => return (Err(e), None),
            };
            let remaining = call.remaining_nano_usd();
            (finish(gateway, call, req).await, remaining)
        });
        match work.await {
            Ok(done) => done,
            Err(e) => (Err(GatewayError::Internal(e.to_string())), None),
        }
    }

    /// Opens the stream of a prepared call on the first model of its chain
    /// that answers. A failure before the first chunk is accounted here.
    pub async fn stream(&self, call: Call, req: &ChatRequest) -> Result<ChatStream, GatewayError> {
        self.stream_with(call, |r| async move { r.backend.stream(req).await })
            .await
    }

    /// [`Gateway::stream`] for a call in a client's own API: passed through
    /// to models that speak it, translated for the others.
    pub async fn stream_pieces(
        &self,
        call: Call,
        p: &Passthrough,
    ) -> Result<ChatStream<Piece>, GatewayError> {
        self.stream_with(call, |r| async move { r.backend.pieces(p).await })
            .await
    }

    async fn stream_with<C, F, Fut>(&self, call: Call, op: F) -> Result<ChatStream<C>, GatewayError>
    where
        C: Metered,
        F: FnMut(Arc<ModelRoute>) -> Fut,
        Fut: Future<
            Output = Result<switchyard_models::BackendStream<C>, switchyard_models::BackendError>,
        >,
    {
        let mut call = call;
        let started = Instant::now();
        let chain = self.catalog().chain(&call.route);
        let attempt =
            chain::run(&chain, &self.0.ledger.metrics, op).instrument(call.span().clone());
        let served = tokio::select! {
            r = attempt => r,
            () = self.0.shutdown.cancelled() => Err(GatewayError::ShuttingDown),
        };
        match served {
            Ok(served) => {
                call.route = served.route;
                Ok(ChatStream::new(
                    call,
                    served.value,
                    served.permit,
                    self.0.shutdown.clone(),
                    started,
                ))
            }
            Err(e) => {
                call.close(Outcome::failed(&e, Some(started.elapsed())))
                    .await;
                Err(e)
            }
        }
    }

    /// Runs `work` on a task that shutdown waits for, inside the current
    /// span (its log lines keep the request's ids, its spans the trace).
    ///
    /// The future goes on the heap first: a call's future is several
    /// kilobytes (the model chain, the HTTP client's request), and a task
    /// holding it inline copies all of it at every step of its life (into
    /// the task, into each state change, out with its result); boxed, those
    /// copies are a pointer's.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.work.spawn(Box::pin(work).in_current_span())
    }

    /// Waits up to `grace` for the gateway's tracked work to finish; then
    /// cuts what is left (each cut call is accounted) and waits for that
    /// too, at most `cutoff`. True when everything finished in `grace`.
    pub async fn drain(&self, grace: Duration, cutoff: Duration) -> bool {
        self.0.work.close();
        if tokio::time::timeout(grace, self.0.work.wait())
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!(
            calls = self.0.work.len(),
            "model calls still running at the end of the grace period; cutting them off"
        );
        self.0.shutdown.cancel();
        if tokio::time::timeout(cutoff, self.0.work.wait())
            .await
            .is_err()
        {
            tracing::error!(
                calls = self.0.work.len(),
                "model calls did not stop after being cut off"
            );
        }
        false
    }

    /// Applies the routing policy to `text` for `caller`.
    pub async fn route_auto(&self, caller: &Caller, text: &str) -> Result<AutoRoute, GatewayError> {
        routing::route(
            &self.routing(),
            &self.catalog(),
            &self.0.budgets,
            caller,
            text,
        )
        .await
    }

    /// Starts loading every embedded local model in the background.
    pub fn preload_local(&self) {
        self.catalog().preload_local();
    }
}
