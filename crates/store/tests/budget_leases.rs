//! Budget leases in the database, on SQLite and on PostgreSQL: growing a
//! lease is refused past the limit however many holders ask at once, spend
//! lands with usage rows, and a lease that is not renewed stops counting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use switchyard_core::budget::{Budget, BudgetPeriod, BudgetScope};
use switchyard_core::config::DatabaseKind;
use switchyard_store::{LeaseKey, LeaseRoom, NewBudget, Settlement, Store, UsageRecord};
use switchyard_testkit::{usage_row, TestDatabase};

async fn fresh(kind: DatabaseKind) -> (TestDatabase, Store) {
    let db = TestDatabase::of_kind(kind);
    let store = Store::connect_lazy(&db.config()).unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

switchyard_testkit::on_both_engines!(
    budgets_are_set_replaced_and_listed,
    concurrent_holders_cannot_lease_past_the_limit,
    spend_lands_with_usage_rows_and_leases_shrink_to_what_is_needed,
    an_expired_lease_counts_for_nothing_and_is_forgotten,
    leases_of_a_deleted_budget_go_with_it,
);

async fn budget(store: &Store, id: &str, period: BudgetPeriod, limit: i64) -> Budget {
    store
        .set_budget(&NewBudget {
            id,
            scope: BudgetScope::Project,
            subject: id,
            period,
            limit_nano_usd: limit,
            at: switchyard_core::now(),
        })
        .await
        .unwrap()
}

/// Sets `holder`'s lease to `want` if the room allows it, else to 0.
async fn lease(
    store: &Store,
    b: &Budget,
    holder: &str,
    want: i64,
    now: DateTime<Utc>,
) -> Option<(LeaseRoom, i64)> {
    let key = b.period.key_at(now);
    let mut decide = |room: &LeaseRoom| {
        if want <= room.free_nano_usd() {
            want
        } else {
            0
        }
    };
    store
        .set_budget_lease(
            LeaseKey {
                budget_id: &b.id,
                period_key: &key,
                holder,
            },
            now,
            now + Duration::seconds(30),
            &mut decide,
        )
        .await
        .unwrap()
}

async fn budgets_are_set_replaced_and_listed(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let t = switchyard_core::now();
    let first = budget(&store, "bud_1", BudgetPeriod::Daily, 100).await;
    // Setting again replaces the limit, keeping the id.
    let again = store
        .set_budget(&NewBudget {
            id: "bud_2",
            scope: BudgetScope::Project,
            subject: "bud_1",
            period: BudgetPeriod::Daily,
            limit_nano_usd: 1000,
            at: t,
        })
        .await
        .unwrap();
    assert_eq!((again.id.as_str(), again.limit_nano_usd), ("bud_1", 1000));
    assert_eq!(first.id, again.id);
    budget(&store, "other", BudgetPeriod::Total, 1).await;
    assert_eq!(store.list_budgets().await.unwrap().len(), 2);
    assert_eq!(store.budgets_for("k", "bud_1").await.unwrap().len(), 1);
    let state = store.budget_state(&again, t).await.unwrap();
    assert_eq!((state.spent_nano_usd, state.leased_nano_usd), (0, 0));
    assert_eq!(state.remaining_nano_usd(), 1000);
}

async fn concurrent_holders_cannot_lease_past_the_limit(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let t = switchyard_core::now();
    let b = budget(&store, "bud_1", BudgetPeriod::Monthly, 100).await;
    // 40 replicas ask for 10 each at once: exactly 10 get it.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (store, b) = (store.clone(), b.clone());
            let holder = format!("r{i}");
            tokio::spawn(async move { (lease(&store, &b, &holder, 10, t).await, holder) })
        })
        .collect();
    let mut granted = Vec::new();
    for task in tasks {
        let (result, holder) = task.await.unwrap();
        let (room, amount) = result.unwrap();
        assert_eq!(room.limit_nano_usd, 100);
        assert!(room.spent_nano_usd + room.others_nano_usd + amount <= 100);
        if amount == 10 {
            granted.push(holder);
        }
    }
    assert_eq!(granted.len(), 10);
    let r0 = granted[0].as_str();
    let state = store.budget_state(&b, t).await.unwrap();
    assert_eq!((state.spent_nano_usd, state.leased_nano_usd), (0, 100));
    assert_eq!(state.remaining_nano_usd(), 0);
    let listed = store.budget_states(None, t).await.unwrap();
    assert_eq!(listed[0].leased_nano_usd, 100);
    assert_eq!(store.list_budget_leases().await.unwrap().len(), 10);
    // A holder may shrink its lease (and grow it back into its own room).
    let (_, amount) = lease(&store, &b, r0, 4, t).await.unwrap();
    let stored = store
        .list_budget_leases()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.holder == r0);
    assert_eq!((amount, stored.map(|l| l.amount_nano_usd)), (4, Some(4)));
    let (room, amount) = lease(&store, &b, r0, 10, t).await.unwrap();
    assert_eq!((room.others_nano_usd, amount), (90, 10));
    // Shutdown releases every lease of a holder.
    assert_eq!(store.release_budget_leases(r0).await.unwrap(), 1);
    assert_eq!(store.release_budget_leases(r0).await.unwrap(), 0);
    assert_eq!(store.budget_state(&b, t).await.unwrap().leased_nano_usd, 90);
}

