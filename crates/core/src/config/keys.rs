//! The keys section: short-lived access tokens signed with `JWT_SECRET`
//! (and the secret before it, while it is rotated).

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::secret::Secret;

declare_settings! { Section::Keys;
    JWT_SECRET_PREVIOUS: secret,
        "The JWT_SECRET before the current one: tokens it signed keep verifying (for at most their hour) while the secret is rotated.";
}

/// Key lifecycle and token settings.
#[derive(Debug, Clone, Default)]
pub struct KeysConfig {
    /// `JWT_SECRET_PREVIOUS`: verifies tokens signed before the secret was
    /// rotated.
    pub jwt_secret_previous: Option<Secret>,
}

pub(super) fn load(r: &mut Reader<'_>, jwt_secret: Option<&Secret>) -> KeysConfig {
    let jwt_secret_previous = r.secret(&JWT_SECRET_PREVIOUS);
    if jwt_secret_previous.is_some() && jwt_secret.is_none() {
        r.problem(
            JWT_SECRET_PREVIOUS.name,
            "is set but JWT_SECRET is not: the previous secret only verifies tokens while a current one signs them",
        );
    }
    KeysConfig {
        jwt_secret_previous,
    }
}
