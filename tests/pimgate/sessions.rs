//! Sessions that end when they should, end to end against the real IdP (`oidc-provider`)
//! and the stock `openid-client` PIM stand-in: one sign-in serving a second client, lifetimes
//! on the injected clock, RP-initiated logout through to the IdP, back-channel logout from
//! the IdP through pimgate to the PIM, refused logout tokens, deprovisioning seen by a second
//! replica at once, and deprovisioning with Redis stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{Db, OwnRedis, Process, redis_url};
use crate::sso::{
    IDP_SECRET, MODEL, PIM_SECRET, World, jwt_part, start, start_clocked, start_for_processes,
    verifier,
};
use pimgate::clock::{Clock, ManualClock, SystemClock};

/// The first redirect `url` answers, without following it (the browser's cookies sent).
async fn first_hop(w: &World, url: &str) -> String {
    let r = w.browser.get(url).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}: {}", url, r.status());
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Redeems a code for the public `wiki` client.
async fn redeem_wiki(w: &World, code: &str, verifier: &str) -> (StatusCode, Value) {
    let redirect = format!("{}/callback", w.pim.url);
    let r = w
        .app
        .client
        .post(format!("{}/oauth/token", w.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect),
            ("code_verifier", verifier),
            ("client_id", "wiki"),
        ])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn pim_logouts(w: &World) -> Vec<Value> {
    let r = reqwest::get(format!("{}/__test/logouts", w.pim.url))
        .await
        .unwrap();
    r.json::<Vec<Value>>().await.unwrap()
}

/// Waits (up to 15 s) until the PIM stand-in has accepted a logout token for `sid`.
async fn pim_logout_for(w: &World, sid: &str) -> Value {
    for _ in 0..150 {
        if let Some(l) = pim_logouts(w).await.into_iter().find(|l| l["sid"] == sid) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the PIM stand-in got no back-channel logout for {sid}: {:?}",
        pim_logouts(w).await
    );
}

