use super::*;
use ::sentry::protocol::{Breadcrumb, Event, Exception, Request, Transaction};
use serde_json::json;

const KEY: &str = "sy_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmU";

fn clean(s: &str) -> String {
    text(s).into_owned()
}

#[test]
fn switchyard_and_provider_keys_go_anywhere_in_a_string() {
    assert_eq!(clean(&format!("key={KEY}!")), "key=[redacted]!");
    assert_eq!(clean(&format!("x{KEY}z")), "x[redacted]z");
    assert_eq!(
        clean("sy_1a2b3c4d…"),
        "sy_1a2b3c4d…",
        "a display prefix stays"
    );
    assert_eq!(
        clean("upstream said: invalid key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv"),
        "upstream said: invalid key sk-[redacted]"
    );
    assert_eq!(clean("task-list"), "task-list");
}

#[test]
fn tokens_and_named_credentials_go() {
    assert_eq!(
        clean(&format!("Authorization: Bearer {JWT}")),
        "Authorization: [redacted]"
    );
    assert_eq!(
        clean("got bearer abc.def-ghi ok"),
        "got bearer [redacted] ok"
    );
    assert_eq!(clean(&format!("token {JWT} seen")), "token [redacted] seen");
    assert_eq!(
        clean(r#"{"x-api-key": "k-123", "accept": "json"}"#),
        r#"{"x-api-key": "[redacted]", "accept": "json"}"#
    );
    assert_eq!(
        clean("authorization: Basic dXNlcjpwYXNz\nnext"),
        "authorization: [redacted]\nnext"
    );
    assert_eq!(
        clean("?api_key=abc&password=hunter2&x=1"),
        "?api_key=[redacted]&password=[redacted]&x=1"
    );
    assert_eq!(
        clean("max_tokens=100 prompt_tokens: 5"),
        "max_tokens=100 prompt_tokens: 5"
    );
    assert_eq!(clean("Basic arithmetic"), "Basic arithmetic");
}

#[test]
fn url_passwords_go_and_the_rest_of_the_url_stays() {
    assert_eq!(
        clean("postgres://app:s3cr%40t@db:5432/sy failed"),
        "postgres://app:[redacted]@db:5432/sy failed"
    );
    assert_eq!(clean("redis://:pw@cache/0"), "redis://:[redacted]@cache/0");
    assert_eq!(
        clean("https://example.com/a:b@c"),
        "https://example.com/a:b@c"
    );
    assert_eq!(clean("postgres://app@db/sy"), "postgres://app@db/sy");
}

#[test]
fn scrubbing_is_idempotent_and_leaves_clean_text_borrowed() {
    let once = clean(&format!("Bearer {KEY} at postgres://u:p@h/d {JWT}"));
    assert_eq!(clean(&once), once);
    assert!(matches!(text("nothing to see"), Cow::Borrowed(_)));
    assert_eq!(clean("héllo wörld sy_x"), "héllo wörld sy_x");
}

#[test]
fn events_lose_credentials_and_bodies_everywhere() {
    let mut e = Event {
        message: Some(format!("failed with {KEY}")),
        ..Default::default()
    };
    e.exception.values.push(Exception {
        ty: "panic".into(),
        value: Some(format!("called with Authorization: Bearer {KEY}")),
        ..Default::default()
    });
    e.breadcrumbs.values.push(Breadcrumb {
        message: Some(format!(
            "calling https://user:hunter2@upstream/v1 with {JWT}"
        )),
        ..Default::default()
    });
    e.extra.insert("prompt".into(), json!("my secret plan"));
    e.extra.insert(
        "nested".into(),
        json!({"headers": [["x-api-key", "k-1"]], "list": [KEY]}),
    );
    e.tags.insert("key_id".into(), "key_abc".into());
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("Authorization".to_owned(), format!("Bearer {KEY}"));
    headers.insert("X-Api-Key".to_owned(), "plain-secret".to_owned());
    headers.insert("Accept".to_owned(), "application/json".to_owned());
    e.request = Some(Request {
        data: Some(r#"{"messages":[{"content":"my secret plan"}]}"#.into()),
        cookies: Some("session=abc".into()),
        headers,
        ..Default::default()
    });

    let scrubbed = event(e).expect("the event survives scrubbing");
    let raw = serde_json::to_string(&scrubbed).unwrap();
    for secret in [
        KEY,
        &KEY[3..],
        JWT,
        "hunter2",
        "my secret plan",
        "plain-secret",
        "k-1",
        "session=abc",
    ] {
        assert!(!raw.contains(secret), "{secret} leaked: {raw}");
    }
    let request = scrubbed.request.unwrap();
    assert_eq!(request.data, None);
    assert_eq!(request.cookies, None);
    assert_eq!(request.headers["Authorization"], REDACTED);
    assert_eq!(request.headers["Accept"], "application/json");
    assert_eq!(
        scrubbed.tags["key_id"], "key_abc",
        "the key id is no secret"
    );
    assert_eq!(scrubbed.message.as_deref(), Some("failed with [redacted]"));
    assert_eq!(scrubbed.exception.values[0].ty, "panic");
}

#[test]
fn transactions_are_scrubbed_too() {
    let t = Transaction {
        name: Some(format!("GET /v1/x?token={KEY}")),
        ..Default::default()
    };
    let t = scrubbed(&t).unwrap();
    assert_eq!(t.name.as_deref(), Some("GET /v1/x?token=[redacted]"));
}
