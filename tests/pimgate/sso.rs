//! Single sign-on end to end, against real parts on loopback: the company IdP is the
//! OpenID-certified npm package `oidc-provider` (`tests/oidc/idp.mjs`, its dev login form
//! driven over HTTP), and the PIM is a stand-in built from the stock client library
//! `openid-client` (`tests/oidc/pim.mjs`), which discovers pimgate, runs the code flow with
//! PKCE, verifies the ID token against pimgate's JWKS and reads userinfo.
//!
//! The IdP's test hooks (`/__test/tamper`, `/__test/rotate`) change what the real provider
//! sends, so each refusal below is pimgate's own check at work.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::helpers::{Db, TestApp, TestDb, test_settings};
use pimgate::clock::SystemClock;
use pimgate::config;

pub(crate) const PIM_SECRET: &str = "pim-client-secret-0123456789";
pub(crate) const IDP_SECRET: &str = "idp-client-secret-0123456789";
const EDITOR_ROLE: &str = "9b0e4a52-0000-4000-8000-000000000002";
const DENMARK: &str = "9b0e4a52-0000-4000-8000-0000000000a1";

pub(crate) const MODEL: &str = r#"
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

/// A Node.js program of `tests/oidc`, stopped when dropped (and when its stdin closes).
pub(crate) struct Node {
    pub(crate) url: String,
    child: tokio::process::Child,
}

fn oidc_dir() -> PathBuf {
    std::env::var("PIMGATE_TEST_OIDC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc")))
}

impl Node {
    pub(crate) async fn start(script: &str, args: &[&str], key: &str) -> Node {
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules").exists(),
            "{}/node_modules is missing: run scripts/test (or `npm ci` in tests/oidc)",
            dir.display()
        );
        let node = std::env::var("PIMGATE_TEST_NODE").unwrap_or_else(|_| "node".into());
        let mut child = tokio::process::Command::new(node)
            .arg(dir.join(script))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {script}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .unwrap_or_else(|_| panic!("{script} did not start"))
        .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("{script}: {line}"));
        Node {
            url: ready[key].as_str().unwrap().to_owned(),
            child,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// pimgate with one SSO connection (`corp`) at the IdP and the PIM stand-in as a client.
pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) idp: Node,
    pub(crate) pim: Node,
    pub(crate) issuer: String,
    /// A browser: a cookie jar, redirects followed by hand.
    pub(crate) browser: reqwest::Client,
    pub(crate) kek: tempfile::NamedTempFile,
}

pub(crate) async fn start(db: Db, tune: impl FnOnce(&mut config::Settings)) -> World {
    start_clocked(db, Arc::new(SystemClock), tune).await
}

/// [`start`] on an injected clock (it must start at the real time: the IdP's tokens are
/// checked on it).
pub(crate) async fn start_clocked(
    db: Db,
    clock: Arc<dyn pimgate::clock::Clock>,
    tune: impl FnOnce(&mut config::Settings),
) -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    build(db, clock, tune, listener, true).await
}

/// The world for `pimgate serve` processes: the issuer is a free address on which the
/// caller starts replica A (the in-process pimgate listens elsewhere and only keeps the test
/// database, the SCIM helpers and the settings the replicas share).
pub(crate) async fn start_for_processes(
    db: Db,
    tune: impl FnOnce(&mut config::Settings),
) -> (World, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap().to_string();
    (
        build(db, Arc::new(SystemClock), tune, listener, false).await,
        a,
    )
}

