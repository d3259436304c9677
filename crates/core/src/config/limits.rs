//! The limits section: where rate-limit state lives and what happens when
//! Redis fails, the per-IP limits, which proxies are trusted ([`IpNet`]),
//! per-route limits, and whether Redis is a shared cache tier.

use super::file::FileConfig;
use super::reader::Reader;
use super::setting::{declare_settings, Section};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

declare_settings! { Section::Limits;
    RATE_LIMIT_BACKEND: computed("redis with REDIS_URL, else local"),
        "Where rate-limit state lives: local (per replica) or redis (one limit across replicas).";
    RATE_LIMIT_REDIS_FAILURE: value("fallback"),
        "While Redis is unreachable: fallback to each replica's own limiter, or refuse limited requests with 503.";
    CACHE_BACKEND: computed("redis with REDIS_URL, else local"),
        "local, or redis to add Redis as a shared tier under the in-process caches.";
    UNAUTHENTICATED_RATE_LIMIT: value("60"),
        "Requests per minute per client IP on public routes (probes and /metrics exempt).";
    AUTH_FAILURE_RATE_LIMIT: value("10"),
        "Failed authentications per minute per client IP before it is refused (429).";
    TRUSTED_PROXIES: optional,
        "Comma-separated addresses/CIDRs whose X-Forwarded-For is believed.";
    BUDGET_LEASE_SECONDS: value("30"),
        "How long a replica's lease of budget headroom lasts unless renewed (2–3600); a crashed replica's headroom comes back after it.";
    BUDGET_LEASE_MAX_USD: value("1"),
        "The most idle headroom (USD) a replica leases per budget beyond what its calls need; 0 reserves every call in the database.";
}

/// How replicas lease budget headroom (`BUDGET_LEASE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLeaseConfig {
    /// `BUDGET_LEASE_SECONDS`: a lease not renewed within this expires.
    pub ttl: std::time::Duration,
    /// `BUDGET_LEASE_MAX_USD` in nano-USD: the cap on idle headroom held
    /// beyond the calls in flight; 0 leases exactly what each call needs.
    pub max_idle_nano_usd: i64,
}

impl Default for BudgetLeaseConfig {
    fn default() -> Self {
        Self {
            ttl: std::time::Duration::from_secs(30),
            max_idle_nano_usd: crate::budget::NANO_PER_USD,
        }
    }
}

