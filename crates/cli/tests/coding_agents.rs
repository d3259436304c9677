//! Coding agents through Switchyard, with the real CLIs from the npm
//! registry (pinned and installed by scripts/test.sh): Claude Code
//! (`claude -p`, `ANTHROPIC_BASE_URL` = the service) against a scripted
//! Anthropic upstream, and Codex (`codex exec`, a model provider whose
//! `base_url` is the service, `wire_api = "responses"`) against a scripted
//! upstream that speaks only chat completions (translated) and against one
//! that speaks Responses (passed through). Each upstream first asks for
//! the CLI's own shell tool to print a nonce the test wrote to a file, then
//! answers with what the tool returned; the test checks that the nonce came
//! back to the upstream inside the tool result (so the tool really ran
//! through Switchyard's translation both ways), that the CLI exits 0 and
//! prints the answer, and that the calling key's usage records and budget
//! spend are there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tools;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use switchyard_testkit::ports::PortLease;
use switchyard_testkit::process::{Binary, ServerProcess};
use switchyard_testkit::TestDatabase;
use tools::api;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ADMIN: &str = "sy_00000000000000000000000000000000000000000000000000000000000000c0";

/// What every scripted upstream shares: its arguments (port, nonce file,
/// log file), reading a request (appended to the log as a JSON line),
/// replying with JSON, and starting an event stream. Each upstream's script
/// follows, defining `Upstream(Base)`.
const PRELUDE: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, nonce_file, log = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "a")
class Base(BaseHTTPRequestHandler):
    def read(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        log.write(json.dumps({"path": self.path, "body": body}) + "\n"); log.flush()
        return body
    def reply(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def start_stream(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
    def event(self, name, data):
        data["type"] = name
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
    def log_message(self, *args):
        pass
"#;

/// An Anthropic upstream speaking the real wire protocol (streamed and
/// not): with the Bash tool offered and no tool result yet, it asks for
/// `cat NONCE_FILE`; given a tool result, it answers quoting it.
const UPSTREAM: &str = r#"
class Upstream(Base):
    def do_POST(self):
        body = self.read()
        if self.path.startswith("/v1/messages/count_tokens"):
            return self.reply({"input_tokens": 10})
        last = body["messages"][-1] if body.get("messages") else {}
        blocks = last.get("content") if isinstance(last.get("content"), list) else []
        results = [b for b in blocks if b.get("type") == "tool_result"]
        tools = [t.get("name") for t in body.get("tools", [])]
        if results:
            result = results[0].get("content")
            text = result if isinstance(result, str) else "".join(b.get("text", "") for b in result or [])
            content, stop = [{"type": "text", "text": "The file says: " + text.strip().splitlines()[0]}], "end_turn"
        elif "Bash" in tools:
            content = [{"type": "tool_use", "id": "toolu_nonce", "name": "Bash",
                        "input": {"command": "cat " + nonce_file, "description": "Read the nonce file"}}]
            stop = "tool_use"
        else:
            content, stop = [{"type": "text", "text": "ok"}], "end_turn"
        msg = {"id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model"),
               "content": content, "stop_reason": stop, "stop_sequence": None,
               "usage": {"input_tokens": 120, "output_tokens": 30}}
        if not body.get("stream"):
            return self.reply(msg)
        self.start_stream()
        event = self.event
        event("message_start", {"message": dict(msg, content=[], stop_reason=None, usage={"input_tokens": 120, "output_tokens": 1})})
        for i, b in enumerate(content):
            if b["type"] == "text":
                event("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
                event("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": b["text"]}})
            else:
                event("content_block_start", {"index": i, "content_block": dict(b, input={})})
                event("content_block_delta", {"index": i, "delta": {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}})
            event("content_block_stop", {"index": i})
        event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 30}})
        event("message_stop", {})
HTTPServer(("127.0.0.1", port), Upstream).serve_forever()
"#;

