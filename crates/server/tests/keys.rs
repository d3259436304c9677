//! Key lifecycle over HTTP: rotation with a grace period (and the header
//! that announces it), expiry set on an existing key. A real server, a real
//! database of each kind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Instant;
use switchyard_core::config::DatabaseKind;
use switchyard_core::tokens::{TokenClaims, TokenKeys};
use switchyard_core::Secret;
use switchyard_server::jobs;
use switchyard_testkit::TestDatabase;

switchyard_testkit::on_both_engines!(multi_thread:
    rotation_issues_a_successor_and_the_old_key_announces_its_grace,
    expiry_can_be_set_changed_and_cleared,
    access_tokens_stand_for_their_key_and_end_with_it,
    due_keys_are_counted_listed_and_expired_only_when_enforced,
    owners_are_notified_once_before_and_on_the_due_date,
);

async fn error_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    assert_eq!(resp.headers()["content-type"], "application/json");
    (status, resp.json().await.unwrap())
}

async fn create(app: &TestApp, body: Value) -> (String, String) {
    let r = app.post("/v1/admin/keys", body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

async fn rotation_issues_a_successor_and_the_old_key_announces_its_grace(kind: DatabaseKind) {
    let app = TestApp::builder().database(kind).start().await;
    let (id, old_secret) = create(
        &app,
        json!({"name": "billing", "project": "proj-b", "owner": "ops@example.com",
               "scopes": ["user"], "rate_limit": {"requests": 50, "period_seconds": 60},
               "expires_in_days": 30}),
    )
    .await;
    let profile = json!({"allowed_tools": ["Read"], "max_cost_usd": 0.5});
    let r = app
        .client
        .put(app.url(&format!("/v1/admin/keys/{id}/task-profile")))
        .bearer_auth(&app.admin)
        .json(&profile)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // The new endpoints are documented.
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    for path in [
        "/v1/admin/keys/{id}/rotate",
        "/v1/admin/keys/{id}/expiry",
        "/v1/auth/token",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }
    // Before rotation: no grace header.
    let r = app.get("/v1/models", Some(&old_secret)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("x-switchyard-key-grace-ends").is_none());

    // Bad input names the field; unknown keys are 404.
    let path = format!("/v1/admin/keys/{id}/rotate");
    let (s, e) = error_of(app.post(&path, json!({"grace_days": 91})).await).await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("grace_days"))
    );
    let (s, e) = error_of(app.post(&path, json!({"grace": 1})).await).await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("grace"))
    );
    let (s, e) = error_of(app.post("/v1/admin/keys/key_nope/rotate", json!({})).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("key_not_found"))
    );
    // Only admins rotate.
    let (s, _) = error_of(app.post_as(&old_secret, &path, json!({})).await).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let before = Utc::now();
    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(&app.admin)
        .header("x-request-id", "req-rotate-1")
        .json(&json!({"grace_days": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let rotated: Value = r.json().await.unwrap();
    let new_secret = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_ne!(new_secret, old_secret);
    for field in [
        "name",
        "project",
        "owner",
        "scopes",
        "rate_limit",
        "task_profile",
    ] {
        assert_eq!(
            rotated[field], rotated["previous"][field],
            "{field} carried over"
        );
    }
    assert_eq!(rotated["task_profile"]["allowed_tools"], json!(["Read"]));
    assert_eq!(rotated["predecessor_id"], id.as_str());
    assert_eq!(rotated["previous"]["successor_id"], new_id.as_str());
    // The successor keeps the old key's lifetime (30 days) from now.
    let new_expiry = time(&rotated["expires_at"]);
    assert!(
        (new_expiry - (before + Duration::days(30)))
            .num_seconds()
            .abs()
            < 60
    );
    let grace_ends = time(&rotated["previous"]["expires_at"]);
    assert!(
        (grace_ends - (before + Duration::days(2)))
            .num_seconds()
            .abs()
            < 60
    );

    // The old key works in its grace period and says so; the new one works
    // and says nothing.
    let r = app.get("/v1/models", Some(&old_secret)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let announced: DateTime<Utc> = r.headers()["x-switchyard-key-grace-ends"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(announced.timestamp(), grace_ends.timestamp());
    assert!(r.headers()["sunset"].to_str().unwrap().ends_with(" GMT"));
    let r = app.get("/v1/models", Some(&new_secret)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("x-switchyard-key-grace-ends").is_none());
    // Also on errors the old key causes.
    let r = app.get("/v1/tasks/task_nope", Some(&old_secret)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.headers().contains_key("x-switchyard-key-grace-ends"));

    // A key is rotated once; its successor can be rotated in turn.
    let (s, e) = error_of(app.post(&path, json!({})).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("key_already_rotated"))
    );
    assert!(e["error"]["message"].as_str().unwrap().contains(&new_id));
    // No body at all takes the defaults; grace 0 ends the old key at once.
    let r = app
        .client
        .post(app.url(&format!("/v1/admin/keys/{new_id}/rotate")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let third: Value = r.json().await.unwrap();
    let third_secret = third["key"].as_str().unwrap().to_owned();
    let third_grace = time(&third["previous"]["expires_at"]);
    assert!(
        (third_grace - (Utc::now() + Duration::days(7)))
            .num_seconds()
            .abs()
            < 60
    );
    let third_id = third["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/v1/admin/keys/{third_id}/rotate"),
            json!({"grace_days": 0}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (s, e) = error_of(app.get("/v1/models", Some(&third_secret)).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key_expired"))
    );
    let (s, e) = error_of(
        app.post(&format!("/v1/admin/keys/{third_id}/rotate"), json!({}))
            .await,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("key_already_rotated"))
    );

    // A revoked key is not rotated.
    let (gone, _) = create(&app, json!({"name": "gone", "project": "p"})).await;
    app.client
        .delete(app.url(&format!("/v1/admin/keys/{gone}")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(
        app.post(&format!("/v1/admin/keys/{gone}/rotate"), json!({}))
            .await,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("key_revoked"))
    );

    // Audited: the rotation on the old key, the creation of the new one.
    let audit = app.state.store.recent_audit(50).await.unwrap();
    let event = audit
        .iter()
        .find(|a| a.event == "key.rotated" && a.target.as_deref() == Some(&id))
        .expect("key.rotated audited");
    assert_eq!(event.request_id.as_deref(), Some("req-rotate-1"));
    let details: Value = serde_json::from_str(&event.details).unwrap();
    assert_eq!(details["successor_id"], new_id.as_str());
    assert_eq!(details["grace_days"], 2);
    let created = audit
        .iter()
        .find(|a| a.event == "key.created" && a.target.as_deref() == Some(&new_id))
        .expect("the successor's key.created audited");
    let details: Value = serde_json::from_str(&created.details).unwrap();
    assert_eq!(details["rotated_from"], id.as_str());
    for a in &audit {
        let row = format!("{a:?}");
        assert!(
            !row.contains(&new_secret) && !row.contains(&old_secret),
            "{row}"
        );
    }
    app.stop().await;
}

async fn expiry_can_be_set_changed_and_cleared(kind: DatabaseKind) {
    let app = TestApp::builder().database(kind).start().await;
    let (id, secret) = create(&app, json!({"name": "etl", "project": "data"})).await;
    let put = |body: Value| {
        app.client
            .put(app.url(&format!("/v1/admin/keys/{id}/expiry")))
            .bearer_auth(&app.admin)
            .json(&body)
            .send()
    };
    for (body, param) in [
        (json!({"expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"expires_in_days": 0}), "expires_in_days"),
        (
            json!({"expires_in_days": 1, "expires_at": "2999-01-01T00:00:00Z"}),
            "expires_in_days",
        ),
        (json!({"expires_at": "soon"}), "expires_at"),
        (json!({"when": 1}), "when"),
    ] {
        let (s, e) = error_of(put(body.clone()).await.unwrap()).await;
        assert_eq!(
            (s, e["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some(param)),
            "{body}"
        );
    }
    let r = app
        .client
        .put(app.url("/v1/admin/keys/key_nope/expiry"))
        .bearer_auth(&app.admin)
        .json(&json!({"expires_in_days": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = put(json!({"expires_in_days": 3})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let k: Value = r.json().await.unwrap();
    assert!(
        (time(&k["expires_at"]) - (Utc::now() + Duration::days(3)))
            .num_seconds()
            .abs()
            < 60
    );
    let r = put(json!({"expires_at": "2999-01-31T00:00:00Z"}))
        .await
        .unwrap();
    let k: Value = r.json().await.unwrap();
    assert_eq!(
        time(&k["expires_at"]),
        "2999-01-31T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    let r = put(json!({"expires_at": null})).await.unwrap();
    let k: Value = r.json().await.unwrap();
    assert!(k["expires_at"].is_null());
    // An expiry a moment away takes effect on this replica at once.
    let soon = (Utc::now() + Duration::milliseconds(1500)).to_rfc3339();
    let r = put(json!({ "expires_at": soon })).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.get("/v1/models", Some(&secret)).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let (s, e) = error_of(app.get("/v1/models", Some(&secret)).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key_expired"))
    );

    let audit = app.state.store.recent_audit(20).await.unwrap();
    let changes = audit
        .iter()
        .filter(|a| a.event == "key.expiry_changed" && a.target.as_deref() == Some(&id))
        .count();
    assert_eq!(changes, 4);
    app.stop().await;
}

const SECRET: &str = "test-jwt-secret-0123456789abcdef-0123456789";
const NEXT_SECRET: &str = "test-jwt-secret-rotated-0123456789abcdef-01";

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn mint(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.post_as(key, "/v1/auth/token", body).await
}

async fn token_of(app: &TestApp, key: &str, body: Value) -> String {
    let r = mint(app, key, body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    v["access_token"].as_str().unwrap().to_owned()
}

async fn refused(app: &TestApp, token: &str) -> (StatusCode, String, String) {
    let (s, e) = error_of(app.get("/v1/models", Some(token)).await).await;
    (
        s,
        e["error"]["code"].as_str().unwrap_or_default().to_owned(),
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn access_tokens_stand_for_their_key_and_end_with_it(kind: DatabaseKind) {
    let db = TestDatabase::of_kind(kind);
    let replica = |secret: &str, previous: Option<&str>| {
        let mut b = TestApp::builder()
            .shared(&db)
            .env("JWT_SECRET", secret)
            .env("KEY_CACHE_TTL_SECONDS", "1");
        if let Some(p) = previous {
            b = b.env("JWT_SECRET_PREVIOUS", p);
        }
        b.start()
    };
    let a = replica(SECRET, None).await;
    let b = replica(SECRET, None).await;
    let (key_id, user) = create(&a, json!({"name": "svc", "project": "p"})).await;

    // Bad requests name the field.
    for (body, param) in [
        (json!({"ttl_seconds": 0}), "ttl_seconds"),
        (json!({"ttl_seconds": 3601}), "ttl_seconds"),
        (json!({"scopes": []}), "scopes"),
        (json!({"lifetime": 5}), "lifetime"),
    ] {
        let (s, e) = error_of(mint(&a, &user, body.clone()).await).await;
        assert_eq!(
            (s, e["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some(param)),
            "{body}"
        );
    }
    let (s, e) = error_of(mint(&a, &user, json!({"scopes": ["admin"]})).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );

    // A token carries the key id and scopes for at most an hour, and works
    // on every replica sharing the secret.
    let before = Utc::now().timestamp();
    let token = token_of(&a, &user, json!({})).await;
    let header: Value = {
        use base64::Engine;
        let h = token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header["alg"], "HS256");
    assert_eq!(
        header["kid"].as_str().unwrap(),
        TokenKeys::new(&Secret::new(SECRET), None).kid()
    );
    let claims = claims_of(&token);
    assert_eq!(claims["sub"], key_id.as_str());
    assert_eq!(claims["scope"], "user");
    let after = Utc::now().timestamp();
    // Issued while it was minted (the clock may pass a second meanwhile),
    // and good for an hour from then at most.
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!((before..=after).contains(&iat), "{claims}");
    assert!(exp - iat <= 3600 && exp - before >= 3590, "{claims}");
    assert!(
        !token.contains(&user[3..]),
        "the token does not carry the key"
    );
    for app in [&a, &b] {
        assert_eq!(
            app.get("/v1/models", Some(&token)).await.status(),
            StatusCode::OK
        );
    }
    let r = a
        .client
        .get(a.url("/v1/models"))
        .header("x-api-key", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "accepted wherever a key is");
    // Its scopes, no more; and it cannot mint further tokens.
    let (s, e) = error_of(a.get("/v1/admin/keys", Some(&token)).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    let (s, e) = error_of(mint(&a, &token, json!({})).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("api_key_required"))
    );
    let narrowed = token_of(&a, &a.admin, json!({"scopes": ["user"], "ttl_seconds": 60})).await;
    assert_eq!(claims_of(&narrowed)["scope"], "user");
    assert_eq!(
        a.get("/v1/models", Some(&narrowed)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        a.get("/v1/admin/keys", Some(&narrowed)).await.status(),
        StatusCode::FORBIDDEN
    );
    let admin_token = token_of(&a, &a.admin, json!({})).await;
    assert_eq!(
        a.get("/v1/admin/keys", Some(&admin_token)).await.status(),
        StatusCode::OK
    );

    // Expired.
    let short = token_of(&a, &user, json!({"ttl_seconds": 1})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, code, message) = refused(&a, &short).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "token_expired"),
        "{message}"
    );
    // A tampered payload (user -> admin) with the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims.clone();
    forged["scope"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged.to_string().as_bytes()),
        parts[2]
    );
    let (s, code, message) = refused(&a, &tampered).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    assert!(message.contains("signature"), "{message}");
    // alg: none, unsigned.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(forged.to_string().as_bytes())
    );
    let (s, code, message) = refused(&a, &none).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    assert!(message.contains("algorithm `none`"), "{message}");
    // Signed with a secret the service does not know.
    let wrong: TokenClaims = serde_json::from_value(claims.clone()).unwrap();
    let wrong = TokenKeys::new(&Secret::new("an-attackers-secret-0123456789abcdef"), None)
        .sign(&wrong)
        .unwrap();
    let (s, code, message) = refused(&a, &wrong).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    assert!(message.contains("secret"), "{message}");
    let (s, code, _) = refused(&a, "not.a.token").await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    // Rotating JWT_SECRET: with the old one as JWT_SECRET_PREVIOUS, tokens
    // it signed keep working; without it they do not.
    let rotated = replica(NEXT_SECRET, Some(SECRET)).await;
    assert_eq!(
        rotated.get("/v1/models", Some(&token)).await.status(),
        StatusCode::OK
    );
    let fresh = token_of(&rotated, &user, json!({})).await;
    assert_ne!(claims_of(&fresh)["jti"], claims["jti"]);
    let (s, code, _) = refused(&a, &fresh).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    rotated.stop().await;
    let without = replica(NEXT_SECRET, None).await;
    let (s, code, _) = refused(&without, &token).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    without.stop().await;

    // A token never outlives its key.
    let soon = (Utc::now() + Duration::seconds(100)).to_rfc3339();
    let r = a
        .client
        .put(a.url(&format!("/v1/admin/keys/{key_id}/expiry")))
        .bearer_auth(&a.admin)
        .json(&json!({ "expires_at": soon }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = mint(&a, &user, json!({})).await;
    let v: Value = r.json().await.unwrap();
    assert!(v["expires_in"].as_i64().unwrap() <= 100, "{v}");
    assert!(time(&v["expires_at"]) <= time(&json!(soon)));

    // Revoking the key ends its tokens: here at once, on the other replica
    // within the cache TTL (1 s).
    assert_eq!(
        b.get("/v1/models", Some(&token)).await.status(),
        StatusCode::OK
    );
    let r = a
        .client
        .delete(a.url(&format!("/v1/admin/keys/{key_id}")))
        .bearer_auth(&a.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let revoked_at = Instant::now();
    let (s, code, _) = refused(&a, &token).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "key_revoked")
    );
    loop {
        let status = b.get("/v1/models", Some(&token)).await.status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < std::time::Duration::from_millis(1500),
            "still accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;

    // Without JWT_SECRET there are no tokens.
    let plain = TestApp::builder().shared(&db).start().await;
    let (s, e) = error_of(mint(&plain, &plain.admin, json!({})).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_IMPLEMENTED, Some("tokens_disabled"))
    );
    let (s, code, _) = refused(&plain, &admin_token).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    plain.stop().await;
}

/// A key created `days_ago` (as if it had been issued then), and its secret.
async fn aged_key(store: &switchyard_store::Store, name: &str, days_ago: i64) -> (String, String) {
    use switchyard_core::keys::{new_id, NewKeySecret, NewKeySpec, Scopes};
    let created = switchyard_core::now() - Duration::days(days_ago);
    let spec = NewKeySpec::new(
        name,
        Some("ops@example.com"),
        "p",
        Scopes::user(),
        None,
        created,
    )
    .unwrap();
    let secret = NewKeySecret::generate().unwrap();
    let insert = switchyard_store::KeyInsert {
        id: new_id("key"),
        spec: &spec,
        hash: secret.hash(),
        prefix: secret.display_prefix(),
        created_at: created,
    };
    let key = store.insert_key(&insert).await.unwrap();
    (key.id, secret.secret().expose().to_owned())
}

async fn gauge(app: &TestApp) -> Option<f64> {
    app.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_keys_rotation_due "))
        .map(|v| v.trim().parse().unwrap())
}

async fn due_keys_are_counted_listed_and_expired_only_when_enforced(kind: DatabaseKind) {
    let db = TestDatabase::of_kind(kind);
    let notify_only = TestApp::builder()
        .shared(&db)
        .envs(&[("KEY_ROTATION_DAYS", "30"), ("JWT_SECRET", SECRET)])
        .start()
        .await;
    let (due_id, due_secret) = aged_key(&notify_only.state.store, "old", 31).await;
    let (_, fresh_secret) = aged_key(&notify_only.state.store, "young", 29).await;
    let (rotated_id, _) = aged_key(&notify_only.state.store, "rotated", 40).await;
    let r = notify_only
        .post(&format!("/v1/admin/keys/{rotated_id}/rotate"), json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Notify-only: the due key works; it alone is listed and counted.
    assert_eq!(
        notify_only
            .get("/v1/models", Some(&due_secret))
            .await
            .status(),
        StatusCode::OK
    );
    let listed: Value = notify_only
        .get("/v1/admin/keys?due=true", Some(&notify_only.admin))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![due_id.as_str()]);
    let start = Instant::now();
    while gauge(&notify_only).await != Some(1.0) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(12),
            "the gauge never counted the due key: {:?}",
            gauge(&notify_only).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Enforced: the key fell due a day ago, so with 2 days of grace it
    // still works, and with none it has stopped.
    let enforced = |grace: &str| {
        TestApp::builder()
            .shared(&db)
            .envs(&[
                ("KEY_ROTATION_DAYS", "30"),
                ("KEY_ROTATION_ENFORCE", "true"),
                ("KEY_ROTATION_GRACE_DAYS", grace),
                ("JWT_SECRET", SECRET),
            ])
            .start()
    };
    let lenient = enforced("2").await;
    assert_eq!(
        lenient.get("/v1/models", Some(&due_secret)).await.status(),
        StatusCode::OK
    );
    // A token for it ends when the key would: at due + grace, a day away.
    let v: Value = lenient
        .post_as(&due_secret, "/v1/auth/token", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["expires_in"].as_i64(), Some(3600), "{v}");
    lenient.stop().await;
    let strict = enforced("0").await;
    let (s, e) = error_of(strict.get("/v1/models", Some(&due_secret)).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key_expired"))
    );
    assert_eq!(
        strict.get("/v1/models", Some(&fresh_secret)).await.status(),
        StatusCode::OK
    );
    // The default grace of a rotation follows KEY_ROTATION_GRACE_DAYS (0).
    let (young_id, young_secret) = aged_key(&strict.state.store, "young-2", 1).await;
    let r = strict
        .post(&format!("/v1/admin/keys/{young_id}/rotate"), json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        strict.get("/v1/models", Some(&young_secret)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    strict.stop().await;
    notify_only.stop().await;
}

/// One request the receiver got: its headers and body.
type Delivery = (axum::http::HeaderMap, Vec<u8>);

/// A local webhook receiver: records every delivery (headers and body) and
/// answers each with the next scripted status (200 once the script is out).
#[derive(Clone, Default)]
struct Receiver {
    got: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
    script: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Receiver::default();
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(r): axum::extract::State<Receiver>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    r.got.lock().unwrap().push((headers, body.to_vec()));
                    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).unwrap()
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app.with_state(state)).await.unwrap();
        });
        (receiver, url)
    }

    fn fail_next(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses);
    }

    /// The bodies received so far, each checked against its signature.
    fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(headers, body)| {
                let ts: i64 = headers[jobs::TIMESTAMP_HEADER]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let expected = jobs::Notifier::signature(NOTIFY_SECRET.as_bytes(), ts, body);
                assert_eq!(headers[jobs::SIGNATURE_HEADER].to_str().unwrap(), expected);
                let wrong = jobs::Notifier::signature(b"another-secret-entirely", ts, body);
                assert_ne!(headers[jobs::SIGNATURE_HEADER].to_str().unwrap(), wrong);
                let v: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(
                    headers[jobs::DELIVERY_HEADER].to_str().unwrap(),
                    format!(
                        "{}:{}",
                        v["key"]["id"].as_str().unwrap(),
                        v["notice"].as_str().unwrap()
                    )
                );
                v
            })
            .collect()
    }
}

/// One round of both replicas' schedulers, ticking at once, then waiting
/// for whatever run started.
async fn step(
    a: &mut switchyard_server::jobs::Scheduler,
    b: &mut switchyard_server::jobs::Scheduler,
) {
    tokio::join!(a.tick(), b.tick());
    a.wait_idle().await;
    b.wait_idle().await;
}

const NOTIFY_SECRET: &str = "webhook-secret-0123456789";

async fn owners_are_notified_once_before_and_on_the_due_date(kind: DatabaseKind) {
    use switchyard_core::clock::{Clock, ManualClock};
    use switchyard_core::config::NotifyConfig;
    use switchyard_core::rotation::RotationPolicy;
    use switchyard_server::jobs::Scheduler;

    let (receiver, url) = Receiver::start().await;
    let db = TestDatabase::of_kind(kind);
    let store = switchyard_store::Store::connect_lazy(&db.config()).unwrap();
    store.migrate().await.unwrap();
    let (key_id, _) = aged_key(&store, "billing", 0).await;
    let created = store.get_key(&key_id).await.unwrap().unwrap().created_at;
    let policy = RotationPolicy {
        every: Duration::days(30),
        ..RotationPolicy::default()
    };
    let due = created + Duration::days(30);
    let notifier = || {
        jobs::Notifier::new(NotifyConfig {
            url: switchyard_core::Secret::new(url.clone()),
            secret: switchyard_core::Secret::new(NOTIFY_SECRET),
            interval: std::time::Duration::from_secs(3600),
            attempts: 3,
        })
        .unwrap()
        .with_backoff(std::time::Duration::from_millis(20))
    };
    // Two replicas, each with its own pool, on one clock the test moves.
    let clock = std::sync::Arc::new(ManualClock::new(due - Duration::days(20)));
    let replica = |id: &str| {
        let store = switchyard_store::Store::connect_lazy(&db.config()).unwrap();
        let mut s = Scheduler::new(store.clone(), std::time::Duration::from_secs(30))
            .with_clock(clock.clone())
            .with_replica_id(id);
        s.register(jobs::rotation_notices(
            store,
            policy,
            notifier(),
            std::time::Duration::from_secs(3600),
        ))
        .unwrap();
        s
    };
    let (mut a, mut b) = (replica("replica-a"), replica("replica-b"));
    let notices = |r: &Receiver| -> Vec<String> {
        r.bodies()
            .iter()
            .map(|v| v["notice"].as_str().unwrap().to_owned())
            .collect()
    };

    // 20 days before: nothing owed.
    step(&mut a, &mut b).await;
    assert!(notices(&receiver).is_empty());
    // 14 days before: one notice, from one replica, however often they run.
    clock.set(due - Duration::days(14));
    step(&mut a, &mut b).await;
    assert_eq!(notices(&receiver), vec!["days_14"]);
    let body = &receiver.bodies()[0];
    assert_eq!(body["key"]["owner"], "ops@example.com");
    assert_eq!(body["days_left"], 14);
    assert_eq!(time(&body["due_at"]), due);
    assert!(body
        .to_string()
        .contains(&format!("switchyard keys rotate {key_id}")));
    for _ in 0..3 {
        clock.advance(Duration::hours(2));
        step(&mut a, &mut b).await;
    }
    assert_eq!(notices(&receiver), vec!["days_14"]);
    // 7 days before: the webhook fails twice, the third attempt lands.
    receiver.fail_next(&[503, 502]);
    clock.set(due - Duration::days(7));
    step(&mut a, &mut b).await;
    assert_eq!(
        notices(&receiver),
        vec!["days_14", "days_7", "days_7", "days_7"]
    );
    // On the due date: the webhook is down for the whole run; a later run
    // delivers it.
    receiver.fail_next(&[500, 500, 500]);
    clock.set(due);
    step(&mut a, &mut b).await;
    assert_eq!(notices(&receiver).len(), 7);
    let records = store.list_notices().await.unwrap();
    let due_record = records.iter().find(|r| r.notice == "due").unwrap();
    assert_eq!((due_record.sent_at, due_record.attempts), (None, 3));
    assert!(due_record.last_error.as_deref().unwrap().contains("500"));
    clock.advance(Duration::hours(2));
    step(&mut a, &mut b).await;
    assert_eq!(notices(&receiver).len(), 8);
    assert_eq!(notices(&receiver).last().unwrap(), "due");
    clock.advance(Duration::hours(2));
    step(&mut a, &mut b).await;
    assert_eq!(
        notices(&receiver).len(),
        8,
        "a delivered notice is not sent again"
    );

    let records = store.list_notices().await.unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.sent_at.is_some()), "{records:?}");
    let by_notice = |n: &str| records.iter().find(|r| r.notice == n).unwrap().attempts;
    assert_eq!(
        (by_notice("days_14"), by_notice("days_7"), by_notice("due")),
        (1, 3, 4)
    );

    // Every attempt is audited, delivered or not; no secret in them.
    let audit = store.recent_audit(100).await.unwrap();
    let attempts: Vec<Value> = audit
        .iter()
        .filter(|a| a.event == "key.notice_attempt" && a.target.as_deref() == Some(&key_id))
        .map(|a| serde_json::from_str(&a.details).unwrap())
        .collect();
    assert_eq!(attempts.len(), 8);
    assert_eq!(
        attempts.iter().filter(|d| d["delivered"] == true).count(),
        3
    );
    assert!(attempts
        .iter()
        .any(|d| d["status"] == 503 && d["delivered"] == false));
    for a in &audit {
        assert!(!format!("{a:?}").contains(NOTIFY_SECRET));
    }

    // Two replicas sending at the same moment, as when a lease moves in the
    // middle of a run: each notice still goes out once.
    let (second_id, _) = aged_key(&store, "second", 0).await;
    let second_due =
        store.get_key(&second_id).await.unwrap().unwrap().created_at + Duration::days(30);
    let at = second_due - Duration::days(13);
    let store_a = switchyard_store::Store::connect_lazy(&db.config()).unwrap();
    let store_b = switchyard_store::Store::connect_lazy(&db.config()).unwrap();
    let (na, nb) = (notifier(), notifier());
    let (ra, rb) = tokio::join!(
        jobs::send_rotation_notices(&store_a, &policy, &na, "replica-a", at),
        jobs::send_rotation_notices(&store_b, &policy, &nb, "replica-b", at),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.sent + rb.sent, 1, "{ra:?} {rb:?}");
    let for_second = receiver
        .bodies()
        .iter()
        .filter(|v| v["key"]["id"] == second_id.as_str())
        .count();
    assert_eq!(for_second, 1);
    // A rotated key is owed nothing more; its successor, created moments
    // after it, is owed its one-week notice by then (only the latest).
    let keys = switchyard_server::keys::Keys::new(store.clone(), None);
    let rotated = keys
        .rotate(&second_id, 7, &switchyard_server::audit::Actor::cli())
        .await
        .unwrap();
    let report = jobs::send_rotation_notices(&store_a, &policy, &na, "replica-a", second_due)
        .await
        .unwrap();
    assert_eq!(report, jobs::NoticeReport { sent: 1, failed: 0 });
    let bodies = receiver.bodies();
    let last = bodies.last().unwrap();
    assert_eq!(last["key"]["id"], rotated.successor.key.id.as_str());
    assert_eq!(last["notice"], "days_7");
    let for_second = bodies
        .iter()
        .filter(|v| v["key"]["id"] == second_id.as_str())
        .count();
    assert_eq!(for_second, 1, "the rotated key got no due-date notice");
    assert!(clock.now() >= due);
    a.shutdown().await;
    b.shutdown().await;
}
