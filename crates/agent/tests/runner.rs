//! The agent loop driven by a scripted model: multi-turn tool use, and every
//! stop condition.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_agent::artifacts::Change;
use switchyard_agent::protocol::{EventKind, RunSpec, TaskEvent, TaskStatus};
use switchyard_agent::runner::{self, Model, ModelFuture, ModelReply};
use switchyard_agent::sandbox::BashPolicy;
use switchyard_agent::tools::ToolName;
use switchyard_agent::Workspace;
use switchyard_models::openai_wire::{Content, FunctionCall, Message, Role, Tool, ToolCall};

/// Answers with the next scripted message; remembers what it was sent and
/// the tools it was offered.
struct Scripted {
    replies: Mutex<VecDeque<Message>>,
    seen: Mutex<Vec<Vec<Message>>>,
    offered: Mutex<Vec<Vec<String>>>,
    cost: u64,
    estimate: u64,
}

impl Scripted {
    fn new(replies: Vec<Message>, cost: u64, estimate: u64) -> Self {
        Self {
            replies: Mutex::new(replies.into()),
            seen: Mutex::new(Vec::new()),
            offered: Mutex::new(Vec::new()),
            cost,
            estimate,
        }
    }
}

fn tool_names(tools: &[Tool]) -> Vec<String> {
    tools.iter().map(|t| t.function.name.clone()).collect()
}

impl Model for Scripted {
    fn call<'a>(&'a self, messages: &'a [Message], tools: &'a [Tool]) -> ModelFuture<'a> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(messages.to_vec());
            self.offered.lock().unwrap().push(tool_names(tools));
            let next = self.replies.lock().unwrap().pop_front();
            next.map(|message| ModelReply {
                message,
                input_tokens: 10,
                output_tokens: 5,
                cost_nano_usd: self.cost,
                model: "scripted".into(),
            })
            .ok_or_else(|| "the script ran out".to_owned())
        })
    }

    fn estimate_nano_usd(&self, _messages: &[Message]) -> u64 {
        self.estimate
    }
}

fn calls(list: &[(&str, serde_json::Value)]) -> Message {
    Message {
        role: Role::Assistant,
        content: None,
        name: None,
        tool_calls: Some(
            list.iter()
                .enumerate()
                .map(|(i, (name, args))| ToolCall {
                    index: None,
                    id: Some(format!("call_{i}_{name}")),
                    kind: Some("function".into()),
                    function: FunctionCall {
                        name: Some((*name).into()),
                        arguments: args.to_string(),
                    },
                })
                .collect(),
        ),
        tool_call_id: None,
    }
}

fn answer(text: &str) -> Message {
    Message {
        role: Role::Assistant,
        content: Some(Content::Text(text.into())),
        name: None,
        tool_calls: None,
        tool_call_id: None,
    }
}

fn spec(tools: &[ToolName], timeout: Duration, max_cost: u64, max_turns: u32) -> RunSpec {
    RunSpec {
        description: "find races".into(),
        tools: tools.to_vec(),
        tool_bound: ToolName::ALL.to_vec(),
        timeout,
        max_cost_nano_usd: max_cost,
        max_turns,
        agents: Vec::new(),
        skills: Vec::new(),
    }
}

fn policy() -> BashPolicy {
    let p = BashPolicy::detect(false);
    assert!(
        p.sandboxed(),
        "bubblewrap must be installed (scripts/test.sh installs it)"
    );
    p
}

async fn go(
    ws: &Workspace,
    model: &Scripted,
    spec: &RunSpec,
) -> switchyard_agent::protocol::TaskOutcome {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let seen = Mutex::new(Vec::new());
    let outcome = runner::run(ws, &policy(), model, spec, rx, &|e| {
        seen.lock().unwrap().push(e.seq)
    })
    .await;
    let streamed = seen.into_inner().unwrap();
    assert_eq!(
        streamed,
        outcome
            .execution_log
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        "every event is streamed live"
    );
    outcome
}

