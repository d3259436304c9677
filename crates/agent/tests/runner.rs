//! The agent loop driven by a scripted model: multi-turn tool use, and every
//! stop condition.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_agent::artifacts::Change;
use switchyard_agent::protocol::{EventKind, RunSpec, TaskEvent, TaskStatus};
use switchyard_agent::runner::{self, Model, ModelFuture, ModelReply};
use switchyard_agent::sandbox::BashPolicy;
use switchyard_agent::tools::ToolName;
use switchyard_agent::Workspace;
use switchyard_models::openai_wire::{Content, FunctionCall, Message, Role, Tool, ToolCall};

/// Answers with the next scripted message; remembers what it was sent.
struct Scripted {
    replies: Mutex<VecDeque<Message>>,
    seen: Mutex<Vec<Vec<Message>>>,
    cost: u64,
    estimate: u64,
}

impl Scripted {
    fn new(replies: Vec<Message>, cost: u64, estimate: u64) -> Self {
        Self {
            replies: Mutex::new(replies.into()),
            seen: Mutex::new(Vec::new()),
            cost,
            estimate,
        }
    }
}

impl Model for Scripted {
    fn call<'a>(&'a self, messages: &'a [Message], _tools: &'a [Tool]) -> ModelFuture<'a> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(messages.to_vec());
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
