//! `switchyard backup` as an operator runs it, on SQLite and PostgreSQL:
//! keys, budgets, usage, a task and audit records made through the running
//! service; a backup taken while it serves calls against a budget, to a
//! local S3 server (moto, from PyPI, in the virtual environment
//! scripts/test.sh manages); the database dropped; the backup restored; the
//! old keys authenticate and every count and checksum matches; the
//! restored budget's spend equals its restored usage exactly. A damaged or
//! truncated archive fails `verify` naming the damage; a restore into a
//! non-empty database, or across engines, is refused; prune deletes by age.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tools;

use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::config::DatabaseKind;
use switchyard_testkit::fake_openai::FakeOpenAi;
use switchyard_testkit::ports::PortLease;
use switchyard_testkit::process::{Binary, Process, ServerProcess};
use switchyard_testkit::TestDatabase;
use tools::{api, text, venv_tool};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ADMIN: &str = "sy_00000000000000000000000000000000000000000000000000000000000000b1";
const BUCKET: &str = "switchyard-backups";

/// A local S3 server: moto's, on a port of its own, with one bucket.
struct Moto {
    _process: Process,
    _port: PortLease,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let server = venv_tool("moto_server", "moto[server]==5.2.5");
        let port = PortLease::take();
        let process = Binary::new(server).spawn(&["-H", "127.0.0.1", "-p", &port.port.to_string()]);
        let endpoint = format!("http://127.0.0.1:{}", port.port);
        assert!(
            switchyard_testkit::wait_for_http_ok(
                &format!("{endpoint}/moto-api/"),
                Duration::from_secs(30)
            ),
            "moto did not start"
        );
        let made = reqwest::blocking::Client::new()
            .put(format!("{endpoint}/{BUCKET}"))
            .send()
            .unwrap();
        assert!(made.status().is_success(), "{:?}", made.text());
        Self {
            _process: process,
            _port: port,
            endpoint,
        }
    }
}

