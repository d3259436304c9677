//! The resource limits of tasks' Bash commands through the API: the
//! service's defaults, a key's task profile lowering them, `GET
//! /v1/capabilities` saying which caps are in force, and hostile commands
//! (a disk filler, a busy loop, a memory hog) each ending with the cap named
//! in the tool's result while the service keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{issue, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use switchyard_core::keys::Scopes;

/// An app whose `agent-bash` model runs each task's description under
/// Bash; workspaces in a folder the sandbox user can reach.
async fn start(tasks: &std::path::Path) -> TestApp {
    TestApp::builder()
        .catalog("[[models]]\nid = \"agent-bash\"\nbase_url = \"{openai}\"\n")
        .env("TASKS_DIR", tasks.to_str().unwrap())
        .env("TASK_DEFAULT_MODEL", "agent-bash")
        .env("TASK_SANDBOX_USER", "65534:65534")
        .env("TASK_WORKSPACE_MB", "64")
        .start()
        .await
}

fn reachable_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

async fn caps(t: &TestApp, key: &str) -> Value {
    t.get("/v1/capabilities", Some(key))
        .await
        .json()
        .await
        .unwrap()
}

/// Runs `command` as a task of `key` and returns the task.
async fn run(t: &TestApp, key: &str, command: &str) -> Value {
    let r = t
        .post_as(
            key,
            "/v1/task",
            json!({"description": command, "allow_tools": ["Bash"], "timeout": 90}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// The text the Bash tool returned (the agent answers with it).
fn tool_result(task: &Value) -> String {
    let log = task["execution_log"].as_array().unwrap();
    assert!(
        log.iter()
            .any(|e| e["kind"] == "tool_result" && e["tool"] == "Bash"),
        "{task}"
    );
    task["result"]["summary"].as_str().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_profile_lowers_the_caps_and_hostile_commands_end_on_them() {
    let dir = reachable_dir();
    let t = start(&dir.path().join("tasks")).await;

    let all = caps(&t, &t.admin).await;
    let limits = &all["resource_limits"];
    assert_eq!(limits["defaults"]["workspace_mb"], 64, "{all}");
    assert_eq!(limits["defaults"]["memory_mb"], 2048, "{all}");
    assert_eq!(limits["this_key"], limits["defaults"]);
    for cap in [
        "memory",
        "processes",
        "cpu_time",
        "file_size",
        "workspace",
        "open_files",
    ] {
        assert_eq!(limits["enforcement"][cap]["enforced"], true, "{cap}: {all}");
    }
    assert_eq!(limits["enforcement"]["cgroups"]["enforced"], false);

    let hostile = issue(&t.state, "hostile", Scopes::user()).await;
    let id = t.key_id("hostile").await;
    let put = |body: Value| {
        t.client
            .put(t.url(&format!("/v1/admin/keys/{id}/task-profile")))
            .bearer_auth(&t.admin)
            .json(&body)
            .send()
    };
    let zero = put(json!({"max_resources": {"processes": 0}}))
        .await
        .unwrap();
    assert_eq!(zero.status(), StatusCode::BAD_REQUEST);
    let unknown = put(json!({"max_resources": {"disk": 5}})).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let ok = put(
        json!({"max_resources": {"workspace_mb": 16, "cpu_seconds": 2,
                                          "memory_mb": 64, "processes": 100000}}),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // Another replica's view of the key may lag by KEY_CACHE_TTL_SECONDS;
    // this replica's is fresh.
    let mine = caps(&t, &hostile).await;
    let yours = &mine["resource_limits"]["this_key"];
    assert_eq!(yours["workspace_mb"], 16, "{mine}");
    assert_eq!(yours["cpu_seconds"], 2);
    assert_eq!(yours["memory_mb"], 64);
    assert_eq!(yours["processes"], 256, "a bound never raises a default");

    let filler = run(&t, &hostile, "head -c 300M /dev/zero > fill; echo finished").await;
    let text = tool_result(&filler);
    assert!(
        text.contains("[resource limit: killed: the workspace grew past its quota of 16 MiB")
            && !text.contains("finished"),
        "{filler}"
    );
    let busy = run(&t, &hostile, "while :; do :; done").await;
    assert!(
        tool_result(&busy)
            .contains("[resource limit: the CPU time limit (2 s per process) was reached]"),
        "{busy}"
    );
    let hog = run(
        &t,
        &hostile,
        "a=$(head -c 300000000 /dev/zero | tr '\\0' x); echo ${#a}",
    )
    .await;
    assert!(
        tool_result(&hog)
            .contains("[resource limit: a process reached the memory limit (64 MiB per process)]"),
        "{hog}"
    );

    // The service and other keys' tasks are unaffected.
    assert_eq!(t.get("/health", None).await.status(), StatusCode::OK);
    let fine = run(
        &t,
        &t.admin,
        "head -c 20M /dev/zero > twenty; du -m twenty | cut -f1",
    )
    .await;
    assert_eq!(fine["status"], "completed", "{fine}");
    assert_eq!(tool_result(&fine).trim(), "20", "{fine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sees_neither_other_workspaces_nor_the_database() {
    // Outside /tmp, which the sandbox replaces anyway: the test is that
    // TASKS_DIR and the database's folder are hidden wherever they are.
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hidden-{}", std::process::id()));
    let (tasks, data) = (base.join("tasks"), base.join("data"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let database = data.join("switchyard.db");
    let t = TestApp::builder()
        .catalog("[[models]]\nid = \"agent-bash\"\nbase_url = \"{openai}\"\n")
        .env("DATABASE_URL", &format!("sqlite://{}", database.display()))
        .env("TASKS_DIR", tasks.to_str().unwrap())
        .env("TASK_DEFAULT_MODEL", "agent-bash")
        .env("TASK_SANDBOX_USER", "65534:65534")
        .start()
        .await;
    let other = tasks.join("task_someone_else");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("private.txt"), "another tenant's data").unwrap();
    assert!(database.is_file());
    let task = run(
        &t,
        &t.admin,
        &format!(
            "echo own > mine.txt; cat mine.txt; cat {} 2>&1; head -c 16 {} 2>&1; echo listed $(ls {} | wc -l)",
            other.join("private.txt").display(),
            database.display(),
            tasks.display(),
        ),
    )
    .await;
    std::fs::remove_dir_all(&base).ok();
    assert_eq!(task["status"], "completed", "{task}");
    let out = tool_result(&task);
    assert!(out.starts_with("own"), "{out}");
    assert!(!out.contains("another tenant's data"), "{out}");
    assert!(!out.contains("SQLite format"), "{out}");
    // Only its own workspace is in the tasks folder it sees.
    assert!(out.contains("listed 1"), "{out}");
}
