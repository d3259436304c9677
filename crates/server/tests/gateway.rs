//! The chat completions gateway against a local server that speaks
//! OpenAI's wire format: responses, streams, errors and usage records.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_core::config::DatabaseKind;

/// The test catalog: every model points at the fake upstream, whose model
/// name selects its behaviour.
const CATALOG: &str = r#"
[[models]]
id = "fast"
aliases = ["quick"]
base_url = "{openai}"
upstream_model = "echo-1"
api_key_env = "FAKE_UPSTREAM_KEY"
input_per_mtok = 3.0
output_per_mtok = 15.0
cached_input_per_mtok = 0.3
max_output_tokens = 1000

[[models]]
id = "fail-500"
base_url = "{openai}"
retries = 0

[[models]]
id = "rate-limited"
base_url = "{openai}"
retries = 0

[[models]]
id = "bad-json"
base_url = "{openai}"
retries = 0

[[models]]
id = "drop-stream"
base_url = "{openai}"
retries = 0

[[models]]
id = "tool"
base_url = "{openai}"
retries = 0

[[models]]
id = "slow"
base_url = "{openai}"
timeout_seconds = 1
retries = 0

[[models]]
id = "nowhere"
base_url = "http://127.0.0.1:9/v1"
retries = 0

[[models]]
id = "flaky-2"
base_url = "{openai}"
retries = 2

[[models]]
id = "retry-after"
base_url = "{openai}"
retries = 1

[[models]]
id = "primary-down"
base_url = "{openai}"
upstream_model = "fail-500"
retries = 0
fallbacks = ["fast"]

[[models]]
id = "breaker"
base_url = "{openai}"
upstream_model = "fail-500"
retries = 0
breaker_threshold = 2
breaker_cooldown_seconds = 1

[[models]]
id = "busy"
base_url = "{openai}"
upstream_model = "sleep-600"
max_concurrency = 1
max_queue = 1

[routing]
small = "quick"
medium = "tool"
large = "slow"
cheapest = "fast"
"#;

async fn start() -> TestApp {
    start_on(DatabaseKind::Sqlite).await
}

async fn start_on(kind: DatabaseKind) -> TestApp {
    TestApp::builder()
        .database(kind)
        .catalog(CATALOG)
        .env("FAKE_UPSTREAM_KEY", "sk-upstream-secret")
        .env("API_RATE_LIMIT", "100000")
        .start()
        .await
}

