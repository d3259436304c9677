//! The typed protocol between the API and the agent loop: the task spec in,
//! events and a result out.

use crate::artifacts::Artifact;
use crate::definitions::{AgentDef, Definitions, SkillDef};
use crate::tools::ToolName;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use switchyard_core::keys::TaskProfile;
use switchyard_core::tasks::TaskSpec;

pub use switchyard_core::tasks::TaskStatus;

/// What one run of the agent loop may do: the task's description and
/// limits, with its sub-agents and skills resolved to their definitions.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub description: String,
    /// The tools the run starts with.
    pub tools: Vec<ToolName>,
    /// The most tools the run may ever hold: a skill's `allowed-tools` add
    /// tools to [`RunSpec::tools`] up to this bound, never past it. For a
    /// task, the tools its key's task profile allows (every tool without
    /// one); for a sub-agent, its parent's bound narrowed by the agent's own
    /// `tools` and `disallowedTools`.
    pub tool_bound: Vec<ToolName>,
    pub timeout: Duration,
    /// Spend cap in nano-USD.
    pub max_cost_nano_usd: u64,
    pub max_turns: u32,
    /// Sub-agents the task may delegate to (through the `Agent` tool).
    pub agents: Vec<AgentDef>,
    /// Skills the task may invoke (through the `Skill` tool).
    pub skills: Vec<SkillDef>,
}

impl RunSpec {
    /// The run of a stored task: its limits, and the sub-agents and skills
    /// it names that `defs` holds (names no longer defined are left out),
    /// its tools bounded by its key's task `profile` as it stands now.
    pub fn for_task(task: &TaskSpec, defs: &Definitions, profile: Option<&TaskProfile>) -> Self {
        let tool_bound: Vec<ToolName> = match profile.and_then(|p| p.allowed_tools.as_ref()) {
            Some(allowed) => ToolName::ALL
                .into_iter()
                .filter(|t| allowed.contains(t))
                .collect(),
            None => ToolName::ALL.to_vec(),
        };
        Self {
            description: task.description.clone(),
            tools: task
                .tools
                .iter()
                .copied()
                .filter(|t| tool_bound.contains(t))
                .collect(),
            tool_bound,
            timeout: task.timeout(),
            max_cost_nano_usd: task.max_cost_nano_usd,
            max_turns: task.max_turns,
            agents: task
                .agents
                .iter()
                .filter_map(|n| defs.agents.get(n).cloned())
                .collect(),
            skills: task
                .skills
                .iter()
                .filter_map(|n| defs.skills.get(n).cloned())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ModelCall,
    ToolCall,
    ToolResult,
    AgentSpawn,
    SkillInvoke,
    Error,
}

/// One entry of the execution log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEvent {
    pub seq: u64,
    pub timestamp: DateTime<Utc>,
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Nano-USD.
    pub total_cost_nano_usd: u64,
    pub turns: u32,
    pub model_used: Option<String>,
    pub duration_seconds: f64,
}

/// How a run ended, with everything it produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskOutcome {
    pub status: TaskStatus,
    pub summary: String,
    pub error: Option<String>,
    pub usage: TaskUsage,
    pub artifacts: Vec<Artifact>,
    pub execution_log: Vec<TaskEvent>,
}
