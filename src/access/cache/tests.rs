//! Behaviour stories written once and run on both backends (the shared Redis at
//! `PIMGATE_TEST_REDIS_URL`, under a key prefix of each test's own, and in process), then
//! Redis outages on a `redis-server` of the test's own, a Redis Cluster, TLS, and the
//! pure helpers.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::cluster_routing::Slot;
use tokio::time::Instant;

use super::redis_cache::{UserKeys, decode_entry, encode_entry, redis_token};
use super::*;
use crate::redis::testing::{
    LogCount, OwnRedis, Scratch, free_port, redis_server, unique_prefix, wait_for_ping,
};
use crate::redis::{Redis, RedisOptions};

/// A Redis claims cache on `url` under `prefix`, probing every 50 ms while Redis is down.
async fn cache_on(url: &str, prefix: &str, options: RedisOptions) -> RedisCache {
    let redis = Redis::connect(url, prefix, options).await.unwrap();
    RedisCache::new(redis, RedisCacheOptions::default())
}

const CLAIMS: &str = r#"{"roles":["editor"],"userGroups":["en"]}"#;
const OTHER_CLAIMS: &str = r#"{"roles":["viewer"],"userGroups":[]}"#;

fn conn(name: &str) -> ConnectionId {
    ConnectionId::parse(name).unwrap()
}

fn users(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|&u| u.to_owned()).collect()
}

/// A miss, then a put with its token, then a hit. Returns the token.
async fn fill(
    cache: &dyn ClaimsCache,
    c: &ConnectionId,
    user: &str,
    version: &str,
    claims: &str,
) -> Epoch {
    let epoch = miss(cache, c, user, version).await;
    cache
        .put(&ClaimsKey::new(c, user, version), epoch, claims)
        .await;
    assert_eq!(
        cache.get(&ClaimsKey::new(c, user, version)).await,
        Lookup::Hit(claims.to_owned()),
        "{user} after put"
    );
    epoch
}

/// Asserts a cacheable miss and returns its token.
async fn miss(cache: &dyn ClaimsCache, c: &ConnectionId, user: &str, version: &str) -> Epoch {
    match cache.get(&ClaimsKey::new(c, user, version)).await {
        Lookup::Miss(e) => {
            assert!(
                e.is_cacheable(),
                "{user}: an uncacheable miss from a working cache"
            );
            e
        }
        Lookup::Hit(h) => panic!("{user}: expected a miss, got a hit {h}"),
    }
}

/// Asserts a miss that must not be cached, and that storing under its token does nothing.
async fn uncacheable(cache: &dyn ClaimsCache, c: &ConnectionId, user: &str) {
    assert_eq!(
        cache.get(&ClaimsKey::new(c, user, "v1")).await,
        Lookup::Miss(Epoch::UNCACHEABLE)
    );
    cache
        .put(&ClaimsKey::new(c, user, "v1"), Epoch::UNCACHEABLE, CLAIMS)
        .await;
}

async fn hit(cache: &dyn ClaimsCache, c: &ConnectionId, user: &str, version: &str) -> String {
    match cache.get(&ClaimsKey::new(c, user, version)).await {
        Lookup::Hit(h) => h,
        Lookup::Miss(_) => panic!("{user}: expected a hit"),
    }
}

// --- the stories -----------------------------------------------------------------------

async fn miss_then_put_then_hit(cache: &dyn ClaimsCache) {
    let acme = conn("acme");
    fill(cache, &acme, "u1", "v1", CLAIMS).await;
    // Stored again under a fresh token: replaced.
    let Lookup::Hit(_) = cache.get(&ClaimsKey::new(&acme, "u1", "v1")).await else {
        panic!("hit")
    };
    // Other users and the same user id in another connection are separate.
    miss(cache, &acme, "u2", "v1").await;
    miss(cache, &conn("other"), "u1", "v1").await;
    // An uncacheable token stores nothing.
    cache
        .put(
            &ClaimsKey::new(&acme, "u2", "v1"),
            Epoch::UNCACHEABLE,
            CLAIMS,
        )
        .await;
    miss(cache, &acme, "u2", "v1").await;
}

