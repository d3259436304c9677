//! The Claude Code CLI as a backend: `claude -p --output-format stream-json
//! --verbose --model M --tools ""`, one subprocess per call (a chat call has
//! no tools; a task's run has its tools, see `switchyard_agent::cli_runner`).
//!
//! The prompt goes over stdin and every argument as its own argv entry —
//! never through a shell. The child runs in a process group of its own with a
//! minimal environment; the whole group is killed on timeout, when the caller
//! goes away, or when the call ends. stdout, stderr and stdin are served by
//! separate tasks, so no output size can deadlock a pipe.

use crate::backend::{BackendError, ChunkStream};
use crate::http::unix_now;
use crate::openai_wire::{
    ChatChunk, ChatCompletion, ChatRequest, Delta, FinishReason, PromptTokensDetails, Role, Usage,
};
use serde_json::Value;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use switchyard_core::catalog::ModelEntry;
use switchyard_core::catalog::Upstream;
use switchyard_core::Secret;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The completion field carrying the CLI's own `total_cost_usd`; the gateway
/// uses it as the call's cost and removes it before answering.
pub const COST_FIELD: &str = "switchyard_cost_usd";
/// Output text kept at most; a call producing more fails rather than
/// exhausting memory.
const MAX_TEXT_BYTES: usize = 64 * 1024 * 1024;
/// The end of stderr kept for error messages.
const STDERR_TAIL_BYTES: usize = 8 * 1024;

#[derive(Clone)]
pub struct ClaudeCliBackend {
    command: PathBuf,
    /// `ANTHROPIC_BASE_URL` for the CLI, when the catalog gives one.
    base_url: Option<String>,
    model_id: String,
    upstream_model: String,
    api_key: Option<Secret>,
    timeout: Duration,
}

/// One run of the CLI.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// Sent over stdin.
    pub prompt: String,
    /// `--append-system-prompt`.
    pub system: Option<String>,
    /// `--max-turns` (at least 1).
    pub max_turns: u32,
    /// `--tools` and `--allowedTools`: the tools the CLI has, all allowed;
    /// `None`: no tools at all.
    pub allowed_tools: Option<Vec<String>>,
    /// The working directory (a task's workspace).
    pub cwd: Option<PathBuf>,
    /// Overrides the model's timeout.
    pub timeout: Option<Duration>,
    /// The programs the CLI runs under (a sandbox's argv, ending with
    /// `--`); empty: none.
    pub wrapper: Vec<OsString>,
    /// The executable to run in place of the model's `command` (the same
    /// file, by the path the sandbox shows it at).
    pub program: Option<PathBuf>,
    /// Environment set on top of the minimal one the CLI gets.
    pub env: Vec<(String, OsString)>,
}

/// Kills the child's whole process group when dropped.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The final `result` event.
#[derive(Debug, Default)]
struct Outcome {
    text: String,
    usage: Usage,
    cost_usd: Option<f64>,
}

fn prompt_of(req: &ChatRequest) -> (String, Option<String>) {
    let mut system = Vec::new();
    let mut turns = Vec::new();
    for m in &req.messages {
        let text = m.content.as_ref().map(|c| c.text()).unwrap_or_default();
        match m.role {
            Role::System | Role::Developer => system.push(text),
            Role::User => turns.push(("User", text)),
            Role::Assistant => turns.push(("Assistant", text)),
            Role::Tool => turns.push(("Tool result", text)),
        }
    }
    let prompt = if turns.len() == 1 {
        turns.remove(0).1
    } else {
        turns
            .iter()
            .map(|(who, t)| format!("{who}: {t}"))
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    (prompt, system)
}

/// OpenAI-style usage from the CLI's `usage` object.
pub fn usage_of(v: &Value) -> Usage {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    let prompt = n("input_tokens") + cached + n("cache_creation_input_tokens");
    Usage {
        prompt_tokens: prompt,
        completion_tokens: n("output_tokens"),
        total_tokens: prompt + n("output_tokens"),
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: cached,
        }),
    }
}

impl ClaudeCliBackend {
    /// The executable, as the catalog names it.
    pub fn command(&self) -> &std::path::Path {
        &self.command
    }

