//! Short-lived, single-use records of the sign-in flows: a login waiting for the IdP's
//! answer (its `state`, nonce and PKCE verifier), an authorization code waiting to be
//! redeemed, the marker a redeemed code leaves behind. Every record has a TTL, and `take`
//! reads and removes in one step, so a record is used at most once even when two replicas
//! race for it.
//!
//! With Redis configured the records live there (every replica sees them); without it they
//! live in process, for the embedded default's single process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{Clock, Timestamp};
use crate::redis::Redis;

/// In process, at most this many live records; beyond it new ones are refused (a flood of
/// unfinished logins must not grow memory without bound).
pub const MEMORY_CAPACITY: usize = 100_000;

/// The record store is unreachable or full: the flow cannot go on now (a 503).
#[derive(Debug, thiserror::Error)]
#[error("the sign-in state store is unavailable: {0}")]
pub struct Unavailable(pub String);

/// Short-lived records by key.
#[async_trait]
pub trait Ephemeral: std::fmt::Debug + Send + Sync + 'static {
    /// Stores `value` under `key` for `ttl`, replacing what was there.
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), Unavailable>;
    /// Stores `value` under `key` for `ttl` unless a live record is there; whether it was
    /// stored (a one-time marker: a replay finds it).
    async fn put_new(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, Unavailable>;
    /// Reads and removes the record, atomically.
    async fn take(&self, key: &str) -> Result<Option<String>, Unavailable>;
    /// Reads the record, leaving it.
    async fn get(&self, key: &str) -> Result<Option<String>, Unavailable>;
    /// `redis` or `memory`.
    fn kind(&self) -> &'static str;
}

/// The store for this configuration: Redis when configured, else in process.
pub fn ephemeral(redis: Option<Redis>, clock: Arc<dyn Clock>) -> Arc<dyn Ephemeral> {
    match redis {
        Some(r) => Arc::new(RedisEphemeral { redis: r }),
        None => Arc::new(MemoryEphemeral::new(clock)),
    }
}

/// Records in the process, expiring on the injected clock.
#[derive(Debug)]
pub struct MemoryEphemeral {
    clock: Arc<dyn Clock>,
    records: Mutex<HashMap<String, (String, Timestamp)>>,
}

impl MemoryEphemeral {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            records: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Timestamp)>> {
        match self.records.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[async_trait]
impl Ephemeral for MemoryEphemeral {
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), Unavailable> {
        let now = self.clock.now();
        let until = now.plus_millis(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut records = self.lock();
        if records.len() >= MEMORY_CAPACITY && !records.contains_key(key) {
            records.retain(|_, (_, exp)| *exp > now);
            if records.len() >= MEMORY_CAPACITY {
                return Err(Unavailable(format!(
                    "{MEMORY_CAPACITY} sign-ins are already in progress"
                )));
            }
        }
        records.insert(key.to_owned(), (value.to_owned(), until));
        Ok(())
    }

    async fn put_new(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, Unavailable> {
        let now = self.clock.now();
        if self.lock().get(key).is_some_and(|(_, exp)| *exp > now) {
            return Ok(false);
        }
        self.put(key, value, ttl).await?;
        Ok(true)
    }

    async fn take(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .remove(key)
            .and_then(|(v, exp)| (exp > now).then_some(v)))
    }

    async fn get(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .get(key)
            .and_then(|(v, exp)| (*exp > now).then(|| v.clone())))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// Records in Redis under `{prefix}:flow:`, with Redis's own expiry.
#[derive(Debug)]
pub struct RedisEphemeral {
    redis: Redis,
}

impl RedisEphemeral {
    fn key(&self, key: &str) -> String {
        format!("{}:flow:{key}", self.redis.prefix())
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, Unavailable> {
        let Some(started) = self.redis.admit() else {
            return Err(Unavailable("Redis is unreachable".into()));
        };
        self.redis
            .bounded(started, what, self.redis.conn().query::<T>(&cmd))
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }
}

#[async_trait]
impl Ephemeral for RedisEphemeral {
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), Unavailable> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        self.run::<()>("flow put", cmd).await
    }

    async fn put_new(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, Unavailable> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        let set: Option<String> = self.run("flow put-new", cmd).await?;
        Ok(set.is_some())
    }

    async fn take(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.key(key));
        self.run("flow take", cmd).await
    }

    async fn get(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        self.run("flow get", cmd).await
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn records_expire_and_are_taken_once() {
        let clock = ManualClock::at(Timestamp(1_000_000));
        let store = MemoryEphemeral::new(Arc::new(clock.clone()));
        store.put("a", "1", Duration::from_secs(10)).await.unwrap();
        assert_eq!(store.get("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(store.take("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(store.take("a").await.unwrap(), None, "single use");
        store.put("b", "2", Duration::from_secs(10)).await.unwrap();
        clock.advance_millis(10_001);
        assert_eq!(store.take("b").await.unwrap(), None, "expired");
        assert!(
            store
                .put_new("c", "3", Duration::from_secs(10))
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_new("c", "4", Duration::from_secs(10))
                .await
                .unwrap(),
            "once"
        );
        clock.advance_millis(10_001);
        assert!(
            store
                .put_new("c", "5", Duration::from_secs(10))
                .await
                .unwrap(),
            "expired"
        );
    }
}
