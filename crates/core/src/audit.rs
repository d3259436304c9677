//! The kinds of event the audit log records. Stored by name; the set is
//! part of the public contract (operators filter and alert on it).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A significant event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AuditKind {
    #[serde(rename = "key.created")]
    KeyCreated,
    #[serde(rename = "key.revoked")]
    KeyRevoked,
    #[serde(rename = "key.rate_limit_changed")]
    KeyRateLimitChanged,
    #[serde(rename = "key.task_profile_changed")]
    KeyTaskProfileChanged,
    /// A key was rotated: a successor issued, the old key given a grace
    /// period.
    #[serde(rename = "key.rotated")]
    KeyRotated,
    #[serde(rename = "key.expiry_changed")]
    KeyExpiryChanged,
    /// One attempt at delivering a rotation notice to a key's owner.
    #[serde(rename = "key.notice_attempt")]
    KeyNoticeAttempt,
    #[serde(rename = "budget.set")]
    BudgetSet,
    #[serde(rename = "budget.deleted")]
    BudgetDeleted,
    #[serde(rename = "task.created")]
    TaskCreated,
    /// A command or a file write inside a task.
    #[serde(rename = "task.tool")]
    TaskTool,
    #[serde(rename = "task.finished")]
    TaskFinished,
    /// A caller asked a task to stop (it then finishes as `cancelled`).
    #[serde(rename = "task.cancel_requested")]
    TaskCancelRequested,
    /// A rollout began (strategy, slots, thresholds).
    #[serde(rename = "rollout.started")]
    RolloutStarted,
    /// A rollout changed the traffic shares.
    #[serde(rename = "rollout.step")]
    RolloutStep,
    /// Traffic went back to the old slot: a breached threshold, a failed
    /// verification, or by hand.
    #[serde(rename = "rollout.rolled_back")]
    RolloutRolledBack,
    #[serde(rename = "rollout.completed")]
    RolloutCompleted,
    /// A slot that no longer took traffic was drained and stopped.
    #[serde(rename = "rollout.retired")]
    RolloutRetired,
    /// The retention job deleted expired audit, usage or task data (how
    /// much, and the cutoffs, in the details).
    #[serde(rename = "retention.deleted")]
    RetentionDeleted,
}

impl AuditKind {
    pub const ALL: [AuditKind; 19] = [
        AuditKind::KeyCreated,
        AuditKind::KeyRevoked,
        AuditKind::KeyRateLimitChanged,
        AuditKind::KeyTaskProfileChanged,
        AuditKind::KeyRotated,
        AuditKind::KeyExpiryChanged,
        AuditKind::KeyNoticeAttempt,
        AuditKind::BudgetSet,
        AuditKind::BudgetDeleted,
        AuditKind::TaskCreated,
        AuditKind::TaskTool,
        AuditKind::TaskFinished,
        AuditKind::TaskCancelRequested,
        AuditKind::RolloutStarted,
        AuditKind::RolloutStep,
        AuditKind::RolloutRolledBack,
        AuditKind::RolloutCompleted,
        AuditKind::RolloutRetired,
        AuditKind::RetentionDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::KeyCreated => "key.created",
            AuditKind::KeyRevoked => "key.revoked",
            AuditKind::KeyRateLimitChanged => "key.rate_limit_changed",
            AuditKind::KeyTaskProfileChanged => "key.task_profile_changed",
            AuditKind::KeyRotated => "key.rotated",
            AuditKind::KeyExpiryChanged => "key.expiry_changed",
            AuditKind::KeyNoticeAttempt => "key.notice_attempt",
            AuditKind::BudgetSet => "budget.set",
            AuditKind::BudgetDeleted => "budget.deleted",
            AuditKind::TaskCreated => "task.created",
            AuditKind::TaskTool => "task.tool",
            AuditKind::TaskFinished => "task.finished",
            AuditKind::TaskCancelRequested => "task.cancel_requested",
            AuditKind::RolloutStarted => "rollout.started",
            AuditKind::RolloutStep => "rollout.step",
            AuditKind::RolloutRolledBack => "rollout.rolled_back",
            AuditKind::RolloutCompleted => "rollout.completed",
            AuditKind::RolloutRetired => "rollout.retired",
            AuditKind::RetentionDeleted => "retention.deleted",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a stored or documented event name.
impl PartialEq<&str> for AuditKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromStr for AuditKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown audit event `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for k in AuditKind::ALL {
            assert_eq!(k.as_str().parse::<AuditKind>(), Ok(k));
            assert_eq!(
                serde_json::to_value(k).unwrap_or_default(),
                serde_json::json!(k.as_str())
            );
        }
        assert!("key.stolen".parse::<AuditKind>().is_err());
    }
}
