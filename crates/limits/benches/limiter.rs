//! Rate-limit decision cost: the GCRA step, the in-process limiter (one hot
//! key and 10,000 keys), and Redis decisions per second (sequential and
//! concurrent) against the Redis at `SWITCHYARD_BENCH_REDIS_URL`
//! (default redis://127.0.0.1:6379/0).
//!
//! Run: `cargo bench -p switchyard-limits --bench limiter`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use criterion::{black_box, criterion_group, Criterion};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::RedisConfig;
use switchyard_core::Secret;
use switchyard_limits::gcra::step;
use switchyard_limits::local::LocalLimiter;
use switchyard_limits::{FailurePolicy, Limiter, Quota, Redis, RedisLimiter, SystemClock};

fn in_process(c: &mut Criterion) {
    let q = Quota::per_minute(100).unwrap();
    c.bench_function("gcra_step", |b| {
        let mut tat = 0u64;
        let mut now = 1_800_000_000_000_000u64;
        b.iter(|| {
            now += 700_000;
            let s = step(black_box(tat), black_box(now), 1, &q);
            tat = s.tat_us;
            s.decision.allowed
        })
    });
    let local = LocalLimiter::new(Arc::new(SystemClock));
    c.bench_function("local_check_hot_key", |b| {
        b.iter(|| {
            local
                .check(black_box("key:key_0123456789abcdef01234567"), &q, 1)
                .allowed
        })
    });
    let keys: Vec<String> = (0..10_000).map(|i| format!("key:key_{i:024x}")).collect();
    c.bench_function("local_check_10k_keys", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % keys.len();
            local.check(black_box(&keys[i]), &q, 1).allowed
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let limiter = Limiter::local(Arc::new(SystemClock));
    c.bench_function("limiter_local_async_check", |b| {
        b.to_async(&rt).iter(|| async {
            limiter
                .check(black_box("key:key_0123456789abcdef01234567"), &q, 1)
                .await
                .map(|v| v.decision.allowed)
        })
    });
}

criterion_group!(benches, in_process);

/// Redis decisions per second: one connection multiplexed, `concurrency`
/// requests in flight, for `seconds`.
async fn redis_throughput(limiter: Arc<Limiter>, concurrency: usize, seconds: u64) -> (u64, u64) {
    let q = Quota::new(1_000_000, Duration::from_secs(1), None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let (mut ok, mut fallback) = (0u64, 0u64);
                let key = format!("bench:{t}");
                while Instant::now() < deadline {
                    match limiter.check(&key, &q, 1).await {
                        Ok(v) if v.source == switchyard_limits::Source::Redis => ok += 1,
                        _ => fallback += 1,
                    }
                }
                (ok, fallback)
            })
        })
        .collect();
    let mut total = (0, 0);
    for t in tasks {
        let (ok, fb) = t.await.unwrap();
        total.0 += ok;
        total.1 += fb;
    }
    total
}

fn redis_decisions() {
    let url = std::env::var("SWITCHYARD_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let redis = Arc::new(
            Redis::new(&RedisConfig {
                url: Secret::new(&url),
                password: None,
                tls_ca_file: None,
            })
            .unwrap(),
        );
        if redis.ping(Duration::from_secs(1)).await.is_err() {
            println!("redis_decisions: skipped, no Redis at {url}");
            return;
        }
        let limiter = Arc::new(Limiter::redis(
            RedisLimiter::new(redis, "sy-bench:", Duration::from_secs(1)),
            FailurePolicy::Refuse,
            Arc::new(SystemClock),
        ));
        for concurrency in [1, 16, 64] {
            let seconds = 3;
            let (ok, failed) = redis_throughput(limiter.clone(), concurrency, seconds).await;
            println!(
                "redis_decisions concurrency={concurrency:<3} {:>8.0} decisions/s ({ok} in {seconds} s, {failed} failed)",
                ok as f64 / seconds as f64
            );
        }
    });
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    redis_decisions();
}
