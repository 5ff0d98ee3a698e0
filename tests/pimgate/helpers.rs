//! Test harness: a real pimgate on `127.0.0.1:0` over a real SQLite file or a real
//! PostgreSQL schema of its own (dropped afterwards), and a SCIM client for it.

use std::sync::Arc;

use pimgate::clock::{Clock, SystemClock};
use pimgate::config::{self, Settings};
use pimgate::directory::events::DirectoryEvent;
use pimgate::directory::schema::Catalogue;
use pimgate::directory::sql::{PoolSettings, SqlStore};
use pimgate::{App, AppState, Running};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests use (`PIMGATE_TEST_POSTGRES_URL`, default local trust auth).
pub fn postgres_admin_url() -> String {
    std::env::var("PIMGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of the test's own: a SQLite file in a temp dir, or a PostgreSQL schema that
/// is dropped when this value is dropped (even when the test panics).
pub struct TestDb {
    pub url: String,
    /// The PostgreSQL schema and the server it is on.
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Db) -> TestDb {
        match backend {
            Db::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/pimgate.db", dir.path().display());
                TestDb {
                    url,
                    schema: None,
                    _dir: Some(dir),
                }
            }
            Db::Postgres => Self::on_server(&postgres_admin_url()).await,
        }
    }

    /// A schema of the test's own on the PostgreSQL server at `admin`.
    pub async fn on_server(admin: &str) -> TestDb {
        let schema = format!("pimgate_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin} is required for tests (scripts/test starts it): {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
        TestDb {
            url,
            schema: Some((schema, admin.to_owned())),
            _dir: None,
        }
    }

    /// Runs a query returning one integer, straight on the test's database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        use sqlx::Connection as _;
        if self.schema.is_some() {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut c)
                .await
                .unwrap()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
    }

    /// The test database's store, migrated.
    pub async fn store(&self) -> SqlStore {
        let store = SqlStore::open(
            &self.url,
            &PoolSettings::default(),
            Arc::new(Catalogue::load().unwrap()),
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((schema, admin)) = self.schema.take() {
            // A separate thread with its own runtime: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) =
                        <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                    {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// The token every test app accepts for connection `default`.
pub const TOKEN: &str = "test-token-0123456789abcdef";
/// A token for connection `other`.
pub const OTHER_TOKEN: &str = "other-token-0123456789abcdef";
/// The access API's service credential in test apps.
pub const ACCESS_TOKEN: &str = "access-token-0123456789abcdef";

/// The shared Redis tests use (`PIMGATE_TEST_REDIS_URL`), each with a key prefix of its own.
pub fn redis_url() -> String {
    std::env::var("PIMGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Deletes every key under a prefix on the shared Redis.
pub async fn delete_redis_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

/// A redis-server of the test's own, on a unix socket in a temp dir (no port), so a test can
/// stop and restart it.
pub struct OwnRedis {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

/// An [`OwnRedis`] that has been stopped; its socket path stays reserved.
pub struct StoppedRedis {
    dir: tempfile::TempDir,
}

fn start_redis(dir: &std::path::Path) -> std::process::Child {
    let sock = dir.join("redis.sock");
    let _ = std::fs::remove_file(&sock);
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocket",
        ])
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/test installs it)");
    for _ in 0..100 {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let dir = tempfile::tempdir().unwrap();
        let child = start_redis(dir.path());
        OwnRedis { dir, child }
    }

    pub fn url(&self) -> String {
        format!(
            "redis+unix://{}",
            self.dir.path().join("redis.sock").display()
        )
    }

    pub fn stop(mut self) -> StoppedRedis {
        let _ = self.child.kill();
        let _ = self.child.wait();
        StoppedRedis {
            dir: std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()),
        }
    }
}

impl StoppedRedis {
    pub fn restart(self) -> OwnRedis {
        let child = start_redis(self.dir.path());
        OwnRedis {
            dir: self.dir,
            child,
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server of the test's own (a fresh cluster in a temp dir, on a free
/// loopback port), so a test can restart it. As root, the cluster runs as the `postgres`
/// user (PostgreSQL refuses to run as root).
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn bindir() -> std::path::PathBuf {
        let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .collect();
        found.sort();
        found
            .pop()
            .expect("PostgreSQL's server binaries (scripts/test installs them)")
    }

    /// A server binary's command, run as `postgres` when this process is root.
    fn command(&self, tool: &str) -> std::process::Command {
        let exe = self.bin.join(tool);
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        }
    }

    /// Runs a server binary; it must succeed.
    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40",
            self.port,
            self.dir.path().display()
        )
    }

    pub fn start() -> OwnPostgres {
        let dir = tempfile::tempdir().unwrap();
        let _ = std::process::Command::new("chown")
            .args(["postgres:", &dir.path().display().to_string()])
            .output();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = OwnPostgres {
            dir,
            bin: Self::bindir(),
            port,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let log = pg.dir.path().join("log").display().to_string();
        pg.run(
            "pg_ctl",
            &["-D", &data, "-o", &pg.options(), "-l", &log, "-w", "start"],
        );
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m fast`: sessions are terminated, the server stops and starts.
    pub fn restart(&self) {
        let data = self.data();
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-o",
                &self.options(),
                "-l",
                &log,
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

/// A `pimgate serve` process of its own, on `127.0.0.1:0`, killed when dropped.
pub struct Process {
    pub base: String,
    child: std::process::Child,
}

impl Process {
    pub fn start(config: &std::path::Path, database_url: &str, redis_url: Option<&str>) -> Process {
        Self::start_on(config, database_url, redis_url, "127.0.0.1:0")
    }

    /// [`Process::start`] on a given listen address.
    pub fn start_on(
        config: &std::path::Path,
        database_url: &str,
        redis_url: Option<&str>,
        listen: &str,
    ) -> Process {
        Self::spawn(config, database_url, redis_url, listen, false).0
    }

    /// [`Process::start`] with its standard error (the log) left to the caller, who may
    /// read it, or not.
    pub fn start_with_stderr(
        config: &std::path::Path,
        database_url: &str,
    ) -> (Process, std::process::ChildStderr) {
        let (process, stderr) = Self::spawn(config, database_url, None, "127.0.0.1:0", true);
        (process, stderr.expect("stderr is piped"))
    }

    fn spawn(
        config: &std::path::Path,
        database_url: &str,
        redis_url: Option<&str>,
        listen: &str,
        keep_stderr: bool,
    ) -> (Process, Option<std::process::ChildStderr>) {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pimgate"));
        cmd.arg("--config").arg(config).arg("serve");
        for (k, _) in std::env::vars() {
            if k.starts_with("PIMGATE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("PIMGATE_LISTEN", listen)
            .env("PIMGATE_DATABASE_URL", database_url)
            .env("PIMGATE_SCIM_TOKEN", TOKEN)
            .stdout(std::process::Stdio::piped())
            .stderr(if keep_stderr {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            });
        if let Some(r) = redis_url {
            cmd.env("PIMGATE_REDIS_URL", r);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("pimgate exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        (Process { base, child }, stderr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running pimgate, started in this process the way `pimgate serve` starts it.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    running: Option<Running>,
    /// The Redis key prefix of this app, deleted on stop.
    redis_prefix: Option<String>,
    /// Kept alive so the database outlives the server.
    _db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The settings every test app starts from: `127.0.0.1:0`, the test's database, two
/// connections (`default` and `other`) with a token each, and the access API credential.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.database.url = Some(SecretString::from(db.url.clone()));
    settings.database.max_connections = 5;
    for (name, token) in [("default", TOKEN), ("other", OTHER_TOKEN)] {
        settings.connections.insert(
            name.into(),
            config::ConnectionSettings {
                scim_token: Some(SecretString::from(token)),
                ..Default::default()
            },
        );
    }
    settings.access_api.tokens = vec![SecretString::from(ACCESS_TOKEN)];
    settings
}

impl TestApp {
    pub async fn spawn(backend: Db) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with settings adjusted by `tune` (two connections, `default` and `other`, are
    /// always configured).
    pub async fn spawn_with(backend: Db, tune: impl FnOnce(&mut Settings)) -> TestApp {
        let db = TestDb::new(backend).await;
        Self::spawn_on(db, tune).await
    }

    pub async fn spawn_on(db: TestDb, tune: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = test_settings(&db);
        tune(&mut settings);
        let v = config::validate(settings).unwrap();
        Self::start(db, v, Arc::new(SystemClock)).await
    }

    /// Spawns with the default settings on a clock the test moves.
    pub async fn spawn_clocked(backend: Db, clock: pimgate::clock::ManualClock) -> TestApp {
        let db = TestDb::new(backend).await;
        let v = config::validate(test_settings(&db)).unwrap();
        Self::start(db, v, Arc::new(clock)).await
    }

    /// Starts validated settings on `db` with `clock`.
    pub async fn start(db: TestDb, v: config::Validated, clock: Arc<dyn Clock>) -> TestApp {
        let listener = tokio::net::TcpListener::bind(v.listen).await.unwrap();
        Self::start_on_listener(db, v, clock, listener).await
    }

    /// Starts on a listener bound beforehand (its address is in the settings, such as
    /// `server.public_url`).
    pub async fn start_on_listener(
        db: TestDb,
        v: config::Validated,
        clock: Arc<dyn Clock>,
        listener: tokio::net::TcpListener,
    ) -> TestApp {
        let redis_prefix = v
            .settings
            .redis
            .url
            .as_ref()
            .map(|_| v.settings.redis.key_prefix.clone());
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = App::build(v, clock).await.unwrap();
        let state = app.state().clone();
        let running = app.serve(listener, async {
            let _ = rx.await;
        });
        TestApp {
            addr,
            client: reqwest::Client::new(),
            state,
            running: Some(running),
            redis_prefix,
            _db: db,
            shutdown: Some(tx),
        }
    }

    /// The app's database, for checks straight on its tables.
    pub fn db(&self) -> &TestDb {
        &self._db
    }

    /// The running app (reload, store).
    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// The SCIM base URL of a connection.
    pub fn base(&self, connection: &str) -> String {
        format!("http://{}/scim/{connection}/v2", self.addr)
    }

    pub fn events(&self) -> broadcast::Receiver<DirectoryEvent> {
        self.state.scim.directory().events().subscribe()
    }

    /// A request to `path` (relative to the default connection's base) with the default token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(TOKEN, "default", method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        connection: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base(connection)))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a user and returns its id.
    pub async fn user(&self, user_name: &str) -> String {
        let (s, body) = self
            .post(
                "/Users",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "active": true,
                }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Creates a group with these member ids and returns its id.
    pub async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members
            .iter()
            .map(|m| serde_json::json!({"value": m}))
            .collect();
        let (s, body) = self
            .post(
                "/Groups",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name,
                    "members": members,
                }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// The member ids of a group, sorted.
    pub async fn member_ids(&self, group: &str) -> Vec<String> {
        let (s, body) = self.get(&format!("/Groups/{group}")).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let mut ids: Vec<String> = body["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(running) = self.running.take() {
            running.wait().await.unwrap();
        }
        if let Some(prefix) = self.redis_prefix.take() {
            delete_redis_prefix(&prefix).await;
        }
    }
}

/// Runs an async test body once per backend, as two tests named `<name>_sqlite` and
/// `<name>_postgres`; `settings = |s| ...` adjusts the settings of both apps.
#[macro_export]
macro_rules! both {
    ($name:ident, settings = $tune:expr, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn body($app: $crate::helpers::TestApp) $body
            #[tokio::test]
            async fn sqlite() {
                let app = $crate::helpers::TestApp::spawn_with($crate::helpers::Db::Sqlite, $tune);
                body(app.await).await;
            }
            #[tokio::test]
            async fn postgres() {
                let app = $crate::helpers::TestApp::spawn_with($crate::helpers::Db::Postgres, $tune);
                body(app.await).await;
            }
        }
    };
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn body($app: $crate::helpers::TestApp) $body
            #[tokio::test]
            async fn sqlite() {
                body($crate::helpers::TestApp::spawn($crate::helpers::Db::Sqlite).await).await;
            }
            #[tokio::test]
            async fn postgres() {
                body($crate::helpers::TestApp::spawn($crate::helpers::Db::Postgres).await).await;
            }
        }
    };
}

// ---------------------------------------------------------------- SCIM request helpers

pub(crate) const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub(crate) const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub(crate) const ENTERPRISE_URN: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Asserts an RFC 7644 §3.12 error: the HTTP status is `code`, the body's `schemas` is
/// exactly the Error URN, `status` is `code` as a string, `detail` is a non-empty string,
/// and `scimType` is `scim_type` (absent when `None`).
pub(crate) fn assert_scim_error(
    status: StatusCode,
    body: &Value,
    code: u16,
    scim_type: Option<&str>,
) {
    assert_eq!(status.as_u16(), code, "HTTP status; body: {body}");
    assert_eq!(body["schemas"], json!([ERROR_URN]), "schemas: {body}");
    assert_eq!(
        body["status"],
        json!(code.to_string()),
        "status must be a string: {body}"
    );
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        !detail.trim().is_empty(),
        "detail must be non-empty: {body}"
    );
    match scim_type {
        Some(t) => assert_eq!(body["scimType"], json!(t), "scimType: {body}"),
        None => assert!(
            body.get("scimType").is_none(),
            "no scimType expected: {body}"
        ),
    }
}

/// A raw request to `url` (absolute) with exactly these headers and this body, for tests
/// that need control over headers or need to read response headers.
pub(crate) async fn send_raw(
    app: &TestApp,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = app.client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, json)
}

/// A request to `path` under the default connection with the default token plus `headers`.
pub(crate) async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let auth = format!("Bearer {TOKEN}");
    let mut all: Vec<(&str, &str)> = vec![("authorization", auth.as_str())];
    if body.is_some() {
        all.push(("content-type", "application/scim+json"));
    }
    all.extend_from_slice(headers);
    let url = format!("{}{path}", app.base("default"));
    send_raw(app, method, &url, &all, body.map(|b| b.to_string())).await
}

/// Percent-encodes query parameters (filters contain spaces, quotes, `+`, `[`).
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

pub(crate) fn patch_op(ops: Value) -> Value {
    json!({"schemas": [PATCH_URN], "Operations": ops})
}
