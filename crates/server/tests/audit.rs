//! The audit log over HTTP (`GET /v1/admin/audit`: filters, cursor pages,
//! errors) and the retention job on the scheduler with a clock the test
//! moves, each on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::Duration as Span;
use common::{issue, TestApp};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::audit::AuditKind;
use switchyard_core::clock::{Clock, ManualClock};
use switchyard_core::config::{DatabaseKind, RetentionConfig};
use switchyard_core::keys::Scopes;
use switchyard_core::tasks::TaskStatus;
use switchyard_server::jobs::{self, Scheduler};
use switchyard_store::{AuditEvent, AuditFilter, AuditOrder, NewTask, Store, TaskFinish};
use switchyard_testkit::TestDatabase;

switchyard_testkit::on_both_engines!(multi_thread:
    the_admin_api_reads_the_audit_log_in_pages,
    the_retention_job_deletes_expired_data_on_the_scheduler,
);

async fn json(app: &TestApp, path: &str, key: &str) -> (StatusCode, Value) {
    let r = app.get(path, Some(key)).await;
    let status = r.status();
    assert_eq!(r.headers()["content-type"], "application/json", "{path}");
    (status, r.json().await.unwrap())
}

async fn the_admin_api_reads_the_audit_log_in_pages(kind: DatabaseKind) {
    let app = TestApp::builder().database(kind).start().await;
    // The admin key's creation is the first record; four more keys follow,
    // and records of other projects and events.
    for n in 0..4 {
        issue(&app.state, &format!("k{n}"), Scopes::user()).await;
    }
    let now = switchyard_core::now();
    for n in 0..3 {
        let event = AuditEvent {
            project: Some("other".into()),
            actor_key_id: Some("key_ops".into()),
            target: Some(format!("budget_{n}")),
            details: serde_json::json!({"n": n}),
            ..AuditEvent::new(AuditKind::BudgetSet)
        };
        app.state
            .store
            .record_audit(&event, now - Span::days(2 - n))
            .await
            .unwrap();
    }
    let admin = app.admin.clone();

    // Newest first, three at a time, until the cursor runs out.
    let mut seen = Vec::new();
    let mut path = "/v1/admin/audit?limit=3".to_owned();
    loop {
        let (s, page) = json(&app, &path, &admin).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["object"], "list");
        for r in page["data"].as_array().unwrap() {
            seen.push(r["id"].as_i64().unwrap());
            assert_eq!(r["hash"].as_str().unwrap().len(), 64);
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["has_more"], true);
                path = format!("/v1/admin/audit?limit=3&cursor={c}");
            }
            None => {
                assert_eq!(page["has_more"], false);
                break;
            }
        }
    }
    let stored = app
        .state
        .store
        .audit_page(&AuditFilter::default(), AuditOrder::NewestFirst, None, 100)
        .await
        .unwrap();
    assert_eq!(seen, stored.iter().map(|r| r.id).collect::<Vec<_>>());
    assert_eq!(seen.len(), 8);

    // One record in full: details as JSON, linked to the one before it.
    let (_, page) = json(&app, "/v1/admin/audit?event=budget.set&limit=1", &admin).await;
    let newest = &page["data"][0];
    assert_eq!(newest["event"], "budget.set");
    assert_eq!(newest["details"], serde_json::json!({"n": 2}));
    assert_eq!(newest["target"], "budget_2");
    let (_, page) = json(
        &app,
        &format!(
            "/v1/admin/audit?cursor={}",
            page["next_cursor"].as_str().unwrap()
        ),
        &admin,
    )
    .await;
    assert_eq!(page["data"][0]["hash"], newest["prev_hash"]);

    // Filters.
    let targets = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["target"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let (_, page) = json(&app, "/v1/admin/audit?project=other", &admin).await;
    assert_eq!(targets(&page), ["budget_2", "budget_1", "budget_0"]);
    let (_, page) = json(
        &app,
        "/v1/admin/audit?key_id=key_ops&event=budget.set",
        &admin,
    )
    .await;
    assert_eq!(targets(&page).len(), 3);
    let k2 = app.key_id("k2").await;
    let (_, page) = json(&app, &format!("/v1/admin/audit?key_id={k2}"), &admin).await;
    assert_eq!(targets(&page), vec![k2]);
    assert_eq!(page["data"][0]["event"], "key.created");
    let from = (now - Span::days(1) - Span::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let (_, page) = json(
        &app,
        &format!("/v1/admin/audit?project=other&from={from}&to=1m"),
        &admin,
    )
    .await;
    assert_eq!(targets(&page), ["budget_1"]);
    let (_, page) = json(&app, "/v1/admin/audit?from=2d&project=other", &admin).await;
    assert_eq!(targets(&page), ["budget_2", "budget_1"]);

    // Mistakes are 400s that name the parameter; users are refused.
    for (query, param) in [
        ("limit=0", Some("limit")),
        ("limit=lots", Some("limit")),
        ("cursor=42", Some("cursor")),
        ("event=key.stolen", Some("event")),
        ("from=yesterday", Some("from")),
        ("from=2026-02-01&to=2026-01-01", Some("to")),
        ("colour=red", None),
    ] {
        let (s, e) = json(&app, &format!("/v1/admin/audit?{query}"), &admin).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{query}");
        assert_eq!(e["error"]["param"].as_str(), param, "{query}: {e}");
    }
    let user = issue(&app.state, "reader", Scopes::user()).await;
    let (s, _) = json(&app, "/v1/admin/audit", &user).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The OpenAPI document lists the route with its parameters.
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let op = &doc["paths"]["/v1/admin/audit"]["get"];
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        ["from", "to", "event", "key_id", "project", "limit", "cursor"]
    );
    assert!(op["responses"]["200"].is_object());
    app.stop().await;
}