/// Defines a configuration choice: its variants, each with the one text it
/// parses from and prints as (exactly, case included), the variant
/// `Default` gives, and the message naming the accepted values.
macro_rules! choice {
    ($(#[$doc:meta])* $name:ident { $( $(#[$vdoc:meta])* $variant:ident = $text:literal ),+ $(,)? } expect $expect:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub enum $name { $( $(#[$vdoc])* $variant ),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($expect.into()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice! {
    /// Where rate-limit state lives (`RATE_LIMIT_BACKEND`).
    LimitBackend {
        /// In this process; each replica counts alone.
        #[default]
        Local = "local",
        /// In Redis; every replica shares one count.
        Redis = "redis",
    } expect "expected local or redis"
}

choice! {
    /// What the Redis limiter does while Redis is unreachable
    /// (`RATE_LIMIT_REDIS_FAILURE`).
    RedisFailurePolicy {
        /// Decide with each replica's in-process limiter (limits become per replica).
        #[default]
        Fallback = "fallback",
        /// Refuse limited requests (503) until Redis answers again.
        Refuse = "refuse",
    } expect "expected fallback or refuse"
}

choice! {
    /// Where cached lookups live (`CACHE_BACKEND`).
    CacheBackend {
        /// In this process only.
        #[default]
        Local = "local",
        /// In this process, with Redis as a shared tier below.
        Redis = "redis",
    } expect "expected local or redis"
}

/// An IP network (`10.0.0.0/8`, `::1/128`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or network"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0 to {width}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Rate limiting and caching settings.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// `RATE_LIMIT_BACKEND`; defaults to `redis` when `REDIS_URL` is set.
    pub backend: LimitBackend,
    /// `RATE_LIMIT_REDIS_FAILURE`.
    pub redis_failure: RedisFailurePolicy,
    /// Requests per minute per client IP for requests without a valid key
    /// (`UNAUTHENTICATED_RATE_LIMIT`); probes and `/metrics` are exempt.
    pub unauthenticated_per_minute: u32,
    /// Failed authentications per minute per client IP before that IP is
    /// refused (`AUTH_FAILURE_RATE_LIMIT`).
    pub auth_failures_per_minute: u32,
    /// Peers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// Per-route limits (`METHOD /template` → per minute): built-in defaults
    /// overlaid with `[limits.routes]` from the TOML file.
    pub routes: BTreeMap<String, u32>,
    /// Use Redis as a shared cache tier (`CACHE_BACKEND`); defaults to
    /// `redis` when `REDIS_URL` is set.
    pub shared_cache: bool,
    /// Budget headroom leases.
    pub budget_lease: BudgetLeaseConfig,
}

/// Built-in per-route limits, per key per minute.
pub const DEFAULT_ROUTE_LIMITS: &[(&str, u32)] = &[("POST /v1/task", 10)];

pub(super) fn load(r: &mut Reader<'_>, has_redis: bool, file: &FileConfig) -> LimitsConfig {
    let (default_backend, default_cache) = if has_redis {
        (LimitBackend::Redis, CacheBackend::Redis)
    } else {
        (LimitBackend::Local, CacheBackend::Local)
    };
    let backend = r.parse_or(&RATE_LIMIT_BACKEND, default_backend);
    if backend == LimitBackend::Redis && !has_redis {
        r.problem(RATE_LIMIT_BACKEND.name, "is redis but REDIS_URL is not set");
    }
    let redis_failure = r.parse(&RATE_LIMIT_REDIS_FAILURE);
    let cache = r.parse_or(&CACHE_BACKEND, default_cache);
    if cache == CacheBackend::Redis && !has_redis {
        r.problem(CACHE_BACKEND.name, "is redis but REDIS_URL is not set");
    }
    let mut trusted_proxies = Vec::new();
    if let Some(list) = r.optional_text(&TRUSTED_PROXIES) {
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.parse::<IpNet>() {
                Ok(net) => trusted_proxies.push(net),
                Err(e) => r.problem(TRUSTED_PROXIES.name, e),
            }
        }
        let shown: Vec<String> = trusted_proxies.iter().map(ToString::to_string).collect();
        r.show(&TRUSTED_PROXIES, shown.join(","));
    }
    let mut routes: BTreeMap<String, u32> = DEFAULT_ROUTE_LIMITS
        .iter()
        .map(|(route, n)| ((*route).to_owned(), *n))
        .collect();
    for (route, limit) in &file.limits.routes {
        routes.insert(route.clone(), limit.per_minute);
    }
    let shown: Vec<String> = routes.iter().map(|(r, n)| format!("{r}={n}/min")).collect();
    r.note(Section::Limits, "route limits", shown.join(", "));
    let budget_lease = BudgetLeaseConfig {
        ttl: r.seconds(&BUDGET_LEASE_SECONDS, 2, 3600),
        max_idle_nano_usd: r
            .parse_with(&BUDGET_LEASE_MAX_USD, |raw| {
                raw.parse::<f64>()
                    .ok()
                    .filter(|v| crate::budget::nano_from_usd(*v).is_some())
                    .ok_or_else(|| {
                        format!("`{raw}` is not valid: expected an amount of USD from 0 to 1e9")
                    })
            })
            .and_then(crate::budget::nano_from_usd)
            .unwrap_or(BudgetLeaseConfig::default().max_idle_nano_usd),
    };
    LimitsConfig {
        backend,
        redis_failure,
        unauthenticated_per_minute: r.integer(&UNAUTHENTICATED_RATE_LIMIT, 1, 1_000_000) as u32,
        auth_failures_per_minute: r.integer(&AUTH_FAILURE_RATE_LIMIT, 1, 1_000_000) as u32,
        trusted_proxies,
        routes,
        shared_cache: cache == CacheBackend::Redis,
        budget_lease,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, variables};
    use super::*;

    #[test]
    fn limits_follow_redis_and_are_validated() {
        let c = load(&[]).config;
        assert_eq!(c.limits.backend, LimitBackend::Local);
        assert!(!c.limits.shared_cache);
        assert_eq!(c.limits.routes["POST /v1/task"], 10);
        let c = load(&[("REDIS_URL", "redis://127.0.0.1:6379")]).config;
        assert_eq!(c.limits.backend, LimitBackend::Redis);
        assert!(c.limits.shared_cache);
        let l = load(&[
            ("RATE_LIMIT_BACKEND", "redis"),
            ("RATE_LIMIT_REDIS_FAILURE", "panic"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, nonsense, ::1/129"),
        ]);
        assert_eq!(
            variables(&l),
            [
                "RATE_LIMIT_BACKEND",
                "RATE_LIMIT_REDIS_FAILURE",
                "TRUSTED_PROXIES",
                "TRUSTED_PROXIES"
            ]
        );
        assert!(
            l.problems[1].message == "`panic` is not valid: expected fallback or refuse",
            "{:?}",
            l.problems
        );
    }

    #[test]
    fn choices_print_as_they_parse() {
        for b in [LimitBackend::Local, LimitBackend::Redis] {
            assert_eq!(b.as_str().parse::<LimitBackend>(), Ok(b));
            assert_eq!(b.to_string(), b.as_str());
        }
        for p in [RedisFailurePolicy::Fallback, RedisFailurePolicy::Refuse] {
            assert_eq!(p.as_str().parse::<RedisFailurePolicy>(), Ok(p));
        }
        for c in [CacheBackend::Local, CacheBackend::Redis] {
            assert_eq!(c.as_str().parse::<CacheBackend>(), Ok(c));
        }
        assert_eq!(
            RedisFailurePolicy::default().as_str(),
            RATE_LIMIT_REDIS_FAILURE.default.shown()
        );
        assert_eq!(
            "Redis".parse::<LimitBackend>(),
            Err("expected local or redis".to_owned())
        );
    }

    #[test]
    fn ip_networks_match_addresses() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("1.2.3.4/33".parse::<IpNet>().is_err());
    }
}
