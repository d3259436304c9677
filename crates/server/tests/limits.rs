//! Rate limits and caches through the real HTTP stack: headers, 429s, route
//! and key overrides, per-IP limits, brute-force protection, metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{issue, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchyard_core::keys::{NewKeySpec, Scopes};
use switchyard_server::audit::Actor;
use switchyard_testkit::redis_url;

/// An app with `extra` settings and the catalog `toml`.
async fn start(extra: &[(&str, &str)], toml: &str) -> TestApp {
    TestApp::builder().catalog(toml).envs(extra).start().await
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_limit_headers_and_429() {
    let app = start(&[("API_RATE_LIMIT", "3")], "").await;
    let user = issue(&app.state, "user", Scopes::user()).await;
    for remaining in ["2", "1", "0"] {
        let r = app.get("/v1/models", Some(&user)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), remaining);
        assert!(header(&r, "x-ratelimit-reset-requests").ends_with('s'));
    }
    let r = app.get("/v1/models", Some(&user)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), "20");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&r, "x-ratelimit-reset-requests"), "1m0s");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert_eq!(body["error"]["code"], "key_rate_limit");
    // Other keys have their own budget.
    assert_eq!(
        app.get("/v1/models", Some(&app.admin)).await.status(),
        StatusCode::OK
    );
    // Probes are not limited.
    for _ in 0..10 {
        assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);
    }
    let m = app.metrics().await;
    assert!(
        m.contains(r#"ratelimit_decisions_total{scope="key",result="allowed"} 4"#),
        "{m}"
    );
    assert!(
        m.contains(r#"ratelimit_decisions_total{scope="key",result="denied"} 1"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_limits_and_per_key_overrides() {
    let app = start(
        &[],
        "[limits.routes]\n\"GET /v1/models\" = { per_minute = 2 }\n",
    )
    .await;
    let user = issue(&app.state, "user", Scopes::user()).await;
    let r = app.get("/v1/models", Some(&user)).await;
    // The route limit is the tighter one, so it is what the headers show.
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "1");
    assert_eq!(
        app.get("/v1/models", Some(&user)).await.status(),
        StatusCode::OK
    );
    let r = app.get("/v1/models", Some(&user)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "route_rate_limit"
    );
    // Other routes only see the key limit (API_RATE_LIMIT = 100).
    let r = app.get("/v1/admin/keys", Some(&app.admin)).await;
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "100");

    // A per-key override through the admin API.
    let id = app.key_id("user").await;
    let patch = |body: Value| {
        app.client
            .patch(app.url(&format!("/v1/admin/keys/{id}")))
            .bearer_auth(&app.admin)
            .json(&body)
            .send()
    };
    let bad = patch(json!({"rate_limit": {"requests": 0, "period_seconds": 60}}))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["param"],
        "rate_limit"
    );
    let ok = patch(json!({"rate_limit": {"requests": 1, "period_seconds": 3600}}))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.json::<Value>().await.unwrap()["rate_limit"],
        json!({"requests": 1, "period_seconds": 3600})
    );
    let stored = app.state.store.get_key(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.rate_limit,
        switchyard_core::keys::RateLimit::new(1, 3600).ok()
    );
    let audit = app.state.store.recent_audit(5).await.unwrap();
    assert!(audit.iter().any(|a| a.event == "key.rate_limit_changed"));
    let missing = app
        .client
        .patch(app.url("/v1/admin/keys/key_nope"))
        .bearer_auth(&app.admin)
        .json(&json!({"rate_limit": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_overrides_replace_the_default_rate() {
    let app = start(&[("API_RATE_LIMIT", "1000")], "").await;
    let now = switchyard_core::now();
    let mut spec = NewKeySpec::new("slow", None, "p", Scopes::user(), None, now).unwrap();
    spec.rate_limit = Some(switchyard_core::keys::RateLimit::new(2, 3600).unwrap());
    let slow = app
        .state
        .keys
        .issue(&spec, &Actor::default())
        .await
        .unwrap();
    let secret = slow.secret.expose();
    for _ in 0..2 {
        let r = app.get("/v1/models", Some(secret)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "2");
    }
    let r = app.get("/v1/models", Some(secret)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), "1800");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_limited_per_client_address() {
    let app = start(
        &[
            ("AUTH_FAILURE_RATE_LIMIT", "3"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
        "",
    )
    .await;
    let bad = format!("sy_{}", "e".repeat(64));
    let from = |ip: &'static str, key: String| {
        app.client
            .get(app.url("/v1/models"))
            .header("x-forwarded-for", ip)
            .bearer_auth(key)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(
            from("203.0.113.9", bad.clone()).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The address is now refused, even with a valid key...
    let r = from("203.0.113.9", app.admin.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "auth_failure_rate_limit"
    );
    // ...while another client address (behind the same trusted proxy) is not.
    assert_eq!(
        from("198.51.100.4", app.admin.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let m = app.metrics().await;
    assert!(
        m.contains(r#"ratelimit_decisions_total{scope="auth_failure",result="denied"} 1"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_traffic_is_limited_per_client_address() {
    let app = start(&[("UNAUTHENTICATED_RATE_LIMIT", "2")], "").await;
    assert_eq!(
        app.get("/openapi.json", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get("/docs", None).await.status(), StatusCode::OK);
    let r = app.get("/openapi.json", None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "ip_rate_limit"
    );
    assert_eq!(app.get("/ready", None).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lookups_use_the_shared_cache_tier_when_redis_is_configured() {
    let app = start(&[("REDIS_URL", &redis_url())], "").await;
    let user = issue(&app.state, "user", Scopes::user()).await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/v1/models", Some(&user)).await.status(),
            StatusCode::OK
        );
    }
    let m = app.metrics().await;
    assert!(
        m.contains(r#"cache_requests_total{cache="api_keys",result="miss"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"cache_requests_total{cache="api_keys",result="hit"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"cache_requests_total{cache="models",result="miss"} 1"#),
        "{m}"
    );
    let ready: Value = app.get("/ready", None).await.json().await.unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["rate_limiter"].as_str()),
        (Some("ready"), Some("redis"))
    );
    // A revocation evicts the shared entry too.
    let id = app.key_id("user").await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/admin/keys/{id}")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.get("/v1/models", Some(&user)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
