//! Claims in Redis: the epochs and entries of the module documentation, on the shared
//! connection ([`crate::redis::Redis`]), which owns reaching Redis (cluster, TLS, timeouts,
//! the circuit breaker). What this file adds for outages is the claims-specific part: an
//! invalidation that could not reach Redis makes the cache "dirty", and nothing is served
//! from Redis again until the global epoch has moved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use redis::cluster_routing::Slot as HashSlot;
use sha2::{Digest, Sha256};

use super::{ClaimsCache, ClaimsKey, Epoch, Lookup, Slot};
use crate::connections::ConnectionId;
use crate::redis::{Failure, Redis, Started};

/// Users per invalidation pipeline (two commands each).
const INVALIDATE_BATCH: usize = 1000;
/// Invalidation pipelines in flight at once on a standalone server.
const INVALIDATE_PARALLEL: usize = 4;
/// Invalidation pipelines in flight at once on a cluster (they are per slot, so small).
const CLUSTER_INVALIDATE_PARALLEL: usize = 64;
/// How much longer than entries user epochs live (see the module documentation).
const EPOCH_TTL_MARGIN: Duration = Duration::from_secs(24 * 60 * 60);

/// Tuning of [`RedisCache`].
#[derive(Debug, Clone)]
pub struct RedisCacheOptions {
    /// How long an entry lives without being rewritten, so dead users' entries go away.
    pub ttl: Duration,
}

impl Default for RedisCacheOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60 * 60),
        }
    }
}

/// Claims cached in Redis, shared by every replica. See the module documentation.
#[derive(Debug, Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    redis: Redis,
    global_key: String,
    ttl_secs: u64,
    epoch_ttl_secs: u64,
    /// Invalidations that did not reach Redis, and how many a global epoch move has covered.
    missed: AtomicU64,
    covered: AtomicU64,
    repair_lock: tokio::sync::Mutex<()>,
    repair_task: AtomicBool,
}

/// The keys of one user: an entry per [`Slot`] and the epoch they share.
pub(super) struct UserKeys {
    pub(super) entries: [String; 2],
    pub(super) epoch: String,
}

impl UserKeys {
    pub(super) fn new(prefix: &str, conn: &ConnectionId, user_id: &str) -> Self {
        // A connection name has no ':', so `conn:user` is unambiguous; the braces make it the
        // cluster hash tag of every key of the user.
        let entry = |slot: Slot| format!("{prefix}:{}:{{{conn}:{user_id}}}", slot.name());
        Self {
            entries: Slot::ALL.map(entry),
            epoch: format!("{prefix}:epoch:{{{conn}:{user_id}}}"),
        }
    }

    pub(super) fn entry(&self, slot: Slot) -> &str {
        &self.entries[slot.index()]
    }
}

impl RedisCache {
    pub fn new(redis: Redis, options: RedisCacheOptions) -> Self {
        let ttl_secs = options.ttl.as_secs().max(1);
        Self {
            inner: Arc::new(Inner {
                global_key: format!("{}:global", redis.prefix()),
                redis,
                ttl_secs,
                epoch_ttl_secs: ttl_secs + EPOCH_TTL_MARGIN.as_secs(),
                missed: AtomicU64::new(0),
                covered: AtomicU64::new(0),
                repair_lock: tokio::sync::Mutex::new(()),
                repair_task: AtomicBool::new(false),
            }),
        }
    }

    /// Whether the last Redis operation succeeded (for readiness reports).
    pub fn is_healthy(&self) -> bool {
        self.inner.redis.is_healthy()
    }

    /// Whether an invalidation did not reach Redis and nothing has covered it yet.
    pub(super) fn is_dirty(&self) -> bool {
        self.inner.dirty()
    }

    #[cfg(test)]
    pub(super) fn is_cluster(&self) -> bool {
        self.inner.redis.conn().is_cluster()
    }
}

#[async_trait::async_trait]
impl ClaimsCache for RedisCache {
    async fn get(&self, key: &ClaimsKey<'_>) -> Lookup {
        let (conn, user_id, config_version) = (key.conn, key.user, key.version);
        let inner = &self.inner;
        let Some(started) = inner.redis.admit() else {
            return Lookup::Miss(Epoch::UNCACHEABLE);
        };
        // Entries written before a missed invalidation may be stale: kill them first.
        if inner.dirty() && !inner.repair(started).await {
            return Lookup::Miss(Epoch::UNCACHEABLE);
        }
        let keys = UserKeys::new(inner.redis.prefix(), conn, user_id);
        match inner
            .redis
            .bounded(started, "get", inner.read(&keys, key.slot))
            .await
        {
            Ok((entry, user_epoch, global)) => {
                let token = redis_token(conn, user_id, user_epoch.as_deref(), global.as_deref());
                match entry.as_deref().and_then(decode_entry) {
                    Some(e) if e.token == token && e.version == config_version => {
                        Lookup::Hit(e.claims.to_owned())
                    }
                    _ => Lookup::Miss(token),
                }
            }
            Err(_) => Lookup::Miss(Epoch::UNCACHEABLE),
        }
    }

