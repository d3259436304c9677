//! The agent loop: the model proposes tool calls, the runtime runs them in
//! the workspace, until the model answers without tools — or a stop
//! condition ends the run: cancel, wall-clock timeout, the cost cap (checked
//! before every model call against that call's estimate), the turn cap, or
//! the same tool call repeated. Every stop returns the partial result.

use crate::artifacts::{self, Snapshot};
use crate::protocol::{EventKind, RunSpec, TaskEvent, TaskOutcome, TaskStatus, TaskUsage};
use crate::sandbox::{run_bash, BashPolicy};
use crate::tools::{self, ToolName};
use crate::workspace::Workspace;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use switchyard_models::openai_wire::{Content, Message, Role, Tool, ToolCall};
use tokio::sync::watch;

use crate::tool_defs::{definitions_holding, system_prompt};
pub use crate::tool_defs::{task_tool_definitions, tool_definitions, AGENT_TOOL, SKILL_TOOL};

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
    /// The same model access for another model name (a sub-agent's), when
    /// that model exists.
    fn for_model(&self, _name: &str) -> Option<Box<dyn Model>> {
        None
    }
}

/// Runs the task to an outcome. `on_event` sees each log entry as it happens.
pub fn run<'a>(
    ws: &'a Workspace,
    bash: &'a BashPolicy,
    model: &'a dyn Model,
    spec: &'a RunSpec,
    cancel: watch::Receiver<bool>,
    on_event: &'a (dyn Fn(&TaskEvent) + Send + Sync),
) -> Pin<Box<dyn Future<Output = TaskOutcome> + Send + 'a>> {
    Box::pin(run_loop(ws, bash, model, spec, cancel, on_event))
}

async fn run_loop(
    ws: &Workspace,
    bash: &BashPolicy,
    model: &dyn Model,
    spec: &RunSpec,
    mut cancel: watch::Receiver<bool>,
    on_event: &(dyn Fn(&TaskEvent) + Send + Sync),
) -> TaskOutcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let before = snapshot(ws).await;
    // The tools the run holds: its own, and those the skills it invokes
    // allow (within `spec.tool_bound`).
    let mut tools = spec.tools.clone();
    let mut tool_defs = definitions_holding(spec, &tools);
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
            let result = if name == AGENT_TOOL || name == SKILL_TOOL {
                if name == SKILL_TOOL {
                    let (text, allowed) = invoke_skill(spec, &tools, &call, &mut log, call_event);
                    if !allowed.is_empty() {
                        tools.extend(allowed);
                        tool_defs = definitions_holding(spec, &tools);
                    }
                    text
                } else {
                    let delegated = Delegation {
                        ws,
                        bash,
                        model,
                        spec,
                        tools: &tools,
                        cancel: cancel.clone(),
                        time_left: deadline.saturating_duration_since(tokio::time::Instant::now()),
                        budget_left: spec
                            .max_cost_nano_usd
                            .saturating_sub(usage.total_cost_nano_usd),
                    };
                    let (text, sub_usage) = delegate(&delegated, &call, &mut log, call_event).await;
                    usage.input_tokens += sub_usage.input_tokens;
                    usage.output_tokens += sub_usage.output_tokens;
                    usage.total_cost_nano_usd += sub_usage.total_cost_nano_usd;
                    text
                }
            } else {
                tokio::select! {
                    r = run_tool(ws, bash, &tools, &call, deadline) => r,
                    () = tokio::time::sleep_until(deadline) => break 'run (TaskStatus::Timeout, Some("the task timed out".into())),
                    _ = cancel.changed() => break 'run (TaskStatus::Cancelled, Some("cancelled".into())),
                }
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
            // A sub-agent's spending counts against the cap too.
            if usage.total_cost_nano_usd > spec.max_cost_nano_usd {
                break 'run (TaskStatus::CostExceeded, Some("max_cost reached".into()));
            }
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
pub(crate) struct Log<'a> {
    pub(crate) events: Vec<TaskEvent>,
    pub(crate) on_event: &'a (dyn Fn(&TaskEvent) + Send + Sync),
}

impl Log<'_> {
    /// Appends an entry; returns its sequence number.
    pub(crate) fn add(
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

/// What a delegation may use of its parent's run.
struct Delegation<'a> {
    ws: &'a Workspace,
    bash: &'a BashPolicy,
    model: &'a dyn Model,
    spec: &'a RunSpec,
    /// The tools the parent holds now.
    tools: &'a [ToolName],
    cancel: watch::Receiver<bool>,
    time_left: Duration,
    budget_left: u64,
}

