//! The key-rotation notices job: tells each due (or soon due) key's owner,
//! through a webhook, 14 and 7 days before and on the due date.
//!
//! Each notice is claimed in the database before it is sent
//! (`key_notices`), so no replica sends it twice; a claim whose delivery
//! failed is taken up again by a later run. The body is signed with
//! HMAC-SHA256 (`KEY_NOTIFY_WEBHOOK_SECRET`); a delivery is retried with
//! backoff on connection errors, timeouts, 429 and 5xx. Every attempt is
//! audited (`key.notice_attempt`).

use super::{job, Job, JobContext};
use crate::audit::{self, Actor};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::audit::AuditKind;
use switchyard_core::config::NotifyConfig;
use switchyard_core::keys::ApiKey;
use switchyard_core::rotation::{Notice, RotationPolicy};
use switchyard_store::{AuditEvent, Store};

/// The job's name (and its lease's).
pub const ROTATION_NOTICES: &str = "keys.rotation_notices";
/// An unsent notice's claim older than this is taken up again.
const CLAIM_STALE: chrono::Duration = chrono::Duration::minutes(10);
/// The header carrying `sha256=<hex>` over `<timestamp>.<body>`.
pub const SIGNATURE_HEADER: &str = "x-switchyard-signature";
/// The Unix time the signature covers; receivers should refuse old ones.
pub const TIMESTAMP_HEADER: &str = "x-switchyard-timestamp";
/// `<key id>:<notice>`: the same for every attempt at one notice.
pub const DELIVERY_HEADER: &str = "x-switchyard-delivery";

/// Sends notices to the webhook.
#[derive(Clone)]
pub struct Notifier {
    http: reqwest::Client,
    config: Arc<NotifyConfig>,
    /// The wait before the second attempt; doubled for each one after.
    backoff: Duration,
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status, when one came back.
    pub status: Option<u16>,
    /// What went wrong; `None` when delivered.
    pub error: Option<String>,
}

impl Notifier {
    pub fn new(config: NotifyConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            config: Arc::new(config),
            backoff: Duration::from_secs(1),
        })
    }

    /// Waits `backoff` before the second attempt (doubling after).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
    pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Delivers `body`, retrying as configured; every attempt, in order.
    async fn deliver(&self, delivery: &str, body: &[u8], now: DateTime<Utc>) -> Vec<Attempt> {
        let mut attempts = Vec::new();
        let mut wait = self.backoff;
        for n in 1..=self.config.attempts {
            if n > 1 {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            let timestamp = now.timestamp();
            let signature =
                Self::signature(self.config.secret.expose().as_bytes(), timestamp, body);
            let sent = self
                .http
                .post(self.config.url.expose())
                .header("content-type", "application/json")
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .header(DELIVERY_HEADER, delivery)
                .header("x-switchyard-event", "key.rotation_notice")
                .body(body.to_vec())
                .send()
                .await;
            let (attempt, retry) = match sent {
                Ok(r) if r.status().is_success() => (
                    Attempt {
                        status: Some(r.status().as_u16()),
                        error: None,
                    },
                    false,
                ),
                Ok(r) => {
                    let status = r.status();
                    let retry = status.is_server_error() || status.as_u16() == 429;
                    (
                        Attempt {
                            status: Some(status.as_u16()),
                            error: Some(format!("the webhook answered {status}")),
                        },
                        retry,
                    )
                }
                Err(e) => (
                    Attempt {
                        status: None,
                        error: Some(format!(
                            "the webhook could not be reached: {}",
                            without_url(&e)
                        )),
                    },
                    true,
                ),
            };
            attempts.push(attempt);
            if !retry {
                break;
            }
        }
        attempts
    }
}

/// A reqwest error's text without the URL (which may carry a token).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// What the webhook receives.
fn body(key: &ApiKey, notice: Notice, due: DateTime<Utc>, now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "event": "key.rotation_notice",
        "notice": notice.as_str(),
        "due_at": due,
        "days_left": (due - now).num_days().max(0),
        "sent_at": now,
        "key": {
            "id": key.id,
            "name": key.name,
            "prefix": key.prefix,
            "project": key.project,
            "owner": key.owner,
            "created_at": key.created_at,
        },
        "rotate": {
            "cli": format!("switchyard keys rotate {}", key.id),
            "api": format!("POST /v1/admin/keys/{}/rotate", key.id),
        },
    })
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeReport {
    /// Notices delivered.
    pub sent: usize,
    /// Notices claimed but not delivered (retried by a later run).
    pub failed: usize,
}

/// Sends every notice owed at `now` that no replica has sent or is sending.
pub async fn send_rotation_notices(
    store: &Store,
    policy: &RotationPolicy,
    notifier: &Notifier,
    replica: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<NoticeReport> {
    let mut report = NoticeReport::default();
    for key in store.list_keys(false).await? {
        let Some((notice, due)) = policy.notice_owed(&key, now) else {
            continue;
        };
        let claimed = store
            .claim_notice(
                &key.id,
                notice.as_str(),
                due,
                replica,
                now,
                now - CLAIM_STALE,
            )
            .await?;
        if !claimed {
            continue;
        }
        let delivery = format!("{}:{}", key.id, notice.as_str());
        let payload = serde_json::to_vec(&body(&key, notice, due, now))?;
        let attempts = notifier.deliver(&delivery, &payload, now).await;
        for (n, a) in attempts.iter().enumerate() {
            let entry = Actor {
                via: "scheduler",
                ..Actor::default()
            }
            .stamp(AuditEvent {
                project: Some(key.project.clone()),
                target: Some(key.id.clone()),
                details: serde_json::json!({
                    "notice": notice.as_str(),
                    "due_at": due,
                    "owner": key.owner,
                    "attempt": n + 1,
                    "delivered": a.error.is_none(),
                    "status": a.status,
                    "error": a.error,
                    "replica": replica,
                }),
                ..AuditEvent::new(AuditKind::KeyNoticeAttempt)
            });
            audit::record(store, &entry, now).await;
        }
        let last_error = attempts.last().and_then(|a| a.error.clone());
        let sent_at = last_error.is_none().then_some(now);
        store
            .finish_notice(
                &key.id,
                notice.as_str(),
                replica,
                attempts.len() as i64,
                sent_at,
                last_error.as_deref(),
            )
            .await?;
        match &last_error {
            None => {
                report.sent += 1;
                tracing::info!(key_id = %key.id, notice = %notice, "key rotation notice sent");
            }
            Some(e) => {
                report.failed += 1;
                tracing::warn!(key_id = %key.id, notice = %notice, error = %e,
                    "key rotation notice not delivered; a later run retries it");
            }
        }
    }
    Ok(report)
}

/// The scheduled job: [`send_rotation_notices`] every `interval`, by the
/// scheduler's clock. A run with undelivered notices fails, so that
/// operators see it (`switchyard jobs`, `ScheduledJobFailing`).
pub fn rotation_notices(
    store: Store,
    policy: RotationPolicy,
    notifier: Notifier,
    interval: Duration,
) -> impl Job {
    job(ROTATION_NOTICES, interval, move |ctx: JobContext| {
        let (store, notifier) = (store.clone(), notifier.clone());
        async move {
            let report =
                send_rotation_notices(&store, &policy, &notifier, &ctx.replica, ctx.started_at)
                    .await?;
            if report.failed > 0 {
                anyhow::bail!(
                    "{} key rotation notice(s) could not be delivered ({} sent)",
                    report.failed,
                    report.sent
                );
            }
            Ok(())
        }
    })
}
