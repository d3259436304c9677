//! Sub-agents and skills, as files an operator drops in place:
//!
//! - an agent is `<agents dir>/<anything>.md`: YAML-style frontmatter with
//!   `name`, `description`, `tools` (a list or comma-separated) and an
//!   optional `model`, then the agent's instructions as the body;
//! - a skill is `<skills dir>/<name>/SKILL.md` with `name` and `description`
//!   frontmatter; only those two are read up front, the body is loaded when
//!   the skill is invoked.

use crate::tools::ToolName;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentDef {
    pub name: String,
    pub description: String,
    pub tools: Vec<ToolName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip)]
    pub instructions: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkillDef {
    pub name: String,
    pub description: String,
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
/// could not be used (reported, not fatal).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Definitions {
    pub agents: BTreeMap<String, AgentDef>,
    pub skills: BTreeMap<String, SkillDef>,
    #[serde(skip)]
    pub problems: Vec<String>,
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

/// The simple `key: value` frontmatter these files use; lists as `[a, b]`,
/// `a, b`, or `- a` lines.
fn parse_frontmatter(front: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in front.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let (Some(item), Some(key)) = (trimmed.strip_prefix("- "), &current) {
            out.entry(key.clone()).or_default().push(unquote(item));
            continue;
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            let key = k.trim().to_owned();
            let value = v.trim().trim_start_matches('[').trim_end_matches(']');
            let values: Vec<String> = if key == "tools" {
                value
                    .split(',')
                    .map(unquote)
                    .filter(|s| !s.is_empty())
                    .collect()
            } else if value.is_empty() {
                Vec::new()
            } else {
                vec![unquote(v.trim())]
            };
            out.insert(key.clone(), values);
            current = Some(key);
        }
    }
    out
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches(['"', '\'']).to_owned()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
                match Self::agent(&path) {
                    Ok(a) => {
                        defs.agents.insert(a.name.clone(), a);
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
                match Self::skill(&path) {
                    Ok(s) => {
                        defs.skills.insert(s.name.clone(), s);
                    }
                    Err(e) => defs.problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
        defs
    }

    fn agent(path: &Path) -> Result<AgentDef, String> {
        let def = Definition::read(path)?;
        let mut tools = Vec::new();
        for t in def.fields.get("tools").cloned().unwrap_or_default() {
            let tool = ToolName::ALL
                .iter()
                .copied()
                .find(|n| n.as_str() == t)
                .ok_or_else(|| format!("unknown tool `{t}`"))?;
            tools.push(tool);
        }
        Ok(AgentDef {
            description: def.required("description")?,
            model: def.one("model"),
            instructions: def.body,
            name: def.name,
            tools,
        })
    }

    fn skill(path: &Path) -> Result<SkillDef, String> {
        let def = Definition::read(path)?;
        Ok(SkillDef {
            description: def.required("description")?,
            name: def.name,
            path: path.to_path_buf(),
        })
    }
}

/// A definition file read: its frontmatter fields, its valid `name`, and its
/// body (trimmed).
struct Definition {
    fields: BTreeMap<String, Vec<String>>,
    name: String,
    body: String,
}

impl Definition {
    fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let (front, body) = split_frontmatter(&text).ok_or("no `---` frontmatter")?;
        let mut def = Self {
            fields: parse_frontmatter(front),
            name: String::new(),
            body: body.trim().to_owned(),
        };
        def.name = def.required("name")?;
        if !valid_name(&def.name) {
            return Err(format!(
                "`{}` is not a valid name (letters, digits, - and _)",
                def.name
            ));
        }
        Ok(def)
    }

    /// A field's first value.
    fn one(&self, key: &str) -> Option<String> {
        self.fields.get(key).and_then(|v| v.first()).cloned()
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

    #[test]
    fn agents_and_skills_load_from_their_directories() {
        let dir = tempfile::tempdir().unwrap();
        let agents = dir.path().join("agents");
        let skills = dir.path().join("skills");
        std::fs::create_dir_all(agents.join("ignored-dir")).unwrap();
        std::fs::write(
            agents.join("reviewer.md"),
            "---\nname: reviewer\ndescription: Reviews code for races\ntools: [Read, Grep]\nmodel: sonnet\n---\nLook for data races.\n",
        )
        .unwrap();
        std::fs::write(
            agents.join("writer.md"),
            "---\nname: writer\ndescription: \"Writes reports\"\ntools:\n  - Write\n  - Read\n---\nWrite clearly.",
        )
        .unwrap();
        std::fs::write(
            agents.join("broken.md"),
            "---\nname: bad name\ndescription: x\n---\n",
        )
        .unwrap();
        std::fs::write(
            agents.join("tool.md"),
            "---\nname: t\ndescription: x\ntools: Teleport\n---\n",
        )
        .unwrap();
        std::fs::create_dir_all(skills.join("report")).unwrap();
        std::fs::write(
            skills.join("report/SKILL.md"),
            "---\nname: report\ndescription: How to write a report\n---\n# Report skill\nUse headings.\n",
        )
        .unwrap();
        let defs = Definitions::load(&agents, &skills);
        assert_eq!(
            defs.agents.keys().collect::<Vec<_>>(),
            ["reviewer", "writer"]
        );
        let r = &defs.agents["reviewer"];
        assert_eq!(
            (r.tools.as_slice(), r.model.as_deref()),
            ([ToolName::Read, ToolName::Grep].as_slice(), Some("sonnet"))
        );
        assert_eq!(r.instructions, "Look for data races.");
        assert_eq!(
            defs.agents["writer"].tools,
            [ToolName::Write, ToolName::Read]
        );
        assert_eq!(defs.agents["writer"].description, "Writes reports");
        assert_eq!(defs.problems.len(), 2, "{:?}", defs.problems);
        let skill = &defs.skills["report"];
        assert_eq!(skill.description, "How to write a report");
        assert_eq!(
            skill.load_body().unwrap(),
            "# Report skill\nUse headings.\n"
        );
        let none = Definitions::load(&dir.path().join("missing"), &dir.path().join("missing"));
        assert!(none.agents.is_empty() && none.skills.is_empty());
    }
}
