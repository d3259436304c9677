//! End-to-end tests of the `switchyard` binary as an operator runs it: real
//! processes, real signals, real PostgreSQL (shared and private) and SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_testkit::process::{Binary, ServerProcess};
use switchyard_testkit::{find_keys, poll_until, PrivatePostgres, PrivateRedis, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// The binary with a clean environment: only what the test gives it, and
/// `LOCAL_MODEL_PRELOAD=false` so that `serve` does not fetch the embedded
/// model into the working directory (tests/local_model.rs covers it).
fn switchyard(envs: &[(&str, &str)]) -> Binary {
    Binary::new(BIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .envs(envs)
}

fn run(envs: &[(&str, &str)], args: &[&str]) -> Output {
    switchyard(envs).run(args)
}

/// `switchyard serve` on a port of its own, once it answers `/ready`.
fn serve(envs: &[(&str, &str)]) -> ServerProcess {
    switchyard(envs).serve()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn get(url: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let client = reqwest::blocking::Client::new();
    let mut r = client.get(url);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().unwrap()
}

/// The server's `http_requests_in_flight` gauge.
fn in_flight(server: &ServerProcess) -> i64 {
    let metrics = get(&server.url("/metrics"), None).text().unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("http_requests_in_flight "))
        .unwrap_or_else(|| panic!("no http_requests_in_flight: {metrics}"))
        .parse()
        .unwrap()
}

fn fresh_start(db: &TestDatabase) {
    let server = serve(&[("DATABASE_URL", &db.url)]);
    let key = server.printed_key();
    assert_eq!(get(&server.url("/health"), None).status(), StatusCode::OK);
    let unauth = get(&server.url("/v1/models"), None);
    assert_eq!(unauth.status(), StatusCode::UNAUTHORIZED);
    let body: Value = unauth.json().unwrap();
    assert_eq!(body["error"]["code"], "missing_api_key");
    let ok = get(&server.url("/v1/models"), Some(&key));
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.json::<Value>().unwrap()["object"], "list");
    let (code, stdout, _) = server.stop();
    assert_eq!(code, 0);
    assert_eq!(stdout.matches(&key).count(), 1, "printed exactly once");

    // A second start on the same database prints no key and the old one works.
    let again = serve(&[("DATABASE_URL", &db.url)]);
    assert_eq!(
        get(&again.url("/v1/models"), Some(&key)).status(),
        StatusCode::OK
    );
    let (code, stdout, _) = again.stop();
    assert_eq!(code, 0);
    assert!(find_keys(&stdout).is_empty(), "{stdout}");
}

#[test]
fn fresh_start_on_sqlite_prints_the_admin_key_once() {
    fresh_start(&TestDatabase::sqlite());
}

#[test]
fn fresh_start_on_postgres_prints_the_admin_key_once() {
    fresh_start(&TestDatabase::postgres());
}

#[test]
fn the_default_database_is_created_under_data() {
    let dir = tempfile::tempdir().unwrap();
    // No arguments: the default command is `serve`.
    let server = switchyard(&[]).current_dir(dir.path()).start_server(&[]);
    server.wait_ready();
    assert!(dir.path().join("data/switchyard.db").is_file());
    let (code, _, _) = server.stop();
    assert_eq!(code, 0);
}

#[test]
fn the_bound_address_is_printed_at_every_log_level() {
    let db = TestDatabase::sqlite();
    // PORT=0 and no `listening` log event: the stdout line still says where.
    let server = serve(&[("DATABASE_URL", &db.url), ("LOG_LEVEL", "error")]);
    assert_eq!(get(&server.url("/health"), None).status(), StatusCode::OK);
    assert_ne!(server.port(), 0);
    let line = format!("listening on {}\n", server.base_url());
    let (code, stdout, logs) = server.stop();
    assert_eq!(code, 0);
    assert_eq!(stdout.matches(&line).count(), 1, "{stdout}");
    assert!(!logs.contains("listening"), "{logs}");
}

#[test]
fn migrate_twice_is_a_no_op_the_second_time() {
    for db in [TestDatabase::sqlite(), TestDatabase::postgres()] {
        let env = [("DATABASE_URL", db.url.as_str())];
        let first = run(&env, &["migrate"]);
        assert!(first.status.success(), "{}", text(&first.stderr));
        assert!(
            text(&first.stdout).contains("applied 12 migration(s)"),
            "{}",
            text(&first.stdout)
        );
        let second = run(&env, &["migrate"]);
        assert!(second.status.success());
        assert!(
            text(&second.stdout).contains("up to date"),
            "{}",
            text(&second.stdout)
        );
    }
}

#[test]
fn production_refuses_debug_and_reports_every_problem() {
    let out = run(
        &[
            ("ENVIRONMENT", "production"),
            ("DEBUG", "true"),
            ("PORT", "nope"),
        ],
        &["serve"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("DEBUG: must not be true when ENVIRONMENT=production"),
        "{err}"
    );
    assert!(err.contains("JWT_SECRET"), "{err}");
    assert!(err.contains("PORT"), "{err}");
    assert!(err.contains("DATABASE_URL"), "{err}");
}

#[test]
fn config_check_redacts_secrets_and_fails_on_problems() {
    let dir = tempfile::tempdir().unwrap();
    let jwt_file = dir.path().join("jwt");
    std::fs::write(&jwt_file, "jwt-secret-from-file-0123456789abcdef\n").unwrap();
    let ok = run(
        &[
            ("JWT_SECRET_FILE", jwt_file.to_str().unwrap()),
            (
                "DATABASE_URL",
                "postgres://app:db-password-42@db.internal:5432/sy",
            ),
            ("REDIS_URL", "redis://:redis-pw-7@cache:6379/0"),
        ],
        &["config", "check"],
    );
    let out = text(&ok.stdout);
    assert!(ok.status.success(), "{out}{}", text(&ok.stderr));
    assert!(out.contains("configuration OK"));
    assert!(
        out.contains("postgres://app:[redacted]@db.internal:5432/sy"),
        "{out}"
    );
    for secret in ["jwt-secret-from-file", "db-password-42", "redis-pw-7"] {
        assert!(
            !out.contains(secret) && !text(&ok.stderr).contains(secret),
            "{secret} leaked"
        );
    }
    let bad = run(
        &[("API_TIMEOUT", "0"), ("LOG_FORMAT", "xml")],
        &["config", "check"],
    );
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    assert!(
        err.contains("API_TIMEOUT") && err.contains("LOG_FORMAT"),
        "{err}"
    );
}

#[test]
fn keys_cli_works_on_the_database_and_a_running_server_honours_it() {
    let db = TestDatabase::postgres();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("KEY_CACHE_TTL_SECONDS", "1"),
    ];
    let created = run(
        &env,
        &[
            "keys",
            "create",
            "--name",
            "etl",
            "--project",
            "data",
            "--scope",
            "user",
            "--expires-in-days",
            "30",
            "--json",
        ],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let listed = run(&env, &["keys", "list"]);
    let table = text(&listed.stdout);
    assert!(
        table.contains(&id) && table.contains(&secret[..11]),
        "{table}"
    );
    assert!(!table.contains(&secret), "list never shows secrets");
    let shown = run(&env, &["keys", "show", &id, "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["project"], "data");
    assert!(shown.get("key").is_none());
    let missing = run(&env, &["keys", "show", "key_nope"]);
    assert!(!missing.status.success());

    // Keys exist, so the server prints no bootstrap key.
    let server = serve(&env);
    assert_eq!(
        get(&server.url("/v1/models"), Some(&secret)).status(),
        StatusCode::OK
    );
    let revoked = run(&env, &["keys", "revoke", &id]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    poll_until(Duration::from_millis(1500), || {
        match get(&server.url("/v1/models"), Some(&secret)).status() {
            StatusCode::UNAUTHORIZED => Ok(()),
            status => Err(format!("revoked key still accepted past the TTL: {status}")),
        }
    });
    let (code, stdout, _) = server.stop();
    assert_eq!(code, 0);
    assert!(find_keys(&stdout).is_empty());
    let all = run(&env, &["keys", "list", "--all", "--json"]);
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert!(all[0]["revoked_at"].is_string());
}

#[test]
fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    let db = TestDatabase::sqlite();
    let mut server = serve(&[
        ("DATABASE_URL", &db.url),
        ("DEBUG", "true"),
        ("SHUTDOWN_GRACE_SECONDS", "10"),
    ]);
    let key = server.printed_key();
    let url = server.url("/debug/sleep?ms=1500");
    let slow = std::thread::spawn(move || {
        let r = get(&url, Some(&key));
        (r.status(), r.text().unwrap())
    });
    // SIGTERM once the slow request is being served (the /metrics request
    // that asks counts itself).
    poll_until(Duration::from_secs(10), || {
        let n = in_flight(&server);
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} requests in flight"))
        }
    });
    server.terminate();
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("1500"));
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
    // Closed for new connections.
    assert!(reqwest::blocking::get(server.url("/health")).is_err());
    let logs = server.stderr();
    assert!(
        logs.contains("shutdown requested") && logs.contains("in-flight requests finished"),
        "{logs}"
    );
}

/// A stream still running when the grace period ends is cut off, and the
/// call still leaves its usage row (with the tokens seen) before the process
/// exits: nothing spawned for a call is lost at shutdown.
#[test]
fn a_stream_cut_by_sigterm_still_leaves_its_usage_row() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(switchyard_testkit::fake_openai::FakeOpenAi::start());
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[[models]]\nid = \"trickle\"\nbase_url = \"{}\"\nupstream_model = \"trickle-200\"\nretries = 0\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("SWITCHYARD_CONFIG", config.to_str().unwrap()),
        ("SHUTDOWN_GRACE_SECONDS", "1"),
    ];
    let mut server = serve(&env);
    let key = server.printed_key();
    // About forty words, one every 200 ms: far longer than the grace period.
    let url = server.url("/v1/chat/completions");
    let reader = std::thread::spawn(move || {
        let mut response = reqwest::blocking::Client::new()
            .post(url)
            .bearer_auth(key)
            .header("x-request-id", "cut-stream")
            .json(&serde_json::json!({"model": "trickle", "stream": true,
                "messages": [{"role": "user", "content": "one two three four five six seven eight nine ten \
                    eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty \
                    twenty-one twenty-two twenty-three twenty-four twenty-five twenty-six twenty-seven"}]}))
            .send()
            .unwrap();
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(&mut response, &mut body);
        body
    });
    // SIGTERM once the stream has begun at the upstream.
    poll_until(Duration::from_secs(10), || {
        match upstream.calls("trickle-200") {
            0 => Err("the upstream has not been called".to_owned()),
            _ => Ok(()),
        }
    });
    server.terminate();
    assert_eq!(
        server.wait_exit(Duration::from_secs(15)),
        0,
        "{}",
        server.stderr()
    );
    let body = reader.join().unwrap();
    assert!(body.contains("chat.completion.chunk"), "{body}");
    assert!(!body.contains("[DONE]"), "the stream was cut: {body}");
    assert!(body.contains("server_shutdown"), "{body}");

    let rows = rt.block_on(async {
        let cfg = switchyard_testkit::database_config(&db.url, db.kind);
        let store = switchyard_store::Store::connect_lazy(&cfg).unwrap();
        store.recent_usage(10).await.unwrap()
    });
    let row = rows
        .iter()
        .find(|r| r.request_id == "cut-stream")
        .unwrap_or_else(|| panic!("no usage row for the cut stream: {rows:?}"));
    assert_eq!(
        (row.status, row.error_type.as_deref()),
        (503, Some("server_shutdown"))
    );
    assert_eq!(row.model_used.as_deref(), Some("trickle"));
}

