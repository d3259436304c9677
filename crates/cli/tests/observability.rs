//! The monitoring kit, checked with the tools that will run it: the alert
//! rules (`promtool check rules`) and their unit tests (`promtool test
//! rules`), with every alert tested both firing and quiet; the Prometheus
//! configurations (`promtool check config`); Alertmanager's configuration
//! and routing (`amtool`); the Grafana dashboard's queries, compiled by
//! promtool as recording rules; and a runbook page for every alert.
//!
//! promtool comes from the Debian package `prometheus`, amtool from
//! `prometheus-alertmanager`; YAML is read by PyYAML in the virtual
//! environment scripts/test.sh manages (`SWITCHYARD_TEST_VENV_BIN`). A
//! missing tool fails its test, naming the package: nothing is skipped.
//!
//! Which metrics exist is the business of
//! crates/server/tests/metrics_contract.rs, which runs the service.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tools;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use tools::{check, deploy, output, read, repo, system_tool, text, yaml};

const PROMTOOL: &str = "install the Debian package prometheus (scripts/test.sh does)";

fn promtool() -> PathBuf {
    system_tool("promtool", PROMTOOL)
}

fn amtool() -> PathBuf {
    system_tool(
        "amtool",
        "install the Debian package prometheus-alertmanager (scripts/test.sh does)",
    )
}

fn string<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, is {v}"))
}

fn array<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} should be a list, is {v}"))
}

const RULES: &str = "prometheus/alerts/switchyard.yml";
const RULE_TESTS: &str = "prometheus/alerts/switchyard_test.yml";

/// Every alerting rule of the rules file, by name.
fn alert_rules() -> BTreeMap<String, Value> {
    let rules = yaml(&deploy(RULES));
    let mut alerts = BTreeMap::new();
    for group in array(&rules["groups"], "groups") {
        for rule in array(&group["rules"], "rules") {
            if let Some(name) = rule["alert"].as_str() {
                let previous = alerts.insert(name.to_owned(), rule.clone());
                assert!(previous.is_none(), "alert {name} is defined twice");
            }
        }
    }
    assert!(!alerts.is_empty(), "{RULES} holds no alert");
    alerts
}

// ---------------------------------------------------------------------------
// Alert rules.

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    check(
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(deploy(RULES)),
    );
    // Run from the rules' folder: the test file names them relatively.
    let said = check(
        Command::new(promtool())
            .args(["test", "rules", "switchyard_test.yml"])
            .current_dir(deploy("prometheus/alerts")),
    );
    assert!(said.contains("SUCCESS"), "{said}");
}

