//! The tools a run offers the model: their OpenAI function definitions
//! (the file and shell tools it holds, `Agent` and `Skill` when it may
//! delegate), and the system prompt naming them.

use crate::protocol::RunSpec;
use crate::tools::ToolName;
use serde_json::{json, Value};
use switchyard_models::openai_wire::{FunctionDef, Tool};

/// The tool that delegates to a sub-agent.
pub const AGENT_TOOL: &str = "Agent";
/// The tool that loads a skill's instructions.
pub const SKILL_TOOL: &str = "Skill";

/// The OpenAI function definitions of a task's tools: the allowed file and
/// shell tools, plus `Agent` and `Skill` when it may use any.
pub fn task_tool_definitions(spec: &RunSpec) -> Vec<Tool> {
    definitions_holding(spec, &spec.tools)
}

/// [`task_tool_definitions`] for a run that holds `tools` now (its own, and
/// any its skills have added).
pub(crate) fn definitions_holding(spec: &RunSpec, tools: &[ToolName]) -> Vec<Tool> {
    let mut defs = tool_definitions(tools);
    if !spec.agents.is_empty() {
        let names: Vec<&str> = spec.agents.iter().map(|a| a.name.as_str()).collect();
        let described: Vec<String> = spec
            .agents
            .iter()
            .map(|a| format!("{}: {}", a.name, a.description))
            .collect();
        defs.push(Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: AGENT_TOOL.into(),
                description: Some(format!("Delegate a sub-task to a sub-agent. Agents: {}", described.join("; "))),
                parameters: Some(json!({"type": "object", "required": ["agent", "prompt"],
                    "properties": {"agent": {"type": "string", "enum": names}, "prompt": {"type": "string"}}})),
            },
        });
    }
    if !spec.skills.is_empty() {
        let names: Vec<&str> = spec.skills.iter().map(|s| s.name.as_str()).collect();
        let described: Vec<String> = spec
            .skills
            .iter()
            .map(|s| format!("{}: {}", s.name, s.description))
            .collect();
        defs.push(Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: SKILL_TOOL.into(),
                description: Some(format!(
                    "Load a skill's instructions. Skills: {}",
                    described.join("; ")
                )),
                parameters: Some(json!({"type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string", "enum": names}}})),
            },
        });
    }
    defs
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

pub(crate) fn system_prompt(allowed: &[ToolName]) -> String {
    let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
    format!(
        "You are an agent working in a private workspace directory. Use the tools ({}) to do the task; \
         all paths are relative to the workspace. When you are done, answer with a short summary of what you did \
         and found, without calling a tool.",
        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
    )
}
