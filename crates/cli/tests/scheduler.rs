//! The job scheduler across real `switchyard serve` processes over one
//! PostgreSQL database: one replica holds each job and runs it; when that
//! process is killed (SIGKILL, no chance to release anything) another takes
//! over within one lease period and a tick, and the runs go on there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::time::{Duration, Instant};
use switchyard_testkit::process::{Binary, ServerProcess};
use switchyard_testkit::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const JOB: &str = "tasks.settle_abandoned";
/// SCHEDULER_LEASE_SECONDS in this test; the scheduler ticks every quarter.
const LEASE: Duration = Duration::from_secs(2);

/// The binary with only the test's environment (see tests/cli.rs).
fn switchyard(envs: &[(&str, &str)]) -> Binary {
    Binary::new(BIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .envs(envs)
}

/// A sample of this job's series from a server's `/metrics`; 0 when absent.
fn metric(server: &ServerProcess, name: &str, extra_labels: &str) -> f64 {
    let text = reqwest::blocking::get(server.url("/metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    let series = format!("{name}{{job=\"{JOB}\"{extra_labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn is_leader(server: &ServerProcess) -> bool {
    metric(server, "switchyard_job_leader", "") == 1.0
}

fn ok_runs(server: &ServerProcess) -> f64 {
    metric(server, "switchyard_job_runs_total", ",result=\"ok\"")
}

/// Whether a replica id (`host-pid-random`) names this process.
fn is(server: &ServerProcess, replica: &str) -> bool {
    replica.contains(&format!("-{}-", server.pid()))
}

/// Polls `check` every 20 ms until it holds; fails with `what` after `within`.
fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// `switchyard jobs --json`, this job's entry.
fn jobs_entry(envs: &[(&str, &str)]) -> Value {
    let out = switchyard(envs).run(&["jobs", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == JOB)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn one_replica_runs_a_job_and_another_takes_over_when_it_is_killed() {
    let db = TestDatabase::postgres();
    let dir = tempfile::tempdir().unwrap();
    let tasks_dir = dir.path().join("tasks");
    let lease_s = LEASE.as_secs().to_string();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("TASKS_DIR", tasks_dir.to_str().unwrap()),
        ("SCHEDULER_LEASE_SECONDS", lease_s.as_str()),
        // The smallest allowed: the settle job runs every 2.5 s.
        ("TASK_LEASE_SECONDS", "5"),
    ];
    let mut servers = vec![switchyard(&env).serve(), switchyard(&env).serve()];

    // Exactly one replica holds the job and runs it, again and again.
    wait_for(
        "one replica to run the job twice",
        Duration::from_secs(20),
        || servers.iter().any(|s| is_leader(s) && ok_runs(s) >= 2.0),
    );
    let holder = usize::from(!is_leader(&servers[0]));
    let other = 1 - holder;
    assert!(is_leader(&servers[holder]) && !is_leader(&servers[other]));
    assert_eq!(ok_runs(&servers[other]), 0.0, "only the holder runs it");
    let entry = jobs_entry(&env);
    let replica = entry["holder"].as_str().unwrap().to_owned();
    assert!(is(&servers[holder], &replica), "{entry}");
    assert_eq!(entry["lease_valid"], true, "{entry}");
    assert_eq!(entry["interval_seconds"], 2.5, "{entry}");
    assert!(entry["runs"].as_i64().unwrap() >= 2, "{entry}");

    // SIGKILL: the lease is left to expire, and the other replica takes
    // the job over within a lease and one tick (a quarter lease).
    let mut killed = servers.remove(holder);
    killed.kill();
    let survivor = &servers[0];
    let takeover = wait_for(
        "the other replica to take the job over",
        Duration::from_secs(15),
        || is_leader(survivor),
    );
    eprintln!("takeover after SIGKILL: {} ms", takeover.as_millis());
    assert!(
        takeover <= LEASE + LEASE / 4 + Duration::from_millis(750),
        "took {takeover:?}; stderr:\n{}",
        survivor.stderr()
    );
    // Its runs go on there.
    wait_for(
        "the new holder to run the job twice",
        Duration::from_secs(15),
        || ok_runs(survivor) >= 2.0,
    );
    let entry = jobs_entry(&env);
    let replica = entry["holder"].as_str().unwrap().to_owned();
    assert!(is(survivor, &replica), "{entry}");
    assert_eq!(entry["last_holder"], replica.as_str(), "{entry}");
    assert_eq!(entry["failures"], 0, "{entry}");

    // A graceful stop releases the lease.
    let survivor = servers.remove(0);
    let (code, _, stderr) = survivor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(jobs_entry(&env)["holder"], Value::Null);
}
