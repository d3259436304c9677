//! What one Bash command may use, and how each cap is enforced.
//!
//! * Memory (`RLIMIT_DATA`), CPU time (`RLIMIT_CPU`), file size
//!   (`RLIMIT_FSIZE`) and open files (`RLIMIT_NOFILE`) are rlimits that
//!   `prlimit` sets on the command's shell just before it execs it, so every
//!   process of the command inherits them and the service keeps its own.
//! * Processes (`RLIMIT_NPROC`) are counted by the kernel per user and per
//!   user namespace: set inside bubblewrap's fresh user namespace it counts
//!   the command's processes only, not the service's threads or another
//!   task's. Outside a sandbox, or for root (whom the kernel exempts), it
//!   cannot be enforced, and [`Enforcement`] says so.
//! * The workspace has a quota that a watcher enforces while the command
//!   runs: it measures the workspace every [`QUOTA_POLL`] and kills the
//!   command's process group once the workspace grew past it. The sandbox's
//!   `/tmp` is a tmpfs of the same size and `/dev/shm` one of the memory cap.

use serde::Serialize;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use switchyard_core::tasks::ResourceLimits;

pub(crate) const MIB: u64 = 1024 * 1024;
/// How often the watcher measures the workspace while a command runs.
pub const QUOTA_POLL: Duration = Duration::from_millis(100);

/// The `prlimit` arguments (after the program) applying `limits`; the
/// process cap only when `nproc` (the command has a user namespace of its
/// own and is not root).
pub(crate) fn prlimit_args(limits: &ResourceLimits, nproc: bool) -> Vec<OsString> {
    let cpu = limits.cpu_seconds;
    let mut args: Vec<OsString> = vec![
        format!("--data={}", limits.memory_mb.saturating_mul(MIB)).into(),
        // SIGXCPU at the limit, SIGKILL a second later if it is ignored.
        format!("--cpu={cpu}:{}", cpu.saturating_add(1)).into(),
        format!("--fsize={}", limits.file_size_mb.saturating_mul(MIB)).into(),
        format!("--nofile={}", limits.open_files).into(),
    ];
    if nproc {
        args.push(format!("--nproc={}", limits.processes).into());
    }
    args.push("--".into());
    args
}

/// Whether this process runs as root (its effective uid is 0).
pub(crate) fn service_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// One cap: whether it is in force and how, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cap {
    pub enforced: bool,
    /// The mechanism, or why the cap is not in force.
    pub by: String,
}

/// Which caps are in force on this host, for `GET /v1/capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    pub memory: Cap,
    pub processes: Cap,
    pub cpu_time: Cap,
    pub file_size: Cap,
    pub workspace: Cap,
    pub open_files: Cap,
    /// Whether per-task cgroups are used, and why not.
    pub cgroups: Cap,
}

impl Enforcement {
    /// The caps as a policy with these facts enforces them.
    pub(crate) fn of(
        prlimit: Option<&Path>,
        sandboxed: bool,
        runs_as_root: bool,
        cgroup_note: String,
    ) -> Self {
        let rlimit = |name: &str| match prlimit {
            Some(_) => Cap {
                enforced: true,
                by: format!("{name}, set by prlimit before the command's shell starts"),
            },
            None => Cap {
                enforced: false,
                by: "prlimit (util-linux) is not installed".into(),
            },
        };
        let processes = match (prlimit, sandboxed, runs_as_root) {
            (None, _, _) => rlimit("RLIMIT_NPROC"),
            (Some(_), false, _) => Cap {
                enforced: false,
                by: "without a sandbox RLIMIT_NPROC would count every process of the service's user".into(),
            },
            (Some(_), true, true) => Cap {
                enforced: false,
                by: "commands run as root, whom the kernel exempts from RLIMIT_NPROC: run the service unprivileged or set TASK_SANDBOX_USER".into(),
            },
            (Some(_), true, false) => Cap {
                enforced: true,
                by: "RLIMIT_NPROC inside the command's own user namespace (counts the command's processes and threads only)".into(),
            },
        };
        Self {
            memory: rlimit("RLIMIT_DATA (per process)"),
            processes,
            cpu_time: rlimit("RLIMIT_CPU (per process)"),
            file_size: rlimit("RLIMIT_FSIZE"),
            workspace: Cap {
                enforced: true,
                by: format!(
                    "a watcher measuring the workspace every {} ms kills the command past the quota{}",
                    QUOTA_POLL.as_millis(),
                    if sandboxed {
                        "; /tmp is a tmpfs of the quota's size"
                    } else {
                        ""
                    }
                ),
            },
            open_files: rlimit("RLIMIT_NOFILE"),
            cgroups: Cap {
                enforced: false,
                by: cgroup_note,
            },
        }
    }
}

