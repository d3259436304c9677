//! The key rotation policy: when a key is due for rotation, which notice
//! its owner is owed, and (when enforced) when an unrotated key stops
//! working.
//!
//! A key is due `every` after it was created. Rotation is notify-only by
//! default: a due key keeps working until someone rotates it. With
//! `enforce`, it expires at due + `grace`. A rotated key is never due: its
//! successor is.

use crate::keys::{ApiKey, KeyUnusable};
use chrono::{DateTime, Duration, Utc};

/// `KEY_ROTATION_DAYS`, `KEY_ROTATION_GRACE_DAYS`, `KEY_ROTATION_ENFORCE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long after its creation a key is due for rotation.
    pub every: Duration,
    /// How long a rotated key keeps working (the default of `rotate`), and
    /// how long past due an unrotated key works when rotation is enforced.
    pub grace: Duration,
    /// Expire unrotated keys at due + grace.
    pub enforce: bool,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            every: Duration::days(90),
            grace: Duration::days(7),
            enforce: false,
        }
    }
}

/// The most grace a rotation may give the old key.
pub const MAX_GRACE_DAYS: u32 = 90;

/// A notice owed to a key's owner before (and on) its due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// 14 days before the due date.
    Days14,
    /// 7 days before the due date.
    Days7,
    /// On the due date (and after, until the key is rotated).
    Due,
}

impl Notice {
    pub const ALL: [Notice; 3] = [Notice::Days14, Notice::Days7, Notice::Due];

    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Days14 => "days_14",
            Notice::Days7 => "days_7",
            Notice::Due => "due",
        }
    }

    /// How long before the due date the notice is sent.
    pub fn ahead(self) -> Duration {
        match self {
            Notice::Days14 => Duration::days(14),
            Notice::Days7 => Duration::days(7),
            Notice::Due => Duration::zero(),
        }
    }
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Notice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| format!("unknown notice `{s}` (days_14, days_7 or due)"))
    }
}

impl RotationPolicy {
    /// When `key` is due for rotation; `None` for a key that is revoked or
    /// already rotated (nothing more to rotate).
    pub fn due_at(&self, key: &ApiKey) -> Option<DateTime<Utc>> {
        if key.revoked_at.is_some() || key.successor_id.is_some() {
            return None;
        }
        key.created_at.checked_add_signed(self.every)
    }

    /// Whether `key` still works at `now` and is past its due date.
    pub fn is_due(&self, key: &ApiKey, now: DateTime<Utc>) -> bool {
        self.check(key, now).is_ok() && self.due_at(key).is_some_and(|due| due <= now)
    }

    /// When an unrotated key stops working under enforcement; `None` when
    /// rotation is not enforced or the key has nothing to rotate.
    pub fn enforced_expiry(&self, key: &ApiKey) -> Option<DateTime<Utc>> {
        if !self.enforce {
            return None;
        }
        self.due_at(key)?.checked_add_signed(self.grace)
    }

    /// [`ApiKey::check_usable`], plus the enforced expiry.
    pub fn check(&self, key: &ApiKey, now: DateTime<Utc>) -> Result<(), KeyUnusable> {
        key.check_usable(now)?;
        if self.enforced_expiry(key).is_some_and(|at| at <= now) {
            return Err(KeyUnusable::Expired);
        }
        Ok(())
    }

    /// When the key stops working at the latest: its own expiry or the
    /// enforced one, whichever comes first.
    pub fn expiry(&self, key: &ApiKey) -> Option<DateTime<Utc>> {
        match (key.expires_at, self.enforced_expiry(key)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The latest notice whose time has come for a working, unrotated key,
    /// with the due date: on the due date `Due`, a week before `Days7`, two
    /// weeks before `Days14`. Earlier notices that were missed are not owed
    /// any more once a later one is.
    pub fn notice_owed(&self, key: &ApiKey, now: DateTime<Utc>) -> Option<(Notice, DateTime<Utc>)> {
        if self.check(key, now).is_err() {
            return None;
        }
        let due = self.due_at(key)?;
        Notice::ALL
            .into_iter()
            .rev()
            .find(|n| due - n.ahead() <= now)
            .map(|n| (n, due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{new_id, Scopes};

    fn key(created: DateTime<Utc>) -> ApiKey {
        ApiKey {
            id: new_id("key"),
            name: "n".into(),
            owner: Some("team@example.com".into()),
            project: "p".into(),
            scopes: Scopes::user(),
            prefix: "sy_00000000".into(),
            created_at: created,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            rate_limit: None,
            task_profile: None,
            rotated_at: None,
            successor_id: None,
            predecessor_id: None,
        }
    }

    #[test]
    fn keys_fall_due_after_the_period_and_notices_follow_the_calendar() {
        let t0 = Utc::now();
        let policy = RotationPolicy::default();
        let k = key(t0);
        let due = t0 + Duration::days(90);
        assert_eq!(policy.due_at(&k), Some(due));
        assert!(!policy.is_due(&k, due - Duration::seconds(1)));
        assert!(policy.is_due(&k, due));
        assert_eq!(policy.notice_owed(&k, due - Duration::days(15)), None);
        assert_eq!(
            policy.notice_owed(&k, due - Duration::days(14)),
            Some((Notice::Days14, due))
        );
        assert_eq!(
            policy.notice_owed(&k, due - Duration::days(3)),
            Some((Notice::Days7, due))
        );
        assert_eq!(
            policy.notice_owed(&k, due + Duration::days(3)),
            Some((Notice::Due, due))
        );
        // Notify-only: a due key keeps working.
        assert_eq!(policy.check(&k, due + Duration::days(365)), Ok(()));
    }

    #[test]
    fn enforcement_expires_unrotated_keys_after_the_grace() {
        let t0 = Utc::now();
        let policy = RotationPolicy {
            enforce: true,
            ..RotationPolicy::default()
        };
        let mut k = key(t0);
        let end = t0 + Duration::days(97);
        assert_eq!(policy.check(&k, end - Duration::seconds(1)), Ok(()));
        assert_eq!(policy.check(&k, end), Err(KeyUnusable::Expired));
        assert_eq!(policy.expiry(&k), Some(end));
        k.successor_id = Some("key_next".into());
        k.expires_at = Some(t0 + Duration::days(200));
        assert_eq!(policy.due_at(&k), None);
        assert_eq!(policy.check(&k, end), Ok(()));
        assert!(!policy.is_due(&k, end));
        assert_eq!(policy.notice_owed(&k, end), None);
    }

    #[test]
    fn notice_names_round_trip() {
        for n in Notice::ALL {
            assert_eq!(n.as_str().parse::<Notice>(), Ok(n));
        }
        assert!("soon".parse::<Notice>().is_err());
    }
}
