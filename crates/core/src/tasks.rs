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

/// What each Bash command of a task may use: the service's defaults
/// (`TASK_MEMORY_MB` …), each lowered by the key's task profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceLimits {
    /// Memory each process may allocate (its data segment), in MiB.
    pub memory_mb: u64,
    /// Processes (and threads) the command may have at once.
    pub processes: u64,
    /// CPU time each process may use, in seconds.
    pub cpu_seconds: u64,
    /// The largest file a process may write, in MiB.
    pub file_size_mb: u64,
    /// The whole workspace, in MiB.
    pub workspace_mb: u64,
    /// Files each process may hold open.
    pub open_files: u64,
}

impl ResourceLimits {
    /// These limits, each lowered to its bound where one is set.
    pub fn bounded_by(self, bounds: &ResourceBounds) -> Self {
        let b = |v: u64, bound: Option<u64>| bound.map_or(v, |m| v.min(m));
        Self {
            memory_mb: b(self.memory_mb, bounds.memory_mb),
            processes: b(self.processes, bounds.processes),
            cpu_seconds: b(self.cpu_seconds, bounds.cpu_seconds),
            file_size_mb: b(self.file_size_mb, bounds.file_size_mb),
            workspace_mb: b(self.workspace_mb, bounds.workspace_mb),
            open_files: b(self.open_files, bounds.open_files),
        }
    }
}

/// A key's bounds on its tasks' [`ResourceLimits`] (its task profile's
/// `max_resources`); an absent field leaves the service's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceBounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
}

impl ResourceBounds {
    /// Every bound set is at least 1.
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("memory_mb", self.memory_mb),
            ("processes", self.processes),
            ("cpu_seconds", self.cpu_seconds),
            ("file_size_mb", self.file_size_mb),
            ("workspace_mb", self.workspace_mb),
            ("open_files", self.open_files),
        ];
        match fields.iter().find(|(_, v)| *v == Some(0)) {
            Some((name, _)) => Err(format!("max_resources.{name} must be at least 1")),
            None => Ok(()),
        }
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

    #[test]
    fn limits_are_lowered_by_bounds_never_raised() {
        let l = ResourceLimits {
            memory_mb: 100,
            processes: 10,
            cpu_seconds: 60,
            file_size_mb: 50,
            workspace_mb: 200,
            open_files: 64,
        };
        let bounds = ResourceBounds {
            memory_mb: Some(50),
            cpu_seconds: Some(600),
            file_size_mb: Some(1),
            open_files: Some(32),
            ..ResourceBounds::default()
        };
        assert!(bounds.validate().is_ok());
        let b = l.bounded_by(&bounds);
        assert_eq!((b.memory_mb, b.processes, b.cpu_seconds), (50, 10, 60));
        assert_eq!((b.file_size_mb, b.workspace_mb, b.open_files), (1, 200, 32));
        let zero = ResourceBounds {
            processes: Some(0),
            ..ResourceBounds::default()
        };
        assert!(zero.validate().unwrap_err().contains("processes"));
    }
}
