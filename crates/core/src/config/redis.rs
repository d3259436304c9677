//! The Redis section: the optional shared Redis (`REDIS_URL`,
//! `REDIS_PASSWORD`) used by the rate limiter and the cache tier.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::secret::{redact_url, Secret};

declare_settings! { Section::Redis;
    REDIS_URL: secret,
        "redis://host:port/db; Redis is optional and never blocks or crashes the service. Shown with its password redacted.";
    REDIS_PASSWORD: secret,
        "Used when the URL carries none.";
}

/// Redis connection settings; absent when `REDIS_URL` is unset.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    pub password: Option<Secret>,
}

fn is_redis_url(url: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

pub(super) fn load(r: &mut Reader<'_>) -> Option<RedisConfig> {
    let password = r.secret(&REDIS_PASSWORD);
    match r.secret_url(&REDIS_URL) {
        Some(url) => {
            if !is_redis_url(url.expose()) {
                r.problem(
                    REDIS_URL.name,
                    format!(
                        "`{}` is not a Redis URL (redis://host:port/db)",
                        redact_url(url.expose())
                    ),
                );
            }
            Some(RedisConfig { url, password })
        }
        None => {
            if password.is_some() {
                r.problem(REDIS_PASSWORD.name, "is set but REDIS_URL is not");
            }
            None
        }
    }
}
