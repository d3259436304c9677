//! The limiter and cache against their real backends: the in-process maps and
//! a real Redis (the shared one, and private ones that tests stop).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::RedisConfig;
use switchyard_core::Secret;
use switchyard_limits::{
    Clock, FailurePolicy, Limiter, ManualClock, Quota, Redis, RedisLimiter, Served, Source,
    SystemClock, TieredCache,
};
use switchyard_testkit::{redis_url, unique_prefix, PrivateRedis};

const T0: u64 = 1_800_000_000_000_000;
const TIMEOUT: Duration = Duration::from_millis(500);

fn redis(url: &str) -> Arc<Redis> {
    Arc::new(
        Redis::new(&RedisConfig {
            url: Secret::new(url),
            password: None,
            tls_ca_file: None,
        })
        .unwrap(),
    )
}

/// N in a burst, then 429 with the exact wait, then admitted on schedule.
async fn exact_boundary(limiter: &Limiter, clock: &ManualClock) {
    let q = Quota::per_minute(5).unwrap();
    for i in 0..5 {
        let v = limiter.check("k", &q, 1).await.unwrap();
        assert!(v.decision.allowed, "request {i}");
        assert_eq!(v.decision.remaining, 4 - i);
    }
    let denied = limiter.check("k", &q, 1).await.unwrap().decision;
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_us, 12_000_000);
    assert_eq!(denied.retry_after_secs(), 12);
    assert_eq!(denied.reset_after_us, 60_000_000);
    clock.advance_us(11_999_999);
    assert!(!limiter.check("k", &q, 1).await.unwrap().decision.allowed);
    clock.advance_us(1);
    let again = limiter.check("k", &q, 1).await.unwrap().decision;
    assert!(again.allowed);
    assert_eq!(again.remaining, 0);
    // Peeking never consumes.
    clock.advance_us(60_000_000);
    for _ in 0..20 {
        assert!(limiter.peek("k", &q, 5).await.unwrap().decision.allowed);
    }
    // Weighted units: 5 at once fill the burst.
    assert!(limiter.check("k", &q, 5).await.unwrap().decision.allowed);
    assert!(!limiter.check("k", &q, 1).await.unwrap().decision.allowed);
    // Other keys are independent.
    assert!(
        limiter
            .check("other", &q, 1)
            .await
            .unwrap()
            .decision
            .allowed
    );
}

#[tokio::test]
async fn in_process_boundary_is_exact() {
    let clock = ManualClock::starting_at(T0);
    let limiter = Limiter::local(Arc::new(clock.clone()));
    exact_boundary(&limiter, &clock).await;
}

#[tokio::test]
async fn redis_boundary_is_exact() {
    let clock = ManualClock::starting_at(T0);
    let redis = RedisLimiter::new(redis(&redis_url()), &unique_prefix("rl"), TIMEOUT)
        .with_clock(Arc::new(clock.clone()));
    let limiter = Limiter::redis(redis, FailurePolicy::Refuse, Arc::new(clock.clone()));
    exact_boundary(&limiter, &clock).await;
    assert!(!limiter.is_degraded());
}

#[tokio::test]
async fn redis_with_its_own_clock_admits_again_on_schedule() {
    let redis = RedisLimiter::new(redis(&redis_url()), &unique_prefix("rl"), TIMEOUT);
    let limiter = Limiter::redis(redis, FailurePolicy::Refuse, Arc::new(SystemClock));
    let q = Quota::new(5, Duration::from_secs(1), None).unwrap();
    for _ in 0..5 {
        assert!(limiter.check("k", &q, 1).await.unwrap().decision.allowed);
    }
    let denied = limiter.check("k", &q, 1).await.unwrap().decision;
    assert!(!denied.allowed);
    assert!(
        denied.retry_after_us > 0 && denied.retry_after_us <= 200_000,
        "{denied:?}"
    );
    // Redis keeps its own clock, which cannot be paused: the advertised
    // wait passing for real is what is tested.
    tokio::time::sleep(Duration::from_micros(denied.retry_after_us + 2_000)).await;
    assert!(limiter.check("k", &q, 1).await.unwrap().decision.allowed);
}

