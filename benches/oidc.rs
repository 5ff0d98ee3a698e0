//! Single sign-on benchmarks: JWT signing, the token endpoint (code and refresh grants),
//! userinfo, introspection, deprovisioning a user with 100 sessions, and the whole browser
//! login, each beside this machine's floor (raw ES256 signing
//! with `jsonwebtoken`, and the bare aws-lc-rs signature under it; an axum hello-world over the
//! same HTTP client).
//!
//! Run: `cargo bench --bench oidc`. Figures go to docs/benchmarks.md.
//!
//! The world is the one of the end-to-end tests (`tests/pimgate/sso.rs`), started here:
//! - the company IdP is the npm package `oidc-provider` (`tests/oidc/idp.mjs`, needs Node.js
//!   20+ and `npm ci` in tests/oidc; `PIMGATE_TEST_NODE`, `PIMGATE_TEST_OIDC_DIR`), its dev
//!   login and consent forms posted as a browser would;
//! - pimgate on `127.0.0.1:0` on PostgreSQL (`PIMGATE_TEST_POSTGRES_URL`, default
//!   `postgres://postgres@127.0.0.1:5432/postgres`, a schema of its own, dropped at the end)
//!   and Redis (`PIMGATE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`, under a key prefix
//!   of its own, deleted at the end), with one SSO connection (`corp`) and one client (`pim`);
//! - one user, `alice`, provisioned over SCIM (externalId = the IdP's subject), an editor
//!   through the IdP group `g-editors`.
//!
//! The "PIM" is this process: it sends the browser to `/oauth/authorize`, stops the walk at
//! its own redirect URI (never requested: it is the floor server's address) and redeems codes
//! at `/oauth/token` with its client secret.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test and benchmark code fails loudly at the line that broke"
)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use pimgate::clock::{Clock, SystemClock};
use pimgate::config;
use pimgate::connections::ConnectionId;
use pimgate::directory::schema::Catalogue;
use pimgate::directory::sql::{PoolSettings, SqlStore};
use pimgate::directory::{GrantRow, GrantStore, SessionRow, SessionStore};
use pimgate::oauth::keys::{Kek, KeyPolicy, SigningKeys};
use pimgate::oauth::settings::SigningAlg;
use pimgate::oauth::tokens::{
    AccessClaims, AccessTokenClaims, IdTokenClaims, permission_bits, permission_order, sign,
};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const PIM_SECRET: &str = "pim-client-secret-0123456789";
const IDP_SECRET: &str = "idp-client-secret-0123456789";
const CORP_SCIM_TOKEN: &str = "corp-scim-token-0123456789";
const EDITOR_ROLE: &str = "9b0e4a52-0000-4000-8000-000000000002";
const DENMARK: &str = "9b0e4a52-0000-4000-8000-0000000000a1";
/// Codes live 60 s: the code-grant bench makes them in batches small enough to redeem in time.
const CODE_BATCH: u64 = 200;

/// The access model of the end-to-end tests: `g-editors` makes an editor in Denmark.
const MODEL: &str = r#"
dimensions = ["market"]

[roles.editor]
id = "9b0e4a52-0000-4000-8000-000000000002"
name = "Editor"
permissions = ["products.view", "products.create"]

[user_groups.denmark]
id = "9b0e4a52-0000-4000-8000-0000000000a1"
name = "Denmark"
languages = { edit = ["da"], read = ["en"] }
[user_groups.denmark.segments.market]
edit = ["dk"]
read = []

[connections.corp]
token_groups = "union"

[[connections.corp.rules]]
name = "editors"
group_external_id = "g-editors"
roles = ["editor"]
user_groups = ["denmark"]
"#;

fn postgres_admin_url() -> String {
    std::env::var("PIMGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn redis_url() -> String {
    std::env::var("PIMGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn oidc_dir() -> PathBuf {
    std::env::var("PIMGATE_TEST_OIDC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc")))
}

/// `tests/oidc/idp.mjs`, stopped when dropped (and when its stdin closes).
struct Node {
    url: String,
    child: tokio::process::Child,
}

