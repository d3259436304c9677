//! TLS end to end, as an operator runs it: `switchyard serve` over HTTPS
//! with PostgreSQL (`sslmode=verify-full`) and Redis (`rediss://`) over TLS,
//! every certificate issued by an authority the test makes; the certificate
//! swapped on SIGHUP (a bad one refused, the running one kept); its days to
//! expiry in `/metrics`; and `config check` and `preflight` judging good,
//! expiring, expired and broken certificates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use switchyard_testkit::process::{Binary, ServerProcess, Signal};
use switchyard_testkit::{poll_until, PrivatePostgres, PrivateRedis, TestCa};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn switchyard(envs: &[(&str, &str)]) -> Binary {
    Binary::new(BIN)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .envs(envs)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A client that trusts only `ca_pem`, on a connection of its own (so each
/// call sees the certificate served now).
fn https_client(ca_pem: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET over HTTPS: the status, the body and how many days the certificate
/// the server presented has left.
fn get(ca_pem: &str, server: &ServerProcess, path: &str) -> Result<(u16, String, f64), String> {
    let r = https_client(ca_pem)
        .get(server.url(path))
        .send()
        .map_err(|e| format!("{e:?}"))?;
    let der = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .ok_or("no peer certificate")?;
    let info = switchyard_server::tls::describe_der(&der)?;
    let days = info.days_left(chrono::Utc::now());
    Ok((r.status().as_u16(), r.text().unwrap_or_default(), days))
}

/// The value of the expiry gauge in a `/metrics` body.
fn expiry_gauge(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_tls_certificate_expiry_days "))
        .unwrap_or_else(|| panic!("no switchyard_tls_certificate_expiry_days:\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn serves_https_over_tls_backends_and_swaps_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Switchyard test CA");
    let root = ca.write(dir.path(), "ca.pem");
    let root = root.to_str().unwrap();
    let pg = PrivatePostgres::start_with_tls(&ca.issue(&["localhost"]));
    let redis = PrivateRedis::start_with_tls(&ca.issue(&["localhost", "127.0.0.1"]));

    // verify-full to an address the database's certificate does not name:
    // refused, saying which names it holds and what to check.
    let wrong_host = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={root}",
        pg.port
    );
    let out = switchyard(&[("DATABASE_URL", &wrong_host)]).run(&["migrate"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("certificate not valid for name \"127.0.0.1\"")
            && err.contains("sslmode=verify-full the host in the URL must be a name"),
        "{err}"
    );

    let database_url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={root}",
        pg.port
    );
    let (cert, key) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let env = [
        ("DATABASE_URL", database_url.as_str()),
        ("REDIS_URL", &redis.url()),
        ("REDIS_TLS_CA_FILE", root),
        ("TLS_CERT_FILE", cert),
        ("TLS_KEY_FILE", key),
    ];
    let out = switchyard(&env).run(&["config", "check"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("CN=localhost: valid until"), "{said}");

    let server = switchyard(&env).start_server(&[]);
    assert!(
        server.base_url().starts_with("https://"),
        "{}",
        server.base_url()
    );
    let ready = poll_until(Duration::from_secs(30), || {
        match get(&ca.cert_pem, &server, "/ready") {
            Ok((200, _, days)) => Ok(days),
            other => Err(format!("{other:?}")),
        }
    });
    assert!((89.0..=90.0).contains(&ready), "{ready}");
    let (status, body, _) = get(&ca.cert_pem, &server, "/redis-check").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = get(&ca.cert_pem, &server, "/db-check").unwrap();
    assert_eq!(status, 200, "{body}");
    // Plain HTTP finds no plain listener.
    let plain = reqwest::blocking::Client::new()
        .get(format!("http://{}/health", server.addr()))
        .timeout(Duration::from_secs(5))
        .send();
    assert!(plain.is_err(), "{plain:?}");
    let (_, metrics, _) = get(&ca.cert_pem, &server, "/metrics").unwrap();
    assert!((89.0..=90.0).contains(&expiry_gauge(&metrics)), "{metrics}");

    // A key that is not the certificate's: refused, the running one kept.
    let stray = ca.issue(&["localhost"]);
    std::fs::write(key, &stray.key_pem).unwrap();
    server.signal(Signal::SIGHUP);
    let line = server.wait_for(
        "the reload to be refused",
        Duration::from_secs(10),
        |seen| {
            seen.stderr()
                .lines()
                .find(|l| l.contains("TLS certificate reload rejected"))
                .map(str::to_owned)
        },
    );
    assert!(
        line.contains("TLS_KEY_FILE") && line.contains("is not the private key"),
        "{line}"
    );
    let (status, _, days) = get(&ca.cert_pem, &server, "/health").unwrap();
    assert_eq!(status, 200);
    assert!(days > 89.0, "{days}");

    // A renewed pair with 10 days left: new connections get it, and the
    // gauge and the log follow.
    ca.issue_between(&["localhost", "127.0.0.1"], -1, 10)
        .write(dir.path(), "server");
    server.signal(Signal::SIGHUP);
    poll_until(Duration::from_secs(10), || {
        match get(&ca.cert_pem, &server, "/health") {
            Ok((200, _, days)) if days < 11.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (_, metrics, _) = get(&ca.cert_pem, &server, "/metrics").unwrap();
    let gauge = expiry_gauge(&metrics);
    assert!((9.0..=10.0).contains(&gauge), "{gauge}");
    server.wait_for("the expiry warning", Duration::from_secs(10), |seen| {
        seen.stderr()
            .contains("the HTTPS certificate expires soon")
            .then_some(())
    });
    let (code, _, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
}

/// `config check` and `preflight --json` (its `tls` line) with the given
/// certificate and key files.
fn judge(dir: &Path, cert: &str, key: &str) -> (Output, Value) {
    let env = [("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)];
    let check = switchyard(&env).current_dir(dir).run(&["config", "check"]);
    let preflight = switchyard(&env)
        .current_dir(dir)
        .run(&["preflight", "--json"]);
    let report: Value = serde_json::from_slice(&preflight.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&preflight.stdout)));
    let tls = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tls")
        .unwrap_or_else(|| panic!("no tls line: {report}"))
        .clone();
    (check, tls)
}

#[test]
fn config_check_and_preflight_judge_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Switchyard test CA");
    let write = |name: &str, from: i64, until: i64| {
        let (c, k) = ca
            .issue_between(&["api.example.test"], from, until)
            .write(dir.path(), name);
        (c.display().to_string(), k.display().to_string())
    };

    let (cert, key) = write("good", -1, 90);
    let (check, tls) = judge(dir.path(), &cert, &key);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(text(&check.stderr).is_empty(), "{}", text(&check.stderr));
    assert_eq!(tls["verdict"], "pass", "{tls}");
    assert!(
        tls["detail"]
            .as_str()
            .unwrap()
            .starts_with("CN=api.example.test: valid until"),
        "{tls}"
    );

    let (cert, key) = write("soon", -80, 5);
    let (check, tls) = judge(dir.path(), &cert, &key);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stderr).contains("warning: TLS_CERT_FILE: the certificate expires in 4 days"),
        "{}",
        text(&check.stderr)
    );
    assert_eq!(tls["verdict"], "warn", "{tls}");

    let (cert, key) = write("expired", -90, -1);
    let (check, tls) = judge(dir.path(), &cert, &key);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        text(&check.stderr)
            .contains("TLS_CERT_FILE: the certificate is expired: CN=api.example.test: expired on"),
        "{}",
        text(&check.stderr)
    );
    assert_eq!(tls["verdict"], "fail", "{tls}");

    let (cert, _) = write("mismatched", -1, 90);
    let (check, tls) = judge(dir.path(), &cert, &key);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        text(&check.stderr).contains("TLS_KEY_FILE: `")
            && text(&check.stderr).contains("is not the private key"),
        "{}",
        text(&check.stderr)
    );
    assert_eq!(tls["verdict"], "fail", "{tls}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let (check, tls) = judge(dir.path(), garbage.to_str().unwrap(), &key);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        text(&check.stderr).contains("holds no PEM certificate"),
        "{}",
        text(&check.stderr)
    );
    assert_eq!(tls["verdict"], "fail", "{tls}");
}
