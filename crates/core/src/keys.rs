//! API keys: the secret format, hashing, scopes and the stored record.
//!
//! A key is `sy_` followed by 64 lowercase hex digits (256 random bits). Only
//! the SHA-256 hash of the whole string is stored; the first characters after
//! the prefix are kept as a display prefix so operators can tell keys apart.

use chrono::{DateTime, Utc};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The literal every Switchyard key starts with, so that secret scanners and
/// people recognise one.
pub const KEY_PREFIX: &str = "sy_";
const SECRET_HEX_LEN: usize = 64;
/// Characters after [`KEY_PREFIX`] kept in the clear to identify a key.
const DISPLAY_CHARS: usize = 8;

/// Why a presented key was not even looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("API key is malformed: expected `sy_` followed by 64 lowercase hex digits")]
pub struct MalformedKey;

/// A freshly generated key. The only moment the secret exists in the clear.
pub struct NewKeySecret {
    secret: crate::Secret,
}

impl NewKeySecret {
    /// 256 bits from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, rand::rand_core::OsError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
        Ok(Self {
            secret: crate::Secret::new(format!("{KEY_PREFIX}{}", hex::encode(bytes))),
        })
    }

    /// Accepts an operator-provided key (for example `ADMIN_API_KEY`).
    pub fn from_existing(secret: &str) -> Result<Self, MalformedKey> {
        PresentedKey::parse(secret)?;
        Ok(Self {
            secret: crate::Secret::new(secret),
        })
    }

    pub fn secret(&self) -> &crate::Secret {
        &self.secret
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.secret.expose())
    }

    pub fn display_prefix(&self) -> String {
        display_prefix(self.secret.expose())
    }
}

/// A key as presented by a client, checked for shape but not yet looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey<'a>(&'a str);

impl<'a> PresentedKey<'a> {
    pub fn parse(raw: &'a str) -> Result<Self, MalformedKey> {
        let hex_part = raw.strip_prefix(KEY_PREFIX).ok_or(MalformedKey)?;
        let well_formed = hex_part.len() == SECRET_HEX_LEN
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if well_formed {
            Ok(Self(raw))
        } else {
            Err(MalformedKey)
        }
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0)
    }

    /// `sy_1a2b3c4d…`: safe to log and to show in audit records.
    pub fn redacted(&self) -> String {
        format!("{}…", display_prefix(self.0))
    }
}

fn display_prefix(secret: &str) -> String {
    secret
        .chars()
        .take(KEY_PREFIX.len() + DISPLAY_CHARS)
        .collect()
}

/// SHA-256 of a key secret; what the database stores and indexes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// A hash as stored (64 hex digits).
    pub fn from_hex(stored: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(stored, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..12])
    }
}

/// What a key may do. `admin` includes everything `user` may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Admin,
    User,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::User => "user",
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "admin" => Ok(Scope::Admin),
            "user" => Ok(Scope::User),
            other => Err(format!("unknown scope `{other}` (expected admin or user)")),
        }
    }
}