async fn config_version_change_misses(cache: &dyn ClaimsCache) {
    let acme = conn("acme");
    fill(cache, &acme, "u1", "v1", CLAIMS).await;
    let epoch = miss(cache, &acme, "u1", "v2").await;
    cache
        .put(&ClaimsKey::new(&acme, "u1", "v2"), epoch, OTHER_CLAIMS)
        .await;
    assert_eq!(hit(cache, &acme, "u1", "v2").await, OTHER_CLAIMS);
    // One entry per user: the old version is gone, not served.
    miss(cache, &acme, "u1", "v1").await;
}

async fn invalidate_misses(cache: &dyn ClaimsCache) {
    let (acme, other) = (conn("acme"), conn("other"));
    fill(cache, &acme, "u1", "v1", CLAIMS).await;
    fill(cache, &acme, "u2", "v1", CLAIMS).await;
    fill(cache, &other, "u1", "v1", CLAIMS).await;
    cache.invalidate(&acme, &users(&["u1"])).await;
    let epoch = miss(cache, &acme, "u1", "v1").await;
    assert_eq!(hit(cache, &acme, "u2", "v1").await, CLAIMS, "another user");
    assert_eq!(
        hit(cache, &other, "u1", "v1").await,
        CLAIMS,
        "another connection"
    );
    cache
        .put(&ClaimsKey::new(&acme, "u1", "v1"), epoch, OTHER_CLAIMS)
        .await;
    assert_eq!(hit(cache, &acme, "u1", "v1").await, OTHER_CLAIMS);
    cache.invalidate(&acme, &[]).await;
    assert_eq!(hit(cache, &acme, "u1", "v1").await, OTHER_CLAIMS);
}

/// The race the epochs exist for: a reader misses, a writer commits and invalidates,
/// then the reader stores what it read before the commit. It must never be served.
async fn put_after_invalidate_is_ignored(cache: &dyn ClaimsCache) {
    let acme = conn("acme");
    // A user never cached before.
    let before = miss(cache, &acme, "u1", "v1").await;
    cache.invalidate(&acme, &users(&["u1"])).await;
    cache
        .put(&ClaimsKey::new(&acme, "u1", "v1"), before, "stale")
        .await;
    let after = miss(cache, &acme, "u1", "v1").await;
    assert_ne!(after, before);
    cache
        .put(&ClaimsKey::new(&acme, "u1", "v1"), after, CLAIMS)
        .await;
    assert_eq!(hit(cache, &acme, "u1", "v1").await, CLAIMS);

    // A user with an entry, read for another config version meanwhile.
    let before = miss(cache, &acme, "u1", "v2").await;
    cache.invalidate(&acme, &users(&["u1"])).await;
    cache
        .put(&ClaimsKey::new(&acme, "u1", "v2"), before, "stale")
        .await;
    miss(cache, &acme, "u1", "v2").await;
    miss(cache, &acme, "u1", "v1").await;

    // Two changes in a row, the reader's put in between and after.
    let before = miss(cache, &acme, "u3", "v1").await;
    cache.invalidate(&acme, &users(&["u3"])).await;
    cache
        .put(&ClaimsKey::new(&acme, "u3", "v1"), before, "stale")
        .await;
    cache.invalidate(&acme, &users(&["u3"])).await;
    cache
        .put(&ClaimsKey::new(&acme, "u3", "v1"), before, "stale")
        .await;
    miss(cache, &acme, "u3", "v1").await;
}

async fn invalidate_all_misses(cache: &dyn ClaimsCache) {
    let (acme, other) = (conn("acme"), conn("other"));
    fill(cache, &acme, "u1", "v1", CLAIMS).await;
    fill(cache, &other, "u2", "v1", CLAIMS).await;
    let before = miss(cache, &acme, "u3", "v1").await;
    cache.invalidate_all().await;
    miss(cache, &acme, "u1", "v1").await;
    miss(cache, &other, "u2", "v1").await;
    // A reader that missed before the config change cannot store old-config claims.
    cache
        .put(&ClaimsKey::new(&acme, "u3", "v1"), before, "stale")
        .await;
    miss(cache, &acme, "u3", "v1").await;
    fill(cache, &acme, "u1", "v1", OTHER_CLAIMS).await;
}

