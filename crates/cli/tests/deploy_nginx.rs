//! The shipped deployment configurations, run with the real programs: nginx
//! (deploy/nginx) in front of two `switchyard serve` processes — the blue and
//! the green slot — and pgbouncer (deploy/pgbouncer) between the service and
//! PostgreSQL.
//!
//! The files are used as shipped. The nginx tree is copied to a temporary
//! prefix and changed only where a test must: the listen ports (80, 443 and
//! 8080 become free loopback ports), a throwaway certificate in tls/, the
//! plain-HTTP example enabled, and the upstream file — the one
//! `switchyard rollout` owns — pointing at the test's processes. pgbouncer
//! runs a wrapper that `%include`s the shipped pgbouncer.ini and overrides
//! only where it listens, its log, pid and auth files and where the database
//! is. A missing tool (nginx, openssl, pgbouncer, psql) fails the tests with
//! what to install; scripts/test.sh installs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use switchyard_testkit::fake_openai::FakeOpenAi;
use switchyard_testkit::process::{Binary, Process, ServerProcess, Signal};
use switchyard_testkit::{poll_until, PrivatePostgres, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
/// The service's defaults the proxy settings are measured against
/// (README.md's configuration table).
const API_TIMEOUT_SECONDS: u64 = 300;
const MAX_REQUEST_BODY_BYTES: u64 = 10_485_760;
/// Where the live test's clients connect from: loopback, but not nginx's
/// own 127.0.0.1, so that the service can tell the client from the proxy.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The TLS server's name (conf.d/switchyard.conf), and the certificate's.
const TLS_HOST: &str = "api.example.com";
/// All `nginx -t` may warn about: nginx 1.25.1 and later deprecate the
/// `http2` listen parameter that 1.22 (Debian 12) still needs.
const HARMLESS_WARNINGS: &[&str] = &["directive is deprecated, use the \"http2\" directive"];

fn deploy_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A program the tests need. Missing, it fails the test (never skips it).
fn tool(name: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    let found = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("`{name}` is missing: install the Debian package `{package}` (scripts/test.sh does)")
    })
}

fn is_root() -> bool {
    let id = Command::new("id").arg("-u").output();
    id.is_ok_and(|o| text(&o.stdout).trim() == "0")
}

/// The binary, in a directory of its own (its defaults put files under
/// ./data).
fn switchyard(dir: &Path, envs: &[(&str, &str)]) -> Binary {
    Binary::new(BIN)
        .current_dir(dir)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .envs(envs)
}

fn replace_once(haystack: &str, from: &str, to: &str) -> String {
    let n = haystack.matches(from).count();
    assert_eq!(n, 1, "`{from}` occurs {n} times in:\n{haystack}");
    haystack.replacen(from, to, 1)
}

/// A port below the kernel's ephemeral range (where no `bind(0)` and no
/// outgoing connection of another test lands) that nothing listens on now.
/// nginx refuses port 0; should something take the port before nginx binds
/// it, nginx says so and is started again on others.
fn free_port() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let ephemeral = range
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 20_000u16.min(ephemeral - 1_024);
    for _ in 0..1_000 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = low + u16::try_from(random % u64::from(ephemeral - low)).unwrap();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {low} and {ephemeral}")
}

// ---------------------------------------------------------------------------
// The upstream file: the contract with `switchyard rollout`.

/// Reads an upstream file as `switchyard rollout` writes it into
/// `(slot, address, percent)`, failing where it breaks the contract: the
/// rollout's comment first, with the shares; then exactly
/// `upstream switchyard_api { … }`, one server per slot (weights out of 100,
/// `max_fails=0`, the slot named in a comment; a slot at 0 % left out, or
/// `backup`, or `down`), `keepalive 32` and a `keepalive_timeout` in
/// milliseconds.
fn parse_upstream(name: &str, file: &str) -> Vec<(String, String, u32)> {
    let first = file.lines().next().unwrap_or_default();
    let summary = first
        .strip_prefix("# Managed by `switchyard rollout` (")
        .and_then(|rest| rest.strip_suffix("); edits are overwritten."))
        .unwrap_or_else(|| panic!("{name}: the first line is not the rollout's: {first:?}"));
    let mut rest = file
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(str::trim);
    assert_eq!(rest.next(), Some("upstream switchyard_api {"), "{name}");
    let body: Vec<&str> = rest.filter(|l| !l.is_empty()).collect();
    let [.., keepalive, keepalive_timeout, end] = body[..] else {
        panic!("{name}: too short");
    };
    assert_eq!((keepalive, end), ("keepalive 32;", "}"), "{name}");
    assert!(
        keepalive_timeout
            .strip_prefix("keepalive_timeout ")
            .and_then(|t| t.strip_suffix("ms;"))
            .is_some_and(|ms| ms.parse::<u64>().is_ok()),
        "{name}: {keepalive_timeout}"
    );
    let mut servers = Vec::new();
    for line in &body[..body.len() - 3] {
        let (directive, slot) = line
            .split_once(';')
            .unwrap_or_else(|| panic!("{name}: {line}"));
        let slot = slot
            .trim()
            .strip_prefix("# ")
            .unwrap_or_else(|| panic!("{name}: {line}"));
        let words: Vec<&str> = directive.split_whitespace().collect();
        assert!(words.len() >= 3 && words[0] == "server", "{name}: {line}");
        assert!(words.contains(&"max_fails=0"), "{name}: {line}");
        let off = words.contains(&"backup") || words.contains(&"down");
        let weight = words.iter().find_map(|w| w.strip_prefix("weight="));
        let weight = weight.map_or(Ok(1), str::parse::<u32>).unwrap();
        servers.push((
            slot.to_owned(),
            words[1].to_owned(),
            if off { 0 } else { weight },
        ));
    }
    let total: u32 = servers.iter().map(|s| s.2).sum();
    assert_eq!(total, 100, "{name}: the live weights add up to {total}");
    for part in summary.split(", ") {
        let (slot, percent) = part
            .strip_suffix(" %")
            .and_then(|p| p.rsplit_once(' '))
            .unwrap_or_else(|| panic!("{name}: {part:?}"));
        let given = servers.iter().find(|s| s.0 == slot).map_or(0, |s| s.2);
        assert_eq!(
            Ok(given),
            percent.parse(),
            "{name}: the comment and weights of {slot}"
        );
    }
    servers
}