#[test]
fn postgres_outage_is_reported_and_recovered_from() {
    let mut pg = PrivatePostgres::start();
    let url = pg.url();
    let server = serve(&[
        ("DATABASE_URL", &url),
        ("DATABASE_ACQUIRE_TIMEOUT_SECONDS", "2"),
    ]);
    let key = server.printed_key();
    assert_eq!(get(&server.url("/ready"), None).status(), StatusCode::OK);

    pg.stop();
    poll_until(Duration::from_secs(10), || {
        let ready = get(&server.url("/ready"), None).status();
        let db = get(&server.url("/db-check"), None).status();
        if ready == StatusCode::SERVICE_UNAVAILABLE && db == StatusCode::SERVICE_UNAVAILABLE {
            Ok(())
        } else {
            Err(format!("probes still {ready}/{db} with PostgreSQL down"))
        }
    });
    let body: Value = get(&server.url("/db-check"), None).json().unwrap();
    assert_eq!(body["status"], "down");
    // Liveness is unaffected: restarting the process would not help.
    assert_eq!(get(&server.url("/health"), None).status(), StatusCode::OK);

    pg.start_again();
    poll_until(Duration::from_secs(20), || {
        let ready = get(&server.url("/ready"), None).status();
        let db = get(&server.url("/db-check"), None).status();
        if ready == StatusCode::OK && db == StatusCode::OK {
            Ok(())
        } else {
            Err(format!("probes did not recover: {ready}/{db}"))
        }
    });
    assert_eq!(
        get(&server.url("/v1/models"), Some(&key)).status(),
        StatusCode::OK
    );
    let (code, _, _) = server.stop();
    assert_eq!(code, 0);
}

