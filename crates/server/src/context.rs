//! What the edge attaches to a request for the layers and handlers below it:
//! the request id, the client's address and the authenticated caller, plus
//! the [`Authenticated`] extractor that hands all three to a handler. A leaf
//! module: it depends on nothing in this crate but the error shape.

use crate::audit::Actor;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::net::IpAddr;
use std::sync::Arc;
use switchyard_core::keys::{ApiKey, Scope};

/// The header that carries the request id both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id: the client's `x-request-id` when it is sane, else generated.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The client's address as this process sees it (the TCP peer, or the first
/// untrusted hop of `X-Forwarded-For` behind a trusted proxy). Handlers and
/// audit records take it from here, never from headers directly.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

/// The key a request (or a task) acts with.
#[derive(Clone, Debug)]
pub struct Caller {
    pub key: Arc<ApiKey>,
    /// `sy_1a2b3c4d…`, safe for logs and audit records.
    pub redacted: String,
    /// The access token's id (`jti`) when the request came with a token
    /// rather than the key itself.
    pub token: Option<String>,
}

impl Caller {
    /// A caller for work done on a key's behalf outside a request (a task
    /// run by a worker): redacted from the stored display prefix.
    pub fn acting_for(key: ApiKey) -> Self {
        Self {
            redacted: format!("{}…", key.prefix),
            key: Arc::new(key),
            token: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.key.scopes.allows(Scope::Admin)
    }
}

/// An authenticated request's caller, id and client address. Handlers take
/// this instead of three extensions; a route that the authentication layer
/// did not cover answers 401 instead of panicking.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub caller: Caller,
    pub request_id: RequestId,
    pub client_ip: ClientIp,
}

impl Authenticated {
    /// Who did it, for the audit log.
    pub fn actor(&self) -> Actor {
        Actor {
            key_id: Some(self.caller.key.id.clone()),
            key: Some(self.caller.redacted.clone()),
            client_ip: self.client_ip.0.map(|ip| ip.to_string()),
            request_id: Some(self.request_id.0.clone()),
            via: "api",
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let caller = parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::unauthenticated("missing_api_key", "this route needs an API key")
        })?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(String::new()));
        let client_ip = parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or(ClientIp(None));
        Ok(Self {
            caller,
            request_id,
            client_ip,
        })
    }
}
