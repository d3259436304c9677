//! The tasks section: agent task workers, their leases, workspaces and
//! retention, the default model, the Bash sandbox and the resource limits of
//! its commands, and where sub-agents and skills are defined; and the lease
//! of the service's scheduled jobs.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::tasks::ResourceLimits;
use std::path::PathBuf;
use std::time::Duration;

declare_settings! { Section::Tasks;
    TASK_WORKERS: value("2"),
        "Agent tasks this replica runs at once (0: none; the API still queues them for other replicas).";
    TASK_LEASE_SECONDS: value("30"),
        "A worker's claim on a task; a dead worker's task is retried after it.";
    TASKS_DIR: value("./data/tasks"),
        "Where task workspaces live.";
    TASK_RETENTION_HOURS: value("168"),
        "How long a finished task's workspace is kept.";
    TASK_DEFAULT_MODEL: value("auto"),
        "The model of tasks that name none.";
    ALLOW_UNSANDBOXED_BASH: value("false"),
        "Run the Bash tool without bubblewrap when it is missing.";
    AGENTS_DIR: value("./agents"),
        "Sub-agent definitions (*.md with frontmatter).";
    SKILLS_DIR: value("./skills"),
        "Skills (<name>/SKILL.md).";
    SCHEDULER_LEASE_SECONDS: value("30"),
        "A replica's lease on a scheduled job (2–3600); a dead replica's jobs are taken over after it.";
    TASK_MEMORY_MB: value("2048"),
        "Memory each process of a Bash command may allocate, MiB (16–1048576); a key's task profile may lower it.";
    TASK_MAX_PROCESSES: value("256"),
        "Processes and threads a Bash command may have at once (8–65536); a key's task profile may lower it.";
    TASK_CPU_SECONDS: value("300"),
        "CPU seconds each process of a Bash command may use (1–86400); a key's task profile may lower it.";
    TASK_FILE_SIZE_MB: value("1024"),
        "The largest file a Bash command may write, MiB (1–1048576); a key's task profile may lower it.";
    TASK_WORKSPACE_MB: value("2048"),
        "A task's workspace (and its /tmp), MiB (1–1048576); a command growing it past this is killed. A key's task profile may lower it.";
    TASK_OPEN_FILES: value("1024"),
        "Files each process of a Bash command may hold open (16–1048576); a key's task profile may lower it.";
    TASK_SANDBOX_USER: optional,
        "uid:gid that Bash commands run as when the service runs as root (root is exempt from the process cap and reads every file); TASKS_DIR must be reachable by it.";
}

/// Agent task settings.
#[derive(Debug, Clone)]
pub struct TasksConfig {
    /// Tasks this replica runs at once (`TASK_WORKERS`; 0: none, the API
    /// still queues them for other replicas).
    pub workers: u32,
    /// How long a worker's claim on a task lasts without renewal
    /// (`TASK_LEASE_SECONDS`); a dead worker's task is taken over after it.
    pub lease: Duration,
    /// Where task workspaces live (`TASKS_DIR`).
    pub dir: PathBuf,
    /// Run Bash without a sandbox when bubblewrap is missing
    /// (`ALLOW_UNSANDBOXED_BASH`).
    pub allow_unsandboxed_bash: bool,
    /// The model tasks use when the request names none (`TASK_DEFAULT_MODEL`).
    pub default_model: String,
    /// How long a finished task's workspace (its artifacts) is kept
    /// (`TASK_RETENTION_HOURS`).
    pub retention: Duration,
    /// Sub-agent definitions, `*.md` (`AGENTS_DIR`).
    pub agents_dir: PathBuf,
    /// Skills, `<name>/SKILL.md` (`SKILLS_DIR`).
    pub skills_dir: PathBuf,
    /// How long a replica's lease on a scheduled job lasts without renewal
    /// (`SCHEDULER_LEASE_SECONDS`); another replica takes a dead one's jobs
    /// over after it.
    pub scheduler_lease: Duration,
    /// Each Bash command's limits before a key's task profile lowers them
    /// (`TASK_MEMORY_MB`, `TASK_MAX_PROCESSES`, `TASK_CPU_SECONDS`,
    /// `TASK_FILE_SIZE_MB`, `TASK_WORKSPACE_MB`, `TASK_OPEN_FILES`).
    pub limits: ResourceLimits,
    /// The uid and gid Bash commands run as when the service runs as root
    /// (`TASK_SANDBOX_USER`).
    pub sandbox_user: Option<(u32, u32)>,
}

/// `uid:gid`, both numbers, neither 0.
fn parse_user(raw: &str) -> Result<(u32, u32), String> {
    let expect = "expected uid:gid, two numbers above 0 (e.g. 65534:65534)";
    let (uid, gid) = raw
        .split_once(':')
        .ok_or_else(|| format!("`{raw}` is not valid: {expect}"))?;
    match (uid.trim().parse::<u32>(), gid.trim().parse::<u32>()) {
        (Ok(u), Ok(g)) if u > 0 && g > 0 => Ok((u, g)),
        _ => Err(format!("`{raw}` is not valid: {expect}")),
    }
}

pub(super) fn load(r: &mut Reader<'_>) -> TasksConfig {
    TasksConfig {
        workers: r.integer(&TASK_WORKERS, 0, 256) as u32,
        lease: r.seconds(&TASK_LEASE_SECONDS, 5, 3600),
        dir: r.path(&TASKS_DIR),
        retention: Duration::from_secs(3600 * r.integer(&TASK_RETENTION_HOURS, 0, 24 * 3650)),
        default_model: r.text(&TASK_DEFAULT_MODEL),
        allow_unsandboxed_bash: r.flag(&ALLOW_UNSANDBOXED_BASH),
        agents_dir: r.path(&AGENTS_DIR),
        skills_dir: r.path(&SKILLS_DIR),
        scheduler_lease: r.seconds(&SCHEDULER_LEASE_SECONDS, 2, 3600),
        limits: ResourceLimits {
            memory_mb: r.integer(&TASK_MEMORY_MB, 16, 1 << 20),
            processes: r.integer(&TASK_MAX_PROCESSES, 8, 65536),
            cpu_seconds: r.integer(&TASK_CPU_SECONDS, 1, 86400),
            file_size_mb: r.integer(&TASK_FILE_SIZE_MB, 1, 1 << 20),
            workspace_mb: r.integer(&TASK_WORKSPACE_MB, 1, 1 << 20),
            open_files: r.integer(&TASK_OPEN_FILES, 16, 1 << 20),
        },
        sandbox_user: r
            .parse_with(&TASK_SANDBOX_USER, |raw| {
                parse_user(raw).map(|(u, g)| UserId(u, g))
            })
            .map(|UserId(u, g)| (u, g)),
    }
}

/// A uid and gid, shown as `uid:gid`.
struct UserId(u32, u32);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_user;

    #[test]
    fn the_sandbox_user_is_two_numbers_above_zero() {
        assert_eq!(parse_user("65534:65534"), Ok((65534, 65534)));
        assert_eq!(parse_user(" 10001 : 10002 "), Ok((10001, 10002)));
        for bad in ["0:0", "nobody", "1:", ":1", "1:x", "-1:2"] {
            assert!(parse_user(bad).unwrap_err().contains("uid:gid"), "{bad}");
        }
    }
}
