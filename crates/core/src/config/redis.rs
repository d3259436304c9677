//! The Redis section: the optional shared Redis (`REDIS_URL`,
//! `REDIS_PASSWORD`) used by the rate limiter and the cache tier, over TLS
//! with `rediss://` (`REDIS_TLS_CA_FILE` for a private certificate authority).

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::secret::{redact_url, Secret};

declare_settings! { Section::Redis;
    REDIS_URL: secret,
        "redis://host:port/db, or rediss://… for TLS; Redis is optional and never blocks or crashes the service. Shown with its password redacted.";
    REDIS_PASSWORD: secret,
        "Used when the URL carries none.";
    REDIS_TLS_CA_FILE: optional,
        "PEM file of the certificate authority that signed the Redis server's certificate (rediss:// only); unset: the public web PKI roots.";
}

/// Redis connection settings; absent when `REDIS_URL` is unset.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    pub password: Option<Secret>,
    /// The CA that signed a `rediss://` server's certificate
    /// (`REDIS_TLS_CA_FILE`); `None`: the webpki roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

/// True when the URL asks for TLS (`rediss://`).
pub fn is_tls_url(url: &str) -> bool {
    url.starts_with("rediss://")
}

fn is_redis_url(url: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

pub(super) fn load(r: &mut Reader<'_>) -> Option<RedisConfig> {
    let password = r.secret(&REDIS_PASSWORD);
    let tls_ca_file = r.optional_path(&REDIS_TLS_CA_FILE);
    if let Some(path) = &tls_ca_file {
        if !path.is_file() {
            r.problem(
                REDIS_TLS_CA_FILE.name,
                format!("`{}` is not a readable file", path.display()),
            );
        }
    }
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
            if tls_ca_file.is_some() && !is_tls_url(url.expose()) {
                r.problem(
                    REDIS_TLS_CA_FILE.name,
                    "applies only to a rediss:// REDIS_URL (TLS)",
                );
            }
            Some(RedisConfig {
                url,
                password,
                tls_ca_file,
            })
        }
        None => {
            if password.is_some() {
                r.problem(REDIS_PASSWORD.name, "is set but REDIS_URL is not");
            }
            if tls_ca_file.is_some() {
                r.problem(REDIS_TLS_CA_FILE.name, "is set but REDIS_URL is not");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    #[test]
    fn a_tls_ca_file_needs_a_rediss_url_and_a_file() {
        let l = load(&[
            ("REDIS_URL", "rediss://cache:6380/0"),
            ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
        ]);
        let problems: Vec<String> = l.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            ["REDIS_TLS_CA_FILE: `/nonexistent/ca.pem` is not a readable file"]
        );
        let l = load(&[("REDIS_URL", "rediss://cache:6380/0")]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let ca = std::env::current_exe().unwrap();
        let l = load(&[
            ("REDIS_URL", "redis://cache:6379/0"),
            ("REDIS_TLS_CA_FILE", ca.to_str().unwrap()),
        ]);
        let problems: Vec<String> = l.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            ["REDIS_TLS_CA_FILE: applies only to a rediss:// REDIS_URL (TLS)"]
        );
    }
}
