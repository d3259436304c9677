//! Logging: JSON (or pretty) lines on stderr at `LOG_LEVEL`, each carrying
//! the request's span fields (request id, route, key id) when inside one.

use switchyard_core::config::{Config, LogFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. Fails if `LOG_LEVEL` is not a valid filter.
pub fn init(config: &Config) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(&config.log_level).map_err(|e| anyhow::anyhow!("LOG_LEVEL: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    .with_span_list(false)
                    .flatten_event(true),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}
