//! The metrics contract: every metric the alert rules
//! (deploy/prometheus/alerts/switchyard.yml), the Grafana dashboard
//! (deploy/grafana/switchyard.json) and `switchyard rollout`'s thresholds
//! (crates/cli/src/rollout) read has a series on a real server driven
//! through successes, 5xx answers, a budget, a task, and the loss of its
//! database and Redis; docs/operations.md's table lists exactly the metrics
//! `/metrics` serves; the process metrics agree with `/proc`; and the
//! deployment-wide gauges (task queue, budgets) follow the database.
//!
//! Rule files are read by PyYAML in the test virtual environment
//! (`SWITCHYARD_TEST_VENV_BIN`, scripts/test.sh), as the deployment tests do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchyard_core::config::DatabaseKind;
use switchyard_testkit::{PrivatePostgres, PrivateRedis};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Metric names out of PromQL.

/// Words of PromQL that are not metric names when no `(` follows them.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
];

/// Series Prometheus makes itself for every target, not the service.
const SYNTHESIZED: &[&str] = &["up"];

/// Metrics served only when a setting this test's server leaves off turns
/// their feature on; each is checked served by its feature's own test.
/// `switchyard_tls_certificate_expiry_days`: only with `TLS_CERT_FILE`
/// (crates/cli/tests/tls.rs scrapes it over HTTPS).
const CONDITIONAL: &[&str] = &["switchyard_tls_certificate_expiry_days"];

