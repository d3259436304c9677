//! Private servers of a test's own — PostgreSQL, Redis, pgbouncer — that a
//! test may stop, start again and break without disturbing other tests;
//! PostgreSQL and Redis optionally speaking only TLS, with a certificate
//! from the test's own authority (`crate::tls`).

use crate::ports::{PortLease, START_ATTEMPTS};
use crate::process::{Binary, Ended, Process};
use crate::tls::IssuedCert;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn find_binary(name: &str, extra_dirs: &[PathBuf]) -> PathBuf {
    for dir in extra_dirs {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("`{name}` not found; install it (scripts/test.sh installs test dependencies)")
}

fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Builds a command that runs as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
fn as_postgres_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL server of the test's own, in a temporary directory, that the
/// test may stop and start again (on the same port: see the `ports` module
/// for why that port cannot be taken meanwhile).
pub struct PrivatePostgres {
    pub port: u16,
    _lease: PortLease,
    dir: tempfile::TempDir,
    bin: PathBuf,
    running: bool,
    /// Serves TLS (`ssl=on`) and refuses TCP clients without it.
    ssl: bool,
}

/// Why `pg_ctl start` failed: its output and the server's log.
struct PgStartFailure(String);

impl PgStartFailure {
    /// PostgreSQL refuses port 0, so the port is chosen before the start;
    /// another program may have bound it in between.
    fn port_taken(&self) -> bool {
        self.0.contains("could not bind") || self.0.contains("Address already in use")
    }
}

impl PrivatePostgres {
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// A server with `ssl=on` and `cert` as its certificate, whose
    /// `pg_hba.conf` refuses TCP connections that do not use TLS.
    pub fn start_with_tls(cert: &IssuedCert) -> Self {
        Self::start_inner(Some(cert))
    }

    fn start_inner(tls: Option<&IssuedCert>) -> Self {
        let dirs = postgres_bin_dirs();
        let initdb = find_binary("initdb", &dirs);
        let bin = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = tempfile::Builder::new()
            .prefix("sy-pg-")
            .tempdir_in("/tmp")
            .expect("temporary directory");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown of the PostgreSQL data directory failed"
            );
        }
        let data = dir.path().join("data");
        let out = as_postgres_user(&initdb)
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(cert) = tls {
            // server.crt and server.key are ssl_cert_file's and
            // ssl_key_file's defaults; the key must be the server user's, 0600.
            cert.write(&data, "server");
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 0.0.0.0/0 reject\n",
            )
            .expect("write pg_hba.conf");
            if is_root() {
                let status = Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&data)
                    .status()
                    .expect("chown");
                assert!(status.success(), "chown of the TLS files failed");
            }
        }
        let ssl = tls.is_some();
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let lease = PortLease::take();
            let _ = std::fs::remove_file(dir.path().join("postgres.log"));
            match pg_start(&bin, dir.path(), lease.port, ssl) {
                Ok(()) => {
                    return Self {
                        port: lease.port,
                        _lease: lease,
                        dir,
                        bin,
                        running: true,
                        ssl,
                    }
                }
                Err(failure) if failure.port_taken() => last = Some(failure),
                Err(failure) => panic!("private PostgreSQL did not start: {}", failure.0),
            }
        }
        panic!(
            "private PostgreSQL found no port it could bind in {START_ATTEMPTS} tries: {}",
            last.map(|f| f.0).unwrap_or_default()
        )
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) on the same port and data directory, and
    /// waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(!self.running, "already running");
        if let Err(failure) = pg_start(&self.bin, self.dir.path(), self.port, self.ssl) {
            panic!(
                "private PostgreSQL did not start again on port {}: {}",
                self.port, failure.0
            );
        }
        self.running = true;
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits
    /// until it has exited.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let data = self.dir.path().join("data");
        let _ = as_postgres_user(&self.bin.join("pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", "30"])
            .output();
        self.running = false;
    }
}

/// `pg_ctl start -w`: returns once the server accepts connections (pg_ctl
/// watches the data directory's `postmaster.pid`, so another server on the
/// port cannot fool it), or with what went wrong.
fn pg_start(bin: &Path, dir: &Path, port: u16, ssl: bool) -> Result<(), PgStartFailure> {
    let data = dir.join("data");
    let log = dir.join("postgres.log");
    let mut options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        dir.display()
    );
    if ssl {
        options.push_str(" -c ssl=on");
    }
    let out = as_postgres_user(&bin.join("pg_ctl"))
        .arg("start")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "30", "-o", &options])
        .output()
        .expect("run pg_ctl start");
    if out.status.success() {
        return Ok(());
    }
    Err(PgStartFailure(format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    )))
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis server of the test's own, which it may stop and start again (on
/// the same port: see the `ports` module for why that port cannot be taken
/// meanwhile).
pub struct PrivateRedis {
    pub port: u16,
    _lease: PortLease,
    dir: tempfile::TempDir,
    server: Option<Process>,
    password: Option<String>,
    /// Listens for TLS only (`--port 0 --tls-port PORT`).
    tls: bool,
}

impl PrivateRedis {
    pub fn start() -> Self {
        Self::start_inner(None, None)
    }

