//! Resolved claims, cached per user: in Redis (shared by every replica) or in process (one
//! replica only), fast to read and never served stale.
//!
//! The cache stores claims as opaque JSON text; it knows users, connections and config
//! versions, not the claims type. [`ClaimsCache`] is the seam, with two backends:
//! [`RedisCache`] (standalone, TLS, Unix socket or Redis Cluster) and [`MemoryCache`].
//! [`from_url`] picks one from the configuration.
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
//! Redis is an accelerator: a Redis error never fails a request. Every command is bounded by a
//! short timeout (500 ms by default); an error or a timeout turns `get` into an
//! **uncacheable miss** ([`Epoch::UNCACHEABLE`], whose `put` is a no-op) and marks the cache
//! degraded. While degraded, requests skip Redis and one probe per second (by default) tries
//! again, so a dead Redis costs no latency. The transition is logged once (`warn` when it
//! breaks, `info` when it answers again), not per request.
//!
//! An invalidation that could not reach Redis leaves entries there that may now be stale
//! (Redis may come back with its data). The cache remembers that ("dirty"), and before it
//! serves anything again it moves the global epoch, which kills every entry written before.
//! A background task retries that until it succeeds, so it happens even with no traffic.
//! What this cannot cover: *other* replicas that still reach Redis keep serving the entries
//! this replica failed to invalidate until it repairs (or, if it dies first, until the entries
//! expire).
//!
//! ## In process
//! [`MemoryCache`] keeps the same contract with a mutex: epochs come from one counter, so a
//! token is `max(user epoch, global epoch)`, and `put` checks the token under the lock. It is
//! bounded; users without an entry share one "floor" epoch, so forgetting a user never lets
//! an old token come back.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::directory::ConnectionId;

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

/// Resolved claims per (connection, user, config version), invalidated by directory and
/// config changes. See the module documentation for why it is never stale.
#[async_trait::async_trait]
pub trait ClaimsCache: Send + Sync + 'static {
    /// Looks up the cached claims of a user for this config version. On a miss returns the
    /// epoch to pass to `put`.
    async fn get(&self, conn: &ConnectionId, user_id: &str, config_version: &str) -> Lookup;

    /// Stores claims computed from data read AFTER `get` returned `epoch`. If the user was
    /// invalidated meanwhile, the entry is ignored by later reads.
    async fn put(
        &self,
        conn: &ConnectionId,
        user_id: &str,
        config_version: &str,
        epoch: Epoch,
        claims: &str,
    );

    /// After a committed directory change: the next read of these users misses.
    async fn invalidate(&self, conn: &ConnectionId, user_ids: &[String]);

    /// After a config change: everything misses.
    async fn invalidate_all(&self);

    /// `"redis"` or `"memory"`, for logs and the readiness report.
    fn kind(&self) -> &'static str;
}

/// Why a cache could not be built. Only configuration mistakes: an unreachable Redis is not
/// an error (the cache starts degraded and recovers by itself).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The Redis URL cannot be used (the URL itself is never repeated: it may hold a password).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// The key prefix would break Redis Cluster hash tags.
    #[error("invalid Redis key prefix {0:?}: '{{' and '}}' are reserved for cluster hash tags")]
    InvalidPrefix(String),
}

/// How many entries the in-process cache holds when [`from_url`] picks it.
pub const DEFAULT_MEMORY_ENTRIES: usize = 100_000;

/// The cache the configuration asks for: Redis when a URL is set, in process otherwise.
///
/// Fails only on a malformed URL or prefix; a Redis that cannot be reached yet gives a working
/// cache that serves misses until Redis answers.
pub async fn from_url(url: Option<&str>, prefix: &str) -> Result<Arc<dyn ClaimsCache>, CacheError> {
    Ok(match url {
        None => Arc::new(MemoryCache::new(DEFAULT_MEMORY_ENTRIES)),
        Some(url) => Arc::new(RedisCache::connect(url, prefix).await?),
    })
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

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
    /// The longest a single Redis round trip may take before it counts as an outage.
    pub command_timeout: Duration,
    /// While Redis is unreachable, how often one request (or the repair task) tries again.
    pub retry_interval: Duration,
}

impl Default for RedisCacheOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60 * 60),
            command_timeout: Duration::from_millis(500),
            retry_interval: Duration::from_secs(1),
        }
    }
}

/// Claims cached in Redis, shared by every replica. See the module documentation.
pub struct RedisCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.inner.prefix)
            .field(
                "cluster",
                &matches!(self.inner.backend, Backend::Cluster(_)),
            )
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

/// The two ways to talk to Redis. Both multiplex one connection per node and reconnect on
/// their own.
#[derive(Clone)]
enum Backend {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Backend {
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Backend::Single(c) => cmd.query_async(&mut c.clone()).await,
            Backend::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }

    async fn exec(&self, pipe: &redis::Pipeline) -> redis::RedisResult<()> {
        match self {
            Backend::Single(c) => pipe.exec_async(&mut c.clone()).await,
            Backend::Cluster(c) => pipe.exec_async(&mut c.clone()).await,
        }
    }
}

struct Inner {
    backend: Backend,
    prefix: String,
    global_key: String,
    ttl_secs: u64,
    epoch_ttl_secs: u64,
    timeout: Duration,
    health: Health,
}

/// Why one Redis operation failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The two keys of one user.
struct UserKeys {
    entry: String,
    epoch: String,
}

