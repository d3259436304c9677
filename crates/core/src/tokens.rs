//! Short-lived access tokens: JWTs signed with HS256 (`JWT_SECRET`) that
//! stand for an API key for at most an hour.
//!
//! The header names the signing secret by `kid` (a fingerprint of it), so
//! that while the secret is rotated, tokens signed with the one before
//! (`JWT_SECRET_PREVIOUS`) keep verifying. Only `HS256` is accepted: `none`
//! and every other algorithm are refused before the signature is looked at.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::Scopes;
use crate::Secret;

/// The longest a token may live.
pub const MAX_TTL_SECONDS: i64 = 3600;
/// The `iss` of every token.
pub const ISSUER: &str = "switchyard";
/// How far a token's `iat` may lie in the future (clocks of replicas differ).
const CLOCK_SKEW_SECONDS: i64 = 60;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    /// The id of the key the token stands for.
    pub sub: String,
    /// The scopes it carries, space-separated (`admin user`).
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    /// The token's own id, for the audit log.
    pub jti: String,
    /// When the holder proved who they are (OpenID Connect's `auth_time`):
    /// a console session renewed in use keeps the time of its sign-in, so
    /// that its whole life can be bounded. Absent from API tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

impl TokenClaims {
    /// The scopes as a set; a token whose `scope` does not parse is invalid.
    pub fn scopes(&self) -> Result<Scopes, TokenError> {
        Scopes::from_db(&self.scope.replace(' ', ",")).map_err(|_| TokenError::Malformed("scope"))
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Why a token was refused. Each reads as a clear 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed ({0})")]
    Malformed(&'static str),
    #[error("the token's algorithm `{0}` is not accepted; only HS256 is")]
    Algorithm(String),
    #[error("the token was signed with a secret this service does not know (kid)")]
    UnknownKid,
    #[error("the token's signature is not valid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (issued in the future)")]
    NotYetValid,
}

struct SigningKey {
    kid: String,
    secret: Secret,
}

impl SigningKey {
    fn new(secret: &Secret) -> Self {
        let mut h = Sha256::new();
        h.update(b"switchyard.jwt.kid:");
        h.update(secret.expose().as_bytes());
        let digest = h.finalize();
        Self {
            kid: hex::encode(&digest[..8]),
            secret: secret.clone(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(self.secret.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
    }
}

/// The secrets tokens are signed and verified with.
pub struct TokenKeys {
    current: SigningKey,
    previous: Option<SigningKey>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("kid", &self.current.kid)
            .field("previous_kid", &self.previous.as_ref().map(|p| &p.kid))
            .finish()
    }
}

/// Whether a presented credential has a JWT's shape (three base64url parts)
/// rather than an API key's.
pub fn looks_like_token(raw: &str) -> bool {
    !raw.starts_with(crate::keys::KEY_PREFIX) && raw.split('.').count() == 3
}

impl TokenKeys {
    /// Signs with `current`; verifies with it and with `previous`.
    pub fn new(current: &Secret, previous: Option<&Secret>) -> Self {
        Self {
            current: SigningKey::new(current),
            previous: previous.map(SigningKey::new),
        }
    }

    /// The `kid` new tokens carry.
    pub fn kid(&self) -> &str {
        &self.current.kid
    }

    /// The signed token (`header.payload.signature`).
    pub fn sign(&self, claims: &TokenClaims) -> Result<String, serde_json::Error> {
        let header = Header {
            alg: "HS256".into(),
            typ: Some("JWT".into()),
            kid: Some(self.current.kid.clone()),
        };
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let mut mac = self.current.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(format!("{signing_input}.{signature}"))
    }

    /// Checks the algorithm, the key id, the signature (in constant time),
    /// the issuer and the lifetime at `now`, in that order.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<TokenClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let header: Header = decode_json(header_b64).ok_or(TokenError::Malformed("header"))?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm(header.alg.chars().take(20).collect()));
        }
        let kid = header.kid.ok_or(TokenError::Malformed("no kid"))?;
        let key = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.kid == kid)
            .ok_or(TokenError::UnknownKid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed("signature"))?;
        let mut mac = key.mac();
        mac.update(header_b64.as_bytes());
        mac.update(b".");
        mac.update(payload_b64.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: TokenClaims =
            decode_json(payload_b64).ok_or(TokenError::Malformed("claims"))?;
        if claims.iss != ISSUER {
            return Err(TokenError::Malformed("issuer"));
        }
        claims.scopes()?;
        let now = now.timestamp();
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat > now + CLOCK_SKEW_SECONDS {
            return Err(TokenError::NotYetValid);
        }
        if claims.exp - claims.iat > MAX_TTL_SECONDS {
            return Err(TokenError::Malformed("lifetime longer than an hour"));
        }
        Ok(claims)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: DateTime<Utc>, ttl: i64) -> TokenClaims {
        TokenClaims {
            iss: ISSUER.into(),
            sub: "key_1".into(),
            scope: "user".into(),
            iat: now.timestamp(),
            exp: now.timestamp() + ttl,
            jti: "tok_1".into(),
            auth_time: None,
        }
    }

    fn secret(s: &str) -> Secret {
        Secret::new(s.repeat(32))
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let keys = TokenKeys::new(&secret("a"), None);
        let now = Utc::now();
        let token = keys.sign(&claims(now, 600)).unwrap_or_default();
        assert!(looks_like_token(&token));
        assert_eq!(keys.verify(&token, now), Ok(claims(now, 600)));
        assert_eq!(
            keys.verify(&token, now + chrono::Duration::seconds(600)),
            Err(TokenError::Expired)
        );
        let long = keys.sign(&claims(now, 3601)).unwrap_or_default();
        assert!(matches!(
            keys.verify(&long, now),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn previous_secrets_verify_and_unknown_ones_do_not() {
        let now = Utc::now();
        let old = TokenKeys::new(&secret("a"), None);
        let token = old.sign(&claims(now, 600)).unwrap_or_default();
        let rotated = TokenKeys::new(&secret("b"), Some(&secret("a")));
        assert_ne!(rotated.kid(), old.kid());
        assert!(rotated.verify(&token, now).is_ok());
        let other = TokenKeys::new(&secret("c"), None);
        assert_eq!(other.verify(&token, now), Err(TokenError::UnknownKid));
    }

    #[test]
    fn tampering_and_alg_none_are_refused() {
        let now = Utc::now();
        let keys = TokenKeys::new(&secret("a"), None);
        let token = keys.sign(&claims(now, 600)).unwrap_or_default();
        let parts: Vec<&str> = token.split('.').collect();
        let mut admin = claims(now, 600);
        admin.scope = "admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&admin).unwrap_or_default());
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(keys.verify(&tampered, now), Err(TokenError::Signature));
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{forged_payload}.");
        assert_eq!(
            keys.verify(&unsigned, now),
            Err(TokenError::Algorithm("none".into()))
        );
        assert!(matches!(
            keys.verify("a.b", now),
            Err(TokenError::Malformed(_))
        ));
        assert!(!looks_like_token(&format!("sy_{}", "a".repeat(64))));
    }
}
