//! Redis as a shared part: one connection (standalone, TLS, Unix socket, Redis Cluster, or
//! the master Redis Sentinel names), one key prefix, one circuit breaker, for every
//! capability that keeps state in Redis (the claims cache, sign-in state, sessions' hot
//! state).
//!
//! Redis here is never a hard dependency of a request: every operation is bounded by a short
//! timeout (500 ms by default), and a failure or timeout opens the breaker ([`health`]):
//! operations are then skipped (one probe per retry interval tries again), so a dead Redis
//! costs no latency. What each user does without Redis is its own decision (the claims cache
//! resolves from the store).
//!
//! Connecting fails only on a malformed URL or prefix: an unreachable Redis gives a handle
//! that starts degraded and recovers by itself.

mod health;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod url;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;

use self::health::Health;
pub use self::health::Started;
use self::url::{Target, parse_target};
use crate::clock::{Clock, SystemClock};

/// Why a Redis handle could not be built. Only configuration mistakes.
#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    /// The URL cannot be used (the URL itself is never repeated: it may hold a password).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// The key prefix would break Redis Cluster hash tags.
    #[error("invalid Redis key prefix {0:?}: '{{' and '}}' are reserved for cluster hash tags")]
    InvalidPrefix(String),
}

/// Why one Redis operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Tuning of the shared connection.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// The longest a single round trip may take before it counts as an outage.
    pub command_timeout: Duration,
    /// While Redis is unreachable, how often one operation tries again.
    pub retry_interval: Duration,
    /// The breaker's time source.
    pub clock: Arc<dyn Clock>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_millis(500),
            retry_interval: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
        }
    }
}

/// A connection to one server, a cluster, or the master Sentinels name. Each multiplexes
/// one connection per node and reconnects on its own.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

/// The master the Sentinels name now: asked for when there is no connection, and again
/// after a connection error or a `READONLY` answer (the old master after a failover).
pub struct SentinelConn {
    client: tokio::sync::Mutex<redis::sentinel::SentinelClient>,
    conn: std::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    config: redis::AsyncConnectionConfig,
}

impl SentinelConn {
    fn current(&self) -> Option<redis::aio::MultiplexedConnection> {
        match self.conn.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, c: Option<redis::aio::MultiplexedConnection>) {
        match self.conn.lock() {
            Ok(mut g) => *g = c,
            Err(p) => *p.into_inner() = c,
        }
    }

    async fn get(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let mut client = self.client.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let c = client
            .async_get_client()
            .await?
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        self.set(Some(c.clone()));
        Ok(c)
    }

    fn after<T>(&self, r: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &r
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.code() == Some("READONLY"))
        {
            self.set(None);
        }
        r
    }
}

