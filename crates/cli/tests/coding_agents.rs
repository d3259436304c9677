//! Claude Code through Switchyard: the real `claude` CLI (npm
//! `@anthropic-ai/claude-code`, pinned and installed by scripts/test.sh),
//! with `ANTHROPIC_BASE_URL` set to the service and a Switchyard key as its
//! API key, against a scripted Anthropic upstream. The upstream first asks
//! for the CLI's own Bash tool to print a nonce the test wrote to a file,
//! then answers with what the tool returned; the test checks that the nonce
//! came back to the upstream inside the tool result (so the tool really ran
//! through the translation both ways), that the CLI exits 0 and prints the
//! answer, and that the calling key's usage records and budget spend are
//! there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use switchyard_testkit::ports::PortLease;
use switchyard_testkit::process::Binary;
use switchyard_testkit::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ADMIN: &str = "sy_00000000000000000000000000000000000000000000000000000000000000c0";

/// An Anthropic upstream speaking the real wire protocol (streamed and
/// not): with the Bash tool offered and no tool result yet, it asks for
/// `cat NONCE_FILE`; given a tool result, it answers quoting it. Every
/// request is appended to the log file as a JSON line.
const UPSTREAM: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, nonce_file, log = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "a")
class Upstream(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        log.write(json.dumps({"path": self.path, "body": body}) + "\n"); log.flush()
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
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        def event(name, data):
            data["type"] = name
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
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
    def reply(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", port), Upstream).serve_forever()
"#;

fn claude() -> PathBuf {
    let path = std::env::var_os("SWITCHYARD_TEST_CLAUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/switchyard/npm/node_modules/.bin/claude"));
    assert!(
        path.is_file(),
        "{} is missing: scripts/test.sh installs the Claude Code CLI (npm @anthropic-ai/claude-code), \
         or point SWITCHYARD_TEST_CLAUDE at one",
        path.display()
    );
    path
}

fn python() -> String {
    std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn call(base: &str, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
    let client = reqwest::blocking::Client::new();
    let mut req = client
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().unwrap();
    let status = res.status();
    let body: Value = res.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    body
}

#[test]
fn claude_code_runs_its_tools_through_switchyard_under_a_key_and_budget() {
    let claude = claude();
    let dir = tempfile::tempdir().unwrap();
    let nonce = format!("nonce-{:016x}", rand::random::<u64>());
    let nonce_file = dir.path().join("nonce.txt");
    std::fs::write(&nonce_file, format!("{nonce}\n")).unwrap();
    let log = dir.path().join("upstream.jsonl");

    let port = PortLease::take();
    let upstream = Binary::new(python()).spawn(&[
        "-c",
        UPSTREAM,
        &port.port.to_string(),
        nonce_file.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    let upstream_url = format!("http://127.0.0.1:{}", port.port);
    let up = std::net::SocketAddr::from(([127, 0, 0, 1], port.port));
    switchyard_testkit::poll_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect_timeout(&up, Duration::from_millis(200))
            .map_err(|e| e.to_string())
    });

    // The names Claude Code asks for, as aliases of one catalog model.
    let catalog = dir.path().join("models.toml");
    std::fs::write(
        &catalog,
        format!(
            "[[models]]\nid = \"claude-sonnet-4-5\"\naliases = [\"claude-haiku-4-5\", \"sonnet\", \"haiku\", \"opus\"]\n\
             backend = \"anthropic\"\nbase_url = \"{upstream_url}\"\nupstream_model = \"fake-claude\"\n\
             api_key_env = \"FAKE_ANTHROPIC_KEY\"\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n"
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
        .env("TASK_WORKERS", "0")
        .env("TASKS_DIR", dir.path().join("tasks"))
        .serve();
    let base = server.base_url().to_owned();
    let dev = call(
        &base,
        "POST",
        "/v1/admin/keys",
        ADMIN,
        Some(json!({"name": "alice-laptop", "project": "dev"})),
    );
    let key = dev["key"].as_str().unwrap().to_owned();
    let key_id = dev["id"].as_str().unwrap().to_owned();
    call(
        &base,
        "PUT",
        "/v1/admin/budgets",
        ADMIN,
        Some(json!({"scope": "key", "subject": key_id, "period": "total", "limit_usd": 5.0})),
    );

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
    drop(upstream);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "claude failed ({}):\n{said}",
        out.status
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("The file says: {nonce}")),
        "{said}"
    );

    // The nonce reached the upstream inside a tool result: the CLI ran its
    // Bash tool on the tool call that went through Switchyard.
    let requests: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let carried = requests.iter().any(|r| {
        r["body"]["messages"].as_array().is_some_and(|ms| {
            ms.iter().any(|m| {
                m["content"].as_array().is_some_and(|bs| {
                    bs.iter()
                        .any(|b| b["type"] == "tool_result" && b.to_string().contains(&nonce))
                })
            })
        })
    });
    assert!(carried, "no tool result carried the nonce: {requests:?}");
    assert!(requests.iter().all(|r| r["body"]["model"] == "fake-claude"));

    // Accounted to the developer's key: usage records and budget spend.
    let usage = switchyard_testkit::poll_until(Duration::from_secs(10), || {
        let u = call(
            &base,
            "GET",
            &format!("/v1/usage?period=day&key_id={key_id}"),
            ADMIN,
            None,
        );
        let requests = u["total"]["requests"].as_i64().unwrap_or(0);
        if requests >= 2 {
            Ok(u)
        } else {
            Err(format!("{requests} usage records so far"))
        }
    });
    assert_ne!(usage["total"]["cost_usd"], "0", "{usage}");
    let budgets = call(&base, "GET", "/v1/admin/budgets", ADMIN, None);
    let spent = budgets["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["subject"] == key_id.as_str())
        .map(|b| b["spent_usd"].as_str().unwrap().parse::<f64>().unwrap())
        .unwrap();
    assert!(spent > 0.0, "{budgets}");
}