impl UserKeys {
    fn new(prefix: &str, conn: &ConnectionId, user_id: &str) -> Self {
        // A connection name has no ':', so `conn:user` is unambiguous; the braces make it the
        // cluster hash tag of both keys.
        Self {
            entry: format!("{prefix}:claims:{{{conn}:{user_id}}}"),
            epoch: format!("{prefix}:epoch:{{{conn}:{user_id}}}"),
        }
    }
}

impl RedisCache {
    /// Connects with the default options. See [`RedisCache::connect_with`].
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        Self::connect_with(url, prefix, RedisCacheOptions::default()).await
    }

    /// Builds the cache for `url` and checks once whether Redis answers.
    ///
    /// URLs: `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS, server verified
    /// against the system roots; `SSL_CERT_FILE` adds a private CA), `redis+unix:///path` or
    /// `unix:///path` (`?db=N&pass=…`). Redis Cluster: add `?cluster=true`, or list several
    /// nodes, as `redis://:pw@host1:6379,host2:6379` (the first node's scheme and credentials
    /// apply to the bare `host:port` items) or as comma-separated full URLs.
    ///
    /// Fails only if the URL or prefix is malformed; an unreachable Redis gives a cache that
    /// starts degraded (misses, logged once) and recovers when Redis answers.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        options: RedisCacheOptions,
    ) -> Result<Self, CacheError> {
        if prefix.contains(['{', '}']) {
            return Err(CacheError::InvalidPrefix(prefix.to_owned()));
        }
        let timeout = options.command_timeout.max(Duration::from_millis(1));
        let backend = match parse_target(url)? {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| CacheError::InvalidUrl(e.to_string()))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    // Our own probe schedule paces reconnection; the manager tries once more.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(timeout);
                let manager = ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(|e| CacheError::InvalidUrl(e.to_string()))?;
                Backend::Single(manager)
            }
            Target::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()
                    .map_err(|e| CacheError::InvalidUrl(e.to_string()))?;
                // Connects in the background and reconnects by itself: an unreachable
                // cluster at startup is an outage, not a configuration error.
                Backend::Cluster(
                    client.get_pending_async_connection_with_config(
                        ClusterConfig::new()
                            .set_connection_timeout(timeout)
                            .set_response_timeout(timeout),
                    ),
                )
            }
        };
        let ttl_secs = options.ttl.as_secs().max(1);
        let cache = Self {
            inner: Arc::new(Inner {
                backend,
                prefix: prefix.to_owned(),
                global_key: format!("{prefix}:global"),
                ttl_secs,
                epoch_ttl_secs: ttl_secs + EPOCH_TTL_MARGIN.as_secs(),
                timeout,
                health: Health::new(options.retry_interval),
            }),
        };
        cache.inner.startup_probe().await;
        Ok(cache)
    }

    /// Whether the last Redis operation succeeded (for readiness reports).
    pub fn is_healthy(&self) -> bool {
        self.inner.health.healthy.load(Ordering::Acquire)
    }
}

#[async_trait::async_trait]
impl ClaimsCache for RedisCache {
    async fn get(&self, conn: &ConnectionId, user_id: &str, config_version: &str) -> Lookup {
        let inner = &self.inner;
        let started = inner.health.now_ms();
        if !inner.health.admit() {
            return Lookup::Miss(Epoch::UNCACHEABLE);
        }
        // Entries written before a missed invalidation may be stale: kill them first.
        if inner.health.dirty() && !inner.repair(started).await {
            return Lookup::Miss(Epoch::UNCACHEABLE);
        }
        let keys = UserKeys::new(&inner.prefix, conn, user_id);
        match inner.bounded(inner.read(&keys)).await {
            Ok((entry, user_epoch, global)) => {
                inner.health.succeeded(started);
                let token = redis_token(conn, user_id, user_epoch.as_deref(), global.as_deref());
                match entry.as_deref().and_then(decode_entry) {
                    Some(e) if e.token == token && e.version == config_version => {
                        Lookup::Hit(e.claims.to_owned())
                    }
                    _ => Lookup::Miss(token),
                }
            }
            Err(e) => {
                inner.health.failed("get", &e);
                Lookup::Miss(Epoch::UNCACHEABLE)
            }
        }
    }

