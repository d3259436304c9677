//! The keys section: the rotation policy (when keys fall due, the grace a
//! rotation gives, whether due keys are expired), and short-lived access
//! tokens signed with `JWT_SECRET` (and the secret before it, while it is
//! rotated), and the webhook that tells key owners when rotation is due.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::rotation::{RotationPolicy, MAX_GRACE_DAYS};
use crate::secret::Secret;

declare_settings! { Section::Keys;
    KEY_ROTATION_DAYS: value("90"),
        "A key is due for rotation this many days after it was created (1–3650); due keys are counted, listed and their owners notified.";
    KEY_ROTATION_GRACE_DAYS: value("7"),
        "How long a rotated key keeps working by default (0–90), and how long past due an unrotated key works when KEY_ROTATION_ENFORCE is on.";
    KEY_ROTATION_ENFORCE: value("false"),
        "Expire keys that were not rotated at due + grace; off: rotation is notify-only and due keys keep working.";
    KEY_NOTIFY_WEBHOOK_URL: secret,
        "Where rotation notices go (http or https): a JSON POST per key 14 and 7 days before and on its due date, signed with KEY_NOTIFY_WEBHOOK_SECRET. Unset: no notices. A secret, since such URLs often carry a token.";
    KEY_NOTIFY_WEBHOOK_SECRET: secret,
        "HMAC-SHA256 key for the notices' x-switchyard-signature header (at least 16 bytes); required with KEY_NOTIFY_WEBHOOK_URL.";
    KEY_NOTIFY_INTERVAL_SECONDS: value("3600"),
        "How often the notices job looks for notices owed (60–86400); it runs on one replica at a time.";
    JWT_SECRET_PREVIOUS: secret,
        "The JWT_SECRET before the current one: tokens it signed keep verifying (for at most their hour) while the secret is rotated.";
}

/// Where and how rotation notices are sent.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// `KEY_NOTIFY_WEBHOOK_URL`, checked to be an http(s) URL; kept secret
    /// since such URLs often carry a token.
    pub url: Secret,
    /// `KEY_NOTIFY_WEBHOOK_SECRET`.
    pub secret: Secret,
    /// `KEY_NOTIFY_INTERVAL_SECONDS`.
    pub interval: std::time::Duration,
    /// Delivery attempts per notice and run (the first and the retries).
    pub attempts: u32,
}

/// Delivery attempts per notice and run.
pub const NOTIFY_ATTEMPTS: u32 = 3;
/// The shortest `KEY_NOTIFY_WEBHOOK_SECRET`.
const MIN_NOTIFY_SECRET_BYTES: usize = 16;

/// Key lifecycle and token settings.
#[derive(Debug, Clone, Default)]
pub struct KeysConfig {
    /// `KEY_ROTATION_DAYS`, `KEY_ROTATION_GRACE_DAYS`, `KEY_ROTATION_ENFORCE`.
    pub rotation: RotationPolicy,
    /// `KEY_ROTATION_GRACE_DAYS`: the grace a rotation gives unless told.
    pub rotation_grace_days: u32,
    /// The rotation notices' webhook; `None` without `KEY_NOTIFY_WEBHOOK_URL`.
    pub notify: Option<NotifyConfig>,
    /// `JWT_SECRET_PREVIOUS`: verifies tokens signed before the secret was
    /// rotated.
    pub jwt_secret_previous: Option<Secret>,
}

pub(super) fn load(r: &mut Reader<'_>, jwt_secret: Option<&Secret>) -> KeysConfig {
    let every = r.integer(&KEY_ROTATION_DAYS, 1, 3650);
    let grace = r.integer(&KEY_ROTATION_GRACE_DAYS, 0, u64::from(MAX_GRACE_DAYS));
    let enforce = r.flag(&KEY_ROTATION_ENFORCE);
    let rotation = RotationPolicy {
        every: chrono::Duration::days(every as i64),
        grace: chrono::Duration::days(grace as i64),
        enforce,
    };
    let notify = load_notify(r);
    let jwt_secret_previous = r.secret(&JWT_SECRET_PREVIOUS);
    if jwt_secret_previous.is_some() && jwt_secret.is_none() {
        r.problem(
            JWT_SECRET_PREVIOUS.name,
            "is set but JWT_SECRET is not: the previous secret only verifies tokens while a current one signs them",
        );
    }
    KeysConfig {
        rotation,
        rotation_grace_days: grace as u32,
        notify,
        jwt_secret_previous,
    }
}

fn load_notify(r: &mut Reader<'_>) -> Option<NotifyConfig> {
    let url = r.secret(&KEY_NOTIFY_WEBHOOK_URL);
    let secret = r.secret(&KEY_NOTIFY_WEBHOOK_SECRET);
    let interval = r.seconds(&KEY_NOTIFY_INTERVAL_SECONDS, 60, 86_400);
    let parsed = url.as_ref().map(|u| url::Url::parse(u.expose()));
    let url = match (url, parsed) {
        (_, None) | (None, _) => {
            if secret.is_some() {
                r.problem(
                    KEY_NOTIFY_WEBHOOK_SECRET.name,
                    "is set but KEY_NOTIFY_WEBHOOK_URL is not: no notices are sent",
                );
            }
            return None;
        }
        (Some(u), Some(Ok(p))) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => u,
        (Some(_), Some(_)) => {
            r.problem(
                KEY_NOTIFY_WEBHOOK_URL.name,
                "must be an http:// or https:// URL with a host",
            );
            return None;
        }
    };
    let Some(secret) = secret else {
        r.problem(
            KEY_NOTIFY_WEBHOOK_SECRET.name,
            "is required with KEY_NOTIFY_WEBHOOK_URL: receivers check the signature",
        );
        return None;
    };
    if secret.expose().len() < MIN_NOTIFY_SECRET_BYTES {
        r.problem(
            KEY_NOTIFY_WEBHOOK_SECRET.name,
            format!("must be at least {MIN_NOTIFY_SECRET_BYTES} bytes"),
        );
        return None;
    }
    Some(NotifyConfig {
        url,
        secret,
        interval,
        attempts: NOTIFY_ATTEMPTS,
    })
}