async fn build(
    db: Db,
    clock: Arc<dyn pimgate::clock::Clock>,
    tune: impl FnOnce(&mut config::Settings),
    listener: tokio::net::TcpListener,
    serve_on_issuer: bool,
) -> World {
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let pim = Node::start(
        "pim.mjs",
        &[
            "--issuer",
            &issuer,
            "--client-id",
            "pim",
            "--client-secret",
            PIM_SECRET,
        ],
        "url",
    )
    .await;
    let idp_config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        idp_config.path(),
        json!({
            "clients": [{
                "client_id": "pimgate",
                "client_secret": IDP_SECRET,
                "redirect_uris": [format!("{issuer}/sso/corp/callback")],
                "post_logout_redirect_uris": [format!("{issuer}/sso/corp/logged-out")],
                "backchannel_logout_uri": format!("{issuer}/sso/corp/backchannel-logout"),
                "backchannel_logout_session_required": true
            }],
            "accounts": {
                "alice": {"email": "alice@corp.example", "name": "Alice", "preferred_username": "alice", "groups": ["g-editors"]},
                "bob": {"email": "bob@corp.example", "name": "Bob", "preferred_username": "bob", "groups": ["g-editors"]},
                "carol": {"email": "carol@corp.example", "name": "Carol", "preferred_username": "carol", "groups": []}
            }
        })
        .to_string(),
    )
    .unwrap();
    let idp = Node::start("idp.mjs", &[idp_config.path().to_str().unwrap()], "issuer").await;
    let kek = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kek.path(), hex_key()).unwrap();
    let db = TestDb::new(db).await;
    let mut s = test_settings(&db);
    s.server.public_url = Some(issuer.clone());
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
            scim_token: Some(SecretString::from("corp-scim-token-0123456789")),
            sso: Some(sso),
            ..Default::default()
        },
    );
    s.oidc.key_encryption_key_file = Some(kek.path().to_path_buf());
    s.oidc.clients.insert(
        "pim".into(),
        config::OidcClientSettings {
            client_secret: Some(SecretString::from(PIM_SECRET)),
            redirect_uris: vec![format!("{}/callback", pim.url)],
            post_logout_redirect_uris: vec![format!("{}/logged-out", pim.url)],
            backchannel_logout_uri: Some(format!("{}/backchannel-logout", pim.url)),
            ..Default::default()
        },
    );
    // A second application (public: PKCE only), signed in to from the same session.
    s.oidc.clients.insert(
        "wiki".into(),
        config::OidcClientSettings {
            redirect_uris: vec![format!("{}/callback", pim.url)],
            ..Default::default()
        },
    );
    tune(&mut s);
    let v = config::validate(s).unwrap();
    let listener = if serve_on_issuer {
        listener
    } else {
        drop(listener);
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
    };
    let app = TestApp::start_on_listener(db, v, clock, listener).await;
    drop(idp_config);
    World {
        app,
        idp,
        pim,
        issuer,
        browser: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        kek,
    }
}

/// 32 random bytes as hex: a key-encryption key.
pub(crate) fn hex_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

