//! Budget leases across real replicas: a replica killed (SIGKILL, no
//! shutdown) while it holds leased headroom gives it back when the lease
//! expires, and the other replica can then spend the whole budget.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_testkit::process::Binary;
use switchyard_testkit::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn switchyard(envs: &[(&str, &str)]) -> Binary {
    Binary::new(BIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .envs(envs)
}

fn run_ok(envs: &[(&str, &str)], args: &[&str]) -> Vec<u8> {
    let out = switchyard(envs).run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The budget's (spent, leased) as the database has them now.
fn budget(env: &[(&str, &str)]) -> (i64, i64) {
    let listed: Value =
        serde_json::from_slice(&run_ok(env, &["budgets", "list", "--json"])).unwrap();
    (
        listed[0]["spent_nano_usd"].as_i64().unwrap(),
        listed[0]["leased_nano_usd"].as_i64().unwrap(),
    )
}

fn call(url: &str, key: &str) -> u16 {
    reqwest::blocking::Client::new()
        .post(url)
        .bearer_auth(key)
        .json(&json!({"model": "fast", "max_tokens": 20,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn killed_replica_gives_its_lease_back(db: &TestDatabase) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(switchyard_testkit::fake_openai::FakeOpenAi::start());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[[models]]\nid = \"fast\"\nbase_url = \"{}\"\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("SWITCHYARD_CONFIG", config.as_str()),
        ("API_RATE_LIMIT", "100000"),
        ("BUDGET_LEASE_SECONDS", "4"),
    ];
    let created: Value = serde_json::from_slice(&run_ok(
        &env,
        &[
            "keys",
            "create",
            "--name",
            "load",
            "--project",
            "p",
            "--rate-limit",
            "100000/minute",
            "--json",
        ],
    ))
    .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    run_ok(
        &env,
        &[
            "budgets",
            "set",
            "--project",
            "p",
            "--period",
            "total",
            "--limit-usd",
            "1",
        ],
    );
    let mut doomed = switchyard(&env).serve();
    let survivor = switchyard(&env).serve();

    // Calls keep the doomed replica's lease in use (so it keeps idle
    // headroom) until it is killed.
    let stop = Arc::new(AtomicBool::new(false));
    // Calls answered 200 (the upstream's own count runs ahead of it by the
    // call in flight, which the kill cuts off).
    let answered = Arc::new(AtomicUsize::new(0));
    let load = {
        let (url, key, stop, answered) = (
            doomed.url("/v1/chat/completions"),
            key.clone(),
            stop.clone(),
            answered.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if call(&url, &key) == 200 {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(Ordering::Relaxed) < 20 {
        assert!(
            Instant::now() < deadline,
            "the doomed replica served no calls"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    doomed.kill();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let killed_at = Instant::now();
    let (_, leased) = budget(&env);
    assert!(leased > 0, "the killed replica held a lease");

    // Its headroom comes back once the lease expires (4 s), not before
    // the lease's time has passed since its last renewal.
    let back = loop {
        let (spent, leased) = budget(&env);
        if leased == 0 {
            break spent;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "the dead replica's lease never expired: {leased} still leased"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The survivor can now lease all of what is left: one call whose
    // estimate is most of the remaining budget goes through.
    let remaining = 1_000_000_000 - back;
    assert!(remaining > 0);
    // 1 USD per million tokens: one output token costs 1,000 nano-USD.
    let max_tokens = (remaining / 1000 * 9 / 10).min(1_000_000);
    let r = reqwest::blocking::Client::new()
        .post(survivor.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "fast", "max_tokens": max_tokens,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
    let (code, _, _) = survivor.stop();
    assert_eq!(code, 0);
    let (spent, leased) = budget(&env);
    assert_eq!(leased, 0, "a stopped replica gives its leases back");
    assert!(spent <= 1_000_000_000);
}

#[test]
fn a_killed_replica_gives_its_lease_back_after_expiry_on_sqlite() {
    killed_replica_gives_its_lease_back(&TestDatabase::sqlite());
}

#[test]
fn a_killed_replica_gives_its_lease_back_after_expiry_on_postgres() {
    killed_replica_gives_its_lease_back(&TestDatabase::postgres());
}