impl Conn {
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
            Conn::Sentinel(s) => {
                let mut c = s.get().await?;
                s.after(cmd.query_async(&mut c).await)
            }
        }
    }

    pub async fn exec(&self, pipe: &redis::Pipeline) -> redis::RedisResult<()> {
        match self {
            Conn::Single(c) => pipe.exec_async(&mut c.clone()).await,
            Conn::Cluster(c) => pipe.exec_async(&mut c.clone()).await,
            Conn::Sentinel(s) => {
                let mut c = s.get().await?;
                s.after(pipe.exec_async(&mut c).await)
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

/// Where [`Redis::pubsub`] connects.
enum Subscribe {
    Client(Box<redis::Client>),
    Sentinel(Arc<SentinelConn>),
}

/// The shared Redis handle (cheap to clone).
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    /// Where a subscription connects.
    subscribe: Subscribe,
    prefix: String,
    timeout: Duration,
    health: Health,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.inner.prefix)
            .field("cluster", &self.inner.conn.is_cluster())
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Builds the handle for `url` and checks once whether Redis answers.
    ///
    /// URLs: `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS, server verified
    /// against the system roots; `SSL_CERT_FILE` adds a private CA), `redis+unix:///path` or
    /// `unix:///path` (`?db=N&pass=…`). Sentinel:
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/MASTER[/DB]`. Redis Cluster:
    /// add `?cluster=true`, or list several
    /// nodes, as `redis://:pw@host1:6379,host2:6379` (the first node's scheme and credentials
    /// apply to the bare `host:port` items) or as comma-separated full URLs.
    ///
    /// Every key pimgate writes starts with `prefix`, so several installations can share a
    /// Redis.
    pub async fn connect(
        url: &str,
        prefix: &str,
        options: RedisOptions,
    ) -> Result<Self, RedisConfigError> {
        if prefix.contains(['{', '}']) {
            return Err(RedisConfigError::InvalidPrefix(prefix.to_owned()));
        }
        crate::tls::install_crypto_provider();
        let timeout = options.command_timeout.max(Duration::from_millis(1));
        let invalid = |e: redis::RedisError| RedisConfigError::InvalidUrl(e.to_string());
        let (conn, subscribe) = match parse_target(url)? {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(invalid)?;
                let subscribe = Subscribe::Client(Box::new(client.clone()));
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    // Our own probe schedule paces reconnection; the manager tries once more.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(timeout);
                let manager = ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(|e| RedisConfigError::InvalidUrl(e.to_string()))?;
                (Conn::Single(manager), subscribe)
            }
            Target::Sentinel(t) => {
                let mut info = redis::RedisConnectionInfo::default().set_db(t.db);
                if let Some(u) = &t.username {
                    info = info.set_username(u);
                }
                if let Some(p) = &t.password {
                    info = info.set_password(p);
                }
                let node = redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(info);
                let client = redis::sentinel::SentinelClient::build(
                    t.sentinels.clone(),
                    t.master.clone(),
                    Some(node),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(|e| RedisConfigError::InvalidUrl(e.to_string()))?;
                let sentinel = Arc::new(SentinelConn {
                    client: tokio::sync::Mutex::new(client),
                    conn: std::sync::Mutex::new(None),
                    config: redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout)),
                });
                (
                    Conn::Sentinel(sentinel.clone()),
                    Subscribe::Sentinel(sentinel),
                )
            }
            Target::Cluster(nodes) => {
                // A cluster relays PUBLISH to every node: subscribing at one is enough.
                let first = nodes.first().cloned().unwrap_or_default();
                let subscribe =
                    Subscribe::Client(Box::new(redis::Client::open(first).map_err(invalid)?));
                let client = ClusterClientBuilder::new(nodes)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()
                    .map_err(|e| RedisConfigError::InvalidUrl(e.to_string()))?;
                // Connects in the background and reconnects by itself: an unreachable
                // cluster at startup is an outage, not a configuration error.
                (
                    Conn::Cluster(
                        client.get_pending_async_connection_with_config(
                            ClusterConfig::new()
                                .set_connection_timeout(timeout)
                                .set_response_timeout(timeout),
                        ),
                    ),
                    subscribe,
                )
            }
        };
        let redis = Self {
            inner: Arc::new(Inner {
                conn,
                subscribe,
                prefix: prefix.to_owned(),
                timeout,
                health: Health::new(options.clock, options.retry_interval),
            }),
        };
        redis.startup_probe().await;
        Ok(redis)
    }

    /// Says at startup whether Redis answers, so an outage is logged before the first
    /// request.
    async fn startup_probe(&self) {
        if let Some(started) = self.admit() {
            let ping = redis::cmd("PING");
            let _ = self
                .bounded(started, "connect", self.conn().query::<()>(&ping))
                .await;
        }
    }

    /// A connection of its own that receives published messages (`SUBSCRIBE`): to the
    /// server, to the master the Sentinels name now, or to the first cluster node. Connecting
    /// is bounded by the command timeout.
    pub async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let connect = async {
            match &self.inner.subscribe {
                Subscribe::Client(c) => c.get_async_pubsub().await,
                Subscribe::Sentinel(s) => {
                    let client = s.client.lock().await.async_get_client().await?;
                    client.get_async_pubsub().await
                }
            }
        };
        match tokio::time::timeout(self.inner.timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting for a subscription timed out",
            ))),
        }
    }

    /// The command timeout.
    pub fn command_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub fn conn(&self) -> &Conn {
        &self.inner.conn
    }

    /// Whether the last operation succeeded (for readiness reports).
    pub fn is_healthy(&self) -> bool {
        self.inner.health.is_healthy()
    }

    pub fn retry_interval(&self) -> Duration {
        self.inner.health.retry_interval()
    }

    /// Whether an operation may use Redis now (see [`health`]); `None`: skip Redis.
    pub fn admit(&self) -> Option<Started> {
        self.inner.health.admit()
    }

    /// Runs one operation admitted at `started` under the command timeout, and records the
    /// outcome for the breaker.
    pub async fn bounded<T>(
        &self,
        started: Started,
        operation: &'static str,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failure> {
        let result = match tokio::time::timeout(self.inner.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout(self.inner.timeout)),
        };
        match &result {
            Ok(_) => self.inner.health.succeeded(started),
            Err(e) => self.inner.health.failed(operation, e),
        }
        result
    }
}