    pub fn new(entry: &ModelEntry, api_key: Option<Secret>) -> Self {
        let (command, base_url) = match &entry.upstream {
            Upstream::ClaudeCli { command, base_url } => (
                command.clone(),
                // The CLI adds `/v1/messages` to the base itself.
                base_url
                    .as_ref()
                    .map(|u| u.as_str().trim_end_matches('/').to_owned()),
            ),
            _ => (PathBuf::from("claude"), None),
        };
        Self {
            command,
            base_url,
            model_id: entry.id.clone(),
            upstream_model: entry.upstream_model().to_owned(),
            api_key,
            timeout: entry.timeout(),
        }
    }

    fn spawn(&self, inv: &Invocation) -> Result<(Child, GroupGuard), BackendError> {
        let command = inv.program.as_ref().unwrap_or(&self.command);
        let mut cmd = match inv.wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(command);
                cmd
            }
            None => Command::new(command),
        };
        cmd.args([
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--max-turns",
        ])
        .arg(inv.max_turns.to_string())
        .arg("--model")
        .arg(&self.upstream_model);
        if let Some(s) = &inv.system {
            cmd.arg("--append-system-prompt").arg(s);
        }
        // `--tools` decides which tools exist at all (none for a chat call),
        // `--allowedTools` that those run without asking.
        match &inv.allowed_tools {
            Some(tools) => {
                let tools = tools.join(",");
                cmd.arg("--tools")
                    .arg(&tools)
                    .arg("--allowedTools")
                    .arg(tools);
            }
            None => {
                cmd.arg("--tools").arg("");
            }
        }
        if let Some(dir) = &inv.cwd {
            cmd.current_dir(dir);
        }
        cmd.env_clear();
        for var in ["PATH", "HOME", "LANG", "TMPDIR"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        // A CLI run by a server neither updates itself nor calls home.
        cmd.env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
        cmd.envs(inv.env.iter().map(|(k, v)| (k, v)));
        if let Some(url) = &self.base_url {
            cmd.env("ANTHROPIC_BASE_URL", url);
        }
        if let Some(k) = &self.api_key {
            cmd.env("ANTHROPIC_API_KEY", k.expose());
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| {
            let program = inv.wrapper.first().map_or(self.command.as_os_str(), |p| p);
            BackendError::Connect(format!("cannot run `{}`: {e}", program.to_string_lossy()))
        })?;
        let guard = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
        Ok((child, guard))
    }

    /// Runs the CLI once. `on_event` sees every stream-json event as it
    /// comes (returning false stops the run). Returns the final `result`
    /// event, `is_error` or not.
    pub async fn invoke(
        &self,
        inv: &Invocation,
        mut on_event: impl FnMut(&Value) -> bool,
    ) -> Result<Value, BackendError> {
        let (mut child, _group) = self.spawn(inv)?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(BackendError::Protocol(
                "the CLI's pipes were not opened".into(),
            ));
        };
        let prompt = inv.prompt.clone();
        tokio::spawn(async move {
            let _ = stdin.write_all(prompt.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
        let stderr_tail = tokio::spawn(async move {
            let mut tail: Vec<u8> = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
            String::from_utf8_lossy(&tail).into_owned()
        });
        let timeout = inv.timeout.unwrap_or(self.timeout);
        let read = async {
            let mut lines = BufReader::new(stdout).lines();
            let mut result: Option<Value> = None;
            while let Some(line) = lines
                .next_line()
                .await
                .map_err(|e| BackendError::Protocol(format!("reading the CLI's output: {e}")))?
            {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if !on_event(&event) {
                    return Err(BackendError::Protocol("the caller went away".into()));
                }
                if event["type"] == "result" {
                    result = Some(event);
                }
            }
            Ok(result)
        };
        let result = match tokio::time::timeout(timeout, read).await {
            Err(_) => return Err(BackendError::Timeout(timeout)),
            Ok(r) => r?,
        };
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        match result {
            Some(r) => Ok(r),
            None => {
                let tail = stderr_tail.await.unwrap_or_default();
                let code = match status {
                    Ok(Ok(s)) => s.to_string(),
                    _ => "no exit status".into(),
                };
                Err(BackendError::Protocol(format!(
                    "the CLI ended without a result ({code}): {}",
                    tail.trim()
                )))
            }
        }
    }

    /// A one-turn chat call; `on_text` sees each piece of assistant text.
    async fn run(
        &self,
        req: &ChatRequest,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Outcome, BackendError> {
        let (prompt, system) = prompt_of(req);
        let inv = Invocation {
            prompt,
            system,
            max_turns: 1,
            ..Invocation::default()
        };
        let mut text = String::new();
        let mut too_much = false;
        let result = self
            .invoke(&inv, |event| {
                if event["type"] != "assistant" {
                    return true;
                }
                for block in event["message"]["content"].as_array().into_iter().flatten() {
                    if let Some(t) = block["text"].as_str() {
                        if text.len() + t.len() > MAX_TEXT_BYTES {
                            too_much = true;
                            return false;
                        }
                        text.push_str(t);
                        if !on_text(t) {
                            return false;
                        }
                    }
                }
                true
            })
            .await;
        if too_much {
            return Err(BackendError::Protocol(format!(
                "the CLI produced more than {MAX_TEXT_BYTES} bytes of text"
            )));
        }
        let result = result?;
        if result["is_error"].as_bool().unwrap_or(false) {
            let subtype = result["subtype"].as_str().unwrap_or("error");
            let detail = result["result"].as_str().unwrap_or("");
            return Err(BackendError::Status {
                status: 502,
                message: format!("the CLI reported {subtype}: {detail}"),
                retry_after: None,
            });
        }
        Ok(Outcome {
            text: result["result"]
                .as_str()
                .map_or_else(|| text.clone(), str::to_owned),
            usage: usage_of(&result["usage"]),
            cost_usd: result["total_cost_usd"].as_f64(),
        })
    }

    fn completion(&self, o: Outcome) -> ChatCompletion {
        let mut c = ChatCompletion::assistant(
            format!("chatcmpl-cli-{}", unix_now()),
            self.model_id.clone(),
            o.text,
            FinishReason::Stop,
            o.usage,
        );
        if let Some(cost) = o.cost_usd {
            c.extra.insert(COST_FIELD.into(), Value::from(cost));
        }
        c
    }

    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, BackendError> {
        let outcome = self.run(req, |_| true).await?;
        Ok(self.completion(outcome))
    }

    /// Streams the assistant's text as it is produced; the final chunk
    /// carries the usage (and the CLI's cost in `COST_FIELD`).
    pub async fn stream(&self, req: &ChatRequest) -> Result<ChunkStream, BackendError> {
        // Unbounded: the text callback cannot wait, and the text itself is
        // capped at MAX_TEXT_BYTES.
        let (tx, mut rx) = mpsc::unbounded_channel::<Result<ChatChunk, BackendError>>();
        let backend = self.clone();
        let req = req.clone();
        let id = format!("chatcmpl-cli-{}", unix_now());
        let chunk = {
            let id = id.clone();
            let model = self.model_id.clone();
            move |delta: Delta, finish: Option<FinishReason>, usage: Option<Usage>| {
                ChatChunk::new(&id, &model, delta, finish, usage)
            }
        };
        let first = chunk(
            Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
            None,
        );
        tx.send(Ok(first))
            .map_err(|_| BackendError::Protocol("the caller went away".into()))?;
        tokio::spawn(async move {
            let texts = tx.clone();
            let result = backend
                .run(&req, |t| {
                    let piece = chunk(
                        Delta {
                            content: Some(t.to_owned()),
                            ..Delta::default()
                        },
                        None,
                        None,
                    );
                    // A closed channel means the caller went away: stop the CLI.
                    texts.send(Ok(piece)).is_ok()
                })
                .await;
            match result {
                Ok(o) => {
                    let _ = tx.send(Ok(chunk(Delta::default(), Some(FinishReason::Stop), None)));
                    let mut last = chunk(Delta::default(), None, Some(o.usage));
                    if let Some(cost) = o.cost_usd {
                        last.extra.insert(COST_FIELD.into(), Value::from(cost));
                    }
                    let _ = tx.send(Ok(last));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}