#[test]
fn key_secrets_never_appear_in_logs() {
    let db = TestDatabase::sqlite();
    let server = serve(&[
        ("DATABASE_URL", &db.url),
        ("LOG_LEVEL", "trace"),
        ("DATABASE_ECHO", "true"),
    ]);
    let admin = server.printed_key();
    let client = reqwest::blocking::Client::new();
    let created: Value = client
        .post(server.url("/v1/admin/keys"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "leak-check", "project": "p"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let user = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&server.url("/v1/models"), Some(&user)).status(),
        StatusCode::OK
    );
    let flipped = if user.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{flipped}", &user[..66]);
    assert_eq!(
        get(&server.url("/v1/models"), Some(&wrong)).status(),
        StatusCode::UNAUTHORIZED
    );
    client
        .get(server.url("/v1/models"))
        .header("x-api-key", &user)
        .send()
        .unwrap();
    client
        .delete(server.url(&format!("/v1/admin/keys/{id}")))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(
        get(&server.url("/v1/models"), Some(&user)).status(),
        StatusCode::UNAUTHORIZED
    );
    let (code, stdout, logs) = server.stop();
    assert_eq!(code, 0);
    assert!(logs.lines().count() > 20, "trace logging produced output");
    assert!(
        logs.contains("INSERT INTO api_keys"),
        "DATABASE_ECHO logs statements"
    );
    for secret in [&admin, &user, &wrong] {
        assert!(
            !logs.contains(secret.as_str()),
            "a key secret reached the logs"
        );
        assert!(
            !logs.contains(&secret[3..]),
            "a key secret's body reached the logs"
        );
    }
    assert_eq!(stdout.matches(&admin).count(), 1);
    assert!(!stdout.contains(&user));
}

