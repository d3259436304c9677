//! The resource limits of Bash commands, tried as a hostile task would: a
//! memory hog, a fork bomb, a disk filler, a busy loop, a /tmp filler and a
//! file too large each end with a clear result naming the cap, other
//! commands run meanwhile are unaffected, and nothing is left running.
//!
//! Every hostile command is bounded by the test itself as well (a fork bomb
//! of at most 2^9 processes, sizes of a few hundred MiB, short timeouts), so
//! that a cap that fails makes the test fail, not the machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use switchyard_agent::limits::{disk_usage, ResourceLimits};
use switchyard_agent::sandbox::{run_bash, BashPolicy, BashResult};
use switchyard_agent::Workspace;

const MIB: u64 = 1024 * 1024;
/// The user commands run as when the tests run as root (root is exempt
/// from the process cap).
const NOBODY: (u32, u32) = (65534, 65534);

fn limits() -> ResourceLimits {
    ResourceLimits {
        memory_mb: 256,
        processes: 64,
        cpu_seconds: 30,
        file_size_mb: 512,
        workspace_mb: 64,
        open_files: 256,
    }
}

/// A workspace any user can reach (a temporary directory is private to its
/// owner, and commands may run as `nobody`).
struct Ws {
    _dir: tempfile::TempDir,
    ws: Workspace,
}

fn workspace() -> Ws {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ws = Workspace::create(&dir.path().join("ws")).unwrap();
    Ws { _dir: dir, ws }
}

fn policy(limits: ResourceLimits) -> BashPolicy {
    let p = BashPolicy::detect(false)
        .with_limits(limits)
        .running_as(Some(NOBODY));
    assert!(p.sandboxed(), "bubblewrap (bwrap) must be installed");
    assert!(
        p.prlimit.is_some() && p.setpriv.is_some(),
        "prlimit and setpriv (util-linux) must be installed"
    );
    p
}

async fn run(ws: &Ws, p: &BashPolicy, cmd: &str, timeout: Duration) -> BashResult {
    run_bash(&ws.ws, p, cmd, timeout).await.unwrap()
}

/// The processes whose command line contains `marker`.
fn running_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn every_cap_is_in_force_here() {
    let e = policy(limits()).enforcement();
    for (name, cap) in [
        ("memory", &e.memory),
        ("processes", &e.processes),
        ("cpu_time", &e.cpu_time),
        ("file_size", &e.file_size),
        ("workspace", &e.workspace),
        ("open_files", &e.open_files),
    ] {
        assert!(cap.enforced, "{name}: {}", cap.by);
    }
    assert!(
        e.processes.by.contains("user namespace"),
        "{}",
        e.processes.by
    );
    // Without a sandbox the process cap would count the service's own
    // processes: it is not applied, and that is said.
    let bare = BashPolicy {
        bwrap: None,
        allow_unsandboxed: true,
        ..policy(limits())
    };
    let e = bare.enforcement();
    assert!(!e.processes.enforced && e.processes.by.contains("without a sandbox"));
    assert!(e.memory.enforced);
}

#[tokio::test]
async fn a_memory_hog_fails_on_the_memory_cap() {
    let ws = workspace();
    let p = policy(ResourceLimits {
        memory_mb: 64,
        ..limits()
    });
    // Tries to hold 300 MB in one shell variable.
    let r = run(
        &ws,
        &p,
        "a=$(head -c 300000000 /dev/zero | tr '\\0' x); echo ${#a}",
        Duration::from_secs(60),
    )
    .await;
    let view = r.for_model();
    assert_ne!(r.exit_code, Some(0), "{view}");
    assert!(!r.timed_out, "{view}");
    assert!(
        view.contains("[resource limit: a process reached the memory limit (64 MiB per process)]"),
        "{view}"
    );
    // The same command fits under a larger cap.
    let ok = run(
        &ws,
        &policy(limits()),
        "a=$(head -c 3000000 /dev/zero | tr '\\0' x); echo ${#a}",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&ok.output), "3000000\n");
    assert_eq!(ok.limit, None);
}

#[tokio::test]
async fn a_busy_loop_is_stopped_by_the_cpu_cap() {
    let ws = workspace();
    let p = policy(ResourceLimits {
        cpu_seconds: 1,
        ..limits()
    });
    let started = Instant::now();
    let r = run(&ws, &p, "while :; do :; done", Duration::from_secs(30)).await;
    let view = r.for_model();
    assert!(
        !r.timed_out,
        "the CPU cap, not the timeout, ends it: {view}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{view}");
    assert_eq!(r.exit_code, Some(152), "SIGXCPU: {view}");
    assert!(
        view.contains("[resource limit: the CPU time limit (1 s per process) was reached]"),
        "{view}"
    );
}