/// `expr` with string literals emptied and the insides of `{…}` (label
/// matchers) and `[…]` (ranges) dropped.
fn strip_literals_and_matchers(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.chars();
    let mut closing: Option<char> = None;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                // A string literal: skip to its end (backslash escapes).
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' && c != '`' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
                if closing.is_none() {
                    out.push_str("\"\"");
                }
            }
            '{' | '[' if closing.is_none() => {
                out.push(c);
                closing = Some(if c == '{' { '}' } else { ']' });
            }
            _ if Some(c) == closing => {
                out.push(c);
                closing = None;
            }
            _ if closing.is_some() => {}
            _ => out.push(c),
        }
    }
    out
}

/// The identifier at the start of `s`, if any.
fn identifier(s: &str) -> &str {
    let end = s
        .char_indices()
        .find(|(i, c)| {
            !(c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                || (*i == 0 && c.is_ascii_digit())
        })
        .map_or(s.len(), |(i, _)| i);
    &s[..end]
}

/// The metric names a PromQL expression selects: identifiers that are not
/// functions or aggregations (followed by `(`), keywords, label lists of
/// `by`/`without`/`on`/`ignoring`/`group_*`, numbers or label names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let text = strip_literals_and_matchers(expr);
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    let mut skip_label_list = false;
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_digit() || (c == '.' && rest[1..].starts_with(|d: char| d.is_ascii_digit())) {
            // A number (1e9, 0.99, 0x1f) or a duration: all of it.
            let end = rest
                .char_indices()
                .find(|(_, d)| !(d.is_ascii_alphanumeric() || *d == '.' || *d == '_'))
                .map_or(rest.len(), |(i, _)| i);
            rest = &rest[end..];
            continue;
        }
        let word = identifier(rest);
        if word.is_empty() {
            if c == '(' && skip_label_list {
                // `by (a, b)`: skip the list.
                let end = rest.find(')').map_or(rest.len(), |i| i + 1);
                rest = &rest[end..];
                skip_label_list = false;
                continue;
            }
            if !c.is_whitespace() {
                skip_label_list = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        rest = &rest[word.len()..];
        let next = rest.trim_start().chars().next();
        if [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ]
        .contains(&word)
        {
            skip_label_list = true;
            continue;
        }
        skip_label_list = false;
        // An aggregation with its grouping first: `sum by (…) (…)`.
        let grouped = ["by", "without"].contains(&identifier(rest.trim_start()));
        if next == Some('(') || grouped || KEYWORDS.contains(&word) {
            continue;
        }
        names.insert(word.to_owned());
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (job, le) (rate(http_request_duration_seconds_bucket{route=~"/v1/.*", le="+Inf"}[5m])) > 5
                 and on (job) sum without (instance) (increase(x_total[$__rate_interval])) >= 1e2"#
        ),
        ["http_request_duration_seconds_bucket", "x_total"]
    );
    assert_eq!(
        names("time() - max by (exported_job) (a_seconds) > 900 unless b / ignoring(c) group_left(d) e offset 5m"),
        ["a_seconds", "b", "e"]
    );
    assert_eq!(
        names(
            r#"sum(up{job="switchyard"}) == 0 or absent(up{job="a{b}[c]"}) or histogram_quantile(0.99, sum(rate(h_bucket[1m]))) * 3600 / 1e9"#
        ),
        ["h_bucket", "up"]
    );
    assert_eq!(
        names("topk(5, count_values(\"v\", build_info))"),
        ["build_info"]
    );
}

// ---------------------------------------------------------------------------
// Where the names come from.

/// A YAML file as JSON, through PyYAML in the test virtual environment.
fn yaml(relative: &str) -> Value {
    let bin = std::env::var_os("SWITCHYARD_TEST_VENV_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/switchyard/sdk-venv/bin"));
    let python = bin.join("python");
    assert!(
        python.is_file(),
        "{} is missing: scripts/test.sh creates the virtual environment (PyYAML comes with \
         check-jsonschema), or point SWITCHYARD_TEST_VENV_BIN at one with PyYAML",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml\nwith open(sys.argv[1]) as f:\n    json.dump(yaml.safe_load(f), sys.stdout)",
        ])
        .arg(repo().join(relative))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every metric the monitoring kit reads, with who reads it.
fn required_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let mut required: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |names: BTreeSet<String>, who: String| {
        for n in names {
            required.entry(n).or_default().insert(who.clone());
        }
    };
    let rules = yaml("deploy/prometheus/alerts/switchyard.yml");
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            add(
                metric_names(rule["expr"].as_str().unwrap()),
                format!("alert {name}"),
            );
        }
    }
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/switchyard.json")).unwrap();
    fn panels(v: &Value, out: &mut Vec<(String, String)>) {
        for p in v["panels"].as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    p["title"].as_str().unwrap().to_owned(),
                    t["expr"].as_str().unwrap().to_owned(),
                ));
            }
            panels(p, out);
        }
    }
    let mut queries = Vec::new();
    panels(&dashboard, &mut queries);
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            // label_values(SELECTOR, label)
            let selector = q
                .strip_prefix("label_values(")
                .and_then(|s| s.rsplit_once(','))
                .unwrap()
                .0;
            queries.push((format!("variable {}", v["name"]), selector.to_owned()));
        }
    }
    assert!(queries.len() > 20);
    for (title, expr) in queries {
        add(metric_names(&expr), format!("dashboard panel {title:?}"));
    }
    // switchyard rollout reads samples by name from a slot's /metrics.
    let mut rollout = BTreeSet::new();
    for file in [
        "crates/cli/src/rollout/watch.rs",
        "crates/cli/src/rollout/mod.rs",
    ] {
        // String literals that start with a metric name: "http_…".
        let source = read(file);
        for (at, _) in source.match_indices("\"http_") {
            let name: String = source[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            rollout.insert(name);
        }
    }
    for expected in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_requests_in_flight",
    ] {
        assert!(
            rollout.contains(expected),
            "rollout no longer reads {expected}? found {rollout:?}"
        );
    }
    add(rollout, "switchyard rollout".into());
    for s in SYNTHESIZED.iter().chain(CONDITIONAL) {
        required.remove(*s);
    }
    required
}

// ---------------------------------------------------------------------------
// The exposition.

/// Sample name -> (labels text, value) of every sample.
fn samples(text: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut out: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match head.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (head, ""),
        };
        out.entry(name.to_owned())
            .or_default()
            .push((labels.to_owned(), value.parse().unwrap()));
    }
    out
}

/// The value of the one sample `name` whose labels contain every `labels`.
fn value(all: &BTreeMap<String, Vec<(String, f64)>>, name: &str, labels: &[&str]) -> Option<f64> {
    all.get(name)?
        .iter()
        .find(|(l, _)| {
            labels
                .iter()
                .all(|want| l.split(',').any(|have| have == *want))
        })
        .map(|(_, v)| *v)
}

/// Families by their `# TYPE` line (counters under their `_total` name).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

/// The names in the first column of docs/operations.md's metrics table.
fn documented_metrics() -> BTreeSet<String> {
    let doc = read("docs/operations.md");
    let table = doc
        .split("\n| metric | type | labels | meaning |")
        .nth(1)
        .expect("docs/operations.md has a `| metric | type | labels | meaning |` table");
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cell = l.trim_start_matches('|').split('|').next().unwrap().trim();
            cell.trim_matches('`').to_owned()
        })
        .collect()
}

