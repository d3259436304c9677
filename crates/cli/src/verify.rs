//! `switchyard verify`: the post-deployment checks against a running
//! service — liveness, readiness, database, Redis, an authenticated model
//! list and, when asked, one chat completion — each pass or fail with the
//! reason. Also the first step of every rollout, against the new slot.

use crate::report::Check;
use clap::Args;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The service's base URL, e.g. https://api.example.com or
    /// http://127.0.0.1:8001 (one slot).
    #[arg(long)]
    pub url: String,
    /// An API key for the authenticated checks (or SWITCHYARD_VERIFY_KEY).
    #[arg(long, env = "SWITCHYARD_VERIFY_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Also make one chat completion with this model (it costs a call).
    #[arg(long)]
    pub chat_model: Option<String>,
    /// Seconds each request may take.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// GET `path` and the JSON it answered (or why there was none).
async fn get(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    key: Option<&str>,
) -> (Result<(u16, Value), String>, Duration) {
    let started = Instant::now();
    let mut req = http.get(format!("{base}{path}"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let result = match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            Ok((status, r.json::<Value>().await.unwrap_or(Value::Null)))
        }
        Err(e) => Err(describe(&e)),
    };
    (result, started.elapsed())
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within the timeout".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    }
}

/// A probe that is healthy when it answers 200; the JSON field `field`
/// explains a failure.
fn probe(name: &str, got: Result<(u16, Value), String>, took: Duration, field: &str) -> Check {
    match got {
        Ok((200, body)) => {
            let detail = body[field].as_str().unwrap_or("ok").to_owned();
            Check::pass(name, format!("200 {detail}")).took(took)
        }
        Ok((status, body)) => {
            let what = body[field].as_str().unwrap_or("");
            let why = body["error"]["message"]
                .as_str()
                .or_else(|| body["error"].as_str())
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            Check::fail(name, format!("{status} {what}{why}").trim().to_owned()).took(took)
        }
        Err(e) => Check::fail(name, e).took(took),
    }
}

/// Runs the checks; each is independent, so every failure is reported.
pub async fn run_checks(args: &VerifyArgs) -> Vec<Check> {
    let base = args.url.trim_end_matches('/');
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()
    {
        Ok(c) => c,
        Err(e) => return vec![Check::fail("client", e.to_string())],
    };
    let mut checks = Vec::new();
    let (got, took) = get(&http, base, "/health", None).await;
    checks.push(probe("health", got, took, "status"));
    let (got, took) = get(&http, base, "/ready", None).await;
    checks.push(probe("ready", got, took, "status"));
    let (got, took) = get(&http, base, "/db-check", None).await;
    checks.push(probe("database", got, took, "status"));
    let (got, took) = get(&http, base, "/redis-check", None).await;
    checks.push(match got {
        Ok((200, body)) if body["status"] == "disabled" => {
            Check::pass("redis", "not configured (REDIS_URL unset)").took(took)
        }
        other => probe("redis", other, took, "status"),
    });
    match &args.key {
        None => checks.push(Check::warn(
            "models",
            "skipped: no --key for the authenticated checks",
        )),
        Some(key) => {
            let (got, took) = get(&http, base, "/v1/models", Some(key)).await;
            checks.push(match got {
                Ok((200, body)) => {
                    let n = body["data"].as_array().map_or(0, Vec::len);
                    if n > 0 {
                        Check::pass("models", format!("{n} models listed")).took(took)
                    } else {
                        Check::fail("models", "the catalog is empty").took(took)
                    }
                }
                other => probe("models", other, took, "status"),
            });
            if let Some(model) = &args.chat_model {
                checks.push(chat(&http, base, key, model).await);
            }
        }
    }
    checks
}

async fn chat(http: &reqwest::Client, base: &str, key: &str, model: &str) -> Check {
    let started = Instant::now();
    let body = serde_json::json!({"model": model, "max_tokens": 16,
        "messages": [{"role": "user", "content": "Reply with the word ok."}]});
    let sent = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await;
    let check = match sent {
        Ok(r) if r.status().is_success() => {
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let tokens = v["usage"]["total_tokens"].as_u64().unwrap_or(0);
            Check::pass("chat", format!("`{model}` answered ({tokens} tokens)"))
        }
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let why = v["error"]["message"].as_str().unwrap_or("").to_owned();
            Check::fail("chat", format!("{status} {why}").trim().to_owned())
        }
        Err(e) => Check::fail("chat", describe(&e)),
    };
    check.took(started.elapsed())
}

pub async fn verify(args: &VerifyArgs) -> anyhow::Result<std::process::ExitCode> {
    let checks = run_checks(args).await;
    crate::report::print(&format!("verify {}", args.url), &checks, args.json)
}
