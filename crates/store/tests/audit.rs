//! The audit log's hash chain and retention's deletes, each on SQLite and
//! on PostgreSQL, each on a fresh database: links, the first broken link
//! after tampering, concurrent writers from several pools (replicas), and
//! deletion of old records, usage and tasks in bounded batches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use std::collections::HashSet;
use switchyard_core::audit::AuditKind;
use switchyard_core::audit_chain::{BreakKind, GENESIS_HASH};
use switchyard_core::config::DatabaseKind;
use switchyard_core::tasks::TaskStatus;
use switchyard_store::{
    AuditEvent, AuditFilter, AuditOrder, AuditRecord, NewTask, Store, TaskFinish, UsageRecord,
};
use switchyard_testkit::TestDatabase;

async fn fresh(kind: DatabaseKind) -> (TestDatabase, Store) {
    let db = TestDatabase::of_kind(kind);
    let store = Store::connect_lazy(&db.config()).unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

switchyard_testkit::on_both_engines!(multi_thread:
    records_are_chained_and_verify_names_the_first_broken_link,
    concurrent_writers_on_several_replicas_never_fork_the_chain,
    retention_deletes_a_prefix_and_the_chain_verifies_from_the_oldest_kept,
    pages_filter_and_run_both_ways,
    usage_and_finished_tasks_go_in_bounded_batches,
);

fn event(kind: AuditKind, n: usize) -> AuditEvent {
    AuditEvent {
        actor_key_id: Some(format!("key_{}", n % 3)),
        project: Some(format!("p{}", n % 2)),
        target: Some(format!("target_{n}")),
        details: serde_json::json!({"n": n, "text": "a, \"quoted\" value"}),
        ..AuditEvent::new(kind)
    }
}

async fn all(store: &Store) -> Vec<AuditRecord> {
    store.audit_chain_page(0, 100_000).await.unwrap()
}

async fn records_are_chained_and_verify_names_the_first_broken_link(kind: DatabaseKind) {
    let (db, store) = fresh(kind).await;
    // A record from before the chain existed (written by an older version).
    db.execute(
        "INSERT INTO audit_log (timestamp, event, details) \
         VALUES ('2020-01-01T00:00:00+00:00', 'key.created', '{}')",
    )
    .await;
    let t = switchyard_core::now();
    for n in 0..5 {
        store
            .record_audit(
                &event(AuditKind::KeyCreated, n),
                t + Duration::nanoseconds(n as i64 * 1_000_001),
            )
            .await
            .unwrap();
    }
    let records = all(&store).await;
    assert_eq!(records.len(), 6);
    assert_eq!(records[0].hash, None);
    assert_eq!(records[1].prev_hash.as_deref(), Some(GENESIS_HASH));
    for pair in records[1..].windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "{pair:?}");
    }
    let report = store.verify_audit_chain(2).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!((report.checked, report.unchained), (5, 1));
    assert_eq!(report.last_id, Some(records[5].id));
    assert_eq!(report.head, records[5].hash);

    // Changing a record's content breaks its own link.
    let third = records[3].id;
    let n = db
        .execute(&format!(
            "UPDATE audit_log SET details = '{{\"n\":99}}' WHERE id = {third}"
        ))
        .await;
    assert_eq!(n, 1);
    let report = store.verify_audit_chain(2).await.unwrap();
    let broken = report.broken.clone().unwrap();
    assert!(!report.ok);
    assert_eq!(
        (broken.link.id, broken.link.kind),
        (third, BreakKind::HashMismatch)
    );
    assert_eq!(broken.event, "key.created");
    assert_eq!(report.checked, 2, "the links before it held");

    // Restoring it mends the chain; deleting one breaks the next link.
    let restore = records[3].details.replace('\'', "''");
    db.execute(&format!(
        "UPDATE audit_log SET details = '{restore}' WHERE id = {third}"
    ))
    .await;
    assert!(store.verify_audit_chain(100).await.unwrap().ok);
    db.execute(&format!("DELETE FROM audit_log WHERE id = {third}"))
        .await;
    let broken = store.verify_audit_chain(100).await.unwrap().broken.unwrap();
    assert_eq!(
        (broken.link.id, broken.link.kind),
        (records[4].id, BreakKind::PrevMismatch)
    );
    assert_eq!(broken.link.expected, records[2].hash);
    assert_eq!(broken.link.found, records[4].prev_hash);

    // A record slipped in without a hash is named too.
    let (db, store) = fresh(kind).await;
    store
        .record_audit(&event(AuditKind::BudgetSet, 1), t)
        .await
        .unwrap();
    db.execute("INSERT INTO audit_log (timestamp, event, details) VALUES ('2030-01-01T00:00:00+00:00', 'budget.set', '{}')")
        .await;
    let broken = store.verify_audit_chain(100).await.unwrap().broken.unwrap();
    assert_eq!(broken.link.kind, BreakKind::MissingHash);
}