async fn get_json(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let r = client.get(url).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Where a walk of the browser ended.
#[derive(Debug)]
pub(crate) struct Landing {
    pub(crate) status: StatusCode,
    pub(crate) url: String,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

impl Landing {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON at {}: {}", self.url, self.body))
    }

    /// A person-readable failure page with a correlation id.
    pub(crate) fn assert_page(&self, status: StatusCode, says: &str) {
        assert_eq!(self.status, status, "{}: {}", self.url, self.body);
        assert!(
            self.content_type.starts_with("text/html"),
            "{}",
            self.content_type
        );
        assert!(self.body.contains(says), "{says:?} not in {}", self.body);
        assert!(
            self.body.contains("<code>"),
            "no correlation id: {}",
            self.body
        );
    }
}

impl World {
    /// Follows redirects from `url` as a browser, signing in at the IdP as `account`
    /// (login and consent forms), until a page that is not a redirect, or until the next
    /// URL starts with `stop_before` (then that URL is the landing, not requested).
    pub(crate) async fn walk(
        &self,
        url: &str,
        account: &str,
        stop_before: Option<&str>,
    ) -> Landing {
        let mut url = url.to_owned();
        for _ in 0..30 {
            if stop_before.is_some_and(|p| url.starts_with(p)) {
                return Landing {
                    status: StatusCode::FOUND,
                    url,
                    content_type: String::new(),
                    body: String::new(),
                };
            }
            let resp = self.browser.get(&url).send().await.unwrap();
            let resp = if resp.status() == StatusCode::OK
                && url.starts_with(&self.idp.url)
                && url.contains("/interaction/")
            {
                let body = resp.text().await.unwrap();
                let form: Vec<(&str, &str)> = if body.contains("name=\"login\"") {
                    vec![("prompt", "login"), ("login", account), ("password", "any")]
                } else {
                    vec![("prompt", "consent")]
                };
                self.browser.post(&url).form(&form).send().await.unwrap()
            } else if resp.status() == StatusCode::OK && url.starts_with(&self.idp.url) {
                // The IdP's "sign out?" confirmation: answer yes.
                let body = resp.text().await.unwrap();
                let Some(action) = html_attr(&body, "action=\"") else {
                    return Landing {
                        status: StatusCode::OK,
                        url,
                        content_type: "text/html".into(),
                        body,
                    };
                };
                let xsrf = html_attr(&body, "name=\"xsrf\" value=\"").unwrap_or_default();
                let target = reqwest::Url::parse(&url).unwrap().join(&action).unwrap();
                self.browser
                    .post(target.as_str())
                    .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
                    .send()
                    .await
                    .unwrap()
            } else {
                resp
            };
            if resp.status().is_redirection() {
                let loc = resp.headers()["location"].to_str().unwrap().to_owned();
                url = reqwest::Url::parse(&url)
                    .unwrap()
                    .join(&loc)
                    .unwrap()
                    .to_string();
                continue;
            }
            let status = resp.status();
            let content_type = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            return Landing {
                status,
                url,
                content_type,
                body: resp.text().await.unwrap(),
            };
        }
        panic!("too many redirects from {url}");
    }

    /// The PIM stand-in's whole login (discovery, code flow with PKCE, ID token checked
    /// against pimgate's JWKS, userinfo, a refresh).
    pub(crate) async fn pim_login(&self, account: &str) -> Landing {
        self.walk(&format!("{}/login", self.pim.url), account, None)
            .await
    }

    /// pimgate's authorization URL for the PIM client with our own PKCE pair and state.
    pub(crate) fn authorize_url(&self, verifier: &str, extra: &[(&str, &str)]) -> String {
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
        let mut q = vec![
            ("response_type", "code"),
            ("client_id", "pim"),
            ("scope", "openid profile offline_access"),
            ("state", "st-123"),
            ("nonce", "n-123"),
            ("code_challenge_method", "S256"),
        ];
        let redirect = format!("{}/callback", self.pim.url);
        q.push(("redirect_uri", &redirect));
        q.push(("code_challenge", &challenge));
        q.extend_from_slice(extra);
        format!(
            "{}/oauth/authorize?{}",
            self.issuer,
            serde_urlencoded::to_string(&q).unwrap()
        )
    }

    /// Signs `account` in with our own client side and returns pimgate's code for the PIM.
    pub(crate) async fn code(&self, account: &str, verifier: &str) -> String {
        let landing = self
            .walk(
                &self.authorize_url(verifier, &[]),
                account,
                Some(&self.pim.url),
            )
            .await;
        let u = reqwest::Url::parse(&landing.url).unwrap();
        let code = u
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned());
        code.unwrap_or_else(|| panic!("no code in {}", landing.url))
    }

    /// The URL the IdP sends the browser back to pimgate with (not yet requested).
    pub(crate) async fn idp_callback(&self, account: &str) -> String {
        let url = self.authorize_url(&verifier(), &[]);
        self.walk(&url, account, Some(&format!("{}/sso/", self.issuer)))
            .await
            .url
    }

    pub(crate) async fn redeem(&self, code: &str, verifier: Option<&str>) -> (StatusCode, Value) {
        let redirect = format!("{}/callback", self.pim.url);
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        let r = self
            .app
            .client
            .post(format!("{}/oauth/token", self.issuer))
            .basic_auth("pim", Some(PIM_SECRET))
            .form(&form)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    pub(crate) async fn refresh(&self, token: &str) -> (StatusCode, Value) {
        let r = self
            .app
            .client
            .post(format!("{}/oauth/token", self.issuer))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", "pim"),
                ("client_secret", PIM_SECRET),
            ])
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    pub(crate) async fn userinfo(&self, access_token: &str) -> (StatusCode, Value) {
        let r = self
            .app
            .client
            .get(format!("{}/oauth/userinfo", self.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn tamper(&self, mode: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/__test/tamper", self.idp.url))
            .json(&json!({ "mode": mode }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "tamper {mode}");
    }

    /// Activates or deactivates a user over SCIM, as Entra and Okta do.
    pub(crate) async fn set_active(&self, user: &str, active: bool) {
        let (s, body) = self
            .app
            .call_as(
                "corp-scim-token-0123456789",
                "corp",
                reqwest::Method::PATCH,
                &format!("/Users/{user}"),
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "value": {"active": active}}]}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    /// Provisions a user on `corp` over SCIM (externalId = the IdP's subject), optionally
    /// in the `g-editors` group; its pimgate id.
    pub(crate) async fn provision(&self, account: &str, editor: bool) -> String {
        let (s, user) = self
            .app
            .call_as(
                "corp-scim-token-0123456789",
                "corp",
                reqwest::Method::POST,
                "/Users",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("{account}@corp.example"),
                    "externalId": account,
                    "active": true
                })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{user}");
        let id = user["id"].as_str().unwrap().to_owned();
        if editor {
            let (s, g) = self
                .app
                .call_as(
                    "corp-scim-token-0123456789",
                    "corp",
                    reqwest::Method::POST,
                    "/Groups",
                    Some(json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                        "displayName": format!("Editors {account}"),
                        "externalId": "g-editors",
                        "members": [{"value": id}]
                    })),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{g}");
        }
        id
    }
}

/// The value after `prefix` up to the next `"` in an HTML page.
fn html_attr(body: &str, prefix: &str) -> Option<String> {
    let start = body.find(prefix)? + prefix.len();
    let len = body[start..].find('"')?;
    Some(body[start..start + len].replace("&amp;", "&"))
}

pub(crate) fn verifier() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The claims of a JWT, unverified (the PIM stand-in verified it).
pub(crate) fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

async fn access_api_claims(w: &World, user: &str) -> Value {
    let r = w
        .app
        .client
        .get(format!(
            "{}/access/v1/connections/corp/users/{user}/claims",
            w.issuer
        ))
        .bearer_auth(crate::helpers::ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn full_login(w: &World) {
    let alice = w.provision("alice", true).await;
    let landing = w.pim_login("alice").await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    let out = landing.json();
    let expected = access_api_claims(w, &alice).await;

    // The ID token, verified by the stock client against pimgate's JWKS.
    let id = &out["id_token_claims"];
    assert_eq!(id["iss"], w.issuer);
    assert_eq!(id["aud"], "pim");
    assert_eq!(id["sub"], alice);
    assert_eq!(id["connection"], "corp");
    assert_eq!(id["roles"], json!([EDITOR_ROLE]));
    assert_eq!(id["userGroups"], json!([DENMARK]));
    assert_eq!(id["configVersion"], expected["configVersion"]);
    assert_eq!(
        jwt_part(out["id_token"].as_str().unwrap(), 0)["alg"],
        "ES256"
    );

    // The access token: RFC 9068.
    let at = out["access_token"].as_str().unwrap();
    let header = jwt_part(at, 0);
    assert_eq!(header["typ"], "at+jwt");
    let claims = jwt_part(at, 1);
    for k in [
        "iss",
        "exp",
        "aud",
        "sub",
        "client_id",
        "iat",
        "jti",
        "scope",
    ] {
        assert!(
            claims.get(k).is_some(),
            "access token without {k}: {claims}"
        );
    }
    assert!(at.len() < 4096 && out["id_token"].as_str().unwrap().len() < 4096);

    // Userinfo: the claims document the access model gives this user, plus sub.
    let mut userinfo = out["userinfo"].clone();
    assert_eq!(userinfo["sub"], alice);
    userinfo.as_object_mut().unwrap().remove("sub");
    let mut expected_doc = expected.clone();
    expected_doc.as_object_mut().unwrap().remove("sub");
    assert_eq!(userinfo, expected_doc);

    // A refresh grant worked, and its ID token says the same.
    assert!(out["refresh_token"].is_string(), "{out}");
    assert_eq!(
        out["refreshed"]["id_token_claims"]["roles"],
        json!([EDITOR_ROLE])
    );
}

#[tokio::test]
async fn login_through_pimgate_reaches_the_pim_with_the_access_models_claims_sqlite() {
    let w = start(Db::Sqlite, |_| {}).await;
    full_login(&w).await;
}

#[tokio::test]
async fn login_through_pimgate_reaches_the_pim_with_the_access_models_claims_postgres_redis() {
    let prefix = format!("pimgate-test-{}", uuid::Uuid::new_v4().simple());
    let p = prefix.clone();
    let w = start(Db::Postgres, move |s| {
        s.redis.url = Some(SecretString::from(crate::helpers::redis_url()));
        s.redis.key_prefix = p;
    })
    .await;
    full_login(&w).await;
    w.app.stop().await;
}

#[tokio::test]
async fn token_groups_grant_access_to_a_user_in_no_scim_group() {
    let w = start(Db::Sqlite, |_| {}).await;
    let bob = w.provision("bob", false).await;
    let out = w.pim_login("bob").await.json();
    assert_eq!(out["id_token_claims"]["sub"], bob);
    assert_eq!(
        out["id_token_claims"]["roles"],
        json!([EDITOR_ROLE]),
        "from the token's groups"
    );
}

#[tokio::test]
async fn state_mismatch_is_refused() {
    let w = start(Db::Sqlite, |_| {}).await;
    w.provision("alice", true).await;
    let cb = w.idp_callback("alice").await;
    let forged = cb.replace("state=", "state=x");
    let landing = w.walk(&forged, "alice", None).await;
    landing.assert_page(StatusCode::BAD_REQUEST, "expired");
    // The forged state named no login, so the real one is still pending and completes.
    let ok = w.walk(&cb, "alice", Some(&w.pim.url)).await;
    assert!(ok.url.contains("code="), "{}", ok.url);
}

#[tokio::test]
async fn login_started_in_another_browser_is_refused() {
    let w = start(Db::Sqlite, |_| {}).await;
    w.provision("alice", true).await;
    let cb = w.idp_callback("alice").await;
    let other = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = other.get(&cb).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("another browser"));
}

#[tokio::test]
async fn replayed_upstream_code_is_refused() {
    let w = start(Db::Sqlite, |_| {}).await;
    w.provision("alice", true).await;
    let cb = w.idp_callback("alice").await;
    let first = w.walk(&cb, "alice", Some(&w.pim.url)).await;
    assert!(first.url.contains("code="), "{}", first.url);
    let again = w.walk(&cb, "alice", None).await;
    again.assert_page(StatusCode::BAD_REQUEST, "already used");
}

#[tokio::test]
async fn replayed_downstream_code_revokes_what_it_issued() {
    let w = start(Db::Sqlite, |_| {}).await;
    w.provision("alice", true).await;
    let v = verifier();
    let code = w.code("alice", &v).await;
    let (s, tokens) = w.redeem(&code, Some(&v)).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let at = tokens["access_token"].as_str().unwrap();
    assert_eq!(w.userinfo(at).await.0, StatusCode::OK);
    let (s, err) = w.redeem(&code, Some(&v)).await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (s, err) = w.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "refresh revoked"
    );
    let (s, _) = w.userinfo(at).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the access token's grant is revoked"
    );
}