#[test]
fn works_behind_pgbouncer_in_transaction_pooling_mode() {
    let db = TestDatabase::postgres();
    let admin = switchyard_testkit::postgres_admin_url();
    let upstream: reqwest::Url = admin.parse().unwrap();
    let bouncer = switchyard_testkit::PrivatePgbouncer::start(
        upstream.host_str().unwrap(),
        upstream.port().unwrap_or(5432),
        2,
    );
    let url = bouncer.url(db.postgres_name().unwrap());
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_TRANSACTION_POOLING", "true"),
        ("API_RATE_LIMIT", "100000"),
        ("DATABASE_POOL_SIZE", "10"),
        ("KEY_CACHE_TTL_SECONDS", "1"),
    ];
    let server = serve(&env);
    let admin_key = server.printed_key();
    // Many concurrent requests that each hit the database (creating keys,
    // listing, cache-missing lookups) through a two-connection server pool.
    let mut workers = Vec::new();
    for w in 0..8 {
        let base = server.url("");
        let admin_key = admin_key.clone();
        workers.push(std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            for i in 0..10 {
                let created = client
                    .post(format!("{base}/v1/admin/keys"))
                    .bearer_auth(&admin_key)
                    .json(&serde_json::json!({"name": format!("w{w}-{i}"), "project": "p"}))
                    .send()
                    .unwrap();
                assert_eq!(created.status(), StatusCode::CREATED);
                let key: Value = created.json().unwrap();
                let secret = key["key"].as_str().unwrap();
                let models = client
                    .get(format!("{base}/v1/models"))
                    .bearer_auth(secret)
                    .send()
                    .unwrap();
                assert_eq!(models.status(), StatusCode::OK);
                let list = client
                    .get(format!("{base}/v1/admin/keys"))
                    .bearer_auth(&admin_key)
                    .send()
                    .unwrap();
                assert_eq!(list.status(), StatusCode::OK);
                assert_eq!(
                    client
                        .get(format!("{base}/db-check"))
                        .send()
                        .unwrap()
                        .status(),
                    StatusCode::OK
                );
            }
        }));
    }
    for w in workers {
        w.join().unwrap();
    }
    let listed = run(&env, &["keys", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 81);
    let (code, _, logs) = server.stop();
    assert_eq!(code, 0);
    assert!(!logs.contains("prepared statement"), "{logs}");
}

