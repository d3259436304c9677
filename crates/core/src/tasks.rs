//! Agent tasks as the service stores them: their status, and the validated
//! request a worker runs (one shape, from the API to the queue to the agent).

use crate::tools::ToolName;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Timeout,
    CostExceeded,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Timeout,
        TaskStatus::CostExceeded,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Timeout => "timeout",
            TaskStatus::CostExceeded => "cost_exceeded",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the task has ended (and will not run again).
    pub fn is_finished(self) -> bool {
        !matches!(self, TaskStatus::Queued | TaskStatus::Running)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a status as the API and the database spell it.
impl PartialEq<&str> for TaskStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown task status `{s}`"))
    }
}

impl TryFrom<String> for TaskStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// A file placed in the workspace before the task starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    pub path: String,
    pub content: String,
}

/// A validated task: what the API accepted, what the queue stores (as
/// JSON) and what a worker runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub description: String,
    pub tools: Vec<ToolName>,
    /// A catalog model or `auto`.
    pub model: String,
    pub timeout_seconds: u64,
    pub max_cost_nano_usd: u64,
    pub max_turns: u32,
    #[serde(default)]
    pub files: Vec<SeedFile>,
    /// Sub-agents the task may delegate to, by name.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Skills the task may invoke, by name.
    #[serde(default)]
    pub skills: Vec<String>,
}

impl TaskSpec {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_know_when_they_are_final() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).unwrap_or_default(),
                serde_json::json!(s.as_str())
            );
        }
        assert!(!TaskStatus::Queued.is_finished() && !TaskStatus::Running.is_finished());
        assert!(TaskStatus::CostExceeded.is_finished());
        assert!("done".parse::<TaskStatus>().is_err());
    }
}
