//! Budget leases seen from outside: leased headroom shows in the admin API
//! and the metrics, and goes back when the calls stop (`hot_path.rs`
//! counts the database operations of leased calls).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_core::config::DatabaseKind;

const CATALOG: &str = r#"
[[models]]
id = "fast"
base_url = "{openai}"
input_per_mtok = 1.0
output_per_mtok = 1.0
"#;

fn chat() -> Value {
    json!({"model": "fast", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})
}

async fn set_budget(app: &TestApp, limit_usd: f64) {
    let set = app
        .client
        .put(app.url("/v1/admin/budgets"))
        .bearer_auth(&app.admin)
        .json(&json!({"scope": "project", "subject": "proj", "period": "monthly", "limit_usd": limit_usd}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
}

async fn listed(app: &TestApp) -> Value {
    let v: Value = app
        .get("/v1/admin/budgets", Some(&app.admin))
        .await
        .json()
        .await
        .unwrap();
    v["data"][0].clone()
}

/// Headroom a replica leased goes back once its calls stop (after a third
/// of the lease's time) and at shutdown; the metrics show it meanwhile.
async fn idle_headroom_goes_back(kind: DatabaseKind) {
    let app = TestApp::builder()
        .database(kind)
        .catalog(CATALOG)
        .env("API_RATE_LIMIT", "1000000")
        .env("BUDGET_LEASE_SECONDS", "3")
        .start()
        .await;
    set_budget(&app, 10.0).await;
    for _ in 0..5 {
        assert_eq!(app.chat(chat()).await.status(), StatusCode::OK);
    }
    let b = listed(&app).await;
    assert_ne!(b["leased_usd"], "0.000000000", "{b}");
    // The deployment-wide gauge follows the database (monitor interval).
    let deadline = Instant::now() + Duration::from_secs(15);
    let b = loop {
        let b = listed(&app).await;
        if b["leased_usd"] == "0.000000000" {
            break b;
        }
        assert!(Instant::now() < deadline, "the idle lease stayed: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows = app.state.store.recent_usage(10).await.unwrap();
    let cost: i64 = rows.iter().map(|r| r.cost_nano_usd).sum();
    assert_eq!(b["spent_usd"], switchyard_core::budget::usd(cost), "{b}");
    assert_eq!(
        b["remaining_usd"],
        switchyard_core::budget::usd(10_000_000_000 - cost)
    );
    // The monitor (every 5 s) exports the deployment-wide gauge.
    let deadline = Instant::now() + Duration::from_secs(12);
    while !app
        .metrics()
        .await
        .contains("switchyard_budget_leased_usd{")
    {
        assert!(Instant::now() < deadline, "the leased gauge is exported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_headroom_goes_back_on_sqlite() {
    idle_headroom_goes_back(DatabaseKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_headroom_goes_back_on_postgres() {
    idle_headroom_goes_back(DatabaseKind::Postgres).await;
}