    async fn put(
        &self,
        conn: &ConnectionId,
        user_id: &str,
        config_version: &str,
        epoch: Epoch,
        claims: &str,
    ) {
        let inner = &self.inner;
        // While dirty the global epoch is about to move: anything stored now would be dead.
        if !epoch.is_cacheable() || inner.health.dirty() {
            return;
        }
        let started = inner.health.now_ms();
        if !inner.health.admit() {
            return;
        }
        let keys = UserKeys::new(&inner.prefix, conn, user_id);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&keys.entry)
            .arg(encode_entry(epoch, config_version, claims))
            .arg("EX")
            .arg(inner.ttl_secs);
        match inner.bounded(inner.backend.query::<()>(&cmd)).await {
            Ok(()) => inner.health.succeeded(started),
            Err(e) => inner.health.failed("put", &e),
        }
    }

    async fn invalidate(&self, conn: &ConnectionId, user_ids: &[String]) {
        if user_ids.is_empty() {
            return;
        }
        let inner = &self.inner;
        let started = inner.health.now_ms();
        if !inner.health.admit() {
            inner.missed_invalidation();
            return;
        }
        match inner.invalidate_users(conn, user_ids).await {
            Ok(()) => inner.health.succeeded(started),
            Err(e) => {
                inner.health.failed("invalidate", &e);
                inner.missed_invalidation();
            }
        }
    }

    async fn invalidate_all(&self) {
        let inner = &self.inner;
        let started = inner.health.now_ms();
        if !inner.health.admit() {
            inner.missed_invalidation();
            return;
        }
        match inner.bounded(inner.move_global_epoch()).await {
            Ok(()) => inner.health.succeeded(started),
            Err(e) => {
                inner.health.failed("invalidate_all", &e);
                inner.missed_invalidation();
            }
        }
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

impl Inner {
    /// Runs one Redis operation under the command timeout.
    async fn bounded<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout(self.timeout)),
        }
    }

    /// Says at startup whether Redis answers, so an outage is logged before the first request.
    async fn startup_probe(&self) {
        let started = self.health.now_ms();
        match self
            .bounded(self.backend.query::<()>(&redis::cmd("PING")))
            .await
        {
            Ok(()) => self.health.succeeded(started),
            Err(e) => self.health.failed("connect", &e),
        }
    }

    /// The entry, the user's epoch and the global epoch, raw.
    async fn read(
        &self,
        keys: &UserKeys,
    ) -> redis::RedisResult<(Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>)> {
        match &self.backend {
            Backend::Single(_) => {
                let mut cmd = redis::cmd("MGET");
                cmd.arg(&keys.entry).arg(&keys.epoch).arg(&self.global_key);
                self.backend.query(&cmd).await
            }
            Backend::Cluster(_) => {
                // The global epoch is in a slot of its own: two commands, concurrently.
                let mut user = redis::cmd("MGET");
                user.arg(&keys.entry).arg(&keys.epoch);
                let mut global = redis::cmd("GET");
                global.arg(&self.global_key);
                let (user, global) = tokio::join!(
                    self.backend
                        .query::<(Option<Vec<u8>>, Option<Vec<u8>>)>(&user),
                    self.backend.query::<Option<Vec<u8>>>(&global),
                );
                let (entry, epoch) = user?;
                Ok((entry, epoch, global?))
            }
        }
    }

    /// Moves the named users to a fresh epoch and deletes their entries, pipelined.
    async fn invalidate_users(&self, conn: &ConnectionId, users: &[String]) -> Result<(), Failure> {
        // One fresh value serves every user of this call: it only has to differ from each
        // user's previous values.
        let epoch = fresh_epoch_value();
        let keys = users.iter().map(|u| UserKeys::new(&self.prefix, conn, u));
        let (pipes, parallel): (Vec<redis::Pipeline>, usize) = match &self.backend {
            Backend::Single(_) => {
                let keys: Vec<UserKeys> = keys.collect();
                let pipes = keys
                    .chunks(INVALIDATE_BATCH)
                    .map(|chunk| self.invalidation_pipe(chunk, &epoch))
                    .collect();
                (pipes, INVALIDATE_PARALLEL)
            }
            Backend::Cluster(_) => {
                // A cluster pipeline must stay within one slot.
                let mut by_slot: HashMap<Slot, Vec<UserKeys>> = HashMap::new();
                for k in keys {
                    by_slot.entry(Slot::for_key(&k.entry)).or_default().push(k);
                }
                let pipes = by_slot
                    .values()
                    .flat_map(|keys| keys.chunks(INVALIDATE_BATCH))
                    .map(|chunk| self.invalidation_pipe(chunk, &epoch))
                    .collect();
                (pipes, CLUSTER_INVALIDATE_PARALLEL)
            }
        };
        futures::stream::iter(pipes)
            .map(|pipe| async move { self.bounded(self.backend.exec(&pipe)).await })
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
            pipe.cmd("DEL").arg(&k.entry).ignore();
        }
        pipe
    }

    async fn move_global_epoch(&self) -> redis::RedisResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&self.global_key).arg(fresh_epoch_value());
        self.backend.query(&cmd).await
    }

    /// Records an invalidation that did not reach Redis and makes sure someone repairs it.
    fn missed_invalidation(self: &Arc<Self>) {
        self.health.missed.fetch_add(1, Ordering::AcqRel);
        self.spawn_repair_task();
    }

    /// Moves the global epoch if invalidations were missed. True when nothing stale remains.
    async fn repair(&self, started: u64) -> bool {
        let _one_at_a_time = self.health.repair_lock.lock().await;
        let missed = self.health.missed.load(Ordering::Acquire);
        if self.health.covered.load(Ordering::Acquire) >= missed {
            return true;
        }
        match self.bounded(self.move_global_epoch()).await {
            Ok(()) => {
                self.health.covered.fetch_max(missed, Ordering::AcqRel);
                self.health.succeeded(started);
                tracing::info!(
                    cache = "redis",
                    missed_invalidations = missed,
                    "claims cache reachable again after missed invalidations; every cached claim was dropped"
                );
                true
            }
            Err(e) => {
                self.health.failed("repair", &e);
                false
            }
        }
    }

    /// Starts (once) a task that repairs a dirty cache even if no request comes.
    fn spawn_repair_task(self: &Arc<Self>) {
        if self.health.repair_task.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to run it on: the next request repairs instead.
            self.health.repair_task.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = self.health.retry_interval;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                if !inner.health.dirty() {
                    inner.health.repair_task.store(false, Ordering::Release);
                    // A miss recorded after the check above would have found the flag still
                    // set and left the work to this task: take it back if so.
                    if inner.health.dirty()
                        && !inner.health.repair_task.swap(true, Ordering::AcqRel)
                    {
                        continue;
                    }
                    return;
                }
                let started = inner.health.now_ms();
                inner.repair(started).await;
            }
        });
    }
}