/// A non-empty, sorted, de-duplicated set of scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "Vec<Scope>", into = "Vec<Scope>")]
#[schema(value_type = Vec<Scope>)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn new(mut scopes: Vec<Scope>) -> Result<Self, String> {
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err("at least one scope is required".into());
        }
        Ok(Self(scopes))
    }

    pub fn user() -> Self {
        Self(vec![Scope::User])
    }

    pub fn admin() -> Self {
        Self(vec![Scope::Admin])
    }

    /// Whether a key with these scopes may act with `needed`.
    pub fn allows(&self, needed: Scope) -> bool {
        self.0.contains(&Scope::Admin) || self.0.contains(&needed)
    }

    /// Storage form: `admin,user`.
    pub fn to_db(&self) -> String {
        self.0
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn from_db(s: &str) -> Result<Self, String> {
        let parsed = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Scope::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(parsed)
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

impl TryFrom<Vec<Scope>> for Scopes {
    type Error = String;
    fn try_from(v: Vec<Scope>) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<Scopes> for Vec<Scope> {
    fn from(s: Scopes) -> Self {
        s.0
    }
}

/// A per-key request rate that replaces the default (`API_RATE_LIMIT` per
/// minute): `requests` per `period_seconds`, burst equal to `requests`.
///
/// The fields are private: every value, however it arrives (JSON, the CLI,
/// the database), went through [`RateLimit::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "RateLimitFields")]
pub struct RateLimit {
    requests: u32,
    period_seconds: u32,
}

/// A rate limit as written, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFields {
    requests: u32,
    period_seconds: u32,
}

impl TryFrom<RateLimitFields> for RateLimit {
    type Error = String;
    fn try_from(f: RateLimitFields) -> Result<Self, String> {
        RateLimit::new(f.requests, f.period_seconds)
    }
}

impl RateLimit {
    pub const MAX_REQUESTS: u32 = 1_000_000;
    pub const MAX_PERIOD_SECONDS: u32 = 86_400;

    pub fn new(requests: u32, period_seconds: u32) -> Result<Self, String> {
        if !(1..=Self::MAX_REQUESTS).contains(&requests) {
            return Err(format!("requests must be from 1 to {}", Self::MAX_REQUESTS));
        }
        if !(1..=Self::MAX_PERIOD_SECONDS).contains(&period_seconds) {
            return Err(format!(
                "period_seconds must be from 1 to {}",
                Self::MAX_PERIOD_SECONDS
            ));
        }
        if u64::from(period_seconds) * 1_000_000 < u64::from(requests) {
            return Err("more than one request per microsecond cannot be limited".into());
        }
        Ok(Self {
            requests,
            period_seconds,
        })
    }

    pub fn requests(self) -> u32 {
        self.requests
    }

    pub fn period_seconds(self) -> u32 {
        self.period_seconds
    }
}

impl FromStr for RateLimit {
    type Err = String;
    /// `100/minute`, `5/s`, `1000/hour`, `20000/day`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected N/UNIT, e.g. 100/minute"))?;
        let requests: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` is not a whole number of requests"))?;
        let period_seconds = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            other => {
                return Err(format!(
                    "unknown unit `{other}` (second, minute, hour, day)"
                ))
            }
        };
        Self::new(requests, period_seconds)
    }
}

/// What a key's agent tasks may use; absent fields mean the service's
/// defaults (every tool, agent and skill; the API's own limits).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<crate::tools::ToolName>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_agents: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_skills: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_tasks: Option<u32>,
    /// Caps on each Bash command: the service's defaults, lowered to these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_resources: Option<crate::tasks::ResourceBounds>,
}

impl TaskProfile {
    /// Checks the numbers; names are checked where the tools are known.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_timeout_seconds == Some(0) {
            return Err("max_timeout_seconds must be at least 1".into());
        }
        if let Some(c) = self.max_cost_usd {
            if !c.is_finite() || c <= 0.0 {
                return Err("max_cost_usd must be above 0".into());
            }
        }
        if self.max_concurrent_tasks == Some(0) {
            return Err("max_concurrent_tasks must be at least 1".into());
        }
        self.max_resources.as_ref().map_or(Ok(()), |r| r.validate())
    }
}

/// A stored API key, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub owner: Option<String>,
    pub project: String,
    pub scopes: Scopes,
    /// The first characters of the secret, e.g. `sy_1a2b3c4d`.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Replaces the default per-key rate when set.
    pub rate_limit: Option<RateLimit>,
    /// Limits on the key's agent tasks.
    #[serde(default)]
    pub task_profile: Option<TaskProfile>,
    /// When the key was rotated; it then works until `expires_at`, the end
    /// of its grace period.
    #[serde(default)]
    pub rotated_at: Option<DateTime<Utc>>,
    /// The key that replaced this one.
    #[serde(default)]
    pub successor_id: Option<String>,
    /// The key this one replaced.
    #[serde(default)]
    pub predecessor_id: Option<String>,
}

/// Why a known key may not be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUnusable {
    Revoked,
    Expired,
}

impl ApiKey {
    /// When the grace period of a rotated key ends: its expiry, once it has
    /// a successor; `None` for a key that was not rotated.
    pub fn grace_ends_at(&self) -> Option<DateTime<Utc>> {
        self.successor_id.as_ref().and(self.expires_at)
    }

    pub fn check_usable(&self, now: DateTime<Utc>) -> Result<(), KeyUnusable> {
        if self.revoked_at.is_some_and(|at| at <= now) {
            return Err(KeyUnusable::Revoked);
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyUnusable::Expired);
        }
        Ok(())
    }
}

/// A random identifier with a readable kind prefix, e.g. `key_3f9a…` (96 bits).
pub fn new_id(kind: &str) -> String {
    let bytes: [u8; 12] = rand::random();
    let mut id = String::with_capacity(kind.len() + 25);
    id.push_str(kind);
    id.push('_');
    crate::hex::push(&mut id, &bytes);
    id
}

/// Validated input for creating a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeySpec {
    pub name: String,
    pub owner: Option<String>,
    pub project: String,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit: Option<RateLimit>,
}

/// A field-level validation error: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn label(field: &'static str, value: &str, max: usize) -> Result<String, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FieldError {
            field,
            message: "must not be empty".into(),
        });
    }
    if v.chars().count() > max {
        return Err(FieldError {
            field,
            message: format!("must be at most {max} characters"),
        });
    }
    if v.chars().any(char::is_control) {
        return Err(FieldError {
            field,
            message: "must not contain control characters".into(),
        });
    }
    Ok(v.to_owned())
}

impl NewKeySpec {
    pub fn new(
        name: &str,
        owner: Option<&str>,
        project: &str,
        scopes: Scopes,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldError> {
        let name = label("name", name, 200)?;
        let owner = owner.map(|o| label("owner", o, 200)).transpose()?;
        let project = label("project", project, 200)?;
        if let Some(at) = expires_at {
            if at <= now {
                return Err(FieldError {
                    field: "expires_at",
                    message: "must be in the future".into(),
                });
            }
        }
        Ok(Self {
            name,
            owner,
            project,
            scopes,
            expires_at,
            rate_limit: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn generated_keys_parse_and_hash_consistently() {
        let k = NewKeySecret::generate().unwrap_or_else(|e| unreachable!("{e}"));
        let s = k.secret().expose().to_owned();
        assert!(s.starts_with("sy_") && s.len() == 67, "{}", s.len());
        let p = PresentedKey::parse(&s).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(p.hash(), k.hash());
        assert_eq!(p.redacted(), format!("{}…", &s[..11]));
        assert_eq!(k.display_prefix(), &s[..11]);
        let other = NewKeySecret::generate().unwrap_or_else(|e| unreachable!("{e}"));
        assert_ne!(other.hash(), k.hash());
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let good = format!("sy_{}", "a".repeat(64));
        assert!(PresentedKey::parse(&good).is_ok());
        for bad in [
            String::new(),
            "sy_".into(),
            format!("sy_{}", "a".repeat(63)),
            format!("sy_{}", "a".repeat(65)),
            format!("sy_{}", "A".repeat(64)),
            format!("sk_{}", "a".repeat(64)),
            format!("sy_{}g", "a".repeat(63)),
            format!(" sy_{}", "a".repeat(64)),
        ] {
            assert_eq!(PresentedKey::parse(&bad), Err(MalformedKey), "{bad:?}");
        }
    }

    #[test]
    fn scopes_round_trip_and_admin_implies_user() {
        let s = Scopes::new(vec![Scope::User, Scope::Admin, Scope::User])
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(s.to_db(), "admin,user");
        assert_eq!(Scopes::from_db("admin,user"), Ok(s));
        assert!(Scopes::admin().allows(Scope::User));
        assert!(!Scopes::user().allows(Scope::Admin));
        assert!(Scopes::new(vec![]).is_err());
        assert!(Scopes::from_db("root").is_err());
    }

    #[test]
    fn usability_follows_revocation_and_expiry() {
        let now = Utc::now();
        let mut k = ApiKey {
            id: new_id("key"),
            name: "n".into(),
            owner: None,
            project: "p".into(),
            scopes: Scopes::user(),
            prefix: "sy_00000000".into(),
            created_at: now,
            expires_at: Some(now + Duration::seconds(5)),
            revoked_at: None,
            last_used_at: None,
            rate_limit: None,
            task_profile: None,
            rotated_at: None,
            successor_id: None,
            predecessor_id: None,
        };
        assert_eq!(k.check_usable(now), Ok(()));
        assert_eq!(k.grace_ends_at(), None);
        assert_eq!(
            k.check_usable(now + Duration::seconds(5)),
            Err(KeyUnusable::Expired)
        );
        k.revoked_at = Some(now);
        assert_eq!(k.check_usable(now), Err(KeyUnusable::Revoked));
    }

    #[test]
    fn rate_limits_parse_from_text() {
        assert_eq!("100/minute".parse(), RateLimit::new(100, 60));
        assert_eq!("5/s".parse(), RateLimit::new(5, 1));
        assert_eq!(" 1000 / hour ".parse(), RateLimit::new(1000, 3600));
        assert!("0/minute".parse::<RateLimit>().is_err());
        assert!("10/fortnight".parse::<RateLimit>().is_err());
        assert!("ten/minute".parse::<RateLimit>().is_err());
        assert!("2000000/s".parse::<RateLimit>().is_err());
    }

    #[test]
    fn key_spec_names_the_bad_field() {
        let now = Utc::now();
        let err = NewKeySpec::new(" ", None, "p", Scopes::user(), None, now);
        assert_eq!(err.map_err(|e| e.field), Err("name"));
        let err = NewKeySpec::new("n", None, "", Scopes::user(), None, now);
        assert_eq!(err.map_err(|e| e.field), Err("project"));
        let err = NewKeySpec::new("n", None, "p", Scopes::user(), Some(now), now);
        assert_eq!(err.map_err(|e| e.field), Err("expires_at"));
        let ok = NewKeySpec::new(" n ", Some("o"), "p", Scopes::user(), None, now);
        assert_eq!(ok.map(|s| s.name), Ok("n".to_owned()));
    }
}