impl Node {
    async fn start(config: &std::path::Path) -> Node {
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules").exists(),
            "{}/node_modules is missing: run `npm ci` in tests/oidc",
            dir.display()
        );
        let node = std::env::var("PIMGATE_TEST_NODE").unwrap_or_else(|_| "node".into());
        let mut child = tokio::process::Command::new(node)
            .arg(dir.join("idp.mjs"))
            .arg(config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node idp.mjs: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("idp.mjs did not start")
        .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("idp.mjs: {line}"));
        Node {
            url: ready["issuer"].as_str().unwrap().to_owned(),
            child,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Where a browser's walk ended: the code, the HTTP round trips it made, and the time its
/// requests took at pimgate and at the IdP.
#[derive(Default)]
struct Walk {
    code: String,
    trips: u32,
    idp_trips: u32,
    /// pimgate's `/oauth/authorize`.
    authorize: Duration,
    /// pimgate's `/sso/corp/callback` (it redeems the IdP's code at the IdP meanwhile).
    callback: Duration,
    idp: Duration,
}

/// The tokens of one sign-in.
struct Tokens {
    access_token: String,
    id_token: String,
    refresh_token: String,
}

struct World {
    issuer: String,
    idp: Node,
    /// The hello-world floor, `http://127.0.0.1:PORT`.
    floor: String,
    /// The PIM's registered redirect URI (on the floor server; the walk stops before it).
    redirect: String,
    /// The PIM's back end: token and userinfo requests (keep-alive).
    client: reqwest::Client,
    /// A browser that stays signed in at the IdP (cookie jar, redirects by hand).
    browser: reqwest::Client,
    admin: String,
    schema: String,
    db_url: String,
    prefix: String,
    kek: [u8; 32],
    model: Arc<pimgate::access::model::AccessModel>,
    running: Option<pimgate::Running>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The schema and the Redis keys are gone (else dropping the world removes them: a
    /// bench that panics leaves nothing behind).
    cleaned: bool,
    _kek_file: tempfile::NamedTempFile,
}

/// Drops the bench's schema and deletes its Redis keys; errors are ignored.
async fn remove_scratch(admin: &str, schema: &str, prefix: &str) {
    if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await {
        let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await;
    }
    if let Ok(client) = redis::Client::open(redis_url())
        && let Ok(mut r) = client.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut r)
            .await
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut r).await;
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let (admin, schema, prefix) =
            (self.admin.clone(), self.schema.clone(), self.prefix.clone());
        // A thread with a runtime of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(remove_scratch(&admin, &schema, &prefix));
            }
        })
        .join();
    }
}

fn new_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    b
}

fn verifier() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

