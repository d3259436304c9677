//! What callers see when the service's dependencies fail under them: the
//! shared rate limiter going away mid-batch, and PostgreSQL restarting
//! under load. Every answer is a JSON error that says what failed, with
//! Retry-After; never a 500, and no call loses its usage row.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::DatabaseKind;
use switchyard_testkit::{PrivatePostgres, PrivateRedis};

const CATALOG: &str = r#"
[[models]]
id = "fast"
base_url = "{openai}"
input_per_mtok = 1.0
output_per_mtok = 1.0

[[models]]
id = "hold"
base_url = "{openai}"
upstream_model = "sleep-1500"
"#;

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reports_a_lost_rate_limiter_as_unavailable_not_as_over_the_limit() {
    let mut redis = PrivateRedis::start();
    let app = TestApp::builder()
        .catalog(CATALOG)
        .env("REDIS_URL", &redis.url())
        .env("RATE_LIMIT_BACKEND", "redis")
        .env("RATE_LIMIT_REDIS_FAILURE", "refuse")
        .start()
        .await;
    let upstream = app.openai();
    // One at a time: the first item holds the upstream for 1.5 s, and Redis
    // goes away while it does, before the other items are limited.
    let request =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let batch = {
        let (client, url, key) = (app.client.clone(), app.url("/v1/batch"), app.admin.clone());
        let body = json!({"requests": [request("hold"), request("fast"), request("fast")], "concurrency": 1});
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
        })
    };
    wait_until("the first item at the upstream", || {
        upstream.calls("sleep-1500") == 1
    })
    .await;
    redis.stop();
    let response = batch.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let items = body["data"].as_array().unwrap();
    assert_eq!(items[0]["status"], 200, "{body}");
    for item in &items[1..] {
        assert_eq!(item["status"], 503, "{body}");
        assert_eq!(
            item["error"]["error"]["code"], "rate_limiter_unavailable",
            "{body}"
        );
    }
    assert_eq!(
        upstream.calls("fast"),
        0,
        "refused items never reach the model"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_answers_503_and_loses_no_usage_row() {
    // No idle headroom: every call grows its lease in the database first,
    // as a reservation per call would, so the restart meets the calls.
    postgres_restart_under_load("0", true).await;
}

/// The same restart with headroom leased in chunks: calls the lease covers
/// never meet the database, and once the traffic stops nothing stays
/// leased and the spend is exactly the recorded costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_leased_load_leaves_nothing_reserved() {
    postgres_restart_under_load("1", false).await;
}

async fn postgres_restart_under_load(lease_max_usd: &str, every_call_writes: bool) {
    let mut pg = PrivatePostgres::start();
    let app = Arc::new(
        TestApp::builder()
            .shared_url(&pg.url(), DatabaseKind::Postgres)
            .catalog(CATALOG)
            .env("API_RATE_LIMIT", "1000000")
            .env("DATABASE_ACQUIRE_TIMEOUT_SECONDS", "1")
            .env("BUDGET_LEASE_SECONDS", "3")
            .env("BUDGET_LEASE_MAX_USD", lease_max_usd)
            .start()
            .await,
    );
    // A budget every call is charged to.
    let set = app
        .client
        .put(app.url("/v1/admin/budgets"))
        .bearer_auth(&app.admin)
        .json(&json!({"scope": "project", "subject": "proj", "period": "monthly", "limit_usd": 1000.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..8 {
        let (app, stop) = (app.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut seen: Vec<(u16, Option<String>, bool)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = app
                    .client
                    .post(app.url("/v1/chat/completions"))
                    .bearer_auth(&app.admin)
                    .json(
                        &json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}),
                    )
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let code = body["error"]["code"].as_str().map(str::to_owned);
                seen.push((status, code, retry_after));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Fast shutdown: clients are disconnected ("terminating connection due
    // to administrator command"), then the server is gone for a second.
    pg.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start_again();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for c in callers {
        let seen = c.await.unwrap();
        // The service came back: each caller's last call succeeded.
        assert_eq!(seen.last().map(|a| a.0), Some(200), "{seen:?}");
        all.extend(seen);
    }
    let mut by_answer: BTreeMap<(u16, Option<String>), usize> = BTreeMap::new();
    for (status, code, _) in &all {
        *by_answer.entry((*status, code.clone())).or_default() += 1;
    }
    for ((status, code), n) in &by_answer {
        assert!(
            *status == 200 || (*status == 503 && code.as_deref() == Some("database_unavailable")),
            "{n} answers of {status} {code:?}; all: {by_answer:?}"
        );
    }
    if every_call_writes {
        assert!(
            by_answer.keys().any(|(s, _)| *s == 503),
            "the restart was never noticed: {by_answer:?}"
        );
    }
    assert!(
        all.iter()
            .filter(|(s, _, _)| *s == 503)
            .all(|(_, _, retry)| *retry),
        "every 503 carries Retry-After"
    );

    // Every call answered left a usage row, the failed ones included.
    let answered = all.len() as i64;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = app.state.store.count_usage().await.unwrap_or(0);
        if rows == answered {
            break;
        }
        assert!(
            Instant::now() < deadline && rows < answered,
            "{rows} usage rows for {answered} calls"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing stays reserved once the traffic stops: the lease goes back
    // (the calls are quiet for a third of its time), and the spend is
    // exactly the cost of the calls recorded.
    let rows = app.state.store.recent_usage(answered).await.unwrap();
    let cost: i64 = rows.iter().map(|r| r.cost_nano_usd).sum();
    assert!(cost > 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states = app.state.budgets.list().await.unwrap();
        let (spent, leased) = (states[0].spent_nano_usd, states[0].leased_nano_usd);
        if leased == 0 {
            assert_eq!(spent, cost, "spend against recorded cost");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still leased after the traffic stopped: {leased} (spent {spent}, recorded {cost})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app
        .state
        .store
        .list_budget_leases()
        .await
        .unwrap()
        .is_empty());
    match Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => panic!("the app is still shared"),
    }
}
