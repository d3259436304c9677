//! The API fuzzed from its own `/openapi.json` by schemathesis (PyPI, in
//! the virtual environment scripts/test.sh manages), on SQLite and on
//! PostgreSQL: valid and invalid requests generated from every published
//! schema, sent with an admin key to the real binary. The run passes when
//! no response is a 5xx and every response matches its published schema
//! and content type — and when every operation answered at least once with
//! something other than 401 or 429, so that a run in which the key stopped
//! working or the limits stopped everything cannot pass.
//!
//! Limits are raised so that the fuzzer is not throttled; no model is
//! configured, so a task the fuzzer submits fails at its first model call
//! (the agent has tests of its own); and a schemathesis hook keeps the
//! fuzzer from revoking, rotating or expiring its own key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tools;

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use switchyard_testkit::process::Binary;
use switchyard_testkit::TestDatabase;
use tools::{output, text, venv_tool};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Test cases per operation and phase: enough to reach every operation's
/// validation and its handler, few enough for a test suite.
const MAX_EXAMPLES: &str = "12";

/// Keeps path parameters away from the fuzzer's own key.
const HOOKS: &str = r#"
import os
import schemathesis

PROTECTED = os.environ["SWITCHYARD_FUZZ_PROTECTED_KEY_ID"]


@schemathesis.hook
def filter_path_parameters(ctx, path_parameters):
    return PROTECTED not in [str(v) for v in (path_parameters or {}).values()]
"#;

/// The operation (`METHOD /template`) a URL path belongs to: a `{param}`
/// segment matches any one segment (schemathesis percent-encodes a `/` in
/// a parameter).
fn operation(templates: &[String], method: &str, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let matches = |template: &&String| {
        let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| t.starts_with('{') || t == s)
    };
    // The most literal template wins (`/v1/tasks/{id}` vs `/v1/tasks`).
    templates
        .iter()
        .filter(matches)
        .max_by_key(|t| t.split('/').filter(|p| !p.starts_with('{')).count())
        .map(|t| format!("{} {t}", method.to_uppercase()))
}