#[tokio::test]
async fn replicas_sharing_redis_share_one_limit() {
    let prefix = unique_prefix("rl");
    let a = Limiter::redis(
        RedisLimiter::new(redis(&redis_url()), &prefix, TIMEOUT),
        FailurePolicy::Refuse,
        Arc::new(SystemClock),
    );
    let b = Limiter::redis(
        RedisLimiter::new(redis(&redis_url()), &prefix, TIMEOUT),
        FailurePolicy::Refuse,
        Arc::new(SystemClock),
    );
    let q = Quota::new(100, Duration::from_secs(3600), None).unwrap();
    let mut admitted = 0;
    for i in 0..200 {
        let l = if i % 2 == 0 { &a } else { &b };
        if l.check("shared", &q, 1).await.unwrap().decision.allowed {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100);
}

#[tokio::test]
async fn redis_outage_falls_back_or_refuses_and_recovers() {
    let mut server = PrivateRedis::start();
    let clock = ManualClock::starting_at(T0);
    let conn = redis(&server.url());
    let fallback = Limiter::redis(
        RedisLimiter::new(conn.clone(), "rl:", TIMEOUT),
        FailurePolicy::Fallback,
        Arc::new(clock.clone()),
    );
    let refuse = Limiter::redis(
        RedisLimiter::new(conn, "rl:", TIMEOUT),
        FailurePolicy::Refuse,
        Arc::new(clock.clone()),
    );
    let q = Quota::per_minute(3).unwrap();
    assert_eq!(
        fallback.check("k", &q, 1).await.unwrap().source,
        Source::Redis
    );

    server.stop();
    let v = fallback.check("k", &q, 1).await.unwrap();
    assert_eq!((v.source, v.backend_error), (Source::Fallback, true));
    assert!(fallback.is_degraded());
    // Within the retry interval Redis is not even tried.
    let v = fallback.check("k", &q, 1).await.unwrap();
    assert_eq!((v.source, v.backend_error), (Source::Fallback, false));
    assert_eq!(fallback.backend_errors(), 1);
    // The fallback limiter enforces the limit on its own.
    assert!(fallback.check("k", &q, 1).await.unwrap().decision.allowed);
    assert!(!fallback.check("k", &q, 1).await.unwrap().decision.allowed);
    let refused = refuse.check("k", &q, 1).await.unwrap_err();
    assert!(refused.backend_error);
    assert!(refuse.is_degraded());

    server.start_again();
    clock.advance_us(1_000_000);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = fallback.check("fresh", &q, 1).await.unwrap();
        if v.source == Source::Redis {
            break;
        }
        assert!(Instant::now() < deadline, "never went back to Redis");
        clock.advance_us(1_000_000);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!fallback.is_degraded());
    let deadline = Instant::now() + Duration::from_secs(10);
    while refuse.check("fresh2", &q, 1).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "refusing limiter never recovered"
        );
        clock.advance_us(1_000_000);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!refuse.is_degraded());
}

async fn slow_load(counter: &AtomicUsize, value: &str) -> Result<Arc<String>, String> {
    counter.fetch_add(1, Ordering::SeqCst);
    // A slow source, so that concurrent callers overlap while it loads.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(Arc::new(value.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_key_is_loaded_once_however_many_ask() {
    let cache: Arc<TieredCache<Arc<String>>> =
        Arc::new(TieredCache::local(100, Duration::from_secs(60)));
    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        let loads = loads.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("k", || slow_load(&loads, "v"))
                .await
                .unwrap()
        }));
    }
    let mut loaded = 0;
    for t in tasks {
        let (v, served) = t.await.unwrap();
        assert_eq!(v.as_str(), "v");
        if served == Served::Loaded {
            loaded += 1;
        }
    }
    assert_eq!((loads.load(Ordering::SeqCst), loaded), (1, 1));
    let (_, served) = cache
        .get_or_load("k", || slow_load(&loads, "x"))
        .await
        .unwrap();
    assert_eq!(served, Served::Local);
    // Errors are not cached.
    let failed: Result<_, Arc<String>> = cache
        .get_or_load("bad", || async { Err("db down".to_owned()) })
        .await;
    assert!(failed.is_err());
    let (v, _) = cache
        .get_or_load("bad", || slow_load(&loads, "ok"))
        .await
        .unwrap();
    assert_eq!(v.as_str(), "ok");
}

