//! What Microsoft Entra ID and Okta really send (the shared IdP notes), one test
//! per behaviour, each run on SQLite and PostgreSQL. Every outcome is read back with a fresh
//! GET, never trusted from the write's response alone.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{GROUP_URN, USER_URN, assert_scim_error, patch_op, query, send, send_raw};
use crate::helpers::{TOKEN, TestApp};

const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// `GET {endpoint}?filter=...` (plus `extra` query pairs), asserting 200.
async fn filter(app: &TestApp, endpoint: &str, f: &str, extra: &[(&str, &str)]) -> Value {
    let mut pairs = vec![("filter", f)];
    pairs.extend_from_slice(extra);
    let (s, body) = app.get(&format!("{endpoint}?{}", query(&pairs))).await;
    assert_eq!(s, StatusCode::OK, "{f}: {body}");
    body
}

/// The ids of a list response's resources.
fn ids(list: &Value) -> BTreeSet<String> {
    list["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no Resources in {list}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).clone()).collect()
}

fn sorted(items: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| (*s).clone()).collect();
    v.sort();
    v
}

async fn fetch(app: &TestApp, path: &str) -> Value {
    let (s, body) = app.get(path).await;
    assert_eq!(s, StatusCode::OK, "{path}: {body}");
    body
}

async fn patch_ok(app: &TestApp, path: &str, ops: Value) -> Value {
    let (s, body) = app.patch(path, patch_op(ops.clone())).await;
    assert_eq!(s, StatusCode::OK, "{ops}: {body}");
    body
}

async fn create(app: &TestApp, endpoint: &str, body: Value) -> Value {
    let (s, resp) = app.post(endpoint, body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{body}: {resp}");
    resp
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

// ======================================================================== Entra ID

both!(
    entra_checks_existence_with_username_filter_and_gets_empty_list,
    |app| {
        app.user("someone.else@example.com").await;
        for f in [
            "userName eq \"nobody@example.com\"",
            "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"",
        ] {
            let body = filter(&app, "/Users", f, &[]).await;
            assert_eq!(body["schemas"], json!([LIST_URN]), "{body}");
            assert_eq!(body["totalResults"], json!(0), "{body}");
            assert_eq!(body["Resources"], json!([]), "{body}");
        }
        let body = filter(&app, "/Groups", "displayName eq \"Nobody\"", &[]).await;
        assert_eq!(body["totalResults"], json!(0), "{body}");
        assert_eq!(body["Resources"], json!([]), "{body}");
        app.stop().await;
    }
);

both!(entra_filters_by_external_id, |app| {
    let a = id_of(
        &create(
            &app,
            "/Users",
            json!({"schemas": [USER_URN], "userName": "a@example.com", "externalId": "Ext-A"}),
        )
        .await,
    );
    create(
        &app,
        "/Users",
        json!({"schemas": [USER_URN], "userName": "b@example.com", "externalId": "Ext-B"}),
    )
    .await;
    let body = filter(&app, "/Users", "externalId eq \"Ext-A\"", &[]).await;
    assert_eq!(body["totalResults"], json!(1), "{body}");
    assert_eq!(ids(&body), set(&[&a]));
    assert_eq!(body["Resources"][0]["externalId"], json!("Ext-A"));
    // externalId is caseExact (RFC 7643 §3.1): another case is another id.
    let body = filter(&app, "/Users", "externalId eq \"ext-a\"", &[]).await;
    assert_eq!(body["totalResults"], json!(0), "{body}");
    app.stop().await;
});

both!(entra_capitalised_ops, |app| {
    let id = id_of(
        &create(
            &app,
            "/Users",
            json!({"schemas": [USER_URN], "userName": "caps@example.com", "nickName": "Nick",
                   "displayName": "Before"}),
        )
        .await,
    );
    let path = format!("/Users/{id}");
    patch_ok(
        &app,
        &path,
        json!([
            {"op": "Replace", "path": "displayName", "value": "After"},
            {"op": "Add", "path": "title", "value": "Engineer"},
            {"op": "Remove", "path": "nickName"},
        ]),
    )
    .await;
    let got = fetch(&app, &path).await;
    assert_eq!(got["displayName"], json!("After"));
    assert_eq!(got["title"], json!("Engineer"));
    assert!(got.get("nickName").is_none(), "{got}");

    let u2 = app.user("caps2@example.com").await;
    let gid = app.group("Caps", &[]).await;
    patch_ok(
        &app,
        &format!("/Groups/{gid}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": id}, {"value": u2}]}]),
    )
    .await;
    patch_ok(
        &app,
        &format!("/Groups/{gid}"),
        json!([{"op": "Remove", "path": "members", "value": [{"value": id}]},
               {"op": "Replace", "path": "displayName", "value": "CAPS"}]),
    )
    .await;
    assert_eq!(app.member_ids(&gid).await, vec![u2]);
    assert_eq!(
        fetch(&app, &format!("/Groups/{gid}")).await["displayName"],
        json!("CAPS")
    );
    app.stop().await;
});

