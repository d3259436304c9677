//! Confining a task's programs: the argv prefix (`setpriv`, bubblewrap,
//! `prlimit`) that Bash commands run under, and the one the Claude Code CLI
//! runs under when a task's model is a `claude_cli` model, which differs only
//! in reaching the host's network and in having a private home.

use crate::limits::{self, MIB};
use crate::policy::{on_path, BashPolicy};
use crate::workspace::ToolError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What a confined program may reach besides its workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Nothing: a network namespace of its own (Bash).
    Isolated,
    /// The host's network (the Claude Code CLI, which must reach its API).
    Host,
}

/// The home of a confined program other than Bash: a directory in the
/// sandbox's own `/tmp`, so that what it keeps there (the CLI's settings
/// and session files) stays out of the workspace and goes with the sandbox.
pub const PRIVATE_HOME: &str = "/tmp/home";

/// How a program other than Bash runs for a task (see
/// [`BashPolicy::confine_program`]).
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    /// The programs the task's program runs under, ending with `--`: its
    /// own argv follows. Empty when it runs unconfined.
    pub argv: Vec<OsString>,
    /// The program to run: its real path, which the sandbox shows; `None`:
    /// as given.
    pub program: Option<PathBuf>,
    /// Environment to set on top of the program's own (its home and
    /// temporary directory inside the sandbox).
    pub env: Vec<(String, OsString)>,
}

impl BashPolicy {
    /// How the Claude Code CLI (`command`) runs a task in `ws`: confined as
    /// a Bash command is (read-only system, only the workspace writable,
    /// other tasks' workspaces and the data directory hidden, the same caps,
    /// root dropped), but with the host's network and a private home
    /// ([`PRIVATE_HOME`]) in place of the service user's. The folder its
    /// executable really lies in is shown read-only wherever it is (under
    /// `/tmp`, which the sandbox replaces, say), and the program is run by
    /// that real path. Without a sandbox it runs unconfined only where the
    /// operator allows unsandboxed commands.
    pub fn confine_program(&self, ws: &Path, command: &Path) -> Result<Confinement, ToolError> {
        if self.bwrap.is_none() {
            let argv = confinement(self, ws, Network::Host, None)?;
            return Ok(Confinement {
                argv,
                ..Confinement::default()
            });
        }
        let found = if command.components().count() > 1 {
            Some(command.to_path_buf())
        } else {
            command.to_str().and_then(on_path)
        };
        let program = found.and_then(|p| p.canonicalize().ok());
        let folder = program.as_deref().and_then(Path::parent);
        let argv = confinement(self, ws, Network::Host, folder)?;
        let env = vec![
            ("HOME".to_owned(), PRIVATE_HOME.into()),
            ("TMPDIR".to_owned(), "/tmp".into()),
        ];
        Ok(Confinement { argv, program, env })
    }
}

/// The argv prefix that runs a program in `ws` under `policy`: `setpriv`
/// when the service drops root, bubblewrap when present, `prlimit` when
/// there are limits. The environment is the spawning command's, which the
/// caller sets (bubblewrap passes it on). Refused when there is no sandbox
/// and the operator has not allowed unsandboxed commands.
pub(crate) fn confinement(
    policy: &BashPolicy,
    ws: &Path,
    network: Network,
    shown: Option<&Path>,
) -> Result<Vec<OsString>, ToolError> {
    let mut args: Vec<OsString> = Vec::new();
    let dropped = policy.dropped_to();
    if let (Some((uid, gid)), Some(setpriv)) = (dropped, &policy.setpriv) {
        args.push(setpriv.into());
        args.push(format!("--reuid={uid}").into());
        args.push(format!("--regid={gid}").into());
        args.push("--clear-groups".into());
        args.push("--".into());
    }
    // Each tmpfs is sized, so that writing to it cannot eat the host's memory.
    let size = |mib: u64| -> [OsString; 2] {
        [
            OsString::from("--size"),
            OsString::from(mib.saturating_mul(MIB).to_string()),
        ]
    };
    match &policy.bwrap {
        Some(bwrap) => {
            args.push(bwrap.into());
            for a in ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"] {
                args.push(a.into());
            }
            if let Some(l) = &policy.limits {
                // /dev read-only but for its devices; /dev/shm sized.
                for a in ["--remount-ro", "/dev"] {
                    args.push(a.into());
                }
                args.extend(size(l.memory_mb));
                for a in ["--tmpfs", "/dev/shm"] {
                    args.push(a.into());
                }
                args.extend(size(l.workspace_mb));
            }
            for a in ["--tmpfs", "/tmp"] {
                args.push(a.into());
            }
            if network == Network::Host {
                args.push("--dir".into());
                args.push(PRIVATE_HOME.into());
            }
            for dir in &policy.hidden {
                if policy.limits.is_some() {
                    args.extend(size(1));
                }
                args.push("--tmpfs".into());
                args.push(dir.into());
            }
            // A file inside a hidden directory is gone already.
            for file in &policy.masked {
                if !policy.hidden.iter().any(|d| file.starts_with(d)) {
                    args.push("--ro-bind".into());
                    args.push("/dev/null".into());
                    args.push(file.into());
                }
            }
            if let Some(folder) = shown {
                args.push("--ro-bind".into());
                args.push(folder.into());
                args.push(folder.into());
            }
            args.push("--bind".into());
            args.push(ws.into());
            args.push(ws.into());
            args.push("--chdir".into());
            args.push(ws.into());
            for a in ["--unshare-all", "--die-with-parent", "--new-session"] {
                args.push(a.into());
            }
            if network == Network::Host {
                args.push("--share-net".into());
            }
            args.push("--".into());
        }
        None if policy.allow_unsandboxed => {}
        None => {
            let what = match network {
                Network::Isolated => "Bash",
                Network::Host => "The Claude Code CLI",
            };
            return Err(ToolError::Refused(format!(
                "{what} needs a sandbox (bubblewrap) and none is installed; the operator has not allowed unsandboxed commands"
            )));
        }
    }
    if let (Some(l), Some(prlimit)) = (&policy.limits, &policy.prlimit) {
        args.push(prlimit.into());
        // The process cap only where it counts this command's processes.
        let nproc = policy.bwrap.is_some() && (dropped.is_some() || !limits::service_is_root());
        args.extend(limits::prlimit_args(l, nproc));
    }
    Ok(args)
}