#[tokio::test]
async fn a_disk_filler_is_killed_at_the_workspace_quota() {
    let ws = workspace();
    let p = policy(ResourceLimits {
        workspace_mb: 32,
        file_size_mb: 400,
        ..limits()
    });
    // Writes up to 400 MiB (the file size cap); the quota is 32 MiB.
    let started = Instant::now();
    let r = run(
        &ws,
        &p,
        "head -c 400M /dev/zero > fill; echo done",
        Duration::from_secs(60),
    )
    .await;
    let view = r.for_model();
    let size = std::fs::metadata(ws.ws.root().join("fill")).unwrap().len();
    println!(
        "workspace quota 32 MiB: the filler was stopped at {} MiB after {:?}",
        size / MIB,
        started.elapsed()
    );
    assert!(!r.timed_out && !view.contains("done"), "{view}");
    assert!(
        view.contains("[resource limit: killed: the workspace grew past its quota of 32 MiB"),
        "{view}"
    );
    assert!(size > 32 * MIB, "killed only past the quota: {size}");
    assert!(size < 400 * MIB, "killed before the end: {size}");
    // Over quota, a command may still shrink the workspace (never grow it).
    let r = run(&ws, &p, "rm fill; echo removed", Duration::from_secs(10)).await;
    assert_eq!(String::from_utf8_lossy(&r.output), "removed\n");
    assert!(disk_usage(ws.ws.root(), u64::MAX) < MIB);
}

#[tokio::test]
async fn tmp_and_single_files_are_capped_too() {
    let ws = workspace();
    let p = policy(ResourceLimits {
        workspace_mb: 16,
        file_size_mb: 2,
        ..limits()
    });
    let r = run(
        &ws,
        &p,
        "head -c 3M /dev/zero > big",
        Duration::from_secs(20),
    )
    .await;
    let view = r.for_model();
    assert_eq!(
        std::fs::metadata(ws.ws.root().join("big")).unwrap().len(),
        2 * MIB
    );
    assert!(
        view.contains("[resource limit: a file reached the file size limit (2 MiB)]"),
        "{view}"
    );
    // /tmp is a tmpfs of the quota's size, not the host's memory.
    let p = policy(ResourceLimits {
        workspace_mb: 8,
        ..limits()
    });
    let r = run(
        &ws,
        &p,
        "head -c 100M /dev/zero > /tmp/fill; du -m /tmp/fill",
        Duration::from_secs(20),
    )
    .await;
    let view = r.for_model();
    assert!(view.contains("No space left on device"), "{view}");
    assert!(view.contains("8\t/tmp/fill"), "{view}");
}

#[tokio::test]
async fn a_fork_bomb_hits_the_process_cap_and_leaves_nothing_running() {
    let bomb_ws = workspace();
    let other_ws = workspace();
    let p = policy(ResourceLimits {
        processes: 32,
        ..limits()
    });
    let marker = format!("forkbomb{}", std::process::id());
    // A binary tree of depth 8: at most 2^9 processes even with no cap at
    // all; each node also runs a `sleep` named after the marker.
    let bomb = format!(
        "b() {{ if [ $1 -gt 0 ]; then b $(($1-1)) & b $(($1-1)) & fi; (exec -a {marker} sleep 20); }}; b 8"
    );
    let bombing = tokio::spawn({
        let p = p.clone();
        async move {
            let r = run(&bomb_ws, &p, &bomb, Duration::from_secs(8)).await;
            (r, bomb_ws)
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Meanwhile another task (the same user, its own namespace) still starts
    // its processes, and so does the service.
    let other = run(
        &other_ws,
        &p,
        "for i in $(seq 20); do sleep 0.2 & done; wait; echo other-ok",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&other.output),
        "other-ok\n",
        "{}",
        other.for_model()
    );
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    let (r, _ws) = bombing.await.unwrap();
    let view = r.for_model();
    assert!(
        view.contains(
            "[resource limit: the command reached its process limit (32 processes and threads)]"
        ),
        "{view}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(running_with(&marker), Vec::<String>::new(), "left running");
}