both!(entra_string_booleans, |app| {
    let created = create(
        &app,
        "/Users",
        json!({
            "schemas": [USER_URN],
            "userName": "strbool@example.com",
            "active": "False",
            "emails": [{"value": "strbool@example.com", "type": "work", "primary": "True"}],
        }),
    )
    .await;
    let id = id_of(&created);
    let path = format!("/Users/{id}");
    let got = fetch(&app, &path).await;
    assert_eq!(got["active"], json!(false), "{got}");
    assert_eq!(got["emails"][0]["primary"], json!(true), "{got}");

    patch_ok(
        &app,
        &path,
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .await;
    assert_eq!(fetch(&app, &path).await["active"], json!(true));
    patch_ok(
        &app,
        &path,
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await;
    assert_eq!(fetch(&app, &path).await["active"], json!(false));
    patch_ok(
        &app,
        &path,
        json!([{"op": "Add", "path": "emails", "value": [
            {"value": "second@example.com", "type": "home", "primary": "True"}
        ]}]),
    )
    .await;
    let got = fetch(&app, &path).await;
    let emails = got["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 2, "{got}");
    for e in emails {
        let primary = e["primary"].clone();
        assert!(primary.is_boolean() || primary.is_null(), "{got}");
    }
    let primaries: Vec<&Value> = emails
        .iter()
        .filter(|e| e["primary"] == json!(true))
        .collect();
    assert_eq!(primaries.len(), 1, "exactly one primary: {got}");
    assert_eq!(primaries[0]["value"], json!("second@example.com"));
    app.stop().await;
});

both!(
    entra_deactivated_user_stays_readable_and_filterable,
    |app| {
        let id = app.user("leaver@example.com").await;
        let stayer = app.user("stayer@example.com").await;
        let path = format!("/Users/{id}");
        patch_ok(
            &app,
            &path,
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;

        let got = fetch(&app, &path).await;
        assert_eq!(got["active"], json!(false), "{got}");
        assert_eq!(got["userName"], json!("leaver@example.com"));

        let body = filter(&app, "/Users", "active eq false", &[]).await;
        assert_eq!(ids(&body), set(&[&id]), "{body}");
        let body = filter(&app, "/Users", "active eq true", &[]).await;
        assert_eq!(ids(&body), set(&[&stayer]), "{body}");
        let body = filter(&app, "/Users", "userName eq \"leaver@example.com\"", &[]).await;
        assert_eq!(ids(&body), set(&[&id]), "{body}");
        assert_eq!(body["Resources"][0]["active"], json!(false));
        app.stop().await;
    }
);

both!(
    entra_remove_members_with_value_list_removes_only_listed,
    |app| {
        let u1 = app.user("m1@example.com").await;
        let u2 = app.user("m2@example.com").await;
        let u3 = app.user("m3@example.com").await;
        let gid = app.group("Engineering", &[&u1, &u2, &u3]).await;
        patch_ok(
            &app,
            &format!("/Groups/{gid}"),
            json!([{"op": "Remove", "path": "members", "value": [{"value": u1}]}]),
        )
        .await;
        assert_eq!(app.member_ids(&gid).await, sorted(&[&u2, &u3]));
        // Removing someone who is not a member removes nobody.
        patch_ok(
            &app,
            &format!("/Groups/{gid}"),
            json!([{"op": "Remove", "path": "members", "value": [{"value": u1}]}]),
        )
        .await;
        assert_eq!(app.member_ids(&gid).await, sorted(&[&u2, &u3]));
        // The removed user keeps existing and no longer lists the group.
        let got = fetch(&app, &format!("/Users/{u1}")).await;
        assert!(got.get("groups").is_none(), "{got}");
        app.stop().await;
    }
);

both!(entra_add_members_list, |app| {
    let u1 = app.user("a1@example.com").await;
    let u2 = app.user("a2@example.com").await;
    let u3 = app.user("a3@example.com").await;
    let gid = app.group("Adders", &[&u1]).await;
    patch_ok(
        &app,
        &format!("/Groups/{gid}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": u2}, {"value": u3}]}]),
    )
    .await;
    assert_eq!(app.member_ids(&gid).await, sorted(&[&u1, &u2, &u3]));
    // Adding an existing member again is a no-op, not an error or a duplicate.
    patch_ok(
        &app,
        &format!("/Groups/{gid}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": u1}]}]),
    )
    .await;
    assert_eq!(app.member_ids(&gid).await, sorted(&[&u1, &u2, &u3]));
    app.stop().await;
});

