//! Resolved claims, cached per user: in Redis (shared by every replica) or in process (one
//! replica only), fast to read and never served stale once an invalidation has returned (a
//! near copy on *another* replica goes when the invalidation's message reaches it: see
//! [`NearCache`]).
//!
//! The cache stores claims as opaque JSON text; it knows users, connections and config
//! versions, not the claims type. [`ClaimsCache`] is the seam, with two backends:
//! [`RedisCache`] (on the shared [`Redis`](crate::redis::Redis) connection: standalone, TLS,
//! Unix socket or Redis Cluster) and [`MemoryCache`]. [`claims_cache`] picks one.
//!
//! # Why a cached claim cannot be stale
//!
//! The danger is a race between a reader and a writer. A reader misses, reads the directory
//! and resolves claims; meanwhile a writer commits a change to that user and invalidates the
//! cache; then the reader stores what it computed from the *pre-commit* data. A plain
//! "delete on change" cache would now serve that stale entry until it expires.
//!
//! So every user has an **epoch**, and so does the whole cache (the **global epoch**):
//! - [`ClaimsCache::invalidate`] moves each named user to a new epoch (and deletes the entry,
//!   to free memory early); [`ClaimsCache::invalidate_all`] moves the global epoch.
//! - [`ClaimsCache::get`] on a miss returns an [`Epoch`] token naming the (user epoch, global
//!   epoch) pair it saw. The caller reads the directory *after* that, then hands the token back
//!   to [`ClaimsCache::put`], which stores it with the claims and the config version.
//! - `get` answers [`Lookup::Hit`] only when the entry's token is the user's *current* token
//!   and its config version is the one asked for.
//!
//! If a change committed after the reader's `get`, its invalidation moved an epoch, so the
//! reader's token is dead and whatever it stores is never served. If the change committed
//! before, the reader read the new data. Either way no stale claim is served after
//! `invalidate` returns.
//!
//! ## In Redis
//! Keys (`{p}` is the configured prefix):
//! - `{p}:claims:{conn:user}`: the entry, `t=<token, 16 hex>;v=<len>:<config version>;<claims>`,
//!   with a TTL (default one hour) so the entries of users nobody asks for expire;
//! - `{p}:epoch:{conn:user}`: the user's epoch, living a day longer than entries (see below);
//! - `{p}:global`: the global epoch (no TTL).
//!
//! The `{conn:user}` hash tag puts a user's two keys in one Redis Cluster slot, so `get` is a
//! single `MGET` of entry, user epoch and global epoch (two commands in cluster mode, where
//! the global epoch lives in a slot of its own) and invalidation pipelines per slot.
//!
//! Epochs are **fresh random values**, not counters: Redis can lose data (a restart without
//! persistence, a failover to a lagging replica, eviction) and a counter that restarts from
//! zero would hand out an old value again, reviving tokens of readers that raced a change
//! (the ABA problem). A random 64-bit value never repeats in practice. The token is a hash of
//! (connection, user, user epoch, global epoch), so `Epoch` stays one `u64` and a token cannot
//! be used for another user. A missing epoch key ("never invalidated, or expired") hashes
//! differently from any value. Epoch keys outlive entries by a day so that an entry written
//! under a "missing" epoch has expired before its user's epoch key can expire back to
//! "missing". Run the cache Redis with `maxmemory-policy noeviction` or `volatile-ttl` (which
//! evicts the short-lived entries before the epochs).
//!
//! ## Outages
//! Redis is an accelerator: a Redis error never fails a request. The shared connection bounds
//! every command and skips Redis while it is down (its circuit breaker, logged once per
//! transition); here an error, a timeout or a skipped command turns `get` into an
//! **uncacheable miss** ([`Epoch::UNCACHEABLE`], whose `put` is a no-op).
//!
//! An invalidation that could not reach Redis leaves entries there that may now be stale
//! (Redis may come back with its data). The cache remembers that ("dirty"), and before it
//! serves anything again it moves the global epoch, which kills every entry written before.
//! A background task retries that until it succeeds, so it happens even with no traffic.
//! What this cannot cover: *other* replicas that still reach Redis keep serving the entries
//! this replica failed to invalidate until it repairs (or, if it dies first, until the entries
//! expire).
//!
//! ## Near copies
//! With Redis, [`NearCache`] keeps recent hits in each replica's memory as well, coherent
//! through Redis publish/subscribe: see its module (`near.rs`) for why a copy is not stale.
//!
//! ## Two slots per user
//! An entry is a [`Slot`]: the resolved claims, or the user's SCIM representation (what
//! `GET /Users/{id}` answers). Both share the user's epoch, so the invalidations the claims
//! need (a user's change, a membership change, a group's update) end both.
//!
//! ## In process
//! [`MemoryCache`] keeps the same contract with a mutex: epochs come from one counter, so a
//! token is `max(user epoch, global epoch)`, and `put` checks the token under the lock. It is
//! bounded; users without an entry share one "floor" epoch, so forgetting a user never lets
//! an old token come back.