#[tokio::test]
async fn multi_turn_tool_use_produces_artifacts_and_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::create(dir.path()).unwrap();
    std::fs::write(ws.root().join("existing.txt"), "keep").unwrap();
    let model = Scripted::new(
        vec![
            calls(&[(
                "Write",
                json!({"path": "notes.txt", "content": "hello race condition\n"}),
            )]),
            calls(&[("Grep", json!({"pattern": "race"}))]),
            calls(&[(
                "Bash",
                json!({"command": "wc -c < notes.txt && echo done > out.log"}),
            )]),
            calls(&[
                (
                    "Edit",
                    json!({"path": "notes.txt", "old_string": "hello", "new_string": "goodbye"}),
                ),
                ("Read", json!({"path": "notes.txt"})),
            ]),
            answer("Found one race condition; notes in notes.txt."),
        ],
        1000,
        500,
    );
    let all = ToolName::ALL.to_vec();
    let out = go(
        &ws,
        &model,
        &spec(&all, Duration::from_secs(60), 1_000_000, 20),
    )
    .await;
    assert_eq!(out.status, TaskStatus::Completed, "{:?}", out.error);
    assert_eq!(out.summary, "Found one race condition; notes in notes.txt.");
    assert_eq!(
        (
            out.usage.turns,
            out.usage.total_cost_nano_usd,
            out.usage.input_tokens
        ),
        (5, 5000, 50)
    );
    let arts: Vec<(&str, Change)> = out
        .artifacts
        .iter()
        .map(|a| (a.path.as_str(), a.change))
        .collect();
    assert_eq!(
        arts,
        [("notes.txt", Change::Added), ("out.log", Change::Added)]
    );
    assert_eq!(
        std::fs::read_to_string(ws.root().join("notes.txt")).unwrap(),
        "goodbye race condition\n"
    );
    let kinds: Vec<EventKind> = out.execution_log.iter().map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [
            ModelCall, ToolCall, ToolResult, ModelCall, ToolCall, ToolResult, ModelCall, ToolCall,
            ToolResult, ModelCall, ToolCall, ToolResult, ToolCall, ToolResult, ModelCall
        ]
    );
    let tool_result = &out.execution_log[2];
    assert_eq!(
        (tool_result.tool.as_deref(), tool_result.parent),
        (Some("Write"), Some(2))
    );
    // The model saw each tool's output.
    let seen = model.seen.lock().unwrap();
    let last_tool = |turn: usize| seen[turn].last().unwrap().content.as_ref().unwrap().text();
    assert_eq!(last_tool(2), "notes.txt:1:hello race condition");
    assert_eq!(last_tool(3).trim(), "21");
    assert!(last_tool(4).contains("goodbye race condition"));
}

#[tokio::test]
async fn the_cost_cap_stops_before_the_call_that_could_exceed_it() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::create(dir.path()).unwrap();
    let script: Vec<Message> = (0..10)
        .map(|i| calls(&[("Glob", json!({"pattern": format!("*{i}")}))]))
        .collect();
    let model = Scripted::new(script, 400, 300);
    let out = go(
        &ws,
        &model,
        &spec(&[ToolName::Glob], Duration::from_secs(60), 1000, 50),
    )
    .await;
    assert_eq!(out.status, TaskStatus::CostExceeded);
    assert_eq!((out.usage.turns, out.usage.total_cost_nano_usd), (2, 800));
    assert_eq!(out.execution_log.last().unwrap().kind, EventKind::Error);
}

#[tokio::test]
async fn turn_cap_repeats_and_disallowed_tools() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::create(dir.path()).unwrap();
    let script: Vec<Message> = (0..10)
        .map(|i| calls(&[("Glob", json!({"pattern": format!("*{i}")}))]))
        .collect();
    let out = go(
        &ws,
        &Scripted::new(script, 1, 1),
        &spec(&[ToolName::Glob], Duration::from_secs(60), 1000, 3),
    )
    .await;
    assert_eq!(out.status, TaskStatus::Failed);
    assert!(out.error.unwrap().contains("max_turns"));
    assert_eq!(out.usage.turns, 3);

    let same: Vec<Message> = (0..5)
        .map(|_| calls(&[("Glob", json!({"pattern": "*"}))]))
        .collect();
    let out = go(
        &ws,
        &Scripted::new(same, 1, 1),
        &spec(&[ToolName::Glob], Duration::from_secs(60), 1000, 10),
    )
    .await;
    assert_eq!(out.status, TaskStatus::Failed);
    assert!(out.error.unwrap().contains("repeated"));
    assert_eq!(out.usage.turns, 3);

    let model = Scripted::new(
        vec![
            calls(&[("Bash", json!({"command": "touch x"}))]),
            answer("ok"),
        ],
        1,
        1,
    );
    let out = go(
        &ws,
        &model,
        &spec(&[ToolName::Read], Duration::from_secs(60), 1000, 10),
    )
    .await;
    assert_eq!(out.status, TaskStatus::Completed);
    assert!(!ws.root().join("x").exists());
    let seen = model.seen.lock().unwrap();
    assert!(seen[1]
        .last()
        .unwrap()
        .content
        .as_ref()
        .unwrap()
        .text()
        .contains("not allowed"));
}