fn user(text: &str) -> Value {
    json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": text}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_proxied_and_accounted() {
    let gw = start().await;
    let r = gw
        .chat(json!({"model": "quick", "messages": user("What is the capital of Germany?"), "temperature": 0.2, "seed": 3}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["model"], "fast",
        "the catalog id, not the upstream's name"
    );
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from echo-1! You said: What is the capital of Germany?"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["system_fingerprint"], "fp_fake",
        "unknown fields pass through"
    );
    assert_eq!(body["usage"]["prompt_tokens"], 8);
    assert_eq!(body["usage"]["completion_tokens"], 11);

    let sent = gw.openai().received();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["model"], "echo-1");
    assert_eq!(sent[0].body["seed"], 3);
    assert_eq!(sent[0].body["stream"], false);
    assert_eq!(
        sent[0].authorization.as_deref(),
        Some("Bearer sk-upstream-secret")
    );

    let rows = gw.usage_rows(1).await;
    let row = &rows[0];
    assert_eq!(row.key_id, gw.key_id("admin").await);
    assert_eq!(row.project, "proj");
    assert_eq!(row.model_requested.as_deref(), Some("quick"));
    assert_eq!(row.model_used.as_deref(), Some("fast"));
    assert_eq!(row.backend.as_deref(), Some("openai"));
    assert_eq!(
        (row.input_tokens, row.output_tokens, row.cached_tokens),
        (8, 11, 4)
    );
    // 4 uncached × 3000 + 4 cached × 300 + 11 output × 15000 nano-USD
    assert_eq!(row.cost_nano_usd, 178_200);
    assert_eq!(row.status, 200);
    assert!(row.upstream_latency_ms.is_some());
    let m = gw.metrics().await;
    assert!(
        m.contains(r#"llm_tokens_total{model="fast",direction="output"} 11"#),
        "{m}"
    );
    assert!(
        m.contains(r#"llm_cost_nano_usd_total{model="fast"} 178200"#),
        "{m}"
    );
    assert!(m.contains("llm_gateway_overhead_seconds_count 1"), "{m}");
    assert!(m.contains("usage_records_written_total 1"), "{m}");
    assert!(m.contains("usage_records_dropped_total 0"), "{m}");
}

async fn sse_events(r: reqwest::Response) -> Vec<String> {
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    assert!(text.ends_with("\n\n"));
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_shaped_like_openai_and_accounted() {
    let gw = start().await;
    let with_usage = gw
        .chat(
            json!({"model": "fast", "messages": user("hi there"), "stream": true,
                     "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(with_usage.status(), StatusCode::OK);
    let events = sse_events(with_usage).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "fast"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello from echo-1! You said: hi there");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 7);

    // Without include_usage the client gets no usage chunk, but the call is
    // still accounted (usage is always requested upstream).
    let plain = gw
        .chat(json!({"model": "fast", "messages": user("hi there"), "stream": true}))
        .await;
    let events = sse_events(plain).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        events.iter().all(|e| !e.contains("\"usage\"")),
        "{events:?}"
    );
    assert_eq!(
        gw.openai().received()[1].body["stream_options"]["include_usage"],
        true
    );
    let rows = gw.usage_rows(2).await;
    assert!(rows.iter().all(|r| r.output_tokens == 7 && r.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_become_clear_errors_and_are_accounted() {
    let gw = start().await;
    let cases = [
        ("fail-500", StatusCode::BAD_GATEWAY, "upstream_failed"),
        (
            "rate-limited",
            StatusCode::TOO_MANY_REQUESTS,
            "upstream_rate_limited",
        ),
        (
            "bad-json",
            StatusCode::BAD_GATEWAY,
            "upstream_invalid_reply",
        ),
        ("slow", StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        ("nowhere", StatusCode::BAD_GATEWAY, "upstream_unavailable"),
    ];
    for (model, status, code) in cases {
        let r = gw
            .chat(json!({"model": model, "messages": user("x")}))
            .await;
        assert_eq!(r.status(), status, "{model}");
        if model == "rate-limited" {
            assert_eq!(r.headers()["retry-after"], "7");
        }
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{model}: {body}");
    }
    let rows = gw.usage_rows(cases.len() as i64).await;
    for (model, status, code) in cases {
        let row = rows
            .iter()
            .find(|r| r.model_used.as_deref() == Some(model))
            .unwrap();
        assert_eq!(
            (row.status, row.error_type.as_deref()),
            (i32::from(status.as_u16()), Some(code))
        );
    }

    // A stream that breaks mid-way ends with an error event, no [DONE].
    let r = gw
        .chat(json!({"model": "drop-stream", "messages": user("x"), "stream": true}))
        .await;
    let events = sse_events(r).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error", "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let rows = gw.usage_rows(cases.len() as i64 + 1).await;
    assert_eq!(rows[0].model_used.as_deref(), Some("drop-stream"));
    assert_eq!(rows[0].status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_validated_before_any_upstream_call() {
    let gw = start().await;
    for (body, status, param) in [
        (
            json!({"model": "nope", "messages": user("x")}),
            StatusCode::NOT_FOUND,
            "model",
        ),
        (
            json!({"model": "fast", "messages": []}),
            StatusCode::BAD_REQUEST,
            "messages",
        ),
        (
            json!({"model": "fast", "messages": user("x"), "temperature": 5}),
            StatusCode::BAD_REQUEST,
            "temperature",
        ),
        (
            json!({"model": "fast", "messages": user("x"), "max_tokens": 5000}),
            StatusCode::BAD_REQUEST,
            "max_tokens",
        ),
        (
            json!({"model": "fast", "messages": [{"role": "wizard", "content": "x"}]}),
            StatusCode::BAD_REQUEST,
            "messages[0].role",
        ),
        (
            json!({"messages": user("x")}),
            StatusCode::BAD_REQUEST,
            "model",
        ),
    ] {
        let r = gw.chat(body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
    }
    assert!(gw.openai().received().is_empty());
    // Tool calls pass through intact.
    let r = gw
        .chat(json!({"model": "tool", "messages": user("weather?"),
                     "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(
        gw.openai().received()[0].body["tools"][0]["function"]["name"],
        "get_weather"
    );
}

const CAPITAL: &str = "What is the capital of Germany?";
/// What one CAPITAL call to `fast` costs: 4 uncached + 4 cached input tokens,
/// 11 output tokens.
const CAPITAL_COST: i64 = 178_200;

async fn concurrent_calls_cannot_overshoot_a_budget(kind: DatabaseKind) {
    let gw = start_on(kind).await;
    let set = gw
        .client
        .put(gw.url("/v1/admin/budgets"))
        .bearer_auth(&gw.admin)
        .json(
            &json!({"scope": "project", "subject": "proj", "period": "daily",
                      "limit_usd": (10 * CAPITAL_COST) as f64 / 1e9}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let budget: Value = set.json().await.unwrap();
    assert_eq!(budget["limit_usd"], "0.001782000");
    assert_eq!(budget["remaining_usd"], "0.001782000");

    let mut tasks = Vec::new();
    for _ in 0..100 {
        let client = gw.client.clone();
        let url = gw.url("/v1/chat/completions");
        let key = gw.admin.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "fast", "messages": user(CAPITAL), "max_tokens": 11}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let remaining = r
                .headers()
                .get("x-budget-remaining-usd")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = r.json().await.unwrap();
            (status, remaining, body)
        }));
    }
    let mut ok = 0;
    let mut exceeded = 0;
    for t in tasks {
        let (status, remaining, body) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
                assert!(remaining.is_some());
                exceeded += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok + exceeded, 100);
    // Reservations hold the estimate (more than the actual cost here), so
    // concurrent calls are admitted conservatively: never more than the
    // budget covers, plus at most one call's estimate.
    assert!(
        (1..=11).contains(&ok),
        "{ok} calls succeeded against a budget for 10"
    );
    assert!((ok as i64) * CAPITAL_COST <= 10 * CAPITAL_COST);
    // Every call, admitted or refused, has its usage record; settlements land
    // in the same transactions as the records.
    let rows = gw.usage_rows(100).await;
    // Every cost landed, and once the calls stop the replica gives back
    // the headroom it leased: nothing stays held.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let b = loop {
        let listed: Value = gw
            .get("/v1/admin/budgets", Some(&gw.admin))
            .await
            .json()
            .await
            .unwrap();
        let b = listed["data"][0].clone();
        if b["leased_usd"] == "0.000000000" {
            break b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was never given back: {b}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(b["reserved_usd"], "0.000000000", "{b}");
    let spent = (ok as i64) * CAPITAL_COST;
    assert_eq!(b["spent_usd"], switchyard_core::budget::usd(spent));
    assert_eq!(rows.iter().filter(|r| r.status == 429).count(), exceeded);
    assert!(rows
        .iter()
        .filter(|r| r.status == 429)
        .all(|r| r.error_type.as_deref() == Some("budget_exceeded")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_under_concurrency_on_sqlite() {
    concurrent_calls_cannot_overshoot_a_budget(DatabaseKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_under_concurrency_on_postgres() {
    concurrent_calls_cannot_overshoot_a_budget(DatabaseKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_admin_api_validates_and_audits() {
    let gw = start().await;
    let put = |body: Value| {
        gw.client
            .put(gw.url("/v1/admin/budgets"))
            .bearer_auth(&gw.admin)
            .json(&body)
            .send()
    };
    for (body, param) in [
        (
            json!({"scope": "key", "subject": "key_nope", "period": "daily", "limit_usd": 1}),
            "subject",
        ),
        (
            json!({"scope": "project", "subject": " ", "period": "daily", "limit_usd": 1}),
            "subject",
        ),
        (
            json!({"scope": "project", "subject": "p", "period": "daily", "limit_usd": -1}),
            "limit_usd",
        ),
        (
            json!({"scope": "project", "subject": "p", "period": "weekly", "limit_usd": 1}),
            "period",
        ),
    ] {
        let r = put(body.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["param"],
            param,
            "{body}"
        );
    }
    let admin_id = gw.key_id("admin").await;
    let r = put(json!({"scope": "key", "subject": admin_id, "period": "total", "limit_usd": 0}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A zero budget refuses every call, with the remaining amount in a header.
    let r = gw
        .chat(json!({"model": "fast", "messages": user("x")}))
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["x-budget-remaining-usd"], "0.000000000");
    assert_eq!(
        gw.openai().received().len(),
        0,
        "refused before any upstream call"
    );
    let del = gw
        .client
        .delete(gw.url(&format!("/v1/admin/budgets/{id}")))
        .bearer_auth(&gw.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
    assert_eq!(
        gw.chat(json!({"model": "fast", "messages": user("x")}))
            .await
            .status(),
        StatusCode::OK
    );
    let audit = gw.state.store.recent_audit(10).await.unwrap();
    assert!(audit.iter().any(|a| a.event == "budget.set"));
    assert!(audit.iter().any(|a| a.event == "budget.deleted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_and_honour_retry_after() {
    let gw = start().await;
    let r = gw
        .chat(json!({"model": "flaky-2", "messages": user("x")}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        gw.openai().calls("flaky-2"),
        3,
        "two failures, then success"
    );
    let started = Instant::now();
    let r = gw
        .chat(json!({"model": "retry-after", "messages": user("x")}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(gw.openai().calls("retry-after"), 2);
    let m = gw.metrics().await;
    assert!(m.contains(r#"llm_retries_total{model="flaky-2"} 2"#), "{m}");
    assert!(
        m.contains(r#"llm_retries_total{model="retry-after"} 1"#),
        "{m}"
    );
    // A failed call with retries left still costs one usage record.
    let rows = gw.usage_rows(2).await;
    assert!(rows.iter().all(|r| r.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_model_falls_back() {
    let gw = start().await;
    let r = gw
        .chat(json!({"model": "primary-down", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "fast");
    assert_eq!(gw.openai().calls("fail-500"), 1);
    let rows = gw.usage_rows(1).await;
    assert_eq!(rows[0].model_requested.as_deref(), Some("primary-down"));
    assert_eq!(rows[0].model_used.as_deref(), Some("fast"));
    let m = gw.metrics().await;
    assert!(m.contains(r#"llm_fallbacks_total{model="fast"} 1"#), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_opens_and_tries_again_after_its_cooldown() {
    let gw = start().await;
    for _ in 0..2 {
        let r = gw
            .chat(json!({"model": "breaker", "messages": user("x")}))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }
    let r = gw
        .chat(json!({"model": "breaker", "messages": user("x")}))
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "circuit_open"
    );
    assert_eq!(
        gw.openai().calls("fail-500"),
        2,
        "the open breaker sent nothing"
    );
    let m = gw.metrics().await;
    assert!(m.contains(r#"llm_circuit_state{model="breaker"} 1"#), "{m}");
    // The cooldown (1 s in the catalog) passing is what is tested here; the
    // breaker's own timing is covered with paused time in resilience.rs.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = gw
        .chat(json!({"model": "breaker", "messages": user("x")}))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_GATEWAY,
        "the trial call went out"
    );
    assert_eq!(gw.openai().calls("fail-500"), 3);
    let r = gw
        .chat(json!({"model": "breaker", "messages": user("x")}))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "and failed, reopening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_overloaded() {
    let gw = start().await;
    let call = || {
        let client = gw.client.clone();
        let url = gw.url("/v1/chat/completions");
        let key = gw.admin.clone();
        tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "busy", "messages": [{"role": "user", "content": "x"}]}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        })
    };
    // The first call holds the model's only slot once the upstream has it
    // (for 600 ms); of the two that follow, one waits in the queue of one and
    // the other is turned away.
    let mut tasks = vec![call()];
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.openai().calls("sleep-600") == 0 {
        assert!(Instant::now() < deadline, "the first call never went out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tasks.extend([call(), call()]);
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["error"]["code"], "overloaded");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_group_filter_and_show_budgets() {
    let gw = start().await;
    for model in ["fast", "fast", "tool"] {
        assert_eq!(
            gw.chat(json!({"model": model, "messages": user(CAPITAL)}))
                .await
                .status(),
            StatusCode::OK
        );
    }
    gw.usage_rows(3).await;
    let admin_id = gw.key_id("admin").await;
    let put = gw
        .client
        .put(gw.url("/v1/admin/budgets"))
        .bearer_auth(&gw.admin)
        .json(&json!({"scope": "project", "subject": "proj", "period": "monthly", "limit_usd": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);

    let report: Value = gw
        .get("/v1/usage", Some(&gw.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["object"], "usage");
    assert_eq!(report["period"], "month");
    assert_eq!(report["key_id"], admin_id.as_str());
    let data = report["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(
        (data[0]["group"].as_str(), data[0]["requests"].as_i64()),
        (Some("fast"), Some(2))
    );
    assert_eq!(data[0]["cost_usd"], "0.000356400");
    assert_eq!(report["total"]["requests"], 3);
    assert_eq!(report["budgets"][0]["scope"], "project");
    assert_eq!(report["budgets"][0]["limit_usd"], "1.000000000");

    let by_day: Value = gw
        .get("/v1/usage?period=day&group_by=day", Some(&gw.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_day["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_day["data"][0]["requests"], 3);
    let empty: Value = gw
        .get(
            "/v1/usage?period=custom&from=2020-01-01&to=2020-02-01",
            Some(&gw.admin),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["total"]["requests"], 0);
    let project: Value = gw
        .get("/v1/usage?project=proj", Some(&gw.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(project["total"]["requests"], 3);

    for (query, param) in [
        ("period=year", "period"),
        ("group_by=hour", "group_by"),
        ("period=custom&from=2020-01-01", "from"),
        ("period=day&from=2020-01-01", "period"),
    ] {
        let r = gw.get(&format!("/v1/usage?{query}"), Some(&gw.admin)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["param"],
            param,
            "{query}"
        );
    }
    // A user key sees only its own usage.
    let user_key = common::issue(&gw.state, "viewer", switchyard_core::keys::Scopes::user()).await;
    let own: Value = gw
        .get("/v1/usage", Some(&user_key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["total"]["requests"], 0);
    let other = gw
        .get(&format!("/v1/usage?key_id={admin_id}"), Some(&user_key))
        .await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_routing_is_explained_and_used() {
    let gw = start().await;
    let ask = |body: Value| {
        gw.client
            .post(gw.url("/v1/route"))
            .bearer_auth(&gw.admin)
            .json(&body)
            .send()
    };
    let d: Value = ask(json!({"prompt": "What is the capital of Germany?"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            d["model"].as_str(),
            d["model_id"].as_str(),
            d["rule"].as_str()
        ),
        (Some("quick"), Some("fast"), Some("short_prompt"))
    );
    assert!(d["reason"].as_str().unwrap().contains("short"));
    let d: Value =
        ask(json!({"messages": [{"role": "user", "content": "Please debug this deadlock"}]}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        (d["model_id"].as_str(), d["rule"].as_str()),
        (Some("tool"), Some("complex_task"))
    );
    let big = "lorem ipsum ".repeat(40_000);
    let d: Value = ask(json!({"prompt": big}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (d["model_id"].as_str(), d["tier"].as_str()),
        (Some("slow"), Some("large"))
    );
    for body in [
        json!({}),
        json!({"prompt": " "}),
        json!({"prompt": "x", "messages": []}),
    ] {
        let r = ask(body.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    assert!(
        gw.openai().received().is_empty(),
        "routing never calls a model"
    );

    let r = gw
        .chat(json!({"model": "auto", "messages": user(CAPITAL)}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["model"], "fast");
    let rows = gw.usage_rows(1).await;
    assert_eq!(
        (
            rows[0].model_requested.as_deref(),
            rows[0].model_used.as_deref()
        ),
        (Some("auto"), Some("fast"))
    );
    let models: Value = gw
        .get("/v1/models", Some(&gw.admin))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"auto") && ids.contains(&"fast"), "{ids:?}");
    let fast = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "fast")
        .unwrap();
    assert_eq!(fast["pricing"]["output_per_mtok"], 15.0);
    assert_eq!(fast["max_output_tokens"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_run_items_concurrently_with_per_item_status() {
    let gw = start().await;
    let post = |body: Value| {
        gw.client
            .post(gw.url("/v1/batch"))
            .bearer_auth(&gw.admin)
            .json(&body)
            .send()
    };
    for (body, param) in [
        (json!({"requests": []}), "requests"),
        (
            json!({"requests": [{"model": "fast", "messages": user("x")}], "concurrency": 0}),
            "concurrency",
        ),
        (json!({}), "requests"),
    ] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], param);
    }
    let r = post(json!({"concurrency": 3, "requests": [
        {"model": "fast", "messages": user("one")},
        {"model": "nope", "messages": user("two")},
        {"model": "fail-500", "messages": user("three")},
        {"model": "fast", "messages": user("four"), "stream": true},
        {"model": "fast", "messages": []},
    ]}))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        (b["succeeded"].as_u64(), b["failed"].as_u64()),
        (Some(2), Some(3))
    );
    let statuses: Vec<u64> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 404, 502, 200, 400]);
    assert_eq!(
        b["data"][0]["response"]["choices"][0]["message"]["content"],
        "Hello from echo-1! You said: one"
    );
    assert_eq!(
        b["data"][3]["response"]["object"], "chat.completion",
        "streaming is ignored in batches"
    );
    assert_eq!(b["data"][1]["error"]["error"]["code"], "model_not_found");
    // Items that reached a model are accounted like single requests.
    gw.usage_rows(3).await;
}
