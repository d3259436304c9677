//! Running Bash for an agent: the command as argv (`bash -c COMMAND`), in a
//! process group of its own, with a scrubbed environment, a timeout, output
//! captured up to 1 MiB, and — when `bwrap` is available — inside a
//! bubblewrap sandbox: no network, read-only system, only the workspace
//! writable, a fresh PID namespace. Without a sandbox, Bash is refused unless
//! the operator allows unsandboxed commands. Nothing started by a command
//! outlives it. A policy ([`BashPolicy`]) with
//! [`crate::limits::ResourceLimits`] caps each command's memory,
//! processes, CPU time, file size, open files and workspace (see
//! [`crate::limits`]); a service running as root runs commands as another
//! user when told to (`TASK_SANDBOX_USER`).

use crate::confine::{confinement, prepare_workspace, Network};
use crate::limits::{self, QuotaWatcher};
pub use crate::policy::{BashPolicy, SandboxStatus};
use crate::workspace::{ToolError, Workspace};
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Output kept per command: the first and the last half of this.
pub const MAX_CAPTURE_BYTES: usize = 1024 * 1024;
/// Output shown to the model: the first and last half of this.
pub const MODEL_VIEW_BYTES: usize = 32 * 1024;
/// Environment variables a command sees (besides `HOME`, set to the
/// workspace). Everything else — credentials included — stays outside.
const PASSED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];
/// Names never passed on, whatever the allow-list says.
const SECRET_MARKERS: &[&str] = &["KEY", "SECRET", "TOKEN", "PASSWORD"];

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BashResult {
    /// The exit code; `None` when killed (timeout) or ended by a signal.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// The cap that stopped the command (or most likely made it fail).
    pub limit: Option<String>,
    /// stdout and stderr interleaved as read, head and tail kept.
    pub output: Vec<u8>,
    /// Bytes produced beyond what was kept.
    pub omitted_bytes: u64,
    pub duration: Duration,
}

impl BashResult {
    /// The text the model sees: at most [`MODEL_VIEW_BYTES`], head and tail.
    pub fn for_model(&self) -> String {
        let text = String::from_utf8_lossy(&self.output);
        let mut view = if text.len() <= MODEL_VIEW_BYTES {
            text.into_owned()
        } else {
            let half = MODEL_VIEW_BYTES / 2;
            let head_end = text.floor_char_boundary(half);
            let tail_start = text.ceil_char_boundary(text.len() - half);
            let hidden = (tail_start - head_end) as u64 + self.omitted_bytes;
            format!(
                "{}\n[… {hidden} bytes omitted …]\n{}",
                &text[..head_end],
                &text[tail_start..]
            )
        };
        if self.omitted_bytes > 0 && view.len() == self.output.len() {
            view.push_str(&format!("\n[… {} bytes omitted …]", self.omitted_bytes));
        }
        match (self.timed_out, self.exit_code) {
            (true, _) => view.push_str("\n[killed: the command timed out]"),
            (false, Some(0)) => {}
            (false, Some(c)) => view.push_str(&format!("\n[exit code {c}]")),
            (false, None) => view.push_str("\n[ended by a signal]"),
        }
        if let Some(limit) = &self.limit {
            view.push_str(&format!("\n[resource limit: {limit}]"));
        }
        view
    }
}

/// Keeps the first and the last `MAX_CAPTURE_BYTES / 2` bytes of a stream.
#[derive(Default)]
struct Capture {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    omitted: u64,
}

impl Capture {
    fn push(&mut self, bytes: &[u8]) {
        let half = MAX_CAPTURE_BYTES / 2;
        let room = half.saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        self.tail.extend(rest);
        while self.tail.len() > half {
            self.tail.pop_front();
            self.omitted += 1;
        }
    }

    fn finish(self) -> (Vec<u8>, u64) {
        let mut out = self.head;
        out.extend(self.tail);
        (out, self.omitted)
    }
}

fn environment(workspace: &Path) -> Vec<(String, std::ffi::OsString)> {
    let mut env: Vec<(String, std::ffi::OsString)> = PASSED_ENV
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| ((*k).to_owned(), v)))
        .filter(|(k, _)| {
            !SECRET_MARKERS
                .iter()
                .any(|m| k.to_ascii_uppercase().contains(m))
        })
        .collect();
    env.push(("HOME".into(), workspace.as_os_str().to_owned()));
    env.push(("TERM".into(), "dumb".into()));
    env
}

