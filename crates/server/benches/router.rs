//! One chat completion through the whole router, in process: real
//! authentication, rate limit, budget lease, OpenAI backend (its HTTP client
//! over loopback) and usage queue, against the benchmark upstream on a
//! thread of its own. `upstream_alone` times the same HTTP call made
//! directly, so the difference is what the service adds to a call.
//!
//!   cargo bench -p switchyard-server --bench router
//!
//! The service runs on SQLite (`tests/common/one_call.rs`); calls are one at
//! a time on a current-thread runtime. Method and figures:
//! docs/performance.md, "Regression guards".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::one_call::{OneCall, BODY};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use switchyard_core::config::DatabaseKind;

fn router(c: &mut Criterion) {
    let upstream = switchyard_bench::spawn(Duration::ZERO).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let one = rt.block_on(OneCall::start(DatabaseKind::Sqlite, upstream));
    let client = reqwest::Client::new();
    let url = format!("http://{upstream}/v1/chat/completions");
    let direct = || async {
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
    };
    let mut group = c.benchmark_group("chat_completion");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("upstream_alone", |b| b.to_async(&rt).iter(direct));
    group.bench_function("through_router", |b| b.to_async(&rt).iter(|| one.call()));
    group.finish();
    rt.block_on(one.app.stop());
}

criterion_group!(benches, router);
criterion_main!(benches);