fn create_key(env: &[(&str, &str)], rate: &str) -> String {
    let out = run(
        env,
        &[
            "keys",
            "create",
            "--name",
            "load",
            "--project",
            "p",
            "--rate-limit",
            rate,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["key"].as_str().unwrap().to_owned()
}

/// Sends `total` requests spread over `servers` from 8 threads; returns the
/// status codes seen.
fn spread_load(servers: &[&ServerProcess], key: &str, total: usize) -> HashMap<u16, usize> {
    let urls: Vec<String> = servers.iter().map(|s| s.url("/v1/models")).collect();
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (urls, counts, next, key) =
                (urls.clone(), counts.clone(), next.clone(), key.to_owned());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= total {
                        break;
                    }
                    let status = client
                        .get(&urls[i % urls.len()])
                        .bearer_auth(&key)
                        .send()
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    *counts.lock().unwrap().entry(status).or_insert(0) += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let counts = counts.lock().unwrap().clone();
    counts
}

#[test]
fn two_replicas_sharing_redis_enforce_one_limit() {
    let db = TestDatabase::postgres();
    let redis = switchyard_testkit::redis_url();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis.as_str()),
    ];
    let a = serve(&env);
    let b = serve(&env);
    let n = 500;
    let key = create_key(&env, &format!("{n}/hour"));
    let counts = spread_load(&[&a, &b], &key, 2 * n);
    let admitted = counts.get(&200).copied().unwrap_or(0);
    let denied = counts.get(&429).copied().unwrap_or(0);
    assert_eq!(admitted + denied, 2 * n, "only 200s and 429s: {counts:?}");
    let tolerance = n / 100;
    assert!(
        admitted.abs_diff(n) <= tolerance,
        "admitted {admitted} of {} with a shared limit of {n}: {counts:?}",
        2 * n
    );
    a.stop();
    b.stop();
}