/// The service's settings for a database, an upstream and moto.
fn settings(db: &TestDatabase, catalog: &str, moto: &Moto, tasks: &Path) -> Vec<(String, String)> {
    owned(&[
        ("DATABASE_URL", db.url.as_str()),
        ("SWITCHYARD_CONFIG", catalog),
        ("ADMIN_API_KEY", ADMIN),
        ("API_RATE_LIMIT", "1000000"),
        ("TASK_WORKERS", "0"),
        ("TASKS_DIR", tasks.to_str().unwrap()),
        ("LOCAL_MODEL_PRELOAD", "false"),
        ("LOG_LEVEL", "warn"),
        ("BACKUP_DESTINATION", &format!("s3://{BUCKET}/prod")),
        ("AWS_ENDPOINT_URL", &moto.endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ])
}

fn binary(env: &[(String, String)]) -> Binary {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Binary::new(BIN).envs(&pairs)
}

fn switchyard(env: &[(String, String)], args: &[&str]) -> Output {
    binary(env).run(args)
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn call(server: &ServerProcess, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
    api(server.base_url(), method, path, key, body)
}

/// Settings as owned pairs.
fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A catalog in `dir` with one model, `fast`, on the fake upstream.
fn fast_catalog(dir: &Path, upstream: &FakeOpenAi) -> std::path::PathBuf {
    let catalog = dir.join("models.toml");
    std::fs::write(
        &catalog,
        format!(
            "[[models]]\nid = \"fast\"\nbase_url = \"{}\"\nretries = 0\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    catalog
}

/// Chat calls with `key`, one after another, until `stop`; the status of
/// each (0 when none came back).
fn load(
    server: &ServerProcess,
    key: &str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<u16>> {
    let (url, key) = (server.url("/v1/chat/completions"), key.to_owned());
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        let mut statuses = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let i = statuses.len();
            let status = client
                .post(&url)
                .bearer_auth(&key)
                .json(&json!({"model": "fast", "messages": [{"role": "user", "content": format!("load {i}")}]}))
                .send()
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            statuses.push(status);
        }
        statuses
    })
}

fn chat(server: &ServerProcess, key: &str, i: u64) -> u16 {
    reqwest::blocking::Client::new()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": format!("call number {i} of the load")}]}))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The cost the restored usage records add up to and the restored
/// budget's spend, through the service's own views.
fn spend_and_usage(server: &ServerProcess, key: &str) -> (String, String, i64) {
    let usage = call(
        server,
        "GET",
        "/v1/usage?period=custom&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&project=shop",
        ADMIN,
        None,
    );
    let budgets = call(server, "GET", "/v1/admin/budgets", key, None);
    let budget = budgets["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["subject"] == "shop")
        .unwrap_or_else(|| panic!("no budget for shop: {budgets}"))
        .clone();
    (
        budget["spent_usd"].as_str().unwrap().to_owned(),
        usage["total"]["cost_usd"].as_str().unwrap().to_owned(),
        usage["total"]["requests"].as_i64().unwrap(),
    )
}

fn round_trip(kind: DatabaseKind) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(FakeOpenAi::start());
    let dir = tempfile::tempdir().unwrap();
    let catalog = fast_catalog(dir.path(), &upstream);
    let moto = Moto::start();
    let db = TestDatabase::of_kind(kind);
    let env = settings(
        &db,
        catalog.to_str().unwrap(),
        &moto,
        &dir.path().join("tasks"),
    );
    let server = binary(&env).serve();

    // What a deployment holds: keys, a budget, usage, a task, audit records.
    let shop = call(
        &server,
        "POST",
        "/v1/admin/keys",
        ADMIN,
        Some(json!({"name": "web", "project": "shop"})),
    );
    let shop_key = shop["key"].as_str().unwrap().to_owned();
    let other = call(
        &server,
        "POST",
        "/v1/admin/keys",
        ADMIN,
        Some(json!({"name": "batch", "project": "etl"})),
    );
    let other_key = other["key"].as_str().unwrap().to_owned();
    call(
        &server,
        "PUT",
        "/v1/admin/budgets",
        ADMIN,
        Some(
            json!({"scope": "project", "subject": "shop", "period": "total", "limit_usd": 1000.0}),
        ),
    );
    for i in 0..20 {
        assert_eq!(chat(&server, &shop_key, i), 200);
    }
    call(
        &server,
        "POST",
        "/v1/task",
        &other_key,
        Some(json!({"description": "list the files", "model": "fast", "async": true})),
    );

    // A backup taken while calls against the budget keep coming.
    let stop = Arc::new(AtomicBool::new(false));
    let during = load(&server, &shop_key, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let manifest = json_of(&switchyard(&env, &["backup", "create", "--json"]));
    stop.store(true, Ordering::Relaxed);
    let statuses = during.join().unwrap();
    assert!(
        statuses.contains(&200),
        "no call was served during the backup"
    );
    let id = manifest["id"].as_str().unwrap().to_owned();
    let table = |name: &str| {
        manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the manifest: {manifest}"))
            .clone()
    };
    assert_eq!(table("api_keys")["rows"], 3, "{manifest}");
    assert!(table("usage_log")["rows"].as_u64().unwrap() >= 20);
    assert_eq!(table("tasks")["rows"], 1);
    assert!(table("audit_log")["rows"].as_u64().unwrap() >= 3);
    assert_eq!(manifest["engine"], kind.as_str());
    let listed = json_of(&switchyard(&env, &["backup", "list", "--json"]));
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");

    // The database is lost.
    let (_, _, stderr) = server.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");
    db.drop_contents();

    // Restore into the empty database; a second restore is refused.
    let restored = json_of(&switchyard(
        &env,
        &["backup", "restore", &id, "--target", &db.url, "--json"],
    ));
    assert_eq!(restored["id"], id.as_str());
    let again = switchyard(&env, &["backup", "restore", &id, "--target", &db.url]);
    assert!(!again.status.success());
    assert!(text(&again).contains("not empty"), "{}", text(&again));

    // The restored service: old keys work, the spend equals the usage.
    let server = binary(&env).serve();
    let models = call(&server, "GET", "/v1/models", &shop_key, None);
    assert!(models["data"].as_array().is_some_and(|d| !d.is_empty()));
    call(&server, "GET", "/v1/models", &other_key, None);
    let (spent, cost, requests) = spend_and_usage(&server, ADMIN);
    assert_eq!(
        spent, cost,
        "the restored budget's spend and usage disagree"
    );
    assert_eq!(
        requests as u64,
        table("usage_log")["rows"].as_u64().unwrap(),
        "usage records restored"
    );
    drop(server);

    // The monthly recovery test, on the restored deployment.
    let verified = json_of(&switchyard(&env, &["backup", "verify", "--json"]));
    assert_eq!(verified["id"], id.as_str());
    assert_eq!(verified["keys_looked_up"], 3);
    assert!(verified["rows"].as_u64().unwrap() > 20);
}

#[test]
fn a_backup_in_s3_restores_exactly_on_sqlite() {
    round_trip(DatabaseKind::Sqlite);
}

#[test]
fn a_backup_in_s3_restores_exactly_on_postgres() {
    round_trip(DatabaseKind::Postgres);
}

/// Flips one byte of a file, or cuts it short.
fn damage(file: &Path, truncate: bool) {
    let mut bytes = std::fs::read(file).unwrap();
    if truncate {
        bytes.truncate(bytes.len() / 2);
    } else {
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
    }
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn damaged_archives_fail_verification_and_old_backups_are_pruned() {
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backups");
    let dest_s = dest.to_str().unwrap().to_owned();
    let env = owned(&[
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_API_KEY", ADMIN),
        ("LOCAL_MODEL_PRELOAD", "false"),
        ("BACKUP_DESTINATION", dest_s.as_str()),
        ("BACKUP_RETENTION_DAYS", "30"),
        ("BACKUP_KEEP_MIN", "1"),
    ]);
    json_of(&switchyard(
        &env,
        &["keys", "create", "--name", "a", "--project", "p", "--json"],
    ));
    let first = json_of(&switchyard(&env, &["backup", "create", "--json"]));
    std::thread::sleep(Duration::from_millis(1100));
    let second = json_of(&switchyard(&env, &["backup", "create", "--json"]));
    let archive = |m: &Value| dest.join(m["archive"].as_str().unwrap());

    let ok = json_of(&switchyard(
        &env,
        &["backup", "verify", first["id"].as_str().unwrap(), "--json"],
    ));
    assert_eq!(ok["keys_looked_up"], 1);

    damage(&archive(&first), false);
    let flipped = switchyard(&env, &["backup", "verify", first["id"].as_str().unwrap()]);
    assert!(!flipped.status.success());
    assert!(
        text(&flipped).contains("is damaged: its SHA-256"),
        "{}",
        text(&flipped)
    );

    damage(&archive(&second), true);
    let cut = switchyard(&env, &["backup", "verify"]);
    assert!(!cut.status.success());
    assert!(text(&cut).contains("truncated"), "{}", text(&cut));

    // Across engines: refused, naming both.
    let pg = TestDatabase::postgres();
    let across = switchyard(
        &env,
        &[
            "backup",
            "restore",
            second["id"].as_str().unwrap(),
            "--target",
            &pg.url,
        ],
    );
    assert!(!across.status.success());
    assert!(
        text(&across).contains("across engines"),
        "{}",
        text(&across)
    );

    // The first backup aged past retention: pruned, manifest and archive.
    let manifest_file = dest.join(format!("{}.json", first["id"].as_str().unwrap()));
    let mut old: Value = serde_json::from_slice(&std::fs::read(&manifest_file).unwrap()).unwrap();
    old["created_at"] = json!("2020-01-01T00:00:00Z");
    std::fs::write(&manifest_file, serde_json::to_vec(&old).unwrap()).unwrap();
    let dry = json_of(&switchyard(
        &env,
        &["backup", "prune", "--dry-run", "--json"],
    ));
    assert_eq!(dry["deleted"], json!([first["id"]]));
    assert!(manifest_file.exists());
    let pruned = json_of(&switchyard(&env, &["backup", "prune", "--json"]));
    assert_eq!(pruned["deleted"], json!([first["id"]]));
    assert!(!manifest_file.exists() && !archive(&first).exists());
    let listed = json_of(&switchyard(&env, &["backup", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Reading from a mistyped directory: an error naming it, and nothing
    // created there.
    let typo = dir.path().join("backpus");
    for args in [
        vec!["backup", "list"],
        vec!["backup", "verify"],
        vec!["backup", "prune", "--dry-run"],
    ] {
        let mut args = args;
        args.extend(["--from", typo.to_str().unwrap()]);
        let out = switchyard(&env, &args);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains("no such directory"), "{}", text(&out));
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }

    // Every run was recorded; the failures with their reasons.
    let store_runs = switchyard(&env, &["preflight", "--json"]);
    let said = text(&store_runs);
    assert!(said.contains("last backup"), "{said}");
    assert!(said.contains("restore test"), "{said}");
}

/// Redis holds only rate-limit and cache state, which rebuilds itself:
/// flushed under load, nothing the database keeps is lost, every call is
/// answered and recorded, and limits hold again at once.
#[test]
fn flushing_redis_under_load_loses_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(FakeOpenAi::start());
    let dir = tempfile::tempdir().unwrap();
    let catalog = fast_catalog(dir.path(), &upstream);
    let redis = switchyard_testkit::PrivateRedis::start();
    let db = TestDatabase::postgres();
    let tasks = dir.path().join("tasks");
    let env = owned(&[
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis.url().as_str()),
        ("SWITCHYARD_CONFIG", catalog.to_str().unwrap()),
        ("ADMIN_API_KEY", ADMIN),
        ("API_RATE_LIMIT", "1000000"),
        ("TASK_WORKERS", "0"),
        ("TASKS_DIR", tasks.to_str().unwrap()),
        ("LOCAL_MODEL_PRELOAD", "false"),
        ("LOG_LEVEL", "warn"),
    ]);
    let server = binary(&env).serve();
    let shop = call(
        &server,
        "POST",
        "/v1/admin/keys",
        ADMIN,
        Some(json!({"name": "web", "project": "shop"})),
    );
    let shop_key = shop["key"].as_str().unwrap().to_owned();
    let slow = call(
        &server,
        "POST",
        "/v1/admin/keys",
        ADMIN,
        Some(
            json!({"name": "slow", "project": "etl", "rate_limit": {"requests": 5, "period_seconds": 3600}}),
        ),
    );
    let slow_key = slow["key"].as_str().unwrap().to_owned();
    call(
        &server,
        "PUT",
        "/v1/admin/budgets",
        ADMIN,
        Some(
            json!({"scope": "project", "subject": "shop", "period": "total", "limit_usd": 1000.0}),
        ),
    );
    let task = call(
        &server,
        "POST",
        "/v1/task",
        &shop_key,
        Some(json!({"description": "wait", "model": "fast", "async": true})),
    );
    for i in 0..5 {
        assert_eq!(chat(&server, &slow_key, i), 200);
    }
    assert_eq!(
        chat(&server, &slow_key, 5),
        429,
        "the slow key's limit holds before the flush"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let during = load(&server, &shop_key, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let flushed = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "FLUSHALL"])
        .output()
        .unwrap();
    assert!(
        flushed.status.success() && text(&flushed).contains("OK"),
        "{}",
        text(&flushed)
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let statuses = during.join().unwrap();
    assert!(statuses.len() > 10, "{} calls", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "calls across the flush: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );

    // The database's state is whole: keys, the task, usage and spend.
    call(&server, "GET", "/v1/models", &shop_key, None);
    let got = call(
        &server,
        "GET",
        &format!("/v1/tasks/{}", task["task_id"].as_str().unwrap()),
        &shop_key,
        None,
    );
    assert_eq!(got["task_id"], task["task_id"]);
    let settled = switchyard_testkit::poll_until(Duration::from_secs(10), || {
        let (spent, cost, requests) = spend_and_usage(&server, ADMIN);
        let shop_calls = statuses.len() as i64;
        if requests == shop_calls && spent == cost {
            Ok((spent, requests))
        } else {
            Err(format!(
                "{requests} usage records for {shop_calls} calls; spent {spent}, usage {cost}"
            ))
        }
    });
    assert!(settled.1 > 0);

    // Limits hold again: the flush reset the slow key's window (its count
    // lived in Redis), and the sixth call after it is refused again.
    for i in 10..15 {
        assert_eq!(chat(&server, &slow_key, i), 200);
    }
    assert_eq!(chat(&server, &slow_key, 15), 429);
}

/// The service's own schedule: with BACKUP_SCHEDULE and
/// BACKUP_VERIFY_SCHEDULE, a replica backs up and restore-tests once per
/// firing (at start when a firing was missed), records both, and reports
/// them in its metrics; a restart within the same period does not repeat
/// them.
#[test]
fn the_scheduled_jobs_back_up_and_restore_test_once_per_firing() {
    let db = TestDatabase::postgres();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backups");
    let env = owned(&[
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_API_KEY", ADMIN),
        ("LOCAL_MODEL_PRELOAD", "false"),
        ("TASK_WORKERS", "0"),
        ("TASKS_DIR", dir.path().join("tasks").to_str().unwrap()),
        ("LOG_LEVEL", "warn"),
        ("BACKUP_DESTINATION", dest.to_str().unwrap()),
        ("BACKUP_SCHEDULE", "0 3 * * *"),
        ("BACKUP_VERIFY_SCHEDULE", "0 5 1 * *"),
        ("SCHEDULER_LEASE_SECONDS", "2"),
    ]);
    let gauge = |server: &ServerProcess, name: &str| -> f64 {
        let text = reqwest::blocking::get(server.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in /metrics"))
    };
    let manifests = |dest: &Path| -> usize {
        std::fs::read_dir(dest)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    let server = binary(&env).serve();
    let (backed_up, verified) = switchyard_testkit::poll_until(Duration::from_secs(60), || {
        let b = gauge(&server, "switchyard_backup_last_success_timestamp_seconds");
        let v = gauge(
            &server,
            "switchyard_backup_last_verify_success_timestamp_seconds",
        );
        if b > 0.0 && v > 0.0 {
            Ok((b, v))
        } else {
            Err(format!("last backup {b}, last restore test {v}"))
        }
    });
    assert!(
        verified >= backed_up,
        "the restore test ran on a backup that exists"
    );
    assert!(gauge(&server, "switchyard_backup_size_bytes") > 0.0);
    assert_eq!(manifests(&dest), 1);
    drop(server);

    // Back within the same period: nothing is owed, nothing runs again.
    let server = binary(&env).serve();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        gauge(&server, "switchyard_backup_last_success_timestamp_seconds"),
        backed_up
    );
    assert_eq!(manifests(&dest), 1);
    let jobs = json_of(&switchyard(&env, &["jobs", "--json"]));
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert!(
        names.contains(&"backup.create") && names.contains(&"backup.verify"),
        "{names:?}"
    );
}

/// A pg_dump that is missing, or older than the server, is named with what
/// to install; nothing is written.
#[test]
fn a_missing_or_old_pg_dump_is_refused_clearly() {
    let db = TestDatabase::postgres();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backups");
    let old = dir.path().join("old-client");
    std::fs::create_dir_all(&old).unwrap();
    let fake = old.join("pg_dump");
    std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n").unwrap();
    let mut perms = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).unwrap();
    let run = |bin_dir: &Path| {
        let env = owned(&[
            ("DATABASE_URL", db.url.as_str()),
            ("LOCAL_MODEL_PRELOAD", "false"),
            ("BACKUP_DESTINATION", dest.to_str().unwrap()),
            ("PG_BIN_DIR", bin_dir.to_str().unwrap()),
        ]);
        switchyard(&env, &["backup", "create"])
    };
    let missing = run(&dir.path().join("nowhere"));
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("cannot run") && text(&missing).contains("PG_BIN_DIR"),
        "{}",
        text(&missing)
    );
    let too_old = run(&old);
    assert!(!too_old.status.success());
    assert!(
        text(&too_old).contains("version 9, older than the server"),
        "{}",
        text(&too_old)
    );
    assert!(!dest.exists() || std::fs::read_dir(&dest).unwrap().next().is_none());
}
