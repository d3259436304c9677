//! The gateway as a library: calls made directly on `Gateway`, without HTTP,
//! one test per typed error, and the accounting every call leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestApp, TestState};
use std::time::{Duration, Instant};
use switchyard_core::budget::{BudgetPeriod, BudgetScope};
use switchyard_core::keys::{NewKeySpec, Scopes};
use switchyard_models::openai_wire::ChatRequest;
use switchyard_models::BackendError;
use switchyard_server::audit::Actor;
use switchyard_server::budgets::BudgetRequest;
use switchyard_server::context::Caller;
use switchyard_server::gateway::{CallOrigin, GatewayError, StreamEnd, StreamItem, ENDPOINT};
use switchyard_server::AppState;
use switchyard_store::UsageRecord;

const CATALOG: &str = r#"
[[models]]
id = "fast"
base_url = "{openai}"
upstream_model = "echo-1"
input_per_mtok = 3.0
output_per_mtok = 15.0
max_output_tokens = 1000

[[models]]
id = "fail-500"
base_url = "{openai}"
retries = 0

[[models]]
id = "breaker"
base_url = "{openai}"
upstream_model = "fail-500"
retries = 0
breaker_threshold = 1
breaker_cooldown_seconds = 600

[[models]]
id = "busy"
base_url = "{openai}"
upstream_model = "sleep-800"
max_concurrency = 1
max_queue = 0

[[models]]
id = "trickle-200"
base_url = "{openai}"
retries = 0

[[models]]
id = "slow"
base_url = "{openai}"
upstream_model = "sleep-5000"
retries = 0

[routing]
small = "fast"
medium = "fast"
large = "not-in-the-catalog"
cheapest = "fast"
"#;

/// The services of one replica, without a TCP server.
struct Harness {
    state: TestState,
    caller: Caller,
}

async fn harness() -> Harness {
    let state = TestApp::builder()
        .catalog(CATALOG)
        .env("TASK_WORKERS", "0")
        .state()
        .await;
    let caller = caller_of(&state).await;
    Harness { state, caller }
}

async fn caller_of(state: &AppState) -> Caller {
    let spec = NewKeySpec::new(
        "app",
        None,
        "proj",
        Scopes::user(),
        None,
        switchyard_core::now(),
    )
    .unwrap();
    let issued = state.keys.issue(&spec, &Actor::default()).await.unwrap();
    Caller::acting_for(issued.key)
}

fn request(model: &str) -> ChatRequest {
    request_saying(model, "hello there")
}

fn request_saying(model: &str, text: &str) -> ChatRequest {
    serde_json::from_value(serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": text}],
    }))
    .unwrap()
}

impl Harness {
    fn origin(&self, request_id: &str) -> CallOrigin {
        CallOrigin {
            caller: self.caller.clone(),
            request_id: request_id.to_owned(),
            endpoint: ENDPOINT,
        }
    }

    /// Prepares and completes one call, as an API handler would.
    async fn call(&self, model: &str) -> Result<String, GatewayError> {
        let req = request(model);
        let gateway = &self.state.gateway;
        let call = gateway.prepare(self.origin(model), &req).await?;
        let completion = gateway.complete(call, &req).await?;
        Ok(completion.model)
    }

