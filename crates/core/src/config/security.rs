//! The security section: token signing (`JWT_SECRET`), the bootstrap admin
//! key, and how API key lookups are cached and written back. TLS and key
//! rotation settings belong here too.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::secret::Secret;
use std::time::Duration;

declare_settings! { Section::Security;
    JWT_SECRET: secret,
        "Signing secret; required (at least 32 bytes) in production.";
    ADMIN_API_KEY: secret,
        "The first admin key to install on an empty database instead of generating one (sy_ + 64 hex digits: echo sy_$(openssl rand -hex 32)).";
    KEY_CACHE_TTL_SECONDS: value("10"),
        "Key lookups are cached this long: the bound on how long a revocation takes to reach other replicas.";
    KEY_LAST_USED_FLUSH_SECONDS: value("30"),
        "How often last_used_at is written back (batched, never per request).";
}

/// The shortest `JWT_SECRET` production accepts.
pub(super) const MIN_JWT_SECRET_BYTES: usize = 32;

/// The security section's values.
pub(super) struct Security {
    pub jwt_secret: Option<Secret>,
    pub admin_api_key: Option<Secret>,
    pub key_cache_ttl: Duration,
    pub last_used_flush: Duration,
}

pub(super) fn load(r: &mut Reader<'_>) -> Security {
    let jwt_secret = r.secret(&JWT_SECRET);
    let admin_api_key = r.secret(&ADMIN_API_KEY);
    if let Some(k) = &admin_api_key {
        if crate::keys::PresentedKey::parse(k.expose()).is_err() {
            r.problem(
                ADMIN_API_KEY.name,
                "must be `sy_` followed by 64 lowercase hex digits (e.g. sy_$(openssl rand -hex 32))",
            );
        }
    }
    let key_cache_ttl = r.seconds(&KEY_CACHE_TTL_SECONDS, 1, 3600);
    let last_used_flush = r.seconds(&KEY_LAST_USED_FLUSH_SECONDS, 1, 3600);
    Security {
        jwt_secret,
        admin_api_key,
        key_cache_ttl,
        last_used_flush,
    }
}
