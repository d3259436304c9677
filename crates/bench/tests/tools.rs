//! The two load-test binaries together, as the benchmark script runs them:
//! `sse-probe` timing streamed calls against `fake-upstream`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Upstream {
    child: Child,
    url: String,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts fake-upstream on a free port (it prints the one it chose).
fn upstream(delay_ms: u64) -> Upstream {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-upstream"))
        .args(["--port", "0", "--delay-ms", &delay_ms.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    Upstream {
        child,
        url: format!("http://{addr}/v1/chat/completions"),
    }
}

fn probe(url: &str, requests: usize) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sse-probe"))
        .args(["--url", url, "--requests", &requests.to_string()])
        .output()
        .unwrap()
}

#[test]
fn probe_times_streams_to_the_first_data_line() {
    let up = upstream(25);
    let out = probe(&up.url, 10);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["requests"].as_u64(), r["sent"].as_u64()),
        (Some(10), Some(60))
    );
    assert_eq!(r["errors"], 0);
    let (first, total) = (&r["ttft_ms"], &r["total_ms"]);
    // The upstream waits 25 ms before its first byte: the probe's first-token
    // time includes it and never exceeds the whole call.
    for q in ["p50", "p90", "p99", "max"] {
        let (f, t) = (first[q].as_f64().unwrap(), total[q].as_f64().unwrap());
        assert!(f >= 25.0, "{q}: first data after {f} ms");
        assert!(f <= t, "{q}: first data {f} ms after the end {t} ms");
    }
}

#[test]
fn probe_fails_loudly_without_a_stream() {
    let up = upstream(0);
    // A non-streaming endpoint (404 here) is an error, not a zero figure.
    let out = probe(&up.url.replace("/chat/completions", "/nothing"), 5);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 404"));
}