/// Makes `ws` ready for a confined program: handed to the sandbox user when
/// the service drops root. Returns the workspace quota in bytes the program
/// is held to, when there are limits: the quota, or the workspace's size now
/// if it is already larger (a program may shrink such a workspace, never
/// grow it).
pub async fn prepare_workspace(policy: &BashPolicy, ws: &Path) -> Result<Option<u64>, ToolError> {
    let Some(l) = &policy.limits else {
        return Ok(None);
    };
    let root = ws.to_path_buf();
    let run_as = policy.dropped_to();
    let quota = l.workspace_mb.saturating_mul(MIB);
    let prepared = tokio::task::spawn_blocking(move || {
        if let Some((uid, gid)) = run_as {
            limits::hand_over(&root, uid, gid)?;
        }
        Ok::<u64, std::io::Error>(limits::disk_usage(&root, u64::MAX))
    })
    .await
    .map_err(|e| ToolError::Failed(format!("cannot prepare the workspace: {e}")))?
    .map_err(|e| ToolError::Failed(format!("cannot prepare the workspace: {e}")))?;
    Ok(Some(quota.max(prepared)))
}

/// Folders shared with the rest of the system: a secret file in one of
/// these is masked on its own; its folder stays visible.
const SHARED_FOLDERS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/media",
    "/mnt",
    "/nix",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/lib",
    "/usr/local",
    "/usr/local/etc",
    "/usr/share",
    "/var",
    "/var/lib",
    "/var/tmp",
];

/// The folder to hide for a secret file: the one it is in (a Kubernetes
/// Secret's mount, a systemd credentials directory, `/etc/switchyard`),
/// so that the secrets beside it that the service never reads stay hidden
/// too; `None` for a file directly in a folder the system shares (`/etc`),
/// which is masked on its own instead.
pub fn secret_folder(file: &Path) -> Option<std::path::PathBuf> {
    let absolute = std::path::absolute(file).ok()?;
    let folder = absolute.parent()?;
    let shared = folder.parent().is_none() || SHARED_FOLDERS.iter().any(|s| folder == Path::new(s));
    (!shared).then(|| folder.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_own_folder_is_hidden_a_shared_one_is_not() {
        let hidden = |f: &str| secret_folder(Path::new(f));
        assert_eq!(
            hidden("/run/secrets/switchyard/jwt_secret"),
            Some("/run/secrets/switchyard".into())
        );
        assert_eq!(
            hidden("/run/credentials/switchyard@blue.service/admin_api_key"),
            Some("/run/credentials/switchyard@blue.service".into())
        );
        assert_eq!(
            hidden("/etc/switchyard/jwt"),
            Some("/etc/switchyard".into())
        );
        assert_eq!(hidden("/etc/jwt"), None);
        assert_eq!(hidden("/jwt"), None);
        assert_eq!(hidden("/var/lib/jwt"), None);
    }
}
