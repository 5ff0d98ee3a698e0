//! The SCIM 2.0 API over HTTP (RFC 7644): CRUD of users and groups, filters, sorting,
//! attribute selection, `.search`, discovery, ETags, nested groups and the read-only
//! `groups` attribute. Store-dependent features run on SQLite and PostgreSQL.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Db, TestApp};
use crate::helpers::{GROUP_URN, USER_URN, assert_scim_error, patch_op, query, send};

const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SEARCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header: {h:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

async fn fetch(app: &TestApp, path: &str) -> Value {
    let (s, body) = app.get(path).await;
    assert_eq!(s, StatusCode::OK, "{path}: {body}");
    body
}

/// The values of `key` of a list response's resources, in response order.
fn column(list: &Value, key: &str) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no Resources: {list}"))
        .iter()
        .map(|r| {
            r[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} in {r}"))
                .to_owned()
        })
        .collect()
}

fn to_set(v: Vec<String>) -> BTreeSet<String> {
    v.into_iter().collect()
}

fn names(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------- CRUD

both!(user_crud, |app| {
    let (s, h, created) = send(
        &app,
        Method::POST,
        "/Users",
        &[],
        Some(json!({
            "schemas": [USER_URN],
            "userName": "crud@example.com",
            "externalId": "crud-1",
            "name": {"givenName": "Cru", "familyName": "D"},
            "emails": [{"value": "crud@example.com", "type": "work", "primary": true}],
            "active": true,
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = id_of(&created);
    let location = header(&h, "location");
    assert_eq!(json!(location), created["meta"]["location"]);
    assert!(
        location.ends_with(&format!("/scim/default/v2/Users/{id}")),
        "{location}"
    );
    assert_eq!(json!(header(&h, "etag")), created["meta"]["version"]);
    assert!(header(&h, "content-type").starts_with("application/scim+json"));
    assert_eq!(created["meta"]["resourceType"], json!("User"));
    assert_eq!(created["schemas"], json!([USER_URN]));
    assert!(created["meta"]["created"].is_string() && created["meta"]["lastModified"].is_string());

    let path = format!("/Users/{id}");
    let got = fetch(&app, &path).await;
    assert_eq!(got, created);

    // PUT replaces: omitted attributes are gone.
    let (s, put) = app
        .put(
            &path,
            json!({"schemas": [USER_URN], "userName": "crud@example.com", "displayName": "Put",
                   "active": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{put}");
    assert_eq!(put["displayName"], json!("Put"));
    let got = fetch(&app, &path).await;
    assert_eq!(got["displayName"], json!("Put"));
    assert_eq!(got["active"], json!(false));
    assert!(
        got.get("emails").is_none() && got.get("name").is_none(),
        "{got}"
    );
    assert!(got.get("externalId").is_none(), "{got}");
    assert_eq!(got["meta"]["created"], created["meta"]["created"]);
    assert_ne!(got["meta"]["version"], created["meta"]["version"]);

    // PATCH answers 200 with the resource.
    let (s, patched) = app
        .patch(
            &path,
            patch_op(json!([{"op": "add", "path": "title", "value": "Chief"}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(patched["id"], json!(id));
    assert_eq!(patched["title"], json!("Chief"));
    assert_eq!(patched["displayName"], json!("Put"));
    assert_eq!(fetch(&app, &path).await, patched);

    let (s, body) = app.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null);
    let (s, body) = app.get(&path).await;
    assert_scim_error(s, &body, 404, None);
    let (s, body) = app.delete(&path).await;
    assert_scim_error(s, &body, 404, None);
    // The name is free again.
    app.user("crud@example.com").await;
    app.stop().await;
});

both!(group_crud, |app| {
    let u1 = app.user("g1@example.com").await;
    let u2 = app.user("g2@example.com").await;
    let (s, h, created) = send(
        &app,
        Method::POST,
        "/Groups",
        &[],
        Some(
            json!({"schemas": [GROUP_URN], "displayName": "Crew", "externalId": "crew-1",
                    "members": [{"value": u1}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let gid = id_of(&created);
    assert_eq!(json!(header(&h, "location")), created["meta"]["location"]);
    assert_eq!(json!(header(&h, "etag")), created["meta"]["version"]);
    assert_eq!(created["meta"]["resourceType"], json!("Group"));
    assert_eq!(created["members"][0]["value"], json!(u1));
    assert_eq!(created["members"][0]["type"], json!("User"));

    let path = format!("/Groups/{gid}");
    let got = fetch(&app, &path).await;
    assert_eq!(got["displayName"], json!("Crew"));
    assert_eq!(got["externalId"], json!("crew-1"));
    assert_eq!(app.member_ids(&gid).await, vec![u1.clone()]);

    // PUT with members replaces them; PUT without members leaves them alone.
    let (s, put) = app
        .put(
            &path,
            json!({"schemas": [GROUP_URN], "displayName": "Crew 2", "members": [{"value": u2}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{put}");
    assert_eq!(app.member_ids(&gid).await, vec![u2.clone()]);
    let (s, put) = app
        .put(
            &path,
            json!({"schemas": [GROUP_URN], "displayName": "Crew 3"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{put}");
    assert_eq!(app.member_ids(&gid).await, vec![u2.clone()]);
    let got = fetch(&app, &path).await;
    assert_eq!(got["displayName"], json!("Crew 3"));
    assert!(got.get("externalId").is_none(), "{got}");

    let (s, patched) = app
        .patch(
            &path,
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": u1}]}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(patched["id"], json!(gid));
    let mut want = vec![u1.clone(), u2.clone()];
    want.sort();
    assert_eq!(app.member_ids(&gid).await, want);

    let (s, _) = app.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = app.get(&path).await;
    assert_scim_error(s, &body, 404, None);
    // Members survive their group, and no longer list it.
    let user = fetch(&app, &format!("/Users/{u1}")).await;
    assert!(user.get("groups").is_none(), "{user}");
    app.stop().await;
});

both!(deleting_a_user_removes_its_memberships, |app| {
    let u1 = app.user("gone@example.com").await;
    let u2 = app.user("stays@example.com").await;
    let g1 = app.group("One", &[&u1, &u2]).await;
    let g2 = app.group("Two", &[&u1]).await;
    let (s, _) = app.delete(&format!("/Users/{u1}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.member_ids(&g1).await, vec![u2.clone()]);
    assert!(app.member_ids(&g2).await.is_empty());
    let body = fetch(
        &app,
        &format!(
            "/Groups?{}",
            query(&[("filter", &format!("members.value eq \"{u1}\""))])
        ),
    )
    .await;
    assert_eq!(body["totalResults"], json!(0), "{body}");
    app.stop().await;
});

// ---------------------------------------------------------------- filters

/// alice, bob, carol, dave, with a discriminating mix of e-mails and departments.
async fn filter_people(app: &TestApp) -> Vec<Value> {
    let people = [
        json!({"schemas": [USER_URN, ENTERPRISE_URN], "userName": "alice@example.com",
               "title": "Engineer",
               "emails": [{"value": "alice@example.com", "type": "work"}],
               ENTERPRISE_URN: {"department": "Sales"}}),
        // Work address elsewhere, example.com address at home: no element is both.
        json!({"schemas": [USER_URN], "userName": "bob@example.com",
               "emails": [{"value": "bob@example.com", "type": "home"},
                          {"value": "bob@corp.net", "type": "work"}]}),
        json!({"schemas": [USER_URN, ENTERPRISE_URN], "userName": "carol@test.org",
               ENTERPRISE_URN: {"department": "Ops"}}),
        json!({"schemas": [USER_URN], "userName": "dave@example.com",
               "emails": [{"value": "dave@example.org", "type": "work"}]}),
    ];
    let mut out = Vec::new();
    for p in people {
        let (s, body) = app.post("/Users", p).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        out.push(body);
    }
    out
}

/// The userNames a filter selects.
async fn user_names(app: &TestApp, f: &str) -> BTreeSet<String> {
    let body = fetch(app, &format!("/Users?{}", query(&[("filter", f)]))).await;
    let got = column(&body, "userName");
    assert_eq!(body["totalResults"], json!(got.len()), "{f}: {body}");
    to_set(got)
}

both!(filter_operators_on_user_name, |app| {
    filter_people(&app).await;
    let cases: &[(&str, &[&str])] = &[
        ("userName eq \"bob@example.com\"", &["bob@example.com"]),
        (
            "userName ne \"bob@example.com\"",
            &["alice@example.com", "carol@test.org", "dave@example.com"],
        ),
        (
            "userName co \"example\"",
            &["alice@example.com", "bob@example.com", "dave@example.com"],
        ),
        ("userName sw \"ca\"", &["carol@test.org"]),
        ("userName ew \".org\"", &["carol@test.org"]),
        (
            "userName pr",
            &[
                "alice@example.com",
                "bob@example.com",
                "carol@test.org",
                "dave@example.com",
            ],
        ),
        ("title pr", &["alice@example.com"]),
        (
            "userName gt \"bob@example.com\"",
            &["carol@test.org", "dave@example.com"],
        ),
        (
            "userName ge \"bob@example.com\"",
            &["bob@example.com", "carol@test.org", "dave@example.com"],
        ),
        ("userName lt \"bob@example.com\"", &["alice@example.com"]),
        (
            "userName le \"bob@example.com\"",
            &["alice@example.com", "bob@example.com"],
        ),
        // userName is caseExact false (RFC 7643 §4.1.1).
        ("userName eq \"BOB@EXAMPLE.COM\"", &["bob@example.com"]),
        ("userName sw \"CA\"", &["carol@test.org"]),
        ("userName co \"xyz\"", &[]),
        // Operators and attribute names in any case.
        ("USERNAME EQ \"bob@example.com\"", &["bob@example.com"]),
    ];
    for (f, want) in cases {
        assert_eq!(user_names(&app, f).await, names(want), "{f}");
    }
    app.stop().await;
});

both!(filter_logic_and_grouping, |app| {
    filter_people(&app).await;
    let cases: &[(&str, &[&str])] = &[
        (
            "userName co \"example\" and userName sw \"d\"",
            &["dave@example.com"],
        ),
        (
            "userName eq \"alice@example.com\" or userName eq \"carol@test.org\"",
            &["alice@example.com", "carol@test.org"],
        ),
        ("not (userName co \"example\")", &["carol@test.org"]),
        // `and` binds tighter than `or` (RFC 7644 §3.4.2.2)...
        (
            "userName sw \"a\" or userName sw \"c\" and userName ew \".com\"",
            &["alice@example.com"],
        ),
        // ...unless grouped.
        (
            "(userName sw \"a\" or userName sw \"c\") and userName ew \".org\"",
            &["carol@test.org"],
        ),
        (
            "not (userName sw \"a\" or userName sw \"b\") and userName ew \".com\"",
            &["dave@example.com"],
        ),
        (
            "title pr or not (emails pr)",
            &["alice@example.com", "carol@test.org"],
        ),
    ];
    for (f, want) in cases {
        assert_eq!(user_names(&app, f).await, names(want), "{f}");
    }
    app.stop().await;
});

both!(filter_complex_and_extension_attributes, |app| {
    filter_people(&app).await;
    let dept_sales = format!("{ENTERPRISE_URN}:department eq \"Sales\"");
    let dept_pr = format!("{ENTERPRISE_URN}:department pr");
    let cases: &[(&str, &[&str])] = &[
        // A value path matches within one element: bob has no work address at example.com.
        (
            "emails[type eq \"work\" and value co \"@example.com\"]",
            &["alice@example.com"],
        ),
        ("emails[type eq \"home\"]", &["bob@example.com"]),
        ("emails.value eq \"bob@corp.net\"", &["bob@example.com"]),
        ("emails.value eq \"BOB@example.COM\"", &["bob@example.com"]),
        ("emails.value ew \".org\"", &["dave@example.com"]),
        (
            "emails.type eq \"work\"",
            &["alice@example.com", "bob@example.com", "dave@example.com"],
        ),
        (&dept_sales, &["alice@example.com"]),
        ("department eq \"Ops\"", &["carol@test.org"]),
        (&dept_pr, &["alice@example.com", "carol@test.org"]),
    ];
    for (f, want) in cases {
        assert_eq!(user_names(&app, f).await, names(want), "{f}");
    }
    app.stop().await;
});

both!(filter_meta_last_modified, |app| {
    let people = filter_people(&app).await;
    let all = names(&[
        "alice@example.com",
        "bob@example.com",
        "carol@test.org",
        "dave@example.com",
    ]);
    assert_eq!(
        user_names(&app, "meta.lastModified gt \"2000-01-01T00:00:00Z\"").await,
        all
    );
    assert_eq!(
        user_names(&app, "meta.lastModified lt \"2000-01-01T00:00:00Z\"").await,
        names(&[])
    );
    assert_eq!(
        user_names(&app, "meta.lastModified gt \"2999-01-01T00:00:00Z\"").await,
        names(&[])
    );
    assert_eq!(
        user_names(&app, "meta.created lt \"2999-01-01T00:00:00Z\"").await,
        all
    );
    // The timestamp the server returned, compared back: `ge` includes it, `gt` excludes it.
    let alice = fetch(&app, &format!("/Users/{}", id_of(&people[0]))).await;
    let ts = alice["meta"]["lastModified"].as_str().unwrap().to_owned();
    let ge = user_names(&app, &format!("meta.lastModified ge \"{ts}\"")).await;
    assert!(ge.contains("alice@example.com"), "{ts}: {ge:?}");
    let gt = user_names(&app, &format!("meta.lastModified gt \"{ts}\"")).await;
    assert!(!gt.contains("alice@example.com"), "{ts}: {gt:?}");
    let eq = user_names(&app, &format!("meta.lastModified eq \"{ts}\"")).await;
    assert!(eq.contains("alice@example.com"), "{ts}: {eq:?}");
    app.stop().await;
});

/// `meta.created` and `meta.lastModified` come from the injected clock: pinned, moved by the
/// test, and filtered on, with no sleeping.
async fn meta_times_follow_the_injected_clock(backend: Db) {
    let start = pimgate::clock::Timestamp::parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
    let clock = pimgate::clock::ManualClock::at(start);
    let app = TestApp::spawn_clocked(backend, clock.clone()).await;
    let early = app.user("early@example.com").await;
    let late = app.user("late@example.com").await;
    let got = fetch(&app, &format!("/Users/{late}")).await;
    assert_eq!(got["meta"]["created"], json!("2030-01-01T00:00:00.000Z"));
    clock.advance_millis(3_600_000);
    let (s, body) = app
        .patch(
            &format!("/Users/{late}"),
            patch_op(json!([{"op": "replace", "path": "title", "value": "Later"}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["created"], json!("2030-01-01T00:00:00.000Z"));
    assert_eq!(
        body["meta"]["lastModified"],
        json!("2030-01-01T01:00:00.000Z")
    );
    assert_eq!(
        user_names(&app, "meta.lastModified gt \"2030-01-01T00:30:00Z\"").await,
        names(&["late@example.com"])
    );
    let got = fetch(&app, &format!("/Users/{early}")).await;
    assert_eq!(
        got["meta"]["lastModified"],
        json!("2030-01-01T00:00:00.000Z")
    );
    app.stop().await;
}

#[tokio::test]
async fn meta_times_follow_the_injected_clock_sqlite() {
    meta_times_follow_the_injected_clock(Db::Sqlite).await;
}

#[tokio::test]
async fn meta_times_follow_the_injected_clock_postgres() {
    meta_times_follow_the_injected_clock(Db::Postgres).await;
}

both!(filter_groups_by_member, |app| {
    let alice = app.user("alice@example.com").await;
    let bob = app.user("bob@example.com").await;
    let g1 = app.group("G1", &[&alice, &bob]).await;
    let g2 = app.group("G2", &[&bob]).await;
    app.group("G3", &[]).await;
    let groups = |f: String| {
        let app = &app;
        async move {
            let body = fetch(app, &format!("/Groups?{}", query(&[("filter", &f)]))).await;
            to_set(column(&body, "id"))
        }
    };
    assert_eq!(
        groups(format!("members.value eq \"{alice}\"")).await,
        to_set(vec![g1.clone()])
    );
    assert_eq!(
        groups(format!("members.value eq \"{bob}\"")).await,
        to_set(vec![g1.clone(), g2.clone()])
    );
    assert_eq!(
        groups(format!(
            "members.value eq \"{bob}\" and displayName eq \"G2\""
        ))
        .await,
        to_set(vec![g2.clone()])
    );
    assert_eq!(
        groups("members pr".into()).await,
        to_set(vec![g1.clone(), g2.clone()])
    );
    app.stop().await;
});

both!(filter_values_with_special_and_non_ascii_characters, |app| {
    let plus = app.user("a+b@example.com").await;
    let (s, quoted) = app
        .post(
            "/Users",
            json!({"schemas": [USER_URN], "userName": "q\"uote@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{quoted}");
    let (s, anne) = app
        .post(
            "/Users",
            json!({"schemas": [USER_URN], "userName": "änne@example.com", "title": "Ärztin",
                   "displayName": "Ärztin Änne"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{anne}");
    app.user("plain@example.com").await;
    let ids = |f: &'static str| {
        let app = &app;
        async move {
            let body = fetch(app, &format!("/Users?{}", query(&[("filter", f)]))).await;
            to_set(column(&body, "id"))
        }
    };
    assert_eq!(
        ids("userName eq \"a+b@example.com\"").await,
        to_set(vec![plus])
    );
    assert_eq!(
        ids("userName eq \"q\\\"uote@example.com\"").await,
        to_set(vec![id_of(&quoted)])
    );
    // Case-insensitive comparison folds more than ASCII (RFC 7643 §2.2, caseExact false).
    let anne = to_set(vec![id_of(&anne)]);
    assert_eq!(ids("userName eq \"ÄNNE@EXAMPLE.COM\"").await, anne);
    assert_eq!(ids("title eq \"ÄRZTIN\"").await, anne);
    assert_eq!(ids("displayName eq \"ÄRZTIN ÄNNE\"").await, anne);
    assert_eq!(ids("displayName sw \"ärztin\"").await, anne);
    assert_eq!(ids("title co \"RZT\"").await, anne);
    let (s, body) = app
        .post(
            "/Users",
            json!({"schemas": [USER_URN], "userName": "ÄNNE@example.com"}),
        )
        .await;
    assert_scim_error(s, &body, 409, Some("uniqueness"));
    app.stop().await;
});

// ---------------------------------------------------------------- paging, sort, selection, search

both!(paging_edge_cases, |app| {
    for i in 0..5 {
        app.user(&format!("page{i}@example.com")).await;
    }
    let cases = [
        ("count=0", 5, 1, 0),
        ("count=-5", 5, 1, 0),
        ("startIndex=0&count=1", 5, 1, 1),
        ("startIndex=-3", 5, 1, 5),
        ("startIndex=5&count=10", 5, 5, 1),
        ("startIndex=6", 5, 6, 0),
        ("count=5000", 5, 1, 5),
    ];
    for (q, total, start, per) in cases {
        let body = fetch(&app, &format!("/Users?{q}")).await;
        assert_eq!(body["totalResults"], json!(total), "{q}: {body}");
        assert_eq!(body["startIndex"], json!(start), "{q}: {body}");
        assert_eq!(body["itemsPerPage"], json!(per), "{q}: {body}");
        assert_eq!(
            body["Resources"].as_array().map_or(0, Vec::len),
            per,
            "{q}: {body}"
        );
    }
    for q in ["count=abc", "startIndex=1.5", "sortOrder=sideways"] {
        let (s, body) = app.get(&format!("/Users?{q}")).await;
        assert_scim_error(s, &body, 400, Some("invalidValue"));
    }
    app.stop().await;
});

both!(parallel_patches_on_one_user_lose_nothing, |app| {
    let id = app.user("busy@example.com").await;
    let path = format!("/Users/{id}");
    let requests = (0..10).map(|i| {
        let email = format!("e{i}@example.com");
        let body = patch_op(json!([{"op": "add", "path": "emails", "value": [{"value": email}]}]));
        let (app, path) = (&app, path.clone());
        async move { app.patch(&path, body).await }
    });
    for (s, body) in futures::future::join_all(requests).await {
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let got = fetch(&app, &path).await;
    let emails: BTreeSet<String> = got["emails"]
        .as_array()
        .unwrap_or_else(|| panic!("{got}"))
        .iter()
        .map(|e| e["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        emails,
        (0..10)
            .map(|i| format!("e{i}@example.com"))
            .collect::<BTreeSet<_>>()
    );
    // Every change was a version of its own: 1 (created) + 10.
    assert_eq!(got["meta"]["version"], json!("W/\"11\""), "{got}");
    app.stop().await;
});

both!(sort_by_user_name, |app| {
    filter_people(&app).await;
    let body = fetch(&app, "/Users?sortBy=userName&sortOrder=descending").await;
    assert_eq!(
        column(&body, "userName"),
        vec![
            "dave@example.com",
            "carol@test.org",
            "bob@example.com",
            "alice@example.com"
        ]
    );
    let body = fetch(&app, "/Users?sortBy=userName&sortOrder=ascending").await;
    assert_eq!(
        column(&body, "userName"),
        vec![
            "alice@example.com",
            "bob@example.com",
            "carol@test.org",
            "dave@example.com"
        ]
    );
    let body = fetch(&app, "/Users?sortBy=userName").await;
    assert_eq!(column(&body, "userName")[0], "alice@example.com");
    // Sorting and paging compose.
    let body = fetch(
        &app,
        "/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=2",
    )
    .await;
    assert_eq!(
        column(&body, "userName"),
        vec!["carol@test.org", "bob@example.com"]
    );
    app.stop().await;
});

both!(attribute_selection, |app| {
    let people = filter_people(&app).await;
    let alice = id_of(&people[0]);
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let only = names(&["id", "schemas", "userName"]);

    let body = fetch(&app, "/Users?attributes=userName").await;
    let resources = body["Resources"].as_array().unwrap();
    assert_eq!(resources.len(), 4);
    for r in resources {
        assert_eq!(keys(r), only, "{r}");
    }
    let got = fetch(&app, &format!("/Users/{alice}?attributes=userName")).await;
    assert_eq!(keys(&got), only, "{got}");

    let body = fetch(&app, "/Users?excludedAttributes=emails").await;
    for r in body["Resources"].as_array().unwrap() {
        assert!(r.get("emails").is_none(), "{r}");
        assert!(
            r.get("userName").is_some() && r.get("id").is_some() && r.get("meta").is_some(),
            "{r}"
        );
    }
    let got = fetch(
        &app,
        &format!("/Users/{alice}?excludedAttributes=emails,title"),
    )
    .await;
    assert!(
        got.get("emails").is_none() && got.get("title").is_none(),
        "{got}"
    );
    assert_eq!(got["userName"], json!("alice@example.com"));
    // `id` is returned always, even when excluded.
    let got = fetch(&app, &format!("/Users/{alice}?excludedAttributes=id")).await;
    assert_eq!(got["id"], json!(alice));

    // Sub-attributes and extension attributes.
    let got = fetch(
        &app,
        &format!("/Users/{alice}?attributes=emails.value,{ENTERPRISE_URN}:department"),
    )
    .await;
    assert_eq!(
        got["emails"],
        json!([{"value": "alice@example.com"}]),
        "{got}"
    );
    assert_eq!(got[ENTERPRISE_URN], json!({"department": "Sales"}), "{got}");
    assert!(got.get("userName").is_none(), "{got}");
    app.stop().await;
});

both!(search_with_post, |app| {
    filter_people(&app).await;
    let (s, body) = app
        .post(
            "/Users/.search",
            json!({
                "schemas": [SEARCH_URN],
                "filter": "userName co \"example.com\"",
                "attributes": ["userName"],
                "sortBy": "userName",
                "sortOrder": "descending",
                "startIndex": 1,
                "count": 2,
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(body["totalResults"], json!(3));
    assert_eq!(body["itemsPerPage"], json!(2));
    assert_eq!(
        column(&body, "userName"),
        vec!["dave@example.com", "bob@example.com"]
    );
    for r in body["Resources"].as_array().unwrap() {
        assert!(r.get("emails").is_none() && r.get("meta").is_none(), "{r}");
    }
    // A search body naming another schema is refused (one naming none is tolerated).
    let (s, body) = app
        .post(
            "/Users/.search",
            json!({"schemas": ["urn:example:wrong"], "filter": "userName pr"}),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("invalidSyntax"));
    let (s, body) = app
        .post("/Users/.search", json!({"filter": "userName sw \"c\""}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(column(&body, "userName"), vec!["carol@test.org"]);
    // Groups too.
    let u = app.user("member@example.com").await;
    let gid = app.group("Searchable", &[&u]).await;
    let (s, body) = app
        .post(
            "/Groups/.search",
            json!({"schemas": [SEARCH_URN], "filter": "displayName sw \"Search\"",
                   "excludedAttributes": ["members"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(column(&body, "id"), vec![gid]);
    assert!(body["Resources"][0].get("members").is_none(), "{body}");
    app.stop().await;
});

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn discovery_documents() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let spc = fetch(&app, "/ServiceProviderConfig").await;
    assert_eq!(
        spc["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    for feature in ["patch", "filter", "sort", "etag"] {
        assert_eq!(spc[feature]["supported"], json!(true), "{feature}: {spc}");
    }
    assert_eq!(spc["bulk"]["supported"], json!(false), "{spc}");
    assert_eq!(spc["changePassword"]["supported"], json!(false), "{spc}");
    assert!(spc["filter"]["maxResults"].as_i64().unwrap() > 0, "{spc}");
    assert_eq!(
        spc["authenticationSchemes"][0]["type"],
        json!("oauthbearertoken")
    );

    let rt = fetch(&app, "/ResourceTypes").await;
    assert_eq!(rt["totalResults"], json!(2), "{rt}");
    let by_id: std::collections::BTreeMap<String, Value> = rt["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    assert_eq!(
        by_id.keys().cloned().collect::<Vec<_>>(),
        vec!["Group", "User"]
    );
    assert_eq!(by_id["User"]["endpoint"], json!("/Users"));
    assert_eq!(by_id["User"]["schema"], json!(USER_URN));
    assert_eq!(
        by_id["User"]["schemaExtensions"][0]["schema"],
        json!(ENTERPRISE_URN)
    );
    assert_eq!(by_id["Group"]["endpoint"], json!("/Groups"));
    assert_eq!(by_id["Group"]["schema"], json!(GROUP_URN));
    assert_eq!(
        fetch(&app, "/ResourceTypes/User").await["id"],
        json!("User")
    );

    let schemas = fetch(&app, "/Schemas").await;
    assert_eq!(schemas["totalResults"], json!(3), "{schemas}");
    assert_eq!(
        to_set(column(&schemas, "id")),
        names(&[USER_URN, ENTERPRISE_URN, GROUP_URN])
    );
    let user = fetch(&app, &format!("/Schemas/{USER_URN}")).await;
    let attrs: BTreeSet<String> = user["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    for a in ["userName", "name", "emails", "active", "groups"] {
        assert!(attrs.contains(a), "{a} missing from {attrs:?}");
    }
    // Discovery needs the token too (RFC 7644 §4 leaves it to the provider; pimgate asks).
    let (s, body) = app
        .call_as(
            "wrong-token-0123456789abcdef",
            "default",
            Method::GET,
            "/ServiceProviderConfig",
            None,
        )
        .await;
    assert_scim_error(s, &body, 401, None);
    app.stop().await;
}

// ---------------------------------------------------------------- ETags

both!(if_none_match_current_etag_is_304, |app| {
    let id = app.user("cache@example.com").await;
    let path = format!("/Users/{id}");
    let (s, h, body) = send(&app, Method::GET, &path, &[], None).await;
    assert_eq!(s, StatusCode::OK);
    let etag = header(&h, "etag");
    assert_eq!(json!(etag), body["meta"]["version"]);
    let (s, h, body) = send(&app, Method::GET, &path, &[("if-none-match", &etag)], None).await;
    assert_eq!(s, StatusCode::NOT_MODIFIED, "{body}");
    assert_eq!(header(&h, "etag"), etag);
    assert_eq!(body, Value::Null);
    // After a change the old ETag no longer matches.
    let (s, _) = app
        .patch(
            &path,
            patch_op(json!([{"op": "replace", "path": "displayName", "value": "New"}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, h, body) = send(&app, Method::GET, &path, &[("if-none-match", &etag)], None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["displayName"], json!("New"));
    assert_ne!(header(&h, "etag"), etag);
    // Groups too.
    let gid = app.group("Cached", &[]).await;
    let (_, h, _) = send(&app, Method::GET, &format!("/Groups/{gid}"), &[], None).await;
    let getag = header(&h, "etag");
    let (s, _, _) = send(
        &app,
        Method::GET,
        &format!("/Groups/{gid}"),
        &[("if-none-match", &getag)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    // Members are part of a group: a membership change is a new version...
    let (s, _) = app
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, h, body) = send(
        &app,
        Method::GET,
        &format!("/Groups/{gid}"),
        &[("if-none-match", &getag)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["members"][0]["value"], json!(id));
    let getag = header(&h, "etag");
    // ...and so is a member's deletion.
    let (s, _) = app.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, body) = send(
        &app,
        Method::GET,
        &format!("/Groups/{gid}"),
        &[("if-none-match", &getag)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.get("members").is_none(), "{body}");
    app.stop().await;
});

// ---------------------------------------------------------------- nesting and `groups`

both!(nested_group_member, |app| {
    let u = app.user("nested@example.com").await;
    let child = app.group("Child", &[&u]).await;
    let (s, parent) = app
        .post(
            "/Groups",
            json!({"schemas": [GROUP_URN], "displayName": "Parent",
                   "members": [{"value": child, "type": "Group"}, {"value": u}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{parent}");
    let pid = id_of(&parent);
    let got = fetch(&app, &format!("/Groups/{pid}")).await;
    let members = got["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{got}");
    let find = |id: &str| {
        members
            .iter()
            .find(|m| m["value"] == json!(id))
            .unwrap_or_else(|| panic!("{id} not in {got}"))
    };
    assert_eq!(find(&child)["type"], json!("Group"));
    assert!(
        find(&child)["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Groups/{child}"))
    );
    assert_eq!(find(&u)["type"], json!("User"));
    assert!(
        find(&u)["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Users/{u}"))
    );

    // A group cannot contain itself.
    let (s, body) = app
        .patch(
            &format!("/Groups/{pid}"),
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": pid}]}])),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("invalidValue"));

    // Deleting the child removes it from the parent.
    let (s, _) = app.delete(&format!("/Groups/{child}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.member_ids(&pid).await, vec![u]);
    app.stop().await;
});

both!(user_groups_attribute_is_read_only_and_lists_groups, |app| {
    let u = app.user("grouped@example.com").await;
    let g1 = app.group("Alpha", &[&u]).await;
    let g2 = app.group("Beta", &[&u]).await;
    app.group("Gamma", &[]).await;
    let got = fetch(&app, &format!("/Users/{u}")).await;
    let groups = got["groups"].as_array().unwrap_or_else(|| panic!("{got}"));
    let by_id: std::collections::BTreeMap<String, Value> = groups
        .iter()
        .map(|g| (g["value"].as_str().unwrap().to_owned(), g.clone()))
        .collect();
    let mut want = vec![g1.clone(), g2.clone()];
    want.sort();
    assert_eq!(by_id.keys().cloned().collect::<Vec<_>>(), want);
    assert_eq!(by_id[&g1]["display"], json!("Alpha"));
    assert_eq!(by_id[&g2]["display"], json!("Beta"));
    assert!(
        by_id[&g1]["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Groups/{g1}"))
    );

    // In lists too.
    let body = fetch(
        &app,
        &format!(
            "/Users?{}",
            query(&[("filter", "userName eq \"grouped@example.com\"")])
        ),
    )
    .await;
    assert_eq!(
        body["Resources"][0]["groups"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );

    // A group rename shows in `groups`; leaving a group removes it.
    let (s, _) = app
        .patch(
            &format!("/Groups/{g1}"),
            patch_op(json!([{"op": "replace", "path": "displayName", "value": "Alpha2"}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .patch(
            &format!("/Groups/{g2}"),
            patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{u}\"]")}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let got = fetch(&app, &format!("/Users/{u}")).await;
    assert_eq!(got["groups"].as_array().map(Vec::len), Some(1), "{got}");
    assert_eq!(got["groups"][0]["value"], json!(g1));
    assert_eq!(got["groups"][0]["display"], json!("Alpha2"));

    // It cannot be written through the user.
    let (s, body) = app
        .patch(
            &format!("/Users/{u}"),
            patch_op(json!([{"op": "add", "path": "groups", "value": [{"value": g2}]}])),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("mutability"));
    assert!(app.member_ids(&g2).await.is_empty());
    app.stop().await;
});