async fn exec(url: &str, sql: String) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is required: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn hello_floor() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // `/backchannel` is the PIM's back-channel logout URI: it accepts every logout token.
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello, floor\n" }))
        .route("/backchannel", axum::routing::post(|| async { "" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn setup() -> World {
    let floor = hello_floor().await;
    let redirect = format!("{floor}/callback");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());

    let idp_config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        idp_config.path(),
        json!({
            "clients": [{
                "client_id": "pimgate",
                "client_secret": IDP_SECRET,
                "redirect_uris": [format!("{issuer}/sso/corp/callback")]
            }],
            "accounts": {
                "alice": {"email": "alice@corp.example", "name": "Alice", "preferred_username": "alice", "groups": ["g-editors"]}
            }
        })
        .to_string(),
    )
    .unwrap();
    let idp = Node::start(idp_config.path()).await;
    drop(idp_config);

    let kek = random_bytes();
    let kek_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kek_file.path(), hex::encode(kek)).unwrap();

    let admin = postgres_admin_url();
    let schema = format!("pimgate_bench_{}", uuid::Uuid::new_v4().simple());
    exec(&admin, format!("CREATE SCHEMA {schema}")).await;
    let sep = if admin.contains('?') { '&' } else { '?' };
    let db_url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
    let prefix = format!("pimgate-bench-{}", uuid::Uuid::new_v4().simple());

    let mut s = config::Settings::default();
    s.server.listen = "127.0.0.1:0".into();
    s.server.public_url = Some(issuer.clone());
    s.database.url = Some(SecretString::from(db_url.clone()));
    s.redis.url = Some(SecretString::from(redis_url()));
    s.redis.key_prefix = prefix.clone();
    s.access = toml::from_str(MODEL).unwrap();
    let sso: config::SsoSettings = toml::from_str(&format!(
        r#"
issuer = "{}"
client_id = "pimgate"
client_secret = "{IDP_SECRET}"
scopes = ["openid", "email", "profile", "groups"]
domains = ["corp.example"]
"#,
        idp.url
    ))
    .unwrap();
    s.connections.insert(
        "corp".into(),
        config::ConnectionSettings {
            scim_token: Some(SecretString::from(CORP_SCIM_TOKEN)),
            sso: Some(sso),
            ..Default::default()
        },
    );
    s.oidc.key_encryption_key_file = Some(kek_file.path().to_path_buf());
    s.oidc.clients.insert(
        "pim".into(),
        config::OidcClientSettings {
            client_secret: Some(SecretString::from(PIM_SECRET)),
            redirect_uris: vec![redirect.clone()],
            backchannel_logout_uri: Some(format!("{floor}/backchannel")),
            ..Default::default()
        },
    );
    let v = config::validate(s).unwrap();
    let model = v.access.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = pimgate::App::build(v, Arc::new(SystemClock)).await.unwrap();
    let running = app.serve(listener, async {
        let _ = rx.await;
    });

    let client = reqwest::Client::new();
    // The first signing key is made by the maintenance task at start; wait for it.
    let mut keyed = false;
    for _ in 0..200 {
        let jwks: Value = client
            .get(format!("{issuer}/oauth/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        if jwks["keys"].as_array().is_some_and(|k| !k.is_empty()) {
            keyed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(keyed, "pimgate made no signing key");

    let w = World {
        issuer,
        idp,
        floor,
        redirect,
        client,
        browser: new_browser(),
        admin,
        schema,
        db_url,
        prefix,
        kek,
        model,
        running: Some(running),
        shutdown: Some(tx),
        cleaned: false,
        _kek_file: kek_file,
    };
    let _alice = w.provision("alice").await;
    w
}

impl World {
    async fn scim(&self, path: &str, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}/scim/corp/v2{path}", self.issuer))
            .bearer_auth(CORP_SCIM_TOKEN)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "POST {path}");
        r.json().await.unwrap()
    }

    /// Activates or deactivates a user over SCIM (what a deprovisioning is).
    async fn set_active(&self, id: &str, active: bool) {
        let r = self
            .client
            .patch(format!("{}/scim/corp/v2/Users/{id}", self.issuer))
            .bearer_auth(CORP_SCIM_TOKEN)
            .header("content-type", "application/scim+json")
            .body(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "value": {"active": active}}]})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let _ = r.bytes().await.unwrap();
    }

    /// RFC 7662 introspection by the PIM.
    async fn introspect(&self, token: &str) {
        let r = self
            .client
            .post(format!("{}/oauth/introspect", self.issuer))
            .basic_auth("pim", Some(PIM_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let _ = r.bytes().await.unwrap();
    }

    /// `n` sessions of `user`, each with a sign-in of the PIM (as `n` browsers would leave
    /// them), written straight to the store.
    async fn sessions(&self, store: &SqlStore, user: &str, n: usize) {
        let now = SystemClock.now();
        let conn = ConnectionId::parse("corp").unwrap();
        for _ in 0..n {
            let session = SessionRow {
                id: uuid::Uuid::now_v7().to_string(),
                cookie_hash: hex::encode(random_bytes()),
                connection: conn.clone(),
                user_id: user.to_owned(),
                upstream_sub: "bob".into(),
                upstream_sid: Some(uuid::Uuid::new_v4().to_string()),
                upstream_id_token: None,
                token_groups: Some(vec!["g-editors".into()]),
                groups_overage: false,
                auth_time: now,
                created: now,
                last_seen: now,
                expires: now.plus_millis(86_400_000),
                ended: None,
                end_reason: None,
            };
            SessionStore::insert_session(store, &session).await.unwrap();
            let grant = GrantRow {
                id: uuid::Uuid::now_v7().to_string(),
                client_id: "pim".into(),
                connection: conn.clone(),
                user_id: user.to_owned(),
                scope: "openid offline_access".into(),
                token_groups: session.token_groups.clone(),
                auth_time: now,
                created: now,
                expires: now.plus_millis(28_800_000),
                refresh_hash: Some(hex::encode(random_bytes())),
                revoked: None,
                groups_overage: false,
                session_id: Some(session.id.clone()),
                last_used: Some(now),
            };
            GrantStore::insert_grant(store, &grant).await.unwrap();
        }
    }

    /// `account` on `corp` (externalId = the IdP's subject), in the group `g-editors`; its id.
    async fn provision(&self, account: &str) -> String {
        let user = self
            .scim(
                "/Users",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("{account}@corp.example"),
                    "externalId": account,
                    "active": true
                }),
            )
            .await;
        let id = user["id"].as_str().unwrap();
        self.scim(
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": format!("Editors {account}"),
                "externalId": "g-editors",
                "members": [{"value": id}]
            }),
        )
        .await;
        id.to_owned()
    }

    /// pimgate's authorization URL for the PIM with this PKCE verifier.
    fn authorize_url(&self, verifier: &str) -> String {
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
        let q = [
            ("response_type", "code"),
            ("client_id", "pim"),
            ("scope", "openid profile offline_access"),
            ("state", "st-123"),
            ("nonce", "n-123"),
            ("code_challenge_method", "S256"),
            ("redirect_uri", self.redirect.as_str()),
            ("code_challenge", challenge.as_str()),
        ];
        format!(
            "{}/oauth/authorize?{}",
            self.issuer,
            serde_urlencoded::to_string(q).unwrap()
        )
    }

    /// Follows redirects from pimgate's `/oauth/authorize` as `browser`, posting the IdP's
    /// login and consent forms as `alice` when they show, until the redirect to the PIM.
    async fn walk(&self, browser: &reqwest::Client, verifier: &str) -> Walk {
        let mut url = self.authorize_url(verifier);
        let mut walk = Walk::default();
        for _ in 0..30 {
            if url.starts_with(&self.redirect) {
                let u = reqwest::Url::parse(&url).unwrap();
                let code = u.query_pairs().find(|(k, _)| k == "code");
                walk.code = code
                    .unwrap_or_else(|| panic!("no code in {url}"))
                    .1
                    .into_owned();
                return walk;
            }
            let at_idp = url.starts_with(&self.idp.url);
            let mut posted = false;
            let start = Instant::now();
            let resp = browser.get(&url).send().await.unwrap();
            walk.trips += 1;
            let resp = if resp.status() == StatusCode::OK && at_idp && url.contains("/interaction/")
            {
                let body = resp.text().await.unwrap();
                let form: &[(&str, &str)] = if body.contains("name=\"login\"") {
                    &[("prompt", "login"), ("login", "alice"), ("password", "any")]
                } else {
                    &[("prompt", "consent")]
                };
                walk.trips += 1;
                posted = true;
                browser.post(&url).form(form).send().await.unwrap()
            } else {
                resp
            };
            let status = resp.status();
            let loc = resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned());
            let body = resp.bytes().await.unwrap();
            let took = start.elapsed();
            if at_idp {
                walk.idp += took;
                walk.idp_trips += 1 + u32::from(posted);
            } else if url.starts_with(&format!("{}/oauth/authorize", self.issuer)) {
                walk.authorize += took;
            } else {
                walk.callback += took;
            }
            let Some(loc) = loc.filter(|_| status.is_redirection()) else {
                panic!(
                    "the walk stopped at {url}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
            };
            url = reqwest::Url::parse(&url)
                .unwrap()
                .join(&loc)
                .unwrap()
                .to_string();
        }
        panic!("too many redirects");
    }

    fn redeem_request(&self, code: &str, verifier: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/oauth/token", self.issuer))
            .basic_auth("pim", Some(PIM_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.redirect.as_str()),
                ("code_verifier", verifier),
            ])
    }

    /// The code grant, the response read (not parsed).
    async fn redeem(&self, code: &str, verifier: &str) {
        let r = self.redeem_request(code, verifier).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let _ = r.bytes().await.unwrap();
    }

    /// A whole sign-in with the persistent browser, its tokens parsed.
    async fn tokens(&self) -> Tokens {
        let v = verifier();
        let code = self.walk(&self.browser, &v).await.code;
        let r = self.redeem_request(&code, &v).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let t: Value = r.json().await.unwrap();
        let s = |k: &str| {
            t[k].as_str()
                .unwrap_or_else(|| panic!("no {k} in {t}"))
                .to_owned()
        };
        Tokens {
            access_token: s("access_token"),
            id_token: s("id_token"),
            refresh_token: s("refresh_token"),
        }
    }

    /// The refresh grant with the current refresh token, which it replaces with the rotated
    /// one of the answer (refresh tokens are single use).
    async fn refresh(&self, refresh_token: &std::sync::Mutex<String>) {
        let current = refresh_token.lock().unwrap().clone();
        let r = self
            .client
            .post(format!("{}/oauth/token", self.issuer))
            .basic_auth("pim", Some(PIM_SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", current.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let t: Value = r.json().await.unwrap();
        let next = t["refresh_token"]
            .as_str()
            .expect("a rotated refresh token");
        next.clone_into(&mut refresh_token.lock().unwrap());
    }

    async fn userinfo(&self, access_token: &str) {
        let r = self
            .client
            .get(format!("{}/oauth/userinfo", self.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let _ = r.bytes().await.unwrap();
    }

    /// The signing keys of pimgate's store, as a second replica would hold them.
    async fn signing_keys(&self) -> SigningKeys {
        let store = SqlStore::open(
            &self.db_url,
            &PoolSettings::default(),
            Arc::new(Catalogue::load().unwrap()),
        )
        .await
        .unwrap();
        let keys = SigningKeys::new(
            Arc::new(store),
            Kek::from_bytes(&self.kek).unwrap(),
            Arc::new(SystemClock),
            KeyPolicy {
                alg: SigningAlg::Es256,
                rotation: Duration::from_secs(30 * 86_400),
                publish_lead: Duration::from_secs(600),
                max_token_ttl: Duration::from_secs(300),
            },
        );
        keys.maintain().await.unwrap();
        keys
    }

    async fn teardown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(running) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), running.wait()).await;
        }
        remove_scratch(&self.admin, &self.schema, &self.prefix).await;
        self.cleaned = true;
    }
}

