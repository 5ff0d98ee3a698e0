//! SCIM and claims request benchmarks on PostgreSQL and Redis, through the real HTTP stack
//! on loopback (claims: with the Redis cache, `PIMGATE_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`, under a key prefix of its own).
//!
//! Run: `cargo bench --bench scim` (needs PostgreSQL; `PIMGATE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). The directory is seeded with SQL
//! (`generate_series`) to 100,010 users, a group of 10 members and a group of 100,000, in a
//! schema of its own that is dropped at the end. Figures go to docs/benchmarks.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test and benchmark code fails loudly at the line that broke"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pimgate::config::{self, Settings};
use secrecy::SecretString;
use serde_json::json;

const TOKEN: &str = "bench-token-0123456789abcdef";
const ACCESS_TOKEN: &str = "bench-access-token-0123456789";
/// Users of the group "ten" are editors; everyone else gets the viewer default.
const ACCESS: &str = r#"
[roles.viewer]
id = "9b0e4a52-0000-4000-8000-000000000001"
name = "Viewer"
permissions = ["products.view"]
[roles.editor]
id = "9b0e4a52-0000-4000-8000-000000000002"
name = "Editor"
permissions = ["products.view", "products.create", "products.delete"]
[connections.default]
on_no_match = { roles = ["viewer"], user_groups = [] }
[[connections.default.rules]]
name = "editors"
group_name = "ten"
roles = ["editor"]
"#;

fn redis_url() -> String {
    std::env::var("PIMGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}
const USERS: i64 = 100_010;

struct Bench {
    base: String,
    client: reqwest::Client,
    admin: String,
    schema: String,
    prefix: String,
    state: pimgate::AppState,
    _running: pimgate::Running,
}

fn admin_url() -> String {
    std::env::var("PIMGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn exec(conn: &mut sqlx::PgConnection, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await
        .unwrap();
}

async fn setup() -> Bench {
    let admin = admin_url();
    let schema = format!("pimgate_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    exec(&mut conn, format!("CREATE SCHEMA {schema}")).await;
    let sep = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");

    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    let prefix = format!("pimgate-bench-{}", uuid::Uuid::new_v4().simple());
    settings.redis.url = Some(SecretString::from(redis_url()));
    settings.redis.key_prefix = prefix.clone();
    settings.access = toml::from_str(ACCESS).unwrap();
    settings.access_api.tokens = vec![SecretString::from(ACCESS_TOKEN)];
    settings.database.url = Some(SecretString::from(url));
    settings.connections.insert(
        "default".into(),
        config::ConnectionSettings {
            scim_token: Some(SecretString::from(TOKEN)),
            ..Default::default()
        },
    );
    let v = config::validate(settings).unwrap();
    pimgate::app::migrate(&v).await.unwrap();

    // Seed with SQL: the same rows the SCIM API writes, in bulk.
    exec(&mut conn, format!(
        "INSERT INTO {schema}.users (id, connection, user_name, user_name_lc, external_id, active, created, last_modified, version, doc) \
         SELECT 'seed-' || i, 'default', 'user-' || i || '@example.com', 'user-' || i || '@example.com', 'ext-' || i, true, \
         '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 1, \
         jsonb_build_object('userName', 'user-' || i || '@example.com', 'externalId', 'ext-' || i, 'active', true) \
         FROM generate_series(1, {USERS}) i"
    )).await;
    for (id, name, n) in [("g10", "ten", 10), ("g100k", "hundred-thousand", 100_000)] {
        exec(&mut conn, format!(
            "INSERT INTO {schema}.groups (id, connection, display_name, display_name_lc, created, last_modified, version, member_count, doc) \
             VALUES ('{id}', 'default', '{name}', '{name}', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 1, {n}, \
             '{{\"displayName\":\"{name}\"}}'::jsonb)"
        )).await;
        exec(
            &mut conn,
            format!(
                "INSERT INTO {schema}.group_members (group_id, member_id, member_type, connection) \
             SELECT '{id}', 'seed-' || i, 'User', 'default' FROM generate_series(1, {n}) i"
            ),
        )
        .await;
    }
    exec(&mut conn, format!("ANALYZE {schema}.users")).await;
    exec(&mut conn, format!("ANALYZE {schema}.group_members")).await;

    let listener = tokio::net::TcpListener::bind(v.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let running = pimgate::start(v, listener, std::future::pending())
        .await
        .unwrap();
    let state = running.state().clone();
    Bench {
        base: format!("http://{addr}/scim/default/v2"),
        client: reqwest::Client::new(),
        admin,
        schema,
        prefix,
        state,
        _running: running,
    }
}

async fn teardown(b: &Bench) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&b.admin)
        .await
        .unwrap();
    exec(&mut conn, format!("DROP SCHEMA {} CASCADE", b.schema)).await;
    if let Ok(client) = redis::Client::open(redis_url())
        && let Ok(mut r) = client.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", b.prefix))
            .query_async(&mut r)
            .await
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut r).await;
        }
    }
}

