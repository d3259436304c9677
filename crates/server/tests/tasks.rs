//! Agent tasks through the HTTP API, with a scripted model upstream: the
//! durable queue, workers, artifacts, events, cancellation and isolation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{issue, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_core::keys::Scopes;

/// An app with a scripted agent (`agent`) and one that sleeps under Bash
/// (`agent-sleep`) on the fake upstream, and a tasks folder of its own.
async fn start() -> TestApp {
    TestApp::builder()
        .catalog(
            "[[models]]\nid = \"agent\"\nbase_url = \"{openai}\"\ninput_per_mtok = 1.0\noutput_per_mtok = 5.0\n\n\
             [[models]]\nid = \"agent-sleep\"\nbase_url = \"{openai}\"\n",
        )
        .env_path("TASKS_DIR", "tasks")
        .env("TASK_DEFAULT_MODEL", "agent")
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_tools_and_reports_artifacts_usage_and_log() {
    let t = start().await;
    let r = t
        .post_as(
            &t.admin,
            "/v1/task",
            json!({"description": "analyse notes for race conditions",
            "allow_tools": ["Read", "Write", "Edit", "Grep", "Bash"],
            "files": [{"path": "README.md", "content": "seeded"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let task: Value = r.json().await.unwrap();
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        task["result"]["summary"],
        "Found one race condition; see notes.txt."
    );
    assert_eq!(task["usage"]["turns"], 5);
    assert_eq!(task["usage"]["model_used"], "agent");
    assert!(task["usage"]["total_cost"].as_f64().unwrap() > 0.0);
    let arts: Vec<(String, String)> = task["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["path"].as_str().unwrap().to_owned(),
                a["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        arts,
        [
            ("count.txt".to_owned(), "added".to_owned()),
            ("notes.txt".to_owned(), "added".to_owned())
        ]
    );
    let kinds: Vec<&str> = task["execution_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "tool_call").count(), 4);
    assert_eq!(kinds.first(), Some(&"model_call"));
    let id = task["task_id"].as_str().unwrap();
    let file = t
        .get(
            &format!("/v1/tasks/{id}/artifacts/notes.txt"),
            Some(&t.admin),
        )
        .await;
    assert_eq!(file.text().await.unwrap(), "goodbye race condition\n");
    let escape = t
        .get(
            &format!("/v1/tasks/{id}/artifacts/..%2F..%2Fetc%2Fpasswd"),
            Some(&t.admin),
        )
        .await;
    assert_eq!(escape.status(), StatusCode::NOT_FOUND);
    // Workspaces are kept for the retention (a week by default).
    assert_eq!(
        switchyard_server::tasks::clean_up_workspaces(&t.state).await,
        0
    );
    // Each model call of the task was accounted like an API call.
    t.wait_for_usage(5).await;
    let audit = t.state.store.recent_audit(50).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.event == "task.finished" && a.task_id.as_deref() == Some(id)));
    let created = audit
        .iter()
        .find(|a| a.event == "task.created" && a.task_id.as_deref() == Some(id))
        .expect("task.created is audited");
    assert_eq!(created.client_ip.as_deref(), Some("127.0.0.1"));
    assert!(
        created.details.contains("analyse notes"),
        "{}",
        created.details
    );
    let mut tools: Vec<String> = audit
        .iter()
        .filter(|a| a.event == "task.tool" && a.task_id.as_deref() == Some(id))
        .map(|a| {
            serde_json::from_str::<Value>(&a.details).unwrap()["tool"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        ["Bash", "Edit", "Write"],
        "every command and write is audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_tasks_stream_events_and_can_be_cancelled() {
    let t = start().await;
    let r = t
        .post_as(&t.admin, "/v1/task", json!({"description": "sleep", "model": "agent-sleep", "allow_tools": ["Bash"], "async": true}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Wait until the Bash command is running.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let task: Value = t
            .get(&format!("/v1/tasks/{id}"), Some(&t.admin))
            .await
            .json()
            .await
            .unwrap();
        if task["execution_log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "tool_call")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let r = t
        .post_as(&t.admin, &format!("/v1/tasks/{id}/cancel"), json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    loop {
        let task: Value = t
            .get(&format!("/v1/tasks/{id}"), Some(&t.admin))
            .await
            .json()
            .await
            .unwrap();
        if task["status"] == "cancelled" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "{task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The event stream replays the whole log and ends with `done`.
    let text = t
        .get(&format!("/v1/tasks/{id}/events"), Some(&t.admin))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("event: log") && text.contains("\"kind\":\"tool_call\""),
        "{text}"
    );
    assert!(
        text.trim_end()
            .ends_with("data: {\"status\":\"cancelled\"}"),
        "{text}"
    );
    let r = t
        .post_as(&t.admin, &format!("/v1/tasks/{id}/cancel"), json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // The request to stop is audited once, with who asked; the refused
    // second one is not.
    let audit = t.state.store.recent_audit(50).await.unwrap();
    let asked: Vec<_> = audit
        .iter()
        .filter(|a| a.event == "task.cancel_requested" && a.task_id.as_deref() == Some(id.as_str()))
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].actor_key_id.is_some());
    assert_eq!(asked[0].client_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_validated_and_keys_see_only_their_own_tasks() {
    let t = start().await;
    for (body, param) in [
        (json!({"description": ""}), "description"),
        (json!({"description": "x", "timeout": 601}), "timeout"),
        (json!({"description": "x", "max_cost": 10.01}), "max_cost"),
        (
            json!({"description": "x", "allow_tools": ["Read", "Teleport"]}),
            "allow_tools[1]",
        ),
        (
            json!({"description": "x", "allow_agents": ["reviewer"]}),
            "allow_agents[0]",
        ),
        (
            json!({"description": "x", "allow_skills": ["nope"]}),
            "allow_skills[0]",
        ),
        (json!({"description": "x", "model": "nope"}), "model"),
        (json!({"timeout": 5}), "description"),
    ] {
        let r = t.post_as(&t.admin, "/v1/task", body.clone()).await;
        assert!(r.status().is_client_error(), "{body}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["param"],
            param,
            "{body}"
        );
    }
    let alice = issue(&t.state, "alice", Scopes::user()).await;
    let bob = issue(&t.state, "bob", Scopes::user()).await;
    let r = t
        .post_as(
            &alice,
            "/v1/task",
            json!({"description": "do it", "async": true}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        t.get(&format!("/v1/tasks/{id}"), Some(&alice))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        t.get(&format!("/v1/tasks/{id}"), Some(&bob)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get(&format!("/v1/tasks/{id}/events"), Some(&bob))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.post_as(&bob, &format!("/v1/tasks/{id}/cancel"), json!({}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let mine: Value = t.get("/v1/tasks", Some(&bob)).await.json().await.unwrap();
    assert_eq!(mine["data"].as_array().unwrap().len(), 0);
    let mine: Value = t.get("/v1/tasks", Some(&alice)).await.json().await.unwrap();
    assert_eq!(mine["data"][0]["task_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_workspaces_are_removed() {
    let app = TestApp::builder()
        .catalog("[[models]]\nid = \"agent\"\nbase_url = \"{openai}\"\n")
        .env_path("TASKS_DIR", "tasks")
        .env("TASK_DEFAULT_MODEL", "agent")
        .env("TASK_RETENTION_HOURS", "0")
        .start()
        .await;
    let tasks_dir = app.path("tasks");
    let r = app
        .client
        .post(app.url("/v1/task"))
        .bearer_auth(&app.admin)
        .json(&json!({"description": "write notes", "allow_tools": ["Write", "Grep", "Bash", "Edit"]}))
        .send()
        .await
        .unwrap();
    let task: Value = r.json().await.unwrap();
    assert_eq!(task["status"], "completed");
    let id = task["task_id"].as_str().unwrap();
    assert!(tasks_dir.join(id).is_dir());
    // With a retention of 0 h a workspace expires once any time at all has
    // passed since its task finished: the passing of time is the point.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        switchyard_server::tasks::clean_up_workspaces(&app.state).await,
        1
    );
    assert!(!tasks_dir.join(id).exists());
    let gone = app
        .get(
            &format!("/v1/tasks/{id}/artifacts/notes.txt"),
            Some(&app.admin),
        )
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_list_tools_agents_and_skills() {
    let app = TestApp::builder()
        .file(
            "agents/reviewer.md",
            "---\nname: reviewer\ndescription: reviews code\ntools: [Read, Grep]\n---\nReview carefully.\n",
        )
        .file(
            "skills/report/SKILL.md",
            "---\nname: report\ndescription: report format\n---\nsecret body\n",
        )
        .env_path("AGENTS_DIR", "agents")
        .env_path("SKILLS_DIR", "skills")
        .start()
        .await;
    let caps: Value = app
        .get("/v1/capabilities", Some(&app.admin))
        .await
        .json()
        .await
        .unwrap();
    let tools: Vec<&str> = caps["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["Read", "Write", "Edit", "Glob", "Grep", "Bash"]);
    // bubblewrap runs here (the sandbox tests need it), and the probe says so.
    assert_eq!(caps["sandbox"]["status"], "available", "{caps}");
    assert_eq!(caps["bash_sandboxed"], true);
    assert_eq!(caps["agents"][0]["name"], "reviewer");
    assert_eq!(caps["agents"][0]["tools"], json!(["Read", "Grep"]));
    assert_eq!(
        caps["skills"][0],
        json!({"name": "report", "description": "report format"})
    );
    assert!(
        !caps.to_string().contains("secret body"),
        "skill bodies load only when invoked"
    );
    let r = app
        .client
        .post(app.url("/v1/task"))
        .bearer_auth(&app.admin)
        .json(&json!({"description": "x", "allow_agents": ["reviewer"], "allow_skills": ["report"], "async": true, "model": "sonnet"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_profiles_bound_what_a_key_may_ask_for() {
    let t = start().await;
    let limited = issue(&t.state, "limited", Scopes::user()).await;
    let id = t.key_id("limited").await;
    let put = |body: Value| {
        t.client
            .put(t.url(&format!("/v1/admin/keys/{id}/task-profile")))
            .bearer_auth(&t.admin)
            .json(&body)
            .send()
    };
    let bad = put(json!({"allowed_tools": ["Read", "Fly"]}))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["param"],
        "allowed_tools[1]"
    );
    let ok = put(
        json!({"allowed_tools": ["Read", "Write", "Grep", "Edit"], "max_timeout_seconds": 60,
                        "max_cost_usd": 0.5, "max_concurrent_tasks": 1}),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.json::<Value>().await.unwrap()["task_profile"]["max_concurrent_tasks"],
        1
    );
    for (body, reason) in [
        (
            json!({"description": "x", "allow_tools": ["Bash"], "timeout": 30, "max_cost": 0.1}),
            "Bash",
        ),
        (
            json!({"description": "x", "allow_tools": ["Read"], "timeout": 120, "max_cost": 0.1}),
            "60 s",
        ),
        (
            json!({"description": "x", "allow_tools": ["Read"], "timeout": 30}),
            "0.5 USD",
        ),
    ] {
        let r = t.post_as(&limited, "/v1/task", body.clone()).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "task_not_permitted");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(reason),
            "{e}"
        );
    }
    let fine = json!({"description": "slow", "model": "agent-sleep", "allow_tools": ["Read"], "timeout": 30,
                      "max_cost": 0.1, "async": true});
    let first = t.post_as(&limited, "/v1/task", fine.clone()).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let second = t.post_as(&limited, "/v1/task", fine).await;
    assert_eq!(second.status(), StatusCode::FORBIDDEN, "one task at a time");
    let task = first.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.post_as(&limited, &format!("/v1/tasks/{task}/cancel"), json!({}))
        .await;
    // Clearing the profile lifts the limits.
    assert_eq!(put(Value::Null).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_carries_chat_and_task_events_for_an_authenticated_key() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let t = start().await;
    let ws_url = t.url("/v1/stream").replace("http://", "ws://");
    // No key: refused at the handshake.
    assert!(tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .is_err());
    let mut request = ws_url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", t.admin).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let task: Value = t
        .post_as(
            &t.admin,
            "/v1/task",
            json!({"description": "notes", "allow_tools": ["Write", "Grep", "Bash", "Edit"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let task_id = task["task_id"].as_str().unwrap();
    ws.send(Message::Text(
        json!({"type": "task.subscribe", "id": "s1", "task_id": task_id})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text(json!({"type": "chat", "id": "c1", "request": {"model": "agent", "messages": [{"role": "user", "content": "hi"}]}}).to_string().into()))
        .await
        .unwrap();
    ws.send(Message::Text("not json".into())).await.unwrap();
    let mut events = 0;
    let (mut done, mut chat, mut bad) = (None, None, false);
    while done.is_none() || chat.is_none() || !bad {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        match v["type"].as_str().unwrap() {
            "task.event" => events += 1,
            "task.done" => done = Some(v["status"].clone()),
            "chat.completion" => chat = Some(v["completion"]["object"].clone()),
            "error" => bad = v["id"].is_null(),
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!(done, Some(json!("completed")));
    assert!(events >= 10, "{events}");
    assert_eq!(chat, Some(json!("chat.completion")));
}

/// The service's secret files and its local backups are out of a task's
/// reach: the folder a secret file is in is hidden from task commands, and
/// with it the secrets beside it that the service never reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_commands_cannot_read_the_services_secrets_or_backups() {
    // Outside /tmp, which the sandbox replaces with its own.
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (secrets, backups) = (
        outside.path().join("secrets"),
        outside.path().join("backups"),
    );
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::create_dir_all(&backups).unwrap();
    let jwt = secrets.join("jwt_secret");
    std::fs::write(&jwt, "a-jwt-secret-that-only-the-service-reads").unwrap();
    std::fs::write(
        secrets.join("database_url_direct"),
        "postgres://backup:pw@db/sy",
    )
    .unwrap();
    std::fs::write(backups.join("dump.sql"), "INSERT INTO api_keys").unwrap();
    let state = TestApp::builder()
        .env("JWT_SECRET_FILE", jwt.to_str().unwrap())
        .env("BACKUP_DESTINATION", backups.to_str().unwrap())
        .env_path("TASKS_DIR", "tasks")
        .state()
        .await;
    assert_eq!(state.config.secret_files, [jwt.as_path()]);
    let ws = switchyard_agent::Workspace::create(&state.dir().join("tasks/probe")).unwrap();
    let policy = switchyard_server::tasks::bash_policy(&state);
    let command = format!(
        "cat {0}/jwt_secret; cat {0}/database_url_direct; ls -A {0}; cat {1}/dump.sql; echo done",
        secrets.display(),
        backups.display()
    );
    let ran = switchyard_agent::sandbox::run_bash(&ws, &policy, &command, Duration::from_secs(30))
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&ran.output);
    assert!(said.contains("done\n"), "{said}");
    for leaked in ["a-jwt-secret", "postgres://", "INSERT INTO"] {
        assert!(!said.contains(leaked), "{said}");
    }
    assert_eq!(
        said.matches("No such file or directory").count(),
        3,
        "{said}"
    );
}