    /// Waits until `n` usage rows are stored; returns them, newest first.
    async fn usage_rows(&self, n: i64) -> Vec<UsageRecord> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stored = self.state.store.count_usage().await.unwrap();
            if stored >= n {
                assert_eq!(stored, n, "exactly one usage row per call");
                return self.state.store.recent_usage(100).await.unwrap();
            }
            assert!(Instant::now() < deadline, "{stored} of {n} usage rows");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_call_returns_the_completion_and_records_its_usage() {
    let h = harness().await;
    assert_eq!(h.call("fast").await.unwrap(), "fast");
    let rows = h.usage_rows(1).await;
    assert_eq!(rows[0].status, 200);
    assert_eq!(rows[0].model_used.as_deref(), Some("fast"));
    assert!(rows[0].input_tokens > 0 && rows[0].cost_nano_usd > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_and_unknown_models_are_refused_before_any_accounting() {
    let h = harness().await;
    let mut req = request("fast");
    req.max_tokens = Some(5000);
    let err = h
        .state
        .gateway
        .prepare(h.origin("r"), &req)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, GatewayError::InvalidRequest { param, .. } if param == "max_tokens"),
        "{err:?}"
    );
    assert_eq!(err.status(), 400);

    let err = h.call("no-such-model").await.unwrap_err();
    assert!(matches!(&err, GatewayError::ModelNotFound { model } if model == "no-such-model"));
    assert_eq!((err.status(), err.code()), (404, "model_not_found"));

    // `auto` routes a long prompt to `large`, which names no catalog model.
    let req = request_saying("auto", &"x ".repeat(200_000));
    let err = h
        .state
        .gateway
        .prepare(h.origin("r"), &req)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, GatewayError::RoutedToUnknownModel { model, .. } if model == "not-in-the-catalog"),
        "{err:?}"
    );
    assert_eq!(h.state.store.count_usage().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_model_without_its_key_is_unavailable() {
    // The built-in catalog without ANTHROPIC_API_KEY.
    let state = TestApp::builder().state().await;
    let origin = CallOrigin {
        caller: caller_of(&state).await,
        request_id: "r".into(),
        endpoint: ENDPOINT,
    };
    let err = state
        .gateway
        .prepare(origin, &request("sonnet"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, GatewayError::MissingKey { variable, .. } if variable == "ANTHROPIC_API_KEY"),
        "{err:?}"
    );
    assert_eq!((err.status(), err.code()), (503, "model_unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_cannot_cover_the_estimate_refuses_the_call_and_records_it() {
    let h = harness().await;
    let budget = BudgetRequest {
        scope: BudgetScope::Project,
        subject: "proj".into(),
        period: BudgetPeriod::Monthly,
        limit_usd: 0.000_001,
    };
    h.state.budgets.set(&budget, &Actor::cli()).await.unwrap();
    let err = h.call("fast").await.unwrap_err();
    let GatewayError::BudgetExceeded(exceeded) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(exceeded.budget.subject, "proj");
    assert!(exceeded.estimate_nano_usd > 1_000);
    assert_eq!((err.status(), err.code()), (429, "budget_exceeded"));
    let rows = h.usage_rows(1).await;
    assert_eq!(
        (rows[0].status, rows[0].error_type.as_deref()),
        (429, Some("budget_exceeded"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failure_is_typed_and_accounted() {
    let h = harness().await;
    let err = h.call("fail-500").await.unwrap_err();
    assert!(
        matches!(
            &err,
            GatewayError::Upstream(BackendError::Status { status: 500, .. })
        ),
        "{err:?}"
    );
    assert_eq!((err.status(), err.code()), (502, "upstream_failed"));
    let rows = h.usage_rows(1).await;
    assert_eq!(rows[0].status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_and_a_full_pool_are_their_own_errors() {
    let h = harness().await;
    // One failure opens this breaker; the next call is not even tried.
    assert!(matches!(
        h.call("breaker").await.unwrap_err(),
        GatewayError::Upstream(_)
    ));
    let err = h.call("breaker").await.unwrap_err();
    assert!(matches!(err, GatewayError::CircuitOpen), "{err:?}");
    assert_eq!((err.status(), err.code()), (503, "circuit_open"));

    // One slot and no queue: while one call holds it, the next is refused.
    let first = {
        let gateway = h.state.gateway.clone();
        let origin = h.origin("first");
        tokio::spawn(async move {
            let req = request("busy");
            let call = gateway.prepare(origin, &req).await.unwrap();
            gateway.complete(call, &req).await.map(|c| c.model)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.state.openai().calls("sleep-800") == 0 {
        assert!(
            Instant::now() < deadline,
            "the first call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = h.call("busy").await.unwrap_err();
    assert!(matches!(err, GatewayError::Overloaded), "{err:?}");
    assert_eq!((err.status(), err.code()), (503, "overloaded"));
    assert_eq!(first.await.unwrap().unwrap(), "busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_a_store_error_that_reads_as_unavailable() {
    let h = harness().await;
    let budget = BudgetRequest {
        scope: BudgetScope::Key,
        subject: h.caller.key.id.clone(),
        period: BudgetPeriod::Daily,
        limit_usd: 10.0,
    };
    h.state.budgets.set(&budget, &Actor::cli()).await.unwrap();
    h.state.store.close().await;
    let err = h
        .state
        .gateway
        .prepare(h.origin("r"), &request("fast"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, GatewayError::Store(e) if e.is_unavailable()),
        "{err:?}"
    );
    assert_eq!((err.status(), err.code()), (503, "database_unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_cuts_running_calls_off_and_each_still_leaves_its_row() {
    let h = harness().await;
    let gateway = h.state.gateway.clone();
    // A call that would take five seconds, on a tracked task.
    let req = request("slow");
    let call = gateway.prepare(h.origin("slow"), &req).await.unwrap();
    let running = {
        let gateway = gateway.clone();
        gateway
            .clone()
            .spawn(async move { gateway.complete(call, &req).await })
    };
    // A stream that has started: the upstream sends a chunk every 200 ms.
    let req = request("trickle-200");
    let streamed = gateway.prepare(h.origin("stream"), &req).await.unwrap();
    let mut stream = gateway.stream(streamed, &req).await.unwrap();
    assert!(matches!(stream.next().await, Some(StreamItem::Chunk(_))));
    let reader = gateway.spawn(async move {
        loop {
            match stream.next().await {
                Some(StreamItem::Chunk(_)) => continue,
                Some(StreamItem::ShuttingDown) => return "cut",
                Some(StreamItem::Failed(_)) => return "failed",
                None => {
                    stream.finish(StreamEnd::Completed).await;
                    return "completed";
                }
            }
        }
    });
    let started = Instant::now();
    assert!(
        !gateway
            .drain(Duration::from_millis(200), Duration::from_secs(5))
            .await
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(
        running.await.unwrap().unwrap_err(),
        GatewayError::ShuttingDown
    ));
    assert_eq!(reader.await.unwrap(), "cut");
    let rows = h.usage_rows(2).await;
    let slow = rows.iter().find(|r| r.request_id == "slow").unwrap();
    assert_eq!(
        (slow.status, slow.error_type.as_deref()),
        (503, Some("server_shutdown"))
    );
    let cut = rows.iter().find(|r| r.request_id == "stream").unwrap();
    assert_eq!(
        (cut.status, cut.error_type.as_deref()),
        (503, Some("server_shutdown"))
    );
}
