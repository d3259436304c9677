//! The official OpenAI Python SDK against a running `switchyard serve`:
//! plain, streaming and tool-call round trips, and errors. The SDKs come from
//! PyPI (`scripts/test.sh` installs them and sets SWITCHYARD_TEST_PYTHON).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::process::Command;
use switchyard_testkit::fake_openai::FakeOpenAi;
use switchyard_testkit::process::{Binary, ServerProcess};
use switchyard_testkit::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn python() -> String {
    std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("SWITCHYARD_TEST_PYTHON is not set: run the suite with scripts/test.sh, which installs the OpenAI and Anthropic SDKs")
    })
}

const OPENAI_SCRIPT: &str = r#"
import json, sys
from openai import OpenAI
base, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
ask = [{"role": "user", "content": "What is the capital of Germany?"}]
out = {}
r = client.chat.completions.create(model="fast", messages=ask)
out["plain"] = {"content": r.choices[0].message.content, "model": r.model,
                "total_tokens": r.usage.total_tokens, "finish": r.choices[0].finish_reason}
parts, usage = [], None
stream = client.chat.completions.create(model="fast", messages=ask, stream=True,
                                        stream_options={"include_usage": True})
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out["stream"] = {"content": "".join(parts), "completion_tokens": usage}
tools = [{"type": "function", "function": {"name": "get_weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
t = client.chat.completions.create(model="tool", messages=[{"role": "user", "content": "weather?"}], tools=tools)
call = t.choices[0].message.tool_calls[0]
follow = client.chat.completions.create(model="fast", tools=tools, messages=[
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
    {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
out["tool"] = {"name": call.function.name, "args": json.loads(call.function.arguments),
               "finish": t.choices[0].finish_reason, "follow": follow.choices[0].message.content}
try:
    client.chat.completions.create(model="nope", messages=ask)
except Exception as e:
    out["error"] = {"type": type(e).__name__, "status": getattr(e, "status_code", None)}
models = client.models.list()
out["models"] = sorted(m.id for m in models.data)
print(json.dumps(out))
"#;

const ANTHROPIC_SCRIPT: &str = r#"
import json, sys
import anthropic
base, key = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
ask = [{"role": "user", "content": "What is the capital of Germany?"}]
out = {}
m = client.messages.create(model="fast", max_tokens=100, system="be brief", messages=ask)
out["plain"] = {"text": m.content[0].text, "stop": m.stop_reason, "model": m.model,
                "output_tokens": m.usage.output_tokens}
with client.messages.stream(model="fast", max_tokens=100, messages=ask) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
out["stream"] = {"text": text, "stop": final.stop_reason, "output_tokens": final.usage.output_tokens}
tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
t = client.messages.create(model="tool", max_tokens=100, tools=tools,
                           messages=[{"role": "user", "content": "weather?"}])
use = [b for b in t.content if b.type == "tool_use"][0]
follow = client.messages.create(model="fast", max_tokens=100, tools=tools, messages=[
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}])
out["tool"] = {"name": use.name, "input": use.input, "stop": t.stop_reason, "follow": follow.content[0].text}
out["count"] = client.messages.count_tokens(model="fast", system="be brief", messages=ask).input_tokens
try:
    client.messages.create(model="nope", max_tokens=10, messages=ask)
except anthropic.APIStatusError as e:
    out["error"] = {"type": type(e).__name__, "status": e.status_code}
print(json.dumps(out))
"#;

const RESPONSES_SCRIPT: &str = r#"
import json, sys
from openai import OpenAI
base, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
out = {}
r = client.responses.create(model="fast", instructions="be brief", input="What is the capital of Germany?")
out["plain"] = {"text": r.output_text, "status": r.status, "model": r.model,
                "total_tokens": r.usage.total_tokens}
kinds, text, final = [], [], None
with client.responses.stream(model="fast", input="What is the capital of Germany?") as stream:
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text.append(event.delta)
    final = stream.get_final_response()
out["stream"] = {"kinds": kinds, "text": "".join(text), "final": final.output_text,
                 "output_tokens": final.usage.output_tokens}
tools = [{"type": "function", "name": "get_weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
t = client.responses.create(model="tool", input="weather?", tools=tools, store=False)
call = [o for o in t.output if o.type == "function_call"][0]
follow = client.responses.create(model="fast", tools=tools, store=False, input=[
    {"role": "user", "content": "weather?"},
    {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
    {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
out["tool"] = {"name": call.name, "args": json.loads(call.arguments), "follow": follow.output_text}
try:
    client.responses.create(model="fast", input="again", previous_response_id=r.id)
except Exception as e:
    out["error"] = {"type": type(e).__name__, "status": getattr(e, "status_code", None)}
print(json.dumps(out))
"#;

/// A running server over the fake OpenAI upstream with models `fast` and
/// `tool`, and its admin key.
struct Served {
    server: ServerProcess,
    key: String,
    _upstream: FakeOpenAi,
    _rt: tokio::runtime::Runtime,
    _db: TestDatabase,
    _dir: tempfile::TempDir,
}

fn serve() -> Served {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(FakeOpenAi::start());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let base = upstream.base_url();
    std::fs::write(
        &config,
        format!(
            "[[models]]\nid = \"fast\"\nbase_url = \"{base}\"\nupstream_model = \"echo-1\"\n\n\
             [[models]]\nid = \"tool\"\nbase_url = \"{base}\"\n"
        ),
    )
    .unwrap();
    let db = TestDatabase::sqlite();
    let key = format!("sy_{}", "5".repeat(64));
    let server = Binary::new(BIN)
        .env("DATABASE_URL", &db.url)
        .env("SWITCHYARD_CONFIG", &config)
        .env("ADMIN_API_KEY", &key)
        .serve();
    Served {
        server,
        key,
        _upstream: upstream,
        _rt: rt,
        _db: db,
        _dir: dir,
    }
}

fn run_python(script: &str, s: &Served) -> Value {
    let out = Command::new(python())
        .args(["-c", script, s.server.base_url(), &s.key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_anthropic_python_sdk_works_unmodified() {
    let s = serve();
    let v = run_python(ANTHROPIC_SCRIPT, &s);
    assert_eq!(
        v["plain"]["text"],
        "Hello from echo-1! You said: What is the capital of Germany?"
    );
    assert_eq!(v["plain"]["stop"], "end_turn");
    assert_eq!(v["plain"]["model"], "fast");
    assert_eq!(v["plain"]["output_tokens"], 11);
    assert_eq!(v["stream"]["text"], v["plain"]["text"]);
    assert_eq!(v["stream"]["stop"], "end_turn");
    assert_eq!(v["stream"]["output_tokens"], 11);
    assert_eq!(v["tool"]["name"], "get_weather");
    assert_eq!(v["tool"]["input"]["city"], "Berlin");
    assert_eq!(v["tool"]["stop"], "tool_use");
    assert!(v["tool"]["follow"]
        .as_str()
        .unwrap()
        .starts_with("Hello from echo-1!"));
    assert_eq!(v["error"]["type"], "NotFoundError");
    assert_eq!(v["error"]["status"], 404);
    assert!(v["count"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn the_openai_python_sdk_works_unmodified() {
    let s = serve();
    let v = run_python(OPENAI_SCRIPT, &s);
    assert_eq!(
        v["plain"]["content"],
        "Hello from echo-1! You said: What is the capital of Germany?"
    );
    assert_eq!(v["plain"]["model"], "fast");
    assert_eq!(v["plain"]["finish"], "stop");
    assert!(v["plain"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["stream"]["content"], v["plain"]["content"]);
    assert_eq!(v["stream"]["completion_tokens"], 11);
    assert_eq!(v["tool"]["name"], "get_weather");
    assert_eq!(v["tool"]["args"]["city"], "Berlin");
    assert_eq!(v["tool"]["finish"], "tool_calls");
    assert!(v["tool"]["follow"]
        .as_str()
        .unwrap()
        .starts_with("Hello from echo-1!"));
    assert_eq!(v["error"]["type"], "NotFoundError");
    assert_eq!(v["error"]["status"], 404);
    assert_eq!(v["models"], serde_json::json!(["fast", "tool"]));
}

#[test]
fn the_openai_python_sdk_speaks_the_responses_api() {
    let s = serve();
    let v = run_python(RESPONSES_SCRIPT, &s);
    assert_eq!(
        v["plain"]["text"], "Hello from echo-1! You said: What is the capital of Germany?",
        "{v}"
    );
    assert_eq!(v["plain"]["status"], "completed");
    assert_eq!(v["plain"]["model"], "fast");
    assert!(v["plain"]["total_tokens"].as_u64().unwrap() > 0);
    let kinds: Vec<&str> = v["stream"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"response.created"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"response.completed"), "{kinds:?}");
    for k in [
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_item.done",
    ] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
    assert_eq!(v["stream"]["text"], v["plain"]["text"]);
    assert_eq!(v["stream"]["final"], v["plain"]["text"]);
    assert!(v["stream"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["tool"]["name"], "get_weather");
    assert_eq!(v["tool"]["args"]["city"], "Berlin");
    assert!(v["tool"]["follow"]
        .as_str()
        .unwrap()
        .starts_with("Hello from echo-1!"));
    assert_eq!(v["error"]["type"], "BadRequestError");
    assert_eq!(v["error"]["status"], 400);
}