async fn invalidate_100k_users(cache: &dyn ClaimsCache) {
    let acme = conn("acme");
    let many: Vec<String> = (0..100_000).map(|i| format!("user-{i:06}")).collect();
    fill(cache, &acme, &many[0], "v1", CLAIMS).await;
    fill(cache, &acme, &many[99_999], "v1", CLAIMS).await;
    fill(cache, &acme, "bystander", "v1", CLAIMS).await;
    let before = miss(cache, &acme, &many[50_000], "v1").await;
    cache.invalidate(&acme, &many).await;
    miss(cache, &acme, &many[0], "v1").await;
    miss(cache, &acme, &many[99_999], "v1").await;
    cache
        .put(&ClaimsKey::new(&acme, &many[50_000], "v1"), before, "stale")
        .await;
    miss(cache, &acme, &many[50_000], "v1").await;
    assert_eq!(hit(cache, &acme, "bystander", "v1").await, CLAIMS);
}

/// Every story, in order, for the cluster test.
async fn all_stories(make: impl AsyncFn() -> RedisCache) {
    miss_then_put_then_hit(&make().await).await;
    config_version_change_misses(&make().await).await;
    invalidate_misses(&make().await).await;
    put_after_invalidate_is_ignored(&make().await).await;
    invalidate_all_misses(&make().await).await;
    invalidate_100k_users(&make().await).await;
}

/// Runs each story on the in-process cache and on the shared Redis.
macro_rules! on_both_backends {
    ($($story:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test]
                async fn $story() {
                    super::$story(&super::MemoryCache::new(1000)).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test]
                async fn $story() {
                    let scratch = super::Scratch::new();
                    let cache = super::RedisCache::new(
                        scratch.redis().await,
                        super::RedisCacheOptions::default(),
                    );
                    super::$story(&cache).await;
                }
            )*
        }
        mod on_redis_with_near_copies {
            $(
                #[tokio::test]
                async fn $story() {
                    let scratch = super::Scratch::new();
                    let cache = super::near_on(&scratch).await;
                    super::$story(&cache).await;
                }
            )*
        }
    };
}

/// A near cache on the shared Redis under the scratch prefix, its subscription up.
async fn near_on(scratch: &Scratch) -> NearCache {
    let redis = scratch.redis().await;
    let cache = NearCache::new(
        RedisCache::new(redis.clone(), RedisCacheOptions::default()),
        redis,
        1000,
    );
    wait_live(&cache, true).await;
    cache
}