/// Whether Redis answers, the probe schedule while it does not, and missed invalidations.
struct Health {
    healthy: AtomicBool,
    origin: Instant,
    retry_interval: Duration,
    /// While degraded: when (ms after `origin`) the next request may try Redis.
    next_attempt_ms: AtomicU64,
    /// When (ms after `origin`) the last operation failed: older operations that succeed
    /// late do not count as a recovery.
    last_failure_ms: AtomicU64,
    /// Invalidations that did not reach Redis, and how many a global epoch move has covered.
    missed: AtomicU64,
    covered: AtomicU64,
    repair_lock: tokio::sync::Mutex<()>,
    repair_task: AtomicBool,
}

impl Health {
    fn new(retry_interval: Duration) -> Self {
        Self {
            healthy: AtomicBool::new(true),
            origin: Instant::now(),
            retry_interval,
            next_attempt_ms: AtomicU64::new(0),
            last_failure_ms: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            covered: AtomicU64::new(0),
            repair_lock: tokio::sync::Mutex::new(()),
            repair_task: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn retry_ms(&self) -> u64 {
        u64::try_from(self.retry_interval.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this operation may use Redis: always when healthy; when degraded, only the one
    /// operation that claims the next probe slot.
    fn admit(&self) -> bool {
        if self.healthy.load(Ordering::Acquire) {
            return true;
        }
        let now = self.now_ms();
        let next = self.next_attempt_ms.load(Ordering::Acquire);
        now >= next
            && self
                .next_attempt_ms
                .compare_exchange(
                    next,
                    now.saturating_add(self.retry_ms()),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn dirty(&self) -> bool {
        self.missed.load(Ordering::Acquire) > self.covered.load(Ordering::Acquire)
    }

    /// An operation that started at `started` succeeded.
    fn succeeded(&self, started: u64) {
        if self.healthy.load(Ordering::Acquire) {
            return;
        }
        if started > self.last_failure_ms.load(Ordering::Acquire)
            && !self.healthy.swap(true, Ordering::AcqRel)
        {
            tracing::info!(cache = "redis", "claims cache reachable again");
        }
    }

    fn failed(&self, operation: &'static str, error: &Failure) {
        let now = self.now_ms();
        self.last_failure_ms.fetch_max(now, Ordering::AcqRel);
        self.next_attempt_ms
            .store(now.saturating_add(self.retry_ms()), Ordering::Release);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                cache = "redis",
                operation,
                error = %error,
                "claims cache unreachable; claims are resolved without it until it answers again"
            );
        }
    }
}

/// A fresh epoch value: random, so it never repeats even if Redis forgets earlier ones.
fn fresh_epoch_value() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The token of a user's current state in Redis: a hash of who the user is and of the raw
/// epoch values (absent values hash differently from any present one).
fn redis_token(
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
fn encode_entry(token: Epoch, config_version: &str, claims: &str) -> String {
    format!(
        "t={:016x};v={}:{config_version};{claims}",
        token.0,
        config_version.len()
    )
}

struct Entry<'a> {
    token: Epoch,
    version: &'a str,
    claims: &'a str,
}

/// Reads an entry back; anything malformed is treated as absent.
fn decode_entry(raw: &[u8]) -> Option<Entry<'_>> {
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

/// What a Redis URL points at.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Single(String),
    Cluster(Vec<String>),
}

/// Splits a configured URL into one server or cluster seed nodes (see
/// [`RedisCache::connect_with`] for the accepted forms). The `cluster` query parameter is
/// ours; other parameters and a `#fragment` apply to every node.
fn parse_target(url: &str) -> Result<Target, CacheError> {
    let url = url.trim();
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut cluster = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key == "cluster" {
            cluster = match value {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(CacheError::InvalidUrl(
                        "the `cluster` parameter must be true or false".into(),
                    ));
                }
            };
        } else {
            kept.push(pair);
        }
    }
    let mut suffix = String::new();
    if !kept.is_empty() {
        suffix.push('?');
        suffix.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        suffix.push('#');
        suffix.push_str(f);
    }

    let mut nodes = Vec::new();
    for one in split_full_urls(base) {
        let Some((scheme, after)) = one.split_once("://") else {
            return Err(CacheError::InvalidUrl(
                "expected redis://, rediss://, redis+unix:// or unix://".into(),
            ));
        };
        let (authority, path) = after.find('/').map_or((after, ""), |i| after.split_at(i));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        for host in hosts.split(',').map(str::trim) {
            let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
            nodes.push(format!("{scheme}://{auth}{host}{path}{suffix}"));
        }
    }
    match nodes.len() {
        0 => Err(CacheError::InvalidUrl("no Redis node given".into())),
        1 if !cluster => Ok(Target::Single(nodes.remove(0))),
        _ => Ok(Target::Cluster(nodes)),
    }
}

/// Splits `a://x,b://y` at the commas that start another full URL (a comma elsewhere, as in
/// a host list or a password, stays).
fn split_full_urls(base: &str) -> Vec<&str> {
    let bytes = base.as_bytes();
    let is_scheme_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
    // (where the previous URL ends, where the next one starts)
    let mut cuts = Vec::new();
    let mut from = 0;
    while let Some(found) = base.get(from..).and_then(|s| s.find("://")) {
        let at = from + found;
        let mut start = at;
        while start > 0 && bytes.get(start - 1).is_some_and(is_scheme_byte) {
            start -= 1;
        }
        let mut comma = start;
        while comma > 0 && bytes.get(comma - 1).is_some_and(u8::is_ascii_whitespace) {
            comma -= 1;
        }
        if comma > 0 && bytes.get(comma - 1) == Some(&b',') {
            cuts.push((comma - 1, start));
        }
        from = at + 3;
    }
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for (end, next) in cuts {
        parts.extend(base.get(start..end).map(str::trim));
        start = next;
    }
    parts.extend(base.get(start..).map(str::trim));
    parts
}

// ---------------------------------------------------------------------------------------------
// In process
// ---------------------------------------------------------------------------------------------

/// Claims cached in this process: for a single replica without Redis. Bounded to
/// `max_entries` (an arbitrary entry goes when full); `MemoryCache::new(0)` caches nothing.
pub struct MemoryCache {
    max_entries: usize,
    state: Mutex<MemoryState>,
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("max_entries", &self.max_entries)
            .field("entries", &self.lock().len)
            .finish()
    }
}