/// The argv that runs `command` in `ws`, sandboxed when possible.
fn argv(policy: &BashPolicy, ws: &Path, command: &str) -> Result<Vec<OsString>, ToolError> {
    let mut args = confinement(policy, ws, Network::Isolated, None)?;
    for a in ["/bin/bash", "--noprofile", "--norc", "-c"] {
        args.push(a.into());
    }
    args.push(command.into());
    Ok(args)
}

/// Kills a process group when dropped.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Runs one command to completion or `timeout`, whichever comes first. Being
/// dropped (the task cancelled) kills it too.
pub async fn run_bash(
    ws: &Workspace,
    policy: &BashPolicy,
    command: &str,
    timeout: Duration,
) -> Result<BashResult, ToolError> {
    if command.trim().is_empty() {
        return Err(ToolError::Invalid("the command is empty".into()));
    }
    let args = argv(policy, ws.root(), command)?;
    let quota = prepare_workspace(policy, ws.root()).await?;
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| ToolError::Failed("no program to run".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .current_dir(ws.root())
        .env_clear()
        .envs(environment(ws.root()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| ToolError::Failed(format!("cannot start bash: {e}")))?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let _group = Group(pgid);
    let watcher = match (quota, pgid) {
        (Some(threshold), Some(pgid)) => Some(QuotaWatcher::start(
            ws.root().to_path_buf(),
            threshold,
            move || {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            },
        )),
        _ => None,
    };
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ToolError::Failed(
            "the command's pipes were not opened".into(),
        ));
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cap = Capture::default();
    let (mut a, mut b) = ([0u8; 16384], [0u8; 16384]);
    let (mut out_open, mut err_open) = (true, true);
    let mut timed_out = false;
    while out_open || err_open {
        tokio::select! {
            r = stdout.read(&mut a), if out_open => match r {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => cap.push(&a[..n]),
            },
            r = stderr.read(&mut b), if err_open => match r {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => cap.push(&b[..n]),
            },
            () = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        }
    }
    let exit_code = if timed_out {
        drop(_group);
        let _ = child.kill().await;
        None
    } else {
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => status.ok().and_then(|s| s.code()),
            Err(_) => {
                timed_out = true;
                None
            }
        }
    };
    let (output, omitted_bytes) = cap.finish();
    let exceeded = watcher.as_ref().and_then(QuotaWatcher::exceeded);
    drop(watcher);
    let limit = match (exceeded, &policy.limits) {
        (Some(used), Some(l)) => Some(limits::over_quota(l.workspace_mb, used)),
        (None, Some(l)) if exit_code != Some(0) => limits::explain(l, exit_code, &output),
        _ => None,
    };
    Ok(BashResult {
        exit_code,
        timed_out,
        limit,
        output,
        omitted_bytes,
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn the_probe_tells_a_missing_sandbox_from_an_unusable_one() {
        let mut policy = BashPolicy::detect(false);
        policy.bwrap = None;
        assert_eq!(policy.probe(), SandboxStatus::Missing);
        // A "bubblewrap" that cannot set anything up.
        policy.bwrap = Some(PathBuf::from("/bin/false"));
        assert!(matches!(policy.probe(), SandboxStatus::Unusable(_)));
        assert!(policy.probe().describe().contains("user namespaces"));
    }

    use super::*;

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut c = Capture::default();
        c.push(&vec![b'a'; MAX_CAPTURE_BYTES]);
        c.push(&[b'b'; 10]);
        let (out, omitted) = c.finish();
        assert_eq!(out.len(), MAX_CAPTURE_BYTES);
        assert_eq!(omitted, 10);
        assert!(out.ends_with(b"bbbbbbbbbb"));
        assert!(out.starts_with(b"aaaa"));
    }

    #[test]
    fn the_environment_carries_no_secrets() {
        let env = environment(Path::new("/w"));
        assert!(env
            .iter()
            .all(|(k, _)| !k.contains("KEY") && !k.contains("TOKEN")));
        assert!(env.iter().any(|(k, v)| k == "HOME" && v == "/w"));
    }
}