#[tokio::test]
async fn the_task_timeout_kills_a_running_command() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::create(dir.path()).unwrap();
    let model = Scripted::new(
        vec![
            calls(&[("Bash", json!({"command": "sleep 995"}))]),
            answer("never"),
        ],
        1,
        1,
    );
    let started = Instant::now();
    let out = go(
        &ws,
        &model,
        &spec(&[ToolName::Bash], Duration::from_secs(1), 1000, 10),
    )
    .await;
    assert_eq!(out.status, TaskStatus::Timeout);
    assert!(started.elapsed() < Duration::from_secs(4));
    let alive = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains("sleep 995")
            })
    };
    // Killed with the task; the kernel may take a moment to tear it down.
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive() {
        assert!(Instant::now() < deadline, "the command outlived its task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cancel_stops_a_running_task_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::create(dir.path()).unwrap();
    let model = Scripted::new(
        vec![
            calls(&[("Bash", json!({"command": "sleep 30"}))]),
            answer("never"),
        ],
        1,
        1,
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let spec = spec(&[ToolName::Bash], Duration::from_secs(60), 1000, 10);
    let policy = policy();
    let started = Instant::now();
    // Cancels once the task is running its Bash command.
    let in_tool = tokio::sync::Notify::new();
    let on_event = |e: &TaskEvent| {
        if e.kind == EventKind::ToolCall {
            in_tool.notify_one();
        }
    };
    let canceller = async {
        in_tool.notified().await;
        tx.send(true).unwrap();
    };
    let (out, ()) = tokio::join!(
        runner::run(&ws, &policy, &model, &spec, rx, &on_event),
        canceller
    );
    assert_eq!(out.status, TaskStatus::Cancelled);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sub_agents_get_at_most_their_parents_tools_and_skills_load_on_demand() {
    use switchyard_agent::definitions::Definitions;
    let dir = tempfile::tempdir().unwrap();
    let defs_dir = dir.path().join("defs");
    std::fs::create_dir_all(defs_dir.join("agents")).unwrap();
    std::fs::create_dir_all(defs_dir.join("skills/style")).unwrap();
    std::fs::write(
        defs_dir.join("agents/writer.md"),
        "---\nname: writer\ndescription: writes files\ntools: [Write, Bash]\n---\nYou write files.\n",
    )
    .unwrap();
    std::fs::write(
        defs_dir.join("skills/style/SKILL.md"),
        "---\nname: style\ndescription: house style\n---\nUse short sentences.\n",
    )
    .unwrap();
    let defs = Definitions::load(&defs_dir.join("agents"), &defs_dir.join("skills"));
    let ws = Workspace::create(&dir.path().join("ws")).unwrap();
    // Parent turn 1: invoke the skill. Turn 2: delegate. The sub-agent (same
    // scripted model) writes a file, then tries Bash (not allowed to its
    // parent), then answers. Parent turn 3: answer.
    let model = Scripted::new(
        vec![
            calls(&[("Skill", json!({"name": "style"}))]),
            calls(&[(
                "Agent",
                json!({"agent": "writer", "prompt": "write hello.txt"}),
            )]),
            calls(&[("Write", json!({"path": "hello.txt", "content": "hi"}))]),
            calls(&[("Bash", json!({"command": "touch sneaky"}))]),
            answer("wrote hello.txt"),
            answer("Delegated: the writer wrote hello.txt."),
        ],
        10,
        1,
    );
    let mut spec = spec(
        &[ToolName::Read, ToolName::Write],
        Duration::from_secs(60),
        1000,
        10,
    );
    spec.agents = defs.agents.values().cloned().collect();
    spec.skills = defs.skills.values().cloned().collect();
    let out = go(&ws, &model, &spec).await;
    assert_eq!(out.status, TaskStatus::Completed, "{:?}", out.error);
    assert!(ws.root().join("hello.txt").exists());
    assert!(
        !ws.root().join("sneaky").exists(),
        "the sub-agent had a tool its parent lacked"
    );
    assert_eq!(
        out.usage.total_cost_nano_usd, 60,
        "the sub-agent's calls count too"
    );
    let kinds: Vec<EventKind> = out.execution_log.iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&EventKind::SkillInvoke) && kinds.contains(&EventKind::AgentSpawn),
        "{kinds:?}"
    );
    let spawn = out
        .execution_log
        .iter()
        .find(|e| e.kind == EventKind::AgentSpawn)
        .unwrap();
    assert!(out
        .execution_log
        .iter()
        .any(|e| e.parent == Some(spawn.seq) && e.kind == EventKind::ModelCall));
    let seen = model.seen.lock().unwrap();
    assert_eq!(
        seen[1].last().unwrap().content.as_ref().unwrap().text(),
        "Use short sentences.\n"
    );
    let sub_saw_bash_refused = seen[4].last().unwrap().content.as_ref().unwrap().text();
    assert!(
        sub_saw_bash_refused.contains("not allowed"),
        "{sub_saw_bash_refused}"
    );
    assert!(seen[5]
        .last()
        .unwrap()
        .content
        .as_ref()
        .unwrap()
        .text()
        .contains("sub-agent writer finished: wrote hello.txt"));
}

/// The text of the last message the model was sent on its `turn`th call.
fn last_text(seen: &[Vec<Message>], turn: usize) -> String {
    seen[turn].last().unwrap().content.as_ref().unwrap().text()
}

/// Writes agent and skill files (path → text) under `dir` and loads them.
fn definitions(
    dir: &std::path::Path,
    files: &[(&str, &str)],
) -> switchyard_agent::definitions::Definitions {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    switchyard_agent::definitions::Definitions::load(&dir.join("agents"), &dir.join("skills"))
}

#[tokio::test]
async fn an_agent_without_tools_inherits_exactly_its_parents_tools() {
    let dir = tempfile::tempdir().unwrap();
    let defs = definitions(
        &dir.path().join("defs"),
        &[
            (
                "agents/helper.md",
                "---\nname: helper\ndescription: helps with anything\n---\nHelp.\n",
            ),
            (
                "agents/reader.md",
                "---\nname: reader\ndescription: reads only\ndisallowedTools: Write, Edit\n---\nRead.\n",
            ),
        ],
    );
    let ws = Workspace::create(&dir.path().join("ws")).unwrap();
    // helper: writes (its parent may), tries Bash (its parent may not, though
    // the task's bound would allow it), answers. reader: tries Write (taken
    // away), answers.
    let model = Scripted::new(
        vec![
            calls(&[("Agent", json!({"agent": "helper", "prompt": "write a.txt"}))]),
            calls(&[("Write", json!({"path": "a.txt", "content": "a"}))]),
            calls(&[("Bash", json!({"command": "touch sneaky"}))]),
            answer("wrote a.txt"),
            calls(&[("Agent", json!({"agent": "reader", "prompt": "write b.txt"}))]),
            calls(&[("Write", json!({"path": "b.txt", "content": "b"}))]),
            answer("could not write"),
            answer("done"),
        ],
        1,
        1,
    );
    let mut spec = spec(
        &[ToolName::Read, ToolName::Write, ToolName::Grep],
        Duration::from_secs(60),
        1000,
        20,
    );
    spec.agents = defs.agents.values().cloned().collect();
    let out = go(&ws, &model, &spec).await;
    assert_eq!(out.status, TaskStatus::Completed, "{:?}", out.error);
    assert!(ws.root().join("a.txt").exists(), "inherited Write");
    assert!(
        !ws.root().join("sneaky").exists(),
        "Bash is not the parent's"
    );
    assert!(!ws.root().join("b.txt").exists(), "disallowedTools: Write");
    let offered = model.offered.lock().unwrap();
    assert_eq!(offered[0], ["Read", "Write", "Grep", "Agent"]);
    assert_eq!(
        offered[1],
        ["Read", "Write", "Grep"],
        "the parent's, no Agent"
    );
    assert_eq!(offered[5], ["Read", "Grep"]);
    let seen = model.seen.lock().unwrap();
    assert!(last_text(&seen, 3).contains("not allowed"));
    assert!(last_text(&seen, 6).contains("not allowed"));
    let spawns: Vec<&str> = out
        .execution_log
        .iter()
        .filter(|e| e.kind == EventKind::AgentSpawn)
        .map(|e| e.summary.as_str())
        .collect();
    assert_eq!(
        spawns,
        [
            "helper with tools [\"Read\", \"Write\", \"Grep\"] on its parent's model",
            "reader with tools [\"Read\", \"Grep\"] on its parent's model"
        ]
    );
}

/// A model reached through a small catalog: `for_model` resolves names as
/// the gateway does (ids, aliases, dated Anthropic ids); every model shares
/// one script and records which model served each call.
struct Catalogued {
    model: String,
    script: Arc<Mutex<VecDeque<Message>>>,
    served: Arc<Mutex<Vec<String>>>,
}

const CATALOG: [(&str, &str); 2] = [("task-model", "big"), ("claude-haiku-4-5", "haiku")];

impl Model for Catalogued {
    fn call<'a>(&'a self, _messages: &'a [Message], _tools: &'a [Tool]) -> ModelFuture<'a> {
        Box::pin(async move {
            self.served.lock().unwrap().push(self.model.clone());
            let next = self.script.lock().unwrap().pop_front();
            next.map(|message| ModelReply {
                message,
                input_tokens: 1,
                output_tokens: 1,
                cost_nano_usd: 1,
                model: self.model.clone(),
            })
            .ok_or_else(|| "the script ran out".to_owned())
        })
    }

    fn estimate_nano_usd(&self, _messages: &[Message]) -> u64 {
        1
    }

    fn for_model(&self, name: &str) -> Option<Box<dyn Model>> {
        let id = switchyard_core::catalog::resolve_name(name, |n| {
            CATALOG
                .iter()
                .find(|(id, alias)| *id == n || *alias == n)
                .map(|(id, _)| (*id).to_owned())
        })?;
        Some(Box::new(Catalogued {
            model: id,
            script: self.script.clone(),
            served: self.served.clone(),
        }))
    }
}