async fn concurrent_writers_on_several_replicas_never_fork_the_chain(kind: DatabaseKind) {
    let (db, store) = fresh(kind).await;
    const REPLICAS: usize = 3;
    const WRITERS: usize = 4;
    const EACH: usize = 15;
    let mut handles = Vec::new();
    for r in 0..REPLICAS {
        // Each replica has its own pool, as separate processes would.
        let replica = Store::connect_lazy(&db.config()).unwrap();
        for w in 0..WRITERS {
            let replica = replica.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let n = (r * WRITERS + w) * EACH + i;
                    replica
                        .record_audit(&event(AuditKind::TaskTool, n), switchyard_core::now())
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    let total = REPLICAS * WRITERS * EACH;
    let records = all(&store).await;
    assert_eq!(records.len(), total);
    // No two records name the same predecessor: the chain never forked.
    let prevs: HashSet<_> = records.iter().map(|r| r.prev_hash.clone()).collect();
    assert_eq!(prevs.len(), total);
    let report = store.verify_audit_chain(50).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, total as u64);
}

async fn retention_deletes_a_prefix_and_the_chain_verifies_from_the_oldest_kept(
    kind: DatabaseKind,
) {
    let (db, store) = fresh(kind).await;
    let now = switchyard_core::now();
    let days = |d: i64| now - Duration::days(d);
    // In id order: three expired, one recent, one expired written late
    // (a replica's clock far behind), one now.
    for (n, at) in [days(100), days(95), days(92), days(10), days(200), now]
        .into_iter()
        .enumerate()
    {
        store
            .record_audit(&event(AuditKind::BudgetSet, n), at)
            .await
            .unwrap();
    }
    let before = all(&store).await;
    let cutoff = days(90);
    assert_eq!(store.prune_audit(cutoff, 2, now).await.unwrap(), 2);
    assert_eq!(store.prune_audit(cutoff, 2, now).await.unwrap(), 1);
    // The recent fourth record stops it: the late expired one stays, so
    // that only a prefix of the chain is ever deleted.
    assert_eq!(store.prune_audit(cutoff, 2, now).await.unwrap(), 0);
    let kept = all(&store).await;
    assert_eq!(
        kept.iter().map(|r| r.id).collect::<Vec<_>>(),
        before[3..].iter().map(|r| r.id).collect::<Vec<_>>()
    );
    let anchor = store.audit_anchor().await.unwrap().unwrap();
    assert_eq!(anchor.record_id, before[2].id);
    assert_eq!(Some(anchor.record_hash.clone()), before[2].hash);
    assert_eq!(anchor.record_timestamp, days(92));
    assert_eq!((anchor.deleted_total, anchor.updated_at), (3, now));
    let report = store.verify_audit_chain(100).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 3);
    assert_eq!(report.first_id, Some(before[3].id));

    // Deleting every record leaves the anchor for the next one to follow.
    assert_eq!(
        store
            .prune_audit(now + Duration::days(1), 1000, now)
            .await
            .unwrap(),
        3
    );
    assert!(all(&store).await.is_empty());
    let report = store.verify_audit_chain(100).await.unwrap();
    assert!(report.ok && report.checked == 0, "{report:?}");
    store
        .record_audit(&event(AuditKind::BudgetDeleted, 9), now)
        .await
        .unwrap();
    let next = all(&store).await;
    assert_eq!(next[0].prev_hash, before[5].hash);
    store
        .record_audit(&event(AuditKind::BudgetDeleted, 10), now)
        .await
        .unwrap();
    let report = store.verify_audit_chain(100).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(
        store.audit_anchor().await.unwrap().unwrap().deleted_total,
        6
    );

    // Deleting the oldest records any other way does not pass.
    db.execute(&format!("DELETE FROM audit_log WHERE id = {}", next[0].id))
        .await;
    let broken = store.verify_audit_chain(100).await.unwrap().broken.unwrap();
    assert_eq!(broken.link.kind, BreakKind::AnchorMismatch);
}