    async fn put(&self, key: &ClaimsKey<'_>, epoch: Epoch, claims: &str) {
        let (conn, user_id, config_version) = (key.conn, key.user, key.version);
        let inner = &self.inner;
        // While dirty the global epoch is about to move: anything stored now would be dead.
        if !epoch.is_cacheable() || inner.dirty() {
            return;
        }
        let Some(started) = inner.redis.admit() else {
            return;
        };
        let keys = UserKeys::new(inner.redis.prefix(), conn, user_id);
        let mut cmd = redis::cmd("SET");
        cmd.arg(keys.entry(key.slot))
            .arg(encode_entry(epoch, config_version, claims))
            .arg("EX")
            .arg(inner.ttl_secs);
        let _ = inner
            .redis
            .bounded(started, "put", inner.redis.conn().query::<()>(&cmd))
            .await;
    }

    async fn invalidate(&self, conn: &ConnectionId, user_ids: &[String]) {
        if user_ids.is_empty() {
            return;
        }
        let inner = &self.inner;
        let Some(started) = inner.redis.admit() else {
            inner.missed_invalidation();
            return;
        };
        if inner
            .invalidate_users(started, conn, user_ids)
            .await
            .is_err()
        {
            inner.missed_invalidation();
        }
    }

    async fn invalidate_all(&self) {
        let inner = &self.inner;
        let Some(started) = inner.redis.admit() else {
            inner.missed_invalidation();
            return;
        };
        let moved = inner
            .redis
            .bounded(started, "invalidate_all", inner.move_global_epoch())
            .await;
        if moved.is_err() {
            inner.missed_invalidation();
        }
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

impl Inner {
    fn dirty(&self) -> bool {
        self.missed.load(Ordering::Acquire) > self.covered.load(Ordering::Acquire)
    }

    /// The entry, the user's epoch and the global epoch, raw.
    async fn read(
        &self,
        keys: &UserKeys,
        slot: Slot,
    ) -> redis::RedisResult<(Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>)> {
        let conn = self.redis.conn();
        if !conn.is_cluster() {
            let mut cmd = redis::cmd("MGET");
            cmd.arg(keys.entry(slot))
                .arg(&keys.epoch)
                .arg(&self.global_key);
            return conn.query(&cmd).await;
        }
        // The global epoch is in a slot of its own: two commands, concurrently.
        let mut user = redis::cmd("MGET");
        user.arg(keys.entry(slot)).arg(&keys.epoch);
        let mut global = redis::cmd("GET");
        global.arg(&self.global_key);
        let (user, global) = tokio::join!(
            conn.query::<(Option<Vec<u8>>, Option<Vec<u8>>)>(&user),
            conn.query::<Option<Vec<u8>>>(&global),
        );
        let (entry, epoch) = user?;
        Ok((entry, epoch, global?))
    }

    /// Moves the named users to a fresh epoch and deletes their entries, pipelined.
    async fn invalidate_users(
        &self,
        started: Started,
        conn: &ConnectionId,
        users: &[String],
    ) -> Result<(), Failure> {
        // One fresh value serves every user of this call: it only has to differ from each
        // user's previous values.
        let epoch = fresh_epoch_value();
        let keys = users
            .iter()
            .map(|u| UserKeys::new(self.redis.prefix(), conn, u));
        let (pipes, parallel): (Vec<redis::Pipeline>, usize) = if self.redis.conn().is_cluster() {
            // A cluster pipeline must stay within one slot.
            let mut by_slot: HashMap<HashSlot, Vec<UserKeys>> = HashMap::new();
            for k in keys {
                by_slot
                    .entry(HashSlot::for_key(&k.epoch))
                    .or_default()
                    .push(k);
            }
            let pipes = by_slot
                .values()
                .flat_map(|keys| keys.chunks(INVALIDATE_BATCH))
                .map(|chunk| self.invalidation_pipe(chunk, &epoch))
                .collect();
            (pipes, CLUSTER_INVALIDATE_PARALLEL)
        } else {
            let keys: Vec<UserKeys> = keys.collect();
            let pipes = keys
                .chunks(INVALIDATE_BATCH)
                .map(|chunk| self.invalidation_pipe(chunk, &epoch))
                .collect();
            (pipes, INVALIDATE_PARALLEL)
        };
        futures::stream::iter(pipes)
            .map(|pipe| async move {
                self.redis
                    .bounded(started, "invalidate", self.redis.conn().exec(&pipe))
                    .await
            })
            .buffer_unordered(parallel)
            .try_for_each(|()| futures::future::ok(()))
            .await
    }

    fn invalidation_pipe(&self, keys: &[UserKeys], epoch: &str) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("SET")
                .arg(&k.epoch)
                .arg(epoch)
                .arg("EX")
                .arg(self.epoch_ttl_secs)
                .ignore();
            pipe.cmd("DEL").arg(&k.entries[..]).ignore();
        }
        pipe
    }

