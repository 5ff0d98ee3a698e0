//! Claims cache benchmarks, straight on the cache (no HTTP): a hit in Redis, a hit in
//! process, and the invalidation of 100,000 users of one connection in one call (Redis).
//!
//! Run: `cargo bench --bench claims_cache`. Redis: `PIMGATE_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), under a key prefix of its own, deleted at the end.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test and benchmark code fails loudly at the line that broke"
)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pimgate::access::cache::{
    ClaimsCache, ClaimsKey, Lookup, MemoryCache, RedisCache, RedisCacheOptions,
};
use pimgate::connections::ConnectionId;
use pimgate::redis::{Redis, RedisOptions};

fn redis_url() -> String {
    std::env::var("PIMGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Claims of a realistic size (~1 KB): a few roles and user groups, no provenance.
fn sample_claims() -> String {
    let groups: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"id":"ug-{i:04}","access":"edit","languages":["en-GB","da-DK"],"segments":["b2b"]}}"#))
        .collect();
    format!(
        r#"{{"sub":"user-000001","connection":"bench","roles":["viewer","editor"],"permissions":["products.view","products.create","products.delete"],"userGroups":[{}],"defaultDashboard":"main","configVersion":"v1"}}"#,
        groups.join(",")
    )
}

async fn fill(cache: &dyn ClaimsCache, conn: &ConnectionId, user: &str, claims: &str) {
    let Lookup::Miss(epoch) = cache.get(&ClaimsKey::new(conn, user, "v1")).await else {
        panic!("expected a miss for {user}");
    };
    cache
        .put(&ClaimsKey::new(conn, user, "v1"), epoch, claims)
        .await;
    assert!(matches!(
        cache.get(&ClaimsKey::new(conn, user, "v1")).await,
        Lookup::Hit(_)
    ));
}

fn delete_prefix(url: &str, prefix: &str) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let pattern = format!("{prefix}:*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(5000)
            .query(&mut con)
            .unwrap();
        if !keys.is_empty() {
            let () = redis::cmd("DEL").arg(&keys).query(&mut con).unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = redis_url();
    let prefix = format!("pimgate-bench-{}", uuid::Uuid::new_v4().simple());
    let shared = rt
        .block_on(Redis::connect(&url, &prefix, RedisOptions::default()))
        .unwrap();
    let redis = RedisCache::new(shared, RedisCacheOptions::default());
    assert!(redis.is_healthy(), "Redis at {url} does not answer");
    let memory = MemoryCache::new(100_000);
    let conn = ConnectionId::parse("bench").unwrap();
    let claims = sample_claims();
    rt.block_on(fill(&redis, &conn, "user-000001", &claims));
    rt.block_on(fill(&memory, &conn, "user-000001", &claims));

    c.bench_function("claims_cache/get_hit/redis", |b| {
        b.to_async(&rt).iter(|| async {
            match redis.get(&ClaimsKey::new(&conn, "user-000001", "v1")).await {
                Lookup::Hit(s) => s,
                Lookup::Miss(_) => panic!("miss"),
            }
        });
    });
    c.bench_function("claims_cache/get_hit/memory", |b| {
        b.to_async(&rt).iter(|| async {
            match memory
                .get(&ClaimsKey::new(&conn, "user-000001", "v1"))
                .await
            {
                Lookup::Hit(s) => s,
                Lookup::Miss(_) => panic!("miss"),
            }
        });
    });

    let users: Vec<String> = (0..100_000).map(|i| format!("user-{i:06}")).collect();
    let mut group = c.benchmark_group("claims_cache/invalidate_100k_users");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("redis", |b| {
        b.to_async(&rt).iter(|| redis.invalidate(&conn, &users));
    });
    group.finish();
    // A failed invalidation would have been measured as a fast no-op.
    assert!(redis.is_healthy(), "Redis failed during the benchmark");

    drop(redis);
    delete_prefix(&url, &prefix);
}

criterion_group!(claims_cache, benches);
criterion_main!(claims_cache);
