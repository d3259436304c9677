//! The tasks section: agent task workers, their leases, workspaces and
//! retention, the default model, the Bash sandbox, and where sub-agents and
//! skills are defined; and the lease of the service's scheduled jobs.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
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
    }
}
