//! Sub-agents and skills, as files an operator drops in place — the files
//! people write for Claude Code, read with Claude Code's meaning:
//!
//! - an agent is `<agents dir>/<anything>.md`: frontmatter with `name`,
//!   `description`, optional `tools` (absent: every tool of the run that
//!   invokes it), `disallowedTools` (taken away from those) and `model`
//!   (absent or `inherit`: its parent's), then its instructions as the body;
//! - a skill is `<skills dir>/<name>/SKILL.md` with `name` (default: the
//!   directory's name), `description` and optional `allowed-tools` (tools the
//!   run that invokes it may use from then on, within the key's task
//!   profile); only the frontmatter is read up front, the body is loaded
//!   when the skill is invoked.
//!
//! Tool lists may be written `Read, Grep`, `Read Grep`, `[Read, Grep]` or as
//! `- Read` lines. A name that is not one of Switchyard's tools (`WebFetch`,
//! `TodoWrite`, an MCP tool), and a grant scoped to a pattern
//! (`Bash(git add *)`, which Switchyard cannot confine a tool to), is left
//! out with a note; in `disallowedTools` a scoped entry takes the whole tool
//! away. The frontmatter is the simple YAML these files use: `key: value`,
//! quoted values, `|`/`>` block scalars, inline and `- item` lists; nested
//! maps (`hooks`, `metadata`) are skipped.

use crate::tools::ToolName;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A sub-agent's `model` that means "the parent's model".
pub const INHERIT_MODEL: &str = "inherit";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentDef {
    pub name: String,
    pub description: String,
    /// The tools it names; `None` when it names none and so inherits every
    /// tool of the run that invokes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolName>>,
    /// Tools taken away from the named or inherited ones.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disallowed_tools: Vec<ToolName>,
    /// The catalog model it runs on; `None` (no `model`, or `inherit`): its
    /// parent's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip)]
    pub instructions: String,
}

impl AgentDef {
    /// The tools this agent runs with under a parent that holds `parent`:
    /// those it names (all of the parent's when it names none), less its
    /// disallowed ones — never one the parent lacks. In the parent's order.
    pub fn tools_from(&self, parent: &[ToolName]) -> Vec<ToolName> {
        parent
            .iter()
            .copied()
            .filter(|t| self.tools.as_ref().is_none_or(|own| own.contains(t)))
            .filter(|t| !self.disallowed_tools.contains(t))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkillDef {
    pub name: String,
    pub description: String,
    /// Its `allowed-tools`: tools the run that invokes it may use from then
    /// on, even where its own list lacks them — within the key's task
    /// profile (see `RunSpec::tool_bound`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<ToolName>,
    #[serde(skip)]
    pub path: PathBuf,
}

impl SkillDef {
    /// The skill's body, read now (skills are loaded only when invoked).
    pub fn load_body(&self) -> std::io::Result<String> {
        let text = std::fs::read_to_string(&self.path)?;
        Ok(split_frontmatter(&text).map_or(text.clone(), |(_, body)| body.to_owned()))
    }
}

/// The agents and skills found on disk, with a problem list for files that
/// could not be used and notes on parts of usable files that were left out
/// (both reported, neither fatal).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Definitions {
    pub agents: BTreeMap<String, AgentDef>,
    pub skills: BTreeMap<String, SkillDef>,
    #[serde(skip)]
    pub problems: Vec<String>,
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// `---\nfront\n---\nbody` → (front, body).
fn split_frontmatter(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("---")?.trim_start_matches(['\r', '\n']);
    let end = rest.find("\n---")?;
    let front = &rest[..end];
    let body = rest[end + 4..]
        .trim_start_matches(['-'])
        .trim_start_matches(['\r', '\n']);
    Some((front, body))
}

/// One frontmatter value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    /// `key: value`, or a block scalar's text.
    Text(String),
    /// `key: [a, b]`, or `- a` lines under `key:`.
    List(Vec<String>),
    /// `key:` and nothing under it: YAML's null.
    Null,
}

/// A block scalar being read: its key, folded (`>`) or literal (`|`), and
/// its lines so far.
struct Block {
    key: String,
    folded: bool,
    lines: Vec<String>,
}

impl Block {
    fn text(&self) -> String {
        let text = if self.folded {
            let mut out = String::new();
            for line in &self.lines {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push(' ');
                    }
                    out.push_str(line);
                }
            }
            out
        } else {
            self.lines.join("\n")
        };
        text.trim().to_owned()
    }
}