async fn send(b: &Bench, req: reqwest::RequestBuilder, expect: u16) {
    let resp = req.bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), expect);
    let _ = resp.bytes().await.unwrap();
    let _ = b;
}

fn patch_member(op: &str, user: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": op, "path": "members", "value": [{"value": user}]}]
    })
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let b = rt.block_on(setup());
    let mut g = c.benchmark_group("scim_postgres");
    g.sample_size(50)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2));

    g.bench_function("get_user_by_id", |bench| {
        bench
            .to_async(&rt)
            .iter(|| send(&b, b.client.get(format!("{}/Users/seed-5000", b.base)), 200));
    });
    g.bench_function("filter_username_eq", |bench| {
        bench.to_async(&rt).iter(|| {
            send(
                &b,
                b.client
                    .get(format!("{}/Users", b.base))
                    .query(&[("filter", "userName eq \"USER-77777@example.com\"")]),
                200,
            )
        });
    });
    let n = AtomicU64::new(0);
    g.bench_function("post_user", |bench| {
        bench.to_async(&rt).iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("new-{i}-{}@example.com", b.schema),
                "emails": [{"value": format!("new-{i}@example.com"), "type": "work", "primary": true}],
                "active": true
            });
            send(&b, b.client.post(format!("{}/Users", b.base)).json(&body), 201)
        });
    });
    // One member toggled in and out: alternate add and remove, so the group keeps its size.
    for (group, member) in [("g10", "seed-100005"), ("g100k", "seed-100006")] {
        let flip = AtomicU64::new(0);
        g.bench_function(format!("patch_one_member_{group}"), |bench| {
            bench.to_async(&rt).iter(|| {
                let op = if flip.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                    "add"
                } else {
                    "remove"
                };
                send(
                    &b,
                    b.client
                        .patch(format!("{}/Groups/{group}", b.base))
                        .json(&patch_member(op, member)),
                    200,
                )
            });
        });
    }
    g.finish();

    // Claims reads over HTTP with the Redis cache: a hit, and a miss (the user is invalidated
    // through the event bus before each timed read, as a SCIM change does).
    let mut g = c.benchmark_group("claims_redis");
    g.sample_size(50)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2));
    let root = b.base.trim_end_matches("/scim/default/v2").to_owned();
    let claims_url = format!("{root}/access/v1/connections/default/users/seed-3/claims");
    g.bench_function("claims_read_hit", |bench| {
        bench.to_async(&rt).iter(|| async {
            let resp = b
                .client
                .get(&claims_url)
                .bearer_auth(ACCESS_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            let _ = resp.bytes().await.unwrap();
        });
    });
    let conn = pimgate::connections::ConnectionId::parse("default").unwrap();
    g.bench_function("claims_read_miss", |bench| {
        bench.to_async(&rt).iter_custom(|iters| {
            let (b, conn, url) = (&b, conn.clone(), claims_url.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    b.state
                        .scim
                        .directory()
                        .events()
                        .publish(pimgate::directory::events::DirectoryEvent {
                            connection: conn.clone(),
                            change: pimgate::directory::events::Change::UserUpdated,
                            users: vec!["seed-3".into()],
                            groups: vec![],
                        })
                        .await;
                    let start = std::time::Instant::now();
                    let resp = b
                        .client
                        .get(&url)
                        .bearer_auth(ACCESS_TOKEN)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 200);
                    let _ = resp.bytes().await.unwrap();
                    total += start.elapsed();
                }
                total
            }
        });
    });
    g.finish();
    rt.block_on(teardown(&b));
}

criterion_group!(scim, benches);
criterion_main!(scim);