/// An OpenAI chat-completions upstream (streamed and not): with a shell
/// tool offered (`exec_command`, `shell_command` or `shell`, whichever the
/// CLI has) and no tool result yet, it asks for `cat NONCE_FILE`; given a
/// tool result, it answers quoting it.
const CHAT_UPSTREAM: &str = r#"
class Upstream(Base):
    def do_POST(self):
        body = self.read()
        tools = [t["function"]["name"] for t in body.get("tools", [])]
        results = [m for m in body.get("messages", []) if m.get("role") == "tool"]
        shell = next((n for n in ("exec_command", "shell_command", "shell") if n in tools), None)
        if results:
            text = results[-1].get("content")
            text = text if isinstance(text, str) else json.dumps(text)
            line = next((l for l in text.splitlines() if l.startswith("nonce-")), text)
            msg, finish = {"role": "assistant", "content": "The file says: " + line}, "stop"
        elif shell:
            args = {"exec_command": {"cmd": "cat " + nonce_file},
                    "shell_command": {"command": "cat " + nonce_file},
                    "shell": {"command": ["bash", "-lc", "cat " + nonce_file]}}[shell]
            call = {"id": "call_nonce", "type": "function", "function": {"name": shell, "arguments": json.dumps(args)}}
            msg, finish = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
        else:
            msg, finish = {"role": "assistant", "content": "ok"}, "stop"
        usage = {"prompt_tokens": 150, "completion_tokens": 25, "total_tokens": 175}
        if not body.get("stream"):
            return self.reply({"id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                               "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": usage})
        self.start_stream()
        def chunk(choices, usage=None):
            c = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"], "choices": choices}
            if usage:
                c["usage"] = usage
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
        delta = {"role": "assistant"}
        if msg.get("tool_calls"):
            delta["tool_calls"] = [dict(msg["tool_calls"][0], index=0)]
        else:
            delta["content"] = msg["content"]
        chunk([{"index": 0, "delta": delta, "finish_reason": None}])
        chunk([{"index": 0, "delta": {}, "finish_reason": finish}])
        chunk([], usage)
        self.wfile.write(b"data: [DONE]\n\n")
HTTPServer(("127.0.0.1", port), Upstream).serve_forever()
"#;

/// An OpenAI upstream that speaks the Responses API (`POST /v1/responses`,
/// streamed as the real event sequence, and not): with a shell tool offered
/// and no `function_call_output` yet, it asks for `cat NONCE_FILE`; given
/// one, it answers quoting it. Chat completions are refused, so a call that
/// was not passed through fails.
const RESPONSES_UPSTREAM: &str = r#"
class Upstream(Base):
    def do_POST(self):
        body = self.read()
        if not self.path.startswith("/v1/responses"):
            self.send_response(404); self.end_headers(); return
        tools = [t.get("name") for t in body.get("tools", []) if t.get("type") == "function"]
        items = body["input"] if isinstance(body.get("input"), list) else []
        outputs = [i for i in items if i.get("type") == "function_call_output"]
        shell = next((n for n in ("exec_command", "shell_command", "shell") if n in tools), None)
        if outputs:
            text = outputs[-1].get("output")
            text = text if isinstance(text, str) else json.dumps(text)
            line = next((l for l in text.splitlines() if l.startswith("nonce-")), text)
            answer = "The file says: " + line
            item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": answer, "annotations": []}]}
        elif shell:
            args = {"exec_command": {"cmd": "cat " + nonce_file},
                    "shell_command": {"command": "cat " + nonce_file},
                    "shell": {"command": ["bash", "-lc", "cat " + nonce_file]}}[shell]
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_nonce", "name": shell,
                    "arguments": json.dumps(args), "status": "completed"}
        else:
            item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "ok", "annotations": []}]}
        usage = {"input_tokens": 140, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 160}
        response = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
                    "model": body["model"], "output": [item], "usage": usage}
        if not body.get("stream"):
            return self.reply(response)
        self.start_stream()
        seq = iter(range(1000))
        def event(name, data):
            self.event(name, dict(data, sequence_number=next(seq)))
        event("response.created", {"response": dict(response, status="in_progress", output=[], usage=None)})
        if item["type"] == "function_call":
            event("response.output_item.added", {"output_index": 0, "item": dict(item, arguments="", status="in_progress")})
            event("response.function_call_arguments.delta", {"item_id": "fc_1", "output_index": 0, "delta": item["arguments"]})
            event("response.function_call_arguments.done", {"item_id": "fc_1", "output_index": 0, "arguments": item["arguments"]})
        else:
            text = item["content"][0]["text"]
            event("response.output_item.added", {"output_index": 0, "item": dict(item, content=[], status="in_progress")})
            event("response.content_part.added", {"item_id": "msg_1", "output_index": 0, "content_index": 0,
                                                  "part": {"type": "output_text", "text": "", "annotations": []}})
            event("response.output_text.delta", {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": text})
            event("response.output_text.done", {"item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text})
            event("response.content_part.done", {"item_id": "msg_1", "output_index": 0, "content_index": 0,
                                                 "part": item["content"][0]})
        event("response.output_item.done", {"output_index": 0, "item": item})
        event("response.completed", {"response": response})
HTTPServer(("127.0.0.1", port), Upstream).serve_forever()
"#;

/// An npm-installed CLI: `SWITCHYARD_TEST_<NAME>`, else the test cache.
fn cli(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(format!("SWITCHYARD_TEST_{}", name.to_uppercase()))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "/var/cache/switchyard/npm/node_modules/.bin/{name}"
            ))
        });
    assert!(
        path.is_file(),
        "{} is missing: scripts/test.sh installs it (npm {package}), or point \
         SWITCHYARD_TEST_{} at one",
        path.display(),
        name.to_uppercase()
    );
    path
}