/// The frontmatter's top-level fields.
fn parse_frontmatter(front: &str) -> BTreeMap<String, Field> {
    let mut out: BTreeMap<String, Field> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut block: Option<Block> = None;
    for line in front.lines() {
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim();
        let indented = line.starts_with([' ', '\t']);
        if let Some(b) = block.as_mut() {
            if indented || trimmed.is_empty() {
                b.lines.push(trimmed.to_owned());
                continue;
            }
            out.insert(b.key.clone(), Field::Text(b.text()));
            block = None;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let item = trimmed
            .strip_prefix("- ")
            .or_else(|| (trimmed == "-").then_some(""));
        if let (Some(item), Some(key)) = (item, &current) {
            match out.get_mut(key) {
                Some(Field::List(items)) => items.push(plain(item)),
                Some(field @ Field::Null) => *field = Field::List(vec![plain(item)]),
                _ => {}
            }
            continue;
        }
        if indented {
            // A plain scalar continued on the next line; anything else
            // indented belongs to a nested map this reader skips.
            if let Some(Field::Text(text)) = current.as_ref().and_then(|k| out.get_mut(k)) {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(trimmed);
            }
            continue;
        }
        let Some((k, v)) = trimmed.split_once(':') else {
            current = None;
            continue;
        };
        let key = k.trim().to_owned();
        let value = v.trim();
        let field = if value.is_empty() {
            Field::Null
        } else if let Some(inner) = value.strip_prefix('[') {
            let inner = inner.split_once(']').map_or(inner, |(inside, _)| inside);
            Field::List(split_outside_parens(inner, |c| c == ','))
        } else if value.starts_with(['|', '>']) {
            block = Some(Block {
                key: key.clone(),
                folded: value.starts_with('>'),
                lines: Vec::new(),
            });
            Field::Null
        } else {
            Field::Text(plain(value))
        };
        out.insert(key.clone(), field);
        current = Some(key);
    }
    if let Some(b) = block {
        out.insert(b.key.clone(), Field::Text(b.text()));
    }
    out
}

/// A scalar's value: inside its quotes, or without a trailing ` # comment`.
fn plain(value: &str) -> String {
    let value = value.trim();
    for quote in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(quote) {
            return rest
                .split_once(quote)
                .map_or(rest, |(inside, _)| inside)
                .to_owned();
        }
    }
    value
        .split_once(" #")
        .map_or(value, |(before, _)| before)
        .trim()
        .to_owned()
}

/// `text` split where `sep` matches outside parentheses, each part
/// unquoted, empty parts dropped: `Read, Bash(git add *)` → `Read`,
/// `Bash(git add *)`.
fn split_outside_parens(text: &str, sep: impl Fn(char) -> bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut part = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && sep(c) {
            parts.push(std::mem::take(&mut part));
        } else {
            part.push(c);
        }
    }
    parts.push(part);
    parts
        .iter()
        .map(|p| plain(p))
        .filter(|p| !p.is_empty())
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a tool list does with its entries: grant the tools it names (a
/// scoped entry grants nothing, as Switchyard cannot confine a tool to its
/// pattern), or take them away (a scoped entry takes the whole tool).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListUse {
    Grant,
    Deny,
}