/// An upstream file as `switchyard rollout` writes it: each slot with its
/// address and share; a slot at 0 % stays as a `backup` server.
fn upstream_file(slots: &[(&str, SocketAddr, u32)]) -> String {
    let summary: Vec<String> = slots.iter().map(|(s, _, p)| format!("{s} {p} %")).collect();
    let state: Vec<String> = slots.iter().map(|(s, _, p)| format!("{s}={p}")).collect();
    let mut file = format!(
        "# Managed by `switchyard rollout` ({}); edits are overwritten.\n\
         # switchyard-rollout: {}\nupstream switchyard_api {{\n",
        summary.join(", "),
        state.join(" ")
    );
    for (slot, addr, percent) in slots {
        let share = match percent {
            0 => "backup".to_owned(),
            p => format!("weight={p}"),
        };
        file.push_str(&format!(
            "    server {addr} {share} max_fails=0;  # {slot}\n"
        ));
    }
    file.push_str("    keepalive 32;\n    keepalive_timeout 1000ms;\n}\n");
    parse_upstream("the test's upstream file", &file);
    file
}

#[test]
fn the_upstream_examples_follow_the_rollout_contract() {
    let work = tempfile::tempdir().unwrap();
    for (name, blue, green) in [
        ("switchyard.conf", 100, 0),
        ("green.conf.example", 0, 100),
        ("canary.conf.example", 99, 1),
    ] {
        let file = read(&deploy_path(&format!("nginx/upstream/{name}")));
        let servers = parse_upstream(name, &file);
        let expected = [
            ("blue", "127.0.0.1:8001", blue),
            ("green", "127.0.0.1:8002", green),
        ];
        let expected = expected.map(|(s, a, p)| (s.to_owned(), a.to_owned(), p));
        assert_eq!(servers, expected, "{name}");
        // And the rollout reads it as what its first line says.
        let path = deploy_path(&format!("nginx/upstream/{name}"));
        let path = path.to_str().unwrap();
        let slots = [
            "--slot",
            "blue=http://127.0.0.1:8001",
            "--slot",
            "green=http://127.0.0.1:8002",
        ];
        let status = switchyard(work.path(), &[])
            .run(&[&["rollout", "status", "--upstream-file", path][..], &slots].concat());
        let summary = file
            .lines()
            .next()
            .unwrap()
            .split(['(', ')'])
            .nth(1)
            .unwrap();
        assert!(
            text(&status.stdout).starts_with(summary),
            "{name}: {status:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// nginx

/// A copy of deploy/nginx in a temporary prefix, with a throwaway
/// certificate for `api.example.com` in tls/.
struct NginxTree {
    dir: tempfile::TempDir,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

impl NginxTree {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sy-nginx-")
            .tempdir_in("/tmp");
        let dir = dir.unwrap();
        copy_tree(&deploy_path("nginx"), dir.path());
        // Started as root, nginx's workers run as another account.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let out = Command::new(tool("openssl", "openssl"))
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", &format!("/CN={TLS_HOST}")])
            .args(["-addext", &format!("subjectAltName=DNS:{TLS_HOST}")])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(tls.join("privkey.pem"))
            .arg("-out")
            .arg(tls.join("fullchain.pem"))
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl req: {}", text(&out.stderr));
        Self { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        read(&self.path(rel))
    }

    /// Replaces a file in one step, as `switchyard rollout` does.
    fn write(&self, rel: &str, content: &str) {
        let tmp = self.path(&format!("{rel}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.path(rel)).unwrap();
    }

    /// `-p PREFIX/ -c PREFIX/nginx.conf` and `extra`.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let prefix = format!("{}/", self.dir.path().display());
        let conf = self.path("nginx.conf").display().to_string();
        let mut args = vec!["-p".to_owned(), prefix, "-c".to_owned(), conf];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    fn nginx(&self, extra: &[&str]) -> Output {
        let args = self.args(extra);
        Binary::new(tool("nginx", "nginx"))
            .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `nginx -t`: valid, and no warning but the harmless.
    fn check(&self, what: &str) {
        let out = self.nginx(&["-t"]);
        let log = text(&out.stderr);
        let ok = out.status.success() && log.contains("test is successful");
        assert!(ok, "nginx -t failed for {what}:\n{log}");
        let complaints = log
            .lines()
            .filter(|l| l.contains("[warn]") || l.contains("[emerg]") || l.contains("[alert]"))
            .filter(|l| !HARMLESS_WARNINGS.iter().any(|h| l.contains(h)));
        assert_eq!(complaints.count(), 0, "nginx -t warned for {what}:\n{log}");
    }
}

/// The values of every `name` directive in an `nginx -T` dump's
/// directives (comments dropped, blanks collapsed).
fn values_of<'a>(directives: &'a [String], name: &str) -> Vec<&'a str> {
    let values = directives
        .iter()
        .filter_map(|d| d.strip_prefix(name)?.strip_prefix(' '));
    values.filter_map(|v| v.strip_suffix(';')).collect()
}

fn seconds(value: &str) -> u64 {
    let digits = value.strip_suffix('s').unwrap_or(value);
    digits
        .parse()
        .unwrap_or_else(|_| panic!("not whole seconds: {value}"))
}

#[test]
fn the_shipped_nginx_config_passes_nginx_t_with_every_upstream_file() {
    let tree = NginxTree::new();
    for name in [
        "switchyard.conf",
        "green.conf.example",
        "canary.conf.example",
    ] {
        let upstream = read(&deploy_path(&format!("nginx/upstream/{name}")));
        tree.write("upstream/switchyard.conf", &upstream);
        let plain = tree.path("conf.d/switchyard-http.conf");
        let _ = std::fs::remove_file(&plain);
        tree.check(&format!("upstream/{name}"));
        std::fs::copy(tree.path("conf.d/switchyard-http.conf.example"), &plain).unwrap();
        tree.check(&format!("upstream/{name} with the plain-HTTP server"));
    }

    // What the configuration in effect (every included file) promises.
    let dump = tree.nginx(&["-T"]);
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    let found: Vec<String> = text(&dump.stdout)
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().split_whitespace())
        .map(|words| words.collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    for expected in [
        "include conf.d/*.conf;",
        "include upstream/switchyard.conf;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "location = /v1/stream {",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_buffering off;",
        "proxy_cache off;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Request-ID $switchyard_request_id;",
        "add_header X-Request-ID $switchyard_missing_request_id always;",
        "proxy_next_upstream error timeout http_502 http_503;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_certificate tls/fullchain.pem;",
        "ssl_certificate_key tls/privkey.pem;",
    ] {
        assert!(found.iter().any(|d| d == expected), "no `{expected}`");
    }
    // Every location goes to the rollout's upstream, the path unchanged.
    let passes = values_of(&found, "proxy_pass");
    assert!(!passes.is_empty() && passes.iter().all(|p| *p == "http://switchyard_api"));
    // Longer than the service's own timeout: its 504 reaches the client.
    for name in ["proxy_read_timeout", "proxy_send_timeout"] {
        let values = values_of(&found, name);
        assert!(!values.is_empty(), "no {name}");
        for v in values {
            assert!(seconds(v) > API_TIMEOUT_SECONDS, "{name} {v}");
        }
    }
    for v in values_of(&found, "proxy_connect_timeout") {
        assert!(seconds(v) <= 10, "proxy_connect_timeout {v}");
    }
    assert_eq!(values_of(&found, "client_max_body_size"), ["10m"]);
    assert_eq!(10 * 1024 * 1024, MAX_REQUEST_BODY_BYTES);
    // A POST that reached a replica is never sent to another.
    assert!(!found.iter().any(|d| d.contains("non_idempotent")));
    assert!(!found.iter().any(|d| d == "proxy_buffering on;"));

    // The upstream file really is what nginx reads: a broken one fails.
    let broken = "upstream switchyard_api {\n    server 127.0.0.1:8001 weight=0;\n}\n";
    tree.write("upstream/switchyard.conf", broken);
    let out = tree.nginx(&["-t"]);
    let log = text(&out.stderr);
    assert!(!out.status.success() && log.contains("weight"), "{log}");
}

/// nginx started from a tree, on loopback: `redirect` for the shipped port
/// 80, `tls` for 443 and `plain` for the plain-HTTP server's 8080. Its
/// access log (JSON lines) is its stdout.
struct Nginx {
    process: Process,
    redirect: u16,
    tls: u16,
    plain: u16,
}

impl Nginx {
    fn start(tree: &NginxTree) -> Self {
        let tls_conf = tree.read("conf.d/switchyard.conf");
        let plain_conf = tree.read("conf.d/switchyard-http.conf.example");
        let mut last = String::new();
        for _ in 0..10 {
            let (redirect, tls, plain) = (free_port(), free_port(), free_port());
            let on = |port: u16| format!("listen 127.0.0.1:{port}");
            let conf = replace_once(&tls_conf, "listen 80;", &format!("{};", on(redirect)));
            let conf = replace_once(
                &conf,
                "listen 443 ssl http2;",
                &format!("{} ssl http2;", on(tls)),
            );
            tree.write("conf.d/switchyard.conf", &conf);
            let conf = replace_once(&plain_conf, "listen 8080;", &format!("{};", on(plain)));
            tree.write("conf.d/switchyard-http.conf", &conf);
            tree.check("the live configuration");
            let pid = format!("daemon off; pid {};", tree.path("nginx.pid").display());
            let args = tree.args(&["-g", &pid]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let process = Binary::new(tool("nginx", "nginx")).spawn(&args);
            let health = format!("http://127.0.0.1:{plain}/nginx-health");
            let deadline = Instant::now() + Duration::from_secs(15);
            let up = loop {
                if reqwest::blocking::get(&health).is_ok_and(|r| r.status().is_success()) {
                    break true;
                }
                if process.has_exited() || Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(25));
            };
            let nginx = Self {
                process,
                redirect,
                tls,
                plain,
            };
            if up {
                return nginx;
            }
            last = nginx.process.stderr();
            assert!(
                last.contains("Address already in use"),
                "nginx did not start:\n{last}"
            );
        }
        panic!("nginx found no free ports in 10 tries:\n{last}")
    }

    fn tls_url(&self, path: &str) -> String {
        format!("https://{TLS_HOST}:{}{path}", self.tls)
    }

    fn plain_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.plain)
    }

    /// nginx's access log line for the request `id`, once it is written.
    fn log_line(&self, id: &str) -> Value {
        let what = format!("nginx's access log line for {id}");
        self.process
            .wait_for(&what, Duration::from_secs(10), |seen| {
                let line = seen.stdout().lines().find_map(|l| {
                    let v: Value = serde_json::from_str(l).ok()?;
                    (v["request_id"] == id).then_some(v)
                });
                line
            })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master stops its workers before it
        // exits; killed, it would leave them running, holding the ports.
        if !self.process.has_exited() {
            self.process.terminate();
            let _ = self
                .process
                .try_wait_for(Duration::from_secs(10), |_| None::<()>);
        }
    }
}

/// A client connecting from [`CLIENT_IP`], following no redirect; with
/// `tls`, one that trusts the test certificate and finds the TLS server.
fn client(tls: Option<(&Nginx, &[u8])>) -> Client {
    let mut builder = Client::builder()
        .local_address(IpAddr::V4(CLIENT_IP))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30));
    if let Some((nginx, cert)) = tls {
        let at = SocketAddr::from((Ipv4Addr::LOCALHOST, nginx.tls));
        let cert = reqwest::Certificate::from_pem(cert).unwrap();
        builder = builder.add_root_certificate(cert).resolve(TLS_HOST, at);
    }
    builder.build().unwrap()
}

/// Sends `request`, with the admin `key` and the request id `id` if given.
fn send(request: RequestBuilder, key: Option<&str>, id: Option<&str>) -> Response {
    let mut request = request;
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    request.send().unwrap()
}

/// The one value of header `name`; fails when there are none or several.
fn one_header(r: &Response, name: &str) -> String {
    let values: Vec<&str> = r
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(values.len(), 1, "{name} on {}: {values:?}", r.url());
    values[0].to_owned()
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `openssl s_client` completes a handshake with `version` (`-tls1_2`…).
fn handshakes(port: u16, version: &str) -> bool {
    let out = Command::new(tool("openssl", "openssl"))
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-brief",
        ])
        // The client's own floor out of the way: the server must refuse.
        .args([
            "-servername",
            TLS_HOST,
            version,
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .stdin(Stdio::null())
        .output();
    out.unwrap().status.success()
}

fn redirect_and_tls(nginx: &Nginx, tls: &Client) {
    // Port 80 only redirects.
    let to_80 = format!("http://127.0.0.1:{}/v1/models", nginx.redirect);
    let r = send(client(None).get(to_80), None, None);
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(one_header(&r, "location"), "https://127.0.0.1/v1/models");
    assert!(is_generated_id(&one_header(&r, "x-request-id")));

    // TLS 1.2 and 1.3, nothing older.
    assert!(handshakes(nginx.tls, "-tls1_3"), "TLS 1.3 refused");
    assert!(handshakes(nginx.tls, "-tls1_2"), "TLS 1.2 refused");
    assert!(!handshakes(nginx.tls, "-tls1_1"), "TLS 1.1 accepted");

    // The service's probe through TLS, with HSTS and the slot that answered.
    let r = send(tls.get(nginx.tls_url("/health")), None, None);
    assert_eq!(r.status(), StatusCode::OK);
    let hsts = one_header(&r, "strict-transport-security");
    assert_eq!(hsts, "max-age=63072000; includeSubDomains");
    let slot = one_header(&r, "x-switchyard-slot");
    assert!(slot == "blue" || slot == "green", "{slot}");
    assert_eq!(r.json::<Value>().unwrap()["deployment_slot"], slot.as_str());

    // nginx's own liveness, answered without a replica.
    let r = send(tls.get(nginx.tls_url("/nginx-health")), None, None);
    assert_eq!(r.status(), StatusCode::OK);
    assert!(is_generated_id(&one_header(&r, "x-request-id")));
    assert!(r.headers().get("x-switchyard-slot").is_none());
    assert_eq!(r.text().unwrap(), "ok\n");
}

fn request_ids(nginx: &Nginx, tls: &Client, key: &str, replicas: [&ServerProcess; 2]) {
    // The client's id, one the service accepts: passed on, echoed once.
    let chosen = "client-chosen_id.1:a";
    let r = send(
        tls.get(nginx.tls_url("/v1/models")),
        Some(key),
        Some(chosen),
    );
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(one_header(&r, "x-request-id"), chosen);
    let slot = one_header(&r, "x-switchyard-slot");
    let line = nginx.log_line(chosen);
    let logged = [
        &line["upstream_slot"],
        &line["upstream_status"],
        &line["ssl_protocol"],
    ];
    assert_eq!(
        logged,
        [&json!(slot), &json!("200"), &json!("TLSv1.3")],
        "{line}"
    );

    // None, or one the service would refuse: nginx's own $request_id goes
    // instead, and the service uses it (nginx logged that very id).
    for sent in [None, Some("not/a valid id")] {
        let r = send(tls.get(nginx.tls_url("/v1/models")), Some(key), sent);
        assert_eq!(r.status(), StatusCode::OK);
        let id = one_header(&r, "x-request-id");
        assert!(is_generated_id(&id), "{id}");
        assert_eq!(nginx.log_line(&id)["upstream_status"], "200");
        poll_until(Duration::from_secs(5), || {
            match replicas.iter().any(|s| s.stderr().contains(&id)) {
                true => Ok(()),
                false => Err(format!("no replica logged the request id {id}")),
            }
        });
    }
}

fn client_address(nginx: &Nginx, tls: &Client, key: &str, db: &TestDatabase) {
    // The client claims to be someone else: nginx appends the address it
    // came from, and the service (TRUSTED_PROXIES=127.0.0.1: nginx only)
    // takes the rightmost address it does not trust.
    let request = tls
        .post(nginx.tls_url("/v1/admin/keys"))
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({"name": "behind-nginx", "project": "deploy-test"}));
    let r = send(request, Some(key), Some("xff-through-nginx"));
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let line = nginx.log_line("xff-through-nginx");
    let logged = [&line["remote_addr"], &line["x_forwarded_for"]];
    assert_eq!(
        logged,
        [&json!(CLIENT_IP.to_string()), &json!("198.51.100.7")],
        "{line}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let _context = rt.enter();
    let config = switchyard_testkit::database_config(&db.url, db.kind);
    let store = switchyard_store::Store::connect_lazy(&config).unwrap();
    let entry = poll_until(Duration::from_secs(5), || {
        let entries = rt.block_on(store.recent_audit(200)).unwrap();
        let entry = entries
            .into_iter()
            .find(|e| e.request_id.as_deref() == Some("xff-through-nginx"));
        entry.ok_or_else(|| "no audit record for xff-through-nginx".to_owned())
    });
    let expected = CLIENT_IP.to_string();
    assert_eq!(
        entry.client_ip.as_deref(),
        Some(expected.as_str()),
        "{entry:?}"
    );
}

fn streaming_is_not_buffered(nginx: &Nginx, tls: &Client, key: &str) {
    let started = Instant::now();
    let words = "one two three four five six seven eight nine ten";
    let request = tls
        .post(nginx.tls_url("/v1/chat/completions"))
        .json(&json!({
        "model": "trickle", "stream": true, "messages": [{"role": "user", "content": words}]}));
    let mut r = send(request, Some(key), Some("stream-through-nginx"));
    assert_eq!(r.status(), StatusCode::OK);
    let content_type = one_header(&r, "content-type");
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    one_header(&r, "x-switchyard-slot");
    let (mut body, mut first_chunk, mut reads) = (String::new(), None, 0);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        reads += 1;
        body.push_str(&String::from_utf8_lossy(&buf[..n]));
        if first_chunk.is_none() && body.contains("chat.completion.chunk") {
            first_chunk = Some(started.elapsed());
        }
    }
    let ended = started.elapsed();
    let first = first_chunk.unwrap_or_else(|| panic!("no chunk in {body}"));
    assert!(body.contains("data: [DONE]"), "{body}");
    // Eighteen events, one every 200 ms: about 3.4 s from the first to the
    // last. Held back by a buffer, they would come at once, at the end.
    assert!(
        ended >= first + Duration::from_secs(2),
        "first chunk after {first:?}, the end after {ended:?}: the stream was buffered\n{body}"
    );
    assert!(reads >= 10, "the stream came in {reads} reads:\n{body}");
    assert_eq!(nginx.log_line("stream-through-nginx")["status"], 200);
}

/// Sends `request` on a new connection to `port`; the response's status
/// line and headers (names lowercased), and the reader, at the body.
fn raw_exchange(port: u16, request: &str) -> (String, Vec<(String, String)>, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        match line.trim_end() {
            "" => break,
            l => lines.push(l.to_owned()),
        }
    }
    let status = if lines.is_empty() {
        String::new()
    } else {
        lines.remove(0)
    };
    let headers = lines.iter().filter_map(|l| l.split_once(':'));
    let headers = headers.map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    (status, headers.collect(), reader)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    let matching = headers.iter().filter(|(n, _)| n == name);
    matching.map(|(_, v)| v.as_str()).collect()
}

/// A client's (masked) WebSocket text frame, under 64 KiB.
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let len = u16::try_from(payload.len()).unwrap();
    let mut frame = match u8::try_from(len) {
        Ok(n) if n < 126 => vec![0x81, 0x80 | n],
        _ => [vec![0x81, 0x80 | 126], len.to_be_bytes().to_vec()].concat(),
    };
    frame.extend(mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The next text message from the server (control frames skipped).
fn read_text_frame(r: &mut impl Read) -> String {
    loop {
        let mut head = [0u8; 2];
        r.read_exact(&mut head).unwrap();
        assert_eq!(head[1] & 0x80, 0, "a server's frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                r.read_exact(&mut n).unwrap();
                usize::from(u16::from_be_bytes(n))
            }
            127 => panic!("a message over 64 KiB"),
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).unwrap();
        match head[0] & 0x0f {
            1 => return String::from_utf8(payload).unwrap(),
            8 => panic!("the server closed the WebSocket: {}", text(&payload)),
            _ => continue,
        }
    }
}

fn websocket_upgrade(nginx: &Nginx, key: &str) {
    // RFC 6455's example key, and so its example answer.
    let (status, headers, mut reader) = raw_exchange(
        nginx.plain,
        &format!(
            "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {key}\r\n\
             X-Request-ID: ws-through-nginx\r\n\r\n"
        ),
    );
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols", "{headers:?}");
    assert_eq!(header(&headers, "upgrade"), ["websocket"]);
    assert_eq!(
        header(&headers, "sec-websocket-accept"),
        ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
    );
    assert_eq!(header(&headers, "x-request-id"), ["ws-through-nginx"]);
    assert_eq!(
        header(&headers, "x-switchyard-slot").len(),
        1,
        "{headers:?}"
    );

    // Frames both ways through the proxy: a chat request, its completion.
    let message = json!({"type": "chat", "id": "ws-1", "request": {"model": "fast",
        "messages": [{"role": "user", "content": "hello over a websocket"}]}});
    let mut stream = reader.get_ref().try_clone().unwrap();
    stream
        .write_all(&masked_text_frame(message.to_string().as_bytes()))
        .unwrap();
    let reply: Value = serde_json::from_str(&read_text_frame(&mut reader)).unwrap();
    assert_eq!(
        [&reply["type"], &reply["id"]],
        [&json!("chat.completion"), &json!("ws-1")]
    );
    assert!(
        reply.to_string().contains("hello over a websocket"),
        "{reply}"
    );
    let _ = stream.write_all(&[0x88, 0x80, 0, 0, 0, 0]); // close
    assert_eq!(nginx.log_line("ws-through-nginx")["status"], 101);
}

fn nginx_answers_by_itself(nginx: &Nginx) {
    // Too large a body: refused before it is read, in the service's format.
    let (status, headers, mut reader) = raw_exchange(
        nginx.plain,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: 20000000\r\n\
         X-Request-ID: too-large-for-nginx\r\nConnection: close\r\n\r\n",
    );
    let mut body = String::new();
    let _ = reader.read_to_string(&mut body);
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert_eq!(header(&headers, "x-request-id"), ["too-large-for-nginx"]);
    assert_eq!(header(&headers, "content-type"), ["application/json"]);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large", "{error}");
    let line = nginx.log_line("too-large-for-nginx");
    assert_eq!(
        [&line["status"], &line["upstream_addr"]],
        [&json!(413), &json!("")]
    );

    // /metrics is per replica: scraped directly, not through the proxy.
    let r = send(client(None).get(nginx.plain_url("/metrics")), None, None);
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(is_generated_id(&one_header(&r, "x-request-id")));
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "not_found");
}

