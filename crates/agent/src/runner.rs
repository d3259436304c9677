//! The agent loop: the model proposes tool calls, the runtime runs them in
//! the workspace, until the model answers without tools — or a stop
//! condition ends the run: cancel, wall-clock timeout, the cost cap (checked
//! before every model call against that call's estimate), the turn cap, or
//! the same tool call repeated. Every stop returns the partial result.

use crate::artifacts::{self, Snapshot};
use crate::protocol::{EventKind, TaskEvent, TaskOutcome, TaskSpec, TaskStatus, TaskUsage};
use crate::sandbox::{run_bash, BashPolicy};
use crate::tools::{self, ToolName};
use crate::workspace::Workspace;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use switchyard_models::openai_wire::{Content, FunctionDef, Message, Role, Tool, ToolCall};
use tokio::sync::watch;

/// The longest a single Bash command may run (within the task's timeout).
pub const BASH_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// This many identical tool calls in a row stop the run.
pub const REPEAT_LIMIT: usize = 3;

/// One model turn.
#[derive(Debug, Clone)]
pub struct ModelReply {
    pub message: Message,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_nano_usd: u64,
    pub model: String,
}

pub type ModelFuture<'a> = Pin<Box<dyn Future<Output = Result<ModelReply, String>> + Send + 'a>>;

/// A tool-capable model, as the runtime sees it.
pub trait Model: Send + Sync {
    fn call<'a>(&'a self, messages: &'a [Message], tools: &'a [Tool]) -> ModelFuture<'a>;
    /// An upper bound on the cost of the next call, for the cost cap.
    fn estimate_nano_usd(&self, messages: &[Message]) -> u64;
}

/// The OpenAI function definitions of the allowed tools.
pub fn tool_definitions(allowed: &[ToolName]) -> Vec<Tool> {
    let def = |name: ToolName, description: &str, parameters: Value| Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: name.as_str().into(),
            description: Some(description.into()),
            parameters: Some(parameters),
        },
    };
    let path = json!({"type": "string", "description": "path relative to the workspace"});
    allowed
        .iter()
        .map(|t| match t {
            ToolName::Read => def(*t, "Read a text file (numbered lines).", json!({"type": "object", "required": ["path"],
                "properties": {"path": path, "offset": {"type": "integer"}, "limit": {"type": "integer"}}})),
            ToolName::Write => def(*t, "Create or replace a file.", json!({"type": "object", "required": ["path", "content"],
                "properties": {"path": path, "content": {"type": "string"}}})),
            ToolName::Edit => def(*t, "Replace an exact, unique string in a file.", json!({"type": "object",
                "required": ["path", "old_string", "new_string"],
                "properties": {"path": path, "old_string": {"type": "string"}, "new_string": {"type": "string"},
                               "replace_all": {"type": "boolean"}}})),
            ToolName::Glob => def(*t, "List files matching a glob pattern.", json!({"type": "object", "required": ["pattern"],
                "properties": {"pattern": {"type": "string"}, "path": path}})),
            ToolName::Grep => def(*t, "Search file contents with a regular expression.", json!({"type": "object",
                "required": ["pattern"], "properties": {"pattern": {"type": "string"}, "path": path,
                "glob": {"type": "string"}, "case_insensitive": {"type": "boolean"},
                "output_mode": {"type": "string", "enum": ["content", "files_with_matches", "count"]}}})),
            ToolName::Bash => def(*t, "Run a shell command in the workspace (sandboxed, no network).", json!({"type": "object",
                "required": ["command"], "properties": {"command": {"type": "string"}}})),
        })
        .collect()
}

fn system_prompt(allowed: &[ToolName]) -> String {
    let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
    format!(
        "You are an agent working in a private workspace directory. Use the tools ({}) to do the task; \
         all paths are relative to the workspace. When you are done, answer with a short summary of what you did \
         and found, without calling a tool.",
        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
    )
}