async fn spend_lands_with_usage_rows_and_leases_shrink_to_what_is_needed(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let t = switchyard_core::now();
    let b = budget(&store, "bud_1", BudgetPeriod::Daily, 100).await;
    let key = b.period.key_at(t);
    let (_, amount) = lease(&store, &b, "a", 70, t).await.unwrap();
    assert_eq!(amount, 70);
    // Ten calls' rows and costs (3 each) in one write; one settlement with
    // no row lands too.
    let rows: Vec<UsageRecord> = (0..10).map(|i| usage_row(i, t)).collect();
    let settle = |actual| Settlement {
        budgets: vec![(b.id.clone(), key.clone())],
        actual_nano_usd: actual,
    };
    let settlements: Vec<Settlement> = (0..10).map(|_| settle(3)).collect();
    store.record_usage(&rows, &settlements).await.unwrap();
    store.record_usage(&[], &[settle(5)]).await.unwrap();
    assert_eq!(store.count_usage().await.unwrap(), 10);
    let state = store.budget_state(&b, t).await.unwrap();
    // Until its holder sets it again, the lease still counts what landed.
    assert_eq!((state.spent_nano_usd, state.leased_nano_usd), (35, 70));
    // Another holder sees the room as limit − spent − the lease.
    let (room, amount) = lease(&store, &b, "b", 1000, t).await.unwrap();
    assert_eq!((room.free_nano_usd(), amount), (-5, 0));
    // The holder shrinks its lease to what its calls still need.
    let (room, amount) = lease(&store, &b, "a", 20, t).await.unwrap();
    assert_eq!(
        (room.spent_nano_usd, room.others_nano_usd, amount),
        (35, 0, 20)
    );
    let (room, amount) = lease(&store, &b, "b", 45, t).await.unwrap();
    assert_eq!((room.free_nano_usd(), amount), (45, 45));
    let state = store.budget_state(&b, t).await.unwrap();
    assert_eq!(state.remaining_nano_usd(), 0);
}

async fn an_expired_lease_counts_for_nothing_and_is_forgotten(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let t = switchyard_core::now();
    let b = budget(&store, "bud_1", BudgetPeriod::Total, 100).await;
    lease(&store, &b, "dead", 60, t).await.unwrap();
    assert_eq!(store.budget_state(&b, t).await.unwrap().leased_nano_usd, 60);
    // Its replica died: 30 s later nobody renewed it.
    let later = t + Duration::seconds(31);
    assert_eq!(
        store.budget_state(&b, later).await.unwrap().leased_nano_usd,
        0
    );
    let (room, amount) = lease(&store, &b, "alive", 100, later).await.unwrap();
    assert_eq!((room.others_nano_usd, amount), (0, 100));
    let holders: Vec<String> = store
        .list_budget_leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.holder)
        .collect();
    assert_eq!(holders, ["alive"], "the expired lease was deleted");
}

async fn leases_of_a_deleted_budget_go_with_it(kind: DatabaseKind) {
    let (_db, store) = fresh(kind).await;
    let t = switchyard_core::now();
    let b = budget(&store, "bud_1", BudgetPeriod::Daily, 100).await;
    let key = b.period.key_at(t);
    lease(&store, &b, "a", 50, t).await.unwrap();
    assert!(store.delete_budget(&b.id).await.unwrap());
    assert!(store.list_budget_leases().await.unwrap().is_empty());
    // A lease change and a settlement for it are no errors: the budget is
    // simply gone.
    assert!(lease(&store, &b, "a", 10, t).await.is_none());
    let late = Settlement {
        budgets: vec![(b.id.clone(), key)],
        actual_nano_usd: 7,
    };
    store
        .record_usage(&[usage_row(0, t)], &[late])
        .await
        .unwrap();
    assert_eq!(store.count_usage().await.unwrap(), 1);
}

/// Behind pgbouncer in transaction pooling mode (two server connections
/// shared by four writers), batches of usage rows and their spend land
/// whole: the write is one statement, prepared within its transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_and_spend_land_through_a_transaction_pooler() {
    let db = TestDatabase::postgres();
    // postgres://user@host:port/database
    let admin = switchyard_testkit::postgres_admin_url();
    let (host, port) = admin
        .split_once('@')
        .and_then(|(_, rest)| rest.split('/').next()?.split_once(':'))
        .unwrap();
    let bouncer = switchyard_testkit::PrivatePgbouncer::start(host, port.parse().unwrap(), 2);
    let mut config = switchyard_testkit::database_config(
        &bouncer.url(db.postgres_name().unwrap()),
        DatabaseKind::Postgres,
    );
    config.transaction_pooling = true;
    config.statement_cache_capacity = 0;
    let store = Store::connect_lazy(&config).unwrap();
    store.migrate().await.unwrap();
    let t = switchyard_core::now();
    let b = budget(&store, "bud_1", BudgetPeriod::Daily, 1_000_000).await;
    let key = b.period.key_at(t);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, id, key) = (store.clone(), b.id.clone(), key.clone());
            tokio::spawn(async move {
                for batch in 0..10 {
                    let rows: Vec<UsageRecord> = (0..25)
                        .map(|i| usage_row(w * 1000 + batch * 25 + i, t))
                        .collect();
                    let settlements: Vec<Settlement> = (0..25)
                        .map(|_| Settlement {
                            budgets: vec![(id.clone(), key.clone())],
                            actual_nano_usd: 2,
                        })
                        .collect();
                    store.record_usage(&rows, &settlements).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(store.count_usage().await.unwrap(), 4 * 10 * 25);
    let state = store.budget_state(&b, t).await.unwrap();
    assert_eq!(state.spent_nano_usd, 4 * 10 * 25 * 2);
}
