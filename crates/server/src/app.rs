//! Running the service: connecting, binding, serving the router (over
//! HTTPS when `TLS_CERT_FILE` is set), background tasks, and graceful
//! shutdown.

use crate::state::AppState;
use crate::tls::{ReloadableCertificate, TlsListener, Validity};
use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use switchyard_core::Config;
use switchyard_limits::Redis;
use switchyard_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long shutdown waits for queued usage records to be written.
const USAGE_FLUSH_LIMIT: Duration = Duration::from_secs(30);
/// How long calls cut off at the end of the grace period get to record
/// themselves.
const CUTOFF_LIMIT: Duration = Duration::from_secs(5);
/// How often the database and Redis are probed for the `*_up` gauges.
const MONITOR_INTERVAL: Duration = Duration::from_secs(5);

/// A built service, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// The HTTPS certificate; `None`: plain HTTP.
    tls: Option<ReloadableCertificate>,
}

impl Application {
    /// Connects to the database (and Redis, lazily), applies migrations when
    /// `DATABASE_MIGRATE_ON_START` is on, binds `HOST:PORT` (port 0 picks a
    /// free port; see [`Application::port`]) and, when `TLS_CERT_FILE` is
    /// set, reads the certificate (failing when it cannot be used).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        #[cfg(feature = "sentry")]
        crate::sentry::init(&config)?;
        crate::tls::install_crypto_provider();
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
        let tls = match &state.config.tls {
            None => None,
            Some(tls) => {
                let cert = ReloadableCertificate::load(tls, state.metrics.tls_certificate.clone())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", e.variable()))?;
                report_certificate(&cert);
                Some(cert)
            }
        };
        Ok(Self {
            listener,
            state,
            tls,
        })
    }

    /// The HTTPS certificate, to reload on SIGHUP; `None` when serving
    /// plain HTTP.
    pub fn tls(&self) -> Option<ReloadableCertificate> {
        self.tls.clone()
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
        let Application {
            listener,
            state,
            tls,
        } = self;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = spawn_background(&state, stop_rx.clone());
        background.push(crate::jobs::spawn(&state, stop_rx.clone())?);
        background.extend(crate::tasks::spawn_workers(&state, stop_rx));
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let service = crate::routes::router(state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let shutdown_signal = async move {
            let _ = close_rx.await;
        };
        let mut server: JoinHandle<std::io::Result<()>> = match &tls {
            None => {
                // Small writes (server-sent events, one per token) go out at
                // once: with Nagle's algorithm on, the second one waits for
                // the client's delayed ACK, which costs a stream about 40 ms.
                let listener = listener.tap_io(|tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
                    }
                });
                let serve = axum::serve(listener, service).with_graceful_shutdown(shutdown_signal);
                tokio::spawn(async move { serve.await })
            }
            Some(certificate) => {
                // The TLS listener sets TCP_NODELAY itself; the (empty) tap
                // gives axum the client address for `ConnectInfo`.
                let listener = TlsListener::new(listener, addr, certificate).tap_io(|_| {});
                let serve = axum::serve(listener, service).with_graceful_shutdown(shutdown_signal);
                tokio::spawn(async move { serve.await })
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, scheme, "listening");
        announce(scheme, addr);

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
        let deadline = tokio::time::Instant::now() + config.shutdown_grace;
        match tokio::time::timeout_at(deadline, &mut server).await {
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
        // off is taken over by another replica once its lease expires (its
        // model call in flight is still accounted).
        for mut task in background {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!("a worker was still running a task at shutdown; its lease will expire and another replica will retry it");
                task.abort();
                let _ = task.await;
            }
        }
        // Model calls still running (streams, calls whose client left) get
        // what is left of the grace period, then are cut off; each records
        // its usage row either way.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        state.gateway.drain(left, CUTOFF_LIMIT).await;
        if !state.flush_usage(USAGE_FLUSH_LIMIT).await {
            tracing::error!(
                unwritten = state.metrics.usage_queue_depth.get(),
                "usage records could not be written before shutdown (database unavailable)"
            );
        }
        // With every cost written, this replica's budget leases go back.
        match state.budgets.release_leases().await {
            Ok(n) => tracing::debug!(leases = n, "budget leases released"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release the budget leases; they expire by themselves")
            }
        }
        #[cfg(feature = "sentry")]
        crate::sentry::shutdown(crate::sentry::SHUTDOWN_FLUSH_LIMIT).await;
        state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Prints `listening on http://ADDR` (`https://` with TLS) on stdout once
/// the listener accepts connections. Unlike the `listening` log event, it
/// does not depend on `LOG_LEVEL` or `LOG_FORMAT`, so whoever started the
/// process with `PORT=0`
/// (a supervisor, a test) always learns the port that was picked.
#[allow(
    clippy::print_stdout,
    reason = "the bound address is part of what `serve` tells its caller"
)]
fn announce(scheme: &str, addr: SocketAddr) {
    println!("listening on {scheme}://{addr}");
}

