//! Agent tasks run by the Claude Code CLI (the fake one in testkit, which
//! speaks its stream-json protocol and really does what it reports): the
//! execution log, artifacts, budgets, and the sandbox the CLI runs in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// An app whose one model, `cli`, is the fake Claude Code CLI (it writes a
/// report and reports 0.02 USD).
async fn cli_app() -> TestApp {
    TestApp::builder()
        .catalog(&common::claude_cli_catalog(
            &switchyard_testkit::fake_claude(),
            "task-agent",
        ))
        .env_path("TASKS_DIR", "tasks")
        // Idle budget headroom goes back a second after the last call.
        .env("BUDGET_LEASE_SECONDS", "3")
        .start()
        .await
}

/// Runs a task as the admin (`POST /v1/task` answers when it has ended).
async fn run_task(app: &TestApp, task: Value) -> Value {
    let answer = app
        .client
        .post(app.url("/v1/task"))
        .bearer_auth(&app.admin)
        .json(&task)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    answer.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_can_run_through_the_claude_cli() {
    let app = cli_app().await;
    let run = |tools: Value| {
        run_task(
            &app,
            json!({"description": "write a report", "model": "cli", "allow_tools": tools}),
        )
    };
    let task = run(json!(["Read", "Write"])).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"]["summary"], "Wrote report.md.");
    assert_eq!(task["usage"]["total_cost"], 0.02);
    assert_eq!(task["artifacts"][0]["path"], "report.md");
    let kinds: Vec<&str> = task["execution_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["model_call", "tool_call", "tool_result", "model_call"]
    );
    assert_eq!(task["execution_log"][1]["tool"], "Write");
    assert_eq!(task["execution_log"][2]["parent"], 2);
    let id = task["task_id"].as_str().unwrap();
    let report = app
        .get(
            &format!("/v1/tasks/{id}/artifacts/report.md"),
            Some(&app.admin),
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(report, "# Report\nwrite a report");
    // --allowedTools carries the task's tools: without Write the CLI refuses.
    let task = run(json!(["Read"])).await;
    assert_eq!(task["status"], "failed");
    assert!(task["result"]["error"]
        .as_str()
        .unwrap()
        .contains("Write is not allowed"));
}

/// Tasks run through the Claude Code CLI spend against budgets like any
/// model call: the cost cap is reserved before the run, the cost the CLI
/// reports settles it, and a budget that cannot cover the cap refuses the
/// run before the CLI starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_tasks_cost_counts_against_its_project_budget() {
    let app = cli_app().await;
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
    // Settlement lands with the usage row, in the writer's next batch; the
    // replica then gives its idle lease back.
    let deadline = Instant::now() + Duration::from_secs(10);
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
        tokio::time::sleep(Duration::from_millis(100)).await;
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

/// The CLI runs inside the task's sandbox: it reaches the network (its API),
/// but cannot write outside its workspace, cannot see other tasks'
/// workspaces, has a private writable home, and gets none of the service's
/// environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_confined_to_its_workspace_but_reaches_the_network() {
    // The executable under /tmp, which the sandbox replaces with its own:
    // the folder it is in is shown all the same.
    let bin = tempfile::tempdir().unwrap();
    let cli = bin.path().join("claude");
    std::fs::copy(switchyard_testkit::fake_claude(), &cli).unwrap();
    let app = TestApp::builder()
        .catalog(&common::claude_cli_catalog(&cli, "probe"))
        .env_path("TASKS_DIR", "tasks")
        .file("tasks/other-task/secret.txt", "another task's file")
        .env("SWITCHYARD_PROBE_SECRET", "not for tasks")
        .start()
        .await;
    // Outside the workspace and not under /tmp (the sandbox has its own).
    let outside = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("escaped-{}.txt", rand::random::<u64>()));
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let probe = json!({"write": outside, "list": app.path("tasks"), "port": port});
    let task = run_task(
        &app,
        json!({"description": probe.to_string(), "model": "cli", "allow_tools": ["Read"]}),
    )
    .await;
    assert_eq!(task["status"], "completed", "{task}");
    let found: Value = serde_json::from_str(task["result"]["summary"].as_str().unwrap()).unwrap();
    let id = task["task_id"].as_str().unwrap();
    assert_eq!(found["write"], "Read-only file system", "{found}");
    assert!(!outside.exists());
    // The tasks folder shows this task's workspace only.
    assert_eq!(found["listed"], json!([id]), "{found}");
    assert_eq!(
        found["cwd"],
        app.path(&format!("tasks/{id}")).to_str().unwrap()
    );
    assert_eq!(found["home"], "/tmp/home");
    assert_eq!(found["home_writable"], true);
    assert_eq!(found["network"], "connected", "{found}");
    let env: Vec<&str> = found["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.iter()
            .all(|k| !k.starts_with("SWITCHYARD") && !k.contains("DATABASE")),
        "{env:?}"
    );
    assert!(env.contains(&"DISABLE_AUTOUPDATER"), "{env:?}");
    // What it wrote in its workspace is an artifact; its home is not.
    let artifacts: Vec<&str> = task["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(artifacts, ["found.json"]);
}

/// A CLI run that grows its workspace past the quota is stopped by the same
/// watcher as a Bash command, and the task says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_run_past_the_workspace_quota_is_stopped() {
    let app = TestApp::builder()
        .catalog(&common::claude_cli_catalog(
            &switchyard_testkit::fake_claude(),
            "fill",
        ))
        .env_path("TASKS_DIR", "tasks")
        .env("TASK_WORKSPACE_MB", "16")
        .start()
        .await;
    let started = Instant::now();
    let task = run_task(
        &app,
        json!({"description": "fill the disk", "model": "cli", "allow_tools": ["Write"]}),
    )
    .await;
    assert_eq!(task["status"], "failed", "{task}");
    let error = task["result"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("killed: the workspace grew past its quota of 16 MiB"),
        "{error}"
    );
    // Stopped at the quota, not at the end of the CLI's 60 s wait.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// An app whose model `cli` is the fake CLI's never-ending `spend` run,
/// priced at 3 USD per million input and 15 per million output tokens: each
/// of its messages (1,000 in, 100 out) costs 4,500,000 nano-USD.
async fn spending_app() -> TestApp {
    let catalog = common::claude_cli_catalog(&switchyard_testkit::fake_claude(), "spend");
    TestApp::builder()
        .catalog(&format!(
            "{catalog}input_per_mtok = 3.0\noutput_per_mtok = 15.0\n"
        ))
        .env_path("TASKS_DIR", "tasks")
        .start()
        .await
}

const MESSAGE_NANO_USD: u64 = 4_500_000;

/// The usage row of a task, once the usage writer has written it.
async fn usage_row(app: &TestApp, task_id: &str) -> switchyard_store::UsageRecord {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = app.state.store.recent_usage(50).await.unwrap();
        if let Some(row) = rows.into_iter().find(|r| r.request_id == task_id) {
            return row;
        }
        assert!(Instant::now() < deadline, "no usage row for {task_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A CLI run stopped before its result (here, at the task's timeout) is
/// charged the tokens its messages reported, at the model's prices: in the
/// task's usage, its usage row and so its budgets. Each message counts
/// once, although the CLI sends it as two events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_run_stopped_before_its_result_is_charged_its_messages() {
    let app = spending_app().await;
    let task = run_task(
        &app,
        json!({"description": "work forever", "model": "cli", "allow_tools": ["Read"],
               "timeout": 2, "max_cost": 5}),
    )
    .await;
    assert_eq!(task["status"], "timeout", "{task}");
    let messages = task["usage"]["input_tokens"].as_u64().unwrap() / 1000;
    assert!(messages >= 2, "{task}");
    assert_eq!(task["usage"]["input_tokens"], messages * 1000, "{task}");
    assert_eq!(task["usage"]["output_tokens"], messages * 100, "{task}");
    let cost = messages * MESSAGE_NANO_USD;
    let reported = task["usage"]["total_cost"].as_f64().unwrap();
    assert!(
        (reported * 1e9 - cost as f64).abs() < 1.0,
        "{reported} USD for {messages} messages"
    );
    let row = usage_row(&app, task["task_id"].as_str().unwrap()).await;
    assert_eq!(row.cost_nano_usd, i64::try_from(cost).unwrap());
    assert_eq!(row.input_tokens, i64::try_from(messages * 1000).unwrap());
    app.stop().await;
}

/// The task's cost cap holds while the CLI runs: the run is stopped at the
/// first event that takes its running cost past the cap, not at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_run_is_stopped_when_its_messages_pass_the_cost_cap() {
    let app = spending_app().await;
    let started = Instant::now();
    // 0.01 USD: two messages (0.009) fit, the third's first event does not.
    let task = run_task(
        &app,
        json!({"description": "work forever", "model": "cli", "allow_tools": ["Read"],
               "timeout": 60, "max_cost": 0.01}),
    )
    .await;
    assert_eq!(task["status"], "cost_exceeded", "{task}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(task["usage"]["input_tokens"], 3000, "{task}");
    assert_eq!(task["usage"]["output_tokens"], 201, "{task}");
    // Three messages, each sent as two events (the last one's first only).
    assert_eq!(task["usage"]["turns"], 3, "{task}");
    let error = task["result"]["error"].as_str().unwrap();
    assert!(error.starts_with("max_cost reached"), "{error}");
    let row = usage_row(&app, task["task_id"].as_str().unwrap()).await;
    // 3,000 input and 201 output tokens at 3 and 15 USD per million.
    assert_eq!(row.cost_nano_usd, 9_000_000 + 3_015_000);
    app.stop().await;
}