/// Runs a sub-agent with at most its parent's tools, time and budget, on its
/// own model or its parent's; its log joins the parent's under an
/// `agent_spawn` entry. Returns the text for the parent model and the
/// sub-run's usage.
async fn delegate(
    d: &Delegation<'_>,
    call: &ToolCall,
    log: &mut Log<'_>,
    call_event: u64,
) -> (String, TaskUsage) {
    #[derive(serde::Deserialize)]
    struct Input {
        agent: String,
        prompt: String,
    }
    let input: Input = match serde_json::from_str(&call.function.arguments) {
        Ok(i) => i,
        Err(e) => {
            return (
                format!("error: invalid arguments: {e}"),
                TaskUsage::default(),
            )
        }
    };
    let Some(agent) = d.spec.agents.iter().find(|a| a.name == input.agent) else {
        return (
            format!("error: no sub-agent named `{}` is allowed", input.agent),
            TaskUsage::default(),
        );
    };
    // Never more tools than the parent holds (an agent without `tools`
    // inherits them all), nor a bound past the parent's; no further
    // delegation.
    let sub_spec = RunSpec {
        description: format!("{}\n\nTask: {}", agent.instructions, input.prompt),
        tools: agent.tools_from(d.tools),
        tool_bound: agent.tools_from(&d.spec.tool_bound),
        timeout: d.time_left,
        max_cost_nano_usd: d.budget_left,
        max_turns: d.spec.max_turns,
        agents: Vec::new(),
        skills: d.spec.skills.clone(),
    };
    // Its own model when it names one the catalog has (an alias such as
    // `sonnet`, a dated id); its parent's for `inherit`, no `model`, or a
    // name the catalog lacks (noted).
    let (other_model, on_model) = match agent.model.as_deref() {
        None => (None, "its parent's model".to_owned()),
        Some(name) => match d.model.for_model(name) {
            Some(m) => (Some(m), format!("model `{name}`")),
            None => {
                tracing::warn!(agent = %agent.name, model = name,
                    "a sub-agent's model is not in the catalog; it runs on its parent's");
                (
                    None,
                    format!("its parent's model (`{name}` is not in the catalog)"),
                )
            }
        },
    };
    let model: &dyn Model = other_model.as_deref().unwrap_or(d.model);
    let spawn = log.add(
        EventKind::AgentSpawn,
        Some(AGENT_TOOL),
        format!(
            "{} with tools {:?} on {on_model}",
            agent.name,
            sub_spec
                .tools
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
        ),
        None,
        Some(call_event),
    );
    let outcome = run(d.ws, d.bash, model, &sub_spec, d.cancel.clone(), &|_| {}).await;
    // The sub-run's log, renumbered into the parent's.
    let base = log.events.len() as u64;
    for e in &outcome.execution_log {
        let parent = Some(e.parent.map_or(spawn, |p| p + base));
        log.add(
            e.kind,
            e.tool.as_deref(),
            e.summary.clone(),
            e.duration_ms.map(Duration::from_millis),
            parent,
        );
    }
    let status = serde_json::to_value(outcome.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let text = match &outcome.error {
        None => format!("sub-agent {} finished: {}", agent.name, outcome.summary),
        Some(e) => format!(
            "sub-agent {} stopped ({status}): {e}\npartial result: {}",
            agent.name, outcome.summary
        ),
    };
    (text, outcome.usage)
}

/// Returns a skill's instructions, loaded now, and the tools of its
/// `allowed-tools` the run gains from now on: those it does not hold yet,
/// within `spec.tool_bound` (the key's task profile).
fn invoke_skill(
    spec: &RunSpec,
    held: &[ToolName],
    call: &ToolCall,
    log: &mut Log<'_>,
    call_event: u64,
) -> (String, Vec<ToolName>) {
    #[derive(serde::Deserialize)]
    struct Input {
        name: String,
    }
    let input: Input = match serde_json::from_str(&call.function.arguments) {
        Ok(i) => i,
        Err(e) => return (format!("error: invalid arguments: {e}"), Vec::new()),
    };
    let Some(skill) = spec.skills.iter().find(|s| s.name == input.name) else {
        return (
            format!("error: no skill named `{}` is allowed", input.name),
            Vec::new(),
        );
    };
    let body = skill.load_body();
    let (allowed, withheld): (Vec<ToolName>, Vec<ToolName>) = match &body {
        Ok(_) => skill
            .allowed_tools
            .iter()
            .copied()
            .filter(|t| !held.contains(t))
            .partition(|t| spec.tool_bound.contains(t)),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let names = |tools: &[ToolName]| {
        tools
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut summary = skill.name.clone();
    if !allowed.is_empty() {
        summary.push_str(&format!("; allows {}", names(&allowed)));
    }
    if !withheld.is_empty() {
        summary.push_str(&format!(
            "; {} withheld (beyond this task's bound)",
            names(&withheld)
        ));
    }
    log.add(
        EventKind::SkillInvoke,
        Some(SKILL_TOOL),
        summary,
        None,
        Some(call_event),
    );
    let text = match body {
        Ok(body) if allowed.is_empty() => body,
        Ok(body) => format!(
            "{}\n\n(This skill lets you use {} from now on.)",
            body.trim_end(),
            names(&allowed)
        ),
        Err(e) => format!("error: the skill could not be read: {e}"),
    };
    (text, allowed)
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

pub(crate) async fn snapshot(ws: &Workspace) -> Snapshot {
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
