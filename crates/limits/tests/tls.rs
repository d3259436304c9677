//! Redis over TLS (`rediss://`): a private `redis-server` that listens for
//! TLS only, its certificate issued by a certificate authority the test
//! makes and trusted through `REDIS_TLS_CA_FILE`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;
use switchyard_core::config::RedisConfig;
use switchyard_core::Secret;
use switchyard_limits::Redis;
use switchyard_testkit::{PrivateRedis, TestCa};

const TIMEOUT: Duration = Duration::from_secs(5);

fn redis(url: &str, ca: Option<PathBuf>) -> Redis {
    Redis::new(&RedisConfig {
        url: Secret::new(url),
        password: None,
        tls_ca_file: ca,
    })
    .unwrap()
}

#[tokio::test]
async fn rediss_trusts_the_configured_authority_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Switchyard test CA");
    let root = ca.write(dir.path(), "ca.pem");
    let stranger = TestCa::new("Someone else's CA").write(dir.path(), "stranger.pem");
    let server = PrivateRedis::start_with_tls(&ca.issue(&["localhost", "127.0.0.1"]));
    let url = server.url();
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");

    // Trusting the authority: commands go through.
    let trusted = redis(&url, Some(root));
    trusted.ping(TIMEOUT).await.unwrap();
    let _: () = trusted
        .query(redis::cmd("SET").arg("sy-tls").arg("over TLS"), TIMEOUT)
        .await
        .unwrap();
    let back: String = trusted
        .query(redis::cmd("GET").arg("sy-tls"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(back, "over TLS");

    // The public roots, or another authority, do not vouch for it.
    for (what, client) in [
        ("the webpki roots", redis(&url, None)),
        ("another CA", redis(&url, Some(stranger))),
    ] {
        let err = client.ping(TIMEOUT).await.unwrap_err().to_string();
        assert!(
            err.contains("certificate") || err.contains("UnknownIssuer"),
            "{what}: {err}"
        );
    }
    // And plain redis:// finds no plain listener there.
    let plain = redis(&url.replacen("rediss://", "redis://", 1), None);
    assert!(plain.ping(TIMEOUT).await.is_err());
}

#[test]
fn a_missing_ca_file_is_named() {
    let err = Redis::new(&RedisConfig {
        url: Secret::new("rediss://127.0.0.1:6380/0"),
        password: None,
        tls_ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("REDIS_TLS_CA_FILE") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
}
