//! Usage summaries are served by the `usage_log` indexes, not by reading
//! the whole table: each filter an operator or the console gives (a key, a
//! project, a time window) must be one the database can look up. Checked
//! on the plans the databases report, on SQLite and on PostgreSQL (its
//! generic plan, the one a prepared statement comes to use).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Duration;
use switchyard_core::config::DatabaseKind;
use switchyard_store::{Store, UsageFilter, UsageGrouping, UsageRecord};
use switchyard_testkit::TestDatabase;

switchyard_testkit::on_both_engines!(
    usage_summaries_look_up_their_filters,
    usage_time_indexes_ascend
);

async fn usage_summaries_look_up_their_filters(kind: DatabaseKind) {
    let db = TestDatabase::of_kind(kind);
    let store = Store::connect_lazy(&db.config()).unwrap();
    store.migrate().await.unwrap();
    let now = switchyard_core::now();
    let key = || Some("key_1".to_owned());
    let project = || Some("p".to_owned());
    let cases = [
        (
            "a key",
            UsageFilter {
                key_id: key(),
                ..UsageFilter::default()
            },
            &["usage_log_key_timestamp_idx"][..],
        ),
        (
            "a key and a window",
            UsageFilter {
                key_id: key(),
                from: Some(now - Duration::days(1)),
                to: Some(now),
                ..UsageFilter::default()
            },
            &["usage_log_key_timestamp_idx"][..],
        ),
        (
            "a project",
            UsageFilter {
                project: project(),
                ..UsageFilter::default()
            },
            &["usage_log_project_timestamp_idx"][..],
        ),
        (
            "a window",
            UsageFilter {
                from: Some(now - Duration::days(7)),
                to: Some(now),
                ..UsageFilter::default()
            },
            &["usage_log_timestamp_idx"][..],
        ),
        (
            "a key and a project",
            UsageFilter {
                key_id: key(),
                project: project(),
                ..UsageFilter::default()
            },
            &[
                "usage_log_key_timestamp_idx",
                "usage_log_project_timestamp_idx",
            ][..],
        ),
    ];
    for grouping in [
        UsageGrouping::Model,
        UsageGrouping::Day,
        UsageGrouping::Key,
        UsageGrouping::Project,
    ] {
        for (what, filter, indexes) in &cases {
            let plan = store
                .usage_summary_plan(filter, grouping)
                .await
                .unwrap()
                .join("\n");
            let looked_up = match kind {
                // `SEARCH … USING INDEX i (key_id=?)`; a `SCAN … USING
                // INDEX` reads the whole index.
                DatabaseKind::Sqlite => indexes
                    .iter()
                    .any(|i| plan.contains(&format!("SEARCH usage_log USING INDEX {i} ("))),
                // `Index Scan using i` or `Bitmap Index Scan on i`, with an
                // `Index Cond`; never a sequential scan.
                DatabaseKind::Postgres => {
                    indexes.iter().any(|i| plan.contains(i))
                        && plan.contains("Index Cond")
                        && !plan.contains("Seq Scan")
                }
            };
            assert!(
                looked_up,
                "{grouping:?} summary for {what} is not looked up in {indexes:?}:\n{plan}"
            );
        }
    }
    // And the answers are those of the filters: three rows, each inside
    // some filters and outside others.
    let rec = |key: &str, project: &str, at| UsageRecord {
        project: project.into(),
        ..switchyard_testkit::usage_record("r", key, at)
    };
    store
        .insert_usage(&[
            rec("key_1", "p", now - Duration::hours(1)),
            rec("key_1", "q", now - Duration::days(3)),
            rec("key_2", "p", now - Duration::days(10)),
        ])
        .await
        .unwrap();
    let requests = |filter: UsageFilter| {
        let store = store.clone();
        async move {
            store
                .usage_summary(&filter, UsageGrouping::Model)
                .await
                .unwrap()
                .iter()
                .map(|g| g.requests)
                .sum::<i64>()
        }
    };
    for (what, filter, expected) in cases
        .iter()
        .zip([2, 1, 2, 2, 1])
        .map(|((w, f, _), n)| (w, f, n))
    {
        assert_eq!(requests(filter.clone()).await, expected, "{what}");
    }
    assert_eq!(requests(UsageFilter::default()).await, 3, "no filter");
}

/// The time indexes ascend (migration 12): rows arrive in time order, and
/// an ascending index takes each at its right edge, where pages split
/// cheaply and stay full. Newest-first reads scan it backwards.
async fn usage_time_indexes_ascend(kind: DatabaseKind) {
    let db = TestDatabase::of_kind(kind);
    let store = Store::connect_lazy(&db.config()).unwrap();
    store.migrate().await.unwrap();
    let mut definitions = db
        .texts(match kind {
            DatabaseKind::Sqlite => {
                "SELECT sql FROM sqlite_master \
                 WHERE type = 'index' AND tbl_name = 'usage_log' AND sql IS NOT NULL"
            }
            DatabaseKind::Postgres => {
                "SELECT indexdef FROM pg_indexes \
                 WHERE tablename = 'usage_log' AND indexname <> 'usage_log_pkey'"
            }
        })
        .await;
    definitions.sort();
    assert_eq!(definitions.len(), 3, "{definitions:#?}");
    for (definition, (name, columns)) in definitions.iter().zip([
        ("usage_log_key_timestamp_idx", "(key_id, \"timestamp\")"),
        (
            "usage_log_project_timestamp_idx",
            "(project, \"timestamp\")",
        ),
        ("usage_log_timestamp_idx", "(\"timestamp\")"),
    ]) {
        let unquoted = columns.replace('"', "");
        assert!(
            definition.contains(name)
                && (definition.contains(columns) || definition.contains(&unquoted))
                && !definition.to_uppercase().contains("DESC"),
            "not an ascending index {name} on {unquoted}: {definition}"
        );
    }
    // Newest first, from the ascending index read backwards.
    let now = switchyard_core::now();
    let rows: Vec<UsageRecord> = (0..5)
        .map(|i| {
            switchyard_testkit::usage_record(&format!("r{i}"), "key_1", now + Duration::seconds(i))
        })
        .collect();
    store.insert_usage(&rows).await.unwrap();
    let recent: Vec<String> = store
        .recent_usage(3)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(recent, ["r4", "r3", "r2"]);
}
