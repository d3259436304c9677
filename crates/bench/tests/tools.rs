//! The load-test binaries together, as the benchmark script runs them:
//! `sse-probe` timing streamed calls against `fake-upstream`, directly and
//! through `bare-proxy`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running tool, killed when dropped.
struct Server {
    child: Child,
    base: String,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a tool on a free port (it prints the address it chose).
fn serve(bin: &str, args: &[&str]) -> Server {
    let mut child = Command::new(bin)
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = format!("http://{}", line.trim().rsplit(' ').next().unwrap());
    Server {
        child,
        url: format!("{base}/v1/chat/completions"),
        base,
    }
}

fn upstream(delay_ms: u64) -> Server {
    serve(
        env!("CARGO_BIN_EXE_fake-upstream"),
        &["--delay-ms", &delay_ms.to_string()],
    )
}

fn bare_proxy(upstream: &Server, flags: &[&str]) -> Server {
    let mut args = vec!["--upstream", upstream.base.as_str()];
    args.extend_from_slice(flags);
    serve(env!("CARGO_BIN_EXE_bare-proxy"), &args)
}

fn probe(url: &str, requests: usize) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sse-probe"))
        .args(["--url", url, "--requests", &requests.to_string()])
        .output()
        .unwrap()
}

/// The probe's report of a run that must succeed.
fn probed(url: &str, requests: usize) -> serde_json::Value {
    let out = probe(url, requests);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn probe_times_streams_to_the_first_data_line() {
    let up = upstream(25);
    let r = probed(&up.url, 10);
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

/// A plain chat completion's JSON answer.
async fn chat(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .post(url)
        .body(r#"{"model":"bench","messages":[]}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The bare proxy passes on the method, path, body and status, and streams.
#[tokio::test]
async fn bare_proxy_forwards_calls_and_streams() {
    let up = upstream(0);
    let proxy = bare_proxy(&up, &[]);
    let client = reqwest::Client::new();
    let answer = chat(&client, &proxy.url).await;
    assert_eq!(answer["usage"]["total_tokens"], 22);
    let models = client
        .get(format!("{}/v1/models", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    assert_eq!(
        models.json::<serde_json::Value>().await.unwrap()["data"][0]["id"],
        "bench"
    );
    // The upstream's own 400 for a body that is not JSON comes through.
    let bad = client.post(&proxy.url).body("nope").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let missing = client
        .get(format!("{}/nothing", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let r = tokio::task::spawn_blocking({
        let url = proxy.url.clone();
        move || probed(&url, 10)
    })
    .await
    .unwrap();
    assert_eq!(
        (r["sent"].as_u64(), r["errors"].as_u64()),
        (Some(60), Some(0))
    );
}

/// An upstream that is gone is a 502 from the proxy, not a hang.
#[tokio::test]
async fn bare_proxy_answers_502_without_an_upstream() {
    let up = upstream(0);
    let proxy = bare_proxy(&up, &[]);
    drop(up);
    let status = reqwest::Client::new()
        .post(&proxy.url)
        .body("{}")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 502);
}

/// On the current-thread runtime too.
#[tokio::test]
async fn bare_proxy_forwards_on_the_current_thread_runtime() {
    let up = upstream(0);
    let proxy = bare_proxy(&up, &["--current-thread"]);
    let answer = chat(&reqwest::Client::new(), &proxy.url).await;
    assert_eq!(answer["usage"]["total_tokens"], 22);
}
