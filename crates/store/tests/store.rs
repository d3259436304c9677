//! Repository tests, each run on SQLite and on PostgreSQL, each on a fresh
//! database of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Duration;
use switchyard_core::audit::AuditKind;
use switchyard_core::config::DatabaseKind;
use switchyard_core::keys::{new_id, NewKeySecret, NewKeySpec, RateLimit, Scopes};
use switchyard_core::tasks::TaskStatus;
use switchyard_store::{AuditEvent, KeyInsert, NewTask, Store, TaskFinish, UsageRecord};
use switchyard_testkit::{usage_row, TestDatabase};

async fn fresh(kind: DatabaseKind) -> (TestDatabase, Store) {
    let db = TestDatabase::of_kind(kind);
    let store = Store::connect_lazy(&db.config()).unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

switchyard_testkit::on_both_engines!(
    migrations_apply_once,
    keys_round_trip,
    revocation_is_idempotent_and_keeps_first_time,
    bootstrap_happens_once,
    last_used_never_moves_backwards,
    audit_records_read_back,
    usage_batches_land_whole,
    usage_summaries_group_and_filter,
    tasks_are_claimed_once_under_leases,
);

async fn tasks_are_claimed_once_under_leases(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let t0 = switchyard_core::now();
    let secs = move |n: i64| t0 + Duration::seconds(n);
    store
        .insert_task(&NewTask {
            id: "task_a",
            key_id: "key_1",
            project: "p",
            spec: "{}",
            at: t0,
        })
        .await
        .unwrap();
    store
        .insert_task(&NewTask {
            id: "task_b",
            key_id: "key_1",
            project: "p",
            spec: "{}",
            at: secs(1),
        })
        .await
        .unwrap();
    // Four workers race for two tasks: each task goes to exactly one.
    let mut handles = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .claim_task(&format!("w{w}"), secs(60), secs(2))
                .await
                .unwrap()
        }));
    }
    let mut claimed: Vec<String> = Vec::new();
    for h in handles {
        if let Some(t) = h.await.unwrap() {
            assert_eq!(t.status, "running");
            assert_eq!(t.attempts, 1);
            claimed.push(t.id);
        }
    }
    claimed.sort();
    assert_eq!(claimed, ["task_a", "task_b"]);
    let a = store.get_task("task_a").await.unwrap().unwrap();
    let owner = a.lease_owner.clone().unwrap();
    assert_eq!(
        store
            .renew_task_lease("task_a", &owner, secs(90))
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        store
            .renew_task_lease("task_a", "intruder", secs(90))
            .await
            .unwrap(),
        None
    );
    assert!(store.request_task_cancel("task_a").await.unwrap());
    assert_eq!(
        store
            .renew_task_lease("task_a", &owner, secs(90))
            .await
            .unwrap(),
        Some(true)
    );
    assert!(!store
        .finish_task(&TaskFinish {
            id: "task_a",
            worker: "intruder",
            status: TaskStatus::Completed,
            result: "{}",
            at: secs(3),
        })
        .await
        .unwrap());
    assert!(store
        .finish_task(&TaskFinish {
            id: "task_a",
            worker: &owner,
            status: TaskStatus::Cancelled,
            result: "{\"status\":\"cancelled\"}",
            at: secs(3),
        })
        .await
        .unwrap());
    assert!(store
        .get_task("task_a")
        .await
        .unwrap()
        .unwrap()
        .is_finished());
    assert!(!store.request_task_cancel("task_a").await.unwrap());

    // task_b's worker vanishes: after the lease it is claimed again, once more.
    assert!(
        store
            .claim_task("w9", secs(100), secs(30))
            .await
            .unwrap()
            .is_none(),
        "lease still held"
    );
    let again = store
        .claim_task("w9", secs(200), secs(120))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id.as_str(), again.attempts), ("task_b", 2));
    assert!(
        store
            .claim_task("w10", secs(400), secs(300))
            .await
            .unwrap()
            .is_none(),
        "no attempts left"
    );
    assert_eq!(store.settle_abandoned_tasks(secs(300)).await.unwrap(), 1);
    let b = store.get_task("task_b").await.unwrap().unwrap();
    assert_eq!(b.status, "failed");
    assert!(b.result.unwrap().contains("no attempts left"));

    // Queued then cancelled is cancelled at once, and never runs.
    store
        .insert_task(&NewTask {
            id: "task_c",
            key_id: "key_2",
            project: "p",
            spec: "{}",
            at: secs(5),
        })
        .await
        .unwrap();
    assert!(store.cancel_task("task_c", secs(6)).await.unwrap());
    let c = store.get_task("task_c").await.unwrap().unwrap();
    assert_eq!(
        (c.status.as_str(), c.cancel_requested, c.finished_at),
        ("cancelled", true, Some(secs(6)))
    );
    assert_eq!(
        c.result.as_deref(),
        Some("{\"status\":\"cancelled\",\"error\":\"cancelled before it started\"}")
    );
    assert!(!store.request_task_cancel("task_c").await.unwrap());
    assert!(store
        .claim_task("w1", secs(400), secs(301))
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.settle_abandoned_tasks(secs(301)).await.unwrap(), 0);

    for seq in 1..=3 {
        store
            .append_task_event("task_b", seq, &format!("{{\"seq\":{seq}}}"))
            .await
            .unwrap();
    }
    store
        .append_task_event("task_b", 2, "duplicate")
        .await
        .unwrap();
    let events = store.task_events("task_b", 1).await.unwrap();
    assert_eq!(
        events,
        vec![(2, "{\"seq\":2}".to_owned()), (3, "{\"seq\":3}".to_owned())]
    );
    assert_eq!(store.list_tasks("key_1", 10).await.unwrap().len(), 2);
    assert_eq!(store.list_tasks("key_2", 10).await.unwrap().len(), 1);
    assert_eq!(store.list_recent_tasks(10).await.unwrap().len(), 3);
    assert_eq!(store.list_recent_tasks(1).await.unwrap().len(), 1);
}

