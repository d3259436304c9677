//! What the tests that run outside tools share: where the repository is,
//! finding a tool (from the test virtual environment or the system) with a
//! failure that names what to install, running it, reading YAML, and
//! calling a running service's API.
//!
//! The PyPI tools live in the virtual environment scripts/test.sh manages
//! (`SWITCHYARD_TEST_VENV_BIN`, default `/var/cache/switchyard/sdk-venv/bin`).

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn venv_bin() -> PathBuf {
    std::env::var_os("SWITCHYARD_TEST_VENV_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/switchyard/sdk-venv/bin"))
}

/// A command-line tool from PyPI in the test virtual environment; its
/// absence fails the test, naming the package.
pub fn venv_tool(name: &str, package: &str) -> PathBuf {
    let dir = venv_bin();
    let tool = dir.join(name);
    assert!(
        tool.is_file(),
        "`{name}` is not in {dir}: install the PyPI package with `{pip} install '{package}'` \
         (scripts/test.sh does), or point SWITCHYARD_TEST_VENV_BIN at a directory that has it",
        dir = dir.display(),
        pip = dir.join("pip").display(),
    );
    tool
}

/// A tool from the system, found on PATH; its absence fails the test with
/// `install` (what to install, and how).
pub fn system_tool(name: &str, install: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("`{name}` is not on PATH: {install}"))
}

/// The command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)))
}

/// Everything a command said, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a checker; its failure fails the test with everything it said.
pub fn check(cmd: &mut Command) -> String {
    let out = output(cmd);
    let said = text(&out);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{said}",
        describe(cmd),
        out.status
    );
    said
}

/// The YAML documents of a file, as JSON, parsed by PyYAML (a dependency of
/// check-jsonschema and kubernetes-validate) in the virtual environment.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let python = venv_tool("python", "pyyaml");
    let out = check(
        Command::new(python)
            .args([
                "-c",
                "import json, sys, yaml\n\
                 with open(sys.argv[1]) as f:\n    json.dump(list(yaml.safe_load_all(f)), sys.stdout)",
            ])
            .arg(path),
    );
    let docs: Vec<Value> = serde_json::from_str(&out).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// A file of one YAML document, as JSON.
pub fn yaml(path: &Path) -> Value {
    let mut docs = yaml_documents(path);
    assert_eq!(docs.len(), 1, "{} should hold one document", path.display());
    docs.remove(0)
}

/// `METHOD base+path` with a bearer key and an optional JSON body; fails
/// the test unless it answers 2xx; the JSON it answered (null if none).
pub fn api(base: &str, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::blocking::Client::new()
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().unwrap();
    let status = res.status();
    let body: Value = res.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    body
}
