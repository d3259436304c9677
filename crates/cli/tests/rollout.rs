//! Rollouts against real processes: two `switchyard serve` slots on one
//! PostgreSQL and Redis, behind a real nginx whose upstream file
//! `switchyard rollout` rewrites, under an open-loop load of chat calls the
//! whole time. What is counted: every answer's status and the slot that
//! served it (`x-switchyard-slot`), and the usage rows in the database —
//! a switch or a restart must lose nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_testkit::fake_openai::FakeOpenAi;
use switchyard_testkit::ports::PortLease;
use switchyard_testkit::process::{Binary, Process, ServerProcess};
use switchyard_testkit::{poll_until, PrivatePostgres, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
/// The admin key both slots install (`ADMIN_API_KEY`).
const ADMIN: &str = "sy_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// Calls per second of the background load: 100 in the test suite;
/// `scripts/bench/rollout.sh` sets `SWITCHYARD_ROLLOUT_RATE` (500) and runs
/// release builds.
fn rate() -> u64 {
    std::env::var("SWITCHYARD_ROLLOUT_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| (1..=5000).contains(r))
        .unwrap_or(100)
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("nginx is not installed (Debian package nginx; scripts/test.sh installs it)")
}

/// A real nginx in a prefix of its own, proxying to the upstream file the
/// rollout command manages.
struct Nginx {
    prefix: tempfile::TempDir,
    port: PortLease,
    process: Process,
}

impl Nginx {
    fn config(&self) -> PathBuf {
        self.prefix.path().join("nginx.conf")
    }

    fn upstream_file(&self) -> PathBuf {
        self.prefix.path().join("upstream.conf")
    }

    fn command(&self, extra: &str) -> String {
        format!(
            "{} -p {} -c {}{extra}",
            nginx_binary().display(),
            self.prefix.path().display(),
            self.config().display()
        )
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port.port)
    }

    /// Starts nginx with `upstream` (an upstream file's text) in place.
    fn start(upstream: &str) -> Self {
        let prefix = tempfile::tempdir().unwrap();
        let port = PortLease::take();
        let p = prefix.path().display().to_string();
        std::fs::create_dir_all(prefix.path().join("tmp")).unwrap();
        std::fs::write(prefix.path().join("upstream.conf"), upstream).unwrap();
        std::fs::write(
            prefix.path().join("nginx.conf"),
            format!(
                "user root;\nworker_processes 1;\nerror_log {p}/error.log warn;\npid {p}/nginx.pid;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n\
                   client_body_temp_path {p}/tmp/body;\n  proxy_temp_path {p}/tmp/proxy;\n\
                   fastcgi_temp_path {p}/tmp/fastcgi;\n  uwsgi_temp_path {p}/tmp/uwsgi;\n\
                   scgi_temp_path {p}/tmp/scgi;\n\
                   include {p}/upstream.conf;\n\
                   server {{\n    listen 127.0.0.1:{};\n\
                     location / {{\n      proxy_pass http://switchyard_api;\n\
                       proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                       proxy_buffering off;\n      proxy_read_timeout 330s;\n\
                       proxy_next_upstream error timeout;\n    }}\n  }}\n}}\n",
                port.port
            ),
        )
        .unwrap();
        let process = Binary::new(nginx_binary()).spawn(&[
            "-p",
            &p,
            "-c",
            &format!("{p}/nginx.conf"),
            "-g",
            "daemon off;",
        ]);
        let nginx = Self {
            prefix,
            port,
            process,
        };
        poll_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", nginx.port.port))
                .map(|_| ())
                .map_err(|e| format!("nginx does not listen yet: {e}; {}", nginx.process.stderr()))
        });
        nginx
    }
}

impl Drop for Nginx {
    /// A fast shutdown through the master, which takes its workers with it
    /// (killing the master alone would leave them running).
    fn drop(&mut self) {
        self.process.terminate();
        let _ = self
            .process
            .try_wait_for(Duration::from_secs(10), |_| None::<()>);
    }
}

/// One slot: its name, its port (kept across restarts) and its process.
struct Slot {
    name: &'static str,
    port: PortLease,
    binary: Binary,
    server: Option<ServerProcess>,
}

impl Slot {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.port)
    }

    fn arg(&self) -> String {
        format!("{}={}", self.name, self.url())
    }

    fn start(&mut self) {
        let process = self
            .binary
            .clone()
            .env("PORT", self.port.port.to_string())
            .spawn(&["serve"]);
        let server = ServerProcess::start(process);
        server.wait_ready();
        self.server = Some(server);
    }

    /// SIGTERM; waits for a clean exit.
    fn stop(&mut self) {
        let server = self.server.take().unwrap();
        let (code, _, stderr) = server.stop();
        assert_eq!(code, 0, "{} did not stop cleanly:\n{stderr}", self.name);
    }
}