async fn usage_summaries_group_and_filter(kind: DatabaseKind) {
    use chrono::TimeZone;
    use switchyard_store::{UsageFilter, UsageGrouping};
    let (_db, store) = fresh(kind).await;
    let day1 = chrono::Utc
        .with_ymd_and_hms(2026, 11, 26, 23, 30, 0)
        .unwrap();
    let day2 = chrono::Utc
        .with_ymd_and_hms(2026, 11, 27, 0, 30, 0)
        .unwrap();
    let rec = |at, key: &str, model: &str, cost: i64| UsageRecord {
        model_requested: Some(model.into()),
        model_used: Some(model.into()),
        input_tokens: 10,
        output_tokens: 20,
        cached_tokens: 1,
        cost_nano_usd: cost,
        ..switchyard_testkit::usage_record("r", key, at)
    };
    store
        .insert_usage(&[
            rec(day1, "k1", "a", 100),
            rec(day2, "k1", "a", 200),
            rec(day2, "k1", "b", 400),
            rec(day2, "k2", "b", 800),
        ])
        .await
        .unwrap();
    let all = UsageFilter::default();
    let by_model = store
        .usage_summary(&all, UsageGrouping::Model)
        .await
        .unwrap();
    assert_eq!(by_model.len(), 2);
    assert_eq!(
        (
            by_model[0].group.as_str(),
            by_model[0].requests,
            by_model[0].cost_nano_usd
        ),
        ("a", 2, 300)
    );
    assert_eq!(
        (
            by_model[1].group.as_str(),
            by_model[1].output_tokens,
            by_model[1].cost_nano_usd
        ),
        ("b", 40, 1200)
    );
    let k1 = UsageFilter {
        key_id: Some("k1".into()),
        ..UsageFilter::default()
    };
    let by_day = store.usage_summary(&k1, UsageGrouping::Day).await.unwrap();
    assert_eq!(
        by_day
            .iter()
            .map(|g| (g.group.as_str(), g.requests, g.cost_nano_usd))
            .collect::<Vec<_>>(),
        [("2026-11-26", 1, 100), ("2026-11-27", 2, 600)]
    );
    let window = UsageFilter {
        from: Some(day2),
        to: Some(day2 + Duration::seconds(1)),
        project: Some("p".into()),
        ..UsageFilter::default()
    };
    let total: i64 = store
        .usage_summary(&window, UsageGrouping::Model)
        .await
        .unwrap()
        .iter()
        .map(|g| g.requests)
        .sum();
    assert_eq!(total, 3);
    // Grouped by key and by project, with errors (status 400 and above).
    store
        .insert_usage(&[UsageRecord {
            status: 429,
            project: "q".into(),
            ..rec(day2, "k2", "b", 0)
        }])
        .await
        .unwrap();
    let by_key = store.usage_summary(&all, UsageGrouping::Key).await.unwrap();
    assert_eq!(
        by_key
            .iter()
            .map(|g| (g.group.as_str(), g.requests, g.errors, g.cost_nano_usd))
            .collect::<Vec<_>>(),
        [("k1", 3, 0, 700), ("k2", 2, 1, 800)]
    );
    let by_project = store
        .usage_summary(&all, UsageGrouping::Project)
        .await
        .unwrap();
    assert_eq!(
        by_project
            .iter()
            .map(|g| (g.group.as_str(), g.requests, g.errors))
            .collect::<Vec<_>>(),
        [("p", 4, 0), ("q", 1, 1)]
    );
    assert_eq!(switchyard_store::UsageGroup::total(&by_project).requests, 5);
}