#[tokio::test]
async fn missing_or_wrong_pkce_verifier_is_invalid_grant() {
    let w = start(Db::Sqlite, |_| {}).await;
    w.provision("alice", true).await;
    let v = verifier();
    let code = w.code("alice", &v).await;
    let (s, err) = w.redeem(&code, None).await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{err}"
    );
    let code = w.code("alice", &v).await;
    let (s, err) = w.redeem(&code, Some(&verifier())).await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{err}"
    );
}

#[tokio::test]
async fn public_client_without_pkce_is_refused_at_authorize() {
    let w = start(Db::Sqlite, |s| {
        s.oidc.clients.get_mut("pim").unwrap().client_secret = None;
    })
    .await;
    let url = format!(
        "{}/oauth/authorize?response_type=code&client_id=pim&scope=openid&state=s1&redirect_uri={}",
        w.issuer,
        urlencode(&format!("{}/callback", w.pim.url))
    );
    let r = w.browser.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.starts_with(&format!("{}/callback?", w.pim.url)),
        "{loc}"
    );
    assert!(
        loc.contains("error=invalid_request") && loc.contains("state=s1"),
        "{loc}"
    );
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Each forged or broken ID token from the real IdP is refused by pimgate's relying party,
/// with a page, and no code reaches the PIM.
async fn refused_id_token(mode: &str) {
    let w = start(Db::Sqlite, |_| {}).await;
    w.provision("alice", true).await;
    let cb = w.idp_callback("alice").await;
    w.tamper(mode).await;
    let landing = w.walk(&cb, "alice", Some(&w.pim.url)).await;
    assert!(
        !landing.url.starts_with(&w.pim.url),
        "{mode}: reached the PIM: {}",
        landing.url
    );
    landing.assert_page(StatusCode::BAD_REQUEST, "could not be verified");
}

