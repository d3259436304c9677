//! Glob (find files by pattern) and Grep (search contents by regex, with
//! ripgrep's matcher and searcher), both walking only the workspace.

use crate::workspace::{ToolError, Workspace};
use grep_regex::RegexMatcherBuilder;
use grep_searcher::sinks::UTF8;
use grep_searcher::{BinaryDetection, SearcherBuilder};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Results returned at most.
const MAX_RESULTS: usize = 1000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobInput {
    /// e.g. `**/*.rs`
    pub pattern: String,
    /// Directory to search in (default: the workspace root).
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrepOutput {
    /// Matching lines with file and line number.
    #[default]
    Content,
    /// Only the names of files that match.
    FilesWithMatches,
    /// The number of matching lines per file.
    Count,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrepInput {
    /// A regular expression (Rust regex syntax).
    pub pattern: String,
    #[serde(default)]
    pub path: Option<String>,
    /// Only files whose path matches this glob, e.g. `*.py`.
    #[serde(default)]
    pub glob: Option<String>,
    #[serde(default)]
    pub case_insensitive: bool,
    #[serde(default)]
    pub output_mode: GrepOutput,
}

/// Files under `start`, never following symlinks and never leaving the root.
fn walk(ws: &Workspace, start: &Path) -> impl Iterator<Item = PathBuf> {
    let root = ws.root().to_path_buf();
    ignore::WalkBuilder::new(start)
        .follow_links(false)
        .hidden(false)
        .parents(false)
        .git_ignore(true)
        .git_global(false)
        .require_git(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
        .map(|e| e.into_path())
        .filter(move |p| p.starts_with(&root))
}

fn start_dir(ws: &Workspace, path: &Option<String>) -> Result<PathBuf, ToolError> {
    match path {
        None => Ok(ws.root().to_path_buf()),
        Some(p) => {
            let dir = ws.resolve(p)?;
            if !dir.exists() {
                return Err(ToolError::NotFound(p.clone()));
            }
            Ok(dir)
        }
    }
}

fn matcher_for(pattern: &str) -> Result<globset::GlobMatcher, ToolError> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| ToolError::Invalid(format!("invalid glob `{pattern}`: {e}")))
}

/// Files whose workspace-relative path matches the pattern, sorted.
pub fn glob(ws: &Workspace, input: &GlobInput) -> Result<String, ToolError> {
    let matcher = matcher_for(&input.pattern)?;
    let start = start_dir(ws, &input.path)?;
    let mut found: Vec<String> = walk(ws, &start)
        .map(|p| ws.relative(&p))
        .filter(|rel| {
            matcher.is_match(rel)
                || Path::new(rel)
                    .file_name()
                    .is_some_and(|n| matcher.is_match(n))
        })
        .collect();
    found.sort();
    let total = found.len();
    found.truncate(MAX_RESULTS);
    let mut out = found.join("\n");
    if total == 0 {
        out = format!("no files match `{}`", input.pattern);
    } else if total > MAX_RESULTS {
        out.push_str(&format!("\n[{} more files not shown]", total - MAX_RESULTS));
    }
    Ok(out)
}

/// Lines matching a regex across the workspace's text files.
pub fn grep(ws: &Workspace, input: &GrepInput) -> Result<String, ToolError> {
    let matcher = RegexMatcherBuilder::new()
        .case_insensitive(input.case_insensitive)
        .build(&input.pattern)
        .map_err(|e| ToolError::Invalid(format!("invalid regex: {e}")))?;
    let filter = input.glob.as_deref().map(matcher_for).transpose()?;
    let start = start_dir(ws, &input.path)?;
    let mut searcher = SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(0))
        .line_number(true)
        .build();
    let mut out: Vec<String> = Vec::new();
    let mut truncated = false;
    for file in walk(ws, &start) {
        let rel = ws.relative(&file);
        if let Some(f) = &filter {
            if !(f.is_match(&rel) || Path::new(&rel).file_name().is_some_and(|n| f.is_match(n))) {
                continue;
            }
        }
        let mut lines: Vec<(u64, String)> = Vec::new();
        let result = searcher.search_path(
            &matcher,
            &file,
            UTF8(|n, line| {
                lines.push((n, line.trim_end_matches(['\n', '\r']).to_owned()));
                Ok(lines.len() < MAX_RESULTS)
            }),
        );
        if result.is_err() || lines.is_empty() {
            continue;
        }
        match input.output_mode {
            GrepOutput::Content => {
                for (n, line) in lines {
                    out.push(format!("{rel}:{n}:{line}"));
                }
            }
            GrepOutput::FilesWithMatches => out.push(rel),
            GrepOutput::Count => out.push(format!("{rel}:{}", lines.len())),
        }
        if out.len() >= MAX_RESULTS {
            truncated = true;
            out.truncate(MAX_RESULTS);
            break;
        }
    }
    if out.is_empty() {
        return Ok(format!("no matches for `{}`", input.pattern));
    }
    let mut text = out.join("\n");
    if truncated {
        text.push_str(&format!("\n[results cut at {MAX_RESULTS}]"));
    }
    Ok(text)
}