async fn usage_batches_land_whole(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let t = switchyard_core::now();
    let records: Vec<UsageRecord> = (0..1234)
        .map(|i| UsageRecord {
            output_tokens: i,
            cost_nano_usd: 123_456_789_012,
            ..usage_row(i, t)
        })
        .map(|r| {
            // Every third call failed before a model answered: its
            // optional columns are NULL, and it has an error type.
            if r.output_tokens % 3 != 0 {
                return r;
            }
            UsageRecord {
                model_used: None,
                backend: None,
                upstream_latency_ms: None,
                status: 502,
                error_type: Some("upstream_error".into()),
                ..r
            }
        })
        .collect();
    store.insert_usage(&records).await.unwrap();
    assert_eq!(store.count_usage().await.unwrap(), 1234);
    let recent = store.recent_usage(2).await.unwrap();
    assert_eq!(recent, vec![records[1233].clone(), records[1232].clone()]);
    store.insert_usage(&[]).await.unwrap();
}

async fn migrations_apply_once(kind: DatabaseKind) {
    let db = TestDatabase::of_kind(kind);
    let store = Store::connect_lazy(&db.config()).unwrap();
    assert_eq!(
        store.pending_migrations().await.unwrap(),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
    assert_eq!(store.migrate().await.unwrap(), 12);
    assert_eq!(store.migrate().await.unwrap(), 0);
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert!(store.ping(std::time::Duration::from_secs(2)).await.is_ok());
    let stats = store.pool_stats();
    assert_eq!(stats.max, 5);
    assert!(stats.size >= 1);
}

fn spec(name: &str, scopes: Scopes) -> NewKeySpec {
    let now = switchyard_core::now();
    NewKeySpec::new(
        name,
        Some("ops@example.com"),
        "proj-a",
        scopes,
        Some(now + Duration::days(90)),
        now,
    )
    .unwrap()
}

/// A fresh secret and the row that would store it.
fn row_for(spec: &NewKeySpec) -> (NewKeySecret, KeyInsert<'_>) {
    let secret = NewKeySecret::generate().unwrap();
    let row = KeyInsert {
        id: new_id("key"),
        spec,
        hash: secret.hash(),
        prefix: secret.display_prefix(),
        created_at: switchyard_core::now(),
    };
    (secret, row)
}

async fn insert(store: &Store, spec: &NewKeySpec) -> (NewKeySecret, switchyard_core::keys::ApiKey) {
    let (secret, row) = row_for(spec);
    (secret, store.insert_key(&row).await.unwrap())
}

async fn keys_round_trip(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let s = spec("ci", Scopes::admin());
    let (secret, created) = insert(&store, &s).await;
    assert_eq!(
        store.get_key(&created.id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store.find_key_by_hash(&secret.hash()).await.unwrap(),
        Some(created.clone())
    );
    let other = NewKeySecret::generate().unwrap();
    assert_eq!(store.find_key_by_hash(&other.hash()).await.unwrap(), None);
    assert_eq!(store.get_key("key_missing").await.unwrap(), None);
    let mut limited = spec("app", Scopes::user());
    limited.rate_limit = Some(RateLimit::new(600, 3600).unwrap());
    let (_, second) = insert(&store, &limited).await;
    assert_eq!(
        store.get_key(&second.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(second.rate_limit, RateLimit::new(600, 3600).ok());
    let listed = store.list_keys(false).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&created) && listed.contains(&second));
    assert_eq!(store.count_keys().await.unwrap(), 2);
    let changed = store
        .set_key_rate_limit(&created.id, RateLimit::new(5, 1).ok())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.rate_limit, RateLimit::new(5, 1).ok());
    let cleared = store
        .set_key_rate_limit(&second.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.rate_limit, None);
    assert_eq!(
        store.set_key_rate_limit("key_nope", None).await.unwrap(),
        None
    );
    assert_eq!(
        store.key_hash(&created.id).await.unwrap(),
        Some(secret.hash().to_hex())
    );
    // The secret itself is not stored anywhere in the row.
    assert!(!format!("{created:?}").contains(secret.secret().expose()));
}

async fn revocation_is_idempotent_and_keeps_first_time(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let (_, key) = insert(&store, &spec("k", Scopes::user())).await;
    let t1 = switchyard_core::now();
    let revoked = store.revoke_key(&key.id, t1).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(t1));
    let again = store
        .revoke_key(&key.id, t1 + Duration::seconds(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at, Some(t1));
    assert_eq!(store.revoke_key("key_nope", t1).await.unwrap(), None);
    assert!(store.list_keys(false).await.unwrap().is_empty());
    assert_eq!(store.list_keys(true).await.unwrap(), vec![again]);
}

async fn bootstrap_happens_once(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let s = spec("admin", Scopes::admin());
    let mut handles = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let (_, row) = row_for(&s);
            store.bootstrap_admin_key(&row).await
        }));
    }
    let mut created = 0;
    for h in handles {
        // Concurrent SQLite writers may see SQLITE_BUSY; what matters is that
        // at most one bootstrap lands.
        if let Ok(Some(_)) = h.await.unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(store.count_keys().await.unwrap(), 1);
    // Once keys exist (even after revocation), bootstrap never runs again.
    let (_, row) = row_for(&s);
    let again = store.bootstrap_admin_key(&row).await.unwrap();
    assert_eq!(again, None);
}

