//! Time to first token through a streaming chat endpoint: requests sent one
//! after another (so queueing does not blur the figure), each timed from
//! sending to the first server-sent `data:` chunk and to the end of the
//! stream. Prints one JSON object with percentiles in milliseconds.
//!
//!   sse-probe --url http://127.0.0.1:8080/v1/chat/completions --key sy_… [--requests 1000]

use clap::Parser;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Measures streaming time-to-first-token")]
struct Args {
    /// The chat completions URL.
    #[arg(long)]
    url: String,
    /// Bearer token, if the endpoint needs one.
    #[arg(long)]
    key: Option<String>,
    /// The model to ask for.
    #[arg(long, default_value = "bench")]
    model: String,
    /// Timed requests (after 50 untimed warm-up requests).
    #[arg(long, default_value_t = 1000)]
    requests: usize,
}

struct Sample {
    first: Duration,
    total: Duration,
}

async fn one(
    client: &reqwest::Client,
    args: &Args,
    body: &serde_json::Value,
) -> Result<Sample, String> {
    let started = Instant::now();
    let mut req = client.post(&args.url).json(body);
    if let Some(k) = &args.key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut stream = resp.bytes_stream();
    let mut first = None;
    let mut seen = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if first.is_none() {
            seen.extend_from_slice(&chunk);
            if seen.windows(5).any(|w| w == b"data:") {
                first = Some(started.elapsed());
            }
        }
    }
    let total = started.elapsed();
    let first = first.ok_or("the stream carried no data")?;
    Ok(Sample { first, total })
}

fn percentiles(mut v: Vec<Duration>) -> serde_json::Value {
    v.sort();
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    serde_json::json!({"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)})
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "model": args.model,
        "stream": true,
        "messages": [{"role": "user", "content": "What is the capital of Germany?"}],
    });
    for _ in 0..50 {
        one(&client, &args, &body).await?;
    }
    let mut samples = Vec::with_capacity(args.requests);
    let mut errors = 0usize;
    let mut last_error = None;
    for _ in 0..args.requests {
        match one(&client, &args, &body).await {
            Ok(s) => samples.push(s),
            Err(e) => {
                errors += 1;
                last_error = Some(e);
            }
        }
    }
    let out = serde_json::json!({
        "requests": args.requests,
        // Every request sent, warm-up included: each leaves a usage row.
        "sent": args.requests + 50,
        "errors": errors,
        "last_error": last_error,
        "ttft_ms": percentiles(samples.iter().map(|s| s.first).collect()),
        "total_ms": percentiles(samples.iter().map(|s| s.total).collect()),
    });
    // The result is this tool's output.
    #[allow(clippy::print_stdout)]
    {
        println!("{out}");
    }
    Ok(())
}
