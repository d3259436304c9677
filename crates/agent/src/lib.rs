//! The agent task runtime: workspaces confined to one directory, the file
//! and shell tools an agent may use inside them, and the Bash sandbox with
//! the resource limits of its commands.

pub mod artifacts;
pub mod cli_runner;
pub mod confine;
pub mod definitions;
pub mod limits;
pub mod policy;
pub mod protocol;
pub mod runner;
pub mod sandbox;
mod tool_defs;
pub mod tools;
pub mod workspace;

pub use workspace::{ToolError, Workspace};
