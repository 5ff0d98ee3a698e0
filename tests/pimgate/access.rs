//! SCIM → claims, end to end: real servers, real PostgreSQL or SQLite, real Redis or the
//! in-process cache. Freshness is checked on the very next read after each change.

use std::sync::Arc;

use pimgate::access::model::AccessConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ACCESS_TOKEN, Db, TOKEN, TestApp, patch_op};

/// The access model the tests run with: a viewer default, editors by group name, an
/// attribute rule on the enterprise department, and two user groups that overlap.
pub const ACCESS: &str = r#"
dimensions = ["market"]

[roles.viewer]
id = "9b0e4a52-0000-4000-8000-000000000001"
name = "Viewer"
permissions = ["products.view"]

[roles.editor]
id = "9b0e4a52-0000-4000-8000-000000000002"
name = "Editor"
permissions = ["products.view", "products.create", "products.delete"]

[user_groups.denmark]
id = "9b0e4a52-0000-4000-8000-0000000000a1"
name = "Denmark"
languages = { edit = ["da"], read = ["en"] }
default_dashboard = "dk-dashboard"
dashboard_priority = 20
[user_groups.denmark.segments.market]
edit = ["dk"]
read = []

[user_groups.marketing]
id = "9b0e4a52-0000-4000-8000-0000000000a2"
name = "Marketing"
languages = { edit = ["en"], read = [] }
[user_groups.marketing.segments.market]
edit = []
read = ["dk", "se"]

[connections.default]
token_groups = "ignore"
on_no_match = { roles = ["viewer"], user_groups = [] }

[[connections.default.rules]]
name = "editors"
group_name = "PIM Editors"
roles = ["editor"]
user_groups = ["denmark"]

[[connections.default.rules]]
name = "marketing-department"
attribute = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
equals = "Marketing"
user_groups = ["marketing"]
"#;

pub fn access_config(text: &str) -> AccessConfig {
    toml::from_str(text).unwrap()
}

/// Spawns an app with the test access model, on Redis (a key prefix of its own) or in process.
pub async fn spawn(db: Db, redis: bool) -> TestApp {
    spawn_with_model(db, redis, ACCESS).await
}

async fn claims(app: &TestApp, user: &str) -> (Value, String) {
    let resp = app
        .client
        .get(format!(
            "http://{}/access/v1/connections/default/users/{user}/claims",
            app.addr
        ))
        .bearer_auth(ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cache = resp.headers()["x-claims-cache"]
        .to_str()
        .unwrap()
        .to_owned();
    (resp.json().await.unwrap(), cache)
}

fn keys(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_owned())
        .collect()
}

