//! The optional Redis connection: created on first use, reconnected automatically
//! by redis-rs's connection manager, every call bounded by a timeout so that a
//! Redis outage never blocks or crashes the service. `rediss://` connects
//! over TLS (rustls), trusting `REDIS_TLS_CA_FILE` when set, else the
//! webpki roots.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionInfo, ErrorKind, RedisError};
use std::time::{Duration, Instant};
use switchyard_core::config::RedisConfig;
use tokio::sync::Mutex;
use tracing::Instrument;

/// The trace span of one Redis command (target `otel`: traces only, never
/// the log), with the OpenTelemetry database attributes.
pub fn span(command: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: switchyard_core::TRACE_TARGET,
        "redis",
        otel.name = tracing::field::Empty,
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = command,
    );
    if !span.is_disabled() {
        span.record("otel.name", command);
    }
    span
}

pub struct Redis {
    client: Client,
    manager: Mutex<Option<ConnectionManager>>,
}

/// Why a Redis call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RedisUnavailable {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis error: {0}")]
    Redis(#[from] RedisError),
    #[error("unexpected Redis reply: {0}")]
    Protocol(String),
}

impl Redis {
    /// Parses the URL, applies `REDIS_PASSWORD` unless the URL has one, and
    /// reads `REDIS_TLS_CA_FILE`. Does not connect.
    pub fn new(cfg: &RedisConfig) -> Result<Self, RedisError> {
        let mut info: ConnectionInfo = cfg.url.expose().parse()?;
        if let Some(password) = &cfg.password {
            if info.redis.password.is_none() {
                info.redis.password = Some(password.expose().to_owned());
            }
        }
        if switchyard_core::config::is_tls_url(cfg.url.expose()) {
            // redis-rs builds its TLS client with the process's default
            // provider; install ring's (the one rustls is built with here)
            // unless another part of the process already has.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = match &cfg.tls_ca_file {
            None => Client::open(info)?,
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|e| {
                    RedisError::from((
                        ErrorKind::InvalidClientConfig,
                        "cannot read REDIS_TLS_CA_FILE",
                        format!("{}: {e}", path.display()),
                    ))
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                Client::build_with_tls(info, certificates)?
            }
        };
        Ok(Self {
            client,
            manager: Mutex::new(None),
        })
    }

    /// A multiplexed, self-reconnecting connection (cheap to clone).
    pub async fn connection(
        &self,
        timeout: Duration,
    ) -> Result<ConnectionManager, RedisUnavailable> {
        let mut slot = self.manager.lock().await;
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(1)
            .set_max_delay(2_000);
        let manager = tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| RedisUnavailable::Timeout(timeout))??;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    /// Runs one command, connecting first if needed; the whole call is
    /// bounded by `timeout`.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> Result<T, RedisUnavailable> {
        let name = match cmd.args_iter().next() {
            Some(redis::Arg::Simple(name)) => std::str::from_utf8(name).unwrap_or("?"),
            _ => "?",
        };
        let call = async {
            let mut conn = self.connection(timeout).await?;
            Ok(tokio::time::timeout(timeout, cmd.query_async(&mut conn))
                .await
                .map_err(|_| RedisUnavailable::Timeout(timeout))??)
        };
        call.instrument(span(name)).await
    }

    /// `PING`, bounded by `timeout`; returns the round-trip time.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, RedisUnavailable> {
        let started = Instant::now();
        let _pong: String = self.query(&redis::cmd("PING"), timeout).await?;
        Ok(started.elapsed())
    }
}
