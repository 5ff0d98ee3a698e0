//! A copy of recent hits in each replica's memory, in front of the shared cache in Redis, so a
//! hit costs no round trip. Redis publish/subscribe keeps the copies coherent.
//!
//! # Why a near copy is not served stale
//!
//! Every invalidation first moves the epochs in Redis (the shared cache's own protocol), then
//! publishes the users it invalidated on `{p}:invalidations`. Each replica subscribes; on a
//! message it drops those users' copies. A copy is kept only:
//! - while the subscription is up ("live"): a replica that may have missed messages serves
//!   nothing from its copies, and drops them all when it goes live again;
//! - if no message (and no change of "live") arrived between the start of the shared read
//!   that produced it and its insertion: a **generation** counter, moved by every message,
//!   every local invalidation and every change of "live", is read before the shared read and
//!   checked under the lock at insertion.
//!
//! A shared read either ran after an invalidation's epoch move (it saw the change) or before
//! it, and so before the message that follows the move: that message arrives either before the
//! insertion (the generation moved: nothing is kept) or after it (the copy is dropped).
//!
//! In the replica that made the change, its copies are dropped before and again after the
//! shared invalidation, so nothing stale is served there once `invalidate` returns. Other
//! replicas drop theirs when the message reaches them: Redis writes it to every subscriber
//! before it answers the publisher, so in practice well before the change is acknowledged to
//! the identity provider, but nothing orders the two.
//!
//! An invalidation whose message could not be published (or that left the shared cache
//! "dirty") is followed, once Redis answers again, by a message that drops every copy in every
//! replica.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::StreamExt;

use super::user_map::{Slots, UserMap};
use super::{ClaimsCache, ClaimsKey, Epoch, Lookup, RedisCache};
use crate::connections::ConnectionId;
use crate::redis::Redis;

/// Users named one by one in a message; beyond this, the message drops the connection's
/// copies.
const MESSAGE_USERS_MAX: usize = 1000;
/// How often the subscription is checked with a `PING`: a replica cut off from Redis with
/// its socket left open stops serving copies within this and the command timeout.
const PING_EVERY: Duration = Duration::from_secs(1);
/// The message that drops every copy.
const ALL: &str = "*";

/// The shared cache in Redis with a near copy in process. See the module documentation.
#[derive(Debug)]
pub struct NearCache {
    shared: RedisCache,
    local: Arc<Local>,
    redis: Redis,
    channel: String,
}

#[derive(Debug)]
struct Local {
    max_entries: usize,
    live: AtomicBool,
    /// A task publishing "drop everything" is running (see [`NearCache::flush_everywhere`]).
    flushing: AtomicBool,
    state: Mutex<LocalState>,
}

#[derive(Debug, Default)]
struct LocalState {
    generation: u64,
    copies: UserMap<Slots>,
}

impl LocalState {
    fn drop_users<'a>(&mut self, conn: &str, users: impl Iterator<Item = &'a str>) {
        self.generation += 1;
        for u in users {
            self.copies.remove(conn, u);
        }
    }

    fn drop_connection(&mut self, conn: &str) {
        self.generation += 1;
        self.copies.remove_connection(conn);
    }

    fn drop_all(&mut self) {
        self.generation += 1;
        self.copies.clear();
    }
}

impl Local {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        // Every update leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_live(&self, live: bool) {
        let mut state = self.lock();
        state.drop_all();
        self.live.store(live, Ordering::Release);
    }

    /// Applies a published message: `*`, or a connection and then `*` or user ids, one per
    /// line.
    fn apply(&self, message: &str) {
        let mut lines = message.split('\n');
        let mut state = self.lock();
        match (lines.next(), lines.clone().next()) {
            (Some(conn), Some(ALL)) => state.drop_connection(conn),
            (Some(conn), Some(_)) => state.drop_users(conn, lines),
            // `*`, or anything not understood: drop everything.
            _ => state.drop_all(),
        }
    }

    fn insert(&self, generation: u64, key: &ClaimsKey<'_>, text: &str) {
        if self.max_entries == 0 {
            return;
        }
        let mut state = self.lock();
        if state.generation != generation || !self.live.load(Ordering::Acquire) {
            return;
        }
        let slots = state.copies.get_or_insert_with(
            key.conn.as_str(),
            key.user,
            self.max_entries,
            Slots::default,
        );
        slots[key.slot.index()] = Some((key.version.to_owned(), text.to_owned()));
    }
}