#[derive(Default)]
struct MemoryState {
    /// The last epoch handed out: user and global epochs share this counter, so a token can
    /// be `max(user epoch, global epoch)` and still change whenever either moves.
    last: u64,
    global: u64,
    /// The epoch of every user without an entry. Invalidations raise it: a user without an
    /// entry may have a reader in flight, whose token must die.
    floor: u64,
    entries: HashMap<ConnectionId, HashMap<String, MemoryEntry>>,
    len: usize,
}

/// A cached claim. Entries in the map are always current: every invalidation removes them,
/// and `put` stores only under the current token.
struct MemoryEntry {
    /// The user's epoch (the floor when the entry was stored).
    epoch: u64,
    version: String,
    claims: String,
}

impl MemoryState {
    fn entry(&self, conn: &ConnectionId, user_id: &str) -> Option<&MemoryEntry> {
        self.entries.get(conn).and_then(|m| m.get(user_id))
    }

    fn token(&self, conn: &ConnectionId, user_id: &str) -> u64 {
        let user = self.entry(conn, user_id).map_or(self.floor, |e| e.epoch);
        user.max(self.global)
    }

    fn next(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    fn remove(&mut self, conn: &ConnectionId, user_id: &str) {
        let Some(users) = self.entries.get_mut(conn) else {
            return;
        };
        if users.remove(user_id).is_some() {
            self.len -= 1;
        }
        if users.is_empty() {
            self.entries.remove(conn);
        }
    }

    /// Drops one entry. Its user falls back to the floor epoch, which is at least the
    /// entry's own (the floor never goes down), so no old token can come back.
    fn evict_one(&mut self) {
        let victim = self
            .entries
            .iter()
            .find_map(|(conn, users)| users.keys().next().map(|u| (conn.clone(), u.clone())));
        if let Some((conn, user)) = victim {
            self.remove(&conn, &user);
        }
    }
}

impl MemoryCache {
    /// An empty cache holding at most `max_entries` users' claims.
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            state: Mutex::new(MemoryState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // Every update leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl ClaimsCache for MemoryCache {
    async fn get(&self, conn: &ConnectionId, user_id: &str, config_version: &str) -> Lookup {
        let state = self.lock();
        match state.entry(conn, user_id) {
            Some(e) if e.version == config_version => Lookup::Hit(e.claims.clone()),
            _ => Lookup::Miss(Epoch(state.token(conn, user_id))),
        }
    }

    async fn put(
        &self,
        conn: &ConnectionId,
        user_id: &str,
        config_version: &str,
        epoch: Epoch,
        claims: &str,
    ) {
        if self.max_entries == 0 || !epoch.is_cacheable() {
            return;
        }
        let mut state = self.lock();
        if state.token(conn, user_id) != epoch.0 {
            return; // invalidated since the miss: these claims may be stale
        }
        if let Some(e) = state.entries.get_mut(conn).and_then(|m| m.get_mut(user_id)) {
            config_version.clone_into(&mut e.version);
            claims.clone_into(&mut e.claims);
            return;
        }
        if state.len >= self.max_entries {
            state.evict_one();
        }
        let entry = MemoryEntry {
            epoch: state.floor,
            version: config_version.to_owned(),
            claims: claims.to_owned(),
        };
        state
            .entries
            .entry(conn.clone())
            .or_default()
            .insert(user_id.to_owned(), entry);
        state.len += 1;
    }

    async fn invalidate(&self, conn: &ConnectionId, user_ids: &[String]) {
        if user_ids.is_empty() {
            return;
        }
        let mut state = self.lock();
        for u in user_ids {
            state.remove(conn, u);
        }
        state.floor = state.next();
    }

    async fn invalidate_all(&self) {
        let mut state = self.lock();
        state.entries.clear();
        state.len = 0;
        state.global = state.next();
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    //! Behaviour stories written once and run on both backends (the shared Redis at
    //! `PIMGATE_TEST_REDIS_URL`, under a key prefix of each test's own, and in process), then
    //! Redis outages on a `redis-server` of the test's own, a Redis Cluster, TLS, and the
    //! pure helpers.

    use super::*;

    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

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
        cache.put(c, user, version, epoch, claims).await;
        assert_eq!(
            cache.get(c, user, version).await,
            Lookup::Hit(claims.to_owned()),
            "{user} after put"
        );
        epoch
    }

    /// Asserts a cacheable miss and returns its token.
    async fn miss(cache: &dyn ClaimsCache, c: &ConnectionId, user: &str, version: &str) -> Epoch {
        match cache.get(c, user, version).await {
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

    async fn hit(cache: &dyn ClaimsCache, c: &ConnectionId, user: &str, version: &str) -> String {
        match cache.get(c, user, version).await {
            Lookup::Hit(h) => h,
            Lookup::Miss(_) => panic!("{user}: expected a hit"),
        }
    }

    // --- the stories -----------------------------------------------------------------------

    async fn miss_then_put_then_hit(cache: &dyn ClaimsCache) {
        let acme = conn("acme");
        fill(cache, &acme, "u1", "v1", CLAIMS).await;
        // Stored again under a fresh token: replaced.
        let Lookup::Hit(_) = cache.get(&acme, "u1", "v1").await else {
            panic!("hit")
        };
        // Other users and the same user id in another connection are separate.
        miss(cache, &acme, "u2", "v1").await;
        miss(cache, &conn("other"), "u1", "v1").await;
        // An uncacheable token stores nothing.
        cache
            .put(&acme, "u2", "v1", Epoch::UNCACHEABLE, CLAIMS)
            .await;
        miss(cache, &acme, "u2", "v1").await;
    }

    async fn config_version_change_misses(cache: &dyn ClaimsCache) {
        let acme = conn("acme");
        fill(cache, &acme, "u1", "v1", CLAIMS).await;
        let epoch = miss(cache, &acme, "u1", "v2").await;
        cache.put(&acme, "u1", "v2", epoch, OTHER_CLAIMS).await;
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
        cache.put(&acme, "u1", "v1", epoch, OTHER_CLAIMS).await;
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
        cache.put(&acme, "u1", "v1", before, "stale").await;
        let after = miss(cache, &acme, "u1", "v1").await;
        assert_ne!(after, before);
        cache.put(&acme, "u1", "v1", after, CLAIMS).await;
        assert_eq!(hit(cache, &acme, "u1", "v1").await, CLAIMS);

        // A user with an entry, read for another config version meanwhile.
        let before = miss(cache, &acme, "u1", "v2").await;
        cache.invalidate(&acme, &users(&["u1"])).await;
        cache.put(&acme, "u1", "v2", before, "stale").await;
        miss(cache, &acme, "u1", "v2").await;
        miss(cache, &acme, "u1", "v1").await;

        // Two changes in a row, the reader's put in between and after.
        let before = miss(cache, &acme, "u3", "v1").await;
        cache.invalidate(&acme, &users(&["u3"])).await;
        cache.put(&acme, "u3", "v1", before, "stale").await;
        cache.invalidate(&acme, &users(&["u3"])).await;
        cache.put(&acme, "u3", "v1", before, "stale").await;
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
        cache.put(&acme, "u3", "v1", before, "stale").await;
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
        cache.put(&acme, &many[50_000], "v1", before, "stale").await;
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
                        let cache = scratch.cache().await;
                        super::$story(&cache).await;
                    }
                )*
            }
        };
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