/// Two slots behind nginx, a fake model upstream, one database.
struct Deployment {
    rt: tokio::runtime::Runtime,
    _upstream: FakeOpenAi,
    db: TestDatabase,
    _dir: tempfile::TempDir,
    nginx: Nginx,
    slots: Vec<Slot>,
}

fn catalog(dir: &Path, name: &str, base_url: &str) -> String {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "[[models]]\nid = \"fast\"\nbase_url = \"{base_url}\"\nretries = 0\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n"
        ),
    )
    .unwrap();
    file.display().to_string()
}

impl Deployment {
    /// Blue and green started, all traffic on blue. With `broken_green`,
    /// green's model upstream cannot be reached: its chat calls fail.
    fn start(broken_green: bool) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let upstream = rt.block_on(FakeOpenAi::start());
        let db = TestDatabase::postgres();
        let dir = tempfile::tempdir().unwrap();
        let good = catalog(dir.path(), "good", &upstream.base_url());
        let broken = catalog(dir.path(), "broken", "http://127.0.0.1:9/v1");
        let redis = switchyard_testkit::redis_url();
        let slot = |name: &'static str, config: &str| {
            let binary = Binary::new(BIN).envs(&[
                ("DATABASE_URL", db.url.as_str()),
                ("REDIS_URL", redis.as_str()),
                ("SWITCHYARD_CONFIG", config),
                ("ADMIN_API_KEY", ADMIN),
                ("DEPLOYMENT_SLOT", name),
                ("API_RATE_LIMIT", "1000000"),
                ("TASK_WORKERS", "0"),
                ("LOCAL_MODEL_PRELOAD", "false"),
                ("SHUTDOWN_DELAY_SECONDS", "2"),
                ("SHUTDOWN_GRACE_SECONDS", "10"),
                ("TRUSTED_PROXIES", "127.0.0.1"),
                ("LOG_LEVEL", "warn"),
            ]);
            Slot {
                name,
                port: PortLease::take(),
                binary,
                server: None,
            }
        };
        let mut slots = vec![
            slot("blue", &good),
            slot("green", if broken_green { &broken } else { &good }),
        ];
        for s in &mut slots {
            s.start();
        }
        let nginx = Nginx::start(&format!(
            "upstream switchyard_api {{\n    server 127.0.0.1:{} max_fails=0;\n    keepalive 32;\n    keepalive_timeout 1000ms;\n}}\n",
            slots[0].port.port
        ));
        let d = Self {
            rt,
            _upstream: upstream,
            db,
            _dir: dir,
            nginx,
            slots,
        };
        // The rollout command takes over the file: everything on blue.
        std::fs::remove_file(d.nginx.upstream_file()).unwrap();
        let (code, out) = d.rollout(&["blue-green", "--to", "blue", "--window", "1"]);
        assert_eq!(code, 0, "{out}");
        d
    }

    /// Runs `switchyard rollout ARGS` against this deployment; exit code
    /// and everything it printed.
    fn rollout(&self, args: &[&str]) -> (i32, String) {
        let slots: Vec<String> = self.slots.iter().map(Slot::arg).collect();
        let upstream = self.nginx.upstream_file().display().to_string();
        let reload = self.nginx.command(" -s reload");
        let check = self.nginx.command(" -t -q");
        let mut all: Vec<&str> = vec!["rollout"];
        all.extend_from_slice(args);
        for s in &slots {
            all.extend(["--slot", s.as_str()]);
        }
        all.extend([
            "--upstream-file",
            &upstream,
            "--reload-command",
            &reload,
            "--check-command",
            &check,
            "--interval",
            "0.5",
            "--json",
        ]);
        let out = Binary::new(BIN)
            .envs(&[
                ("DATABASE_URL", self.db.url.as_str()),
                ("SWITCHYARD_VERIFY_KEY", ADMIN),
                ("LOG_LEVEL", "warn"),
            ])
            .run(&all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn usage_rows(&self) -> i64 {
        self.rt.block_on(async {
            let store = switchyard_store::Store::connect_lazy(&self.db.config()).unwrap();
            let n = store.count_usage().await.unwrap();
            store.close().await;
            n
        })
    }

    fn audit_events(&self) -> Vec<String> {
        self.rt.block_on(async {
            let store = switchyard_store::Store::connect_lazy(&self.db.config()).unwrap();
            let events = store.recent_audit(1000).await.unwrap();
            store.close().await;
            events.iter().map(|e| e.event.as_str().to_owned()).collect()
        })
    }
}

/// One call of the background load.
#[derive(Debug, Clone)]
struct Answer {
    sent: DateTime<Utc>,
    took: Duration,
    status: Option<u16>,
    slot: Option<String>,
    error: Option<String>,
    /// The first attempt's connection failed and the call was sent again.
    retried: bool,
}

/// Open-loop load: `RATE` chat calls a second through nginx, each sent on
/// schedule whether or not earlier ones have answered, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(d: &Deployment) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let url = d.nginx.url("/v1/chat/completions");
        let task = {
            let (stop, answers) = (stop.clone(), answers.clone());
            d.rt.spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate()));
                let mut calls = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (client, url, answers) = (client.clone(), url.clone(), answers.clone());
                    calls.push(tokio::spawn(async move {
                        let sent = Utc::now();
                        let clock = std::time::Instant::now();
                        let call = || {
                            client
                                .post(&url)
                                .bearer_auth(ADMIN)
                                .json(&serde_json::json!({"model": "fast",
                                    "messages": [{"role": "user", "content": "hello"}]}))
                                .send()
                        };
                        // Like the OpenAI and Anthropic SDKs (two retries by
                        // default), retries when the connection failed
                        // without any answer: an HTTP/1.1 keep-alive
                        // connection to nginx that an old worker closed as
                        // it was reused, at a reload. The client's pool can
                        // hold more than one such connection, so a retry can
                        // meet a second one. A retry that duplicated work
                        // would show as more usage rows than calls.
                        let mut retried = false;
                        let mut r = call().await;
                        for _ in 0..2 {
                            if r.is_ok() {
                                break;
                            }
                            retried = true;
                            r = call().await;
                        }
                        let answer = match r {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let slot = r
                                    .headers()
                                    .get("x-switchyard-slot")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned);
                                let body = r.text().await;
                                Answer {
                                    sent,
                                    took: clock.elapsed(),
                                    status: Some(status),
                                    slot,
                                    error: body.err().map(|e| e.to_string()),
                                    retried,
                                }
                            }
                            Err(e) => Answer {
                                sent,
                                took: clock.elapsed(),
                                status: None,
                                slot: None,
                                error: Some(e.to_string()),
                                retried,
                            },
                        };
                        answers.lock().unwrap().push(answer);
                    }));
                }
                for c in calls {
                    let _ = c.await;
                }
            })
        };
        Self {
            stop,
            answers,
            task,
        }
    }

    fn finish(self, d: &Deployment) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        d.rt.block_on(self.task).unwrap();
        let mut all = self.answers.lock().unwrap().clone();
        all.sort_by_key(|a| a.sent);
        all
    }
}