async fn wait_live(cache: &NearCache, live: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.is_live() != live {
        assert!(
            Instant::now() < deadline,
            "the near cache never became live={live}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until `user` misses on `cache` (an invalidation message from another replica has
/// arrived), for at most 5 s.
async fn wait_miss(cache: &dyn ClaimsCache, key: &ClaimsKey<'_>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Lookup::Hit(h) = cache.get(key).await {
        assert!(
            Instant::now() < deadline,
            "{}: still served {h} 5 s after another replica invalidated it",
            key.user
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Removes a user's claims entry from Redis behind the caches' backs (no epoch move, no
/// message): what is still served afterwards is served from a near copy.
fn delete_shared_entry(scratch: &Scratch, c: &ConnectionId, user: &str) {
    let key = UserKeys::new(&scratch.prefix, c, user)
        .entry(super::Slot::Claims)
        .to_owned();
    let mut raw = redis::Client::open(scratch.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let removed: i64 = redis::cmd("DEL").arg(&key).query(&mut raw).unwrap();
    assert_eq!(removed, 1, "{key} was not in Redis");
}

#[tokio::test]
async fn near_copy_is_served_without_redis() {
    let scratch = Scratch::new();
    let cache = near_on(&scratch).await;
    let acme = conn("acme");
    fill(&cache, &acme, "u1", "v1", CLAIMS).await;
    delete_shared_entry(&scratch, &acme, "u1");
    assert_eq!(hit(&cache, &acme, "u1", "v1").await, CLAIMS);
    // A copy is per version: another config version goes to Redis (and misses).
    miss(&cache, &acme, "u1", "v2").await;
}

#[tokio::test]
async fn near_copies_follow_invalidations_made_by_another_replica() {
    let scratch = Scratch::new();
    let (a, b) = (near_on(&scratch).await, near_on(&scratch).await);
    let acme = conn("acme");
    for u in ["u1", "u2", "u3"] {
        fill(&b, &acme, u, "v1", CLAIMS).await;
        hit(&b, &acme, u, "v1").await;
    }
    // A changes u1: B's copy goes, u2's stays (served from the copy: gone from Redis).
    a.invalidate(&acme, &users(&["u1"])).await;
    wait_miss(&b, &ClaimsKey::new(&acme, "u1", "v1")).await;
    delete_shared_entry(&scratch, &acme, "u2");
    assert_eq!(hit(&b, &acme, "u2", "v1").await, CLAIMS);
    // The SCIM representation shares the epoch: one invalidation ends both.
    let rep = ClaimsKey::scim_user(&acme, "u3", "r1");
    let Lookup::Miss(epoch) = b.get(&rep).await else {
        panic!("u3's representation was never stored")
    };
    b.put(&rep, epoch, "{\"id\":\"u3\"}").await;
    assert!(matches!(b.get(&rep).await, Lookup::Hit(_)));
    a.invalidate(&acme, &users(&["u3"])).await;
    wait_miss(&b, &rep).await;
    wait_miss(&b, &ClaimsKey::new(&acme, "u3", "v1")).await;
    // A config change anywhere drops every copy everywhere.
    fill(&b, &acme, "u4", "v1", CLAIMS).await;
    a.invalidate_all().await;
    wait_miss(&b, &ClaimsKey::new(&acme, "u4", "v1")).await;
    wait_miss(&b, &ClaimsKey::new(&acme, "u2", "v1")).await;
}

#[tokio::test]
async fn near_copies_stop_when_the_subscription_drops() {
    let mut server = OwnRedis::start().await;
    let redis = Redis::connect(&server.url(), "near", fast()).await.unwrap();
    let cache = NearCache::new(
        RedisCache::new(redis.clone(), RedisCacheOptions::default()),
        redis,
        1000,
    );
    wait_live(&cache, true).await;
    let acme = conn("acme");
    fill(&cache, &acme, "u1", "v1", CLAIMS).await;
    hit(&cache, &acme, "u1", "v1").await;
    server.kill();
    // Messages may now be missed: the copies go, and nothing is served from memory.
    wait_live(&cache, false).await;
    uncacheable(&cache, &acme, "u1").await;
    server.restart().await;
    wait_live(&cache, true).await;
    // Back, with an empty Redis: a miss, then copies again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.get(&ClaimsKey::new(&acme, "u1", "v1")).await {
            Lookup::Miss(e) if e.is_cacheable() => break,
            Lookup::Hit(h) => panic!("served {h} from before the outage"),
            Lookup::Miss(_) => {}
        }
        assert!(Instant::now() < deadline, "the cache did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fill(&cache, &acme, "u1", "v1", OTHER_CLAIMS).await;
}

on_both_backends!(
    miss_then_put_then_hit,
    config_version_change_misses,
    invalidate_misses,
    put_after_invalidate_is_ignored,
    invalidate_all_misses,
    invalidate_100k_users,
);

// --- the shared Redis ------------------------------------------------------------------

#[tokio::test]
async fn redis_keys_share_a_slot_per_user_and_expire() {
    let scratch = Scratch::new();
    let cache = RedisCache::new(scratch.redis().await, RedisCacheOptions::default());
    let acme = conn("acme");
    fill(&cache, &acme, "u1", "v1", CLAIMS).await;
    cache.invalidate(&acme, &users(&["u2"])).await;
    let entry = UserKeys::new(&scratch.prefix, &acme, "u1")
        .entry(super::Slot::Claims)
        .to_owned();
    let epoch = UserKeys::new(&scratch.prefix, &acme, "u2").epoch;
    assert_eq!(entry, format!("{}:claims:{{acme:u1}}", scratch.prefix));
    assert_eq!(
        Slot::for_key(&entry),
        Slot::for_key(UserKeys::new(&scratch.prefix, &acme, "u1").epoch)
    );
    let mut raw = redis::Client::open(scratch.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let entry_ttl: i64 = redis::cmd("TTL").arg(&entry).query(&mut raw).unwrap();
    let epoch_ttl: i64 = redis::cmd("TTL").arg(&epoch).query(&mut raw).unwrap();
    assert!((3500..=3600).contains(&entry_ttl), "entry TTL {entry_ttl}");
    assert!(epoch_ttl > 3600 + 86_000, "epoch TTL {epoch_ttl}");
}

// --- a Redis of the test's own ---------------------------------------------------------

/// Options that make outage tests quick: probes every 50 ms.
fn fast() -> RedisOptions {
    RedisOptions {
        retry_interval: Duration::from_millis(50),
        ..RedisOptions::default()
    }
}

/// Polls until Redis is used again: the first miss that is cacheable. A hit here would be
/// a stale claim.
async fn wait_until_cacheable(cache: &RedisCache, c: &ConnectionId, user: &str) -> Epoch {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.get(&ClaimsKey::new(c, user, "v1")).await {
            Lookup::Hit(h) => panic!("{user}: served {h} after an outage"),
            Lookup::Miss(e) if e.is_cacheable() => return e,
            Lookup::Miss(_) => {}
        }
        assert!(Instant::now() < deadline, "the cache did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_outage_then_restart_empty() {
    let logs = LogCount::install();
    let mut server = OwnRedis::start().await;
    let cache = cache_on(&server.url(), "outage", fast()).await;
    let acme = conn("acme");
    fill(&cache, &acme, "u1", "v1", CLAIMS).await;

    server.kill();
    // No error, no panic: a miss that must not be cached.
    uncacheable(&cache, &acme, "u1").await;
    cache.invalidate(&acme, &users(&["u1"])).await;
    cache.invalidate_all().await;
    assert!(!cache.is_healthy());
    // Several failing probes (every 50 ms) meanwhile.
    for _ in 0..20 {
        assert_eq!(
            cache.get(&ClaimsKey::new(&acme, "u2", "v1")).await,
            Lookup::Miss(Epoch::UNCACHEABLE)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    server.restart().await;
    let epoch = wait_until_cacheable(&cache, &acme, "u1").await;
    assert!(cache.is_healthy());
    // The missed invalidations moved the global epoch before anything was served.
    let global: Option<String> = redis::cmd("GET")
        .arg("outage:global")
        .query(&mut server.raw())
        .unwrap();
    assert!(
        global.is_some(),
        "the global epoch was not moved on recovery"
    );
    cache
        .put(&ClaimsKey::new(&acme, "u1", "v1"), epoch, OTHER_CLAIMS)
        .await;
    assert_eq!(hit(&cache, &acme, "u1", "v1").await, OTHER_CLAIMS);
    // The outage was logged once, not per request; so was the recovery.
    assert_eq!(logs.count(tracing::Level::WARN), 1);
    assert_eq!(
        logs.count(tracing::Level::INFO),
        2,
        "reachable again, and repaired"
    );
}

/// Redis stays up with its data but this replica cannot reach it while a change happens:
/// the invalidation is lost, the stale entry stays in Redis, and recovery must not serve it.
#[tokio::test]
async fn redis_outage_with_surviving_data_drops_every_entry() {
    let server = OwnRedis::start().await;
    let cache = cache_on(&server.url(), "partition", fast()).await;
    let acme = conn("acme");
    fill(&cache, &acme, "changed", "v1", CLAIMS).await;
    fill(&cache, &acme, "unchanged", "v1", CLAIMS).await;

    // Cut this replica off: hide the socket and drop its connection.
    let mut raw = server.raw();
    let hidden = server.dir.path().join("hidden.sock");
    std::fs::rename(server.sock(), &hidden).unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query(&mut raw)
        .unwrap();
    assert!(killed >= 1);

    assert_eq!(
        cache.get(&ClaimsKey::new(&acme, "changed", "v1")).await,
        Lookup::Miss(Epoch::UNCACHEABLE)
    );
    cache.invalidate(&acme, &users(&["changed"])).await; // a change commits meanwhile
    let entry = UserKeys::new("partition", &acme, "changed")
        .entry(super::Slot::Claims)
        .to_owned();
    let still_there: bool = redis::cmd("EXISTS").arg(&entry).query(&mut raw).unwrap();
    assert!(still_there, "the invalidation was not supposed to land");

    std::fs::rename(&hidden, server.sock()).unwrap();
    let epoch = wait_until_cacheable(&cache, &acme, "changed").await;
    // Without the global epoch move, "changed" would be a stale hit now.
    miss(&cache, &acme, "unchanged", "v1").await;
    cache
        .put(&ClaimsKey::new(&acme, "changed", "v1"), epoch, OTHER_CLAIMS)
        .await;
    assert_eq!(hit(&cache, &acme, "changed", "v1").await, OTHER_CLAIMS);
}

/// The repair happens in the background even when no request comes.
#[tokio::test]
async fn redis_repair_needs_no_traffic() {
    let mut server = OwnRedis::start().await;
    let cache = cache_on(&server.url(), "idle", fast()).await;
    let acme = conn("acme");
    server.kill();
    cache.invalidate(&acme, &users(&["u1"])).await;
    server.restart().await;
    let mut raw = server.raw();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let global: Option<String> = redis::cmd("GET")
            .arg("idle:global")
            .query(&mut raw)
            .unwrap();
        if global.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no background repair");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!cache.is_dirty());
}

#[tokio::test]
async fn redis_unreachable_at_startup_is_degraded_then_recovers() {
    let mut server = OwnRedis::reserved();
    let redis = Redis::connect(&server.url(), "late", fast()).await.unwrap();
    let cache = claims_cache(Some(redis), DEFAULT_NEAR_ENTRIES);
    assert_eq!(cache.kind(), "redis");
    let acme = conn("acme");
    uncacheable(&*cache, &acme, "u1").await;

    // Redis comes up later at that path.
    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let epoch = loop {
        match cache.get(&ClaimsKey::new(&acme, "u1", "v1")).await {
            Lookup::Miss(e) if e.is_cacheable() => break e,
            Lookup::Miss(_) => {}
            Lookup::Hit(h) => panic!("hit {h}"),
        }
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cache
        .put(&ClaimsKey::new(&acme, "u1", "v1"), epoch, CLAIMS)
        .await;
    assert_eq!(
        cache.get(&ClaimsKey::new(&acme, "u1", "v1")).await,
        Lookup::Hit(CLAIMS.into())
    );
}

#[tokio::test]
async fn redis_hung_server_times_out_then_is_skipped() {
    let server = OwnRedis::start().await;
    let options = RedisOptions {
        command_timeout: Duration::from_millis(100),
        retry_interval: Duration::from_secs(600),
        ..RedisOptions::default()
    };
    let cache = cache_on(&server.url(), "hung", options).await;
    let acme = conn("acme");
    fill(&cache, &acme, "u1", "v1", CLAIMS).await;
    let mut raw = server.raw();
    let () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "1500", "ALL"])
        .query(&mut raw)
        .unwrap();
    // Without the timeout this would wait out the pause and hit.
    assert_eq!(
        cache.get(&ClaimsKey::new(&acme, "u1", "v1")).await,
        Lookup::Miss(Epoch::UNCACHEABLE)
    );
    assert!(!cache.is_healthy());
    // Answers again (this blocks until the pause is over)...
    let _: String = redis::cmd("PING").query(&mut raw).unwrap();
    // ...but until the next probe is due, requests do not go to Redis at all.
    assert_eq!(
        cache.get(&ClaimsKey::new(&acme, "u1", "v1")).await,
        Lookup::Miss(Epoch::UNCACHEABLE)
    );
}

/// A three-node Redis Cluster of the test's own, every story on it, through both URL forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut children: Vec<Child> = ports
        .iter()
        .map(|p| {
            let node_dir = dir.path().join(p.to_string());
            std::fs::create_dir(&node_dir).unwrap();
            let port = p.to_string();
            redis_server(&[
                "--port".as_ref(),
                port.as_ref(),
                "--bind".as_ref(),
                "127.0.0.1".as_ref(),
                "--cluster-enabled".as_ref(),
                "yes".as_ref(),
                "--dir".as_ref(),
                node_dir.as_os_str(),
            ])
        })
        .collect();
    for p in &ports {
        wait_for_ping(&format!("redis://127.0.0.1:{p}")).await;
    }
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(created.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    for p in &ports {
        let client = redis::Client::open(format!("redis://127.0.0.1:{p}")).unwrap();
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut client.get_connection().unwrap())
                .unwrap();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not form");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let seed = format!("redis://127.0.0.1:{}?cluster=true", ports[0]);
    let cache = cache_on(&seed, "cl", RedisOptions::default()).await;
    assert!(cache.is_cluster());
    all_stories(async || {
        let c = cache_on(&seed, &unique_prefix(), RedisOptions::default()).await;
        assert!(c.is_healthy());
        c
    })
    .await;
    let list = format!("redis://127.0.0.1:{},127.0.0.1:{}", ports[1], ports[2]);
    let cache = cache_on(&list, "list", RedisOptions::default()).await;
    assert!(cache.is_healthy());
    fill(&cache, &conn("acme"), "u1", "v1", CLAIMS).await;

    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

// --- configuration ---------------------------------------------------------------------

#[tokio::test]
async fn without_redis_the_cache_is_in_process() {
    assert_eq!(claims_cache(None, DEFAULT_NEAR_ENTRIES).kind(), "memory");
}

// --- pure helpers ----------------------------------------------------------------------

#[test]
fn entries_round_trip_and_garbage_is_absent() {
    let raw = encode_entry(Epoch(0xdead_beef), "v:1;x", "{\"a\":\";v=\"}");
    let e = decode_entry(raw.as_bytes()).unwrap();
    assert_eq!(
        (e.token, e.version, e.claims),
        (Epoch(0xdead_beef), "v:1;x", "{\"a\":\";v=\"}")
    );
    let empty = encode_entry(Epoch(0), "", "");
    assert!(decode_entry(empty.as_bytes()).is_some());
    for bad in [
        "",
        "t=xyz",
        "t=00000000000000zz;v=1:a;{}",
        "t=0000000000000001;v=9:a;{}",
        "t=0000000000000001;v=1:ab{}",
        &raw[..raw.len() - 30],
    ] {
        assert!(decode_entry(bad.as_bytes()).is_none(), "{bad}");
    }
    assert!(decode_entry(&[0xff, 0xfe]).is_none());
}

#[test]
fn tokens_depend_on_everything_they_name() {
    let (a, b) = (conn("a"), conn("b"));
    let base = redis_token(&a, "u", Some(b"1"), Some(b"2"));
    for other in [
        redis_token(&b, "u", Some(b"1"), Some(b"2")),
        redis_token(&a, "v", Some(b"1"), Some(b"2")),
        redis_token(&a, "u", None, Some(b"2")),
        redis_token(&a, "u", Some(b""), Some(b"2")),
        redis_token(&a, "u", Some(b"1"), None),
        redis_token(&a, "u", Some(b"12"), None),
        redis_token(&a, "u", Some(b"2"), Some(b"1")),
    ] {
        assert_ne!(base, other);
        assert!(other.is_cacheable());
    }
    assert_eq!(base, redis_token(&a, "u", Some(b"1"), Some(b"2")));
}

// --- in process only -------------------------------------------------------------------

#[tokio::test]
async fn memory_with_no_room_caches_nothing() {
    let cache = MemoryCache::new(0);
    let acme = conn("acme");
    let epoch = miss(&cache, &acme, "u1", "v1").await;
    cache
        .put(&ClaimsKey::new(&acme, "u1", "v1"), epoch, CLAIMS)
        .await;
    miss(&cache, &acme, "u1", "v1").await;
    cache.invalidate(&acme, &users(&["u1"])).await;
    cache.invalidate_all().await;
}

#[tokio::test]
async fn memory_is_bounded_and_eviction_revives_nothing() {
    let cache = MemoryCache::new(3);
    let acme = conn("acme");
    for i in 0..10 {
        fill(&cache, &acme, &format!("u{i}"), "v1", CLAIMS).await;
        assert!(cache.lock().entries.len() <= 3);
    }
    assert_eq!(cache.lock().entries.len(), 3);
    // A reader of a user with an entry, whose entry is evicted and then invalidated.
    let before = match cache.get(&ClaimsKey::new(&acme, "u9", "v2")).await {
        Lookup::Miss(e) => e,
        Lookup::Hit(_) => panic!("other version"),
    };
    for i in 10..20 {
        fill(&cache, &acme, &format!("u{i}"), "v1", CLAIMS).await;
    }
    cache.invalidate(&acme, &users(&["u9"])).await;
    cache
        .put(&ClaimsKey::new(&acme, "u9", "v2"), before, "stale")
        .await;
    miss(&cache, &acme, "u9", "v2").await;
}