fn perms(v: &Value) -> Vec<String> {
    v["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

async fn membership_changes_reach_claims(app: TestApp) {
    let u = app.user("ann@example.com").await;
    let other = app.user("bob@example.com").await;
    let g = app.group("PIM Editors", &[&u, &other]).await;

    let (c, cache) = claims(&app, &u).await;
    assert_eq!(cache, "miss");
    assert_eq!(keys(&c, "roles"), vec!["editor"]);
    assert!(perms(&c).contains(&"products.delete".to_owned()));
    let (_, cache) = claims(&app, &u).await;
    assert_eq!(cache, "hit", "the second read is served from the cache");

    // Entra's remove-with-value-list form: only `u` leaves the group.
    let (s, body) = app
        .patch(
            &format!("/Groups/{g}"),
            patch_op(json!([{"op": "Remove", "path": "members", "value": [{"value": u}]}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (c, cache) = claims(&app, &u).await;
    assert_eq!(cache, "miss", "the change invalidated the cached claims");
    assert_eq!(keys(&c, "roles"), vec!["viewer"], "{c}");
    assert!(!perms(&c).contains(&"products.delete".to_owned()));
    let (c, _) = claims(&app, &other).await;
    assert_eq!(
        keys(&c, "roles"),
        vec!["editor"],
        "the other member keeps the role"
    );

    // Nested: a group inside "PIM Editors" grants through it.
    let nested = app.group("Editors Denmark", &[&u]).await;
    let (s, body) = app
        .patch(
            &format!("/Groups/{g}"),
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": nested}]}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (c, _) = claims(&app, &u).await;
    assert_eq!(keys(&c, "roles"), vec!["editor"], "{c}");

    // A rename away from the matched name removes the grant from every member.
    let (s, _) = app
        .patch(
            &format!("/Groups/{g}"),
            patch_op(json!([{"op": "replace", "value": {"displayName": "Former Editors"}}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for user in [&u, &other] {
        let (c, _) = claims(&app, user).await;
        assert_eq!(keys(&c, "roles"), vec!["viewer"], "{c}");
    }
    app.stop().await;
}

#[tokio::test]
async fn membership_changes_reach_claims_in_process_cache() {
    membership_changes_reach_claims(spawn(Db::Sqlite, false).await).await;
}

#[tokio::test]
async fn membership_changes_reach_claims_redis_cache() {
    membership_changes_reach_claims(spawn(Db::Postgres, true).await).await;
}

/// Entra matches groups by object id (`externalId`): when a group's `externalId` changes,
/// its members' claims change on the very next read, with no rule on group names.
async fn group_external_id_change_changes_claims_on_the_next_read(app: TestApp) {
    let u = app.user("eve@example.com").await;
    let (s, body) = app
        .post(
            "/Groups",
            json!({"schemas": [crate::helpers::GROUP_URN], "displayName": "Editors",
                   "externalId": "0b1c-entra-object-1", "members": [{"value": u}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let g = body["id"].as_str().unwrap().to_owned();
    let (c, _) = claims(&app, &u).await;
    assert_eq!(keys(&c, "roles"), vec!["editor"], "{c}");
    let (_, cache) = claims(&app, &u).await;
    assert_eq!(cache, "hit");

    let (s, body) = app
        .patch(
            &format!("/Groups/{g}"),
            patch_op(
                json!([{"op": "replace", "path": "externalId", "value": "0b1c-entra-object-2"}]),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (c, cache) = claims(&app, &u).await;
    assert_eq!(
        cache, "miss",
        "the externalId change invalidated the member's claims"
    );
    assert_eq!(keys(&c, "roles"), vec!["viewer"], "{c}");
    app.stop().await;
}

/// The access model of [`group_external_id_change_changes_claims_on_the_next_read`]: one
/// rule, on a group's object id.
const BY_OBJECT_ID: &str = r#"
[roles.viewer]
id = "9b0e4a52-0000-4000-8000-000000000001"
name = "Viewer"
permissions = ["products.view"]

[roles.editor]
id = "9b0e4a52-0000-4000-8000-000000000002"
name = "Editor"
permissions = ["products.view", "products.create"]

[connections.default]
on_no_match = { roles = ["viewer"], user_groups = [] }

[[connections.default.rules]]
name = "editors-by-object-id"
group_external_id = "0b1c-entra-object-1"
roles = ["editor"]
"#;

async fn spawn_with_model(db: Db, redis: bool, model: &str) -> TestApp {
    TestApp::spawn_with(db, |s| {
        s.access = access_config(model);
        if redis {
            s.redis.url = Some(secrecy::SecretString::from(crate::helpers::redis_url()));
            s.redis.key_prefix = format!("pimgate-test-{}", uuid::Uuid::new_v4().simple());
        }
    })
    .await
}

#[tokio::test]
async fn group_external_id_change_changes_claims_on_the_next_read_in_process_cache() {
    let app = spawn_with_model(Db::Sqlite, false, BY_OBJECT_ID).await;
    group_external_id_change_changes_claims_on_the_next_read(app).await;
}

#[tokio::test]
async fn group_external_id_change_changes_claims_on_the_next_read_redis_cache() {
    let app = spawn_with_model(Db::Postgres, true, BY_OBJECT_ID).await;
    group_external_id_change_changes_claims_on_the_next_read(app).await;
}

async fn deactivation_removes_all_access(app: TestApp) {
    let u = app.user("dee@example.com").await;
    app.group("PIM Editors", &[&u]).await;
    let (c, _) = claims(&app, &u).await;
    assert_eq!(keys(&c, "roles"), vec!["editor"]);
    let (s, _) = app
        .patch(
            &format!("/Users/{u}"),
            patch_op(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (c, _) = claims(&app, &u).await;
    assert_eq!(c["active"], json!(false));
    assert!(
        keys(&c, "roles").is_empty() && keys(&c, "userGroups").is_empty(),
        "{c}"
    );
    assert!(perms(&c).is_empty(), "{c}");
    assert_eq!(c["access"]["languages"], json!({}));
    // Deleted users have no claims at all.
    let (s, _) = app.delete(&format!("/Users/{u}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let resp = app
        .client
        .get(format!(
            "http://{}/access/v1/connections/default/users/{u}/claims",
            app.addr
        ))
        .bearer_auth(ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn deactivation_removes_all_access_in_process_cache() {
    deactivation_removes_all_access(spawn(Db::Sqlite, false).await).await;
}

#[tokio::test]
async fn deactivation_removes_all_access_redis_cache() {
    deactivation_removes_all_access(spawn(Db::Postgres, true).await).await;
}

async fn config_reload_changes_claims_at_once(app: TestApp) {
    let u = app.user("rel@example.com").await;
    app.group("PIM Editors", &[&u]).await;
    let (c, _) = claims(&app, &u).await;
    assert!(perms(&c).contains(&"products.delete".to_owned()));
    let (_, cache) = claims(&app, &u).await;
    assert_eq!(cache, "hit");
    let before = c["configVersion"].clone();

    let text = ACCESS.replace(
        r#"permissions = ["products.view", "products.create", "products.delete"]"#,
        r#"permissions = ["products.view", "products.create"]"#,
    );
    let settings = pimgate::config::Settings {
        access: access_config(&text),
        ..Default::default()
    };
    let v = pimgate::config::validate(settings).unwrap();
    app.state.access.reload(v.access.clone()).await;

    let (c, cache) = claims(&app, &u).await;
    assert_eq!(cache, "miss");
    assert!(!perms(&c).contains(&"products.delete".to_owned()), "{c}");
    assert_ne!(c["configVersion"], before);
    app.stop().await;
}

#[tokio::test]
async fn config_reload_changes_claims_at_once_in_process_cache() {
    config_reload_changes_claims_at_once(spawn(Db::Sqlite, false).await).await;
}

#[tokio::test]
async fn config_reload_changes_claims_at_once_redis_cache() {
    config_reload_changes_claims_at_once(spawn(Db::Postgres, true).await).await;
}

#[tokio::test]
async fn attribute_rules_and_overlapping_user_groups() {
    let app = spawn(Db::Sqlite, false).await;
    let (s, body) = app
        .post(
            "/Users",
            json!({
                "userName": "mia@example.com",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Marketing"}
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let u = body["id"].as_str().unwrap().to_owned();
    app.group("PIM Editors", &[&u]).await;
    let (c, _) = claims(&app, &u).await;
    assert_eq!(keys(&c, "userGroups"), vec!["denmark", "marketing"]);
    // en: read in denmark, edit in marketing → edit. dk: edit and read → edit; se: read.
    assert_eq!(
        c["access"]["languages"],
        json!({"da": "edit", "en": "edit"})
    );
    assert_eq!(
        c["access"]["segments"]["market"],
        json!({"dk": "edit", "se": "read"})
    );
    assert_eq!(c["defaultDashboard"], json!("dk-dashboard"));
    assert!(c.get("provenance").is_none(), "provenance only on explain");

    let resp = app
        .client
        .get(format!(
            "http://{}/access/v1/connections/default/claims?userName=MIA@example.com&explain=true",
            app.addr
        ))
        .bearer_auth(ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let explained: Value = resp.json().await.unwrap();
    assert!(explained["provenance"].is_object(), "{explained}");
    let text = explained["provenance"].to_string();
    assert!(
        text.contains("marketing-department") && text.contains("PIM Editors"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_access_api_takes_only_its_own_credential() {
    let app = spawn(Db::Sqlite, false).await;
    let u = app.user("sec@example.com").await;
    let url = format!(
        "http://{}/access/v1/connections/default/users/{u}/claims",
        app.addr
    );
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "a SCIM token is not an access credential"
    );
    let resp = app
        .client
        .get(format!(
            "http://{}/access/v1/connections/nosuch/users/{u}/claims",
            app.addr
        ))
        .bearer_auth(ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // And the access credential cannot use SCIM.
    let (s, _) = app
        .call_as(
            ACCESS_TOKEN,
            "default",
            reqwest::Method::GET,
            "/Users",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Stops Redis mid-run: claims are still served (from the store), and the cache is used again
/// once Redis is back. The breaker's retry interval passes on the injected clock.
#[tokio::test]
async fn redis_outage_falls_back_to_the_store() {
    let redis = crate::helpers::OwnRedis::start();
    let url = redis.url();
    let db = crate::helpers::TestDb::new(Db::Sqlite).await;
    let mut settings = crate::helpers::test_settings(&db);
    settings.access = access_config(ACCESS);
    settings.redis.url = Some(secrecy::SecretString::from(url));
    let clock = pimgate::clock::ManualClock::at(pimgate::clock::Timestamp(1_700_000_000_000));
    let v = pimgate::config::validate(settings).unwrap();
    let app = TestApp::start(db, v, std::sync::Arc::new(clock.clone())).await;
    let u = app.user("out@example.com").await;
    let g = app.group("PIM Editors", &[&u]).await;
    assert_eq!(claims(&app, &u).await.1, "miss");
    assert_eq!(claims(&app, &u).await.1, "hit");

    let redis = redis.stop();
    // The near copy may still answer until the replica sees its subscription drop (at once
    // here: the server's sockets close; within a second and the command timeout when they
    // do not); then every answer comes from the store.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (c, cache) = claims(&app, &u).await;
        assert_eq!(keys(&c, "roles"), vec!["editor"]);
        if cache == "miss" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "near copies still served 5 s after Redis stopped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // A change during the outage is still reflected.
    let (s, _) = app
        .patch(
            &format!("/Groups/{g}"),
            patch_op(json!([{"op": "remove", "path": "members", "value": [{"value": u}]}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (c, _) = claims(&app, &u).await;
    assert_eq!(keys(&c, "roles"), vec!["viewer"]);

    // Redis is back; a read after the retry interval has passed (on the test's clock) may
    // probe it. The short pause only lets the reconnection happen.
    let _redis = redis.restart();
    let mut outcomes = Vec::new();
    for _ in 0..250 {
        clock.advance_millis(1_000);
        outcomes.push(claims(&app, &u).await.1);
        if outcomes.ends_with(&["hit".to_owned()]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        outcomes.last().map(String::as_str),
        Some("hit"),
        "{outcomes:?}"
    );
    let (c, _) = claims(&app, &u).await;
    assert_eq!(
        keys(&c, "roles"),
        vec!["viewer"],
        "no claims from before the outage"
    );
    app.stop().await;
}

/// Two pimgate processes share one PostgreSQL and one Redis: a SCIM change made through one
/// is reflected in claims read through the other on the next read (without near copies).
#[tokio::test]
async fn two_processes_share_postgres_and_redis() {
    two_processes_share_postgres_and_redis_with(0).await;
}

/// The same with near copies (the default): the other process drops its copy when the
/// invalidation message reaches it; the test prints how long after the acknowledgement the
/// change was seen there.
#[tokio::test]
async fn two_processes_share_postgres_and_redis_with_near_copies() {
    two_processes_share_postgres_and_redis_with(1000).await;
}

async fn two_processes_share_postgres_and_redis_with(near_cache_entries: usize) {
    let db = crate::helpers::TestDb::new(Db::Postgres).await;
    let prefix = format!("pimgate-test-{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        ACCESS,
        &format!("[redis]\nkey_prefix = \"{prefix}\"\nnear_cache_entries = {near_cache_entries}\n"),
    );
    let a = crate::helpers::Process::start(&cfg, &db.url, Some(&crate::helpers::redis_url()));
    let b = crate::helpers::Process::start(&cfg, &db.url, Some(&crate::helpers::redis_url()));
    pimgate::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    let scim =
        |p: &crate::helpers::Process, path: &str| format!("{}/scim/default/v2{path}", p.base);
    let read = |p: &crate::helpers::Process, u: &str| {
        let url = format!("{}/access/v1/connections/default/users/{u}/claims", p.base);
        let client = client.clone();
        async move {
            let r = client
                .get(url)
                .bearer_auth(ACCESS_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let post = |url: String, body: Value| {
        let client = client.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()
        }
    };
    let u = post(scim(&a, "/Users"), json!({"userName": "two@example.com"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let g = post(
        scim(&a, "/Groups"),
        json!({"displayName": "PIM Editors", "members": [{"value": u}]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Both processes have the claims cached now.
    for p in [&a, &b] {
        assert_eq!(keys(&read(p, &u).await, "roles"), vec!["editor"]);
        assert_eq!(keys(&read(p, &u).await, "roles"), vec!["editor"]);
    }
    // A change through `a` is seen through `b` on the next read, and vice versa.
    let r = client
        .patch(scim(&a, &format!("/Groups/{g}")))
        .bearer_auth(TOKEN)
        .json(&patch_op(
            json!([{"op": "Remove", "path": "members", "value": [{"value": u}]}]),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Without near copies the very next read sees the change; with them, the read after the
    // message arrived (well within 2 s here: the message precedes the acknowledgement).
    let seen = async |p: &crate::helpers::Process, roles: &[&str]| {
        let acknowledged = std::time::Instant::now();
        for attempt in 1.. {
            let c = read(p, &u).await;
            if keys(&c, "roles") == roles {
                return (attempt, acknowledged.elapsed());
            }
            assert!(
                near_cache_entries > 0
                    && acknowledged.elapsed() < std::time::Duration::from_secs(2),
                "{c} after the change was acknowledged"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        unreachable!()
    };
    let (reads, took) = seen(&b, &["viewer"]).await;
    println!("change through a seen through b by read {reads}, {took:?} after the acknowledgement");
    let r = client
        .patch(scim(&b, &format!("/Groups/{g}")))
        .bearer_auth(TOKEN)
        .json(&patch_op(
            json!([{"op": "add", "path": "members", "value": [{"value": u}]}]),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (reads, took) = seen(&a, &["editor"]).await;
    println!("change through b seen through a by read {reads}, {took:?} after the acknowledgement");
    drop(a);
    drop(b);
    crate::helpers::delete_redis_prefix(&prefix).await;
    let _ = Arc::new(db);
}

/// Writes a config file with the test access credential, `extra` settings and `access` as
/// its `[access]` section.
fn write_config(dir: &std::path::Path, access: &str, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("pimgate.toml");
    let access = access
        .replace("\n[[", "\n[[access.")
        .replace("\n[", "\n[access.")
        .replace("[access.[access.", "[[access.");
    std::fs::write(
        &cfg,
        format!("{extra}\n[access_api]\ntokens = [\"{ACCESS_TOKEN}\"]\n\n[access]\n{access}"),
    )
    .unwrap();
    cfg
}

/// A reload (what `SIGHUP` does) puts a new access model in force at once; a bad file is
/// refused, naming the key, and the old model stays. In process, against the running app.
#[tokio::test]
async fn reload_puts_a_new_model_in_force_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::TestDb::new(Db::Sqlite).await;
    let extra = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{}\"\n\
         [connections.default]\nscim_token = \"{TOKEN}\"\n",
        db.url
    );
    let cfg = write_config(dir.path(), ACCESS, &extra);
    let no_env = std::collections::HashMap::<String, String>::new();
    let v = pimgate::config::load(&cfg, true, &no_env).unwrap();
    let app = TestApp::start(db, v, std::sync::Arc::new(pimgate::clock::SystemClock)).await;
    let u = app.user("hup@example.com").await;
    let read = || async { claims(&app, &u).await.0 };
    assert_eq!(perms(&read().await), vec!["products.view"]);

    // A new model: the default role gains products.create. SIGHUP to this process reaches
    // the running app's reload.
    write_config(
        dir.path(),
        &ACCESS.replace(
            r#"permissions = ["products.view"]"#,
            r#"permissions = ["products.view", "products.create"]"#,
        ),
        &extra,
    );
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = perms(&read().await);
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, vec!["products.create", "products.view"]);
    assert!(matches!(
        app.running().reload().await,
        Ok(pimgate::Reloaded::Unchanged { .. })
    ));

    // A broken model is refused; the previous one stays in force.
    write_config(
        dir.path(),
        &ACCESS.replace(
            r#"permissions = ["products.view"]"#,
            r#"permissions = ["products.vew"]"#,
        ),
        &extra,
    );
    let refused = app.running().reload().await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("access.roles.viewer.permissions"),
        "{refused}"
    );
    assert_eq!(
        perms(&read().await),
        vec!["products.create", "products.view"]
    );
    app.stop().await;
}

/// `pimgate explain` and `pimgate diff-config` read the same directory the server writes.
#[tokio::test]
async fn explain_and_diff_config_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), ACCESS, "");
    let db = format!("sqlite://{}/p.db", dir.path().display());
    {
        let p = crate::helpers::Process::start(&cfg, &db, None);
        pimgate::tls::install_crypto_provider();
        let client = reqwest::Client::new();
        let mut ids = Vec::new();
        for name in ["e1@example.com", "e2@example.com", "e3@example.com"] {
            let v: Value = client
                .post(format!("{}/scim/default/v2/Users", p.base))
                .bearer_auth(TOKEN)
                .json(&json!({"userName": name}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.push(json!({"value": v["id"]}));
        }
        let r = client
            .post(format!("{}/scim/default/v2/Groups", p.base))
            .bearer_auth(TOKEN)
            .json(&json!({"displayName": "PIM Editors", "members": &ids[..2]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pimgate"));
        for (k, _) in std::env::vars() {
            if k.starts_with("PIMGATE_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("PIMGATE_DATABASE_URL", &db)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = run(&[
        "explain",
        "--connection",
        "default",
        "--user",
        "E1@example.com",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("editor \"Editor\""), "{out}");
    assert!(
        out.contains("<- rule \"editors\": member of group \"PIM Editors\""),
        "{out}"
    );
    assert!(
        out.contains("products.delete") && out.contains("Delete product"),
        "{out}"
    );
    let (ok, out, err) = run(&[
        "explain",
        "--connection",
        "default",
        "--user",
        "E1@example.com",
        "--json",
    ]);
    assert!(ok, "{err}");
    let explained: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys(&explained, "roles"), vec!["editor"]);
    assert!(
        explained["provenance"].to_string().contains("PIM Editors"),
        "{out}"
    );

    let candidate = dir.path().join("candidate.toml");
    std::fs::copy(
        write_config(
            &dir.path().join("c").tap_mkdir(),
            &ACCESS.replace(
                r#"permissions = ["products.view", "products.create", "products.delete"]"#,
                r#"permissions = ["products.view", "products.create"]"#,
            ),
            "",
        ),
        &candidate,
    )
    .unwrap();
    let (ok, out, err) = run(&["diff-config", candidate.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("removes permission Delete product (products.delete) from 2 users"),
        "{out}"
    );
    assert!(out.contains("2 of 3 users would change"), "{out}");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// `GET /Users/{id}` is served from the cache beside the claims: every change that alters the
/// representation shows on the next read, with no rule on group names or ids (a rename
/// changes `groups[].display` even when no claim depends on it).
async fn cached_user_representation_follows_every_change(app: TestApp) {
    let u = app.user("rita@example.com").await;
    let g = app.group("Alpha", &[&u]).await;
    let path = format!("/Users/{u}");
    for _ in 0..2 {
        let (s, body) = app.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["groups"][0]["display"], "Alpha", "{body}");
    }
    // The group is renamed.
    let (s, body) = app
        .patch(
            &format!("/Groups/{g}"),
            patch_op(json!([{"op": "replace", "value": {"displayName": "Beta"}}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, body) = app.get(&path).await;
    assert_eq!(body["groups"][0]["display"], "Beta", "{body}");
    // The user changes.
    let version = body["meta"]["version"].clone();
    let (s, body) = app
        .patch(
            &path,
            patch_op(json!([{"op": "replace", "path": "displayName", "value": "Rita R."}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, body) = app.get(&path).await;
    assert_eq!(body["displayName"], "Rita R.", "{body}");
    assert_ne!(body["meta"]["version"], version, "{body}");
    // The membership ends.
    let (s, body) = app
        .patch(
            &format!("/Groups/{g}"),
            patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{u}\"]")}])),
        )
        .await;
    assert!(s.is_success(), "{s} {body}");
    let (_, body) = app.get(&path).await;
    assert!(
        body.get("groups")
            .is_none_or(|g| g.as_array().is_some_and(Vec::is_empty)),
        "{body}"
    );
    // The user is deleted.
    let (s, _) = app.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.get(&path).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// No rule reads group names or ids.
const NO_RULES: &str = r#"
[roles.viewer]
id = "9b0e4a52-0000-4000-8000-000000000001"
name = "Viewer"
permissions = ["products.view"]

[connections.default]
on_no_match = { roles = ["viewer"], user_groups = [] }
"#;

#[tokio::test]
async fn cached_user_representation_follows_every_change_in_process_cache() {
    let app = spawn_with_model(Db::Sqlite, false, NO_RULES).await;
    cached_user_representation_follows_every_change(app).await;
}

#[tokio::test]
async fn cached_user_representation_follows_every_change_redis_cache() {
    let app = spawn_with_model(Db::Postgres, true, NO_RULES).await;
    cached_user_representation_follows_every_change(app).await;
}
