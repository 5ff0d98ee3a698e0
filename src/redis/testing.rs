//! Test support for everything that keeps state in Redis: a key prefix of the test's own on
//! the shared Redis (`PIMGATE_TEST_REDIS_URL`), a `redis-server` of the test's own that can
//! be stopped and restarted, free ports for clusters and TLS, and a count of log events.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Redis, RedisOptions};

pub(crate) fn shared_url() -> String {
    std::env::var("PIMGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub(crate) fn unique_prefix() -> String {
    format!("pimgate-test-{}", uuid::Uuid::new_v4().simple())
}

/// A key prefix of the test's own on the shared Redis, deleted when dropped (also when the
/// test fails).
pub(crate) struct Scratch {
    pub url: String,
    pub prefix: String,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            url: shared_url(),
            prefix: unique_prefix(),
        }
    }

    /// A handle on the shared Redis under this prefix; it must answer.
    pub async fn redis(&self) -> Redis {
        let redis = Redis::connect(&self.url, &self.prefix, RedisOptions::default())
            .await
            .unwrap();
        assert!(
            redis.is_healthy(),
            "the shared Redis at {} does not answer",
            self.url
        );
        redis
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

/// A `redis-server` child on a Unix socket in a temporary directory, nothing on disk.
pub(crate) struct OwnRedis {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A `redis-server` that keeps nothing on disk, with `args` added, its output discarded.
pub(crate) fn redis_server(args: &[&std::ffi::OsStr]) -> Child {
    Command::new("redis-server")
        .args(["--save", "", "--appendonly", "no"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH")
}

impl OwnRedis {
    pub async fn start() -> Self {
        let mut me = Self::reserved();
        me.restart().await;
        me
    }

    /// A socket path for a server that is not running yet (`restart` starts it).
    pub fn reserved() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            child: None,
        }
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("r.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.sock().display())
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let sock = self.sock();
        self.child = Some(redis_server(&[
            "--port".as_ref(),
            "0".as_ref(),
            "--unixsocket".as_ref(),
            sock.as_os_str(),
            "--dir".as_ref(),
            self.dir.path().as_os_str(),
        ]));
        wait_for_ping(&self.url()).await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn raw(&self) -> redis::Connection {
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

pub(crate) async fn wait_for_ping(url: &str) {
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

pub(crate) fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // Cluster nodes also listen on port + 10000.
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Counts pimgate's log events on the test's thread, by level.
pub(crate) struct LogCount {
    events: Arc<Mutex<Vec<tracing::Level>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCount {
    pub fn install() -> Self {
        use tracing_subscriber::layer::SubscriberExt;
        let events = Arc::new(Mutex::new(Vec::new()));
        let layer = LogLayer(events.clone());
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        Self {
            events,
            _guard: guard,
        }
    }

    pub fn count(&self, level: tracing::Level) -> usize {
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
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target().starts_with("pimgate") {
            self.0.lock().unwrap().push(*event.metadata().level());
        }
    }
}