/// One line of figures for the record (scripts/bench/rollout.sh collects
/// them): calls, how many were lost, client-side latency through nginx.
fn report(scenario: &str, answers: &[Answer]) {
    let mut took: Vec<f64> = answers
        .iter()
        .map(|a| a.took.as_secs_f64() * 1000.0)
        .collect();
    took.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        took.get(((took.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let lost = answers
        .iter()
        .filter(|a| a.status != Some(200) || a.error.is_some())
        .count();
    let retried = answers.iter().filter(|a| a.retried).count();
    eprintln!(
        "ROLLOUT {scenario}: rate {}/s, {} calls, {lost} not answered 200, {retried} retried after a closed keep-alive connection, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        rate(),
        answers.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

/// Fails unless every call was answered 200 (a lost request is any other
/// status or a connection error).
fn assert_nothing_lost(answers: &[Answer]) {
    let lost: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status != Some(200) || a.error.is_some())
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} calls lost, e.g. {:?}",
        lost.len(),
        answers.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
}

/// The share of `answers` sent in `[from, to)` that `slot` served, with
/// how many there were.
fn share(answers: &[Answer], slot: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> (f64, usize) {
    let window: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent >= from && a.sent < to)
        .collect();
    let served = window
        .iter()
        .filter(|a| a.slot.as_deref() == Some(slot))
        .count();
    (served as f64 / window.len().max(1) as f64, window.len())
}

/// The rollout's decisions (its `--json` lines).
fn events(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"].is_string())
        .collect()
}

fn at(event: &Value) -> DateTime<Utc> {
    event["at"].as_str().unwrap().parse().unwrap()
}

/// Waits until every answered call has its usage row.
fn assert_every_call_recorded(d: &Deployment, answered: usize) {
    poll_until(Duration::from_secs(20), || {
        let rows = d.usage_rows();
        if rows == answered as i64 {
            Ok(())
        } else {
            Err(format!("{rows} usage rows for {answered} answered calls"))
        }
    });
}

#[test]
fn a_blue_green_switch_and_a_rolling_restart_lose_nothing() {
    let mut d = Deployment::start(false);
    let load = Load::start(&d);
    std::thread::sleep(Duration::from_secs(1)); // load on blue alone first

    let (code, out) = d.rollout(&["blue-green", "--to", "green", "--window", "2"]);
    assert_eq!(code, 0, "{out}");
    let decisions = events(&out);
    let started = at(decisions.iter().find(|e| e["event"] == "started").unwrap());
    let step = decisions.iter().find(|e| e["event"] == "step").unwrap();
    assert_eq!(step["shares"], serde_json::json!({"blue": 0, "green": 100}));
    let switched = at(step);

    // A rolling restart under load, the blue/green way: the slot that takes
    // no traffic gets SIGTERM (it drains for SHUTDOWN_DELAY_SECONDS, then
    // closes) and starts again on its port; traffic moves to it; then the
    // other slot, the same way.
    d.slots[0].stop();
    d.slots[0].start();
    let (code, out) = d.rollout(&["blue-green", "--to", "blue", "--window", "1"]);
    assert_eq!(code, 0, "{out}");
    d.slots[1].stop();
    d.slots[1].start();
    std::thread::sleep(Duration::from_millis(500));
    let answers = load.finish(&d);

    report("blue/green switch and rolling restart", &answers);
    assert!(
        answers.len() as u64 >= 5 * rate(),
        "{} calls",
        answers.len()
    );
    assert_nothing_lost(&answers);
    // Before the switch blue served everything; once it had taken effect,
    // green did, until the rolling restart moved it back.
    let (blue_before, n) = share(&answers, "blue", answers[0].sent, started);
    assert!(n >= 50 && blue_before == 1.0, "{blue_before} of {n}");
    let settled = switched + chrono::Duration::milliseconds(500);
    let (green_after, n) = share(
        &answers,
        "green",
        settled,
        settled + chrono::Duration::seconds(1),
    );
    assert!(n >= 50 && green_after == 1.0, "{green_after} of {n}");
    assert_every_call_recorded(&d, answers.len());
    let audit = d.audit_events();
    for kind in ["rollout.started", "rollout.step", "rollout.completed"] {
        assert!(
            audit.iter().any(|e| e == kind),
            "{kind} not audited: {audit:?}"
        );
    }
}

#[test]
fn a_canary_steps_through_its_shares_and_ends_on_the_new_slot() {
    let mut d = Deployment::start(false);
    let load = Load::start(&d);
    let (code, out) = d.rollout(&[
        "canary",
        "--to",
        "green",
        "--steps",
        "1,5,50,100",
        "--window",
        "4",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    let answers = load.finish(&d);
    report("canary 1/5/50/100", &answers);
    assert_eq!(code, 0, "{out}");
    assert_nothing_lost(&answers);
    let decisions = events(&out);
    let steps: Vec<&Value> = decisions.iter().filter(|e| e["event"] == "step").collect();
    assert_eq!(steps.len(), 4, "{out}");
    let completed = decisions
        .iter()
        .find(|e| e["event"] == "completed")
        .unwrap();
    for (i, step) in steps.iter().enumerate() {
        let weight = step["shares"]["green"].as_f64().unwrap() / 100.0;
        // The share nginx gave green while the step held (after the reload
        // settled, until the next decision).
        let from = at(step) + chrono::Duration::milliseconds(300);
        let until = steps
            .get(i + 1)
            .map_or_else(|| at(completed), |next| at(next));
        let (measured, n) = share(&answers, "green", from, until);
        assert!(n >= 200, "step {} saw only {n} calls", i + 1);
        assert!(
            (measured - weight).abs() <= 0.02,
            "step {}: green served {:.1} % of {n} calls, its weight is {:.0} %",
            i + 1,
            measured * 100.0,
            weight * 100.0
        );
    }
    let done = at(completed) + chrono::Duration::milliseconds(300);
    let (green_after, n) = share(&answers, "green", done, Utc::now());
    assert!(n >= 20 && green_after == 1.0, "{green_after} of {n}");
    assert_every_call_recorded(&d, answers.len());

    // By hand: back to blue, then retire green. A slot that takes traffic
    // is not retired.
    let (code, out) = d.rollout(&["back"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = d.rollout(&["status"]);
    assert_eq!(code, 0, "{out}");
    let status: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        status["percent"],
        serde_json::json!({"blue": 100, "green": 0})
    );
    let models = d.nginx.url("/v1/models");
    let served_by = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let r = reqwest::blocking::Client::new()
                    .get(&models)
                    .bearer_auth(ADMIN)
                    .send()
                    .unwrap();
                r.headers()["x-switchyard-slot"]
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    // nginx applies the reload within moments of the command's return.
    poll_until(Duration::from_secs(5), || {
        let seen = served_by(10);
        if seen.iter().all(|s| s == "blue") {
            Ok(())
        } else {
            Err(format!("served by {seen:?}"))
        }
    });
    let blue_pid = d.slots[0].server.as_ref().unwrap().pid();
    let (code, out) = d.rollout(&[
        "retire",
        "blue",
        "--stop-command",
        &format!("kill -TERM {blue_pid}"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("still takes 100 %"), "{out}");
    let green_pid = d.slots[1].server.as_ref().unwrap().pid();
    let (code, out) = d.rollout(&[
        "retire",
        "green",
        "--stop-command",
        &format!("kill -TERM {green_pid}"),
    ]);
    assert_eq!(code, 0, "{out}");
    let green = d.slots[1].server.as_mut().unwrap();
    assert_eq!(
        green.wait_exit(Duration::from_secs(20)),
        0,
        "{}",
        green.stderr()
    );
    assert!(
        served_by(10).iter().all(|s| s == "blue"),
        "blue serves alone"
    );
    let audit = d.audit_events();
    for kind in ["rollout.rolled_back", "rollout.retired"] {
        assert!(
            audit.iter().any(|e| e == kind),
            "{kind} not audited: {audit:?}"
        );
    }
}

#[test]
fn a_broken_canary_is_rolled_back_within_one_window() {
    let d = Deployment::start(true);
    let load = Load::start(&d);
    let (code, out) = d.rollout(&[
        "canary",
        "--to",
        "green",
        "--window",
        "10",
        "--max-error-ratio",
        "0.01",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    let answers = load.finish(&d);
    report("broken canary rolled back", &answers);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error ratio"),
        "the breached threshold is named: {out}"
    );
    let decisions = events(&out);
    let step = decisions.iter().find(|e| e["event"] == "step").unwrap();
    let rolled_back = decisions
        .iter()
        .find(|e| e["event"] == "rolled_back")
        .unwrap();
    assert!(rolled_back["reason"]
        .as_str()
        .unwrap()
        .contains("error ratio"));
    assert_eq!(
        rolled_back["shares"],
        serde_json::json!({"blue": 100, "green": 0})
    );
    // Rolled back within one window of the first step.
    let took = at(rolled_back) - at(step);
    assert!(took < chrono::Duration::seconds(10), "took {took}");
    // Only green's calls failed, and none once traffic was back on blue.
    for a in &answers {
        if a.status != Some(200) {
            assert_eq!(a.slot.as_deref(), Some("green"), "{a:?}");
        }
    }
    let after = at(rolled_back) + chrono::Duration::milliseconds(300);
    let (blue_after, n) = share(&answers, "blue", after, Utc::now());
    assert!(n >= 50 && blue_after == 1.0, "{blue_after} of {n}");
    assert!(d.audit_events().iter().any(|e| e == "rollout.rolled_back"));
}

#[test]
fn verify_fails_against_a_slot_whose_database_is_down_naming_the_check() {
    let mut pg = PrivatePostgres::start();
    let url = pg.url();
    let server = Binary::new(BIN)
        .envs(&[
            ("DATABASE_URL", url.as_str()),
            ("ADMIN_API_KEY", ADMIN),
            ("LOCAL_MODEL_PRELOAD", "false"),
            ("DATABASE_ACQUIRE_TIMEOUT_SECONDS", "2"),
        ])
        .serve();
    let verify = |json: bool| {
        let mut args = vec!["verify", "--url", server.base_url(), "--key", ADMIN];
        if json {
            args.push("--json");
        }
        Binary::new(BIN).run(&args)
    };
    let ok = verify(false);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    pg.stop();
    let failed = verify(true);
    assert_eq!(failed.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let failing: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        failing.contains(&"database") && failing.contains(&"ready"),
        "{report}"
    );
    assert!(
        !failing.contains(&"health"),
        "the process itself is alive: {report}"
    );
}