async fn logout_token(w: &World, body: Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/__test/logout-token", w.idp.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["logout_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post_logout_token(w: &World, token: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/sso/corp/backchannel-logout", w.issuer))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

fn redis_tune(prefix: &str) -> impl FnOnce(&mut pimgate::config::Settings) + use<> {
    let p = prefix.to_owned();
    move |s| {
        s.redis.url = Some(SecretString::from(redis_url()));
        s.redis.key_prefix = p;
    }
}

fn prefix() -> String {
    format!("pimgate-test-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn a_second_client_signs_in_from_the_session_without_the_idp() {
    let w = start(Db::Sqlite, |_| {}).await;
    let (alice, tokens) = w.signed_in().await;
    let pim_sid = jwt_part(tokens["id_token"].as_str().unwrap(), 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned();

    // The wiki: pimgate answers with a code at once (no trip to the IdP).
    let v = verifier();
    let url = w.authorize_url(&v, &[("client_id", "wiki")]);
    let hop = first_hop(&w, &url).await;
    assert!(hop.starts_with(&w.pim.url), "not straight back: {hop}");
    let code = query_param(&hop, "code").expect("a code");
    let (s, wiki) = redeem_wiki(&w, &code, &v).await;
    assert_eq!(s, StatusCode::OK, "{wiki}");
    let id = jwt_part(wiki["id_token"].as_str().unwrap(), 1);
    assert_eq!(id["sub"], alice);
    assert_eq!(id["aud"], "wiki");
    assert_ne!(id["sid"], pim_sid.as_str(), "one sign-in per client");
    assert!(
        wiki.get("refresh_token").is_none(),
        "a public client gets none"
    );

    // prompt=login goes to the IdP even with a session.
    let url = w.authorize_url(&verifier(), &[("client_id", "wiki"), ("prompt", "login")]);
    let hop = first_hop(&w, &url).await;
    assert!(
        hop.starts_with(&w.idp.url),
        "prompt=login must reach the IdP: {hop}"
    );

    // A deactivated person's session signs no one in.
    w.set_active(&alice, false).await;
    let url = w.authorize_url(&verifier(), &[("client_id", "wiki")]);
    let hop = first_hop(&w, &url).await;
    assert!(
        hop.starts_with(&w.idp.url),
        "the session ended with the deactivation: {hop}"
    );
}

#[tokio::test]
async fn idle_and_absolute_lifetimes_end_refresh_tokens_and_sessions() {
    let clock = ManualClock::at(SystemClock.now());
    let w = start_clocked(Db::Sqlite, Arc::new(clock.clone()), |s| {
        s.oidc.refresh_token_idle_seconds = 600;
        s.oidc.refresh_token_ttl_seconds = 3600;
        s.oidc.session_idle_seconds = 900;
        s.oidc.session_max_seconds = 1800;
    })
    .await;
    let (_, tokens) = w.signed_in().await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Used within the idle lifetime, it keeps working; unused past it, it stops.
    clock.advance_millis(500_000);
    let (s, next) = w.refresh(&rt).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    let rt = next["refresh_token"].as_str().unwrap().to_owned();
    clock.advance_millis(601_000);
    assert_eq!(w.introspect(&rt).await["active"], false, "idle");
    let (s, err) = w.refresh(&rt).await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // The session was last used by the refresh at 500 s; 901 s later it is idle: a new
    // client goes to the IdP.
    clock.advance_millis(300_000);
    let url = w.authorize_url(&verifier(), &[("client_id", "wiki")]);
    let hop = first_hop(&w, &url).await;
    assert!(hop.starts_with(&w.idp.url), "idle session: {hop}");

    // A fresh session, kept busy, still ends at its absolute lifetime (1,800 s).
    let v = verifier();
    let code = w.code("alice", &v).await;
    let (s, t) = w.redeem(&code, Some(&v)).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let mut rt = t["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        clock.advance_millis(550_000);
        let (s, n) = w.refresh(&rt).await;
        assert_eq!(s, StatusCode::OK, "{n}");
        rt = n["refresh_token"].as_str().unwrap().to_owned();
        let url = w.authorize_url(&verifier(), &[("client_id", "wiki")]);
        let hop = first_hop(&w, &url).await;
        assert!(hop.starts_with(&w.pim.url), "busy session lives: {hop}");
    }
    clock.advance_millis(200_000); // 1,850 s after the sign-in
    let url = w.authorize_url(&verifier(), &[("client_id", "wiki")]);
    let hop = first_hop(&w, &url).await;
    assert!(
        hop.starts_with(&w.idp.url),
        "past its absolute lifetime: {hop}"
    );
    // Ending it at its absolute end revoked its sign-ins too.
    assert_eq!(w.introspect(&rt).await["active"], false);
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_session_here_and_at_the_idp() {
    let prefix = prefix();
    let w = start(Db::Postgres, redis_tune(&prefix)).await;
    let (alice, tokens) = w.signed_in().await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let sid = jwt_part(id_token, 1)["sid"].as_str().unwrap().to_owned();
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let at = tokens["access_token"].as_str().unwrap().to_owned();

    // The PIM stand-in sends the browser to pimgate's end_session_endpoint (from
    // discovery, with openid-client's buildEndSessionUrl); pimgate ends the session, sends
    // the browser through the IdP's own logout, and back to the PIM.
    let url = format!("{}/logout?id_token_hint={id_token}&state=bye-1", w.pim.url);
    let landing = w.walk(&url, "alice", None).await;
    assert_eq!(
        landing.status,
        StatusCode::OK,
        "{}: {}",
        landing.url,
        landing.body
    );
    assert!(
        landing
            .url
            .starts_with(&format!("{}/logged-out", w.pim.url)),
        "{}",
        landing.url
    );
    assert_eq!(landing.json()["state"], "bye-1");

    // Nothing of the session works any more.
    assert_eq!(w.introspect(&rt).await["active"], false);
    assert_eq!(w.introspect(&at).await["active"], false);
    let (s, err) = w.refresh(&rt).await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (s, _) = w.userinfo(&at).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The PIM heard about it over the back channel too.
    let l = pim_logout_for(&w, &sid).await;
    assert_eq!(l["sub"], alice);

    // The IdP's session ended as well: a silent sign-in comes back login_required.
    let url = w.authorize_url(&verifier(), &[("prompt", "none")]);
    let landing = w.walk(&url, "alice", Some(&w.pim.url)).await;
    assert_eq!(
        query_param(&landing.url, "error").as_deref(),
        Some("login_required"),
        "{}",
        landing.url
    );

    // A post-logout URI the client did not register is never followed.
    let bad = format!(
        "{}/oauth/logout?id_token_hint={id_token}&post_logout_redirect_uri=https://evil.example/",
        w.issuer
    );
    let landing = w.walk(&bad, "alice", None).await;
    landing.assert_page(StatusCode::BAD_REQUEST, "sign-out link is not valid");
    w.app.stop().await;
    crate::helpers::delete_redis_prefix(&prefix).await;
}

#[tokio::test]
async fn a_backchannel_logout_from_the_idp_ends_the_session_and_reaches_the_pim() {
    let w = start(Db::Sqlite, |_| {}).await;
    let (alice, tokens) = w.signed_in().await;
    let sid = jwt_part(tokens["id_token"].as_str().unwrap(), 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();

    // The person signs out at the IdP itself; the IdP tells pimgate over the back channel.
    let landing = w
        .walk(&format!("{}/session/end", w.idp.url), "alice", None)
        .await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);

    let l = pim_logout_for(&w, &sid).await;
    assert_eq!(l["sub"], alice);
    assert_eq!(w.introspect(&rt).await["active"], false);
    let (s, _) = w.refresh(&rt).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The pimgate session is gone: a new client sign-in goes to the IdP.
    let url = w.authorize_url(&verifier(), &[("client_id", "wiki")]);
    let hop = first_hop(&w, &url).await;
    assert!(hop.starts_with(&w.idp.url), "{hop}");
}

#[tokio::test]
async fn forged_replayed_or_misaddressed_logout_tokens_are_refused() {
    let w = start(Db::Sqlite, |_| {}).await;
    let (_, tokens) = w.signed_in().await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let now = SystemClock.now().0 / 1000;

    let cases = [
        (
            "forged signature",
            json!({"aud": "pimgate", "sub": "alice", "forge": true}),
        ),
        (
            "wrong audience",
            json!({"aud": "someone-else", "sub": "alice"}),
        ),
        (
            "wrong issuer",
            json!({"aud": "pimgate", "sub": "alice", "claims": {"iss": "http://evil.example"}}),
        ),
        (
            "a nonce",
            json!({"aud": "pimgate", "sub": "alice", "claims": {"nonce": "n"}}),
        ),
        (
            "no logout event",
            json!({"aud": "pimgate", "sub": "alice", "claims": {"events": {}}}),
        ),
        ("neither sid nor sub", json!({"aud": "pimgate"})),
        (
            "no jti",
            json!({"aud": "pimgate", "sub": "alice", "claims": {"jti": null}}),
        ),
        (
            "expired",
            json!({"aud": "pimgate", "sub": "alice", "claims": {"iat": now - 7200, "exp": now - 3600}}),
        ),
    ];
    for (what, body) in cases {
        let token = logout_token(&w, body).await;
        let (s, err) = post_logout_token(&w, &token).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {err}");
        assert_eq!(err["error"], "invalid_request", "{what}: {err}");
    }
    let (s, err) = post_logout_token(&w, "").await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    // None of them ended anything.
    assert_eq!(w.introspect(&rt).await["active"], true);

    // A good one (by the IdP subject) ends the session, once; its replay is refused.
    let token = logout_token(&w, json!({"aud": "pimgate", "sub": "alice"})).await;
    let (s, body) = post_logout_token(&w, &token).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(w.introspect(&rt).await["active"], false);
    let (s, err) = post_logout_token(&w, &token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "replay: {err}");
    assert!(
        err["error_description"].as_str().unwrap().contains("jti"),
        "{err}"
    );
}

/// The pimgate.toml of a second replica of `w`: same connection, clients, access model,
/// key-encryption key and Redis prefix (the database comes from the environment).
pub(crate) fn replica_config(w: &World, prefix: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let idp = &w.idp.url;
    let pim = &w.pim.url;
    std::fs::write(
        f.path(),
        format!(
            r#"
[server]
public_url = "{issuer}"

[redis]
url = "{redis}"
key_prefix = "{prefix}"

[connections.corp]
scim_token = "corp-scim-token-0123456789"

[connections.corp.sso]
issuer = "{idp}"
client_id = "pimgate"
client_secret = "{IDP_SECRET}"
scopes = ["openid", "email", "profile", "groups"]
domains = ["corp.example"]

[oidc]
key_encryption_key_file = "{kek}"

[oidc.clients.pim]
client_secret = "{PIM_SECRET}"
redirect_uris = ["{pim}/callback"]
post_logout_redirect_uris = ["{pim}/logged-out"]
backchannel_logout_uri = "{pim}/backchannel-logout"

[oidc.clients.wiki]
redirect_uris = ["{pim}/callback"]

[access]
{model}
"#,
            issuer = w.issuer,
            redis = redis_url(),
            kek = w.kek.path().display(),
            model = MODEL
                .replace("[roles.", "[access.roles.")
                .replace("[user_groups.", "[access.user_groups.")
                .replace("[connections.", "[access.connections.")
                .replace("[[connections.", "[[access.connections."),
        ),
    )
    .unwrap();
    f
}

#[tokio::test]
async fn deprovisioning_through_one_replica_is_seen_by_the_other_at_once() {
    let prefix = prefix();
    let (w, a_listen) = start_for_processes(Db::Postgres, redis_tune(&prefix)).await;
    let cfg = replica_config(&w, &prefix);
    // Two `pimgate serve` processes on one PostgreSQL and one Redis: A at the issuer's
    // address, B anywhere.
    let a = Process::start_on(cfg.path(), &w.app.db().url, Some(&redis_url()), &a_listen);
    assert_eq!(a.base, w.issuer);
    let b = Process::start(cfg.path(), &w.app.db().url, Some(&redis_url()));

    // Signed in through replica A.
    let (alice, tokens) = w.signed_in().await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let at = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(w.introspect(&rt).await["active"], true);

    // Replica B verifies A's access token with its own view of the keys and grants.
    let rb = reqwest::Client::new()
        .post(format!("{}/oauth/introspect", b.base))
        .basic_auth("pim", Some(PIM_SECRET))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(rb.json::<Value>().await.unwrap()["active"], true);

    // Deactivated over SCIM through B.
    let r = reqwest::Client::new()
        .patch(format!("{}/scim/corp/v2/Users/{alice}", b.base))
        .bearer_auth("corp-scim-token-0123456789")
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let answered = Instant::now();

    // Through A: refused and inactive. Measured from B's SCIM response.
    let mut revoked_after = None;
    for _ in 0..100 {
        if w.introspect(&rt).await["active"] == false {
            revoked_after = Some(answered.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let revoked_after = revoked_after.expect("replica A still says active after 1 s");
    println!(
        "deprovisioning: SCIM response on replica B to revocation seen on replica A: {:.1} ms",
        revoked_after.as_secs_f64() * 1000.0
    );
    assert_eq!(w.introspect(&at).await["active"], false);
    let (s, err) = w.refresh(&rt).await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    drop((a, b));
    w.app.stop().await;
    crate::helpers::delete_redis_prefix(&prefix).await;
}

#[tokio::test]
async fn with_redis_stopped_introspection_and_refresh_still_refuse_the_deprovisioned() {
    let redis = OwnRedis::start();
    let url = redis.url();
    let w = start(Db::Postgres, move |s| {
        s.redis.url = Some(SecretString::from(url));
        s.redis.key_prefix = "pimgate-own".into();
    })
    .await;
    let (alice, tokens) = w.signed_in().await;
    // A second person, who stays active (signed in afresh at the IdP: prompt=login).
    w.provision("bob", true).await;
    let v = verifier();
    let url = w.authorize_url(&v, &[("prompt", "login")]);
    let landing = w.walk(&url, "bob", Some(&w.pim.url)).await;
    let code = query_param(&landing.url, "code").expect("a code for bob");
    let (s, bob_tokens) = w.redeem(&code, Some(&v)).await;
    assert_eq!(s, StatusCode::OK, "{bob_tokens}");
    assert_ne!(
        jwt_part(bob_tokens["id_token"].as_str().unwrap(), 1)["sub"],
        alice
    );
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let at = tokens["access_token"].as_str().unwrap().to_owned();
    let stopped = redis.stop();

    // Deactivated while Redis is down: the store decides.
    w.set_active(&alice, false).await;
    assert_eq!(w.introspect(&rt).await["active"], false);
    assert_eq!(w.introspect(&at).await["active"], false);
    let (s, err) = w.refresh(&rt).await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Bob is still signed in, Redis or not.
    let bob_rt = bob_tokens["refresh_token"].as_str().unwrap();
    assert_eq!(w.introspect(bob_rt).await["active"], true);
    let (s, next) = w.refresh(bob_rt).await;
    assert_eq!(s, StatusCode::OK, "refresh needs no Redis: {next}");
    w.app.stop().await;
    drop(stopped);
}

#[tokio::test]
async fn the_audit_trail_answers_for_a_user() {
    let w = start(Db::Postgres, |_| {}).await;
    let (alice, tokens) = w.signed_in().await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (s, next) = w.refresh(&rt).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    let (s, _) = w.refresh(&rt).await; // reused: refused, and the sign-in revoked
    assert_eq!(s, StatusCode::BAD_REQUEST);
    w.set_active(&alice, false).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // audit writes run beside requests

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pimgate"))
        .args(["audit", "--user", &alice])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PIMGATE_DATABASE_URL", &w.app.db().url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds: Vec<(&str, &str)> = text
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            f.next();
            (f.next().unwrap(), f.next().unwrap())
        })
        .collect();
    for want in [
        ("login", "ok"),
        ("refresh", "ok"),
        ("refresh", "refused"),
        ("logout", "ok"),
    ] {
        assert!(kinds.contains(&want), "{want:?} not in:\n{text}");
    }
    assert!(text.contains("client=pim"), "{text}");
    assert!(text.contains("deprovisioned: deactivated"), "{text}");
    w.app.stop().await;
}

#[tokio::test]
async fn a_logout_without_a_hint_asks_first_and_max_age_sends_the_person_to_the_idp() {
    let w = start(Db::Sqlite, |_| {}).await;
    let (_, tokens) = w.signed_in().await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();

    // max_age=0: the session is too old for this request; the IdP authenticates again.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let url = w.authorize_url(&verifier(), &[("client_id", "wiki"), ("max_age", "0")]);
    let hop = first_hop(&w, &url).await;
    assert!(hop.starts_with(&w.idp.url), "max_age=0: {hop}");

    // A bare link to /oauth/logout (which any page could send the browser to) only asks.
    let r = w
        .browser
        .get(format!("{}/oauth/logout", w.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Sign out?") && page.contains("method=\"post\""),
        "{page}"
    );
    assert!(
        page.contains(&format!("action=\"{}/oauth/logout\"", w.issuer)),
        "{page}"
    );
    assert_eq!(w.introspect(&rt).await["active"], true, "nothing ended yet");

    // Confirmed (a same-site POST): the session ends, then on to the IdP's own logout.
    let r = w
        .browser
        .post(format!("{}/oauth/logout", w.issuer))
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let to = r.headers()["location"].to_str().unwrap();
    assert!(to.starts_with(&w.idp.url), "{to}");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("pimgate_session=; "),
        "the session cookie is cleared"
    );
    assert_eq!(w.introspect(&rt).await["active"], false);
}
