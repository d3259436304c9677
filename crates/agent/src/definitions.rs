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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frontmatter_text() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            "[a-z]{1,8}: ?[ -~]{0,20}",
            "- ?[ -~]{0,12}",
            "-{1,4}",
            "tools: ?\\[?[A-Za-z, ]{0,20}\\]?",
            any::<String>(),
        ];
        (any::<bool>(), prop::collection::vec(line, 0..8)).prop_map(|(open, lines)| {
            let text = lines.join("\n");
            if open {
                format!("---\n{text}")
            } else {
                text
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Agent and skill files come from operators' directories: any
        /// text parses into fields or is refused, without a panic.
        #[test]
        fn any_frontmatter_parses_or_is_refused(text in frontmatter_text(), crlf in any::<bool>()) {
            let text = if crlf { text.replace('\n', "\r\n") } else { text };
            if let Some((front, body)) = split_frontmatter(&text) {
                prop_assert!(text.len() >= front.len() + body.len());
                let fields = parse_frontmatter(front);
                for key in fields.keys() {
                    prop_assert!(!key.contains('\n'));
                }
            }
            let _ = parse_frontmatter(&text);
        }
    }

    /// Writes `files` (path → text) under a temporary directory and loads
    /// its `agents` and `skills` directories.
    fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Definitions) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let defs = Definitions::load(&dir.path().join("agents"), &dir.path().join("skills"));
        (dir, defs)
    }

    #[test]
    fn agents_and_skills_load_from_their_directories() {
        let (dir, defs) = load(&[
            (
                "agents/reviewer.md",
                "---\nname: reviewer\ndescription: Reviews code for races\ntools: [Read, Grep]\nmodel: sonnet\n---\nLook for data races.\n",
            ),
            (
                "agents/writer.md",
                "---\nname: writer\ndescription: \"Writes reports\"\ntools:\n  - Write\n  - Read\n---\nWrite clearly.",
            ),
            ("agents/broken.md", "---\nname: bad name\ndescription: x\n---\n"),
            ("agents/nodesc.md", "---\nname: nodesc\n---\n"),
            ("agents/ignored-dir/x.md", "---\nname: nested\ndescription: x\n---\n"),
            (
                "skills/report/SKILL.md",
                "---\nname: report\ndescription: How to write a report\n---\n# Report skill\nUse headings.\n",
            ),
        ]);
        assert_eq!(
            defs.agents.keys().collect::<Vec<_>>(),
            ["reviewer", "writer"]
        );
        let r = &defs.agents["reviewer"];
        assert_eq!(
            (r.tools.as_deref(), r.model.as_deref()),
            (
                Some([ToolName::Read, ToolName::Grep].as_slice()),
                Some("sonnet")
            )
        );
        assert_eq!(r.instructions, "Look for data races.");
        assert_eq!(
            defs.agents["writer"].tools,
            Some(vec![ToolName::Write, ToolName::Read])
        );
        assert_eq!(defs.agents["writer"].description, "Writes reports");
        assert_eq!(defs.problems.len(), 2, "{:?}", defs.problems);
        assert!(defs.notes.is_empty(), "{:?}", defs.notes);
        let skill = &defs.skills["report"];
        assert_eq!(skill.description, "How to write a report");
        assert!(skill.allowed_tools.is_empty());
        assert_eq!(
            skill.load_body().unwrap(),
            "# Report skill\nUse headings.\n"
        );
        let none = Definitions::load(&dir.path().join("missing"), &dir.path().join("missing"));
        assert!(none.agents.is_empty() && none.skills.is_empty());
    }

    /// `tools` in each form Claude Code files use: a comma-separated
    /// string, an inline list, `- ` lines, absent (inherit), null (inherit)
    /// and `[]` (none).
    #[test]
    fn agent_tools_in_every_published_form() {
        let agent = |tools_lines: &str| {
            let text = format!("---\nname: a\ndescription: d\n{tools_lines}---\nBody.\n");
            let (_dir, defs) = load(&[("agents/a.md", text.as_str())]);
            (defs.agents.get("a").cloned(), defs.notes)
        };
        use ToolName::*;
        let cases: [(&str, Option<Vec<ToolName>>); 8] = [
            ("tools: Read, Grep, Glob\n", Some(vec![Read, Grep, Glob])),
            ("tools: Read Grep\n", Some(vec![Read, Grep])),
            (
                "tools: [Read, \"Edit\", 'Bash']\n",
                Some(vec![Read, Edit, Bash]),
            ),
            ("tools:\n  - Read\n  - Write\n", Some(vec![Read, Write])),
            (
                "tools: Read, Edit # what it may touch\n",
                Some(vec![Read, Edit]),
            ),
            ("", None),
            ("tools:\n", None),
            ("tools: []\n", Some(vec![])),
        ];
        for (lines, want) in cases {
            let (def, notes) = agent(lines);
            let def = def.unwrap_or_else(|| panic!("`{lines}` was refused"));
            assert_eq!(def.tools, want, "{lines}");
            assert!(notes.is_empty(), "{lines}: {notes:?}");
        }
        // Claude Code tools Switchyard does not offer, and grants scoped to
        // a pattern, are left out with a note; the agent still loads.
        let (def, notes) = agent("tools: Read, WebFetch, Bash(git diff:*), mcp__github__search\n");
        assert_eq!(def.unwrap().tools, Some(vec![Read]));
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].contains("`WebFetch` is not a tool here"),
            "{notes:?}"
        );
        assert!(
            notes[1].contains("`Bash(git diff:*)` is scoped"),
            "{notes:?}"
        );
    }

    #[test]
    fn disallowed_tools_are_taken_from_the_inherited_or_named_set() {
        use ToolName::*;
        let (_dir, defs) = load(&[
            (
                "agents/inherits.md",
                "---\nname: inherits\ndescription: d\ndisallowedTools: Write, Edit\n---\n",
            ),
            (
                "agents/named.md",
                "---\nname: named\ndescription: d\ntools: Read, Write, Bash\ndisallowed-tools:\n  - Bash(rm:*)\n---\n",
            ),
            ("agents/all.md", "---\nname: all\ndescription: d\n---\n"),
        ]);
        let inherits = &defs.agents["inherits"];
        assert_eq!(
            (
                inherits.tools.as_ref(),
                inherits.disallowed_tools.as_slice()
            ),
            (None, [Write, Edit].as_slice())
        );
        let parent = [Read, Write, Edit, Glob, Grep];
        assert_eq!(inherits.tools_from(&parent), [Read, Glob, Grep]);
        // A scoped denial takes the whole tool away.
        let named = &defs.agents["named"];
        assert_eq!(named.disallowed_tools, [Bash]);
        assert_eq!(named.tools_from(&ToolName::ALL), [Read, Write]);
        assert_eq!(
            named.tools_from(&[Read, Grep]),
            [Read],
            "never past the parent"
        );
        // Without `tools`: every tool of the parent, and only those.
        let all = &defs.agents["all"];
        assert_eq!(all.tools_from(&parent), parent);
        assert_eq!(all.tools_from(&[Grep]), [Grep]);
        assert!(all.tools_from(&[]).is_empty());
    }

    #[test]
    fn model_inherit_aliases_and_dated_ids_are_kept_for_the_catalog() {
        let (_dir, defs) = load(&[
            (
                "agents/a.md",
                "---\nname: a\ndescription: d\nmodel: inherit\n---\n",
            ),
            ("agents/b.md", "---\nname: b\ndescription: d\n---\n"),
            (
                "agents/c.md",
                "---\nname: c\ndescription: d\nmodel: haiku\n---\n",
            ),
            (
                "agents/d.md",
                "---\nname: d\ndescription: d\nmodel: \"claude-sonnet-4-5-20250929\"\n---\n",
            ),
        ]);
        let model = |n: &str| defs.agents[n].model.clone();
        assert_eq!(model("a"), None, "inherit: the parent's model");
        assert_eq!(model("b"), None);
        assert_eq!(model("c").as_deref(), Some("haiku"));
        assert_eq!(model("d").as_deref(), Some("claude-sonnet-4-5-20250929"));
    }

    #[test]
    fn skill_allowed_tools_and_published_frontmatter() {
        use ToolName::*;
        let (_dir, defs) = load(&[
            (
                "skills/commit/SKILL.md",
                "---\nname: commit\ndescription: Stage and commit\nallowed-tools: Bash(git add *) Bash(git commit *), Read Grep\n---\nCommit.\n",
            ),
            (
                "skills/lint/SKILL.md",
                "---\ndescription: >\n  Runs the linter\n  and fixes what it finds.\nallowed-tools:\n  - Bash\n  - Edit\nmetadata:\n  name: not-the-name\n  version: 2\n---\nLint.\n",
            ),
            (
                "skills/plain/SKILL.md",
                "---\nname: plain\ndescription: |\n  Line one.\n  Line two.\n---\n",
            ),
        ]);
        let commit = &defs.skills["commit"];
        assert_eq!(commit.allowed_tools, [Read, Grep]);
        assert_eq!(defs.notes.len(), 2, "{:?}", defs.notes);
        // No `name`: the directory's; nested maps are skipped.
        let lint = &defs.skills["lint"];
        assert_eq!(lint.description, "Runs the linter and fixes what it finds.");
        assert_eq!(lint.allowed_tools, [Bash, Edit]);
        assert_eq!(defs.skills["plain"].description, "Line one.\nLine two.");
        assert_eq!(
            serde_json::to_value(&defs.skills["plain"]).unwrap(),
            serde_json::json!({"name": "plain", "description": "Line one.\nLine two."})
        );
        assert_eq!(
            serde_json::to_value(lint).unwrap()["allowed_tools"],
            serde_json::json!(["Bash", "Edit"])
        );
    }
}