#[tokio::test]
async fn model_inherit_runs_on_the_parents_model_and_aliases_resolve_through_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let agent = |name: &str, model: &str| {
        (
            format!("agents/{name}.md"),
            format!("---\nname: {name}\ndescription: d\ntools: Read\n{model}---\nGo.\n"),
        )
    };
    let files = [
        agent("inheritor", "model: inherit\n"),
        agent("unset", ""),
        agent("quick", "model: haiku\n"),
        agent("pinned", "model: claude-haiku-4-5-20251001\n"),
        agent("absent", "model: opus\n"),
    ];
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let defs = definitions(&dir.path().join("defs"), &files);
    let ws = Workspace::create(&dir.path().join("ws")).unwrap();
    let order = ["inheritor", "unset", "quick", "pinned", "absent"];
    let mut script = Vec::new();
    for name in order {
        script.push(calls(&[("Agent", json!({"agent": name, "prompt": "go"}))]));
        script.push(answer(&format!("{name} done")));
    }
    script.push(answer("all done"));
    let served = Arc::new(Mutex::new(Vec::new()));
    let model = Catalogued {
        model: "task-model".into(),
        script: Arc::new(Mutex::new(script.into())),
        served: served.clone(),
    };
    let mut spec = spec(&[ToolName::Read], Duration::from_secs(60), 1000, 20);
    spec.agents = defs.agents.values().cloned().collect();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let out = runner::run(&ws, &policy(), &model, &spec, rx, &|_| {}).await;
    assert_eq!(out.status, TaskStatus::Completed, "{:?}", out.error);
    let served = served.lock().unwrap();
    let sub_agents: Vec<&str> = served
        .iter()
        .skip(1)
        .step_by(2)
        .map(String::as_str)
        .collect();
    assert_eq!(
        sub_agents,
        [
            "task-model",       // inherit
            "task-model",       // no model
            "claude-haiku-4-5", // the catalog's alias
            "claude-haiku-4-5", // a dated id of a catalog model
            "task-model",       // not in the catalog: noted, the parent's
        ]
    );
    let absent = out
        .execution_log
        .iter()
        .find(|e| e.kind == EventKind::AgentSpawn && e.summary.starts_with("absent"))
        .unwrap();
    assert!(
        absent
            .summary
            .ends_with("on its parent's model (`opus` is not in the catalog)"),
        "{}",
        absent.summary
    );
}

