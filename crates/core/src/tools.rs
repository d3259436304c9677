//! The tools an agent task may be allowed, by name. Shared by the API that
//! validates a task, the key profiles that bound it, and the agent that runs it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ToolName {
    Read,
    Write,
    Edit,
    Glob,
    Grep,
    Bash,
}

impl ToolName {
    pub const ALL: [ToolName; 6] = [
        ToolName::Read,
        ToolName::Write,
        ToolName::Edit,
        ToolName::Glob,
        ToolName::Grep,
        ToolName::Bash,
    ];

    /// What a task gets when it names no tools: everything but Bash.
    pub const DEFAULT: [ToolName; 5] = [
        ToolName::Read,
        ToolName::Write,
        ToolName::Edit,
        ToolName::Glob,
        ToolName::Grep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ToolName::Read => "Read",
            ToolName::Write => "Write",
            ToolName::Edit => "Edit",
            ToolName::Glob => "Glob",
            ToolName::Grep => "Grep",
            ToolName::Bash => "Bash",
        }
    }

    /// Whether the tool can change the workspace.
    pub fn writes(self) -> bool {
        matches!(self, ToolName::Write | ToolName::Edit | ToolName::Bash)
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ToolName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown tool `{s}` (Read, Write, Edit, Glob, Grep, Bash)"))
    }
}
