//! The file tools: Read, Write, Edit, Glob and Grep, each confined to the
//! workspace. (Bash lives in [`crate::sandbox`].) Each takes typed input and
//! returns the text the model sees.

mod files;
mod search;

pub use files::{edit, read, write, EditInput, ReadInput, WriteInput, DEFAULT_READ_LINES};
pub use search::{glob, grep, GlobInput, GrepInput, GrepOutput};

/// The tools an agent may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