    fn shared_url() -> String {
        std::env::var("PIMGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn unique_prefix() -> String {
        format!("pimgate-test-{}", uuid::Uuid::new_v4().simple())
    }

    /// A key prefix of the test's own on the shared Redis, deleted when dropped (also when
    /// the test fails).
    struct Scratch {
        url: String,
        prefix: String,
    }

    impl Scratch {
        fn new() -> Self {
            Self {
                url: shared_url(),
                prefix: unique_prefix(),
            }
        }

        async fn cache(&self) -> RedisCache {
            let cache = RedisCache::connect(&self.url, &self.prefix).await.unwrap();
            assert!(
                cache.is_healthy(),
                "the shared Redis at {} does not answer",
                self.url
            );
            cache
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let Ok(client) = redis::Client::open(self.url.as_str()) else {
                return;
            };
            let Ok(mut con) = client.get_connection() else {
                return;
            };
            let pattern = format!("{}:*", self.prefix);
            let mut cursor = 0u64;
            loop {
                let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(5000)
                    .query(&mut con)
                else {
                    return;
                };
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut con);
                }
                if next == 0 {
                    return;
                }
                cursor = next;
            }
        }
    }

    #[tokio::test]
    async fn redis_keys_share_a_slot_per_user_and_expire() {
        let scratch = Scratch::new();
        let cache = scratch.cache().await;
        let acme = conn("acme");
        fill(&cache, &acme, "u1", "v1", CLAIMS).await;
        cache.invalidate(&acme, &users(&["u2"])).await;
        let entry = UserKeys::new(&scratch.prefix, &acme, "u1").entry;
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
    fn fast() -> RedisCacheOptions {
        RedisCacheOptions {
            retry_interval: Duration::from_millis(50),
            ..RedisCacheOptions::default()
        }
    }

    /// A `redis-server` child on a Unix socket in a temporary directory, nothing on disk.
    struct OwnRedis {
        dir: tempfile::TempDir,
        child: Option<Child>,
    }

    impl OwnRedis {
        async fn start() -> Self {
            let mut me = Self {
                dir: tempfile::tempdir().unwrap(),
                child: None,
            };
            me.restart().await;
            me
        }

        fn sock(&self) -> PathBuf {
            self.dir.path().join("r.sock")
        }

        fn url(&self) -> String {
            format!("redis+unix://{}", self.sock().display())
        }

        async fn restart(&mut self) {
            assert!(self.child.is_none(), "already running");
            let child = Command::new("redis-server")
                .args(["--port", "0", "--unixsocket"])
                .arg(self.sock())
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                ])
                .arg(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on PATH");
            self.child = Some(child);
            wait_for_ping(&self.url()).await;
        }

        fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        fn raw(&self) -> redis::Connection {
            redis::Client::open(self.url().as_str())
                .unwrap()
                .get_connection()
                .unwrap()
        }
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            self.kill();
        }
    }

    async fn wait_for_ping(url: &str) {
        let client = redis::Client::open(url).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until Redis is used again: the first miss that is cacheable. A hit here would be
    /// a stale claim.
    async fn wait_until_cacheable(cache: &RedisCache, c: &ConnectionId, user: &str) -> Epoch {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match cache.get(c, user, "v1").await {
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
        let cache = RedisCache::connect_with(&server.url(), "outage", fast())
            .await
            .unwrap();
        let acme = conn("acme");
        fill(&cache, &acme, "u1", "v1", CLAIMS).await;

        server.kill();
        // No error, no panic: a miss that must not be cached.
        assert_eq!(
            cache.get(&acme, "u1", "v1").await,
            Lookup::Miss(Epoch::UNCACHEABLE)
        );
        cache
            .put(&acme, "u1", "v1", Epoch::UNCACHEABLE, CLAIMS)
            .await;
        cache.invalidate(&acme, &users(&["u1"])).await;
        cache.invalidate_all().await;
        assert!(!cache.is_healthy());
        // Several failing probes (every 50 ms) meanwhile.
        for _ in 0..20 {
            assert_eq!(
                cache.get(&acme, "u2", "v1").await,
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
        cache.put(&acme, "u1", "v1", epoch, OTHER_CLAIMS).await;
        assert_eq!(hit(&cache, &acme, "u1", "v1").await, OTHER_CLAIMS);
        // The outage was logged once, not per request; so was the recovery.
        assert_eq!(logs.count(tracing::Level::WARN), 1);
        assert_eq!(
            logs.count(tracing::Level::INFO),
            2,
            "reachable again, and repaired"
        );
    }

    /// Counts this module's log events on the test's thread.
    struct LogCount {
        events: Arc<Mutex<Vec<tracing::Level>>>,
        _guard: tracing::subscriber::DefaultGuard,
    }

    impl LogCount {
        fn install() -> Self {
            use tracing_subscriber::layer::SubscriberExt;
            let events = Arc::new(Mutex::new(Vec::new()));
            let layer = LogLayer(events.clone());
            let guard =
                tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
            Self {
                events,
                _guard: guard,
            }
        }

        fn count(&self, level: tracing::Level) -> usize {
            self.events
                .lock()
                .unwrap()
                .iter()
                .filter(|&&l| l == level)
                .count()
        }
    }

    struct LogLayer(Arc<Mutex<Vec<tracing::Level>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() == module_path!().trim_end_matches("::tests") {
                self.0.lock().unwrap().push(*event.metadata().level());
            }
        }
    }

    /// Redis stays up with its data but this replica cannot reach it while a change happens:
    /// the invalidation is lost, the stale entry stays in Redis, and recovery must not serve it.
    #[tokio::test]
    async fn redis_outage_with_surviving_data_drops_every_entry() {
        let server = OwnRedis::start().await;
        let cache = RedisCache::connect_with(&server.url(), "partition", fast())
            .await
            .unwrap();
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
            cache.get(&acme, "changed", "v1").await,
            Lookup::Miss(Epoch::UNCACHEABLE)
        );
        cache.invalidate(&acme, &users(&["changed"])).await; // a change commits meanwhile
        let entry = UserKeys::new("partition", &acme, "changed").entry;
        let still_there: bool = redis::cmd("EXISTS").arg(&entry).query(&mut raw).unwrap();
        assert!(still_there, "the invalidation was not supposed to land");

        std::fs::rename(&hidden, server.sock()).unwrap();
        let epoch = wait_until_cacheable(&cache, &acme, "changed").await;
        // Without the global epoch move, "changed" would be a stale hit now.
        miss(&cache, &acme, "unchanged", "v1").await;
        cache.put(&acme, "changed", "v1", epoch, OTHER_CLAIMS).await;
        assert_eq!(hit(&cache, &acme, "changed", "v1").await, OTHER_CLAIMS);
    }

    /// The repair happens in the background even when no request comes.
    #[tokio::test]
    async fn redis_repair_needs_no_traffic() {
        let mut server = OwnRedis::start().await;
        let cache = RedisCache::connect_with(&server.url(), "idle", fast())
            .await
            .unwrap();
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
        assert!(!cache.inner.health.dirty());
    }

    #[tokio::test]
    async fn redis_unreachable_at_startup_is_degraded_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("unix://{}", dir.path().join("r.sock").display());
        let cache = from_url(Some(&url), "late").await.unwrap();
        assert_eq!(cache.kind(), "redis");
        let acme = conn("acme");
        assert_eq!(
            cache.get(&acme, "u1", "v1").await,
            Lookup::Miss(Epoch::UNCACHEABLE)
        );
        cache
            .put(&acme, "u1", "v1", Epoch::UNCACHEABLE, CLAIMS)
            .await;

        // Redis comes up later at that path.
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(dir.path().join("r.sock"))
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_ping(&url).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let epoch = loop {
            match cache.get(&acme, "u1", "v1").await {
                Lookup::Miss(e) if e.is_cacheable() => break e,
                Lookup::Miss(_) => {}
                Lookup::Hit(h) => panic!("hit {h}"),
            }
            assert!(Instant::now() < deadline, "no recovery");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        cache.put(&acme, "u1", "v1", epoch, CLAIMS).await;
        assert_eq!(
            cache.get(&acme, "u1", "v1").await,
            Lookup::Hit(CLAIMS.into())
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    #[tokio::test]
    async fn redis_hung_server_times_out_then_is_skipped() {
        let server = OwnRedis::start().await;
        let options = RedisCacheOptions {
            command_timeout: Duration::from_millis(100),
            retry_interval: Duration::from_secs(600),
            ..RedisCacheOptions::default()
        };
        let cache = RedisCache::connect_with(&server.url(), "hung", options)
            .await
            .unwrap();
        let acme = conn("acme");
        fill(&cache, &acme, "u1", "v1", CLAIMS).await;
        let mut raw = server.raw();
        let () = redis::cmd("CLIENT")
            .arg(&["PAUSE", "1500", "ALL"])
            .query(&mut raw)
            .unwrap();
        // Without the timeout this would wait out the pause and hit.
        assert_eq!(
            cache.get(&acme, "u1", "v1").await,
            Lookup::Miss(Epoch::UNCACHEABLE)
        );
        assert!(!cache.is_healthy());
        // Answers again (this blocks until the pause is over)...
        let _: String = redis::cmd("PING").query(&mut raw).unwrap();
        // ...but until the next probe is due, requests do not go to Redis at all.
        assert_eq!(
            cache.get(&acme, "u1", "v1").await,
            Lookup::Miss(Epoch::UNCACHEABLE)
        );
    }

    fn free_port() -> u16 {
        loop {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            // Cluster nodes also listen on port + 10000.
            if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                return port;
            }
        }
    }

    /// A self-signed server certificate: the cache must refuse it (no `#insecure`), which
    /// shows `rediss://` really speaks TLS and verifies the server, and never panics.
    #[tokio::test]
    async fn redis_tls_verifies_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-cert-file",
            ])
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the port accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "TLS redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cache = RedisCache::connect_with(&format!("rediss://localhost:{port}"), "tls", fast())
            .await
            .unwrap();
        assert!(!cache.is_healthy(), "an untrusted certificate was accepted");
        assert_eq!(
            cache.get(&conn("acme"), "u1", "v1").await,
            Lookup::Miss(Epoch::UNCACHEABLE)
        );
        let _ = child.kill();
        let _ = child.wait();
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
                Command::new("redis-server")
                    .args([
                        "--port",
                        &p.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                    ])
                    .arg(&node_dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
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
        let cache = RedisCache::connect(&seed, "cl").await.unwrap();
        assert!(matches!(cache.inner.backend, Backend::Cluster(_)));
        all_stories(async || {
            let c = RedisCache::connect(&seed, &unique_prefix()).await.unwrap();
            assert!(c.is_healthy());
            c
        })
        .await;
        let list = format!("redis://127.0.0.1:{},127.0.0.1:{}", ports[1], ports[2]);
        let cache = RedisCache::connect(&list, "list").await.unwrap();
        assert!(cache.is_healthy());
        fill(&cache, &conn("acme"), "u1", "v1", CLAIMS).await;

        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    // --- configuration ---------------------------------------------------------------------

    #[tokio::test]
    async fn malformed_configuration_is_an_error() {
        for url in [
            "http://127.0.0.1:6379",
            "127.0.0.1:6379",
            "redis://",
            "redis://127.0.0.1:6379?cluster=maybe",
            "redis+unix:///tmp/r.sock?cluster=true",
            "redis://127.0.0.1:notaport",
        ] {
            let err = from_url(Some(url), "p").await.err();
            assert!(
                matches!(err, Some(CacheError::InvalidUrl(_))),
                "{url}: {err:?}"
            );
        }
        let err = from_url(Some("redis://127.0.0.1:1"), "a{b}").await.err();
        assert!(matches!(err, Some(CacheError::InvalidPrefix(_))));
        // Unreachable but well formed: fine.
        let cache = from_url(Some("redis://127.0.0.1:1"), "p").await.unwrap();
        assert_eq!(
            cache.get(&conn("acme"), "u", "v").await,
            Lookup::Miss(Epoch::UNCACHEABLE)
        );
        assert_eq!(from_url(None, "p").await.unwrap().kind(), "memory");
    }

    #[test]
    fn urls_name_one_server_or_cluster_nodes() {
        let single = |u: &str| Target::Single(u.to_owned());
        let cluster = |us: &[&str]| Target::Cluster(us.iter().map(|&u| u.to_owned()).collect());
        for (url, want) in [
            ("redis://h:6379", single("redis://h:6379")),
            ("rediss://u:p@h:6380/2", single("rediss://u:p@h:6380/2")),
            (
                "redis+unix:///run/r.sock?db=1",
                single("redis+unix:///run/r.sock?db=1"),
            ),
            ("unix:///run/r.sock", single("unix:///run/r.sock")),
            ("redis://:p,w@h:1", single("redis://:p,w@h:1")),
            (
                "redis://h:1?cluster=false&protocol=resp3",
                single("redis://h:1?protocol=resp3"),
            ),
            ("redis://h:1?cluster=true", cluster(&["redis://h:1"])),
            (
                "redis://:pw@h1:1,h2:2",
                cluster(&["redis://:pw@h1:1", "redis://:pw@h2:2"]),
            ),
            (
                "redis://h1:1, redis://:x@h2:2",
                cluster(&["redis://h1:1", "redis://:x@h2:2"]),
            ),
            (
                "rediss://h1:1,h2:2?protocol=resp3#x",
                cluster(&[
                    "rediss://h1:1?protocol=resp3#x",
                    "rediss://h2:2?protocol=resp3#x",
                ]),
            ),
        ] {
            assert_eq!(parse_target(url).unwrap(), want, "{url}");
        }
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
        cache.put(&acme, "u1", "v1", epoch, CLAIMS).await;
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
            assert!(cache.lock().len <= 3);
        }
        assert_eq!(cache.lock().len, 3);
        // A reader of a user with an entry, whose entry is evicted and then invalidated.
        let before = match cache.get(&acme, "u9", "v2").await {
            Lookup::Miss(e) => e,
            Lookup::Hit(_) => panic!("other version"),
        };
        for i in 10..20 {
            fill(&cache, &acme, &format!("u{i}"), "v1", CLAIMS).await;
        }
        cache.invalidate(&acme, &users(&["u9"])).await;
        cache.put(&acme, "u9", "v2", before, "stale").await;
        miss(&cache, &acme, "u9", "v2").await;
    }
}
