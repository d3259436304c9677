//! `switchyard keys rotate`, `set-expiry` (and, with the rotation policy,
//! `list --due`) as an operator runs them, against a real database; a
//! running server honours the rotation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::StatusCode;
use serde_json::Value;
use std::process::Output;
use switchyard_testkit::process::Binary;
use switchyard_testkit::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn run(envs: &[(&str, &str)], args: &[&str]) -> Output {
    Binary::new(BIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .envs(envs)
        .run(args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn keys_are_rotated_and_given_an_expiry_from_the_command_line() {
    let db = TestDatabase::postgres();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("KEY_CACHE_TTL_SECONDS", "1"),
    ];
    let created = json_of(&run(
        &env,
        &[
            "keys",
            "create",
            "--name",
            "etl",
            "--project",
            "data",
            "--owner",
            "ops@example.com",
            "--rate-limit",
            "100/minute",
            "--json",
        ],
    ));
    let id = created["id"].as_str().unwrap().to_owned();
    let old_secret = created["key"].as_str().unwrap().to_owned();

    let bad = run(&env, &["keys", "rotate", &id, "--grace-days", "91"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--grace-days"),
        "{}",
        text(&bad.stderr)
    );
    let missing = run(&env, &["keys", "rotate", "key_nope"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("key_nope"));

    let rotated = json_of(&run(
        &env,
        &["keys", "rotate", &id, "--grace-days", "3", "--json"],
    ));
    let new_secret = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["id"].as_str().unwrap().to_owned();
    assert_eq!(rotated["name"], "etl");
    assert_eq!(rotated["owner"], "ops@example.com");
    assert_eq!(rotated["rate_limit"], created["rate_limit"]);
    assert_eq!(rotated["previous"]["successor_id"], new_id.as_str());
    assert!(rotated["previous"]["expires_at"].is_string());

    let again = run(&env, &["keys", "rotate", &id]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains(&new_id),
        "{}",
        text(&again.stderr)
    );

    let table = text(&run(&env, &["keys", "list"]).stdout);
    let old_row = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(old_row.contains("grace"), "{table}");

    // A running server accepts both keys; the old one with the grace header.
    let server = Binary::new(BIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .envs(&env)
        .serve();
    let client = reqwest::blocking::Client::new();
    let old = client
        .get(server.url("/v1/models"))
        .bearer_auth(&old_secret)
        .send()
        .unwrap();
    assert_eq!(old.status(), StatusCode::OK);
    assert!(old.headers().contains_key("x-switchyard-key-grace-ends"));
    let new = client
        .get(server.url("/v1/models"))
        .bearer_auth(&new_secret)
        .send()
        .unwrap();
    assert_eq!(new.status(), StatusCode::OK);
    assert!(!new.headers().contains_key("x-switchyard-key-grace-ends"));

    let past = run(
        &env,
        &["keys", "set-expiry", &new_id, "2001-01-01T00:00:00Z"],
    );
    assert!(!past.status.success());
    assert!(text(&past.stderr).contains("not in the future"));
    let set = run(&env, &["keys", "set-expiry", &new_id, "30d"]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    let shown = json_of(&run(&env, &["keys", "show", &new_id, "--json"]));
    assert!(shown["expires_at"].is_string());
    let never = run(&env, &["keys", "set-expiry", &new_id, "never"]);
    assert!(text(&never.stdout).contains("expires never"));
    let shown = json_of(&run(&env, &["keys", "show", &new_id, "--json"]));
    assert!(shown["expires_at"].is_null());
    let (code, stdout, _) = server.stop();
    assert_eq!(code, 0);
    assert!(!stdout.contains(&new_secret));
}

#[test]
fn due_keys_are_listed_and_reported_by_preflight() {
    let db = TestDatabase::postgres();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("KEY_ROTATION_DAYS", "30"),
    ];
    let created = json_of(&run(
        &env,
        &[
            "keys",
            "create",
            "--name",
            "etl",
            "--project",
            "data",
            "--json",
        ],
    ));
    let id = created["id"].as_str().unwrap().to_owned();
    let preflight = run(&env, &["preflight", "--json"]);
    let report = text(&preflight.stdout);
    assert!(
        report.contains("no key is due (KEY_ROTATION_DAYS=30)"),
        "{report}"
    );
    let none = json_of(&run(&env, &["keys", "list", "--due", "--json"]));
    assert_eq!(none, serde_json::json!([]));

    // Forty days later, by the database's record.
    switchyard_testkit::psql(
        &db.url,
        &format!(
            "UPDATE api_keys SET created_at = created_at - interval '40 days' WHERE id = '{id}'"
        ),
    );
    let due = json_of(&run(&env, &["keys", "list", "--due", "--json"]));
    assert_eq!(due.as_array().unwrap().len(), 1);
    assert_eq!(due[0]["id"], id.as_str());
    let table = text(&run(&env, &["keys", "list"]).stdout);
    assert!(
        table.contains("ROTATION DUE") && table.contains("(due)"),
        "{table}"
    );
    let preflight = run(&env, &["preflight"]);
    let report = text(&preflight.stdout);
    assert!(report.contains("1 key(s) due for rotation"), "{report}");
    let rotated = run(&env, &["keys", "rotate", &id]);
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    let none = json_of(&run(&env, &["keys", "list", "--due", "--json"]));
    assert_eq!(none, serde_json::json!([]));
}

/// The failure of a command asked for `--json`, read as JSON from stdout.
fn failure_json(out: &Output) -> Value {
    assert!(!out.status.success(), "{}", text(&out.stdout));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)))
}

#[test]
fn a_failure_under_json_is_json_on_stdout_too() {
    let db = TestDatabase::sqlite();
    let env = [("DATABASE_URL", db.url.as_str())];

    // A verb's own failure: no such key.
    let missing = run(&env, &["keys", "show", "key_nope", "--json"]);
    let v = failure_json(&missing);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"], "no key with id `key_nope`", "{v}");
    assert!(text(&missing.stderr).contains("no key with id `key_nope`"));
    // Without --json the same failure is text only.
    let plain = run(&env, &["keys", "show", "key_nope"]);
    assert!(!plain.status.success());
    assert!(plain.stdout.is_empty(), "{}", text(&plain.stdout));

    // An error on the way: a database that is not there.
    let unreachable = [("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")];
    let v = failure_json(&run(&unreachable, &["keys", "list", "--json"]));
    assert_eq!(v["ok"], false, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("DATABASE_URL") && error.contains("refused"),
        "the error names what to fix, and the database's own answer: {v}"
    );

    // A configuration with problems: each one, by variable.
    let broken = [
        ("DATABASE_URL", db.url.as_str()),
        ("PORT", "nope"),
        ("API_RATE_LIMIT", "-3"),
    ];
    let v = failure_json(&run(&broken, &["backup", "list", "--json"]));
    let variables: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["variable"].as_str().unwrap())
        .collect();
    assert!(variables.contains(&"PORT"), "{v}");
    assert!(variables.contains(&"API_RATE_LIMIT"), "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid configuration"));
}