#[tokio::test]
async fn the_redis_tier_is_shared_and_optional() {
    let prefix = unique_prefix("cache");
    let conn = redis(&redis_url());
    let a: TieredCache<Arc<String>> =
        TieredCache::with_redis(100, Duration::from_secs(60), conn.clone(), &prefix, TIMEOUT);
    let b: TieredCache<Arc<String>> =
        TieredCache::with_redis(100, Duration::from_secs(60), conn, &prefix, TIMEOUT);
    let loads = AtomicUsize::new(0);
    assert_eq!(
        a.get_or_load("k", || slow_load(&loads, "v"))
            .await
            .unwrap()
            .1,
        Served::Loaded
    );
    let (v, served) = b
        .get_or_load("k", || slow_load(&loads, "other"))
        .await
        .unwrap();
    assert_eq!((v.as_str(), served), ("v", Served::Shared));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    a.invalidate("k").await;
    b.invalidate_local();
    let (v, served) = b
        .get_or_load("k", || slow_load(&loads, "new"))
        .await
        .unwrap();
    assert_eq!((v.as_str(), served), ("new", Served::Loaded));

    // Redis down: lookups still answer from the source.
    let mut private = PrivateRedis::start();
    let c: TieredCache<Arc<String>> = TieredCache::with_redis(
        100,
        Duration::from_secs(60),
        redis(&private.url()),
        "c:",
        TIMEOUT,
    );
    private.stop();
    let (v, served) = c
        .get_or_load("k", || slow_load(&loads, "from-db"))
        .await
        .unwrap();
    assert_eq!((v.as_str(), served), ("from-db", Served::Loaded));
}

#[test]
fn the_system_clock_moves_forward() {
    let a = SystemClock.now_us();
    // Real time passing is the point.
    std::thread::sleep(Duration::from_millis(2));
    assert!(SystemClock.now_us() > a);
}

/// Every request's middleware futures hold a rate-limit decision's and a
/// cache lookup's future. Their slow paths (a Redis round trip, a load from
/// the database) are boxed where they run or made only on a miss, so that
/// these futures stay small whatever those paths hold; if a change inlines
/// them again, this fails (docs/performance.md, "Regression guards").
#[test]
fn decisions_and_lookups_are_small_futures() {
    const SMALL: usize = 512;
    let q = Quota::per_minute(5).unwrap();
    let local = Limiter::local(Arc::new(SystemClock));
    let decision = std::mem::size_of_val(&local.check("k", &q, 1));
    assert!(
        decision <= SMALL,
        "a limiter decision's future: {decision} bytes"
    );
    let cache: TieredCache<Arc<String>> = TieredCache::local(10, Duration::from_secs(1));
    let big_load = || async {
        let held = [7u8; 4096];
        tokio::task::yield_now().await;
        Ok::<_, String>(Arc::new(format!("{}", held[4095])))
    };
    let small_load = || async { Ok::<_, String>(Arc::new(String::new())) };
    let with_big = std::mem::size_of_val(&cache.get_or_load("k", big_load));
    let with_small = std::mem::size_of_val(&cache.get_or_load("k", small_load));
    assert_eq!(
        with_big, with_small,
        "a cache lookup's future grows with its loader's"
    );
}