#[tokio::test]
async fn nonce_mismatch_is_refused() {
    refused_id_token("nonce").await;
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    refused_id_token("wrong_iss").await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    refused_id_token("wrong_aud").await;
}

#[tokio::test]
async fn expired_id_token_is_refused() {
    refused_id_token("expired").await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    refused_id_token("alg_none").await;
}

#[tokio::test]
async fn hs256_keyed_with_the_idps_public_key_is_refused() {
    refused_id_token("hs256_pubkey").await;
}

#[tokio::test]
async fn a_key_the_idp_does_not_publish_is_refused() {
    refused_id_token("unknown_kid").await;
}

#[tokio::test]
async fn unknown_kid_after_the_idp_rotates_its_keys_is_fetched_and_the_login_succeeds() {
    let w = start(Db::Sqlite, |_| {}).await;
    w.provision("alice", true).await;
    assert_eq!(w.pim_login("alice").await.status, StatusCode::OK);
    let stats = |w: &World| {
        let url = format!("{}/__test/stats", w.idp.url);
        async move {
            get_json(&reqwest::Client::new(), &url).await.1["jwks_fetches"]
                .as_i64()
                .unwrap()
        }
    };
    let before = stats(&w).await;
    let r = reqwest::Client::new()
        .post(format!("{}/__test/rotate", w.idp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // A fresh sign-in at the IdP (the pimgate session would otherwise answer at once).
    let landing = w
        .walk(&format!("{}/login?prompt=login", w.pim.url), "alice", None)
        .await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(
        stats(&w).await,
        before + 1,
        "one JWKS fetch for the new key"
    );
}

#[tokio::test]
async fn unregistered_redirect_uris_and_open_redirects_get_a_page_never_a_redirect() {
    let w = start(Db::Sqlite, |_| {}).await;
    let registered = format!("{}/callback", w.pim.url);
    for bad in [
        "https://evil.example/callback".to_owned(),
        format!("{registered}/../evil"),
        format!("{registered}?next=https://evil.example"),
        format!("{registered}#x"),
        "//evil.example/callback".to_owned(),
        registered.to_uppercase(),
        String::new(),
    ] {
        let url = format!(
            "{}/oauth/authorize?response_type=code&client_id=pim&scope=openid&redirect_uri={}",
            w.issuer,
            urlencode(&bad)
        );
        let r = w.browser.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.headers().get("location").is_none(), "{bad}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    let r = w
        .browser
        .get(format!(
            "{}/oauth/authorize?response_type=code&client_id=nobody&scope=openid&redirect_uri={}",
            w.issuer,
            urlencode(&registered)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "unknown client");
    assert!(r.text().await.unwrap().contains("Unknown application"));
}

#[tokio::test]
async fn deactivated_user_is_refused() {
    let w = start(Db::Sqlite, |_| {}).await;
    let alice = w.provision("alice", true).await;
    w.set_active(&alice, false).await;
    let landing = w.pim_login("alice").await;
    landing.assert_page(StatusCode::FORBIDDEN, "deactivated");
}

#[tokio::test]
async fn unprovisioned_person_is_refused_or_created_just_in_time() {
    let w = start(Db::Sqlite, |_| {}).await;
    w.pim_login("bob")
        .await
        .assert_page(StatusCode::FORBIDDEN, "not been provisioned");
    drop(w);
    let w = start(Db::Sqlite, |s| {
        s.connections
            .get_mut("corp")
            .unwrap()
            .sso
            .as_mut()
            .unwrap()
            .unprovisioned = "create".into();
    })
    .await;
    let out = w.pim_login("bob").await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    let sub = out.json()["id_token_claims"]["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, user) = w
        .app
        .call_as(
            "corp-scim-token-0123456789",
            "corp",
            reqwest::Method::GET,
            &format!("/Users/{sub}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        user["externalId"], "bob",
        "SCIM can adopt the user by externalId"
    );
}

#[tokio::test]
async fn a_person_without_access_sees_a_page() {
    let w = start(Db::Sqlite, |_| {}).await;
    w.provision("carol", false).await;
    w.pim_login("carol")
        .await
        .assert_page(StatusCode::FORBIDDEN, "no access");
}

#[tokio::test]
async fn prompt_none_without_an_idp_session_answers_login_required_to_the_client() {
    let w = start(Db::Sqlite, |_| {}).await;
    w.provision("alice", true).await;
    let landing = w
        .walk(
            &w.authorize_url(&verifier(), &[("prompt", "none")]),
            "alice",
            Some(&w.pim.url),
        )
        .await;
    assert!(
        landing.url.contains("error=login_required"),
        "{}",
        landing.url
    );
    assert!(landing.url.contains("state=st-123"), "{}", landing.url);
}

#[tokio::test]
async fn several_connections_get_a_chooser_page_unless_the_hint_names_one() {
    let w = start(Db::Sqlite, |s| {
        let mut other = s.connections["corp"].sso.clone().unwrap();
        other.domains = vec!["other.example".into()];
        s.connections.get_mut("other").unwrap().sso = Some(other);
    })
    .await;
    let r = w
        .browser
        .get(w.authorize_url(&verifier(), &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("connection=corp") && page.contains("connection=other"),
        "{page}"
    );
    let r = w
        .browser
        .get(w.authorize_url(&verifier(), &[("login_hint", "alice@corp.example")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&w.idp.url)
    );
}

#[tokio::test]
async fn discovery_names_every_endpoint_and_the_token_endpoint_speaks_rfc_6749() {
    let w = start(Db::Sqlite, |_| {}).await;
    let (s, d) = get_json(
        &w.app.client,
        &format!("{}/.well-known/openid-configuration", w.issuer),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["issuer"], w.issuer);
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    let r = w
        .app
        .client
        .post(format!("{}/oauth/token", w.issuer))
        .basic_auth("pim", Some("wrong-secret"))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = w
        .app
        .client
        .post(format!("{}/oauth/token", w.issuer))
        .basic_auth("pim", Some(PIM_SECRET))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
}

/// Key rotation on the injected clock: a new key is published before it signs; a token
/// signed before a rotation verifies after it until it expires; the JWKS never drops a key
/// that signed a live token, and drops it once the last one has expired.
#[tokio::test]
async fn signing_key_rotation_keeps_live_tokens_verifiable() {
    use pimgate::clock::{Clock, ManualClock, Timestamp};
    use pimgate::oauth::tokens::{
        AccessClaims, AccessTokenClaims, seconds, sign, verify_access_token,
    };
    let clock = ManualClock::at(Timestamp(1_800_000_000_000));
    let db = TestDb::new(Db::Sqlite).await;
    let kek = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kek.path(), hex_key()).unwrap();
    let mut s = test_settings(&db);
    s.server.public_url = Some("http://127.0.0.1:9".into());
    s.connections.get_mut("other").unwrap().sso = Some(
        toml::from_str(
            r#"issuer = "http://127.0.0.1:9/idp"
client_id = "x""#,
        )
        .unwrap(),
    );
    s.oidc.key_encryption_key_file = Some(kek.path().to_path_buf());
    s.oidc.clients.insert(
        "pim".into(),
        config::OidcClientSettings {
            client_secret: Some(SecretString::from(PIM_SECRET)),
            redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
            ..Default::default()
        },
    );
    let v = config::validate(s).unwrap();
    let app = TestApp::start(db, v, Arc::new(clock.clone())).await;
    let keys = app.state.oidc.keys().clone();
    let iss = "http://127.0.0.1:9";
    let token = |now: Timestamp| AccessTokenClaims {
        iss: iss.into(),
        sub: "u".into(),
        aud: "pim".into(),
        exp: seconds(now) + 300,
        iat: seconds(now),
        auth_time: seconds(now),
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: "pim".into(),
        scope: "openid".into(),
        sid: "g".into(),
        access: AccessClaims {
            connection: "other".into(),
            roles: vec![],
            user_groups: vec![],
            permissions: String::new(),
            config_version: "v".into(),
        },
    };
    let kids = |jwks: serde_json::Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let kid_of = |t: &str| jwt_part(t, 0)["kid"].as_str().unwrap().to_owned();

    keys.maintain().await.unwrap();
    let first = sign(&keys, "at+jwt", &token(clock.now())).await.unwrap();
    let k1 = kid_of(&first);
    assert_eq!(kids(keys.jwks().await.unwrap()), vec![k1.clone()]);

    // Rotation: the new key is published at once but does not sign yet.
    clock.advance_millis(250_000);
    let k2 = keys.rotate(false).await.unwrap();
    assert_eq!(
        kids(keys.jwks().await.unwrap()),
        vec![k1.clone(), k2.clone()]
    );
    let late = sign(&keys, "at+jwt", &token(clock.now())).await.unwrap();
    assert_eq!(kid_of(&late), k1, "the new key waits for the publish lead");

    // After the lead the new key signs; tokens of the old one still verify until they expire.
    clock.advance_millis(600_000);
    let fresh = sign(&keys, "at+jwt", &token(clock.now())).await.unwrap();
    assert_eq!(kid_of(&fresh), k2);
    assert!(
        verify_access_token(&keys, iss, &fresh, clock.now())
            .await
            .is_ok()
    );
    clock.advance_millis(-600_000 + 40_000);
    assert!(
        verify_access_token(&keys, iss, &late, clock.now())
            .await
            .is_ok(),
        "a live token of the old key"
    );
    clock.advance_millis(600_000 - 40_000);

    // The old key stays published while any token it signed can be live (plus verifier
    // skew), then maintenance removes it.
    clock.advance_millis(500_000);
    keys.maintain().await.unwrap();
    assert!(
        kids(keys.jwks().await.unwrap()).contains(&k1),
        "still published"
    );
    clock.advance_millis(200_000);
    keys.maintain().await.unwrap();
    assert_eq!(
        kids(keys.jwks().await.unwrap()),
        vec![k2.clone()],
        "dropped after the last token expired"
    );
    assert!(
        verify_access_token(&keys, iss, &late, clock.now())
            .await
            .is_err()
    );

    // Scheduled rotation: a key is made before the rotation period ends.
    clock.advance_millis(30 * 86_400_000);
    keys.maintain().await.unwrap();
    assert_eq!(
        keys.list().await.unwrap().len(),
        2,
        "the next key is published ahead"
    );
    app.stop().await;
}

#[tokio::test]
async fn oversized_token_requests_are_refused_before_they_are_read() {
    let w = start(Db::Sqlite, |_| {}).await;
    let r = w
        .app
        .client
        .post(format!("{}/oauth/token", w.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&code={}",
            "a".repeat(200_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// Entra's overage marker is never read as "no groups": the SCIM groups apply, and
/// `explain` says so for the last sign-in.
#[tokio::test]
async fn group_overage_falls_back_to_scim_groups_and_explain_says_so() {
    let w = start(Db::Sqlite, |_| {}).await;
    let alice = w.provision("alice", true).await;
    let v = verifier();
    let cb = w
        .walk(
            &w.authorize_url(&v, &[]),
            "alice",
            Some(&format!("{}/sso/", w.issuer)),
        )
        .await
        .url;
    w.tamper("overage").await;
    let landing = w.walk(&cb, "alice", Some(&w.pim.url)).await;
    let u = reqwest::Url::parse(&landing.url).unwrap();
    let code = u
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let (s, tokens) = w.redeem(&code, Some(&v)).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    assert_eq!(
        jwt_part(tokens["id_token"].as_str().unwrap(), 1)["roles"],
        json!([EDITOR_ROLE])
    );
    let stores = pimgate::directory::Stores::of(Arc::new(w.app.running().store().clone()));
    let conn = pimgate::connections::ConnectionId::parse("corp").unwrap();
    let text =
        pimgate::access::admin::explain(&stores, w.app.state.access.model(), &conn, &alice, false)
            .await
            .unwrap();
    assert!(text.contains("overage"), "{text}");
    assert!(
        text.contains("Editor"),
        "SCIM groups grant the role: {text}"
    );
}

#[tokio::test]
async fn an_unreachable_idp_is_a_page_and_later_sign_ins_fail_fast() {
    let w = start(Db::Sqlite, |s| {
        s.connections
            .get_mut("corp")
            .unwrap()
            .sso
            .as_mut()
            .unwrap()
            .issuer = "http://127.0.0.1:1".into();
    })
    .await;
    for _ in 0..2 {
        let r = w
            .browser
            .get(w.authorize_url(&verifier(), &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(r.text().await.unwrap().contains("cannot be reached"));
    }
}

#[tokio::test]
async fn eddsa_tokens_verify_at_the_stock_client() {
    let w = start(Db::Sqlite, |s| s.oidc.signing_alg = "EdDSA".into()).await;
    w.provision("alice", true).await;
    let landing = w.pim_login("alice").await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    let out = landing.json();
    assert_eq!(
        jwt_part(out["id_token"].as_str().unwrap(), 0)["alg"],
        "EdDSA"
    );
    assert_eq!(out["userinfo"]["roles"][0]["id"], EDITOR_ROLE);
}

impl World {
    pub(crate) async fn client_post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let r = self
            .app
            .client
            .post(format!("{}{path}", self.issuer))
            .basic_auth("pim", Some(PIM_SECRET))
            .form(form)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn introspect(&self, token: &str) -> Value {
        let (s, v) = self
            .client_post("/oauth/introspect", &[("token", token)])
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Alice signed in: her tokens.
    pub(crate) async fn signed_in(&self) -> (String, Value) {
        let alice = self.provision("alice", true).await;
        let v = verifier();
        let code = self.code("alice", &v).await;
        let (s, tokens) = self.redeem(&code, Some(&v)).await;
        assert_eq!(s, StatusCode::OK, "{tokens}");
        (alice, tokens)
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_grant() {
    let w = start(Db::Sqlite, |_| {}).await;
    let (_, tokens) = w.signed_in().await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (s, next) = w.refresh(&first).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    let second = next["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second, "rotated");
    let (s, err) = w.refresh(&first).await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (s, _) = w.refresh(&second).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "the reuse revoked the whole grant"
    );
    assert_eq!(
        w.introspect(next["access_token"].as_str().unwrap()).await["active"],
        false
    );
}

#[tokio::test]
async fn introspection_and_revocation_follow_the_grant() {
    let w = start(Db::Sqlite, |_| {}).await;
    let (alice, tokens) = w.signed_in().await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    let a = w.introspect(at).await;
    assert_eq!(
        (
            a["active"].as_bool(),
            a["sub"].as_str(),
            a["client_id"].as_str()
        ),
        (Some(true), Some(alice.as_str()), Some("pim"))
    );
    assert_eq!(w.introspect(rt).await["token_type"], "refresh_token");
    assert_eq!(w.introspect("pgr_not-a-token").await["active"], false);
    let (s, _) = w.client_post("/oauth/revoke", &[("token", at)]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(w.introspect(at).await["active"], false);
    assert_eq!(
        w.introspect(rt).await["active"],
        false,
        "revoking the access token ends its grant"
    );
    assert_eq!(w.refresh(rt).await.0, StatusCode::BAD_REQUEST);
    let (s, _) = w
        .client_post("/oauth/revoke", &[("token", "unknown")])
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "RFC 7009: unknown tokens are not an error"
    );
}

#[tokio::test]
async fn scim_deactivation_revokes_sign_ins_before_the_scim_response() {
    let w = start(Db::Postgres, |_| {}).await;
    let (alice, tokens) = w.signed_in().await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(w.introspect(at).await["active"], true);
    w.set_active(&alice, false).await;
    assert_eq!(w.introspect(at).await["active"], false);
    assert_eq!(w.introspect(rt).await["active"], false);
    assert_eq!(w.refresh(rt).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(w.userinfo(at).await.0, StatusCode::UNAUTHORIZED);
    // Reactivation does not bring the old sign-in back.
    w.set_active(&alice, true).await;
    assert_eq!(w.refresh(rt).await.0, StatusCode::BAD_REQUEST);
    w.app.stop().await;
}

/// The OpenID provider's discovery document is a contract: a change shows as a reviewed
/// snapshot diff.
#[tokio::test]
async fn openid_configuration_contract() {
    let w = start(Db::Sqlite, |_| {}).await;
    let (s, mut d) = get_json(
        &w.app.client,
        &format!("{}/.well-known/openid-configuration", w.issuer),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // The issuer's port is the test's own: replace it with a stable name.
    let text = d.to_string().replace(&w.issuer, "https://pimgate.example");
    d = serde_json::from_str(&text).unwrap();
    insta::assert_json_snapshot!("openid_configuration", d);
}