#[test]
fn redis_outage_under_load_follows_the_failure_policy() {
    let db = TestDatabase::postgres();
    let mut redis = PrivateRedis::start();
    let redis_url = redis.url();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
    ];
    let a = serve(&env);
    let b = serve(&env);
    let refusing = serve(&[
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("RATE_LIMIT_REDIS_FAILURE", "refuse"),
    ]);
    let key = create_key(&env, "100000/minute");

    // Load runs while Redis goes away.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(HashMap::<u16, usize>::new()));
    let load = {
        let (stop, seen, key) = (stop.clone(), seen.clone(), key.clone());
        let urls = [a.url("/v1/models"), b.url("/v1/models")];
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let status = client
                    .get(&urls[i % 2])
                    .bearer_auth(&key)
                    .send()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                *seen.lock().unwrap().entry(status).or_insert(0) += 1;
                i += 1;
            }
        })
    };
    let answered = || seen.lock().unwrap().values().sum::<usize>();
    // Redis goes away once the load is running...
    poll_until(Duration::from_secs(10), || match answered() {
        n if n >= 20 => Ok(()),
        n => Err(format!("{n} requests answered")),
    });
    redis.stop();
    let at_stop = answered();
    // ...and the load goes on while the replicas find out.
    poll_until(Duration::from_secs(20), || {
        let ready: Value = get(&a.url("/ready"), None).json().unwrap();
        let during = answered() - at_stop;
        if ready["rate_limiter"] == "redis (degraded)" && during >= 50 {
            Ok(())
        } else {
            Err(format!(
                "{ready}; {during} requests answered since Redis stopped"
            ))
        }
    });

    let ready = get(&a.url("/ready"), None);
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["rate_limiter"], "redis (degraded)", "{ready}");
    // The refusing replica answers limited requests with 503, as chosen.
    let r = get(&refusing.url("/v1/models"), Some(&key));
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "rate_limiter_unavailable"
    );
    let metrics = get(&a.url("/metrics"), None).text().unwrap();
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ratelimit_backend_errors_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 1.0, "{metrics}");

    redis.start_again();
    poll_until(Duration::from_secs(20), || {
        let ready: Value = get(&a.url("/ready"), None).json().unwrap();
        let ready_b: Value = get(&b.url("/ready"), None).json().unwrap();
        if ready["status"] == "ready" && ready_b["status"] == "ready" {
            return Ok(());
        }
        // Readiness clears on the next limited request that reaches Redis.
        get(&a.url("/v1/models"), Some(&key));
        get(&b.url("/v1/models"), Some(&key));
        Err(format!(
            "still degraded after Redis returned: {ready} {ready_b}"
        ))
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    load.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.keys().all(|s| *s == 200),
        "fallback policy: no 5xx and no errors under load: {seen:?}"
    );
    assert!(seen.get(&200).copied().unwrap_or(0) > 10, "{seen:?}");

    // Shared again: 10 per hour across both replicas admits exactly 10.
    let fresh = create_key(&env, "10/hour");
    let counts = spread_load(&[&a, &b], &fresh, 20);
    assert_eq!(counts.get(&200), Some(&10), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&10), "{counts:?}");
    assert!(
        get(&refusing.url("/v1/models"), Some(&fresh)).status() != StatusCode::SERVICE_UNAVAILABLE
    );
    a.stop();
    b.stop();
    refusing.stop();
}

fn gateway_config(dir: &std::path::Path, base_url: &str) -> String {
    let file = dir.join("switchyard.toml");
    std::fs::write(
        &file,
        format!(
            "[[models]]\nid = \"fast\"\nbase_url = \"{base_url}\"\ninput_per_mtok = 3.0\n\
             output_per_mtok = 15.0\ncached_input_per_mtok = 0.3\n"
        ),
    )
    .unwrap();
    file.display().to_string()
}