    pub fn start_with_password(password: Option<&str>) -> Self {
        Self::start_inner(password, None)
    }

    /// A server that speaks TLS only, with `cert` as its certificate;
    /// clients need no certificate of their own.
    pub fn start_with_tls(cert: &IssuedCert) -> Self {
        Self::start_inner(None, Some(cert))
    }

    fn start_inner(password: Option<&str>, tls: Option<&IssuedCert>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        if let Some(cert) = tls {
            cert.write(dir.path(), "redis");
        }
        let tls = tls.is_some();
        let password = password.map(str::to_owned);
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let lease = PortLease::take();
            match redis_start(dir.path(), lease.port, password.as_deref(), tls) {
                Ok(server) => {
                    return Self {
                        port: lease.port,
                        _lease: lease,
                        dir,
                        server: Some(server),
                        password,
                        tls,
                    }
                }
                // `--port 0` turns TCP off instead of picking a port, so the
                // port is chosen first; another program may have bound it in
                // between.
                Err(output) if output.contains("Address already in use") => last = output,
                Err(output) => panic!("private Redis did not start: {output}"),
            }
        }
        panic!("private Redis found no port it could bind in {START_ATTEMPTS} tries: {last}")
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://…` when it speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server again on the same port, and waits until it accepts
    /// connections.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "already running");
        match redis_start(
            self.dir.path(),
            self.port,
            self.password.as_deref(),
            self.tls,
        ) {
            Ok(server) => self.server = Some(server),
            Err(output) => panic!(
                "private Redis did not start again on port {}: {output}",
                self.port
            ),
        }
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown) and waits until
    /// it has exited.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }
}

/// Starts `redis-server` on `port` and waits for its "Ready to accept
/// connections" (which it prints only once it has bound the port); `Err`
/// with its output when it exits first. With `tls`, `port` is its TLS port
/// (plain TCP off), with `redis.crt` and `redis.key` in `dir`.
fn redis_start(
    dir: &Path,
    port: u16,
    password: Option<&str>,
    tls: bool,
) -> Result<Process, String> {
    let port = port.to_string();
    let cert = dir.join("redis.crt").to_string_lossy().into_owned();
    let key = dir.join("redis.key").to_string_lossy().into_owned();
    let dir = dir.to_string_lossy();
    let mut args = if tls {
        vec![
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-auth-clients",
            "no",
        ]
    } else {
        vec!["--port", &port]
    };
    args.extend([
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir,
    ]);
    if let Some(pw) = password {
        args.extend(["--requirepass", pw]);
    }
    let server = Binary::new(find_binary("redis-server", &[])).spawn(&args);
    match server.try_wait_for(Duration::from_secs(10), |seen| {
        seen.stdout()
            .contains("Ready to accept connections")
            .then_some(())
    }) {
        Ok(()) => Ok(server),
        Err(Ended::Exited) => Err(format!("{}{}", server.stdout(), server.stderr())),
        Err(Ended::TimedOut) => panic!(
            "private Redis did not start on port {port} within 10 s: {}{}",
            server.stdout(),
            server.stderr()
        ),
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A pgbouncer of the test's own in transaction pooling mode, in front of a
/// PostgreSQL server, with a deliberately small server pool so that client
/// transactions really do move between server connections. It binds port 0;
/// the port it got is read from `/proc` (pgbouncer logs `:0`).
pub struct PrivatePgbouncer {
    pub port: u16,
    _dir: tempfile::TempDir,
    _server: Process,
}

impl PrivatePgbouncer {
    pub fn start(upstream_host: &str, upstream_port: u16, server_pool_size: u32) -> Self {
        let bin = find_binary("pgbouncer", &[PathBuf::from("/usr/sbin")]);
        let dir = tempfile::Builder::new()
            .prefix("sy-pgb-")
            .tempdir_in("/tmp")
            .expect("temporary directory");
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={upstream_host} port={upstream_port} user=postgres\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 0\nunix_socket_dir =\n\
                 auth_type = any\npool_mode = transaction\ndefault_pool_size = {server_pool_size}\n\
                 max_client_conn = 200\nserver_reset_query =\nignore_startup_parameters = extra_float_digits,application_name\n\
                 logfile = {log}\n",
                log = dir.path().join("pgbouncer.log").display()
            ),
        )
        .expect("write pgbouncer.ini");
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
        }
        let ini = ini.to_string_lossy();
        let args: Vec<&str> = if is_root() {
            vec!["-u", "postgres", &ini]
        } else {
            vec![&ini]
        };
        let server = Binary::new(bin).spawn(&args);
        // "process up" comes after the listening socket is open.
        server.wait_for(
            "pgbouncer's `process up`",
            Duration::from_secs(10),
            |seen| seen.stderr().contains("process up").then_some(()),
        );
        let port = crate::ports::listening_ports(server.pid())
            .first()
            .copied()
            .unwrap_or_else(|| panic!("pgbouncer (pid {}) listens on no TCP port", server.pid()));
        Self {
            port,
            _dir: dir,
            _server: server,
        }
    }

    /// The URL of `database` through this pgbouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}
