//! Programs run by tests: a binary with a clean environment, started as a
//! process whose output is collected as it comes, and `switchyard serve`
//! started on a port it picks itself (`PORT=0`), with the address read from
//! what the server prints.
//!
//! Nothing here sleeps in the hope that something has happened: waiting on
//! output or on the process's exit blocks on a condition variable that the
//! reader and exit-watcher threads signal, always with a deadline, and a
//! missed deadline fails the test with everything the process printed.
//!
//! ```no_run
//! use switchyard_testkit::process::Binary;
//! // In a test of the crate that builds it: env!("CARGO_BIN_EXE_switchyard").
//! let sy = Binary::new("target/debug/switchyard").env("DATABASE_URL", "sqlite://x.db");
//! let server = sy.serve();
//! let key = server.printed_key();
//! let models = server.url("/v1/models");
//! let (code, stdout, stderr) = server.stop();
//! ```

use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// How long a one-shot command (`run`) may take.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// How long `serve` may take to print where it listens (migrations on a
/// cold PostgreSQL, the local model's first load in a debug build).
const LISTEN_LIMIT: Duration = Duration::from_secs(60);
/// How long a started server may take to answer `/ready`.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long `stop` gives a server to drain and exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// How long the output pipes may stay open after the process has exited
/// (a grandchild may hold them); what arrived by then is what is returned.
const PIPE_CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// What `switchyard serve` prints on stdout once it accepts connections, at
/// every `LOG_LEVEL`, before its scheme (`http` or `https`).
const LISTENING_LINE: &str = "listening on ";

/// A program to run with a clean environment: `PATH`, and only the
/// variables the test gives it.
#[derive(Clone, Debug)]
pub struct Binary {
    program: PathBuf,
    envs: Vec<(OsString, OsString)>,
    dir: Option<PathBuf>,
}

impl Binary {
    /// `program` (for the crate's own binary, `env!("CARGO_BIN_EXE_…")`).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            envs: Vec::new(),
            dir: None,
        }
    }

    /// Sets one variable (a later value for the same name wins).
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Runs in `dir` instead of the test's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        c.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            c.env("PATH", path);
        }
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        if let Some(dir) = &self.dir {
            c.current_dir(dir);
        }
        c.args(args).stdin(Stdio::null());
        c
    }

    fn describe(&self, args: &[&str]) -> String {
        let name = self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        std::iter::once(name.as_str())
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts the program with `args`, its output collected as it comes.
    pub fn spawn(&self, args: &[&str]) -> Process {
        Process::spawn(self.command(args), self.describe(args))
    }

    /// Runs the program with `args` to its end (within two minutes) and
    /// returns what it printed and how it exited.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut p = self.spawn(args);
        let status = p.wait_status(RUN_LIMIT);
        let out = p.output.lock();
        Output {
            status,
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
        }
    }

    /// Starts the program with `args` and `PORT=0`, and waits until it
    /// prints the address it listens on (see [`ServerProcess::start`]).
    pub fn start_server(&self, args: &[&str]) -> ServerProcess {
        let with_port = self.clone().env("PORT", "0");
        ServerProcess::start(with_port.spawn(args))
    }

    /// `serve` on a port of its own choosing, once it answers `/ready`.
    pub fn serve(&self) -> ServerProcess {
        let server = self.start_server(&["serve"]);
        server.wait_ready();
        server
    }
}

/// A running program. Dropping it kills the program (SIGKILL).
pub struct Process {
    child: Child,
    what: String,
    output: Arc<Collected>,
    reaped: Option<ExitStatus>,
}

/// stdout and stderr so far, whether each is still open, and whether the
/// process has exited; `changed` is signalled on every change.
struct Collected {
    state: Mutex<OutputState>,
    changed: Condvar,
}

#[derive(Default)]
struct OutputState {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    open_streams: u8,
    exited: bool,
}

/// The output collected so far, as a test's wait condition sees it.
pub struct Seen<'a> {
    state: &'a OutputState,
}

impl Seen<'_> {
    pub fn stdout(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.state.stdout)
    }

    pub fn stderr(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.state.stderr)
    }
}

impl Collected {
    fn lock(&self) -> MutexGuard<'_, OutputState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut OutputState)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// Why a wait on a process's output ended without the condition holding.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The process exited (or closed its output) first.
    Exited,
    /// The deadline passed first.
    TimedOut,
}

