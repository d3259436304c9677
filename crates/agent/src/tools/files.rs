//! Read, Write and Edit.

use crate::workspace::{ToolError, Workspace};
use serde::Deserialize;

/// Lines Read returns when no limit is given.
pub const DEFAULT_READ_LINES: usize = 2000;
/// Longest line Read returns in full.
const MAX_LINE_CHARS: usize = 2000;
/// Largest file Read or Edit will load.
const MAX_FILE_BYTES: u64 = 50 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadInput {
    pub path: String,
    /// First line to return, 1-based (default 1).
    #[serde(default)]
    pub offset: Option<usize>,
    /// Lines to return (default 2000).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteInput {
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditInput {
    pub path: String,
    pub old_string: String,
    pub new_string: String,
    /// Replace every occurrence instead of requiring exactly one.
    #[serde(default)]
    pub replace_all: bool,
}

fn load(ws: &Workspace, raw: &str) -> Result<(std::path::PathBuf, String), ToolError> {
    let path = ws.resolve(raw)?;
    let meta = std::fs::metadata(&path).map_err(|e| ToolError::io(raw, &e))?;
    if meta.is_dir() {
        return Err(ToolError::Invalid(format!(
            "`{raw}` is a directory; use Glob to list it"
        )));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ToolError::Invalid(format!(
            "`{raw}` is larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| ToolError::io(raw, &e))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ToolError::Invalid(format!("`{raw}` is not UTF-8 text")))?;
    Ok((path, text))
}

/// Lines of a text file, numbered like `cat -n`.
pub fn read(ws: &Workspace, input: &ReadInput) -> Result<String, ToolError> {
    let (_, text) = load(ws, &input.path)?;
    let offset = input.offset.unwrap_or(1).max(1);
    let limit = input.limit.unwrap_or(DEFAULT_READ_LINES);
    if limit == 0 {
        return Err(ToolError::Invalid("limit must be at least 1".into()));
    }
    let total = text.lines().count();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate().skip(offset - 1).take(limit) {
        let shown: String = line.chars().take(MAX_LINE_CHARS).collect();
        let cut = if shown.len() < line.len() {
            " [line truncated]"
        } else {
            ""
        };
        out.push_str(&format!("{:>6}\t{shown}{cut}\n", i + 1));
    }
    let last = (offset - 1 + limit).min(total);
    if last < total {
        out.push_str(&format!(
            "[{} more lines; continue with offset {}]\n",
            total - last,
            last + 1
        ));
    }
    if total == 0 {
        out.push_str("[empty file]\n");
    }
    Ok(out)
}

/// Writes (creating or replacing) a file, making parent directories.
pub fn write(ws: &Workspace, input: &WriteInput) -> Result<String, ToolError> {
    let path = ws.resolve(&input.path)?;
    if path.is_dir() {
        return Err(ToolError::Invalid(format!(
            "`{}` is a directory",
            input.path
        )));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ToolError::io(&input.path, &e))?;
        // Creating the parents cannot have led outside (resolve checked the
        // existing part); check again in case something raced us.
        ws.resolve(&input.path)?;
    }
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(ToolError::Refused(format!(
            "`{}` is a symlink; write its target instead",
            input.path
        )));
    }
    std::fs::write(&path, input.content.as_bytes()).map_err(|e| ToolError::io(&input.path, &e))?;
    Ok(format!(
        "wrote {} bytes to {}",
        input.content.len(),
        ws.relative(&path)
    ))
}

/// Replaces an exact, unique string in a file (or every occurrence with
/// `replace_all`).
pub fn edit(ws: &Workspace, input: &EditInput) -> Result<String, ToolError> {
    if input.old_string.is_empty() {
        return Err(ToolError::Invalid("old_string must not be empty".into()));
    }
    if input.old_string == input.new_string {
        return Err(ToolError::Invalid(
            "old_string and new_string are the same".into(),
        ));
    }
    let (path, text) = load(ws, &input.path)?;
    let count = text.matches(&input.old_string).count();
    let updated = match (count, input.replace_all) {
        (0, _) => {
            return Err(ToolError::Invalid(format!(
                "old_string was not found in `{}`",
                input.path
            )))
        }
        (1, _) | (_, true) => text.replace(&input.old_string, &input.new_string),
        (n, false) => {
            return Err(ToolError::Invalid(format!(
                "old_string appears {n} times in `{}`; include more context to make it unique, or set replace_all",
                input.path
            )))
        }
    };
    std::fs::write(&path, updated.as_bytes()).map_err(|e| ToolError::io(&input.path, &e))?;
    Ok(format!(
        "replaced {count} occurrence(s) in {}",
        ws.relative(&path)
    ))
}
