//! `switchyard` with no configuration at all serves the embedded model:
//! chat completions (plain and streamed, true token counts), `auto`, tasks,
//! the official OpenAI Python client, and ten concurrent calls while
//! `/health` stays quick.
//!
//! The process runs in an empty directory with nothing but `PATH` and
//! `PORT=0` set (it prints the port it picks); the model file is placed
//! where the defaults look for it (`./data/models`), as `switchyard models
//! pull` would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_local::template::TemplateMessage;
use switchyard_testkit::process::{Binary, ServerProcess};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const QUESTION: &str = "What is the capital of Germany?";

struct Served {
    base: String,
    key: String,
    _server: ServerProcess,
    _dir: tempfile::TempDir,
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("data/models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(
        switchyard_testkit::local_model_path(),
        models.join(switchyard_local::SMOLLM2_135M.file_name),
    )
    .unwrap();
    let server = Binary::new(BIN).current_dir(dir.path()).serve();
    // The first admin key is printed once on an empty database.
    let key = server.printed_key();
    Served {
        base: server.base_url().to_owned(),
        key,
        _server: server,
        _dir: dir,
    }
}

fn chat(s: &Served, body: &Value) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&s.key)
        .json(body)
        .timeout(Duration::from_secs(300))
        .send()
        .unwrap()
}

/// The prompt's token count, computed here with the same GGUF.
fn prompt_tokens(question: &str) -> u64 {
    let model =
        switchyard_local::LocalModel::load(&switchyard_testkit::local_model_path()).unwrap();
    model
        .prompt(&[TemplateMessage {
            role: "user".into(),
            content: question.into(),
        }])
        .unwrap()
        .len() as u64
}

#[test]
fn with_no_configuration_the_local_model_answers() {
    let s = serve();
    let models: Value = reqwest::blocking::Client::new()
        .get(format!("{}/v1/models", s.base))
        .bearer_auth(&s.key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"smollm2-135m-instruct"), "{ids:?}");

    let ask = json!({"model": "local", "temperature": 0, "max_tokens": 40,
                     "messages": [{"role": "user", "content": QUESTION}]});
    let r = chat(&s, &ask);
    assert_eq!(r.status(), 200);
    let plain: Value = r.json().unwrap();
    let text = plain["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("Berlin"), "{text}");
    assert_eq!(plain["model"], "smollm2-135m-instruct");
    let usage = &plain["usage"];
    assert_eq!(usage["prompt_tokens"], prompt_tokens(QUESTION));
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(completion > 0 && completion <= 40, "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion
    );

    // Streamed: the same greedy answer, token by token, the same counts.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = chat(&s, &streamed);
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = r.text().unwrap();
    let mut pieces = Vec::new();
    let mut stream_usage = Value::Null;
    let mut finish = Value::Null;
    for data in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(c) = chunk["choices"][0]["delta"]["content"].as_str() {
            if !c.is_empty() {
                pieces.push(c.to_owned());
            }
        }
        if !chunk["choices"][0]["finish_reason"].is_null() {
            finish = chunk["choices"][0]["finish_reason"].clone();
        }
        if !chunk["usage"].is_null() {
            stream_usage = chunk["usage"].clone();
        }
    }
    assert!(body.trim_end().ends_with("data: [DONE]"));
    assert_eq!(pieces.concat(), text);
    assert!(
        pieces.len() > 1 && pieces.len() as u64 <= completion,
        "{pieces:?}"
    );
    assert_eq!(stream_usage["completion_tokens"], completion);
    assert_eq!(stream_usage["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(finish, plain["choices"][0]["finish_reason"]);

    // Anthropic's count_tokens, by the model's own template and tokenizer:
    // exactly the prompt tokens the call above used.
    let counted = reqwest::blocking::Client::new()
        .post(format!("{}/v1/messages/count_tokens", s.base))
        .bearer_auth(&s.key)
        .json(&json!({"model": "local", "messages": [{"role": "user", "content": QUESTION}]}))
        .send()
        .unwrap();
    assert_eq!(counted.status(), 200);
    assert_eq!(counted.headers()["x-switchyard-token-count"], "tokenizer");
    let counted: Value = counted.json().unwrap();
    assert_eq!(counted["input_tokens"], usage["prompt_tokens"]);

    // `auto` goes to the local model when no upstream key is configured.
    let mut auto = ask.clone();
    auto["model"] = json!("auto");
    let r = chat(&s, &auto);
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["model"], "smollm2-135m-instruct");

    // Sampling options reach the model: a bad one is a 400 that names it.
    let mut bad = ask.clone();
    bad["repeat_penalty"] = json!(-1);
    let r = chat(&s, &bad);
    assert_eq!(r.status(), 400);
    let err: Value = r.json().unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("repeat_penalty"),
        "{err}"
    );
}