async fn hello(client: &reqwest::Client, url: &str) {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _ = r.bytes().await.unwrap();
}

/// Access-token claims as pimgate mints them, for a user holding every built-in permission,
/// two roles and three user groups.
fn full_claims(w: &World) -> (AccessTokenClaims, IdTokenClaims) {
    let order = permission_order(&w.model);
    let held: BTreeSet<String> = order.iter().cloned().collect();
    let access = AccessClaims {
        connection: "corp".into(),
        roles: vec![EDITOR_ROLE.into(), uuid::Uuid::new_v4().to_string()],
        user_groups: vec![
            DENMARK.into(),
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        ],
        permissions: permission_bits(&order, &held),
        config_version: w.model.version().to_owned(),
    };
    let now = chrono::Utc::now().timestamp();
    let sub = uuid::Uuid::new_v4().to_string();
    let sid = uuid::Uuid::new_v4().simple().to_string();
    let at = AccessTokenClaims {
        iss: w.issuer.clone(),
        sub: sub.clone(),
        aud: "pim".into(),
        exp: now + 300,
        iat: now,
        auth_time: now,
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: "pim".into(),
        scope: "openid profile offline_access".into(),
        sid: sid.clone(),
        access: access.clone(),
    };
    let id = IdTokenClaims {
        iss: w.issuer.clone(),
        sub,
        aud: "pim".into(),
        exp: now + 300,
        iat: now,
        auth_time: now,
        nonce: Some(verifier()),
        azp: "pim".into(),
        sid,
        preferred_username: Some("someone.with.a.longish.name@corp.example".into()),
        access,
    };
    (at, id)
}

