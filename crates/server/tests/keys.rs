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
use switchyard_testkit::TestDatabase;

switchyard_testkit::on_both_engines!(multi_thread:
    rotation_issues_a_successor_and_the_old_key_announces_its_grace,
    expiry_can_be_set_changed_and_cleared,
    access_tokens_stand_for_their_key_and_end_with_it,
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
    let exp = claims["exp"].as_i64().unwrap();
    assert!(exp - before <= 3600 && exp - before >= 3590, "{claims}");
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