impl Definitions {
    pub fn load(agents_dir: &Path, skills_dir: &Path) -> Self {
        let mut defs = Definitions::default();
        if let Ok(entries) = std::fs::read_dir(agents_dir) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(Result::ok).map(|e| e.path()).collect();
            paths.sort();
            for path in paths
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
            {
                let mut notes = Vec::new();
                match Self::agent(&path, &mut notes) {
                    Ok(a) => {
                        defs.agents.insert(a.name.clone(), a);
                        defs.note(&path, notes);
                    }
                    Err(e) => defs.problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(skills_dir) {
            let mut dirs: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            dirs.sort();
            for dir in dirs.into_iter().filter(|d| d.is_dir()) {
                let path = dir.join("SKILL.md");
                let mut notes = Vec::new();
                match Self::skill(&path, &mut notes) {
                    Ok(s) => {
                        defs.skills.insert(s.name.clone(), s);
                        defs.note(&path, notes);
                    }
                    Err(e) => defs.problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
        defs
    }

    fn note(&mut self, path: &Path, notes: Vec<String>) {
        self.notes.extend(
            notes
                .into_iter()
                .map(|n| format!("{}: {n}", path.display())),
        );
    }

    fn agent(path: &Path, notes: &mut Vec<String>) -> Result<AgentDef, String> {
        let def = Definition::read(path, None)?;
        let tools = def
            .list("tools")
            .map(|names| tool_names("tools", &names, ListUse::Grant, notes));
        let disallowed = def
            .list("disallowedTools")
            .into_iter()
            .chain(def.list("disallowed-tools"))
            .flatten()
            .collect::<Vec<_>>();
        Ok(AgentDef {
            description: def.required("description")?,
            tools,
            disallowed_tools: tool_names("disallowedTools", &disallowed, ListUse::Deny, notes),
            model: def.one("model").filter(|m| m != INHERIT_MODEL),
            instructions: def.body,
            name: def.name,
        })
    }

    fn skill(path: &Path, notes: &mut Vec<String>) -> Result<SkillDef, String> {
        let dir_name = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str());
        let def = Definition::read(path, dir_name)?;
        let allowed = def.list("allowed-tools").unwrap_or_default();
        Ok(SkillDef {
            description: def.required("description")?,
            allowed_tools: tool_names("allowed-tools", &allowed, ListUse::Grant, notes),
            name: def.name,
            path: path.to_path_buf(),
        })
    }
}

/// The Switchyard tools a list's entries name, with a note for each entry
/// left out.
fn tool_names(
    field: &str,
    entries: &[String],
    used: ListUse,
    notes: &mut Vec<String>,
) -> Vec<ToolName> {
    let mut tools = Vec::new();
    for entry in entries {
        let (name, scoped) = match entry.split_once('(') {
            Some((name, _)) => (name.trim(), true),
            None => (entry.as_str(), false),
        };
        let Ok(tool) = name.parse::<ToolName>() else {
            notes.push(format!(
                "{field}: `{entry}` is not a tool here (Read, Write, Edit, Glob, Grep, Bash); left out"
            ));
            continue;
        };
        if scoped && used == ListUse::Grant {
            notes.push(format!(
                "{field}: `{entry}` is scoped to a pattern, which Switchyard cannot confine {name} to; left out"
            ));
            continue;
        }
        if !tools.contains(&tool) {
            tools.push(tool);
        }
    }
    tools
}

/// A definition file read: its frontmatter fields, its valid `name`, and its
/// body (trimmed).
struct Definition {
    fields: BTreeMap<String, Field>,
    name: String,
    body: String,
}

impl Definition {
    /// Reads the file; `default_name` stands in for a missing `name`.
    fn read(path: &Path, default_name: Option<&str>) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let (front, body) = split_frontmatter(&text).ok_or("no `---` frontmatter")?;
        let mut def = Self {
            fields: parse_frontmatter(front),
            name: String::new(),
            body: body.trim().to_owned(),
        };
        def.name = match (def.one("name"), default_name) {
            (Some(name), _) => name,
            (None, Some(name)) => name.to_owned(),
            (None, None) => def.required("name")?,
        };
        if !valid_name(&def.name) {
            return Err(format!(
                "`{}` is not a valid name (letters, digits, - and _)",
                def.name
            ));
        }
        Ok(def)
    }

    /// A field's text (a list's first item); `None` when absent or empty.
    fn one(&self, key: &str) -> Option<String> {
        match self.fields.get(key)? {
            Field::Text(t) => Some(t.clone()),
            Field::List(items) => items.first().cloned(),
            Field::Null => None,
        }
        .filter(|v| !v.is_empty())
    }

    /// A list field's entries, split on commas and spaces outside
    /// parentheses; `None` when the field is absent or null (`tools:` with
    /// nothing under it), `Some(empty)` for `[]`.
    fn list(&self, key: &str) -> Option<Vec<String>> {
        let sep = |c: char| c == ',' || c.is_whitespace();
        match self.fields.get(key)? {
            Field::Text(t) => Some(split_outside_parens(t, sep)),
            Field::List(items) => Some(
                items
                    .iter()
                    .flat_map(|i| split_outside_parens(i, sep))
                    .collect(),
            ),
            Field::Null => None,
        }
    }

    fn required(&self, key: &str) -> Result<String, String> {
        self.one(key)
            .ok_or_else(|| format!("frontmatter lacks `{key}`"))
    }
}

#[cfg(test)]
#[path = "definitions_tests.rs"]
mod tests;