/// Runs the task to an outcome. `on_event` sees each log entry as it happens.
pub async fn run(
    ws: &Workspace,
    bash: &BashPolicy,
    model: &dyn Model,
    spec: &TaskSpec,
    mut cancel: watch::Receiver<bool>,
    on_event: &(dyn Fn(&TaskEvent) + Send + Sync),
) -> TaskOutcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let before = snapshot(ws).await;
    let tool_defs = tool_definitions(&spec.tools);
    let mut messages = vec![
        message(Role::System, system_prompt(&spec.tools)),
        message(Role::User, spec.description.clone()),
    ];
    let mut log = Log {
        events: Vec::new(),
        on_event,
    };
    let mut usage = TaskUsage::default();
    let mut summary = String::new();
    let mut recent_calls: Vec<String> = Vec::new();

    let (status, error) = 'run: loop {
        if usage.turns >= spec.max_turns {
            break 'run (
                TaskStatus::Failed,
                Some(format!("stopped after max_turns ({})", spec.max_turns)),
            );
        }
        if *cancel.borrow() {
            break 'run (TaskStatus::Cancelled, Some("cancelled".into()));
        }
        let estimate = model.estimate_nano_usd(&messages);
        if usage.total_cost_nano_usd + estimate > spec.max_cost_nano_usd {
            break 'run (
                TaskStatus::CostExceeded,
                Some("the next model call could exceed max_cost".into()),
            );
        }
        let call_started = Instant::now();
        let reply = tokio::select! {
            r = model.call(&messages, &tool_defs) => r,
            () = tokio::time::sleep_until(deadline) => break 'run (TaskStatus::Timeout, Some("the task timed out".into())),
            _ = cancel.changed() => break 'run (TaskStatus::Cancelled, Some("cancelled".into())),
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                log.add(
                    EventKind::Error,
                    None,
                    format!("model call failed: {e}"),
                    Some(call_started.elapsed()),
                    None,
                );
                break 'run (TaskStatus::Failed, Some(e));
            }
        };
        usage.turns += 1;
        usage.input_tokens += reply.input_tokens;
        usage.output_tokens += reply.output_tokens;
        usage.total_cost_nano_usd += reply.cost_nano_usd;
        usage.model_used = Some(reply.model.clone());
        let text = reply
            .message
            .content
            .as_ref()
            .map(|c| c.text())
            .unwrap_or_default();
        if !text.trim().is_empty() {
            summary = text.clone();
        }
        let calls = reply.message.tool_calls.clone().unwrap_or_default();
        let model_event = log.add(
            EventKind::ModelCall,
            None,
            format!(
                "{} tool call(s); {} output tokens",
                calls.len(),
                reply.output_tokens
            ),
            Some(call_started.elapsed()),
            None,
        );
        messages.push(reply.message);
        if usage.total_cost_nano_usd > spec.max_cost_nano_usd {
            break 'run (TaskStatus::CostExceeded, Some("max_cost reached".into()));
        }
        if calls.is_empty() {
            break 'run (TaskStatus::Completed, None);
        }
        for call in calls {
            let name = call.function.name.clone().unwrap_or_default();
            let signature = format!("{name}\u{1f}{}", call.function.arguments);
            recent_calls.push(signature.clone());
            let repeats = recent_calls
                .iter()
                .rev()
                .take_while(|c| **c == signature)
                .count();
            if repeats >= REPEAT_LIMIT {
                log.add(
                    EventKind::Error,
                    Some(&name),
                    "the same tool call was repeated; stopping".into(),
                    None,
                    Some(model_event),
                );
                break 'run (
                    TaskStatus::Failed,
                    Some(format!("repeated identical {name} calls")),
                );
            }
            let call_event = log.add(
                EventKind::ToolCall,
                Some(&name),
                describe(&call),
                None,
                Some(model_event),
            );
            let tool_started = Instant::now();
            let result = tokio::select! {
                r = run_tool(ws, bash, &spec.tools, &call, deadline) => r,
                () = tokio::time::sleep_until(deadline) => break 'run (TaskStatus::Timeout, Some("the task timed out".into())),
                _ = cancel.changed() => break 'run (TaskStatus::Cancelled, Some("cancelled".into())),
            };
            let shown: String = result.chars().take(200).collect();
            log.add(
                EventKind::ToolResult,
                Some(&name),
                shown,
                Some(tool_started.elapsed()),
                Some(call_event),
            );
            messages.push(Message {
                role: Role::Tool,
                content: Some(Content::Text(result)),
                name: None,
                tool_calls: None,
                tool_call_id: call.id.clone(),
            });
        }
    };
    if let Some(e) = &error {
        if !log.events.iter().any(|l| l.kind == EventKind::Error) {
            log.add(EventKind::Error, None, e.clone(), None, None);
        }
    }
    let after = snapshot(ws).await;
    usage.duration_seconds = started.elapsed().as_secs_f64();
    TaskOutcome {
        status,
        summary,
        error,
        usage,
        artifacts: artifacts::diff(&before, &after),
        execution_log: log.events,
    }
}