impl Process {
    fn spawn(mut command: Command, what: String) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let output = Arc::new(Collected {
            state: Mutex::new(OutputState {
                open_streams: 2,
                ..OutputState::default()
            }),
            changed: Condvar::new(),
        });
        if let Some(out) = child.stdout.take() {
            collect(out, output.clone(), |s| &mut s.stdout);
        }
        if let Some(err) = child.stderr.take() {
            collect(err, output.clone(), |s| &mut s.stderr);
        }
        // Told when the process exits, without reaping it (WNOWAIT): the
        // pid stays ours until `wait` below, so signals never reach a
        // recycled pid.
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let watcher = output.clone();
        std::thread::spawn(move || {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(pid), flags) {}
            watcher.update(|s| s.exited = true);
        });
        Self {
            child,
            what,
            output,
            reaped: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed on stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().stdout).into_owned()
    }

    /// Everything printed on stderr so far (the server's logs).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().stderr).into_owned()
    }

    fn report(&self) -> String {
        let s = self.output.lock();
        format!(
            "`{}` (pid {})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.child.id(),
            String::from_utf8_lossy(&s.stdout),
            String::from_utf8_lossy(&s.stderr)
        )
    }

    /// Blocks until `done` holds for the collected state; false when
    /// `within` passes first.
    fn wait_state(&self, within: Duration, mut done: impl FnMut(&OutputState) -> bool) -> bool {
        let deadline = Instant::now() + within;
        let mut state = self.output.lock();
        loop {
            if done(&state) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .output
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until `check` finds what it looks for in the output so far;
    /// `Err` when the process exits or `within` passes first.
    pub fn try_wait_for<T>(
        &self,
        within: Duration,
        mut check: impl FnMut(&Seen<'_>) -> Option<T>,
    ) -> Result<T, Ended> {
        let mut found = None;
        let mut ended = false;
        self.wait_state(within, |state| {
            found = check(&Seen { state });
            // Output still in the pipes is read before giving up.
            ended = state.exited && state.open_streams == 0;
            found.is_some() || ended
        });
        match found {
            Some(found) => Ok(found),
            None if ended => Err(Ended::Exited),
            None => Err(Ended::TimedOut),
        }
    }

    /// Like [`Process::try_wait_for`], failing the test (with the output
    /// collected) when `what` does not turn up.
    pub fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        check: impl FnMut(&Seen<'_>) -> Option<T>,
    ) -> T {
        match self.try_wait_for(within, check) {
            Ok(found) => found,
            Err(Ended::Exited) => panic!("exited before {what}: {}", self.report()),
            Err(Ended::TimedOut) => {
                panic!("no {what} within {within:?}: {}", self.report())
            }
        }
    }

    /// Sends `signal` to the running process.
    pub fn signal(&self, signal: Signal) {
        assert!(
            self.reaped.is_none(),
            "`{}` has already exited; cannot send {signal}",
            self.what
        );
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        nix::sys::signal::kill(pid, signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to `{}`: {e}", self.what));
    }

    /// SIGTERM: the polite way to ask a server to stop.
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// SIGKILL, and waits for the process to be gone: no chance to clean up.
    pub fn kill(&mut self) {
        if self.reaped.is_none() {
            self.signal(Signal::SIGKILL);
        }
        self.wait_status(STOP_LIMIT);
    }

    /// Whether the process has exited (it may not have been waited for yet).
    pub fn has_exited(&self) -> bool {
        self.reaped.is_some() || self.output.lock().exited
    }

    fn wait_status(&mut self, within: Duration) -> ExitStatus {
        if let Some(status) = self.reaped {
            return status;
        }
        if !self.wait_state(within, |state| state.exited) {
            let report = self.report();
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("did not exit within {within:?}: {report}");
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("cannot wait for `{}`: {e}", self.what));
        self.reaped = Some(status);
        // The rest of the output: the pipes close at exit unless a child of
        // the process still holds them.
        self.wait_state(PIPE_CLOSE_LIMIT, |state| state.open_streams == 0);
        status
    }

    /// Waits for the process to exit; returns its exit code (-1 when a
    /// signal ended it). Fails the test if it is still running after
    /// `within`.
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        self.wait_status(within).code().unwrap_or(-1)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(
    stream: impl Read + Send + 'static,
    into: Arc<Collected>,
    buffer: fn(&mut OutputState) -> &mut Vec<u8>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => into.update(|s| buffer(s).extend_from_slice(&line)),
            }
        }
        into.update(|s| s.open_streams -= 1);
    });
}

/// A server the test started (usually `switchyard serve`), listening on the
/// port it picked itself. Dereferences to its [`Process`] for signals,
/// output and exit.
pub struct ServerProcess {
    process: Process,
    addr: SocketAddr,
    base: String,
}

