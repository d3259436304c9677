//! Tests of the agent and skill file formats.

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