both!(entra_pathless_replace_with_dotted_and_urn_keys, |app| {
    let id = id_of(
        &create(
            &app,
            "/Users",
            json!({"schemas": [USER_URN], "userName": "dotted@example.com",
                   "name": {"givenName": "Old", "familyName": "Family"}}),
        )
        .await,
    );
    let path = format!("/Users/{id}");
    patch_ok(
        &app,
        &path,
        json!([{"op": "Replace", "value": {
            "name.givenName": "X",
            format!("{ENTERPRISE_URN}:employeeNumber"): "42",
        }}]),
    )
    .await;
    let got = fetch(&app, &path).await;
    assert_eq!(got["name"]["givenName"], json!("X"), "{got}");
    assert_eq!(got["name"]["familyName"], json!("Family"), "{got}");
    assert_eq!(got[ENTERPRISE_URN]["employeeNumber"], json!("42"), "{got}");
    assert!(got.get("name.givenName").is_none(), "{got}");
    assert!(
        got.get(format!("{ENTERPRISE_URN}:employeeNumber"))
            .is_none(),
        "{got}"
    );
    assert!(
        got["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE_URN)),
        "schemas must list the extension: {got}"
    );
    app.stop().await;
});

both!(entra_add_on_absent_work_email_creates_it, |app| {
    let id = app.user("noemail@example.com").await;
    let path = format!("/Users/{id}");
    patch_ok(
        &app,
        &path,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "w@x.com"}]),
    )
    .await;
    let got = fetch(&app, &path).await;
    assert_eq!(
        got["emails"],
        json!([{"type": "work", "value": "w@x.com"}]),
        "{got}"
    );
    // And it is findable by it.
    let body = filter(&app, "/Users", "emails.value eq \"w@x.com\"", &[]).await;
    assert_eq!(ids(&body), set(&[&id]));
    // A second add on the same value path changes that element, not a new one.
    patch_ok(
        &app,
        &path,
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "w2@x.com"}]),
    )
    .await;
    let got = fetch(&app, &path).await;
    assert_eq!(
        got["emails"],
        json!([{"type": "work", "value": "w2@x.com"}]),
        "{got}"
    );
    app.stop().await;
});