mod memory;
mod near;
mod redis_cache;
#[cfg(test)]
mod tests;
mod user_map;

use std::sync::Arc;

pub use self::memory::MemoryCache;
pub use self::near::NearCache;
pub use self::redis_cache::{RedisCache, RedisCacheOptions};
use crate::connections::ConnectionId;

/// The token a miss hands out, to be given back to [`ClaimsCache::put`]. Opaque: it names the
/// state of the user's epochs the miss saw, nothing to compute with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The token of a miss that must not be cached (Redis unreachable): `put` ignores it.
    pub const UNCACHEABLE: Epoch = Epoch(u64::MAX);

    /// Whether a `put` with this token can store anything.
    pub fn is_cacheable(self) -> bool {
        self != Self::UNCACHEABLE
    }
}

/// The answer of [`ClaimsCache::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The cached claims (serialized), current for this user and config version.
    Hit(String),
    /// Nothing current: resolve, then `put` with this token.
    Miss(Epoch),
}

/// What is cached of a user. Both entries share the user's epoch, so one invalidation ends
/// both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The resolved claims.
    Claims,
    /// The SCIM representation of the user with its groups (what `GET /Users/{id}` answers).
    ScimUser,
}

impl Slot {
    pub(crate) const ALL: [Slot; 2] = [Slot::Claims, Slot::ScimUser];

    pub(crate) fn index(self) -> usize {
        match self {
            Slot::Claims => 0,
            Slot::ScimUser => 1,
        }
    }

    /// The name in Redis keys.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Slot::Claims => "claims",
            Slot::ScimUser => "scim-user",
        }
    }
}

/// Which entry: one user of one connection, under one version of what it was computed with
/// (the access model's content version for claims). An entry stored under another version
/// is a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimsKey<'a> {
    pub conn: &'a ConnectionId,
    pub user: &'a str,
    pub version: &'a str,
    pub slot: Slot,
}

impl<'a> ClaimsKey<'a> {
    /// The claims of a user.
    pub fn new(conn: &'a ConnectionId, user: &'a str, version: &'a str) -> Self {
        Self {
            conn,
            user,
            version,
            slot: Slot::Claims,
        }
    }

    /// The SCIM representation of a user.
    pub fn scim_user(conn: &'a ConnectionId, user: &'a str, version: &'a str) -> Self {
        Self {
            slot: Slot::ScimUser,
            ..Self::new(conn, user, version)
        }
    }
}

/// Resolved claims per (connection, user, config version), invalidated by directory and
/// config changes. See the module documentation for why it is never stale.
#[async_trait::async_trait]
pub trait ClaimsCache: std::fmt::Debug + Send + Sync + 'static {
    /// Looks up the cached claims of a user for this config version. On a miss returns the
    /// epoch to pass to `put`.
    async fn get(&self, key: &ClaimsKey<'_>) -> Lookup;

    /// Stores claims computed from data read AFTER `get` returned `epoch`. If the user was
    /// invalidated meanwhile, the entry is ignored by later reads.
    async fn put(&self, key: &ClaimsKey<'_>, epoch: Epoch, claims: &str);

    /// After a committed directory change: the next read of these users misses.
    async fn invalidate(&self, conn: &ConnectionId, user_ids: &[String]);

    /// After a config change: everything misses.
    async fn invalidate_all(&self);

    /// `"redis"` or `"memory"`, for logs and the readiness report.
    fn kind(&self) -> &'static str;
}

/// How many entries the in-process cache holds when [`claims_cache`] picks it.
pub const DEFAULT_MEMORY_ENTRIES: usize = 100_000;

/// The cache the deployment asks for: in Redis when one is configured (shared by every
/// replica), in process otherwise.
/// With Redis and `near_entries > 0`, a [`NearCache`] keeps a copy of recent hits in process,
/// kept coherent by Redis publish/subscribe.
pub fn claims_cache(
    redis: Option<crate::redis::Redis>,
    near_entries: usize,
) -> Arc<dyn ClaimsCache> {
    match redis {
        Some(r) if near_entries > 0 => Arc::new(NearCache::new(
            RedisCache::new(r.clone(), RedisCacheOptions::default()),
            r,
            near_entries,
        )),
        Some(r) => Arc::new(RedisCache::new(r, RedisCacheOptions::default())),
        None => Arc::new(MemoryCache::new(DEFAULT_MEMORY_ENTRIES)),
    }
}

/// How many entries each replica keeps in front of Redis.
pub const DEFAULT_NEAR_ENTRIES: usize = 20_000;
