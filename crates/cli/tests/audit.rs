//! `switchyard audit export` and `switchyard audit verify` as an operator
//! runs them, on SQLite and on PostgreSQL: records written by other
//! commands, both formats, a file, and a tampered record named by verify.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::process::Output;
use switchyard_core::config::DatabaseKind;
use switchyard_testkit::process::Binary;
use switchyard_testkit::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn run(db: &TestDatabase, args: &[&str]) -> Output {
    Binary::new(BIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .env("DATABASE_URL", &db.url)
        .run(args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn export_and_verify(kind: DatabaseKind) {
    let db = TestDatabase::of_kind(kind);
    for name in ["alpha", "beta"] {
        let out = run(&db, &["keys", "create", "--name", name, "--project", "p1"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    let out = run(&db, &["audit", "export", "--since", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{}", stdout(&out));
    assert_eq!(records[0]["event"], "key.created");
    assert_eq!(records[0]["details"]["name"], "alpha");
    assert_eq!(records[1]["details"]["name"], "beta");
    assert_eq!(records[1]["prev_hash"], records[0]["hash"]);
    let first = records[0]["id"].as_i64().unwrap();

    let out = run(
        &db,
        &[
            "audit",
            "export",
            "--since",
            "2000-01-01",
            "--format",
            "csv",
            "--event",
            "key.created",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,timestamp,event,"), "{csv}");
    assert!(lines[1].starts_with(&format!("{first},")), "{csv}");
    assert!(lines[1].contains(",key.created,"), "{csv}");
    assert!(lines[1].contains("\"\"name\"\":\"\"alpha\"\""), "{csv}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let out = run(
        &db,
        &[
            "audit",
            "export",
            "--since",
            "1d",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wrote 2 audit record(s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
    let out = run(&db, &["audit", "export", "--since", "in a while"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--since: `in a while` is not"),
        "{}",
        stderr(&out)
    );

    let out = run(&db, &["audit", "verify", "--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["checked"], 2);
    assert_eq!(report["head"], records[1]["hash"]);
    let out = run(&db, &["audit", "verify"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("2 record(s) verified"),
        "{}",
        stdout(&out)
    );

    // Someone with database access rewrites the first record.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let changed = rt.block_on(db.execute(&format!(
        "UPDATE audit_log SET target = 'key_other' WHERE id = {first}"
    )));
    assert_eq!(changed, 1);
    let out = run(&db, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("BROKEN at record #{first} (")),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("the record was changed"),
        "{}",
        stdout(&out)
    );
    let out = run(&db, &["audit", "verify", "--json"]);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["broken"]["id"], first);
    assert_eq!(report["broken"]["kind"], "hash_mismatch");
}

#[test]
fn audit_export_and_verify_on_sqlite() {
    export_and_verify(DatabaseKind::Sqlite);
}

#[test]
fn audit_export_and_verify_on_postgres() {
    export_and_verify(DatabaseKind::Postgres);
}