fn fuzz(db: TestDatabase) {
    let st = venv_tool("st", "schemathesis==4.32.5");
    let dir = tempfile::tempdir().unwrap();
    let tasks_dir = dir.path().join("tasks");
    // The built-in local model, already fetched: a task (or a call) that
    // reaches it must not wait for a download.
    let models_dir = dir.path().join("models");
    std::fs::create_dir_all(&models_dir).unwrap();
    let model = switchyard_testkit::local_model_path();
    std::os::unix::fs::symlink(&model, models_dir.join(model.file_name().unwrap())).unwrap();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("LOCAL_MODEL_PRELOAD", "false"),
        ("API_RATE_LIMIT", "1000000"),
        ("UNAUTHENTICATED_RATE_LIMIT", "1000000"),
        ("AUTH_FAILURE_RATE_LIMIT", "1000000"),
        ("TASK_WORKERS", "1"),
        ("TASKS_DIR", tasks_dir.to_str().unwrap()),
        ("MODELS_DIR", models_dir.to_str().unwrap()),
        ("JWT_SECRET", "fuzzing-secret-of-at-least-32-bytes!!"),
        ("LOG_LEVEL", "warn"),
    ];
    let binary = Binary::new(BIN).envs(&env);
    let created = binary.run(&[
        "keys",
        "create",
        "--name",
        "fuzzer",
        "--project",
        "fuzz",
        "--scope",
        "admin",
        "--json",
    ]);
    assert!(created.status.success(), "{}", text(&created));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let key_id = created["id"].as_str().unwrap().to_owned();
    let secret = created["key"].as_str().unwrap().to_owned();

    let server = binary.serve();
    let document: Value = reqwest::blocking::get(server.url("/openapi.json"))
        .unwrap()
        .json()
        .unwrap();
    let templates: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut operations = BTreeMap::<String, Vec<u16>>::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert(format!("{} {path}", method.to_uppercase()), Vec::new());
        }
    }
    assert!(operations.len() >= 30, "{operations:?}");

    let hooks = dir.path().join("hooks.py");
    std::fs::write(&hooks, HOOKS).unwrap();
    let har = dir.path().join("run.har");
    let mut cmd = Command::new(&st);
    cmd.arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--url", server.base_url()])
        .args(["--header", &format!("Authorization: Bearer {secret}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", "20261129"])
        // One worker: Hypothesis describes strategies with `ast.parse`, which
        // CPython 3.11 cannot run on two threads at once ("AST constructor
        // recursion depth mismatch").
        .args(["--workers", "1", "--request-timeout", "30", "--no-shrink"])
        .args(["--report", "har", "--report-har-path"])
        .arg(&har)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", dir.path())
        .env("SWITCHYARD_FUZZ_PROTECTED_KEY_ID", &key_id)
        .env("NO_COLOR", "1")
        .current_dir(dir.path());
    let run = output(&mut cmd);
    let said = text(&run);
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{said}\nserver:\n{}",
        server.stderr()
    );

    let har: Value = serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    assert!(
        entries.len() > operations.len(),
        "{} requests",
        entries.len()
    );
    for entry in entries {
        let method = entry["request"]["method"].as_str().unwrap();
        let url = reqwest::Url::parse(entry["request"]["url"].as_str().unwrap()).unwrap();
        let status = entry["response"]["status"].as_u64().unwrap() as u16;
        assert!(status < 500, "{method} {url} answered {status}");
        if let Some(op) = operation(&templates, method, url.path()) {
            if let Some(seen) = operations.get_mut(&op) {
                seen.push(status);
            }
        }
    }
    let unreached: Vec<String> = operations
        .iter()
        .filter(|(_, statuses)| statuses.iter().all(|s| *s == 401 || *s == 429))
        .map(|(op, statuses)| format!("{op}: {statuses:?}"))
        .collect();
    assert!(
        unreached.is_empty(),
        "operations the fuzzer never got past authentication or rate limits with:\n{}",
        unreached.join("\n")
    );

    // The fuzzer's key came through: it still manages the service.
    let keys = reqwest::blocking::Client::new()
        .get(server.url("/v1/admin/keys"))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    assert_eq!(keys.status(), 200);
    let summary: Vec<&str> = said.lines().rev().take(12).collect();
    eprintln!(
        "schemathesis: {} requests over {} operations, none 5xx\n{}",
        entries.len(),
        operations.len(),
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_api_survives_schemathesis_on_sqlite() {
    fuzz(TestDatabase::sqlite());
}

#[test]
fn the_api_survives_schemathesis_on_postgres() {
    fuzz(TestDatabase::postgres());
}

#[test]
fn urls_are_matched_to_their_operations() {
    let templates: Vec<String> = [
        "/v1/tasks",
        "/v1/tasks/{id}",
        "/v1/tasks/{id}/cancel",
        "/v1/tasks/{id}/artifacts/{path}",
    ]
    .map(String::from)
    .to_vec();
    let op = |m, p| operation(&templates, m, p);
    assert_eq!(op("get", "/v1/tasks").as_deref(), Some("GET /v1/tasks"));
    assert_eq!(
        op("get", "/v1/tasks/x").as_deref(),
        Some("GET /v1/tasks/{id}")
    );
    assert_eq!(
        op("post", "/v1/tasks/x/cancel").as_deref(),
        Some("POST /v1/tasks/{id}/cancel")
    );
    assert_eq!(
        op("get", "/v1/tasks/x/artifacts/a%2Fb.txt").as_deref(),
        Some("GET /v1/tasks/{id}/artifacts/{path}")
    );
    assert_eq!(op("get", "/v1/tasks/x/y"), None);
    assert_eq!(op("get", "/v1/other"), None);
}
