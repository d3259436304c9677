//! Building and running the service: the router with its middleware stack,
//! background tasks, and graceful shutdown.

use crate::middleware;
use crate::routes::{
    admin_budgets, admin_keys, batch, chat, debug, docs, messages, models, probes, route, tasks,
    usage,
};
use crate::state::AppState;
use crate::{auth, error::ApiError};
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use switchyard_core::Config;
use switchyard_limits::Redis;
use switchyard_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

/// Bodies smaller than this are sent uncompressed.
pub const COMPRESS_MIN_BYTES: u16 = 1000;
/// How long shutdown waits for queued usage records to be written.
const USAGE_FLUSH_LIMIT: Duration = Duration::from_secs(30);
/// How often the database and Redis are probed for the `*_up` gauges.
const MONITOR_INTERVAL: Duration = Duration::from_secs(5);

async fn not_found() -> Response {
    ApiError::not_found("no such route")
        .with_code("route_not_found")
        .into_response()
}

/// The complete router: routes, then (inner to outer) rate limits,
/// authentication, body limit, timeout, compression, panic recovery and
/// request context.
pub fn router(state: AppState) -> Router {
    let mut routes = Router::new()
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/db-check", get(probes::db_check))
        .route("/redis-check", get(probes::redis_check))
        .route("/metrics", get(probes::metrics))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/docs", get(docs::index))
        .route("/docs/", get(docs::index))
        .route("/docs/swagger-ui-bundle.js", get(docs::swagger_js))
        .route("/docs/swagger-ui.css", get(docs::swagger_css))
        .route("/v1/models", get(models::list_models))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/route", post(route::explain))
        .route("/v1/batch", post(batch::batch))
        .route("/v1/task", post(tasks::create))
        .route(
            "/v1/admin/keys/{id}/task-profile",
            axum::routing::put(admin_keys::set_task_profile),
        )
        .route("/v1/tasks", get(tasks::list))
        .route("/v1/capabilities", get(tasks::capabilities))
        .route("/v1/stream", get(crate::routes::stream::stream))
        .route("/v1/tasks/{id}", get(tasks::get))
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/v1/tasks/{id}/events", get(tasks::events))
        .route("/v1/tasks/{id}/artifacts/{*path}", get(tasks::artifact))
        .route(
            "/v1/admin/budgets",
            get(admin_budgets::list_budgets).put(admin_budgets::set_budget),
        )
        .route(
            "/v1/admin/budgets/{id}",
            axum::routing::delete(admin_budgets::delete_budget),
        )
        .route(
            "/v1/admin/keys",
            get(admin_keys::list_keys).post(admin_keys::create_key),
        )
        .route(
            "/v1/admin/keys/{id}",
            get(admin_keys::get_key)
                .patch(admin_keys::update_key)
                .delete(admin_keys::revoke_key),
        );
    if state.config.debug {
        routes = routes.route("/debug/sleep", get(debug::sleep));
    }
    let compress_when = SizeAbove::new(COMPRESS_MIN_BYTES)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE);
    routes
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::ratelimit::limit_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::body_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ))
        .layer(CompressionLayer::new().compress_when(compress_when))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_context,
        ))
        .with_state(state)
}

/// A built service, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects to the database (and Redis, lazily), applies migrations when
    /// `DATABASE_MIGRATE_ON_START` is on, and binds `HOST:PORT` (port 0 picks
    /// a free port; see [`Application::port`]).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect_lazy(&config.database)?;
        if config.database.migrate_on_start {
            let applied = store.migrate().await.map_err(|e| {
                anyhow::anyhow!("applying database migrations failed (DATABASE_URL): {e}")
            })?;
            if applied > 0 {
                tracing::info!(applied, "database migrations applied");
            }
        }
        let redis = match &config.redis {
            None => None,
            Some(r) => Some(std::sync::Arc::new(
                Redis::new(r).map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?,
            )),
        };
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (HOST, PORT): {e}"))?;
        let state = AppState::new(config, store, redis)?;
        Ok(Self { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then drains: probes answer 503, the
    /// listener closes after `SHUTDOWN_DELAY_SECONDS`, in-flight requests get
    /// `SHUTDOWN_GRACE_SECONDS` to finish, and buffered state is flushed.
    pub async fn run_until<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Application { listener, state } = self;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = spawn_background(&state, stop_rx.clone());
        background.push(crate::jobs::spawn(&state, stop_rx.clone())?);
        background.extend(crate::worker::spawn_workers(&state, stop_rx));
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let service = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        // Small writes (server-sent events, one per token) go out at once:
        // with Nagle's algorithm on, the second one waits for the client's
        // delayed ACK, which costs a stream about 40 ms.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
            }
        });
        let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
            let _ = close_rx.await;
        });
        let mut server = tokio::spawn(async move { serve.await });
        tracing::info!(%addr, "listening");

        let outcome = tokio::select! {
            joined = &mut server => Some(joined),
            () = shutdown => None,
        };
        if let Some(joined) = outcome {
            let _ = stop_tx.send(true);
            joined??;
            anyhow::bail!("the HTTP server stopped unexpectedly");
        }

        let config = &state.config;
        tracing::info!(
            delay_s = config.shutdown_delay.as_secs(),
            grace_s = config.shutdown_grace.as_secs(),
            "shutdown requested: draining"
        );
        state.begin_draining();
        if !config.shutdown_delay.is_zero() {
            tokio::time::sleep(config.shutdown_delay).await;
        }
        let _ = close_tx.send(());
        match tokio::time::timeout(config.shutdown_grace, &mut server).await {
            Ok(Ok(Ok(()))) => tracing::info!("in-flight requests finished"),
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server error while draining"),
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
            Err(_) => {
                tracing::warn!("shutdown grace period elapsed; cutting remaining requests");
                server.abort();
            }
        }
        let _ = stop_tx.send(true);
        // Workers finish the task in hand within the grace period; a task cut
        // off is taken over by another replica once its lease expires.
        let deadline = tokio::time::Instant::now() + config.shutdown_grace;
        for task in background {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("a worker was still running a task at shutdown; its lease will expire and another replica will retry it");
            }
        }
        if !state.flush_usage(USAGE_FLUSH_LIMIT).await {
            tracing::error!(
                unwritten = state.metrics.usage_queue_depth.get(),
                "usage records could not be written before shutdown (database unavailable)"
            );
        }
        state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Background work: dependency probes for the gauges, forgetting idle
/// in-process limiter state, and the periodic write-back of key last-use
/// times (flushed once more on stop).
fn spawn_background(state: &AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let monitor = {
        let state = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MONITOR_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                state.limiter.purge_idle();
                let db_up = state.store.ping(probes::PROBE_TIMEOUT).await.is_ok();
                state.metrics.database_up.set(i64::from(db_up));
                if let Some(redis) = &state.redis {
                    let up = redis.ping(probes::PROBE_TIMEOUT).await.is_ok();
                    state.metrics.redis_up.set(i64::from(up));
                }
            }
        })
    };
    let last_used = {
        let state = state.clone();
        let mut stop = stop;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(state.config.last_used_flush);
            tick.tick().await;
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stop.changed() => true,
                };
                if let Err(e) = state.keys.flush_last_used(&state.store).await {
                    tracing::warn!(error = %e, "could not write key last-use times; will retry");
                }
                if stopping {
                    return;
                }
            }
        })
    };
    vec![monitor, last_used]
}
