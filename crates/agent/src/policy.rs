//! How a task's programs may run on this host: [`BashPolicy`] (bubblewrap,
//! `prlimit`, `setpriv` when present, the folders hidden and files masked,
//! the caps, the user commands run as) and whether the sandbox works here
//! ([`SandboxStatus`]).

use crate::limits::{self, Enforcement, ResourceLimits};
use std::path::PathBuf;

/// How Bash may run.
#[derive(Debug, Clone)]
pub struct BashPolicy {
    /// The bubblewrap executable, when present.
    pub bwrap: Option<PathBuf>,
    /// Run commands without a sandbox when bubblewrap is missing.
    pub allow_unsandboxed: bool,
    /// Directories the sandbox hides behind an empty tmpfs (other tasks'
    /// workspaces, the service's data directory, secret files' folders).
    /// The task's own workspace is mounted back on top.
    pub hidden: Vec<PathBuf>,
    /// Files sandboxed commands can neither read nor write (secret files
    /// outside the hidden directories): `/dev/null` is mounted over each,
    /// where device files cannot be opened.
    pub masked: Vec<PathBuf>,
    /// `prlimit` (util-linux), which sets the rlimits, when present.
    pub prlimit: Option<PathBuf>,
    /// `setpriv` (util-linux), which drops root for `run_as`, when present.
    pub setpriv: Option<PathBuf>,
    /// Each command's caps; `None`: none.
    pub limits: Option<ResourceLimits>,
    /// The uid and gid commands run as when the service runs as root.
    pub run_as: Option<(u32, u32)>,
}

/// The program called `name` on PATH.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl BashPolicy {
    /// Looks for `bwrap`, `prlimit` and `setpriv` on PATH; no limits yet.
    pub fn detect(allow_unsandboxed: bool) -> Self {
        Self {
            bwrap: on_path("bwrap"),
            allow_unsandboxed,
            hidden: Vec::new(),
            masked: Vec::new(),
            prlimit: on_path("prlimit"),
            setpriv: on_path("setpriv"),
            limits: None,
            run_as: None,
        }
    }

    /// Caps every command at `limits`.
    pub fn with_limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Runs commands as `uid:gid` when the service runs as root.
    pub fn running_as(mut self, user: Option<(u32, u32)>) -> Self {
        self.run_as = user;
        self
    }

    /// The uid and gid commands run as instead of root, when they do: the
    /// service is root, a user is set, commands are sandboxed and `setpriv`
    /// is there.
    pub(crate) fn dropped_to(&self) -> Option<(u32, u32)> {
        let usable = self.bwrap.is_some() && self.setpriv.is_some();
        self.run_as.filter(|_| usable && limits::service_is_root())
    }

    /// Which caps commands get here (whatever the values).
    pub fn enforcement(&self) -> Enforcement {
        let as_root = limits::service_is_root() && self.dropped_to().is_none();
        Enforcement::of(
            self.prlimit.as_deref(),
            self.bwrap.is_some(),
            as_root,
            limits::cgroup_v2_note(),
        )
    }

    /// Hides these directories (those that exist) from sandboxed commands.
    pub fn hiding(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.hidden.extend(
            dirs.into_iter()
                .filter_map(|d| d.canonicalize().ok())
                // Never the root: that would hide the system itself.
                .filter(|d| d.is_dir() && d.parent().is_some()),
        );
        self
    }

    /// Makes these files (those that exist) unreadable to sandboxed commands.
    pub fn masking(mut self, files: impl IntoIterator<Item = PathBuf>) -> Self {
        self.masked.extend(
            files
                .into_iter()
                .filter_map(|f| f.canonicalize().ok())
                .filter(|f| f.is_file()),
        );
        self
    }

    pub fn sandboxed(&self) -> bool {
        self.bwrap.is_some()
    }

    /// Whether the sandbox really works here: runs `true` inside bubblewrap
    /// with the same isolation commands get. In a container without user
    /// namespaces (or with seccomp forbidding them) `bwrap` exists but every
    /// command would fail; this says so up front, with bubblewrap's reason.
    pub fn probe(&self) -> SandboxStatus {
        let Some(bwrap) = &self.bwrap else {
            return SandboxStatus::Missing;
        };
        let run = std::process::Command::new(bwrap)
            .args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
            .args(["--tmpfs", "/tmp", "--unshare-all", "--die-with-parent"])
            .args(["--new-session", "--clearenv", "--", "/bin/true"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output();
        match run {
            Ok(out) if out.status.success() => SandboxStatus::Available,
            Ok(out) => {
                SandboxStatus::Unusable(String::from_utf8_lossy(&out.stderr).trim().to_owned())
            }
            Err(e) => SandboxStatus::Unusable(format!("cannot run {}: {e}", bwrap.display())),
        }
    }
}

/// Whether task commands can run sandboxed on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxStatus {
    /// bubblewrap runs commands in their own namespaces.
    Available,
    /// bubblewrap is not installed.
    Missing,
    /// bubblewrap is installed but cannot create its namespaces here (most
    /// often: user namespaces are disabled or blocked by seccomp/AppArmor in
    /// the container); bubblewrap's own message.
    Unusable(String),
}

impl SandboxStatus {
    pub fn is_available(&self) -> bool {
        *self == SandboxStatus::Available
    }

    /// One sentence for operators.
    pub fn describe(&self) -> String {
        match self {
            SandboxStatus::Available => "bubblewrap sandbox available".to_owned(),
            SandboxStatus::Missing => {
                "bubblewrap (bwrap) is not installed: the Bash tool is refused unless ALLOW_UNSANDBOXED_BASH=true".to_owned()
            }
            SandboxStatus::Unusable(why) => format!(
                "bubblewrap cannot create its namespaces here (user namespaces disabled or blocked; see docs/deployment.md): {why}"
            ),
        }
    }
}
