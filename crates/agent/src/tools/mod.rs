//! The file tools: Read, Write, Edit, Glob and Grep, each confined to the
//! workspace. (Bash lives in [`crate::sandbox`].) Each takes typed input and
//! returns the text the model sees.

mod files;
mod search;

pub use files::{edit, read, write, EditInput, ReadInput, WriteInput, DEFAULT_READ_LINES};
pub use search::{glob, grep, GlobInput, GrepInput, GrepOutput};

pub use switchyard_core::tools::ToolName;
