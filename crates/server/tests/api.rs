//! Black-box tests of the HTTP API: a real server on a free port, a real
//! database per test (SQLite and PostgreSQL), real HTTP through reqwest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{issue, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_core::config::DatabaseKind;
use switchyard_core::keys::{NewKeySpec, Scopes};
use switchyard_testkit::{PrivateRedis, TestDatabase};

async fn error_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    assert!(resp.headers().contains_key("x-request-id"));
    (status, resp.json().await.unwrap())
}

switchyard_testkit::on_both_engines!(multi_thread:
    authentication_matrix,
    admin_key_lifecycle_is_audited,
    revocation_reaches_other_replicas_within_the_cache_ttl,
    last_use_is_written_back_in_batches,
    probes_report_and_drain,
);

async fn authentication_matrix(kind: DatabaseKind) {
    let app = TestApp::builder().database(kind).start().await;

    let (s, e) = error_of(app.get("/v1/models", None).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_api_key"))
    );
    assert_eq!(e["error"]["type"], "authentication_error");

    let (s, e) = error_of(app.get("/v1/models", Some("not-a-key")).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
    );

    let unknown = format!("sy_{}", "0".repeat(64));
    let (s, e) = error_of(app.get("/v1/models", Some(&unknown)).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
    );

    let user = issue(&app.state, "user", Scopes::user()).await;
    assert_eq!(
        app.get("/v1/models", Some(&user)).await.status(),
        StatusCode::OK
    );
    let via_header = app
        .client
        .get(app.url("/v1/models"))
        .header("x-api-key", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(via_header.status(), StatusCode::OK);
    let basic = app
        .client
        .get(app.url("/v1/models"))
        .header("authorization", format!("Basic {user}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let (s, e) = error_of(app.get("/v1/admin/keys", Some(&user)).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    assert_eq!(
        app.get("/v1/admin/keys", Some(&app.admin)).await.status(),
        StatusCode::OK
    );

    // Expired: written straight to the store with an expiry in the past.
    let now = switchyard_core::now();
    let secret = switchyard_core::keys::NewKeySecret::generate().unwrap();
    let spec = NewKeySpec {
        name: "old".into(),
        owner: None,
        project: "proj".into(),
        scopes: Scopes::user(),
        expires_at: Some(now - chrono::Duration::seconds(1)),
        rate_limit: None,
    };
    app.state
        .store
        .insert_key(&switchyard_store::KeyInsert {
            id: switchyard_core::keys::new_id("key"),
            spec: &spec,
            hash: secret.hash(),
            prefix: secret.display_prefix(),
            created_at: now,
        })
        .await
        .unwrap();
    let (s, e) = error_of(app.get("/v1/models", Some(secret.secret().expose())).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key_expired"))
    );

    // Public routes need no key; unknown routes are not public.
    for path in [
        "/health",
        "/ready",
        "/db-check",
        "/redis-check",
        "/metrics",
        "/openapi.json",
        "/docs",
    ] {
        assert_eq!(app.get(path, None).await.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(
        app.get("/nope", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (s, e) = error_of(app.get("/nope", Some(&user)).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("route_not_found"))
    );
    let resp = app
        .client
        .delete(app.url("/v1/models"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(resp).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    // The framework's own rejections (a query string that does not parse, a
    // path that is not UTF-8) come in the same JSON shape, with its reason.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/usage?x=1"),
        (reqwest::Method::GET, "/v1/admin/keys?include_revoked=maybe"),
        (reqwest::Method::GET, "/v1/admin/keys/%FF"),
    ] {
        let resp = app
            .client
            .request(method, app.url(path))
            .bearer_auth(&app.admin)
            .send()
            .await
            .unwrap();
        let (s, e) = error_of(resp).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{path}: {e}");
        assert_eq!(e["error"]["code"], "invalid_request", "{path}: {e}");
        assert!(
            !e["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{path}: {e}"
        );
    }
    app.stop().await;
}

async fn admin_key_lifecycle_is_audited(kind: DatabaseKind) {
    let app = TestApp::builder().database(kind).start().await;
    let post = |body: Value| {
        app.client
            .post(app.url("/v1/admin/keys"))
            .bearer_auth(&app.admin)
            .header("x-request-id", "req-create-1")
            .json(&body)
            .send()
    };

    for (body, param) in [
        (json!({"project": "p"}), Some("name")),
        (
            json!({"name": "n", "project": "p", "scopes": ["root"]}),
            Some("scopes[0]"),
        ),
        (json!({"name": " ", "project": "p"}), Some("name")),
        (
            json!({"name": "n", "project": "p", "expires_in_days": 0}),
            Some("expires_in_days"),
        ),
        (
            json!({"name": "n", "project": "p", "colour": "red"}),
            Some("colour"),
        ),
        (
            json!({"name": "n", "project": "p", "expires_at": "2001-01-01T00:00:00Z"}),
            Some("expires_at"),
        ),
    ] {
        let (s, e) = error_of(post(body.clone()).await.unwrap()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {e}");
        assert_eq!(e["error"]["param"].as_str(), param, "{body} -> {e}");
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
    }
    let text = app
        .client
        .post(app.url("/v1/admin/keys"))
        .bearer_auth(&app.admin)
        .body("name=n")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(text).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let created = post(json!({"name": "billing", "project": "proj-b", "owner": "ops@example.com", "expires_in_days": 90}))
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sy_") && secret.len() == 67);
    assert_eq!(created["prefix"].as_str().unwrap(), &secret[..11]);
    assert_eq!(created["scopes"], json!(["user"]));

    let shown: Value = app
        .get(&format!("/v1/admin/keys/{id}"), Some(&app.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["name"], "billing");
    assert!(
        shown.get("key").is_none(),
        "the secret is never shown again"
    );
    assert!(!shown.to_string().contains(&secret));
    let (s, _) = error_of(
        app.get("/v1/admin/keys/key_missing", Some(&app.admin))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    assert_eq!(
        app.get("/v1/models", Some(&secret)).await.status(),
        StatusCode::OK
    );
    let revoked = app
        .client
        .delete(app.url(&format!("/v1/admin/keys/{id}")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let revoked: Value = revoked.json().await.unwrap();
    assert!(revoked["revoked_at"].is_string());
    // Same replica: effective at once.
    let (s, e) = error_of(app.get("/v1/models", Some(&secret)).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key_revoked"))
    );

    let listed: Value = app
        .get("/v1/admin/keys", Some(&app.admin))
        .await
        .json()
        .await
        .unwrap();
    assert!(listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["id"] != id.as_str()));
    let all: Value = app
        .get("/v1/admin/keys?include_revoked=true", Some(&app.admin))
        .await
        .json()
        .await
        .unwrap();
    assert!(all["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == id.as_str()));

    let audit = app.state.store.recent_audit(10).await.unwrap();
    let created_event = audit
        .iter()
        .find(|a| a.event == "key.created" && a.target.as_deref() == Some(&id))
        .expect("key.created audited");
    assert_eq!(created_event.request_id.as_deref(), Some("req-create-1"));
    assert_eq!(created_event.client_ip.as_deref(), Some("127.0.0.1"));
    assert!(created_event
        .actor_key
        .as_deref()
        .unwrap()
        .starts_with(&app.admin[..11]));
    assert!(audit
        .iter()
        .any(|a| a.event == "key.revoked" && a.target.as_deref() == Some(&id)));
    for a in &audit {
        let row = format!("{a:?}");
        assert!(!row.contains(&secret) && !row.contains(&app.admin), "{row}");
    }
    app.stop().await;
}

async fn revocation_reaches_other_replicas_within_the_cache_ttl(kind: DatabaseKind) {
    // Two replicas of one deployment: one database, owned here.
    let db = TestDatabase::of_kind(kind);
    let replica = || {
        TestApp::builder()
            .shared(&db)
            .env("KEY_CACHE_TTL_SECONDS", "1")
            .start()
    };
    let a = replica().await;
    let b = replica().await;
    let user = issue(&a.state, "shared", Scopes::user()).await;
    assert_eq!(
        b.get("/v1/models", Some(&user)).await.status(),
        StatusCode::OK
    );
    let id = a
        .state
        .store
        .list_keys(false)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "shared")
        .unwrap()
        .id;
    let resp = a
        .client
        .delete(a.url(&format!("/v1/admin/keys/{id}")))
        .bearer_auth(&a.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let revoked_at = Instant::now();
    loop {
        let status = b.get("/v1/models", Some(&user)).await.status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            revoked_at.elapsed() < Duration::from_millis(1500),
            "replica B still accepted a revoked key after the 1 s cache TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
}

async fn last_use_is_written_back_in_batches(kind: DatabaseKind) {
    // The database outlives the app: it is read again after the stop.
    let db = TestDatabase::of_kind(kind);
    let app = TestApp::builder()
        .shared(&db)
        .env("KEY_LAST_USED_FLUSH_SECONDS", "1")
        .start()
        .await;
    let user = issue(&app.state, "u", Scopes::user()).await;
    let id = app
        .state
        .store
        .list_keys(false)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "u")
        .unwrap()
        .id;
    for _ in 0..5 {
        assert_eq!(
            app.get("/v1/models", Some(&user)).await.status(),
            StatusCode::OK
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let key = app.state.store.get_key(&id).await.unwrap().unwrap();
        if key.last_used_at.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "last_used_at never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A use just before shutdown is flushed by the shutdown itself.
    let before = app
        .state
        .store
        .get_key(&id)
        .await
        .unwrap()
        .unwrap()
        .last_used_at;
    // Time passes, so that the last use is later than the flushed one.
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.get("/v1/models", Some(&user)).await;
    let store = app.state.store.clone();
    app.stop().await;
    let reopened =
        switchyard_store::Store::connect_lazy(&switchyard_testkit::database_config(&db.url, kind))
            .unwrap();
    let after = reopened.get_key(&id).await.unwrap().unwrap().last_used_at;
    assert!(after > before, "{after:?} > {before:?}");
    drop(store);
}

async fn probes_report_and_drain(kind: DatabaseKind) {
    let app = TestApp::builder()
        .database(kind)
        .env("DEPLOYMENT_SLOT", "green")
        .start()
        .await;
    let health = app.get("/health", None).await;
    // Every response names the slot that served it, errors included.
    assert_eq!(health.headers()["x-switchyard-slot"], "green");
    let missing = app.get("/v1/no-such-route", Some(&app.admin)).await;
    assert_eq!(missing.headers()["x-switchyard-slot"], "green");
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["deployment_slot"], "green");
    assert_eq!(health["environment"], "development");
    let ready: Value = app.get("/ready", None).await.json().await.unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready", "database": "ok", "pending_migrations": [], "redis": "disabled", "rate_limiter": "local"})
    );
    let db_check: Value = app.get("/db-check", None).await.json().await.unwrap();
    assert_eq!(db_check["status"], "ok");
    assert_eq!(db_check["backend"], kind.as_str());
    assert_eq!(db_check["pool"]["max"], 5);
    let redis: Value = app.get("/redis-check", None).await.json().await.unwrap();
    assert_eq!(redis["status"], "disabled");

    let before = app.get("/health", None).await;
    assert!(before
        .headers()
        .get("connection")
        .is_none_or(|c| c != "close"));
    app.state.begin_draining();
    let health = app.get("/health", None).await;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    // While draining, connections are not kept alive for a next request.
    assert_eq!(health.headers()["connection"], "close");
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "draining");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_can_require_an_admin_key() {
    let app = TestApp::builder()
        .env("DIAGNOSTICS_REQUIRE_ADMIN", "true")
        .start()
        .await;
    let user = issue(&app.state, "user", Scopes::user()).await;
    for path in ["/db-check", "/redis-check"] {
        let (s, e) = error_of(app.get(path, None).await).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {e}");
        let (s, e) = error_of(app.get(path, Some(&user)).await).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {e}");
        assert_eq!(
            app.get(path, Some(&app.admin)).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    // Probes and scrapes stay open.
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(app.get(path, None).await.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_work_without_a_server() {
    let state = TestApp::builder().postgres().state().await;
    let secret = issue(&state, "direct", Scopes::user()).await;
    assert!(secret.starts_with("sy_"));
    let keys = state.store.list_keys(false).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name, "direct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_template() {
    let app = TestApp::builder().start().await;
    for id in ["key_aaa", "key_bbb"] {
        assert_eq!(
            app.get(&format!("/v1/admin/keys/{id}"), Some(&app.admin))
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
    }
    app.get("/v1/models", None).await;
    app.get("/v1/models", Some(&app.admin)).await;
    // Invented methods share one label value: a client cannot add series.
    for invented in ["BREW", "WHEN"] {
        let method = reqwest::Method::from_bytes(invented.as_bytes()).unwrap();
        let resp = app
            .client
            .request(method, app.url("/v1/models"))
            .bearer_auth(&app.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let om = app
        .client
        .get(app.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(om.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(om.text().await.unwrap().ends_with("# EOF\n"));
    let resp = app.get("/metrics", None).await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    // Prometheus's own linter accepts the exposition.
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(text.as_bytes());
    assert!(
        promtool.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/v1/admin/keys/{id}",status="404"} 2"#
        ),
        "{text}"
    );
    assert!(!text.contains("key_aaa"));
    assert!(text.contains(r#"http_requests_total{method="GET",route="/v1/models",status="401"} 1"#));
    assert!(text.contains(r#"http_requests_total{method="GET",route="/v1/models",status="200"} 1"#));
    assert!(
        text.contains(r#"http_requests_total{method="other",route="/v1/models",status="405"} 2"#),
        "{text}"
    );
    assert!(!text.contains("BREW") && !text.contains("WHEN"));
    assert!(text.contains("http_request_duration_seconds_bucket{"));
    assert!(text.contains("switchyard_build_info{"));
    assert!(text.contains("switchyard_db_pool_max_connections 5"));
    assert!(text.contains("switchyard_database_up"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_behaviour_request_id_compression_limits_and_timeout() {
    let app = TestApp::builder()
        .env("MAX_REQUEST_BODY_BYTES", "1024")
        .env("API_TIMEOUT", "1")
        .env("DEBUG", "true")
        .start()
        .await;

    let r = app.get_with("/health", "x-request-id", "trace-abc-1").await;
    assert_eq!(r.headers()["x-request-id"], "trace-abc-1");
    let r = app.get_with("/health", "x-request-id", "bad id!").await;
    let generated = r.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 32);

    // Large bodies are compressed for clients that accept it; small ones not.
    let r = app
        .get_with("/openapi.json", "accept-encoding", "gzip")
        .await;
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let r = app.get_with("/openapi.json", "accept-encoding", "br").await;
    assert_eq!(r.headers()["content-encoding"], "br");
    let r = app.get_with("/health", "accept-encoding", "gzip").await;
    assert!(r.headers().get("content-encoding").is_none());
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    let doc: Value = r.json().await.unwrap();
    assert!(doc["paths"]["/v1/admin/keys/{id}"]["delete"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());

    // Bodies over the limit: declared length, and streamed without one.
    let big = json!({"name": "x".repeat(2000), "project": "p"});
    let r = reqwest::Client::new()
        .post(app.url("/v1/admin/keys"))
        .bearer_auth(&app.admin)
        .json(&big)
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(r).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"name\":\"".to_vec()),
        Ok(vec![b'y'; 2000]),
        Ok(b"\",\"project\":\"p\"}".to_vec()),
    ];
    // A client of its own: the server closes this connection after the 413,
    // so it must not go back into a shared pool.
    let r = reqwest::Client::new()
        .post(app.url("/v1/admin/keys"))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    let (s, _) = error_of(r).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // API_TIMEOUT=1: a 3 s request ends as a 504 JSON error after about 1 s.
    let started = Instant::now();
    let (s, e) = error_of(app.get("/debug/sleep?ms=3000", Some(&app.admin)).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("request_timeout"))
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    let ok = app.get("/debug/sleep?ms=10", Some(&app.admin)).await;
    assert_eq!(ok.status(), StatusCode::OK);

    // The docs UI is bundled: no CDN.
    let html = app.get("/docs", None).await.text().await.unwrap();
    assert!(html.contains("/docs/swagger-ui-bundle.js") && !html.contains("https://"));
    let js = app.get("/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.bytes().await.unwrap().len() > 100_000);
    app.stop().await;
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool must be installed (Debian package prometheus; scripts/test.sh installs it)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util_stream::iter(chunks)
}

mod futures_util_stream {
    pub use futures_util::stream::{iter, Stream};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_catalog_is_cached_and_reloadable() {
    let app = TestApp::builder()
        .catalog("[[models]]\nid = \"small\"\nbase_url = \"http://127.0.0.1:1/v1\"\naliases = [\"fast\"]\ncontext_window = 8192\n")
        .start()
        .await;
    let list: Value = app
        .get("/v1/models", Some(&app.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "small");
    assert_eq!(list["data"][0]["object"], "model");
    assert_eq!(list["data"][0]["aliases"], json!(["fast"]));
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let mut config = app.state.config.clone();
    let mut entry = app.state.gateway.catalog().entries()[0].clone();
    entry.id = "large".into();
    entry.aliases.clear();
    config.file.models = vec![entry];
    app.state.reload(&config);
    let list: Value = app
        .get("/v1/models", Some(&app.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], "large");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_readiness_and_recovers() {
    let mut redis = PrivateRedis::start_with_password(Some("s3cret-redis"));
    let url = redis.url();
    let app = TestApp::builder()
        .env("REDIS_URL", &url)
        .env("REDIS_PASSWORD", "s3cret-redis")
        .start()
        .await;
    let check: Value = app.get("/redis-check", None).await.json().await.unwrap();
    assert_eq!(check["status"], "ok", "{check}");
    assert!(check["latency_ms"].as_f64().unwrap() >= 0.0);

    redis.stop();
    let r = app.get("/redis-check", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["redis"].as_str()),
        (Some("degraded"), Some("down"))
    );
    // The service itself keeps working.
    assert_eq!(
        app.get("/v1/models", Some(&app.admin)).await.status(),
        StatusCode::OK
    );

    redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = app.get("/redis-check", None).await;
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "Redis never reconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
