//! Test harness: a real pimgate on `127.0.0.1:0` over a real SQLite file or a real
//! PostgreSQL schema of its own (dropped afterwards), and a SCIM client for it.

use std::sync::Arc;

use pimgate::AppState;
use pimgate::clock::SystemClock;
use pimgate::config::{self, Settings};
use pimgate::directory::events::DirectoryEvent;
use pimgate::directory::sql::{PoolSettings, SqlStore};
use pimgate::scim::schema::Catalogue;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
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
    schema: Option<String>,
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
            Db::Postgres => {
                let schema = format!("pimgate_test_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for tests (scripts/test starts it): {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let sep = if admin.contains('?') { '&' } else { '?' };
                let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
                TestDb {
                    url,

                    schema: Some(schema),
                    _dir: None,
                }
            }
        }
    }

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
        if let Some(schema) = self.schema.take() {
            let admin = postgres_admin_url();
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

/// A running pimgate.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    pub store: SqlStore,
    /// Kept alive so the database outlives the server.
    _db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
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
        tune(&mut settings);
        let v = config::validate(settings).unwrap();
        let catalogue = Arc::new(Catalogue::load().unwrap());
        let store = pimgate::open_store(&v, catalogue.clone()).await.unwrap();
        let state = pimgate::build_state(
            &v,
            Arc::new(store.clone()),
            Arc::new(SystemClock),
            catalogue,
        );
        let listener = tokio::net::TcpListener::bind(v.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run_state = state.clone();
        let opts = pimgate::serve_options(&v);
        let handle = tokio::spawn(async move {
            pimgate::run(run_state, opts, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestApp {
            addr,
            client: reqwest::Client::new(),
            state,
            store,
            _db: db,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// The SCIM base URL of a connection.
    pub fn base(&self, connection: &str) -> String {
        format!("http://{}/scim/{connection}/v2", self.addr)
    }

    pub fn events(&self) -> broadcast::Receiver<DirectoryEvent> {
        self.state.events.subscribe()
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
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        self.store.close().await;
    }
}

/// Runs an async test body once per backend, as two tests named `<name>_sqlite` and
/// `<name>_postgres`.
#[macro_export]
macro_rules! both {
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