#[test]
fn a_task_runs_on_the_local_model() {
    let s = serve();
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/task", s.base))
        .bearer_auth(&s.key)
        .json(&json!({"description": "Say hello in one short sentence.", "max_turns": 3, "timeout": 300}))
        .timeout(Duration::from_secs(320))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let task: Value = r.json().unwrap();
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        task["usage"]["model_used"], "smollm2-135m-instruct",
        "{task}"
    );
    assert!(
        task["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{task}"
    );
    assert!(
        task["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{task}"
    );
    assert_eq!(task["usage"]["total_cost"].as_f64().unwrap(), 0.0);
    assert!(
        !task["execution_log"].as_array().unwrap().is_empty(),
        "{task}"
    );
}

#[test]
fn ten_concurrent_calls_finish_while_health_stays_quick() {
    let s = serve();
    let base = s.base.clone();
    let key = s.key.clone();
    let answered = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..10)
        .map(|i| {
            let (base, key, answered) = (base.clone(), key.clone(), answered.clone());
            std::thread::spawn(move || {
                let r = reqwest::blocking::Client::new()
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&json!({"model": "local", "max_tokens": 48, "seed": i,
                                  "messages": [{"role": "user", "content": format!("Tell me a fact about the number {i}.")}]}))
                    .timeout(Duration::from_secs(300))
                    .send()
                    .unwrap();
                let status = r.status();
                answered.fetch_add(1, Ordering::SeqCst);
                let v: Value = r.json().unwrap();
                (status, v)
            })
        })
        .collect();
    // Probe /health while the model works: once all ten calls have reached
    // the server (in flight, not counting the /metrics request that asks,
    // or already answered).
    let client = reqwest::blocking::Client::new();
    switchyard_testkit::poll_until(Duration::from_secs(30), || {
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let in_flight: usize = metrics
            .lines()
            .find_map(|l| l.strip_prefix("http_requests_in_flight "))
            .unwrap()
            .parse()
            .unwrap();
        let arrived = in_flight - 1 + answered.load(Ordering::SeqCst);
        if arrived >= 10 {
            Ok(())
        } else {
            Err(format!("{arrived} of 10 calls reached the server"))
        }
    });
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = client.get(format!("{base}/health")).send().unwrap();
        assert_eq!(r.status(), 200);
        slowest = slowest.max(t.elapsed());
        // Spreads the probes over about a second of generation: the pace
        // of the probing, not a wait for anything.
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in callers {
        let (status, v) = c.join().unwrap();
        assert_eq!(status, 200, "{v}");
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");
    }
    assert!(
        slowest < Duration::from_millis(50),
        "/health took {slowest:?} under load"
    );
}

#[test]
fn the_openai_python_client_streams_from_the_local_model() {
    let python = std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("SWITCHYARD_TEST_PYTHON is not set: run the suite with scripts/test.sh")
    });
    let s = serve();
    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0, timeout=300)
parts, usage = [], None
stream = client.chat.completions.create(model="local", temperature=0, max_tokens=40, stream=True,
    stream_options={"include_usage": True},
    messages=[{"role": "user", "content": "What is the capital of Germany?"}])
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage.model_dump()
print(json.dumps({"text": "".join(parts), "chunks": len(parts), "usage": usage}))
"#;
    let out = Command::new(python)
        .args(["-c", script, &s.base, &s.key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["text"].as_str().unwrap().contains("Berlin"), "{v}");
    assert!(v["chunks"].as_u64().unwrap() > 1, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens(QUESTION));
}