#[tokio::test]
async fn a_skills_allowed_tools_are_usable_once_it_is_invoked_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let defs = definitions(
        &dir.path().join("defs"),
        &[
            (
                "skills/build/SKILL.md",
                "---\nname: build\ndescription: builds\nallowed-tools: Bash, Edit\n---\nRun make.\n",
            ),
            (
                "agents/narrow.md",
                "---\nname: narrow\ndescription: reads\ntools: Read\n---\nRead.\n",
            ),
        ],
    );
    let ws = Workspace::create(&dir.path().join("ws")).unwrap();
    std::fs::write(ws.root().join("f.txt"), "old").unwrap();
    let edit = json!({"path": "f.txt", "old_string": "old", "new_string": "new"});
    let model = Scripted::new(
        vec![
            calls(&[("Bash", json!({"command": "touch before"}))]),
            calls(&[("Skill", json!({"name": "build"}))]),
            calls(&[("Bash", json!({"command": "touch after"}))]),
            calls(&[("Edit", edit.clone())]),
            // A sub-agent naming its tools gains nothing past them.
            calls(&[("Agent", json!({"agent": "narrow", "prompt": "build"}))]),
            calls(&[("Skill", json!({"name": "build"}))]),
            calls(&[("Bash", json!({"command": "touch narrow"}))]),
            answer("could not"),
            answer("built"),
        ],
        1,
        1,
    );
    // The key's task profile allows Read and Bash: Edit stays out of reach.
    let mut spec = spec(&[ToolName::Read], Duration::from_secs(60), 1000, 20);
    spec.tool_bound = vec![ToolName::Read, ToolName::Bash];
    spec.skills = defs.skills.values().cloned().collect();
    spec.agents = defs.agents.values().cloned().collect();
    let out = go(&ws, &model, &spec).await;
    assert_eq!(out.status, TaskStatus::Completed, "{:?}", out.error);
    assert!(!ws.root().join("before").exists(), "not before the skill");
    assert!(
        ws.root().join("after").exists(),
        "allowed once it is in use"
    );
    assert_eq!(
        std::fs::read_to_string(ws.root().join("f.txt")).unwrap(),
        "old"
    );
    assert!(
        !ws.root().join("narrow").exists(),
        "past the sub-agent's tools"
    );
    let offered = model.offered.lock().unwrap();
    assert_eq!(offered[1], ["Read", "Agent", "Skill"]);
    assert_eq!(offered[2], ["Read", "Bash", "Agent", "Skill"]);
    assert_eq!(offered[5], ["Read", "Skill"], "the sub-agent, before");
    assert_eq!(offered[6], ["Read", "Skill"], "the sub-agent, after");
    let seen = model.seen.lock().unwrap();
    assert!(last_text(&seen, 1).contains("not allowed"));
    assert_eq!(
        last_text(&seen, 2),
        "Run make.\n\n(This skill lets you use Bash from now on.)"
    );
    assert!(
        last_text(&seen, 4).contains("not allowed"),
        "Edit is past the bound"
    );
    assert_eq!(last_text(&seen, 6), "Run make.\n");
    let invokes: Vec<&str> = out
        .execution_log
        .iter()
        .filter(|e| e.kind == EventKind::SkillInvoke)
        .map(|e| e.summary.as_str())
        .collect();
    assert_eq!(
        invokes,
        [
            "build; allows Bash; Edit withheld (beyond this task's bound)",
            "build; Bash, Edit withheld (beyond this task's bound)"
        ]
    );
}

#[test]
fn a_tasks_tools_and_bound_follow_its_keys_task_profile() {
    use switchyard_agent::definitions::Definitions;
    use switchyard_core::keys::TaskProfile;
    use switchyard_core::tasks::TaskSpec;
    let task = TaskSpec {
        description: "x".into(),
        tools: vec![ToolName::Read, ToolName::Bash],
        model: "m".into(),
        timeout_seconds: 60,
        max_cost_nano_usd: 1,
        max_turns: 1,
        files: Vec::new(),
        agents: Vec::new(),
        skills: Vec::new(),
    };
    let defs = Definitions::default();
    let free = RunSpec::for_task(&task, &defs, None);
    assert_eq!(free.tools, [ToolName::Read, ToolName::Bash]);
    assert_eq!(free.tool_bound, ToolName::ALL);
    let profile = TaskProfile {
        allowed_tools: Some(vec![ToolName::Grep, ToolName::Read]),
        ..TaskProfile::default()
    };
    let bounded = RunSpec::for_task(&task, &defs, Some(&profile));
    assert_eq!(
        bounded.tools,
        [ToolName::Read],
        "the profile as it stands now"
    );
    assert_eq!(bounded.tool_bound, [ToolName::Read, ToolName::Grep]);
}
