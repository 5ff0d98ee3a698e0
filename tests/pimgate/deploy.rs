//! Deployment: several replicas on one PostgreSQL and one Redis share everything a request
//! needs (login state, codes, sessions, refresh tokens, signing keys, the directory), and the
//! metrics an operator alerts on are there (on their own address when asked).
//!
//! The replicas are `pimgate serve` child processes on one database, Redis prefix and
//! key-encryption key; A listens at the issuer's address (`public_url`), B elsewhere, as
//! behind a load balancer.

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{Db, Process, TestApp, redis_url};
use crate::sessions::replica_config;
use crate::sso::{PIM_SECRET, World, start, start_for_processes, verifier};

fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Verifies a JWT against the JWKS served at `base`.
async fn verifies_against(base: &str, token: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{base}/oauth/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .unwrap_or_else(|| panic!("{base} does not publish the token's key"));
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap()
    .claims
}

#[tokio::test]
async fn two_replicas_share_logins_scim_writes_and_signing_keys() {
    let prefix = format!("pimgate-test-{}", uuid::Uuid::new_v4().simple());
    let p = prefix.clone();
    let (w, a_listen) = start_for_processes(Db::Postgres, move |s| {
        s.redis.url = Some(SecretString::from(redis_url()));
        s.redis.key_prefix = p;
    })
    .await;
    let cfg = replica_config(&w, &prefix);
    let a = Process::start_on(cfg.path(), &w.app.db().url, Some(&redis_url()), &a_listen);
    let b = Process::start(cfg.path(), &w.app.db().url, Some(&redis_url()));
    w.provision("alice", true).await;

    // The login starts on A (authorize, then the IdP) and the load balancer sends the IdP's
    // callback, and the PIM's code redemption, to B.
    let v = verifier();
    let url = w.authorize_url(&v, &[]);
    let callback = w
        .walk(&url, "alice", Some(&format!("{}/sso/", w.issuer)))
        .await
        .url;
    let on_b = callback.replacen(&w.issuer, &b.base, 1);
    let r = w.browser.get(&on_b).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    let to_pim = r.headers()["location"].to_str().unwrap().to_owned();
    let code = query_param(&to_pim, "code").expect("B issued a code");
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/token", b.base))
        .basic_auth("pim", Some(PIM_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", &format!("{}/callback", w.pim.url)),
            ("code_verifier", v.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();

    // B's tokens verify against A's JWKS (and B's); A refreshes what B issued.
    let id_token = tokens["id_token"].as_str().unwrap();
    let on_a = verifies_against(&w.issuer, id_token).await;
    assert_eq!(on_a["aud"], "pim");
    verifies_against(&b.base, tokens["access_token"].as_str().unwrap()).await;
    let (s, refreshed) = w.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{refreshed}");
    verifies_against(&b.base, refreshed["access_token"].as_str().unwrap()).await;

    // The session the login made on B signs the wiki in on A without the IdP.
    let url = w.authorize_url(&verifier(), &[("client_id", "wiki")]);
    let r = w.browser.get(&url).send().await.unwrap();
    let hop = r.headers()["location"].to_str().unwrap();
    assert!(hop.starts_with(&w.pim.url), "{hop}");

    // A SCIM write through B is read through A at once.
    let r = reqwest::Client::new()
        .post(format!("{}/scim/corp/v2/Users", b.base))
        .bearer_auth("corp-scim-token-0123456789")
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "dave@corp.example", "externalId": "dave"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let dave: Value = r.json().await.unwrap();
    let dave_id = dave["id"].as_str().unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/scim/corp/v2/Users/{dave_id}", a.base))
        .bearer_auth("corp-scim-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["userName"], "dave@corp.example");
    drop((a, b));
    w.app.stop().await;
    crate::helpers::delete_redis_prefix(&prefix).await;
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_text(w: &World) -> String {
    reqwest::get(format!("{}/metrics", w.issuer))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_count_requests_scim_claims_tokens_the_idp_sessions_and_the_pool() {
    let w = start(Db::Sqlite, |_| {}).await;
    let (alice, tokens) = w.signed_in().await;
    // Claims: a miss, then a hit.
    for _ in 0..2 {
        let r = w
            .app
            .client
            .get(format!(
                "{}/access/v1/connections/corp/users/{alice}/claims",
                w.issuer
            ))
            .bearer_auth(crate::helpers::ACCESS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let (s, _) = w.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    w.set_active(&alice, false).await;
    // Requests for connections nobody configured are never a label of their own.
    let _ = reqwest::get(format!("{}/scim/made-up-1/v2/Users", w.issuer)).await;
    let text = metrics_text(&w).await;

    let at_least = |name: &str, labels: &[&str], n: f64| {
        let got = metric(&text, name, labels);
        assert!(got >= n, "{name}{labels:?} = {got}, want >= {n}\n{text}");
    };
    at_least(
        "pimgate_http_requests_total",
        &[
            "route=\"/scim/{connection}/v2/Users\"",
            "method=\"POST\"",
            "status=\"201\"",
        ],
        1.0,
    );
    at_least(
        "pimgate_http_request_duration_seconds_count",
        &["route=\"/oauth/token\""],
        2.0,
    );
    at_least(
        "pimgate_scim_operations_total",
        &[
            "connection=\"corp\"",
            "resource=\"Users\"",
            "operation=\"create\"",
            "outcome=\"ok\"",
        ],
        1.0,
    );
    at_least(
        "pimgate_scim_operations_total",
        &[
            "connection=\"corp\"",
            "resource=\"Users\"",
            "operation=\"patch\"",
        ],
        1.0,
    );
    at_least(
        "pimgate_claims_cache_requests_total",
        &["result=\"hit\""],
        1.0,
    );
    at_least(
        "pimgate_claims_cache_requests_total",
        &["result=\"miss\""],
        1.0,
    );
    at_least(
        "pimgate_tokens_issued_total",
        &["client=\"pim\"", "kind=\"access_token\""],
        2.0,
    );
    at_least(
        "pimgate_tokens_issued_total",
        &["client=\"pim\"", "kind=\"refresh_token\""],
        2.0,
    );
    at_least(
        "pimgate_upstream_request_duration_seconds_count",
        &["connection=\"corp\"", "endpoint=\"token\""],
        1.0,
    );
    at_least(
        "pimgate_sessions_ended_total",
        &["reason=\"deprovisioned: deactivated\""],
        1.0,
    );
    at_least("pimgate_db_pool_max_connections", &[], 1.0);
    assert!(
        text.contains("pimgate_db_pool_connections{state=\"in_use\"}"),
        "{text}"
    );
    assert!(
        !text.contains("made-up-1"),
        "a made-up connection became a label"
    );
    w.app.stop().await;
}

#[tokio::test]
async fn metrics_listen_serves_metrics_there_and_only_there() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.server.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let main = app
        .client
        .get(format!("http://{}/metrics", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), StatusCode::NOT_FOUND);
    let addr = app.running().metrics_addr().expect("a metrics address");
    let r = app
        .client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("pimgate_build_info"));
    app.stop().await;
}

#[tokio::test]
async fn replicas_starting_at_once_migrate_once_and_an_older_build_runs_on_a_newer_schema() {
    use pimgate::clock::SystemClock;
    let db = crate::helpers::TestDb::new(Db::Postgres).await;
    let v = pimgate::config::validate(crate::helpers::test_settings(&db)).unwrap();
    let clock: std::sync::Arc<dyn pimgate::clock::Clock> = std::sync::Arc::new(SystemClock);
    let (a, b) = tokio::join!(
        pimgate::App::build(v.clone(), clock.clone()),
        pimgate::App::build(v.clone(), clock.clone())
    );
    assert!(a.is_ok() && b.is_ok(), "both replicas start");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(
        db.scalar("SELECT count(*) FROM _sqlx_migrations").await,
        migrations,
        "each migration applied exactly once"
    );
    // A newer build has migrated (expand only): this build still starts and serves.
    db.scalar(
        "WITH n AS (INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer build', true, '\\x00', 0) RETURNING 1) SELECT count(*) FROM n",
    )
    .await;
    drop((a, b));
    let app = TestApp::start(db, v, clock).await;
    let (s, _) = app.get("/Users").await;
    assert_eq!(s, StatusCode::OK);
    app.stop().await;
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

#[tokio::test]
async fn redis_sentinel_names_the_master_the_claims_cache_uses() {
    let (mp, sp) = (free_port(), free_port());
    let _master = Child(
        std::process::Command::new("redis-server")
            .args(["--port", &mp.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)"),
    );
    wait_for_port(mp).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!("port {sp}\nbind 127.0.0.1\nsentinel monitor corp-cache 127.0.0.1 {mp} 1\n"),
    )
    .unwrap();
    let _sentinel = Child(
        std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(sp).await;

    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.redis.url = Some(SecretString::from(format!(
            "redis+sentinel://127.0.0.1:{sp}/corp-cache"
        )));
        s.redis.key_prefix = "via-sentinel".into();
    })
    .await;
    let (s, user) = app
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "erin"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap();
    let r = app
        .client
        .get(format!(
            "http://{}/access/v1/connections/default/users/{id}/claims",
            app.addr
        ))
        .bearer_auth(crate::helpers::ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The claims went to the master the Sentinel named.
    let client = redis::Client::open(format!("redis://127.0.0.1:{mp}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("via-sentinel:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "nothing cached on the master");
    app.stop().await;
}