fn weights_choose_the_slot(
    nginx: &Nginx,
    tree: &NginxTree,
    blue: &ServerProcess,
    green: &ServerProcess,
) {
    let addr = |slot: &str| match slot {
        "blue" => blue.addr().to_string(),
        _ => green.addr().to_string(),
    };
    // 50/50, as nginx was started: on one keep-alive connection (so one
    // worker), the slots take turns.
    let plain = client(None);
    let mut seen = BTreeMap::<String, u32>::new();
    for i in 0..10 {
        let id = format!("split-{i}");
        let r = send(plain.get(nginx.plain_url("/health")), None, Some(&id));
        let slot = one_header(&r, "x-switchyard-slot");
        let line = nginx.log_line(&id);
        assert_eq!(
            [&line["upstream_slot"], &line["upstream_addr"]],
            [&json!(slot), &json!(addr(&slot))]
        );
        *seen.entry(slot).or_default() += 1;
    }
    let (b, g) = (seen.get("blue").copied(), seen.get("green").copied());
    assert!(b >= Some(3) && g >= Some(3), "50/50 gave {seen:?}");
    drop(plain);

    // Everything on green, written the way `switchyard rollout` does it,
    // then the reload it runs (`nginx -s reload` is SIGHUP).
    let all_green = [("blue", blue.addr(), 0), ("green", green.addr(), 100)];
    tree.write("upstream/switchyard.conf", &upstream_file(&all_green));
    nginx.process.signal(Signal::SIGHUP);
    // Until the new workers answer (the old ones stop accepting at once).
    poll_until(Duration::from_secs(20), || {
        let slots: Vec<String> = (0..5)
            .map(
                |_| match client(None).get(nginx.plain_url("/health")).send() {
                    Ok(r) => one_header(&r, "x-switchyard-slot"),
                    Err(e) => e.to_string(),
                },
            )
            .collect();
        match slots.iter().all(|s| s == "green") {
            true => Ok(()),
            false => Err(format!("after the reload: {slots:?}")),
        }
    });
    let plain = client(None);
    for i in 0..20 {
        let id = format!("all-green-{i}");
        let r = send(plain.get(nginx.plain_url("/health")), None, Some(&id));
        assert_eq!(one_header(&r, "x-switchyard-slot"), "green", "request {i}");
        assert_eq!(nginx.log_line(&id)["upstream_addr"], addr("green"));
    }
}

