//! The Claude Code CLI backend against a fake `claude` executable that speaks
//! the documented stream-json protocol.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::StreamExt;
use std::time::{Duration, Instant};
use switchyard_core::catalog::{ModelEntry, Upstream};
use switchyard_models::claude_cli::COST_FIELD;
use switchyard_models::openai_wire::{ChatRequest, FinishReason};
use switchyard_models::{BackendError, ClaudeCliBackend};

fn backend(model: &str, timeout: u32) -> ClaudeCliBackend {
    let mut entry: ModelEntry = toml::from_str(&format!(
        "id = \"cli\"\nbackend = \"claude_cli\"\nupstream_model = \"{model}\"\ntimeout_seconds = {timeout}\n"
    ))
    .unwrap();
    entry.upstream = Upstream::ClaudeCli {
        command: switchyard_testkit::fake_claude(),
        base_url: None,
    };
    ClaudeCliBackend::new(&entry, None)
}

fn ask(text: &str) -> ChatRequest {
    serde_json::from_value(
        serde_json::json!({"model": "cli", "messages": [{"role": "user", "content": text}]}),
    )
    .unwrap()
}

#[tokio::test]
async fn the_prompt_goes_over_stdin_literally_and_the_result_is_parsed() {
    // Shell syntax in the prompt reaches the CLI untouched: nothing runs it.
    let prompt = "What is 2+2? $(touch /tmp/sy-pwned) `id`; rm -rf / && echo 'x'";
    let c = backend("default", 30).complete(&ask(prompt)).await.unwrap();
    let text = c.choices[0].message.content.as_ref().unwrap().text();
    assert_eq!(text, format!("Hello from claude CLI! You said: {prompt}"));
    assert!(!std::path::Path::new("/tmp/sy-pwned").exists());
    let usage = c.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.cached_tokens()), (9, 2));
    assert_eq!(c.extra[COST_FIELD], 0.0123);
    assert_eq!(c.model, "cli");
}

#[tokio::test]
async fn ten_megabytes_of_output_do_not_deadlock() {
    let started = Instant::now();
    let c = backend("big", 60).complete(&ask("go")).await.unwrap();
    let text = c.choices[0].message.content.as_ref().unwrap().text();
    assert_eq!(text.len(), 10 * 1024 * 1024);
    assert!(started.elapsed() < Duration::from_secs(30));
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence; a zombie is reaped by init soon after.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

#[tokio::test]
async fn a_hanging_cli_is_killed_with_its_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let req: ChatRequest = serde_json::from_value(serde_json::json!({"model": "cli", "messages": [
        {"role": "system", "content": format!("pidfile:{}", pidfile.display())},
        {"role": "user", "content": "hang"}]}))
    .unwrap();
    let started = Instant::now();
    let err = backend("hang", 2).complete(&req).await.unwrap_err();
    assert!(matches!(err, BackendError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the grandchild {pid} survived its task"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn errors_and_missing_results_are_reported() {
    let err = backend("error", 30).complete(&ask("x")).await.unwrap_err();
    match err {
        BackendError::Status {
            status, message, ..
        } => {
            assert_eq!(status, 502);
            assert!(message.contains("error_during_execution"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let err = backend("no-result", 30)
        .complete(&ask("x"))
        .await
        .unwrap_err();
    match err {
        BackendError::Protocol(m) => assert!(m.contains("not logged in"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut missing: ModelEntry =
        toml::from_str("id = \"cli\"\nbackend = \"claude_cli\"\n").unwrap();
    missing.upstream = Upstream::ClaudeCli {
        command: "/nonexistent/claude".into(),
        base_url: None,
    };
    let err = ClaudeCliBackend::new(&missing, None)
        .complete(&ask("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn streams_text_as_it_comes_and_usage_at_the_end() {
    let mut s = backend("default", 30).stream(&ask("hi")).await.unwrap();
    let mut text = String::new();
    let mut usage = None;
    let mut finish = None;
    while let Some(item) = s.next().await {
        let c = item.unwrap();
        for choice in &c.choices {
            if let Some(t) = &choice.delta.content {
                text.push_str(t);
            }
            if choice.finish_reason.is_some() {
                finish = choice.finish_reason.clone();
            }
        }
        if c.usage.is_some() {
            usage = c.usage;
            assert_eq!(c.extra[COST_FIELD], 0.0123);
        }
    }
    assert_eq!(text, "Hello from claude CLI! You said: hi");
    assert_eq!(finish.as_ref().map(FinishReason::as_str), Some("stop"));
    assert!(usage.unwrap().completion_tokens > 0);
}
