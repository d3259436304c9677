//! Traces and error logs of the real `switchyard` binary: the spans it
//! exports over OTLP to a local receiver that decodes the protobuf, the
//! trace context it takes from callers and passes to upstreams, and the
//! failures that `LOG_LEVEL=error` still shows, each with its trace id.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_testkit::fake_openai::FakeOpenAi;
use switchyard_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use switchyard_testkit::process::{Binary, ServerProcess};
use switchyard_testkit::{poll_until, PrivatePostgres, PrivateRedis, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ADMIN_KEY: &str = "sy_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// Words of a prompt, which must never appear in a span or a log line.
const PROMPT: &str = "the secret plans of the lighthouse keeper";

fn serve(envs: &[(&str, &str)]) -> ServerProcess {
    Binary::new(BIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .envs(envs)
        .serve()
}

/// A catalog of a working model (`fast`) and one whose upstream answers
/// 500 (`broken`), both on the fake upstream.
fn catalog(dir: &std::path::Path, upstream: &FakeOpenAi) -> String {
    let file = dir.join("switchyard.toml");
    std::fs::write(
        &file,
        format!(
            "[[models]]\nid = \"fast\"\nbase_url = \"{0}\"\n\n\
             [[models]]\nid = \"broken\"\nbase_url = \"{0}\"\nupstream_model = \"fail-500\"\nretries = 0\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    file.display().to_string()
}

fn chat(server: &ServerProcess, model: &str, traceparent: &str) -> (StatusCode, Value) {
    let response = reqwest::blocking::Client::new()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(ADMIN_KEY)
        .header("traceparent", traceparent)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": PROMPT}]}))
        .send()
        .unwrap();
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    f: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| f(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {what}, found {}: {spans:#?}",
        found.len()
    );
    found[0]
}

#[test]
fn a_call_exports_its_spans_over_otlp_within_the_callers_trace() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(OtlpReceiver::start());
    let upstream = rt.block_on(FakeOpenAi::start());
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = catalog(dir.path(), &upstream);
    let redis = switchyard_testkit::redis_url();
    let endpoint = receiver.endpoint();
    let server = serve(&[
        ("DATABASE_URL", db.url.as_str()),
        ("SWITCHYARD_CONFIG", config.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("RATE_LIMIT_BACKEND", "redis"),
        ("DEPLOYMENT_SLOT", "green"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-otlp-token=s3cret%21"),
        ("OTEL_SERVICE_NAME", "switchyard-test"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=llm-platform"),
        // The SDK's batch delay, so spans arrive while the test waits.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);

    let (trace, parent) = (random_hex(16), random_hex(8));
    let (status, served_body) = chat(&server, "fast", &format!("00-{trace}-{parent}-01"));
    assert_eq!(status, StatusCode::OK, "{served_body}");
    let (failed_trace, failed_parent) = (random_hex(16), random_hex(8));
    let (status, body) = chat(
        &server,
        "broken",
        &format!("00-{failed_trace}-{failed_parent}-01"),
    );
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");

    // Both requests' spans, the model call's last of all, once exported.
    let spans = poll_until(Duration::from_secs(15), || {
        let spans = receiver.spans();
        let ended = |t: &str| {
            spans.iter().any(|s| s.trace_id == t && s.kind == 2)
                && spans
                    .iter()
                    .any(|s| s.trace_id == t && s.name.starts_with("chat "))
        };
        if ended(&trace) && ended(&failed_trace) {
            Ok(spans)
        } else {
            Err(format!("{} spans so far", spans.len()))
        }
    });
    let of = |t: &str| -> Vec<ReceivedSpan> {
        spans.iter().filter(|s| s.trace_id == t).cloned().collect()
    };
    let served = of(&trace);

    // The request: a server span continuing the caller's trace.
    let request = one(&served, "server span", |s| s.kind == 2);
    assert_eq!(request.name, "POST /v1/chat/completions");
    assert_eq!(request.parent_span_id, parent);
    assert_eq!(request.attr("http.request.method"), Some("POST"));
    assert_eq!(request.attr("http.route"), Some("/v1/chat/completions"));
    assert_eq!(request.attr("http.response.status_code"), Some("200"));
    assert_ne!(request.status, 2);
    assert_eq!(request.resource["service.name"], "switchyard-test");
    assert_eq!(request.resource["team"], "llm-platform");
    assert_eq!(request.resource["switchyard.deployment.slot"], "green");
    assert_eq!(
        request.resource["deployment.environment.name"],
        "development"
    );
    assert!(request.resource.contains_key("service.version"));

    // Authentication, inside the request.
    let auth = one(&served, "auth span", |s| s.name == "authenticate");
    assert_eq!(auth.parent_span_id, request.span_id);
    assert!(auth
        .attr("switchyard.key_id")
        .is_some_and(|k| !k.is_empty()));

    // The model call, with the GenAI attributes and the usage the caller got.
    let call = one(&served, "model call span", |s| {
        s.name == "chat fast" && s.parent_span_id == request.span_id
    });
    assert_eq!(call.kind, 3);
    assert_eq!(call.attr("gen_ai.operation.name"), Some("chat"));
    assert_eq!(call.attr("gen_ai.request.model"), Some("fast"));
    assert_eq!(call.attr("gen_ai.response.model"), Some("fast"));
    assert_eq!(call.attr("gen_ai.provider.name"), Some("openai"));
    let usage = &served_body["usage"];
    assert_eq!(
        call.attr("gen_ai.usage.input_tokens"),
        Some(usage["prompt_tokens"].to_string().as_str())
    );
    assert_eq!(
        call.attr("gen_ai.usage.output_tokens"),
        Some(usage["completion_tokens"].to_string().as_str())
    );
    // The upstream attempt, whose context the upstream received.
    let attempt = one(&served, "upstream attempt span", |s| {
        s.parent_span_id == call.span_id && s.kind == 3
    });
    assert_eq!(attempt.attr("gen_ai.request.model"), Some("fast"));
    let seen_by_upstream: Vec<String> = upstream
        .received()
        .iter()
        .filter(|r| r.body["model"] == "fast")
        .filter_map(|r| r.traceparent.clone())
        .collect();
    assert_eq!(
        seen_by_upstream,
        [format!("00-{trace}-{}-01", attempt.span_id)]
    );

    // The database and Redis work of the request: the key looked up
    // while authenticating, the budgets, the rate limit.
    let key_lookup = one(&served, "key lookup span", |s| {
        s.attr("db.operation.name") == Some("find_key_by_hash")
    });
    assert_eq!(key_lookup.parent_span_id, auth.span_id);
    assert_eq!(key_lookup.attr("db.system.name"), Some("sqlite"));
    assert_eq!(key_lookup.kind, 3);
    let redis_span = served
        .iter()
        .find(|s| s.attr("db.system.name") == Some("redis"))
        .unwrap_or_else(|| panic!("no Redis span: {served:#?}"));
    assert_eq!(redis_span.attr("db.operation.name"), Some("EVALSHA"));

    // The failed call: an error on the request, the model call and the attempt.
    let failed = of(&failed_trace);
    let request = one(&failed, "server span", |s| s.kind == 2);
    assert_eq!(request.parent_span_id, failed_parent);
    assert_eq!(request.status, 2, "{request:#?}");
    assert_eq!(request.attr("http.response.status_code"), Some("502"));
    let call = one(&failed, "model call span", |s| {
        s.name == "chat broken" && s.parent_span_id == request.span_id
    });
    assert_eq!(call.status, 2, "{call:#?}");
    assert!(call.attr("error.type").is_some());
    let attempt = one(&failed, "upstream attempt span", |s| {
        s.parent_span_id == call.span_id
    });
    assert_eq!(attempt.status, 2);
    assert_eq!(attempt.attr("error.type"), Some("http_status"));
    assert_eq!(attempt.attr("http.response.status_code"), Some("500"));
    assert_eq!(attempt.attr("gen_ai.request.model"), Some("fail-500"));

    // Exports carry the configured headers; spans carry no secret and no prompt.
    let exports = receiver.received();
    assert!(exports.iter().all(|e| e
        .headers
        .get("x-otlp-token")
        .is_some_and(|v| v == "s3cret!")));
    for s in &spans {
        for v in s.attributes.values().chain([&s.name]) {
            assert!(!v.contains(ADMIN_KEY) && !v.contains(PROMPT), "{s:#?}");
        }
    }

    // Every log line of a traced request carries its trace id.
    let (code, _, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
    let finished = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "request finished" && l["span"]["trace_id"] == trace.as_str())
        .unwrap_or_else(|| panic!("no request line with the trace id: {stderr}"));
    assert_eq!(finished["status"], 200);
    assert!(!stderr.contains(PROMPT));
}

/// `LOG_LEVEL=error`, the production setting, still shows every failure:
/// a 5xx answer with its trace id, a lost Redis and a lost database.
#[test]
fn log_level_error_still_shows_5xx_answers_and_lost_connections() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(FakeOpenAi::start());
    let mut pg = PrivatePostgres::start();
    let mut redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let config = catalog(dir.path(), &upstream);
    let (pg_url, redis_url) = (pg.url(), redis.url());
    let server = serve(&[
        ("DATABASE_URL", pg_url.as_str()),
        ("DATABASE_ACQUIRE_TIMEOUT_SECONDS", "1"),
        ("SWITCHYARD_CONFIG", config.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("RATE_LIMIT_BACKEND", "redis"),
        ("KEY_CACHE_TTL_SECONDS", "1"),
        ("LOG_LEVEL", "error"),
    ]);
    server.wait_ready();

    let trace = random_hex(16);
    let (status, body) = chat(
        &server,
        "broken",
        &format!("00-{trace}-{}-01", random_hex(8)),
    );
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");

    redis.stop();
    let (status, body) = chat(
        &server,
        "fast",
        &format!("00-{}-{}-01", random_hex(16), random_hex(8)),
    );
    // The limiter falls back to this replica's own; the call is served.
    assert_eq!(status, StatusCode::OK, "{body}");

    pg.stop();
    // Past the key cache, so the request must reach the database.
    std::thread::sleep(Duration::from_millis(1100));
    let usage = reqwest::blocking::Client::new()
        .get(server.url("/v1/usage"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .unwrap();
    assert_eq!(usage.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Back again, so that shutdown can write the usage rows it holds.
    pg.start_again();

    let (code, _, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert_eq!(l["level"], "ERROR", "LOG_LEVEL=error let through: {l}");
    }
    let find = |what: &str, f: &dyn Fn(&Value) -> bool| {
        lines
            .iter()
            .find(|l| f(l))
            .cloned()
            .unwrap_or_else(|| panic!("no {what} in the log: {stderr}"))
    };
    let failed = find("502 line", &|l| {
        l["message"] == "request failed" && l["status"] == 502
    });
    assert_eq!(failed["span"]["trace_id"], trace.as_str());
    assert_eq!(failed["span"]["route"], "/v1/chat/completions");
    find("lost Redis", &|l| {
        l["message"].as_str().is_some_and(|m| m.contains("Redis"))
    });
    find("lost database", &|l| l["message"] == "database unavailable");
    find("503 line", &|l| {
        l["message"] == "request failed" && l["status"] == 503
    });
    assert!(!stderr.contains(PROMPT) && !stderr.contains(ADMIN_KEY));
}

/// The test suite builds every feature the release image builds, so no
/// test of Sentry or OpenTelemetry is compiled out: the image's `cargo
/// build` takes the binary's default features, and each of those is on
/// here.
#[test]
fn the_tests_build_every_feature_the_release_image_builds() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let dockerfile = std::fs::read_to_string(format!("{root}/deploy/Dockerfile")).unwrap();
    let build = dockerfile
        .lines()
        .find(|l| l.contains("cargo build --profile production"))
        .expect("the Dockerfile builds with cargo build --profile production");
    let mut features: Vec<String> = Vec::new();
    assert!(
        !build.contains("--no-default-features"),
        "the image drops default features: {build}"
    );
    if !build.contains("--all-features") {
        let manifest = std::fs::read_to_string(format!("{root}/crates/cli/Cargo.toml")).unwrap();
        let defaults = manifest
            .lines()
            .find_map(|l| l.strip_prefix("default = ["))
            .expect("the binary declares its default features");
        features.extend(
            defaults
                .trim_end_matches(']')
                .split(',')
                .map(|f| f.trim().trim_matches('"').to_owned())
                .filter(|f| !f.is_empty()),
        );
    }
    if let Some(extra) = build.split("--features").nth(1) {
        let list = extra
            .trim_start_matches([' ', '='])
            .split_whitespace()
            .next();
        features.extend(list.unwrap_or("").split(',').map(str::to_owned));
    }
    assert!(features.contains(&"otel".to_owned()) && features.contains(&"sentry".to_owned()));
    for feature in features {
        let on = match feature.as_str() {
            "local" => cfg!(feature = "local"),
            "sentry" => cfg!(feature = "sentry"),
            "otel" => cfg!(feature = "otel"),
            "mimalloc" => cfg!(feature = "mimalloc"),
            other => panic!("the image builds feature `{other}`; list it in this test"),
        };
        assert!(
            on,
            "the image builds `{feature}` but the tests run without it"
        );
    }
}