#[test]
fn nginx_in_front_of_a_blue_and_a_green_slot() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(FakeOpenAi::start());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let models = "[[models]]\nid = \"trickle\"\nbase_url = \"BASE\"\nupstream_model = \"trickle-200\"\n\
                  retries = 0\n\n[[models]]\nid = \"fast\"\nbase_url = \"BASE\"\nupstream_model = \"echo-1\"\n";
    std::fs::write(&config, models.replace("BASE", &upstream.base_url())).unwrap();
    // One database for both slots, as in production: blue creates it and
    // the admin key; green finds both.
    let db = TestDatabase::sqlite();
    let slot = |name: &str| {
        switchyard(
            dir.path(),
            &[
                ("DATABASE_URL", db.url.as_str()),
                ("SWITCHYARD_CONFIG", config.to_str().unwrap()),
                ("DEPLOYMENT_SLOT", name),
                // nginx connects from 127.0.0.1; nobody else is believed.
                ("TRUSTED_PROXIES", "127.0.0.1"),
                ("TASK_WORKERS", "0"),
            ],
        )
        .serve()
    };
    let blue = slot("blue");
    let key = blue.printed_key();
    let green = slot("green");

    let tree = NginxTree::new();
    let halves = [("blue", blue.addr(), 50), ("green", green.addr(), 50)];
    tree.write("upstream/switchyard.conf", &upstream_file(&halves));
    let nginx = Nginx::start(&tree);
    let cert = std::fs::read(tree.path("tls/fullchain.pem")).unwrap();
    let tls = client(Some((&nginx, &cert)));

    redirect_and_tls(&nginx, &tls);
    request_ids(&nginx, &tls, &key, [&blue, &green]);
    client_address(&nginx, &tls, &key, &db);
    streaming_is_not_buffered(&nginx, &tls, &key);
    websocket_upgrade(&nginx, &key);
    nginx_answers_by_itself(&nginx);
    weights_choose_the_slot(&nginx, &tree, &blue, &green);
    for line in nginx.process.stdout().lines() {
        let parsed = serde_json::from_str::<Value>(line);
        assert!(
            parsed.is_ok(),
            "an access log line that is not JSON: {line}"
        );
    }
}