both!(entra_several_ops_on_work_address_build_one_element, |app| {
    let id = app.user("address@example.com").await;
    let path = format!("/Users/{id}");
    patch_ok(
        &app,
        &path,
        json!([
            {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress",
             "value": "1 Main St"},
            {"op": "Add", "path": "addresses[type eq \"work\"].locality",
             "value": "Springfield"},
        ]),
    )
    .await;
    let got = fetch(&app, &path).await;
    let addresses = got["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("{got}"));
    assert_eq!(addresses.len(), 1, "{got}");
    assert_eq!(addresses[0]["type"], json!("work"));
    assert_eq!(addresses[0]["streetAddress"], json!("1 Main St"));
    assert_eq!(addresses[0]["locality"], json!("Springfield"));
    // A later request adds to the same element.
    patch_ok(
        &app,
        &path,
        json!([{"op": "Replace", "path": "addresses[type eq \"work\"].postalCode",
                "value": "12345"}]),
    )
    .await;
    let got = fetch(&app, &path).await;
    let addresses = got["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), 1, "{got}");
    assert_eq!(addresses[0]["postalCode"], json!("12345"));
    assert_eq!(addresses[0]["locality"], json!("Springfield"));
    app.stop().await;
});

/// Sets the manager of a new user with `value` (in a PATCH, the way Entra does), and checks
/// it reads back as `{"value": manager id}` under the enterprise URN.
async fn manager_roundtrip(app: &TestApp, value: impl Fn(&str) -> Value) {
    let boss = app.user("boss@example.com").await;
    let id = app.user("report@example.com").await;
    let path = format!("/Users/{id}");
    patch_ok(
        app,
        &path,
        json!([{"op": "Add", "path": format!("{ENTERPRISE_URN}:manager"), "value": value(&boss)}]),
    )
    .await;
    let got = fetch(app, &path).await;
    let manager = &got[ENTERPRISE_URN]["manager"];
    assert!(manager.is_object(), "{got}");
    assert_eq!(manager["value"], json!(boss), "{got}");

    // The same forms on POST.
    let created = create(
        app,
        "/Users",
        json!({"schemas": [USER_URN, ENTERPRISE_URN], "userName": "report2@example.com",
               ENTERPRISE_URN: {"manager": value(&boss)}}),
    )
    .await;
    let got = fetch(app, &format!("/Users/{}", id_of(&created))).await;
    assert_eq!(
        got[ENTERPRISE_URN]["manager"]["value"],
        json!(boss),
        "{got}"
    );
    assert!(got[ENTERPRISE_URN]["manager"].is_object(), "{got}");
}

both!(entra_manager_as_string, |app| {
    manager_roundtrip(&app, |id| json!(id)).await;
    app.stop().await;
});

both!(entra_manager_as_object, |app| {
    manager_roundtrip(&app, |id| json!({"value": id})).await;
    app.stop().await;
});

both!(entra_manager_as_array, |app| {
    manager_roundtrip(&app, |id| json!([{"value": id}])).await;
    app.stop().await;
});

both!(entra_unknown_schema_uri_tolerated, |app| {
    let ms = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";
    let u = app.user("member@example.com").await;
    let created = create(
        &app,
        "/Groups",
        json!({"schemas": [GROUP_URN, ms], "displayName": "Entra Group", "externalId": "e-1",
               "members": [{"value": u}]}),
    )
    .await;
    let gid = id_of(&created);
    let got = fetch(&app, &format!("/Groups/{gid}")).await;
    assert_eq!(got["displayName"], json!("Entra Group"));
    assert_eq!(got["schemas"], json!([GROUP_URN]), "{got}");
    assert_eq!(app.member_ids(&gid).await, vec![u]);
    let (s, body) = app
        .patch(
            &format!("/Groups/{gid}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp", ms],
                   "Operations": [{"op": "Replace", "path": "displayName", "value": "Renamed"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        fetch(&app, &format!("/Groups/{gid}")).await["displayName"],
        json!("Renamed")
    );
    app.stop().await;
});

both!(entra_no_content_type_accepted, |app| {
    let url = format!("{}/Users", app.base("default"));
    let auth = format!("Bearer {TOKEN}");
    let (s, _, body) = send_raw(
        &app,
        Method::POST,
        &url,
        &[("authorization", &auth)],
        Some(json!({"schemas": [USER_URN], "userName": "noct@example.com"}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = id_of(&body);
    let (s, _, body) = send_raw(
        &app,
        Method::PATCH,
        &format!("{url}/{id}"),
        &[("authorization", &auth)],
        Some(
            patch_op(json!([{"op": "Replace", "path": "displayName", "value": "NoCT"}]))
                .to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        fetch(&app, &format!("/Users/{id}")).await["displayName"],
        json!("NoCT")
    );
    app.stop().await;
});

both!(entra_application_json_accepted, |app| {
    let url = format!("{}/Users", app.base("default"));
    let auth = format!("Bearer {TOKEN}");
    for ct in ["application/json", "application/json; charset=utf-8"] {
        let name = format!("json-{}@example.com", ct.len());
        let (s, _, body) = send_raw(
            &app,
            Method::POST,
            &url,
            &[
                ("authorization", &auth),
                ("content-type", ct),
                ("accept", "application/json"),
            ],
            Some(json!({"schemas": [USER_URN], "userName": name}).to_string()),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{ct}: {body}");
        let id = id_of(&body);
        let (s, _, body) = send_raw(
            &app,
            Method::PATCH,
            &format!("{url}/{id}"),
            &[("authorization", &auth), ("content-type", ct)],
            Some(
                patch_op(json!([{"op": "Replace", "path": "displayName", "value": ct}]))
                    .to_string(),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{ct}: {body}");
        assert_eq!(
            fetch(&app, &format!("/Users/{id}")).await["displayName"],
            json!(ct)
        );
    }
    app.stop().await;
});

both!(entra_attribute_names_in_other_case, |app| {
    let created = create(
        &app,
        "/Users",
        json!({"schemas": [USER_URN], "UserName": "Other.Case@example.com", "Active": true,
               "DisplayName": "Other Case", "NAME": {"GivenName": "Other"}}),
    )
    .await;
    let id = id_of(&created);
    let path = format!("/Users/{id}");
    let got = fetch(&app, &path).await;
    assert_eq!(got["userName"], json!("Other.Case@example.com"), "{got}");
    assert_eq!(got["active"], json!(true), "{got}");
    assert_eq!(got["displayName"], json!("Other Case"), "{got}");
    assert_eq!(got["name"]["givenName"], json!("Other"), "{got}");
    for k in ["UserName", "Active", "DisplayName", "NAME"] {
        assert!(
            got.get(k).is_none(),
            "{k} must be stored under its canonical name: {got}"
        );
    }
    patch_ok(
        &app,
        &path,
        json!([{"op": "Replace", "path": "DisplayName", "value": "Renamed"},
               {"op": "Replace", "path": "Active", "value": false}]),
    )
    .await;
    let got = fetch(&app, &path).await;
    assert_eq!(got["displayName"], json!("Renamed"));
    assert_eq!(got["active"], json!(false));
    let body = filter(
        &app,
        "/Users",
        "USERNAME eq \"other.case@example.com\"",
        &[],
    )
    .await;
    assert_eq!(ids(&body), set(&[&id]));
    app.stop().await;
});

both!(
    entra_reads_groups_with_excluded_members_and_display_name_filter,
    |app| {
        let u1 = app.user("r1@example.com").await;
        let u2 = app.user("r2@example.com").await;
        let sales = app.group("Sales Team", &[&u1, &u2]).await;
        app.group("Ops Team", &[&u1]).await;
        let body = filter(
            &app,
            "/Groups",
            "displayName eq \"Sales Team\"",
            &[("excludedAttributes", "members")],
        )
        .await;
        assert_eq!(body["totalResults"], json!(1), "{body}");
        let g = &body["Resources"][0];
        assert_eq!(g["id"], json!(sales));
        assert_eq!(g["displayName"], json!("Sales Team"));
        assert!(g.get("members").is_none(), "{body}");
        // Without the exclusion the members are there (so the above is the exclusion at work).
        let body = filter(&app, "/Groups", "displayName eq \"Sales Team\"", &[]).await;
        assert_eq!(
            body["Resources"][0]["members"].as_array().map(Vec::len),
            Some(2),
            "{body}"
        );
        app.stop().await;
    }
);

both!(entra_values_returned_as_sent, |app| {
    let sent = json!({
        "schemas": [USER_URN],
        "userName": "Bjensen@Example.COM",
        "displayName": "  Barbara  JENSEN ",
        "phoneNumbers": [{"value": "+1 (555) 555-5555", "type": "work"}],
        "emails": [{"value": "BJensen@Example.COM", "type": "work"}],
    });
    let created = create(&app, "/Users", sent.clone()).await;
    let id = id_of(&created);
    for got in [created, fetch(&app, &format!("/Users/{id}")).await] {
        assert_eq!(got["userName"], sent["userName"], "{got}");
        assert_eq!(got["displayName"], sent["displayName"], "{got}");
        assert_eq!(got["phoneNumbers"], sent["phoneNumbers"], "{got}");
        assert_eq!(got["emails"], sent["emails"], "{got}");
    }
    let body = filter(&app, "/Users", "userName eq \"bjensen@example.com\"", &[]).await;
    assert_eq!(
        body["Resources"][0]["userName"],
        json!("Bjensen@Example.COM")
    );
    app.stop().await;
});

both!(entra_parallel_member_adds_lose_nothing, |app| {
    let mut users = Vec::new();
    for i in 0..20 {
        users.push(app.user(&format!("parallel{i}@example.com")).await);
    }
    let gid = app.group("Parallel", &[]).await;
    let path = format!("/Groups/{gid}");
    let requests = users.iter().map(|u| {
        let body = patch_op(json!([{"op": "Add", "path": "members", "value": [{"value": u}]}]));
        let path = path.clone();
        let app = &app;
        async move { app.patch(&path, body).await }
    });
    let results = futures::future::join_all(requests).await;
    for (s, body) in results {
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let mut want = users.clone();
    want.sort();
    assert_eq!(app.member_ids(&gid).await, want);
    // Parallel removes of half of them leave exactly the other half.
    let requests = users.iter().take(10).map(|u| {
        let body = patch_op(json!([{"op": "Remove", "path": "members", "value": [{"value": u}]}]));
        let path = path.clone();
        let app = &app;
        async move { app.patch(&path, body).await }
    });
    for (s, body) in futures::future::join_all(requests).await {
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let mut want: Vec<String> = users[10..].to_vec();
    want.sort();
    assert_eq!(app.member_ids(&gid).await, want);
    app.stop().await;
});

// ======================================================================== Okta

fn is_json_integer(v: &Value) -> bool {
    v.is_i64() || v.is_u64()
}

both!(okta_paged_import_is_stable_with_integer_fields, |app| {
    let mut all = BTreeSet::new();
    for i in 0..7 {
        all.insert(app.user(&format!("okta{i}@example.com")).await);
    }
    let mut seen = Vec::new();
    for (start, want) in [(1, 3), (4, 3), (7, 1)] {
        let path = format!("/Users?startIndex={start}&count=3");
        let body = fetch(&app, &path).await;
        for k in ["totalResults", "startIndex", "itemsPerPage"] {
            assert!(
                is_json_integer(&body[k]),
                "{k} must be a JSON integer: {body}"
            );
        }
        assert_eq!(body["totalResults"], json!(7), "{body}");
        assert_eq!(body["startIndex"], json!(start), "{body}");
        assert_eq!(body["itemsPerPage"], json!(want), "{body}");
        let page: Vec<String> = body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(page.len(), want, "{body}");
        // The same page asked again is the same page.
        let again = fetch(&app, &path).await;
        let again: Vec<String> = again["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(again, page);
        seen.extend(page);
    }
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), 7, "pages overlap: {seen:?}");
    assert_eq!(distinct, all);
    // Beyond the end: an empty page, still integers.
    let body = fetch(&app, "/Users?startIndex=8&count=3").await;
    assert_eq!(body["totalResults"], json!(7));
    assert_eq!(body["itemsPerPage"], json!(0));
    assert_eq!(
        body["Resources"].as_array().map_or(0, Vec::len),
        0,
        "{body}"
    );
    app.stop().await;
});

both!(okta_pathless_deactivation, |app| {
    let id = app.user("deactivate@example.com").await;
    let path = format!("/Users/{id}");
    let body = patch_ok(
        &app,
        &path,
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;
    assert_eq!(body["active"], json!(false), "{body}");
    let got = fetch(&app, &path).await;
    assert_eq!(got["active"], json!(false));
    assert_eq!(got["userName"], json!("deactivate@example.com"));
    patch_ok(
        &app,
        &path,
        json!([{"op": "replace", "value": {"active": true}}]),
    )
    .await;
    assert_eq!(fetch(&app, &path).await["active"], json!(true));
    app.stop().await;
});

fn assert_no_password(v: &Value) {
    let text = v.to_string();
    assert!(!text.contains("password"), "password echoed: {text}");
    assert!(!text.contains("S3cr3t!"), "password value echoed: {text}");
}

both!(okta_put_with_read_only_fields_ignored, |app| {
    let created = create(
        &app,
        "/Users",
        json!({"schemas": [USER_URN], "userName": "putter@example.com", "password": "S3cr3t!",
               "name": {"givenName": "Put", "familyName": "Ter"}, "active": true}),
    )
    .await;
    assert_no_password(&created);
    let id = id_of(&created);
    let mine = app.group("Mine", &[&id]).await;
    let not_mine = app.group("NotMine", &[]).await;
    let path = format!("/Users/{id}");
    let before = fetch(&app, &path).await;

    let fake_id = "2819c223-7f76-453a-919d-413861904646";
    let put = json!({
        "schemas": [USER_URN],
        "id": fake_id,
        "userName": "putter@example.com",
        "password": "S3cr3t!",
        "name": {"givenName": "Putty", "familyName": "Ter"},
        "active": true,
        "groups": [{"value": not_mine, "display": "NotMine"}],
        "meta": {"resourceType": "User", "created": "2000-01-01T00:00:00Z",
                 "lastModified": "2000-01-01T00:00:00Z", "version": "W/\"999\"",
                 "location": "https://evil.example.com/Users/x"},
    });
    let (s, body) = app.put(&path, put).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_no_password(&body);
    assert_eq!(body["id"], json!(id));

    let got = fetch(&app, &path).await;
    assert_no_password(&got);
    assert_eq!(got["id"], json!(id));
    assert_eq!(got["name"]["givenName"], json!("Putty"));
    assert_eq!(got["meta"]["created"], before["meta"]["created"]);
    assert_ne!(got["meta"]["version"], json!("W/\"999\""));
    assert!(
        got["meta"]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Users/{id}")),
        "{got}"
    );
    let groups: BTreeSet<String> = got["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| g["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(groups, set(&[&mine]), "{got}");
    assert!(app.member_ids(&not_mine).await.is_empty());
    let (s, _) = app.get(&format!("/Users/{fake_id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
});

both!(okta_rename_group_with_id_in_value, |app| {
    let u = app.user("renamed-member@example.com").await;
    let gid = app.group("Old Name", &[&u]).await;
    let body = patch_ok(
        &app,
        &format!("/Groups/{gid}"),
        json!([{"op": "replace", "value": {"id": gid, "displayName": "New"}}]),
    )
    .await;
    assert_eq!(body["id"], json!(gid));
    let got = fetch(&app, &format!("/Groups/{gid}")).await;
    assert_eq!(got["id"], json!(gid));
    assert_eq!(got["displayName"], json!("New"));
    assert_eq!(app.member_ids(&gid).await, vec![u]);
    let body = filter(&app, "/Groups", "displayName eq \"New\"", &[]).await;
    assert_eq!(ids(&body), set(&[&gid]));
    app.stop().await;
});

both!(okta_membership_remove_by_filter_then_add, |app| {
    let u1 = app.user("o1@example.com").await;
    let u2 = app.user("o2@example.com").await;
    let u3 = app.user("o3@example.com").await;
    let gid = app.group("Okta Push", &[&u1, &u2]).await;
    patch_ok(
        &app,
        &format!("/Groups/{gid}"),
        json!([
            {"op": "remove", "path": format!("members[value eq \"{u1}\"]")},
            {"op": "add", "path": "members", "value": [{"value": u3, "display": "o3@example.com"}]},
        ]),
    )
    .await;
    assert_eq!(app.member_ids(&gid).await, sorted(&[&u2, &u3]));
    app.stop().await;
});

both!(okta_replace_members, |app| {
    let u1 = app.user("p1@example.com").await;
    let u2 = app.user("p2@example.com").await;
    let u3 = app.user("p3@example.com").await;
    let gid = app.group("Okta Replace", &[&u1, &u2]).await;
    patch_ok(
        &app,
        &format!("/Groups/{gid}"),
        json!([{"op": "replace", "path": "members", "value": [{"value": u2}, {"value": u3}]}]),
    )
    .await;
    assert_eq!(app.member_ids(&gid).await, sorted(&[&u2, &u3]));
    // Replacing with an empty list empties the group.
    patch_ok(
        &app,
        &format!("/Groups/{gid}"),
        json!([{"op": "replace", "path": "members", "value": []}]),
    )
    .await;
    assert!(app.member_ids(&gid).await.is_empty());
    app.stop().await;
});

both!(okta_duplicate_username_is_409_uniqueness, |app| {
    app.user("dup.user@example.com").await;
    let (s, body) = app
        .post(
            "/Users",
            json!({"schemas": [USER_URN], "userName": "Dup.User@EXAMPLE.com", "active": true}),
        )
        .await;
    assert_scim_error(s, &body, 409, Some("uniqueness"));
    let body = filter(&app, "/Users", "userName eq \"dup.user@example.com\"", &[]).await;
    assert_eq!(body["totalResults"], json!(1), "{body}");
    app.stop().await;
});

both!(okta_username_filter_is_case_insensitive, |app| {
    let id = app.user("Casey.Jones@Example.com").await;
    app.user("other@example.com").await;
    for f in [
        "userName eq \"casey.jones@example.com\"",
        "userName eq \"CASEY.JONES@EXAMPLE.COM\"",
        "userName eq \"Casey.Jones@Example.com\"",
    ] {
        let body = filter(&app, "/Users", f, &[]).await;
        assert_eq!(ids(&body), set(&[&id]), "{f}: {body}");
        assert_eq!(
            body["Resources"][0]["userName"],
            json!("Casey.Jones@Example.com")
        );
    }
    app.stop().await;
});

both!(okta_password_never_echoed, |app| {
    let created = create(
        &app,
        "/Users",
        json!({"schemas": [USER_URN], "userName": "pw@example.com", "password": "S3cr3t!"}),
    )
    .await;
    assert_no_password(&created);
    let id = id_of(&created);
    let path = format!("/Users/{id}");
    assert_no_password(&fetch(&app, &path).await);
    assert_no_password(&fetch(&app, &format!("{path}?attributes=password")).await);
    assert_no_password(&fetch(&app, "/Users").await);
    assert_no_password(
        &filter(
            &app,
            "/Users",
            "userName eq \"pw@example.com\"",
            &[("attributes", "userName,password")],
        )
        .await,
    );
    let body = patch_ok(
        &app,
        &path,
        json!([{"op": "replace", "value": {"password": "S3cr3t!"}}]),
    )
    .await;
    assert_no_password(&body);
    let (s, body) = app
        .put(
            &path,
            json!({"schemas": [USER_URN], "userName": "pw@example.com", "password": "S3cr3t!"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_no_password(&body);
    let (_, h, body) = send(&app, Method::GET, &path, &[], None).await;
    assert_no_password(&body);
    assert!(!format!("{h:?}").contains("S3cr3t!"));
    app.stop().await;
});