/// Whether this host delegates a cgroup v2 subtree to the service (its
/// cgroup is writable, with the memory and pids controllers); per-task
/// cgroups are not created either way, the sentence says what was found.
pub fn cgroup_v2_note() -> String {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return "not used: the host has no cgroup v2 hierarchy".into();
    };
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !(has("memory") && has("pids")) {
        return format!(
            "not used: the service's cgroup ({}) has no memory and pids controllers (not delegated); rlimits and the workspace watcher apply instead",
            dir.display()
        );
    }
    "not used: a cgroup v2 subtree is delegated here, but per-task cgroups are not implemented yet; rlimits and the workspace watcher apply".into()
}

/// The space `dir` takes on disk (allocated blocks; symlinks not
/// followed), stopping early once it passes `stop_above`.
pub fn disk_usage(dir: &Path, stop_above: u64) -> u64 {
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total = total.saturating_add(m.blocks().saturating_mul(512));
            if m.is_dir() {
                stack.push(e.path());
            }
            if total > stop_above {
                return total;
            }
        }
    }
    total
}

/// Hands every entry of `dir` not owned by `uid` to `uid:gid` (symlinks
/// themselves, not their targets), so that a command run as that user can
/// change what the service wrote.
pub(crate) fn hand_over(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    if std::fs::symlink_metadata(dir)?.uid() != uid {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    }
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.uid() != uid {
                std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))?;
            }
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

/// Watches a workspace while a command runs: past `threshold` bytes it
/// records the size it saw and calls `stop_it` (which kills the command's
/// process group, or ends a CLI run). Stops when dropped.
pub(crate) struct QuotaWatcher {
    stop: Arc<AtomicBool>,
    exceeded: Arc<AtomicU64>,
}

impl QuotaWatcher {
    pub(crate) fn start(
        dir: PathBuf,
        threshold: u64,
        stop_it: impl FnOnce() + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let exceeded = Arc::new(AtomicU64::new(0));
        let (s, x) = (stop.clone(), exceeded.clone());
        let spawned = std::thread::Builder::new()
            .name("workspace-quota".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    let used = disk_usage(&dir, threshold);
                    if used > threshold {
                        if !s.load(Ordering::Acquire) {
                            x.store(used, Ordering::Release);
                            stop_it();
                        }
                        return;
                    }
                    std::thread::sleep(QUOTA_POLL);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the workspace quota watcher");
        }
        Self { stop, exceeded }
    }

    /// The workspace's size when the watcher killed the command, if it did.
    pub(crate) fn exceeded(&self) -> Option<u64> {
        Some(self.exceeded.load(Ordering::Acquire)).filter(|&b| b > 0)
    }
}

impl Drop for QuotaWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// What a run killed for growing its workspace past `quota_mb` reports,
/// `used` bytes being the workspace's size when stopped.
pub(crate) fn over_quota(quota_mb: u64, used: u64) -> String {
    format!(
        "killed: the workspace grew past its quota of {quota_mb} MiB ({} MiB when stopped)",
        used / MIB
    )
}

/// Which cap most likely stopped a command, from how it ended and what it
/// printed; `None` when nothing points at one.
pub(crate) fn explain(
    limits: &ResourceLimits,
    exit_code: Option<i32>,
    output: &[u8],
) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let said = |needle: &str| text.contains(needle);
    match exit_code {
        Some(152) => {
            return Some(format!(
                "the CPU time limit ({} s per process) was reached",
                limits.cpu_seconds
            ))
        }
        Some(153) => {
            return Some(format!(
                "a file reached the file size limit ({} MiB)",
                limits.file_size_mb
            ))
        }
        _ => {}
    }
    if said("fork: retry") || said("fork: Resource temporarily unavailable") {
        Some(format!(
            "the command reached its process limit ({} processes and threads)",
            limits.processes
        ))
    } else if said("File size limit exceeded") || said("File too large") {
        Some(format!(
            "a file reached the file size limit ({} MiB)",
            limits.file_size_mb
        ))
    } else if said("CPU time limit exceeded") {
        Some(format!(
            "the CPU time limit ({} s per process) was reached",
            limits.cpu_seconds
        ))
    } else if said("Cannot allocate memory")
        || said("cannot allocate")
        || said("MemoryError")
        || said("out of memory")
    {
        Some(format!(
            "a process reached the memory limit ({} MiB per process)",
            limits.memory_mb
        ))
    } else if said("Too many open files") {
        Some(format!(
            "a process reached the open files limit ({})",
            limits.open_files
        ))
    } else if said("No space left on device") {
        Some(format!(
            "/tmp (or /dev/shm) is full: it holds at most {} MiB",
            limits.workspace_mb
        ))
    } else {
        None
    }
}