// ---------------------------------------------------------------------------
// pgbouncer

const APP_PASSWORD: &str = "switchyard-test-password";
const ADMIN_PASSWORD: &str = "admin-test-password";
/// What the test's wrapper changes: where pgbouncer listens, logs, keeps
/// its pid and finds its auth file. Everything else is the shipped value.
const OVERRIDDEN: &[&str] = &[
    "listen_addr",
    "listen_port",
    "unix_socket_dir",
    "logfile",
    "pidfile",
    "auth_file",
];

/// `psql -c sql`: the rows by column name; fails the test when psql does.
fn psql_rows(url: &str, sql: &str) -> Vec<BTreeMap<String, String>> {
    let out = Command::new(tool("psql", "postgresql-client"))
        .args([
            url,
            "-X",
            "-q",
            "-A",
            "-P",
            "footer=off",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "psql `{sql}`: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let names: Vec<&str> = lines.next().unwrap_or_default().split('|').collect();
    let row = |l: &str| {
        names
            .iter()
            .zip(l.split('|'))
            .map(|(n, v)| ((*n).to_owned(), v.to_owned()))
            .collect()
    };
    lines.map(row).collect()
}

/// The `key = value` settings in the `[pgbouncer]` section of an ini file.
fn pgbouncer_settings(ini: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut settings = Vec::new();
    for line in ini
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
    {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if section == "pgbouncer" {
            let (key, value) = line.split_once('=').unwrap();
            settings.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    settings
}

/// pgbouncer with the shipped pgbouncer.ini, in front of database
/// `switchyard` on the PostgreSQL server at `pg_port`.
struct Pgbouncer {
    process: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Pgbouncer {
    fn start(pg_port: u16, app_secret: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sy-pgbouncer-")
            .tempdir_in("/tmp");
        let dir = dir.unwrap();
        let shipped = dir.path().join("pgbouncer.ini");
        std::fs::copy(deploy_path("pgbouncer/pgbouncer.ini"), &shipped).unwrap();
        // The auth file: the shipped example with the test's secrets for the
        // placeholders (the application's, its SCRAM secret from pg_authid).
        let example = read(&deploy_path("pgbouncer/userlist.txt.example"));
        let secrets = [
            ("\"switchyard\" ", app_secret),
            ("\"pgbouncer_admin\" ", ADMIN_PASSWORD),
            ("\"pgbouncer_stats\" ", "stats-test-password"),
        ];
        let userlist: Vec<String> = example
            .lines()
            .map(
                |line| match secrets.iter().find(|(user, _)| line.starts_with(user)) {
                    Some((user, secret)) => format!("{user}\"{secret}\""),
                    None => line.to_owned(),
                },
            )
            .collect();
        assert_eq!(
            userlist.iter().filter(|l| l.starts_with('"')).count(),
            3,
            "{example}"
        );
        let auth_file = dir.path().join("userlist.txt");
        std::fs::write(&auth_file, userlist.join("\n") + "\n").unwrap();
        let wrapper = dir.path().join("test.ini");
        let mut last = String::new();
        for _ in 0..10 {
            let port = free_port();
            // pgbouncer starts every `[pgbouncer]` section from the
            // defaults: the overrides go on in the section the shipped file
            // ends in instead of opening one of their own.
            let ini = format!(
                ";; The shipped settings, then what only this test changes.\n[pgbouncer]\n\
                 %include {shipped}\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nlogfile =\npidfile =\nauth_file = {auth}\n\n\
                 [databases]\nswitchyard = host=127.0.0.1 port={pg_port} dbname=switchyard\n",
                shipped = shipped.display(),
                auth = auth_file.display()
            );
            std::fs::write(&wrapper, ini).unwrap();
            let wrapper = wrapper.display().to_string();
            // pgbouncer refuses to run as root.
            let mut args = vec![wrapper.as_str()];
            if is_root() {
                let chown = Command::new("chown")
                    .arg("-R")
                    .arg("postgres:postgres")
                    .arg(dir.path())
                    .status();
                assert!(chown.unwrap().success(), "chown of the pgbouncer directory");
                args = vec!["-u", "postgres", &wrapper];
            }
            let process = Binary::new(tool("pgbouncer", "pgbouncer")).spawn(&args);
            let up = process.try_wait_for(Duration::from_secs(10), |seen| {
                seen.stderr().contains("process up").then_some(())
            });
            if up.is_ok() {
                return Self {
                    process,
                    port,
                    _dir: dir,
                };
            }
            last = process.stderr();
            assert!(
                last.contains("Address already in use"),
                "pgbouncer did not start:\n{last}"
            );
        }
        panic!("pgbouncer found no free port in 10 tries:\n{last}")
    }

    fn admin(&self, sql: &str) -> Vec<BTreeMap<String, String>> {
        let url = format!(
            "postgres://pgbouncer_admin:{ADMIN_PASSWORD}@127.0.0.1:{}/pgbouncer",
            self.port
        );
        psql_rows(&url, sql)
    }

    fn app_url(&self, password: &str) -> String {
        format!(
            "postgres://switchyard:{password}@127.0.0.1:{}/switchyard",
            self.port
        )
    }
}

#[test]
fn pgbouncer_with_the_shipped_settings_carries_the_service() {
    let pg = PrivatePostgres::start();
    let role = format!("CREATE ROLE switchyard LOGIN PASSWORD '{APP_PASSWORD}'");
    switchyard_testkit::psql(&pg.url(), &role);
    switchyard_testkit::psql(&pg.url(), "CREATE DATABASE switchyard OWNER switchyard");
    let secret = psql_rows(
        &pg.url(),
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'switchyard'",
    );
    let secret = secret[0]["rolpassword"].clone();
    assert!(secret.starts_with("SCRAM-SHA-256$"), "{secret}");
    let bouncer = Pgbouncer::start(pg.port, &secret);

    // The shipped settings are the ones in effect.
    let config: BTreeMap<String, String> = bouncer
        .admin("SHOW CONFIG")
        .into_iter()
        .map(|row| (row["key"].clone(), row["value"].clone()))
        .collect();
    for (key, value) in [
        ("pool_mode", "transaction"),
        ("max_client_conn", "1000"),
        ("default_pool_size", "25"),
        ("reserve_pool_size", "5"),
        ("server_reset_query", ""),
        ("ignore_startup_parameters", "extra_float_digits,options"),
        ("auth_type", "scram-sha-256"),
        ("admin_users", "pgbouncer_admin"),
        ("stats_users", "pgbouncer_stats"),
    ] {
        assert_eq!(config.get(key).map(String::as_str), Some(value), "{key}");
    }
    let shipped = pgbouncer_settings(&read(&deploy_path("pgbouncer/pgbouncer.ini")));
    assert!(shipped.len() > 20, "{shipped:?}");
    for (key, value) in shipped
        .iter()
        .filter(|(k, _)| !OVERRIDDEN.contains(&k.as_str()))
    {
        assert_eq!(
            config.get(key),
            Some(value),
            "{key} is not the shipped value"
        );
    }
    let databases = bouncer.admin("SHOW DATABASES");
    let db = databases.iter().find(|d| d["name"] == "switchyard");
    let db = db.unwrap_or_else(|| panic!("{databases:?}"));
    let pool = [&db["port"], &db["pool_size"], &db["reserve_pool"]].map(String::as_str);
    assert_eq!(pool, [pg.port.to_string().as_str(), "25", "5"], "{db:?}");

    // SCRAM is enforced: a wrong password is refused.
    let wrong = Command::new(tool("psql", "postgresql-client"))
        .args([&bouncer.app_url("wrong-password"), "-X", "-c", "SELECT 1"])
        .output()
        .unwrap();
    let refusal = text(&wrong.stderr);
    assert!(
        !wrong.status.success() && refusal.contains("SASL authentication failed"),
        "{refusal}"
    );

    // The service through it, in transaction pooling mode.
    let work = tempfile::tempdir().unwrap();
    let url = bouncer.app_url(APP_PASSWORD);
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_TRANSACTION_POOLING", "true"),
        ("DATABASE_POOL_SIZE", "4"),
    ];
    let first = switchyard(work.path(), &env).run(&["migrate"]);
    assert!(
        text(&first.stdout).contains("applied"),
        "{}{}",
        text(&first.stdout),
        text(&first.stderr)
    );
    let second = switchyard(work.path(), &env).run(&["migrate"]);
    assert!(
        text(&second.stdout).contains("up to date"),
        "{}",
        text(&second.stderr)
    );
    let server = switchyard(work.path(), &env).serve();
    let admin_key = server.printed_key();
    let http = Client::new();
    assert_eq!(
        send(http.get(server.url("/db-check")), None, None).status(),
        StatusCode::OK
    );
    let create = http
        .post(server.url("/v1/admin/keys"))
        .json(&json!({"name": "through-pgbouncer", "project": "deploy-test"}));
    let created: Value = send(create, Some(&admin_key), Some("via-pgbouncer"))
        .json()
        .unwrap();
    let user_key = created["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    // Eight clients at once: their transactions share server connections.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..5 {
                    let keys = send(
                        http.get(server.url("/v1/admin/keys")),
                        Some(&admin_key),
                        None,
                    );
                    assert_eq!(keys.status(), StatusCode::OK);
                    let models = send(http.get(server.url("/v1/models")), Some(user_key), None);
                    assert_eq!(models.status(), StatusCode::OK);
                }
            });
        }
    });
    let key_url = server.url(&format!(
        "/v1/admin/keys/{}",
        created["id"].as_str().unwrap()
    ));
    let revoked = send(http.delete(key_url), Some(&admin_key), None);
    assert!(revoked.status().is_success(), "{}", revoked.status());

    // The writes are in PostgreSQL (read directly, not through pgbouncer),
    // and the transactions went through the switchyard pool, on no more
    // server connections than it allows.
    let direct = format!("postgres://postgres@127.0.0.1:{}/switchyard", pg.port);
    let audit = psql_rows(
        &direct,
        "SELECT count(*) AS n FROM audit_log WHERE request_id = 'via-pgbouncer'",
    );
    assert_eq!(audit[0]["n"], "1");
    let stats = bouncer.admin("SHOW STATS");
    let pool = stats.iter().find(|s| s["database"] == "switchyard");
    let pool = pool.unwrap_or_else(|| panic!("{stats:?}"));
    let transactions: u64 = pool["total_xact_count"].parse().unwrap();
    assert!(transactions > 40, "{pool:?}");
    let servers = bouncer.admin("SHOW SERVERS");
    let in_use = servers
        .iter()
        .filter(|s| s["database"] == "switchyard")
        .count();
    assert!((1..=30).contains(&in_use), "{servers:?}");

    let (code, _, logs) = server.stop();
    assert_eq!(code, 0, "{logs}");
    // No errors but the wrong password's.
    let log = bouncer.process.stderr();
    let errors = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARNING "));
    let errors: Vec<&str> = errors
        .filter(|l| !l.contains("authentication failed"))
        .collect();
    assert!(errors.is_empty(), "{log}");
}