async fn last_used_never_moves_backwards(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let (_, key) = insert(&store, &spec("k", Scopes::user())).await;
    let t = switchyard_core::now();
    store.touch_last_used(&[(key.id.clone(), t)]).await.unwrap();
    store
        .touch_last_used(&[(key.id.clone(), t - Duration::minutes(1))])
        .await
        .unwrap();
    assert_eq!(
        store.get_key(&key.id).await.unwrap().unwrap().last_used_at,
        Some(t)
    );
    let later = t + Duration::minutes(1);
    store
        .touch_last_used(&[(key.id.clone(), later)])
        .await
        .unwrap();
    assert_eq!(
        store.get_key(&key.id).await.unwrap().unwrap().last_used_at,
        Some(later)
    );
}

async fn audit_records_read_back(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let t = switchyard_core::now();
    for (i, event) in [AuditKind::KeyCreated, AuditKind::KeyRevoked]
        .into_iter()
        .enumerate()
    {
        store
            .record_audit(
                &AuditEvent {
                    actor_key_id: Some("key_a".into()),
                    actor_key: Some("sy_12345678…".into()),
                    target: Some("key_b".into()),
                    client_ip: Some("127.0.0.1".into()),
                    request_id: Some(format!("req-{i}")),
                    details: serde_json::json!({"name": "b"}),
                    ..AuditEvent::new(event)
                },
                t + Duration::seconds(i as i64),
            )
            .await
            .unwrap();
    }
    let recent = store.recent_audit(10).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].event, "key.revoked");
    assert_eq!(recent[0].timestamp, t + Duration::seconds(1));
    assert_eq!(recent[1].request_id.as_deref(), Some("req-0"));
    assert_eq!(recent[1].details, r#"{"name":"b"}"#);
}