    async fn move_global_epoch(&self) -> redis::RedisResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&self.global_key).arg(fresh_epoch_value());
        self.redis.conn().query(&cmd).await
    }

    /// Records an invalidation that did not reach Redis and makes sure someone repairs it.
    fn missed_invalidation(self: &Arc<Self>) {
        self.missed.fetch_add(1, Ordering::AcqRel);
        self.spawn_repair_task();
    }

    /// Moves the global epoch if invalidations were missed. True when nothing stale remains.
    async fn repair(&self, started: Started) -> bool {
        let _one_at_a_time = self.repair_lock.lock().await;
        let missed = self.missed.load(Ordering::Acquire);
        if self.covered.load(Ordering::Acquire) >= missed {
            return true;
        }
        match self
            .redis
            .bounded(started, "repair", self.move_global_epoch())
            .await
        {
            Ok(()) => {
                self.covered.fetch_max(missed, Ordering::AcqRel);
                tracing::info!(
                    cache = "redis",
                    missed_invalidations = missed,
                    "claims cache reachable again after missed invalidations; every cached claim was dropped"
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Starts (once) a task that repairs a dirty cache even if no request comes.
    fn spawn_repair_task(self: &Arc<Self>) {
        if self.repair_task.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to run it on: the next request repairs instead.
            self.repair_task.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = self.redis.retry_interval();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                if !inner.dirty() {
                    inner.repair_task.store(false, Ordering::Release);
                    // A miss recorded after the check above would have found the flag still
                    // set and left the work to this task: take it back if so.
                    if inner.dirty() && !inner.repair_task.swap(true, Ordering::AcqRel) {
                        continue;
                    }
                    return;
                }
                if let Some(started) = inner.redis.admit() {
                    inner.repair(started).await;
                }
            }
        });
    }
}

/// A fresh epoch value: random, so it never repeats even if Redis forgets earlier ones.
fn fresh_epoch_value() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The token of a user's current state in Redis: a hash of who the user is and of the raw
/// epoch values (absent values hash differently from any present one).
pub(super) fn redis_token(
    conn: &ConnectionId,
    user_id: &str,
    user_epoch: Option<&[u8]>,
    global: Option<&[u8]>,
) -> Epoch {
    let mut h = Sha256::new();
    h.update(b"pimgate claims epoch v1\0");
    for part in [
        Some(conn.as_str().as_bytes()),
        Some(user_id.as_bytes()),
        user_epoch,
        global,
    ] {
        match part {
            None => h.update([0u8]),
            Some(bytes) => {
                h.update([1u8]);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
        }
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    match u64::from_le_bytes(first) {
        u64::MAX => Epoch(u64::MAX - 1),
        t => Epoch(t),
    }
}

/// An entry as stored: `t=<token as 16 hex digits>;v=<byte length>:<version>;<claims>`.
pub(super) fn encode_entry(token: Epoch, config_version: &str, claims: &str) -> String {
    format!(
        "t={:016x};v={}:{config_version};{claims}",
        token.0,
        config_version.len()
    )
}

pub(super) struct Entry<'a> {
    pub(super) token: Epoch,
    pub(super) version: &'a str,
    pub(super) claims: &'a str,
}

/// Reads an entry back; anything malformed is treated as absent.
pub(super) fn decode_entry(raw: &[u8]) -> Option<Entry<'_>> {
    let raw = std::str::from_utf8(raw).ok()?;
    let rest = raw.strip_prefix("t=")?;
    let (hex, rest) = (rest.get(..16)?, rest.get(16..)?);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let token = u64::from_str_radix(hex, 16).ok()?;
    let rest = rest.strip_prefix(";v=")?;
    let (len, rest) = rest.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let version = rest.get(..len)?;
    let claims = rest.get(len..)?.strip_prefix(';')?;
    Some(Entry {
        token: Epoch(token),
        version,
        claims,
    })
}