fn benches(c: &mut Criterion) {
    // reqwest is built without a TLS provider of its own: the process's (aws-lc-rs).
    pimgate::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut w = rt.block_on(setup());

    // ------------------------------------------------------------------ jwt_sign
    let keys = rt.block_on(w.signing_keys());
    let (at, idt) = full_claims(&w);
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let raw_key = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut raw_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    raw_header.kid = Some("0123456789abcdef0123456789abcdef0123456789a".into());
    raw_header.typ = Some("at+jwt".into());
    // The ECDSA signature alone: the key parsed once (jsonwebtoken parses the PKCS#8 key on
    // every call), over the same signing input.
    let key_pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let signing_input = {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}",
            b64.encode(serde_json::to_vec(&raw_header).unwrap()),
            b64.encode(serde_json::to_vec(&at).unwrap())
        )
    };
    let rng = SystemRandom::new();
    {
        let order = permission_order(&w.model);
        let a = rt.block_on(sign(&keys, "at+jwt", &at)).unwrap();
        let i = rt.block_on(sign(&keys, "JWT", &idt)).unwrap();
        let login = rt.block_on(w.tokens());
        println!(
            "token sizes: {} built-in permissions -> bitset {:?} ({} chars); every permission, 2 roles, 3 user groups: access token {} bytes, ID token {} bytes; alice (editor, 1 role, 1 user group) from a real login: access token {} bytes, ID token {} bytes, refresh token {} bytes",
            order.len(),
            at.access.permissions,
            at.access.permissions.len(),
            a.len(),
            i.len(),
            login.access_token.len(),
            login.id_token.len(),
            login.refresh_token.len(),
        );
    }
    let mut g = c.benchmark_group("jwt_sign");
    g.sample_size(50)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("aws_lc_signature_only", |b| {
        b.iter(|| key_pair.sign(&rng, signing_input.as_bytes()).unwrap());
    });
    g.bench_function("raw_es256", |b| {
        b.iter(|| jsonwebtoken::encode(&raw_header, &at, &raw_key).unwrap());
    });
    g.bench_function("pimgate_access_token", |b| {
        b.to_async(&rt)
            .iter(|| async { sign(&keys, "at+jwt", &at).await.unwrap() });
    });
    g.finish();

    // ------------------------------------------------------------------ oidc_http
    let mut g = c.benchmark_group("oidc_http");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    let floor_url = format!("{}/", w.floor);
    g.bench_function("floor_hello", |b| {
        b.to_async(&rt).iter(|| hello(&w.client, &floor_url));
    });
    // Each code is made by a walk of the signed-in browser (IdP session and consent kept:
    // authorize, IdP, pimgate's callback), outside the timed part; only the POSTs are timed.
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("token_code_grant", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let w = &w;
            async move {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CODE_BATCH);
                    let mut codes = Vec::new();
                    for _ in 0..n {
                        let v = verifier();
                        codes.push((w.walk(&w.browser, &v).await.code, v));
                    }
                    let start = Instant::now();
                    for (code, v) in &codes {
                        w.redeem(code, v).await;
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            }
        });
    });
    g.measurement_time(Duration::from_secs(5));
    let refresh_token = std::sync::Mutex::new(rt.block_on(w.tokens()).refresh_token);
    g.bench_function("token_refresh_grant", |b| {
        b.to_async(&rt).iter(|| w.refresh(&refresh_token));
    });
    // A fresh access token (they live 300 s).
    let t = rt.block_on(w.tokens());
    g.bench_function("userinfo", |b| {
        b.to_async(&rt).iter(|| w.userinfo(&t.access_token));
    });
    g.finish();

    // ------------------------------------------------------------------ sessions
    // Introspection (the PIM asking whether a token still stands: grant, user and access
    // looked up each time, never cached) and deprovisioning: a SCIM deactivation of a user
    // with no sessions, and of a user with 100 sessions (each with a PIM sign-in and a
    // back-channel logout to deliver, outside the request), made fresh before each timed
    // PATCH.
    let mut g = c.benchmark_group("sessions");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    let t = rt.block_on(w.tokens());
    g.bench_function("introspect_access_token", |b| {
        b.to_async(&rt).iter(|| w.introspect(&t.access_token));
    });
    g.bench_function("introspect_refresh_token", |b| {
        b.to_async(&rt).iter(|| w.introspect(&t.refresh_token));
    });
    let (store, bob, carol) = rt.block_on(async {
        let store = SqlStore::open(
            &w.db_url,
            &PoolSettings::default(),
            Arc::new(Catalogue::load().unwrap()),
        )
        .await
        .unwrap();
        (store, w.provision("bob").await, w.provision("carol").await)
    });
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(15));
    for (name, user, sessions) in [
        ("deprovision_user_0_sessions", &carol, 0),
        ("deprovision_user_100_sessions", &bob, 100),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (w, store) = (&w, &store);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        w.set_active(user, true).await;
                        w.sessions(store, user, sessions).await;
                        let start = Instant::now();
                        w.set_active(user, false).await;
                        total += start.elapsed();
                    }
                    total
                }
            });
        });
    }
    g.finish();

    // ------------------------------------------------------------------ login_round_trip
    // A new browser each time (built outside the timed part): login form, consent, code,
    // redemption. The floor makes as many sequential requests as the walk plus the redemption.
    let (trips_first, trips_signed_in) = rt.block_on(async {
        let v = verifier();
        let first = w.walk(&new_browser(), &v).await;
        w.redeem(&first.code, &v).await;
        let again = w.walk(&w.browser, &v).await;
        w.redeem(&again.code, &v).await;
        (first.trips + 1, again.trips + 1)
    });
    println!(
        "login round trips seen by the browser (walk + code redemption): {trips_first} for a new browser, {trips_signed_in} when signed in at the IdP with consent given"
    );
    let mut g = c.benchmark_group("login_round_trip");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(3));
    g.bench_function(format!("floor_hello_x{trips_first}"), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let url = floor_url.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let browser = new_browser();
                    let start = Instant::now();
                    for _ in 0..trips_first {
                        hello(&browser, &url).await;
                    }
                    total += start.elapsed();
                }
                total
            }
        });
    });
    // Where the time of the timed logins went, over every iteration criterion ran.
    let split = std::sync::Mutex::new((0u32, Walk::default(), Duration::ZERO));
    g.bench_function("full_login", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (w, split) = (&w, &split);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let browser = new_browser();
                    let v = verifier();
                    let start = Instant::now();
                    let walk = w.walk(&browser, &v).await;
                    let redeem = Instant::now();
                    w.redeem(&walk.code, &v).await;
                    let redeem = redeem.elapsed();
                    total += start.elapsed();
                    assert_eq!(walk.trips + 1, trips_first);
                    let mut s = split.lock().unwrap();
                    s.0 += 1;
                    s.1.authorize += walk.authorize;
                    s.1.callback += walk.callback;
                    s.1.idp += walk.idp;
                    s.1.idp_trips = walk.idp_trips;
                    s.2 += redeem;
                }
                total
            }
        });
    });
    g.finish();
    let (n, walk, redeem) = &*split.lock().unwrap();
    if *n > 0 {
        println!(
            "full_login, mean of {n} timed logins: pimgate /oauth/authorize {:.2?}; the IdP ({} requests) {:.2?}; pimgate's callback (with its code exchange at the IdP) {:.2?}; code redemption at /oauth/token {:.2?}",
            walk.authorize / *n,
            walk.idp_trips,
            walk.idp / *n,
            walk.callback / *n,
            *redeem / *n
        );
    }

    rt.block_on(w.teardown());
}

criterion_group!(oidc, benches);
criterion_main!(oidc);