/// Logs the certificate being served: an error when clients will refuse it
/// (expired, not yet valid), a warning when it expires within
/// [`crate::tls::EXPIRY_WARNING_DAYS`].
pub fn report_certificate(cert: &ReloadableCertificate) {
    let info = cert.info();
    let now = chrono::Utc::now();
    let certificate = info.describe(now);
    match info.validity(now) {
        Validity::Valid { .. } => tracing::info!(%certificate, "serving HTTPS"),
        Validity::ExpiringSoon { .. } => {
            tracing::warn!(%certificate, "the HTTPS certificate expires soon: renew it and send SIGHUP")
        }
        Validity::Expired | Validity::NotYetValid => {
            tracing::error!(%certificate, "the HTTPS certificate is outside its dates: clients will refuse it")
        }
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
                state.limits.limiter().purge_idle();
                let db_up = state.store.ping(crate::PROBE_TIMEOUT).await.is_ok();
                state.metrics.database_up.set(i64::from(db_up));
                if let Some(redis) = &state.redis {
                    let up = redis.ping(crate::PROBE_TIMEOUT).await.is_ok();
                    state.metrics.redis_up.set(i64::from(up));
                }
                // The deployment-wide gauges: the task queue, the budgets and
                // the keys due for rotation, one query each. While the database is down they keep their
                // last values.
                if db_up {
                    let limit = crate::PROBE_TIMEOUT;
                    match tokio::time::timeout(limit, state.store.task_queue()).await {
                        Ok(Ok((queued, oldest))) => {
                            state
                                .metrics
                                .set_task_queue(queued, oldest, switchyard_core::now());
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "could not read the task queue for its metrics")
                        }
                        Err(_) => {
                            tracing::warn!("reading the task queue for its metrics timed out")
                        }
                    }
                    match tokio::time::timeout(limit, state.budgets.list()).await {
                        Ok(Ok(budgets)) => state.metrics.set_budgets(&budgets),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "could not read the budgets for their metrics")
                        }
                        Err(_) => tracing::warn!("reading the budgets for their metrics timed out"),
                    }
                    let policy = state.config.keys.rotation;
                    let due = state.keys.due(&policy, switchyard_core::now());
                    match tokio::time::timeout(limit, due).await {
                        Ok(Ok(due)) => {
                            state.metrics.keys_rotation_due.set(due.len() as i64);
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "could not read the keys for their rotation metric")
                        }
                        Err(_) => {
                            tracing::warn!("reading the keys for their rotation metric timed out")
                        }
                    }
                    let last = async {
                        let backup = state.store.last_backup_run("backup", true).await?;
                        let verify = state.store.last_backup_run("verify", true).await?;
                        Ok::<_, switchyard_store::StoreError>((backup, verify))
                    };
                    match tokio::time::timeout(limit, last).await {
                        Ok(Ok((backup, verify))) => {
                            state.metrics.backups.set(backup.as_ref(), verify.as_ref());
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "could not read the backup runs for their metrics")
                        }
                        Err(_) => {
                            tracing::warn!("reading the backup runs for their metrics timed out")
                        }
                    }
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
                if let Err(e) = state.authority.flush_last_used().await {
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