impl NearCache {
    /// `shared` in front of `redis` (the same connection), keeping up to `max_entries` users'
    /// copies. Subscribes in the background; until the subscription is up, every read goes to
    /// Redis.
    pub fn new(shared: RedisCache, redis: Redis, max_entries: usize) -> Self {
        let local = Arc::new(Local {
            max_entries,
            live: AtomicBool::new(false),
            flushing: AtomicBool::new(false),
            state: Mutex::new(LocalState::default()),
        });
        let channel = format!("{}:invalidations", redis.prefix());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(subscribe(
                Arc::downgrade(&local),
                redis.clone(),
                channel.clone(),
            ));
        }
        Self {
            shared,
            local,
            redis,
            channel,
        }
    }

    /// Whether copies are served now (the subscription is up).
    pub fn is_live(&self) -> bool {
        self.local.live.load(Ordering::Acquire)
    }

    /// Publishes `message`. False if it did not reach Redis.
    async fn publish(&self, message: &str) -> bool {
        publish(&self.redis, &self.channel, message).await
    }

    /// Makes every replica drop every copy, now or (in a background task) once Redis
    /// answers and the shared cache is no longer dirty.
    fn flush_everywhere(&self) {
        if self.local.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.local.flushing.store(false, Ordering::Release);
            return;
        };
        let (redis, channel, local) = (
            self.redis.clone(),
            self.channel.clone(),
            Arc::downgrade(&self.local),
        );
        let shared = self.shared.clone();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(redis.retry_interval()).await;
                let Some(local) = local.upgrade() else { return };
                if shared.is_dirty() {
                    continue;
                }
                if publish(&redis, &channel, ALL).await {
                    local.flushing.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    /// After an invalidation of the shared cache: what else must happen.
    async fn after_shared(&self, message: &str) {
        if !self.publish(message).await || self.shared.is_dirty() {
            self.flush_everywhere();
        }
    }
}

async fn publish(redis: &Redis, channel: &str, message: &str) -> bool {
    let Some(started) = redis.admit() else {
        return false;
    };
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel).arg(message);
    redis
        .bounded(started, "publish", redis.conn().query::<i64>(&cmd))
        .await
        .is_ok()
}

/// Keeps a subscription to `channel` up while the cache lives, applying its messages.
async fn subscribe(local: Weak<Local>, redis: Redis, channel: String) {
    let mut logged_down = false;
    loop {
        match subscribed(&redis, &channel).await {
            Ok(pubsub) => {
                let Some(l) = local.upgrade() else { return };
                l.set_live(true);
                drop(l);
                if logged_down {
                    tracing::info!(
                        cache = "redis",
                        "near cache subscribed again; serving copies"
                    );
                    logged_down = false;
                }
                let (mut sink, mut stream) = pubsub.split();
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.reset();
                loop {
                    tokio::select! {
                        msg = stream.next() => {
                            let Some(msg) = msg else { break };
                            let Some(l) = local.upgrade() else { return };
                            match std::str::from_utf8(msg.get_payload_bytes()) {
                                Ok(text) => l.apply(text),
                                Err(_) => l.apply(ALL),
                            }
                        }
                        _ = ping.tick() => {
                            if local.strong_count() == 0 {
                                return;
                            }
                            let pong = tokio::time::timeout(
                                redis.command_timeout(),
                                sink.ping::<redis::Value>(),
                            )
                            .await;
                            if !matches!(pong, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                let Some(l) = local.upgrade() else { return };
                l.set_live(false);
            }
            Err(e) => {
                if !logged_down {
                    tracing::warn!(
                        cache = "redis",
                        error = %e,
                        "near cache cannot subscribe to invalidations; every read goes to Redis until it can"
                    );
                    logged_down = true;
                }
            }
        }
        if local.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(redis.retry_interval()).await;
    }
}

async fn subscribed(redis: &Redis, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = redis.pubsub().await?;
    match tokio::time::timeout(redis.command_timeout(), pubsub.subscribe(channel)).await {
        Ok(r) => r.map(|()| pubsub),
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "subscribing timed out",
        ))),
    }
}

#[async_trait::async_trait]
impl ClaimsCache for NearCache {
    async fn get(&self, key: &ClaimsKey<'_>) -> Lookup {
        let generation = {
            let state = self.local.lock();
            if self.local.live.load(Ordering::Acquire)
                && let Some((version, text)) = state
                    .copies
                    .get(key.conn.as_str(), key.user)
                    .and_then(|slots| slots[key.slot.index()].as_ref())
                && version == key.version
            {
                return Lookup::Hit(text.clone());
            }
            state.generation
        };
        let found = self.shared.get(key).await;
        if let Lookup::Hit(text) = &found {
            self.local.insert(generation, key, text);
        }
        found
    }

    async fn put(&self, key: &ClaimsKey<'_>, epoch: Epoch, claims: &str) {
        // Only the shared cache: the next read copies it (a put cannot tell whether its token
        // is still current).
        self.shared.put(key, epoch, claims).await;
    }

    async fn invalidate(&self, conn: &ConnectionId, user_ids: &[String]) {
        if user_ids.is_empty() {
            return;
        }
        let users = || user_ids.iter().map(String::as_str);
        self.local.lock().drop_users(conn.as_str(), users());
        self.shared.invalidate(conn, user_ids).await;
        self.local.lock().drop_users(conn.as_str(), users());
        let message = if user_ids.len() > MESSAGE_USERS_MAX {
            format!("{conn}\n{ALL}")
        } else {
            let mut m = String::with_capacity(conn.as_str().len() + user_ids.len() * 37);
            m.push_str(conn.as_str());
            for u in users() {
                m.push('\n');
                m.push_str(u);
            }
            m
        };
        self.after_shared(&message).await;
    }

    async fn invalidate_all(&self) {
        self.local.lock().drop_all();
        self.shared.invalidate_all().await;
        self.local.lock().drop_all();
        self.after_shared(ALL).await;
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