/// Two replicas share one budget through the database, and after SIGTERM
/// every served request has exactly one usage row.
fn budget_across_replicas(db: &TestDatabase) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(switchyard_testkit::fake_openai::FakeOpenAi::start());
    let dir = tempfile::tempdir().unwrap();
    let config = gateway_config(dir.path(), &upstream.base_url());
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("SWITCHYARD_CONFIG", config.as_str()),
        ("API_RATE_LIMIT", "100000"),
    ];
    let key = create_key(&env, "100000/minute");
    let set = run(
        &env,
        &[
            "budgets",
            "set",
            "--project",
            "p",
            "--period",
            "monthly",
            "--limit-usd",
            "0.001782",
        ],
    );
    assert!(set.status.success(), "{}", text(&set.stderr));
    let a = serve(&env);
    let b = serve(&env);
    let urls = [a.url("/v1/chat/completions"), b.url("/v1/chat/completions")];
    let workers: Vec<_> = (0..100)
        .map(|i| {
            let url = urls[i % 2].clone();
            let key = key.clone();
            std::thread::spawn(move || {
                reqwest::blocking::Client::new()
                    .post(url)
                    .bearer_auth(key)
                    .json(
                        &serde_json::json!({"model": "fast", "max_tokens": 11, "messages": [
                        {"role": "system", "content": "be brief"},
                        {"role": "user", "content": "What is the capital of Germany?"}]}),
                    )
                    .send()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let statuses: Vec<u16> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + refused, 100, "{statuses:?}");
    assert!(
        (1..=11).contains(&ok),
        "{ok} succeeded against a budget for 10"
    );
    let (code_a, _, _) = a.stop();
    let (code_b, _, _) = b.stop();
    assert_eq!((code_a, code_b), (0, 0));

    let listed = run(&env, &["budgets", "list", "--json"]);
    let budgets: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let spent = budgets[0]["spent_nano_usd"].as_i64().unwrap();
    assert_eq!(spent, ok as i64 * 178_200);
    assert!(spent <= 1_782_000);
    assert_eq!(
        budgets[0]["leased_nano_usd"], 0,
        "shutdown gave every lease back"
    );
    // Usage rows equal requests served, across both replicas.
    let store = rt.block_on(async {
        let cfg = switchyard_testkit::database_config(&db.url, db.kind);
        let store = switchyard_store::Store::connect_lazy(&cfg).unwrap();
        (
            store.count_usage().await.unwrap(),
            store.recent_usage(1000).await.unwrap(),
        )
    });
    assert_eq!(store.0, 100);
    assert_eq!(store.1.iter().filter(|r| r.status == 200).count(), ok);
}

#[test]
fn budgets_hold_across_two_replicas_on_sqlite() {
    budget_across_replicas(&TestDatabase::sqlite());
}

#[test]
fn budgets_hold_across_two_replicas_on_postgres() {
    budget_across_replicas(&TestDatabase::postgres());
}

#[test]
fn a_task_whose_server_is_killed_is_finished_by_another() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(switchyard_testkit::fake_openai::FakeOpenAi::start());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[[models]]\nid = \"agent-slow\"\nbase_url = \"{}\"\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    let tasks_dir = dir.path().join("tasks");
    let db = TestDatabase::postgres();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("SWITCHYARD_CONFIG", config.to_str().unwrap()),
        ("TASKS_DIR", tasks_dir.to_str().unwrap()),
        ("TASK_LEASE_SECONDS", "5"),
        ("TASK_WORKERS", "1"),
    ];
    let key = create_key(&env, "1000/minute");
    let mut a = serve(&env);
    let client = reqwest::blocking::Client::new();
    let created: Value = client
        .post(a.url("/v1/task"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"description": "slow analysis", "model": "agent-slow", "async": true,
                                  "allow_tools": ["Read", "Write", "Edit", "Grep", "Bash"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = created["task_id"].as_str().unwrap().to_owned();
    poll_until(Duration::from_secs(15), || {
        let task: Value = get(&a.url(&format!("/v1/tasks/{id}")), Some(&key))
            .json()
            .unwrap();
        if task["status"] == "running"
            && task["execution_log"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["tool"] == "Bash")
        {
            Ok(())
        } else {
            Err(format!("the task never started: {task}"))
        }
    });
    // The worker's process dies mid-task, without any chance to clean up.
    a.kill();
    let b = serve(&env);
    // Taken over once its lease (5 s) has expired.
    let task = poll_until(Duration::from_secs(40), || {
        let task: Value = get(&b.url(&format!("/v1/tasks/{id}")), Some(&key))
            .json()
            .unwrap();
        if task["status"] != "running" && task["status"] != "queued" {
            Ok(task)
        } else {
            Err(format!("no other worker took the task over: {task}"))
        }
    });
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        task["result"]["summary"],
        "Found one race condition; see notes.txt."
    );
    let attempts = rt.block_on(async {
        let store = switchyard_store::Store::connect_lazy(&switchyard_testkit::database_config(
            &db.url, db.kind,
        ))
        .unwrap();
        store.get_task(&id).await.unwrap().unwrap().attempts
    });
    assert_eq!(
        attempts, 2,
        "run once, then once more after the lease expired"
    );
    let (code, _, _) = b.stop();
    assert_eq!(code, 0);
}