/// The execution log being written, passed to `on_event` as it grows.
struct Log<'a> {
    events: Vec<TaskEvent>,
    on_event: &'a (dyn Fn(&TaskEvent) + Send + Sync),
}

impl Log<'_> {
    /// Appends an entry; returns its sequence number.
    fn add(
        &mut self,
        kind: EventKind,
        tool: Option<&str>,
        text: String,
        took: Option<Duration>,
        parent: Option<u64>,
    ) -> u64 {
        let seq = self.events.len() as u64 + 1;
        let event = TaskEvent {
            seq,
            timestamp: chrono::Utc::now(),
            kind,
            tool: tool.map(str::to_owned),
            summary: text,
            duration_ms: took.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            parent,
        };
        (self.on_event)(&event);
        self.events.push(event);
        seq
    }
}

fn message(role: Role, text: String) -> Message {
    Message {
        role,
        content: Some(Content::Text(text)),
        name: None,
        tool_calls: None,
        tool_call_id: None,
    }
}

async fn snapshot(ws: &Workspace) -> Snapshot {
    let ws = ws.clone();
    tokio::task::spawn_blocking(move || artifacts::snapshot(&ws))
        .await
        .unwrap_or_default()
}

fn describe(call: &ToolCall) -> String {
    let args: String = call.function.arguments.chars().take(200).collect();
    format!("{}({args})", call.function.name.as_deref().unwrap_or("?"))
}

/// A file tool bound to its input, run off the async threads.
type FileTool = Box<dyn FnOnce(&Workspace) -> Result<String, crate::ToolError> + Send>;

/// Runs one tool call; the returned text (a result or an error) goes back to
/// the model.
async fn run_tool(
    ws: &Workspace,
    bash: &BashPolicy,
    allowed: &[ToolName],
    call: &ToolCall,
    deadline: tokio::time::Instant,
) -> String {
    let name = call.function.name.as_deref().unwrap_or("");
    let Some(tool) = ToolName::ALL.iter().copied().find(|t| t.as_str() == name) else {
        return format!("error: there is no tool named `{name}`");
    };
    if !allowed.contains(&tool) {
        return format!("error: the {name} tool is not allowed for this task");
    }
    let args = call.function.arguments.as_str();
    fn parse<T: serde::de::DeserializeOwned>(args: &str) -> Result<T, String> {
        serde_json::from_str(if args.trim().is_empty() { "{}" } else { args })
            .map_err(|e| format!("error: invalid arguments: {e}"))
    }
    let file_tool = |f: FileTool| {
        let ws = ws.clone();
        async move {
            match tokio::task::spawn_blocking(move || f(&ws)).await {
                Ok(Ok(text)) => text,
                Ok(Err(e)) => format!("error: {e}"),
                Err(e) => format!("error: the tool failed: {e}"),
            }
        }
    };
    match tool {
        ToolName::Read => match parse::<tools::ReadInput>(args) {
            Ok(i) => file_tool(Box::new(move |ws| tools::read(ws, &i))).await,
            Err(e) => e,
        },
        ToolName::Write => match parse::<tools::WriteInput>(args) {
            Ok(i) => file_tool(Box::new(move |ws| tools::write(ws, &i))).await,
            Err(e) => e,
        },
        ToolName::Edit => match parse::<tools::EditInput>(args) {
            Ok(i) => file_tool(Box::new(move |ws| tools::edit(ws, &i))).await,
            Err(e) => e,
        },
        ToolName::Glob => match parse::<tools::GlobInput>(args) {
            Ok(i) => file_tool(Box::new(move |ws| tools::glob(ws, &i))).await,
            Err(e) => e,
        },
        ToolName::Grep => match parse::<tools::GrepInput>(args) {
            Ok(i) => file_tool(Box::new(move |ws| tools::grep(ws, &i))).await,
            Err(e) => e,
        },
        ToolName::Bash => {
            #[derive(serde::Deserialize)]
            struct BashInput {
                command: String,
            }
            match parse::<BashInput>(args) {
                Ok(i) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match run_bash(ws, bash, &i.command, left.min(BASH_COMMAND_TIMEOUT)).await {
                        Ok(r) => r.for_model(),
                        Err(e) => format!("error: {e}"),
                    }
                }
                Err(e) => e,
            }
        }
    }
}