async fn pages_filter_and_run_both_ways(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let t0 = switchyard_core::now() - Duration::hours(1);
    let at = |m: i64| t0 + Duration::minutes(m);
    let kinds = [
        AuditKind::KeyCreated,
        AuditKind::BudgetSet,
        AuditKind::KeyRevoked,
    ];
    for n in 0..9 {
        store
            .record_audit(&event(kinds[n % 3], n), at(n as i64))
            .await
            .unwrap();
    }
    let ids = |records: &[AuditRecord]| records.iter().map(|r| r.id).collect::<Vec<_>>();
    let everything = AuditFilter::default();
    let newest = store
        .audit_page(&everything, AuditOrder::NewestFirst, None, 4)
        .await
        .unwrap();
    let next = store
        .audit_page(&everything, AuditOrder::NewestFirst, Some(newest[3].id), 4)
        .await
        .unwrap();
    let oldest = store
        .audit_page(&everything, AuditOrder::OldestFirst, None, 100)
        .await
        .unwrap();
    assert_eq!(oldest.len(), 9);
    let mut expected: Vec<i64> = ids(&oldest).into_iter().rev().collect();
    expected.truncate(8);
    assert_eq!([ids(&newest), ids(&next)].concat(), expected);
    let page = |f: AuditFilter| {
        let store = store.clone();
        async move {
            store
                .audit_page(&f, AuditOrder::OldestFirst, None, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.target.unwrap())
                .collect::<Vec<_>>()
        }
    };
    let targets = |ns: &[usize]| ns.iter().map(|n| format!("target_{n}")).collect::<Vec<_>>();
    assert_eq!(
        page(AuditFilter {
            event: Some("budget.set".into()),
            ..Default::default()
        })
        .await,
        targets(&[1, 4, 7])
    );
    assert_eq!(
        page(AuditFilter {
            key_id: Some("key_2".into()),
            project: Some("p1".into()),
            ..Default::default()
        })
        .await,
        targets(&[5])
    );
    // The key filter also matches the key acted on.
    assert_eq!(
        page(AuditFilter {
            key_id: Some("target_6".into()),
            ..Default::default()
        })
        .await,
        targets(&[6])
    );
    assert_eq!(
        page(AuditFilter {
            from: Some(at(2)),
            to: Some(at(5)),
            ..Default::default()
        })
        .await,
        targets(&[2, 3, 4])
    );
}

fn usage(at: DateTime<Utc>, n: usize) -> UsageRecord {
    switchyard_testkit::usage_record(&format!("req-{n}"), "key_1", at)
}

/// Queues a task at `at` and, unless `finish` is false, finishes it then
/// with `events` execution-log entries.
async fn task(store: &Store, id: &str, at: DateTime<Utc>, finish: bool, events: i64) {
    store
        .insert_task(&NewTask {
            id,
            key_id: "key_1",
            project: "p",
            spec: "{}",
            at,
        })
        .await
        .unwrap();
    let claimed = store
        .claim_task("w", at + Duration::minutes(1), at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id);
    for seq in 1..=events {
        store
            .append_task_event(id, seq, "{\"type\":\"text\",\"text\":\"a prompt\"}")
            .await
            .unwrap();
    }
    if finish {
        let done = store
            .finish_task(&TaskFinish {
                id,
                worker: "w",
                status: TaskStatus::Completed,
                result: "{}",
                at,
            })
            .await
            .unwrap();
        assert!(done);
    }
}

async fn usage_and_finished_tasks_go_in_bounded_batches(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let now = switchyard_core::now();
    let old = now - Duration::days(500);
    let mut records: Vec<UsageRecord> = (0..5).map(|n| usage(old, n)).collect();
    records.push(usage(now, 5));
    records.push(usage(now - Duration::days(399), 6));
    store.insert_usage(&records).await.unwrap();
    let cutoff = now - Duration::days(400);
    let mut batches = Vec::new();
    loop {
        let n = store.prune_usage(cutoff, 2).await.unwrap();
        batches.push(n);
        if n < 2 {
            break;
        }
    }
    assert_eq!(batches, [2, 2, 1]);
    let left: HashSet<String> = store
        .recent_usage(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(
        left,
        HashSet::from(["req-5".to_owned(), "req-6".to_owned()])
    );

    let long_ago = now - Duration::days(100);
    task(&store, "task_old", long_ago, true, 5).await;
    task(&store, "task_recent", now, true, 2).await;
    // Still running after all this time: never deleted.
    task(
        &store,
        "task_running",
        long_ago - Duration::seconds(1),
        false,
        1,
    )
    .await;
    let cutoff = now - Duration::days(90);
    let mut batches = Vec::new();
    loop {
        let n = store.prune_task_events(cutoff, 2).await.unwrap();
        batches.push(n);
        if n < 2 {
            break;
        }
    }
    assert_eq!(batches, [2, 2, 1]);
    assert_eq!(batches.iter().sum::<u64>(), 5);
    assert!(store.task_events("task_old", 0).await.unwrap().is_empty());
    assert_eq!(
        store.prune_tasks(cutoff, 2).await.unwrap(),
        vec!["task_old".to_owned()]
    );
    assert!(store.prune_tasks(cutoff, 2).await.unwrap().is_empty());
    assert_eq!(store.get_task("task_old").await.unwrap(), None);
    assert_eq!(store.task_events("task_recent", 0).await.unwrap().len(), 2);
    assert_eq!(store.task_events("task_running", 0).await.unwrap().len(), 1);
    assert!(store.get_task("task_running").await.unwrap().is_some());

    // Tasks whose log was not emptied first lose it with them.
    task(&store, "task_old_2", long_ago, true, 3).await;
    assert_eq!(
        store.prune_tasks(cutoff, 10).await.unwrap(),
        vec!["task_old_2".to_owned()]
    );
    assert!(store.task_events("task_old_2", 0).await.unwrap().is_empty());
}
