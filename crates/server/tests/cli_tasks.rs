//! Tasks run through the Claude Code CLI spend against budgets like any
//! model call: the cost cap is reserved before the run, the cost the CLI
//! reports settles it, and a budget that cannot cover the cap refuses the
//! run before the CLI starts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_tasks_cost_counts_against_its_project_budget() {
    let app = TestApp::builder()
        .catalog(&format!(
            "[[models]]\nid = \"cli\"\nbackend = \"claude_cli\"\ncommand = \"{}\"\nupstream_model = \"task-agent\"\n",
            switchyard_testkit::fake_claude().display()
        ))
        .env_path("TASKS_DIR", "tasks")
        .start()
        .await;
    let budget: Value = app
        .client
        .put(app.url("/v1/admin/budgets"))
        .bearer_auth(&app.admin)
        .json(
            &json!({"scope": "project", "subject": "proj", "period": "monthly", "limit_usd": 0.05}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = |max_cost: f64| {
        app.client
            .post(app.url("/v1/task"))
            .bearer_auth(&app.admin)
            .json(&json!({"description": "write a report", "model": "cli",
                          "allow_tools": ["Read", "Write"], "max_cost": max_cost}))
            .send()
    };

    // The fake CLI reports 0.02 USD for its run.
    let first: Value = run(0.03).await.unwrap().json().await.unwrap();
    assert_eq!(first["status"], "completed", "{first}");
    let spent = |budgets: &Value| -> (String, String) {
        let b = budgets["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == budget["id"])
            .unwrap()
            .clone();
        (
            b["spent_usd"].as_str().unwrap().to_owned(),
            b["reserved_usd"].as_str().unwrap().to_owned(),
        )
    };
    // Settlement lands with the usage row, in the writer's next batch.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let budgets: Value = app
            .get("/v1/admin/budgets", Some(&app.admin))
            .await
            .json()
            .await
            .unwrap();
        if spent(&budgets) == ("0.020000000".to_owned(), "0.000000000".to_owned()) {
            break;
        }
        assert!(Instant::now() < deadline, "budget: {budgets}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = app.state.store.recent_usage(10).await.unwrap();
    let row = rows
        .iter()
        .find(|r| Some(r.request_id.as_str()) == first["task_id"].as_str())
        .unwrap();
    assert_eq!(
        (row.endpoint.as_str(), row.cost_nano_usd, row.status),
        ("/v1/task", 20_000_000, 200)
    );

    // 0.03 USD is left: a cap of 0.04 cannot be reserved, so the CLI never runs.
    let second = run(0.04).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["status"], "failed", "{second}");
    let error = second["result"]["error"].as_str().unwrap();
    assert!(
        error.contains("budget") && error.contains("cannot cover"),
        "{error}"
    );
    assert_eq!(second["execution_log"], json!([]), "the CLI never ran");
    let budgets: Value = app
        .get("/v1/admin/budgets", Some(&app.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(spent(&budgets).0, "0.020000000");
    app.stop().await;
}
