//! The typed protocol between the API and the agent loop: the task spec in,
//! events and a result out.

use crate::artifacts::Artifact;
use crate::definitions::{AgentDef, SkillDef};
use crate::tools::ToolName;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// A validated task, ready to run.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub description: String,
    pub tools: Vec<ToolName>,
    pub timeout: Duration,
    /// Spend cap in nano-USD.
    pub max_cost_nano_usd: u64,
    pub max_turns: u32,
    /// Sub-agents the task may delegate to (through the `Agent` tool).
    pub agents: Vec<AgentDef>,
    /// Skills the task may invoke (through the `Skill` tool).
    pub skills: Vec<SkillDef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Completed,
    Failed,
    Timeout,
    CostExceeded,
    Cancelled,
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