async fn the_retention_job_deletes_expired_data_on_the_scheduler(kind: DatabaseKind) {
    let db = TestDatabase::of_kind(kind);
    let store = Store::connect_lazy(&db.config()).unwrap();
    store.migrate().await.unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let t0 = clock.now();
    let days = |d: i64| t0 + Span::days(d);
    let tasks_dir = tempfile::tempdir().unwrap();

    // Audit records 0, 50 and 100 days in; a task finished on day 0 with
    // its log and workspace; usage on days 0 and 300.
    for (n, day) in [0, 50, 100].into_iter().enumerate() {
        store
            .record_audit(
                &AuditEvent {
                    target: Some(format!("t{n}")),
                    ..AuditEvent::new(AuditKind::KeyCreated)
                },
                days(day),
            )
            .await
            .unwrap();
    }
    store
        .insert_task(&NewTask {
            id: "task_done",
            key_id: "k",
            project: "p",
            spec: "{}",
            at: t0,
        })
        .await
        .unwrap();
    store.claim_task("w", days(1), t0).await.unwrap().unwrap();
    store
        .append_task_event("task_done", 1, "{\"type\":\"text\"}")
        .await
        .unwrap();
    store
        .finish_task(&TaskFinish {
            id: "task_done",
            worker: "w",
            status: TaskStatus::Completed,
            result: "{}",
            at: t0,
        })
        .await
        .unwrap();
    std::fs::create_dir_all(tasks_dir.path().join("task_done/out")).unwrap();
    let mut usage = Vec::new();
    for (n, day) in [0, 0, 0, 300].into_iter().enumerate() {
        usage.push(switchyard_store::UsageRecord {
            timestamp: days(day),
            request_id: format!("r{n}"),
            key_id: "k".into(),
            project: "p".into(),
            endpoint: "/v1/messages".into(),
            model_requested: None,
            model_used: None,
            backend: None,
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            cost_nano_usd: 0,
            latency_ms: 0,
            upstream_latency_ms: None,
            status: 200,
            error_type: None,
        });
    }
    store.insert_usage(&usage).await.unwrap();

    let policy = RetentionConfig {
        audit_days: 90,
        usage_days: 400,
        task_days: 30,
        batch_size: 2,
    };
    let mut scheduler = Scheduler::new(
        Store::connect_lazy(&db.config()).unwrap(),
        Duration::from_secs(30),
    )
    .with_clock(clock.clone())
    .with_replica_id("replica-a")
    .with_tick(Duration::from_millis(10));
    scheduler
        .register(jobs::retention(
            store.clone(),
            policy,
            tasks_dir.path().to_path_buf(),
        ))
        .unwrap();
    let audited = |store: Store| async move {
        store
            .audit_page(&AuditFilter::default(), AuditOrder::OldestFirst, None, 100)
            .await
            .unwrap()
    };

    // Day 20: nothing has expired; nothing goes and nothing is recorded.
    clock.set(days(20));
    scheduler.tick().await;
    scheduler.wait_idle().await;
    assert_eq!(audited(store.clone()).await.len(), 3);
    assert!(store.get_task("task_done").await.unwrap().is_some());
    let run = store.get_job(jobs::RETENTION).await.unwrap().unwrap();
    assert_eq!((run.last_status.as_str(), run.runs), ("ok", 1));
    assert_eq!(run.interval_ms, 3_600_000);

    // Half an hour later: not due again.
    clock.set(days(20) + Span::minutes(30));
    scheduler.tick().await;
    scheduler.wait_idle().await;
    let run = store.get_job(jobs::RETENTION).await.unwrap().unwrap();
    assert_eq!(run.runs, 1);

    // Day 31: the task (kept 30 days) goes with its log and its workspace.
    clock.set(days(31));
    scheduler.tick().await;
    scheduler.wait_idle().await;
    assert_eq!(store.get_task("task_done").await.unwrap(), None);
    assert!(store.task_events("task_done", 0).await.unwrap().is_empty());
    assert!(!tasks_dir.path().join("task_done").exists());
    let records = audited(store.clone()).await;
    assert_eq!(records.len(), 4);
    let last = records.last().unwrap();
    assert_eq!(last.event, "retention.deleted");
    let details: Value = serde_json::from_str(&last.details).unwrap();
    assert_eq!(
        details["deleted"],
        serde_json::json!({"audit": 0, "usage": 0, "tasks": 1, "task_events": 1, "workspaces": 1})
    );

    // Day 141: the audit records of days 0 and 50 go (in batches of two,
    // the chain kept whole); day 401: the old usage.
    clock.set(days(141));
    scheduler.tick().await;
    scheduler.wait_idle().await;
    let records = audited(store.clone()).await;
    let targets: Vec<_> = records.iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, [Some("t2".to_owned()), None, None]);
    let report = store.verify_audit_chain(100).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.anchor.unwrap().deleted_total, 2);
    assert_eq!(store.count_usage().await.unwrap(), 4);
    clock.set(days(401));
    scheduler.tick().await;
    scheduler.wait_idle().await;
    assert_eq!(store.count_usage().await.unwrap(), 1);
    let run = store.get_job(jobs::RETENTION).await.unwrap().unwrap();
    assert_eq!((run.last_status.as_str(), run.runs), ("ok", 4));
    assert!(store.verify_audit_chain(100).await.unwrap().ok);
    scheduler.shutdown().await;
}