fn missing(required: &BTreeMap<String, BTreeSet<String>>, text: &str) -> Vec<String> {
    let have = samples(text);
    required
        .iter()
        .filter(|(name, _)| {
            !have.contains_key(*name) && !have.contains_key(&format!("{name}_bucket"))
        })
        .map(|(name, who)| {
            format!(
                "{name} (read by {})",
                who.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// /proc, read here independently of the service's own reader.

fn proc_status_bytes(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap();
    let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024.0
}

fn proc_stat_fields() -> Vec<String> {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    // Field 3 onwards.
    after.split_whitespace().map(str::to_owned).collect()
}

fn assert_near(what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: /metrics says {got}, /proc says {want} (tolerance {tolerance})"
    );
}

fn assert_process_metrics_match_proc(all: &BTreeMap<String, Vec<(String, f64)>>) {
    let get = |name: &str| value(all, name, &[]).unwrap_or_else(|| panic!("no {name}"));
    // Hard limits and start time: exact.
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft: f64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(get("process_max_fds"), soft);
    let fields = proc_stat_fields();
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = boot + fields[22 - 3].parse::<f64>().unwrap() / 100.0;
    assert_near(
        "process_start_time_seconds",
        get("process_start_time_seconds"),
        start,
        1.0,
    );
    // Moving figures: the scrape came first, so /proc is at least as far on.
    let cpu =
        (fields[14 - 3].parse::<f64>().unwrap() + fields[15 - 3].parse::<f64>().unwrap()) / 100.0;
    let scraped_cpu = get("process_cpu_seconds_total");
    assert!(
        scraped_cpu > 0.0 && scraped_cpu <= cpu + 0.01,
        "cpu {scraped_cpu} vs {cpu}"
    );
    let rss = proc_status_bytes("VmRSS");
    assert_near(
        "process_resident_memory_bytes",
        get("process_resident_memory_bytes"),
        rss,
        rss * 0.25,
    );
    let vsz = proc_status_bytes("VmSize");
    assert_near(
        "process_virtual_memory_bytes",
        get("process_virtual_memory_bytes"),
        vsz,
        vsz * 0.25,
    );
    let threads: f64 = fields[20 - 3].parse().unwrap();
    assert_near("process_threads", get("process_threads"), threads, 8.0);
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
    assert_near("process_open_fds", get("process_open_fds"), fds, 16.0);
    // The limit: the host's memory at most.
    let host = proc_meminfo_total();
    let limit = get("switchyard_memory_limit_bytes");
    assert!(
        limit > 0.0 && limit <= host,
        "memory limit {limit} vs host {host}"
    );
}

fn proc_meminfo_total() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024.0
}

// ---------------------------------------------------------------------------
// The scenario.

const CATALOG: &str = r#"
[[models]]
id = "fast"
base_url = "{openai}"
input_per_mtok = 1.0
output_per_mtok = 1.0

# Fails, and its breaker opens at the first failure.
[[models]]
id = "broken"
base_url = "{openai}"
upstream_model = "fail-500"
retries = 0
breaker_threshold = 1
breaker_cooldown_seconds = 600

# Fails once, then answers: one retry.
[[models]]
id = "flaky"
base_url = "{openai}"
upstream_model = "flaky-1"
retries = 1

# Fails, and hands the call to fast.
[[models]]
id = "covered"
base_url = "{openai}"
upstream_model = "fail-500"
retries = 0
fallbacks = ["fast"]

# One call at a time, none waiting.
[[models]]
id = "narrow"
base_url = "{openai}"
upstream_model = "sleep-1500"
max_concurrency = 1
max_queue = 0
"#;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
}

async fn wait_for_metrics(app: &TestApp, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = app.metrics().await;
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_alerts_dashboard_and_rollout_read_has_a_series_through_an_outage() {
    let required = required_metrics();
    let mut pg = PrivatePostgres::start();
    let mut redis = PrivateRedis::start();
    let app = TestApp::builder()
        .shared_url(&pg.url(), DatabaseKind::Postgres)
        .catalog(CATALOG)
        .env("REDIS_URL", &redis.url())
        .env("API_RATE_LIMIT", "100000")
        .env("DATABASE_ACQUIRE_TIMEOUT_SECONDS", "1")
        .env("SCHEDULER_LEASE_SECONDS", "2")
        .env("TASK_LEASE_SECONDS", "5")
        .env_path("TASKS_DIR", "tasks")
        .env("TASK_DEFAULT_MODEL", "fast")
        .start()
        .await;

    // A budget every call is charged to: (spent + reserved) / limit.
    let r = app
        .client
        .put(app.url("/v1/admin/budgets"))
        .bearer_auth(&app.admin)
        .json(
            &json!({"scope": "project", "subject": "proj", "period": "monthly", "limit_usd": 1.0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());

    // 2xx, a retry, a fallback.
    for model in ["fast", "fast", "flaky", "covered"] {
        let r = app.chat(chat(model)).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{model}: {}",
            r.text().await.unwrap()
        );
    }
    // 5xx: the upstream fails, then the open breaker turns the call away.
    let r = app.chat(chat("broken")).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let r = app.chat(chat("broken")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A full queue turns a call away.
    let held = {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            app.admin.clone(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&chat("narrow"))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.openai().calls("sleep-1500") == 0 {
        assert!(
            Instant::now() < deadline,
            "the held call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        app.chat(chat("narrow")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(held.await.unwrap(), StatusCode::OK);
    // A task, run by a worker.
    let r = app
        .post(
            "/v1/task",
            json!({"description": "say hello", "model": "fast", "allow_tools": ["Read"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let task: Value = r.json().await.unwrap();
    assert_eq!(task["status"], "completed", "{task}");

    // Everything the kit reads, once the monitor loop and the scheduler have
    // had their turn.
    // The ratio is refreshed on the monitor loop's own tick, which may come
    // before the call's spend is recorded: wait for a tick after it.
    let budget_ratio = |all: &BTreeMap<String, Vec<(String, f64)>>| {
        value(
            all,
            "switchyard_budget_used_ratio",
            &[
                "scope=\"project\"",
                "subject=\"proj\"",
                "period=\"monthly\"",
            ],
        )
    };
    let text = wait_for_metrics(&app, "every required metric and the budget ratio", |t| {
        missing(&required, t).is_empty() && budget_ratio(&samples(t)).is_some_and(|r| r != 0.0)
    })
    .await;
    let all = samples(&text);
    let ratio = budget_ratio(&all).unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "budget ratio {ratio}");
    assert_eq!(
        value(
            &all,
            "switchyard_tasks_finished_total",
            &["status=\"completed\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            "switchyard_tasks_finished_total",
            &["status=\"failed\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &all,
            "switchyard_upstream_calls_total",
            &["model=\"broken\"", "result=\"error\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            "switchyard_upstream_calls_total",
            &["model=\"flaky\"", "result=\"error\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            "switchyard_upstream_calls_total",
            &["model=\"flaky\"", "result=\"ok\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&all, "llm_circuit_state", &["model=\"broken\""]),
        Some(1.0)
    );
    assert!(value(
        &all,
        "http_requests_total",
        &["route=\"/v1/chat/completions\"", "status=\"502\""]
    )
    .is_some());
    assert_eq!(value(&all, "switchyard_database_up", &[]), Some(1.0));
    assert_eq!(value(&all, "switchyard_redis_up", &[]), Some(1.0));
    assert_process_metrics_match_proc(&all);

    // Every metric served is in docs/operations.md's table, and every one
    // there is served.
    let served = families(&text);
    let documented = documented_metrics();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let absent: Vec<_> = documented
        .difference(&served)
        .filter(|m| !CONDITIONAL.contains(&m.as_str()))
        .collect();
    assert!(
        undocumented.is_empty() && absent.is_empty(),
        "docs/operations.md's metrics table and /metrics differ: served but not listed {undocumented:?}; listed but not served {absent:?}"
    );

    // The database and Redis go away: the monitor loop notices by itself,
    // /metrics keeps answering promptly, and every series stays.
    pg.stop();
    redis.stop();
    let text = wait_for_metrics(&app, "the monitor loop to see the outage", |t| {
        let all = samples(t);
        value(&all, "switchyard_database_up", &[]) == Some(0.0)
            && value(&all, "switchyard_redis_up", &[]) == Some(0.0)
    })
    .await;
    let gone = missing(&required, &text);
    assert!(
        gone.is_empty(),
        "during the outage, no series for:\n{}",
        gone.join("\n")
    );
    let started = Instant::now();
    let r = app.get("/metrics", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/metrics took {:?} during the outage",
        started.elapsed()
    );
    assert_eq!(
        app.get("/db-check", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        app.get("/redis-check", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let all = samples(&app.metrics().await);
    assert_eq!(value(&all, "switchyard_database_up", &[]), Some(0.0));
    assert_eq!(value(&all, "switchyard_redis_up", &[]), Some(0.0));
    // The budget keeps its last value rather than vanishing.
    assert!(
        value(&all, "switchyard_budget_used_ratio", &["subject=\"proj\""]).is_some_and(|r| r > 0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_queue_and_budget_gauges_follow_the_database() {
    // No workers: a task stays queued.
    let app = TestApp::builder()
        .catalog("[[models]]\nid = \"fast\"\nbase_url = \"{openai}\"\n")
        .env("TASK_WORKERS", "0")
        .env_path("TASKS_DIR", "tasks")
        .start()
        .await;
    let all = samples(&app.metrics().await);
    assert_eq!(value(&all, "switchyard_tasks_queued", &[]), Some(0.0));
    assert_eq!(
        value(&all, "switchyard_task_queue_oldest_seconds", &[]),
        Some(0.0)
    );
    assert!(!all.contains_key("switchyard_budget_used_ratio"));

    let r = app
        .post(
            "/v1/task",
            json!({"description": "wait", "model": "fast", "async": true}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let task: Value = r.json().await.unwrap();
    let task_id = task["task_id"].as_str().unwrap().to_owned();
    let r = app
        .client
        .put(app.url("/v1/admin/budgets"))
        .bearer_auth(&app.admin)
        .json(
            &json!({"scope": "project", "subject": "research", "period": "daily", "limit_usd": 5.0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let budget: Value = r.json().await.unwrap();
    let queued_at = Instant::now();

    // The monitor loop (every 5 s) reports both.
    let text = wait_for_metrics(&app, "the queued task and the budget", |t| {
        let all = samples(t);
        value(&all, "switchyard_tasks_queued", &[]) == Some(1.0)
            && value(&all, "switchyard_task_queue_oldest_seconds", &[]).is_some_and(|v| v > 0.0)
            && all.contains_key("switchyard_budget_used_ratio")
    })
    .await;
    let all = samples(&text);
    let age = value(&all, "switchyard_task_queue_oldest_seconds", &[]).unwrap();
    assert!(age <= queued_at.elapsed().as_secs_f64() + 1.0, "age {age}");
    assert_eq!(
        value(
            &all,
            "switchyard_budget_used_ratio",
            &[
                "scope=\"project\"",
                "subject=\"research\"",
                "period=\"daily\""
            ]
        ),
        Some(0.0)
    );

    // Cancelled and deleted: the queue empties and the budget's series goes.
    let r = app
        .post(&format!("/v1/tasks/{task_id}/cancel"), json!({}))
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = app
        .client
        .delete(app.url(&format!(
            "/v1/admin/budgets/{}",
            budget["id"].as_str().unwrap()
        )))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    wait_for_metrics(&app, "an empty queue and no budget series", |t| {
        let all = samples(t);
        value(&all, "switchyard_tasks_queued", &[]) == Some(0.0)
            && value(&all, "switchyard_task_queue_oldest_seconds", &[]) == Some(0.0)
            && !all.contains_key("switchyard_budget_used_ratio")
    })
    .await;
    app.stop().await;
}
