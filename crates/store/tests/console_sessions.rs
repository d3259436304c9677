//! Console sign-outs recorded for every replica of the database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_core::config::DatabaseKind;
use switchyard_store::Store;
use switchyard_testkit::TestDatabase;

switchyard_testkit::on_both_engines!(sign_outs_hold_until_the_token_expires);

async fn sign_outs_hold_until_the_token_expires(kind: DatabaseKind) {
    let db = TestDatabase::of_kind(kind);
    let store = Store::connect_lazy(&db.config()).unwrap();
    store.migrate().await.unwrap();
    let now = 1_800_000_000;
    store
        .end_console_session("ses_a", now + 3600, now)
        .await
        .unwrap();
    // Ending twice keeps the first record.
    store
        .end_console_session("ses_a", now + 60, now)
        .await
        .unwrap();
    store
        .end_console_session("ses_b", now + 10, now)
        .await
        .unwrap();
    assert!(store.console_session_ended("ses_a", now).await.unwrap());
    assert!(store.console_session_ended("ses_b", now).await.unwrap());
    assert!(!store.console_session_ended("ses_c", now).await.unwrap());
    // Past its token's expiry a sign-out no longer matters…
    let later = now + 600;
    assert!(!store.console_session_ended("ses_b", later).await.unwrap());
    assert!(store.console_session_ended("ses_a", later).await.unwrap());
    // …and the next sign-out drops it.
    store
        .end_console_session("ses_c", later + 3600, later)
        .await
        .unwrap();
    let store2 = Store::connect_lazy(&db.config()).unwrap();
    assert!(
        !store2.console_session_ended("ses_b", now).await.unwrap(),
        "dropped"
    );
    assert!(store2.console_session_ended("ses_a", now).await.unwrap());
    assert!(store2.console_session_ended("ses_c", later).await.unwrap());
}