impl ServerProcess {
    /// Waits until the process says where it listens: the line
    /// `listening on http://ADDR` on stdout (printed at every log level) or,
    /// failing that, the `listening` log event on stderr (JSON logs).
    pub fn start(process: Process) -> Self {
        let (scheme, addr) = process.wait_for("the address it listens on", LISTEN_LIMIT, |seen| {
            listening_address(&seen.stdout(), &seen.stderr())
        });
        // Where it listens on every address, connect over loopback.
        let host = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let addr = SocketAddr::new(host, addr.port());
        Self {
            process,
            addr,
            base: format!("{scheme}://{addr}"),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://HOST:PORT` (`https://` when it serves TLS), no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`, or is empty) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until `path` answers 2xx, failing the test (with the server's
    /// output) after `within`.
    pub fn wait_for_ok(&self, path: &str, within: Duration) {
        assert!(
            crate::wait_for_http_ok(&self.url(path), within),
            "{path} did not answer 2xx within {within:?}: {}",
            self.process.report()
        );
    }

    /// Waits until `/ready` answers 2xx.
    pub fn wait_ready(&self) {
        self.wait_for_ok("/ready", READY_LIMIT);
    }

    /// The admin key printed at first start, if one was. `serve` prints it
    /// before it starts listening, so once the server is up the answer is
    /// final.
    pub fn admin_key(&self) -> Option<String> {
        crate::find_keys(&self.process.stdout()).into_iter().next()
    }

    /// The admin key printed at first start; fails the test when none was.
    pub fn printed_key(&self) -> String {
        self.admin_key()
            .unwrap_or_else(|| panic!("no admin key printed: {}", self.process.report()))
    }

    /// SIGTERM, then waits (up to 20 s) for the process to drain and exit.
    /// Returns the exit code, stdout and stderr.
    pub fn stop(mut self) -> (i32, String, String) {
        self.process.terminate();
        let code = self.process.wait_exit(STOP_LIMIT);
        (code, self.process.stdout(), self.process.stderr())
    }
}

impl std::ops::Deref for ServerProcess {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// Where the server says it listens, and with which scheme, from its
/// stdout line or its JSON `listening` log event.
fn listening_address(stdout: &str, stderr: &str) -> Option<(&'static str, SocketAddr)> {
    let scheme = |https: bool| if https { "https" } else { "http" };
    let printed = stdout.lines().find_map(|l| {
        let url = l.trim().strip_prefix(LISTENING_LINE)?;
        let (https, rest) = url.split_once("://")?;
        let addr = rest.trim_end_matches('/').parse().ok()?;
        Some((scheme(https == "https"), addr))
    });
    printed.or_else(|| {
        stderr.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let addr = v["addr"].as_str()?.parse().ok()?;
            (v["message"] == "listening").then(|| (scheme(v["scheme"] == "https"), addr))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_stdout_line_or_the_log_event() {
        let addr: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(
            listening_address("key\nlistening on http://127.0.0.1:4321\n", ""),
            Some(("http", addr))
        );
        let https = Some(("https", addr));
        assert_eq!(
            listening_address("listening on https://127.0.0.1:4321", ""),
            https
        );
        let log = "{\"message\":\"other\"}\n{\"level\":\"INFO\",\"message\":\"listening\",\"addr\":\"127.0.0.1:4321\"}\n";
        assert_eq!(listening_address("", log), Some(("http", addr)));
        let log = "{\"message\":\"listening\",\"scheme\":\"https\",\"addr\":\"127.0.0.1:4321\"}";
        assert_eq!(listening_address("", log), https);
        assert_eq!(
            listening_address("listening on http://[::1]:80\n", ""),
            Some(("http", "[::1]:80".parse().unwrap()))
        );
        assert_eq!(listening_address("listening on", "not json"), None);
    }

    #[test]
    fn output_is_collected_and_the_exit_is_seen() {
        let sh = Binary::new("/bin/sh").env("GREETING", "hello");
        let out = sh.run(&["-c", "echo $GREETING; echo oops >&2; exit 3"]);
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"hello\n");
        assert_eq!(out.stderr, b"oops\n");
        // Only the variables given: HOME is not passed on.
        let out = sh.run(&["-c", "echo \"[$HOME]\""]);
        assert_eq!(out.stdout, b"[]\n");
    }

    #[test]
    fn waits_end_on_the_condition_on_exit_or_on_the_deadline() {
        let mut p = Binary::new("/bin/sh").spawn(&["-c", "echo ready; exec sleep 30"]);
        let line = p.wait_for("the ready line", Duration::from_secs(10), |s| {
            s.stdout().lines().next().map(str::to_owned)
        });
        assert_eq!(line, "ready");
        assert_eq!(
            p.try_wait_for(Duration::from_millis(50), |s| s
                .stderr()
                .contains("never")
                .then_some(())),
            Err(Ended::TimedOut)
        );
        p.terminate();
        assert_eq!(p.wait_exit(Duration::from_secs(10)), -1);
        assert_eq!(
            p.try_wait_for(Duration::from_secs(10), |_| None::<()>),
            Err(Ended::Exited)
        );
    }
}