/// The alerts of `alerts` that `tests` (a `promtool test rules` file) does
/// not both fire (a case with expected alerts) and keep quiet (a case
/// expecting none), and the alert names the tests use that are no alert.
fn untested_alerts(alerts: &BTreeSet<String>, tests: &Value) -> Vec<String> {
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut problems = Vec::new();
    for test in tests["tests"].as_array().into_iter().flatten() {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap_or_default().to_owned();
            if !alerts.contains(&name) {
                problems.push(format!("the tests name {name:?}, which is no alert"));
            }
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    for name in alerts {
        if !firing.contains(name) {
            problems.push(format!("{name} has no test whose series fire it"));
        }
        if !quiet.contains(name) {
            problems.push(format!(
                "{name} has no test whose series must leave it quiet"
            ));
        }
    }
    problems
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let alerts: BTreeSet<String> = alert_rules().into_keys().collect();
    let tests = yaml(&deploy(RULE_TESTS));
    assert_eq!(
        array(&tests["rule_files"], "rule_files"),
        &vec![Value::from("switchyard.yml")],
        "{RULE_TESTS} tests switchyard.yml"
    );
    let problems = untested_alerts(&alerts, &tests);
    assert!(
        problems.is_empty(),
        "{RULE_TESTS}:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_coverage_check_finds_an_alert_tested_one_way_only() {
    let alerts: BTreeSet<String> = ["A", "B"].map(String::from).into();
    let tests = serde_json::json!({"tests": [
        {"alert_rule_test": [
            {"alertname": "A", "exp_alerts": [{"exp_labels": {}}]},
            {"alertname": "A", "exp_alerts": []},
            {"alertname": "B", "exp_alerts": [{"exp_labels": {}}]},
            {"alertname": "C"}
        ]}
    ]});
    assert_eq!(
        untested_alerts(&alerts, &tests),
        [
            "the tests name \"C\", which is no alert",
            "B has no test whose series must leave it quiet"
        ]
    );
}

/// The repository's address, from the workspace's Cargo.toml.
fn repository_url() -> String {
    read(&repo().join("Cargo.toml"))
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("the workspace Cargo.toml names its repository")
}

#[test]
fn every_alert_has_a_severity_its_annotations_and_a_runbook_page() {
    let base = format!("{}/blob/main/", repository_url());
    let index = read(&repo().join("docs/runbooks/README.md"));
    let mut problems = Vec::new();
    for (name, rule) in alert_rules() {
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        if !["critical", "warning"].contains(&severity) {
            problems.push(format!(
                "{name}: severity {severity:?} is not critical or warning"
            ));
        }
        for annotation in ["summary", "description", "runbook_url"] {
            if rule["annotations"][annotation]
                .as_str()
                .is_none_or(|a| a.trim().is_empty())
            {
                problems.push(format!("{name}: no {annotation}"));
            }
        }
        let Some(url) = rule["annotations"]["runbook_url"].as_str() else {
            continue;
        };
        let Some(path) = url.strip_prefix(&base) else {
            problems.push(format!("{name}: runbook_url {url} is not under {base}"));
            continue;
        };
        let expected = format!("docs/runbooks/{name}.md");
        if path != expected {
            problems.push(format!("{name}: runbook_url names {path}, not {expected}"));
        }
        let page = repo().join(path);
        match std::fs::read_to_string(&page) {
            Err(e) => problems.push(format!("{name}: runbook {path}: {e}")),
            Ok(text) => {
                if !text
                    .lines()
                    .next()
                    .is_some_and(|l| l.starts_with("# ") && l.contains(&name))
                {
                    problems.push(format!("{path} does not open with a title naming {name}"));
                }
                for section in ["## Symptoms", "## Diagnose", "## Mitigate", "## Escalate"] {
                    if !text.contains(section) {
                        problems.push(format!("{path} has no {section} section"));
                    }
                }
            }
        }
        if !index.contains(&format!("({name}.md)")) {
            problems.push(format!("docs/runbooks/README.md does not link {name}.md"));
        }
    }
    // The index links only pages that exist.
    for link in index.split("](").skip(1) {
        let target = link.split(')').next().unwrap_or_default();
        if !target.contains("://") && !target.starts_with('#') {
            let file = target.split('#').next().unwrap_or_default();
            if !repo().join("docs/runbooks").join(file).exists() {
                problems.push(format!(
                    "docs/runbooks/README.md links {target}, which does not exist"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// Prometheus configuration.

fn job<'a>(config: &'a Value, name: &str, file: &str) -> &'a Value {
    array(&config["scrape_configs"], "scrape_configs")
        .iter()
        .find(|j| j["job_name"] == name)
        .unwrap_or_else(|| panic!("{file} has no scrape job {name}"))
}

/// `promtool check config` on prometheus.yml. Debian builds Prometheus
/// without Kubernetes service discovery, so where its promtool refuses
/// `kubernetes_sd_configs` the file is checked again with that block in
/// file_sd_configs' place (every other line, the relabelling included, still
/// passes promtool); the Kubernetes block itself is checked against the
/// manifests by the caller either way.
fn check_reference_config(path: &Path) {
    let out = output(Command::new(promtool()).args(["check", "config"]).arg(path));
    if out.status.success() {
        return;
    }
    let said = text(&out);
    assert!(
        said.contains("field kubernetes_sd_configs not found"),
        "promtool check config {} failed:\n{said}",
        path.display()
    );
    let mut config = yaml(path);
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.json");
    std::fs::write(&targets, "[]").unwrap();
    for job in config["scrape_configs"].as_array_mut().unwrap() {
        if let Some(sd) = job.as_object_mut().unwrap().remove("kubernetes_sd_configs") {
            assert!(sd.is_array());
            job["file_sd_configs"] = serde_json::json!([{"files": [targets]}]);
        }
    }
    let base = path.parent().unwrap();
    for rule_file in config["rule_files"].as_array_mut().unwrap() {
        *rule_file = Value::from(
            base.join(string(rule_file, "rule file"))
                .display()
                .to_string(),
        );
    }
    let copy = dir.path().join("prometheus.json");
    std::fs::write(&copy, config.to_string()).unwrap();
    check(
        Command::new(promtool())
            .args(["check", "config"])
            .arg(&copy),
    );
}

#[test]
fn the_prometheus_configurations_pass_promtool_and_agree() {
    let reference_path = deploy("prometheus/prometheus.yml");
    let compose_path = deploy("prometheus/prometheus-compose.yml");
    check_reference_config(&reference_path);
    check(
        Command::new(promtool())
            .args(["check", "config"])
            .arg(&compose_path),
    );
    let reference = yaml(&reference_path);
    let compose = yaml(&compose_path);
    for key in ["global", "alerting", "rule_files"] {
        assert_eq!(
            reference[key], compose[key],
            "prometheus.yml and prometheus-compose.yml differ in {key}"
        );
    }
    assert_eq!(
        reference["rule_files"],
        serde_json::json!(["alerts/switchyard.yml"])
    );

    // The static example scrapes the systemd slots' ports.
    let fixed = job(&reference, "switchyard", "prometheus.yml");
    let targets: Vec<&str> = array(&fixed["static_configs"], "static_configs")
        .iter()
        .flat_map(|c| array(&c["targets"], "targets"))
        .map(|t| string(t, "target"))
        .collect();
    for port in [":8001", ":8002"] {
        assert!(
            targets.iter().any(|t| t.ends_with(port)),
            "the static example has no slot on {port}: {targets:?}"
        );
    }

    // Kubernetes: the Service of deploy/kubernetes, in its namespace, its
    // port by name, the targets relabelled to job="switchyard".
    let kube = job(&reference, "switchyard-kubernetes", "prometheus.yml");
    let sd = &array(&kube["kubernetes_sd_configs"], "kubernetes_sd_configs")[0];
    assert_eq!(sd["role"], "endpoints");
    let namespace = yaml(&deploy("kubernetes/kustomization.yaml"))["namespace"].clone();
    assert!(
        array(&sd["namespaces"]["names"], "namespaces").contains(&namespace),
        "the Kubernetes job does not look in namespace {namespace}"
    );
    let service = yaml(&deploy("kubernetes/service.yaml"));
    let labels = &service["metadata"]["labels"];
    let port = string(
        &array(&service["spec"]["ports"], "ports")[0]["name"],
        "port name",
    );
    let relabel = array(&kube["relabel_configs"], "relabel_configs");
    let keep = relabel
        .iter()
        .find(|r| r["action"] == "keep")
        .expect("the Kubernetes job keeps only the API Service's endpoints");
    let sources: Vec<&str> = array(&keep["source_labels"], "source_labels")
        .iter()
        .map(|s| string(s, "source label"))
        .collect();
    let values: Vec<String> = sources
        .iter()
        .map(|s| {
            if *s == "__meta_kubernetes_endpoint_port_name" {
                port.to_owned()
            } else {
                let label = s
                    .strip_prefix("__meta_kubernetes_service_label_")
                    .unwrap_or_else(|| panic!("the keep rule reads {s}"));
                let value = labels
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| k.replace(['.', '/', '-'], "_") == label)
                    .unwrap_or_else(|| panic!("service.yaml has no label for {s}"));
                string(value.1, "label").to_owned()
            }
        })
        .collect();
    assert_eq!(
        string(&keep["regex"], "regex"),
        values.join(";"),
        "the keep rule does not match service.yaml's labels and port"
    );
    for (file, config) in [
        ("prometheus.yml", &reference),
        ("prometheus-compose.yml", &compose),
    ] {
        for scrape in array(&config["scrape_configs"], "scrape_configs") {
            let name = string(&scrape["job_name"], "job_name");
            if !name.starts_with("switchyard") {
                continue;
            }
            let relabelled = scrape["relabel_configs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["target_label"] == "job")
                .map(|r| string(&r["replacement"], "replacement"));
            assert_eq!(
                relabelled.unwrap_or(name),
                "switchyard",
                "{file}: job {name} does not label its targets job=\"switchyard\", which the alerts select"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Alertmanager.

#[test]
fn the_alertmanager_configuration_passes_amtool_and_routes_by_severity() {
    let config = deploy("alertmanager/alertmanager.yml");
    check(Command::new(amtool()).arg("check-config").arg(&config));
    let route = |labels: &[&str], receivers: &str| {
        check(
            Command::new(amtool())
                .args(["config", "routes", "test"])
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--verify.receivers={receivers}"))
                .args(labels),
        );
    };
    route(
        &["alertname=DatabaseDown", "severity=critical"],
        "on-call,team",
    );
    route(&["alertname=RedisDown", "severity=warning"], "team");
    route(&["alertname=Other"], "default-webhook");
    // Every alert reaches a person, and the inhibitions name real alerts.
    let alerts = alert_rules();
    for (name, rule) in &alerts {
        let severity = string(&rule["labels"]["severity"], "severity");
        let expected = if severity == "critical" {
            "on-call,team"
        } else {
            "team"
        };
        route(
            &[
                &format!("alertname={name}"),
                &format!("severity={severity}"),
            ],
            expected,
        );
    }
    let parsed = yaml(&config);
    for inhibit in array(&parsed["inhibit_rules"], "inhibit_rules") {
        for side in ["source_matchers", "target_matchers"] {
            for matcher in array(&inhibit[side], side) {
                let m = string(matcher, "matcher");
                let Some(names) = m
                    .strip_prefix("alertname=~")
                    .or_else(|| m.strip_prefix("alertname="))
                else {
                    continue;
                };
                for name in names.trim_matches('"').split('|') {
                    assert!(
                        alerts.contains_key(name),
                        "an inhibit rule names {name}, which is no alert"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Grafana.

/// Grafana's variables, as the queries would be sent for the last hour with
/// every replica selected.
fn substitute_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
}

/// Every `expr` of every panel's targets, with where it is.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        if let Some(panels) = v["panels"].as_array() {
            for p in panels {
                for t in p["targets"].as_array().into_iter().flatten() {
                    let title = p["title"].as_str().unwrap_or("?");
                    let id = t["refId"].as_str().unwrap_or("?");
                    out.push((
                        format!("{title} / {id}"),
                        string(&t["expr"], "expr").to_owned(),
                    ));
                }
                walk(p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

#[test]
fn the_dashboard_queries_compile_and_the_dashboard_is_provisioned() {
    let dashboard: Value = serde_json::from_str(&read(&deploy("grafana/switchyard.json"))).unwrap();
    assert_eq!(dashboard["uid"], "switchyard");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "only {} queries", queries.len());

    // Each query as a recording rule, so that promtool parses it.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (place, expr)) in queries.iter().enumerate() {
        let expr = substitute_grafana_variables(expr);
        assert!(
            !expr.contains('$'),
            "{place}: a Grafana variable is left in {expr}"
        );
        rules.push_str(&format!(
            "      - record: dashboard_query_{n}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    // The instance variable's query, as a selector.
    let variables = array(&dashboard["templating"]["list"], "templating");
    let instance = variables
        .iter()
        .find(|v| v["name"] == "instance")
        .expect("an instance variable");
    let query = string(&instance["query"]["query"], "instance query");
    let selector = query
        .strip_prefix("label_values(")
        .and_then(|q| q.rsplit_once(','))
        .map(|(s, _)| s)
        .unwrap_or_else(|| {
            panic!("the instance variable is not label_values(…, instance): {query}")
        });
    rules.push_str(&format!(
        "      - record: dashboard_instances\n        expr: {}\n",
        serde_json::to_string(selector).unwrap()
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.yml");
    std::fs::write(&file, &rules).unwrap();
    check(Command::new(promtool()).args(["check", "rules"]).arg(&file));

    // Every panel queries through the data source variable; ids are unique.
    let datasource = variables
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(datasource["query"], "prometheus");
    let mut ids = BTreeSet::new();
    let panels = array(&dashboard["panels"], "panels");
    for p in panels {
        let id = p["id"].as_u64().expect("a panel id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {}",
                p["title"]
            );
        }
    }
    for topic in [
        "latency", "error", "token", "cost", "budget", "task", "database", "redis", "memory", "cpu",
    ] {
        assert!(
            panels.iter().any(|p| p["title"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains(topic)),
            "no panel about {topic}"
        );
    }

    // Provisioning: a file provider, and the Prometheus data source.
    let provider = yaml(&deploy("grafana/provisioning/dashboards/switchyard.yaml"));
    assert_eq!(provider["apiVersion"], 1);
    let provider = &array(&provider["providers"], "providers")[0];
    assert_eq!(provider["type"], "file");
    assert!(provider["options"]["path"]
        .as_str()
        .is_some_and(|p| p.starts_with('/')));
    let sources = yaml(&deploy("grafana/provisioning/datasources/prometheus.yaml"));
    assert_eq!(sources["apiVersion"], 1);
    assert_eq!(
        array(&sources["datasources"], "datasources")[0]["type"],
        "prometheus"
    );
}