fn claude() -> PathBuf {
    cli("claude", "@anthropic-ai/claude-code")
}

fn python() -> String {
    std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A scripted upstream (one of the Python servers above) on a port of its
/// own, with the nonce file and the request log in `dir`.
struct Scripted {
    _process: switchyard_testkit::process::Process,
    _port: PortLease,
    url: String,
    nonce: String,
    log: PathBuf,
}

fn scripted(script: &str, dir: &std::path::Path) -> Scripted {
    let nonce = format!("nonce-{:016x}", rand::random::<u64>());
    let nonce_file = dir.join("nonce.txt");
    std::fs::write(&nonce_file, format!("{nonce}\n")).unwrap();
    let log = dir.join("upstream.jsonl");
    let port = PortLease::take();
    let program = format!("{PRELUDE}{script}");
    let process = Binary::new(python()).spawn(&[
        "-c",
        &program,
        &port.port.to_string(),
        nonce_file.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    let up = std::net::SocketAddr::from(([127, 0, 0, 1], port.port));
    switchyard_testkit::poll_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect_timeout(&up, Duration::from_millis(200))
            .map_err(|e| e.to_string())
    });
    Scripted {
        url: format!("http://127.0.0.1:{}", port.port),
        _process: process,
        _port: port,
        nonce,
        log,
    }
}

impl Scripted {
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The service over `catalog`, a developer's key and a budget on it.
fn serve(dir: &std::path::Path, catalog: &str) -> (ServerProcess, TestDatabase, String, String) {
    let file = dir.join("models.toml");
    std::fs::write(&file, catalog).unwrap();
    let db = TestDatabase::sqlite();
    let server = Binary::new(BIN)
        .env("DATABASE_URL", &db.url)
        .env("SWITCHYARD_CONFIG", &file)
        .env("FAKE_ANTHROPIC_KEY", "sk-ant-fake")
        .env("ADMIN_API_KEY", ADMIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .env("TASK_WORKERS", "0")
        .env("TASKS_DIR", dir.join("tasks"))
        .serve();
    let base = server.base_url().to_owned();
    let dev = api(
        &base,
        "POST",
        "/v1/admin/keys",
        ADMIN,
        Some(json!({"name": "alice-laptop", "project": "dev"})),
    );
    let key = dev["key"].as_str().unwrap().to_owned();
    let key_id = dev["id"].as_str().unwrap().to_owned();
    api(
        &base,
        "PUT",
        "/v1/admin/budgets",
        ADMIN,
        Some(json!({"scope": "key", "subject": key_id, "period": "total", "limit_usd": 5.0})),
    );
    (server, db, key, key_id)
}

/// The CLI succeeded, printed the nonce, the nonce reached the upstream in
/// a tool result, and the key's usage and budget spend are recorded.
fn assert_round_trip(
    out: &std::process::Output,
    upstream: &Scripted,
    base: &str,
    key_id: &str,
    upstream_model: &str,
) {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the CLI failed ({}):\n{said}",
        out.status
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("The file says: {}", upstream.nonce)),
        "{said}"
    );
    let requests = upstream.requests();
    // A chat `tool` message, an Anthropic `tool_result` block or a
    // Responses `function_call_output` item.
    let carried = requests.iter().any(|r| {
        let body = &r["body"];
        let turns = body["messages"].as_array().or(body["input"].as_array());
        turns.is_some_and(|ms| {
            ms.iter().any(|m| {
                let is_result = m["role"] == "tool"
                    || m["type"] == "function_call_output"
                    || m["content"]
                        .as_array()
                        .is_some_and(|bs| bs.iter().any(|b| b["type"] == "tool_result"));
                is_result && m.to_string().contains(&upstream.nonce)
            })
        })
    });
    assert!(carried, "no tool result carried the nonce: {requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r["body"]["model"] == upstream_model),
        "{requests:?}"
    );
    let usage = switchyard_testkit::poll_until(Duration::from_secs(10), || {
        let u = api(
            base,
            "GET",
            &format!("/v1/usage?period=day&key_id={key_id}"),
            ADMIN,
            None,
        );
        let n = u["total"]["requests"].as_i64().unwrap_or(0);
        if n >= 2 {
            Ok(u)
        } else {
            Err(format!("{n} usage records so far"))
        }
    });
    assert_ne!(usage["total"]["cost_usd"], "0", "{usage}");
    let budgets = api(base, "GET", "/v1/admin/budgets", ADMIN, None);
    let spent = budgets["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["subject"] == key_id)
        .map(|b| b["spent_usd"].as_str().unwrap().parse::<f64>().unwrap())
        .unwrap();
    assert!(spent > 0.0, "{budgets}");
}

#[test]
fn claude_code_runs_its_tools_through_switchyard_under_a_key_and_budget() {
    let claude = claude();
    let dir = tempfile::tempdir().unwrap();
    let upstream = scripted(UPSTREAM, dir.path());
    // The names Claude Code asks for, as aliases of one catalog model.
    let (server, _db, key, key_id) = serve(
        dir.path(),
        &format!(
            "[[models]]\nid = \"claude-sonnet-4-5\"\naliases = [\"claude-haiku-4-5\", \"sonnet\", \"haiku\", \"opus\"]\n\
             backend = \"anthropic\"\nbase_url = \"{}\"\nupstream_model = \"fake-claude\"\n\
             api_key_env = \"FAKE_ANTHROPIC_KEY\"\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n",
            upstream.url
        ),
    );
    let base = server.base_url().to_owned();
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new(&claude)
        .args([
            "-p",
            "Read the nonce file and tell me what it says.",
            "--allowedTools",
            "Bash",
        ])
        .current_dir(&work)
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", &key)
        .env("ANTHROPIC_MODEL", "claude-sonnet-4-5")
        .env("ANTHROPIC_SMALL_FAST_MODEL", "claude-haiku-4-5")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .output()
        .unwrap();
    assert_round_trip(&out, &upstream, &base, &key_id, "fake-claude");
}

/// A task whose model is a `claude_cli` model runs the real Claude Code CLI
/// inside the task's sandbox: the CLI reaches the upstream at the model's
/// `base_url`, its Bash tool runs, and what the sandbox hides (the tasks
/// folder around the workspace, where the upstream's nonce file lies) it
/// cannot read.
#[test]
fn a_claude_code_task_runs_its_tools_inside_the_sandbox() {
    let claude = claude();
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    let upstream = scripted(UPSTREAM, &tasks);
    let catalog = dir.path().join("models.toml");
    std::fs::write(
        &catalog,
        format!(
            "[[models]]\nid = \"claude-code\"\nbackend = \"claude_cli\"\ncommand = \"{}\"\n\
             base_url = \"{}\"\nupstream_model = \"claude-sonnet-4-5\"\napi_key_env = \"FAKE_ANTHROPIC_KEY\"\n",
            claude.display(),
            upstream.url
        ),
    )
    .unwrap();
    let db = TestDatabase::sqlite();
    let server = Binary::new(BIN)
        .env("DATABASE_URL", &db.url)
        .env("SWITCHYARD_CONFIG", &catalog)
        .env("FAKE_ANTHROPIC_KEY", "sk-ant-fake")
        .env("ADMIN_API_KEY", ADMIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .env("TASKS_DIR", &tasks)
        .serve();
    let task = api(
        server.base_url(),
        "POST",
        "/v1/task",
        ADMIN,
        Some(
            json!({"description": "Read the nonce file and tell me what it says.",
                    "model": "claude-code", "allow_tools": ["Bash"]}),
        ),
    );
    assert_eq!(task["status"], "completed", "{task}");
    let summary = task["result"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("The file says: "), "{summary}");
    // The tool ran, and `cat` found no file where the host has one.
    let requests = serde_json::to_string(&upstream.requests()).unwrap();
    assert!(requests.contains("tool_result"), "the Bash tool never ran");
    assert!(requests.contains("No such file or directory"), "{requests}");
    assert!(!requests.contains(&upstream.nonce) && !task.to_string().contains(&upstream.nonce));
    assert_eq!(task["execution_log"][1]["tool"], "Bash", "{task}");
}

/// Runs `codex exec` through the service against `script`'s upstream (a
/// catalog model with `extra` settings), and checks the round trip and the
/// upstream path every call took.
fn codex_round_trip(script: &str, extra: &str, path: &str) -> Vec<Value> {
    let codex = cli("codex", "@openai/codex");
    let dir = tempfile::tempdir().unwrap();
    let upstream = scripted(script, dir.path());
    let (server, _db, key, key_id) = serve(
        dir.path(),
        &format!(
            "[[models]]\nid = \"gpt-5-codex\"\nbase_url = \"{}/v1\"\nupstream_model = \"fake-gpt\"\n\
             input_per_mtok = 1.25\noutput_per_mtok = 10.0\n{extra}",
            upstream.url
        ),
    );
    let base = server.base_url().to_owned();
    let home = dir.path().join("home");
    let codex_home = home.join(".codex");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "model = \"gpt-5-codex\"\nmodel_provider = \"switchyard\"\n\n\
             [model_providers.switchyard]\nname = \"Switchyard\"\nbase_url = \"{base}/v1\"\n\
             env_key = \"SWITCHYARD_API_KEY\"\nwire_api = \"responses\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(&codex)
        .args([
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "Read the nonce file and tell me what it says.",
        ])
        .current_dir(&work)
        .stdin(std::process::Stdio::null())
        .env("HOME", &home)
        .env("CODEX_HOME", &codex_home)
        .env("SWITCHYARD_API_KEY", &key)
        .output()
        .unwrap();
    assert_round_trip(&out, &upstream, &base, &key_id, "fake-gpt");
    let requests = upstream.requests();
    assert!(requests.iter().all(|r| r["path"] == path), "{requests:?}");
    requests
}

#[test]
fn codex_runs_its_tools_through_the_responses_api_on_a_chat_only_upstream() {
    codex_round_trip(CHAT_UPSTREAM, "", "/v1/chat/completions");
}

#[test]
fn codex_requests_pass_through_to_an_upstream_that_speaks_responses() {
    let requests = codex_round_trip(
        RESPONSES_UPSTREAM,
        "responses_api = true\n",
        "/v1/responses",
    );
    // As Codex sent them: its items and its own options (`include`,
    // `client_metadata`: nothing the chat form has), untranslated.
    for r in &requests {
        let body = &r["body"];
        assert!(body["input"].is_array(), "{body}");
        assert!(body["include"].is_array(), "{body}");
        assert!(body["client_metadata"].is_object(), "{body}");
        assert!(body.get("messages").is_none(), "{body}");
        assert_eq!(body["store"], false, "{body}");
    }
}
