//! The server section: where the service runs (`ENVIRONMENT`, `DEBUG`), how
//! it listens (`HOST`, `PORT`), request bounds (`API_*`, body size), graceful
//! shutdown, and the deployment slot it reports.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

declare_settings! { Section::Server;
    ENVIRONMENT: value("development"),
        "development, staging or production. Production refuses DEBUG=true, a missing or short (< 32 bytes) JWT_SECRET, and SQLite unless ALLOW_SQLITE_IN_PRODUCTION=true.";
    DEBUG: value("false"),
        "Mounts diagnostics (GET /debug/sleep?ms=, GET /debug/panic, admin scope). Refused in production.";
    HOST: value("127.0.0.1"),
        "Listen address (0.0.0.0 in containers).";
    PORT: value("8000"),
        "Listen port (0 picks a free one).";
    API_RATE_LIMIT: value("100"),
        "Requests per minute per key; a key may carry its own rate instead.";
    API_TIMEOUT: value("300"),
        "Seconds a request may take before a 504 JSON error.";
    MAX_REQUEST_BODY_BYTES: value("10485760"),
        "Larger request bodies get 413.";
    SHUTDOWN_GRACE_SECONDS: value("30"),
        "After SIGTERM, how long in-flight requests get to finish.";
    SHUTDOWN_DELAY_SECONDS: value("0"),
        "After SIGTERM, how long probes answer 503 before the listener closes (lets load balancers notice).";
    DEPLOYMENT_SLOT: optional,
        "e.g. blue or green; shown by /health and in switchyard_build_info.";
    DIAGNOSTICS_REQUIRE_ADMIN: value("false"),
        "/db-check and /redis-check need an admin key (for installs that expose the API publicly; /health and /ready stay open for probes).";
}

/// Where the service runs; production turns on the strict checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Development,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "staging" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("expected development, staging or production".into()),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server section's values.
pub(super) struct Server {
    pub environment: Environment,
    pub debug: bool,
    pub host: IpAddr,
    pub port: u16,
    pub api_rate_limit: u32,
    pub api_timeout: Duration,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub shutdown_delay: Duration,
    pub deployment_slot: Option<String>,
    pub diagnostics_require_admin: bool,
}

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn parse_host(raw: &str) -> Result<IpAddr, String> {
    if raw == "localhost" {
        return Ok(LOCALHOST);
    }
    raw.parse::<IpAddr>()
        .map_err(|_| format!("`{raw}` is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::)"))
}

fn valid_slot(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(super) fn load(r: &mut Reader<'_>) -> Server {
    let environment = r.parse(&ENVIRONMENT);
    let debug = r.flag(&DEBUG);
    let host = r.parse_with(&HOST, parse_host).unwrap_or(LOCALHOST);
    let port = r.integer(&PORT, 0, 65535) as u16;
    let api_rate_limit = r.integer(&API_RATE_LIMIT, 1, 1_000_000) as u32;
    let api_timeout = r.seconds(&API_TIMEOUT, 1, 86_400);
    let max_body_bytes = r.integer(&MAX_REQUEST_BODY_BYTES, 1024, 1 << 30) as usize;
    let shutdown_grace = r.seconds(&SHUTDOWN_GRACE_SECONDS, 0, 3600);
    let shutdown_delay = r.seconds(&SHUTDOWN_DELAY_SECONDS, 0, 600);
    let deployment_slot = r.optional_text(&DEPLOYMENT_SLOT);
    let diagnostics_require_admin = r.flag(&DIAGNOSTICS_REQUIRE_ADMIN);
    if let Some(slot) = &deployment_slot {
        if !valid_slot(slot) {
            r.problem(
                DEPLOYMENT_SLOT.name,
                format!("`{slot}` is not valid: use 1-32 of a-z, 0-9, - and _ (e.g. blue)"),
            );
        }
    }
    Server {
        environment,
        debug,
        host,
        port,
        api_rate_limit,
        api_timeout,
        max_body_bytes,
        shutdown_grace,
        shutdown_delay,
        deployment_slot,
        diagnostics_require_admin,
    }
}
