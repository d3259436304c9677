//! The job scheduler across real `switchyard serve` processes over one
//! PostgreSQL database: one replica holds each job and runs it; when that
//! process is killed (SIGKILL, no chance to release anything) another takes
//! over within one lease period and a tick, and the runs go on there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_testkit::{free_port, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const JOB: &str = "tasks.settle_abandoned";
/// SCHEDULER_LEASE_SECONDS in this test; the scheduler ticks every quarter.
const LEASE: Duration = Duration::from_secs(2);

/// A command with only the test's environment (see tests/cli.rs).
fn switchyard(envs: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        c.env("PATH", path);
    }
    c.env("LOCAL_MODEL_PRELOAD", "false");
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

/// A running `switchyard serve`, its stderr collected as it comes.
struct Server {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let port_s = port.to_string();
        let mut all: Vec<(&str, &str)> = vec![("PORT", &port_s)];
        all.extend_from_slice(envs);
        let mut child = switchyard(&all)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let server = Self {
            child,
            port,
            stderr,
        };
        assert!(
            switchyard_testkit::wait_for_http_ok(
                &format!("http://127.0.0.1:{port}/health"),
                Duration::from_secs(30)
            ),
            "server did not become healthy; stderr:\n{}",
            server.stderr()
        );
        server
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// A sample of this job's series from `/metrics`; 0 when absent.
    fn metric(&self, name: &str, extra_labels: &str) -> f64 {
        let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .and_then(|r| r.text())
            .unwrap_or_default();
        let series = format!("{name}{{job=\"{JOB}\"{extra_labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn is_leader(&self) -> bool {
        self.metric("switchyard_job_leader", "") == 1.0
    }

    fn ok_runs(&self) -> f64 {
        self.metric("switchyard_job_runs_total", ",result=\"ok\"")
    }

    /// Whether a replica id names this process (`host-pid-random`).
    fn is(&self, replica: &str) -> bool {
        replica.contains(&format!("-{}-", self.child.id()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let sink = buf.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut b = sink.lock().unwrap();
            b.push_str(&line);
            b.push('\n');
        }
    });
    buf
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
    let out = switchyard(envs).args(["jobs", "--json"]).output().unwrap();
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
    let mut servers = vec![Server::start(&env), Server::start(&env)];

    // Exactly one replica holds the job and runs it, again and again.
    wait_for(
        "one replica to run the job twice",
        Duration::from_secs(20),
        || servers.iter().any(|s| s.is_leader() && s.ok_runs() >= 2.0),
    );
    let holder = usize::from(!servers[0].is_leader());
    let other = 1 - holder;
    assert!(servers[holder].is_leader() && !servers[other].is_leader());
    assert_eq!(servers[other].ok_runs(), 0.0, "only the holder runs it");
    let entry = jobs_entry(&env);
    let replica = entry["holder"].as_str().unwrap().to_owned();
    assert!(servers[holder].is(&replica), "{entry}");
    assert_eq!(entry["lease_valid"], true, "{entry}");
    assert_eq!(entry["interval_seconds"], 2.5, "{entry}");
    assert!(entry["runs"].as_i64().unwrap() >= 2, "{entry}");

    // SIGKILL: the lease is left to expire, and the other replica takes
    // the job over within a lease and one tick (a quarter lease).
    let mut killed = servers.remove(holder);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let survivor = &servers[0];
    let takeover = wait_for(
        "the other replica to take the job over",
        Duration::from_secs(15),
        || survivor.is_leader(),
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
        || survivor.ok_runs() >= 2.0,
    );
    let entry = jobs_entry(&env);
    let replica = entry["holder"].as_str().unwrap().to_owned();
    assert!(survivor.is(&replica), "{entry}");
    assert_eq!(entry["last_holder"], replica.as_str(), "{entry}");
    assert_eq!(entry["failures"], 0, "{entry}");

    // A graceful stop releases the lease.
    let mut survivor = servers.remove(0);
    let status = Command::new("kill")
        .args(["-TERM", &survivor.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = survivor.child.wait().unwrap().code();
    assert_eq!(code, Some(0), "{}", survivor.stderr());
    assert_eq!(jobs_entry(&env)["holder"], Value::Null);
}
