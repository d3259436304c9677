//! PostgreSQL over TLS: a private server with `ssl=on` whose `pg_hba.conf`
//! refuses TCP without TLS, its certificate issued for `localhost` by a
//! certificate authority the test makes. Each `sslmode` connects (or not)
//! as libpq's would, and a name mismatch under `verify-full` says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_core::config::DatabaseKind;
use switchyard_store::Store;
use switchyard_testkit::{database_config, PrivatePostgres, TestCa};

/// Connects with `url`, applies the migrations and says whether the
/// session is encrypted; `Err` with the error's text.
async fn connect(url: &str) -> Result<bool, String> {
    let store = Store::connect_lazy(&database_config(url, DatabaseKind::Postgres))
        .map_err(|e| e.to_string())?;
    let outcome = async {
        store.migrate().await.map_err(|e| e.to_string())?;
        let Store::Postgres(pool) = &store else {
            panic!("a postgres:// URL gives a PostgreSQL store");
        };
        sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    store.close().await;
    outcome
}

#[tokio::test]
async fn each_sslmode_connects_as_libpq_would() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Switchyard test CA");
    let root = ca.write(dir.path(), "ca.pem");
    let root = root.to_str().unwrap();
    let stranger = TestCa::new("Someone else's CA");
    let stranger_root = stranger.write(dir.path(), "stranger.pem");
    let stranger_root = stranger_root.to_str().unwrap();
    let pg = PrivatePostgres::start_with_tls(&ca.issue(&["localhost"]));
    let by_address = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    let by_name = format!("postgres://postgres@localhost:{}/postgres", pg.port);

    // Without TLS the server turns the session away.
    let err = connect(&format!("{by_address}?sslmode=disable"))
        .await
        .unwrap_err();
    assert!(err.contains("no encryption"), "{err}");

    // require: encrypted, the certificate taken as it comes.
    assert_eq!(
        connect(&format!("{by_address}?sslmode=require")).await,
        Ok(true)
    );
    // prefer (the default): encrypted when the server offers it.
    assert_eq!(connect(&by_address).await, Ok(true));
    // verify-ca: the authority is checked. libpq would skip the name;
    // sqlx 0.8.6 still checks it with this rustls (launchbadge/sqlx#3793,
    // fixed upstream after 0.8.6), so verify-ca acts as verify-full for
    // now: docs/security.md says so, and this fails when that changes.
    assert_eq!(
        connect(&format!("{by_name}?sslmode=verify-ca&sslrootcert={root}")).await,
        Ok(true)
    );
    let err = connect(&format!(
        "{by_address}?sslmode=verify-ca&sslrootcert={root}"
    ))
    .await
    .unwrap_err();
    assert!(
        err.contains("certificate not valid for name \"127.0.0.1\""),
        "{err}"
    );
    let err = connect(&format!(
        "{by_name}?sslmode=verify-ca&sslrootcert={stranger_root}"
    ))
    .await
    .unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
    // verify-full: the authority and the name.
    assert_eq!(
        connect(&format!("{by_name}?sslmode=verify-full&sslrootcert={root}")).await,
        Ok(true)
    );
    // verify-full to a host name the certificate does not hold: refused,
    // with the names it does hold and what to check.
    let err = connect(&format!(
        "{by_address}?sslmode=verify-full&sslrootcert={root}"
    ))
    .await
    .unwrap_err();
    assert!(
        err.contains("certificate not valid for name \"127.0.0.1\"") && err.contains("localhost"),
        "{err}"
    );
    assert!(
        err.contains("with sslmode=verify-full the host in the URL must be a name the server's certificate holds"),
        "{err}"
    );
    // verify-full without sslrootcert trusts the public web PKI only.
    let err = connect(&format!("{by_name}?sslmode=verify-full"))
        .await
        .unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}
