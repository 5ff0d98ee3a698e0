//! Error responses over HTTP, one test per error class: every failure under `/scim` answers
//! the RFC 7644 §3.12 body (`schemas` = the Error URN, `status` the HTTP code as a string,
//! a non-empty `detail`, `scimType` for the 400s and 409 that define one), and nothing is
//! half written when a request fails.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{
    Db, GROUP_URN, OTHER_TOKEN, PATCH_URN, TOKEN, TestApp, USER_URN, assert_scim_error, patch_op,
    query, send, send_raw,
};

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

// ---------------------------------------------------------------- 401, 403

#[tokio::test]
async fn unauthorized_without_token_and_with_wrong_token() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let url = format!("{}/Users", app.base("default"));
    let (s, h, body) = send_raw(&app, Method::GET, &url, &[], None).await;
    assert_scim_error(s, &body, 401, None);
    assert!(
        header(&h, "www-authenticate").starts_with("Bearer"),
        "{h:?}"
    );

    for auth in [
        "Bearer not-the-token-0123456789",
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ] {
        let (s, h, body) =
            send_raw(&app, Method::GET, &url, &[("authorization", auth)], None).await;
        assert_scim_error(s, &body, 401, None);
        assert!(
            header(&h, "www-authenticate").starts_with("Bearer"),
            "{auth}: {h:?}"
        );
    }
    // A write without a token changes nothing.
    let (s, _, body) = send_raw(
        &app,
        Method::POST,
        &url,
        &[("content-type", "application/scim+json")],
        Some(json!({"schemas": [USER_URN], "userName": "sneaky"}).to_string()),
    )
    .await;
    assert_scim_error(s, &body, 401, None);
    let (s, list) = app.get("/Users").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["totalResults"], json!(0), "{list}");
    app.stop().await;
}

#[tokio::test]
async fn forbidden_token_of_another_connection() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let (s, body) = app
        .call_as(OTHER_TOKEN, "default", Method::GET, "/Users", None)
        .await;
    assert_scim_error(s, &body, 403, None);
    let (s, body) = app
        .call_as(
            OTHER_TOKEN,
            "default",
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER_URN], "userName": "intruder"})),
        )
        .await;
    assert_scim_error(s, &body, 403, None);
    let (s, body) = app
        .call_as(TOKEN, "other", Method::GET, "/Users", None)
        .await;
    assert_scim_error(s, &body, 403, None);
    // The forbidden POST wrote nothing.
    let (_, list) = app.get("/Users").await;
    assert_eq!(list["totalResults"], json!(0), "{list}");
    app.stop().await;
}

both!(connections_are_isolated, |app| {
    let (s, theirs) = app
        .call_as(
            OTHER_TOKEN,
            "other",
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER_URN], "userName": "shared@example.com"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{theirs}");
    let their_id = theirs["id"].as_str().unwrap().to_owned();

    // Invisible from `default`: by id, by filter, and not writable.
    let (s, body) = app.get(&format!("/Users/{their_id}")).await;
    assert_scim_error(s, &body, 404, None);
    let (s, body) = app
        .patch(
            &format!("/Users/{their_id}"),
            patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await;
    assert_scim_error(s, &body, 404, None);
    let (s, body) = app.delete(&format!("/Users/{their_id}")).await;
    assert_scim_error(s, &body, 404, None);
    let (s, list) = app
        .get(&format!(
            "/Users?{}",
            query(&[("filter", "userName eq \"shared@example.com\"")])
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["totalResults"], json!(0), "{list}");

    // The same userName once in each connection.
    let mine = app.user("shared@example.com").await;
    assert_ne!(mine, their_id);
    let (s, body) = app
        .call_as(
            OTHER_TOKEN,
            "other",
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER_URN], "userName": "SHARED@example.com"})),
        )
        .await;
    assert_scim_error(s, &body, 409, Some("uniqueness"));

    // A group in `default` never takes a member of `other`: the foreign id names nothing
    // here, so it is skipped like any unknown id.
    let gid = app.group("mine", &[&mine]).await;
    let (s, body) = app
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": their_id}]}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(app.member_ids(&gid).await, vec![mine.clone()]);

    // `other` still sees its own user, untouched.
    let (s, body) = app
        .call_as(
            OTHER_TOKEN,
            "other",
            Method::GET,
            &format!("/Users/{their_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["userName"], json!("shared@example.com"));
    app.stop().await;
});

// ---------------------------------------------------------------- 404, 405, 501

both!(not_found_unknown_id, |app| {
    let missing = "2819c223-7f76-453a-919d-413861904646";
    for path in [
        format!("/Users/{missing}"),
        format!("/Groups/{missing}"),
        "/Users/not-a-uuid".into(),
    ] {
        let (s, body) = app.get(&path).await;
        assert_scim_error(s, &body, 404, None);
        let (s, body) = app
            .put(
                &path,
                json!({"schemas": [USER_URN], "userName": "x", "displayName": "x"}),
            )
            .await;
        assert_scim_error(s, &body, 404, None);
        let (s, body) = app
            .patch(
                &path,
                patch_op(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
            )
            .await;
        assert_scim_error(s, &body, 404, None);
        let (s, body) = app.delete(&path).await;
        assert_scim_error(s, &body, 404, None);
    }
    // A group id is not a user id.
    let gid = app.group("g", &[]).await;
    let (s, body) = app.get(&format!("/Users/{gid}")).await;
    assert_scim_error(s, &body, 404, None);
    app.stop().await;
});

#[tokio::test]
async fn not_found_unknown_endpoint() {
    let app = TestApp::spawn(Db::Sqlite).await;
    for path in ["/Widgets", "/Users/a/b", "/Groups/x/members"] {
        let (s, body) = app.get(path).await;
        assert_scim_error(s, &body, 404, None);
    }
    let url = format!("http://{}/scim/default/v3/Users", app.addr);
    let (s, _, body) = send_raw(&app, Method::GET, &url, &[], None).await;
    assert_scim_error(s, &body, 404, None);
    app.stop().await;
}

#[tokio::test]
async fn method_not_allowed_on_discovery_endpoints() {
    let app = TestApp::spawn(Db::Sqlite).await;
    for path in ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"] {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let body = (method != Method::DELETE).then(|| json!({"schemas": [USER_URN]}));
            let (s, body) = app.call(method.clone(), path, body).await;
            assert_scim_error(s, &body, 405, None);
        }
        let (s, body) = app.get(path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
    }
    // And on the collection endpoints for methods they do not take.
    let (s, body) = app.delete("/Users").await;
    assert_scim_error(s, &body, 405, None);
    app.stop().await;
}

#[tokio::test]
async fn not_implemented_me_and_bulk() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let (s, body) = app.get("/Me").await;
    assert_scim_error(s, &body, 501, None);
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{"method": "POST", "path": "/Users", "bulkId": "q1",
                        "data": {"schemas": [USER_URN], "userName": "bulk"}}],
    });
    let (s, body) = app.post("/Bulk", bulk).await;
    assert_scim_error(s, &body, 501, None);
    // The bulk operation was not carried out.
    let (_, list) = app.get("/Users").await;
    assert_eq!(list["totalResults"], json!(0), "{list}");
    app.stop().await;
}

// ---------------------------------------------------------------- 409

both!(conflict_uniqueness_on_post_put_and_patch, |app| {
    let (s, body) = app
        .post(
            "/Users",
            json!({"schemas": [USER_URN], "userName": "taken@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = app
        .post(
            "/Users",
            json!({"schemas": [USER_URN], "userName": "taken@example.com"}),
        )
        .await;
    assert_scim_error(s, &body, 409, Some("uniqueness"));

    let other = app.user("free@example.com").await;
    let (s, body) = app
        .put(
            &format!("/Users/{other}"),
            json!({"schemas": [USER_URN], "userName": "Taken@Example.com"}),
        )
        .await;
    assert_scim_error(s, &body, 409, Some("uniqueness"));
    let (s, body) = app
        .patch(
            &format!("/Users/{other}"),
            patch_op(json!([{"op": "replace", "path": "userName", "value": "TAKEN@example.com"}])),
        )
        .await;
    assert_scim_error(s, &body, 409, Some("uniqueness"));
    let (s, body) = app
        .patch(
            &format!("/Users/{other}"),
            patch_op(json!([{"op": "replace", "value": {"userName": "taken@example.com"}}])),
        )
        .await;
    assert_scim_error(s, &body, 409, Some("uniqueness"));
    let (_, after) = app.get(&format!("/Users/{other}")).await;
    assert_eq!(after["userName"], json!("free@example.com"));

    // Renaming a user onto its own name in another case is not a conflict.
    let (s, body) = app
        .patch(
            &format!("/Users/{other}"),
            patch_op(json!([{"op": "replace", "path": "userName", "value": "FREE@example.com"}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["userName"], json!("FREE@example.com"));
    app.stop().await;
});

both!(conflict_uniqueness_under_concurrent_creates, |app| {
    // Ten clients create the same user at once: one wins, the others get 409 (never a 500
    // from the store's unique constraint).
    let requests = (0..10).map(|i| {
        let name = if i % 2 == 0 {
            "race@example.com"
        } else {
            "RACE@example.com"
        };
        app.post("/Users", json!({"schemas": [USER_URN], "userName": name}))
    });
    let results = futures::future::join_all(requests).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{results:?}");
    for (s, body) in results.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_scim_error(*s, body, 409, Some("uniqueness"));
    }
    let (_, list) = app
        .get(&format!(
            "/Users?{}",
            query(&[("filter", "userName eq \"race@example.com\"")])
        ))
        .await;
    assert_eq!(list["totalResults"], json!(1), "{list}");
    app.stop().await;
});

// ---------------------------------------------------------------- 400

both!(invalid_filter, |app| {
    app.user("someone@example.com").await;
    let bad = [
        "userName eq",
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "userName eq \"a\" and",
        "userName eq a b c",
        "shoeSize eq \"x\"",
        "name.shoeSize eq \"x\"",
        "emails[shoe eq \"x\"]",
        "active gt true",
        "meta.lastModified gt \"yesterday\"",
    ];
    for f in bad {
        let (s, body) = app
            .get(&format!("/Users?{}", query(&[("filter", f)])))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{f}: {body}");
        assert_scim_error(s, &body, 400, Some("invalidFilter"));
    }
    let (s, body) = app
        .post(
            "/Users/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                   "filter": "userName eq"}),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("invalidFilter"));
    app.stop().await;
});

#[tokio::test]
async fn invalid_filter_nested_a_thousand_levels_is_400_not_500() {
    let app = TestApp::spawn(Db::Sqlite).await;
    app.user("deep@example.com").await;
    let depth = 1000;
    let f = format!(
        "{}userName eq \"deep@example.com\"{}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    let (s, body) = app
        .get(&format!("/Users?{}", query(&[("filter", &f)])))
        .await;
    assert_scim_error(s, &body, 400, Some("invalidFilter"));
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.len() < 400,
        "the detail quotes a prefix of the filter, not all of it: {detail}"
    );
    let f = format!("{}userName pr{}", "not (".repeat(depth), ")".repeat(depth));
    // Encoded, this one is longer than the URI limit (414); in a `.search` body it reaches the parser.
    let (s, body) = app
        .get(&format!("/Users?{}", query(&[("filter", &f)])))
        .await;
    assert_scim_error(s, &body, 414, None);
    let (s, body) = app.post("/Users/.search", json!({ "filter": f })).await;
    assert_scim_error(s, &body, 400, Some("invalidFilter"));
    // The server is still serving.
    let (s, _) = app.get("/Users").await;
    assert_eq!(s, StatusCode::OK);
    app.stop().await;
}

both!(invalid_value, |app| {
    let cases = [
        json!({"schemas": [USER_URN], "displayName": "no user name"}),
        json!({"schemas": [USER_URN], "userName": ""}),
        json!({"schemas": [USER_URN], "userName": "   "}),
        json!({"schemas": [USER_URN], "userName": 7}),
        json!({"schemas": [USER_URN], "userName": "e@example.com", "emails": 5}),
        json!({"schemas": [USER_URN], "userName": "e@example.com", "active": "maybe"}),
        json!({"schemas": [USER_URN], "userName": "e@example.com", "name": "Babs"}),
    ];
    for body in cases {
        let (s, resp) = app.post("/Users", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert_scim_error(s, &resp, 400, Some("invalidValue"));
    }
    let (s, body) = app
        .post(
            "/Groups",
            json!({"schemas": [GROUP_URN], "displayName": "g", "members": 5}),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("invalidValue"));
    // Nothing was created.
    let (_, list) = app.get("/Users").await;
    assert_eq!(list["totalResults"], json!(0), "{list}");

    let id = app.user("e@example.com").await;
    let (s, body) = app
        .put(
            &format!("/Users/{id}"),
            json!({"schemas": [USER_URN], "displayName": "no name"}),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("invalidValue"));
    let (s, body) = app
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "emails", "value": 5}])),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("invalidValue"));
    let (s, body) = app
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "remove", "path": "userName"}])),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("invalidValue"));
    app.stop().await;
});

both!(invalid_path, |app| {
    let id = app.user("p@example.com").await;
    for path in [
        "name.",
        "shoeSize",
        "name.shoeSize",
        "emails[type eq",
        "a.b.c",
        "urn:example:custom:thing",
    ] {
        let (s, body) = app
            .patch(
                &format!("/Users/{id}"),
                patch_op(json!([{"op": "replace", "path": path, "value": "x"}])),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_scim_error(s, &body, 400, Some("invalidPath"));
    }
    let gid = app.group("g", &[]).await;
    let (s, body) = app
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([{"op": "replace", "path": "shoeSize", "value": "x"}])),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("invalidPath"));
    // A value filter nested far too deep is refused, not recursed into.
    let deep = format!(
        "emails[{}type eq \"work\"{}]",
        "(".repeat(1000),
        ")".repeat(1000)
    );
    let (s, body) = app
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "remove", "path": deep}])),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("invalidPath"));
    app.stop().await;
});

both!(no_target, |app| {
    let id = app.user("n@example.com").await;
    for op in [json!({"op": "remove"}), json!({"op": "Remove", "path": ""})] {
        let (s, body) = app
            .patch(&format!("/Users/{id}"), patch_op(json!([op])))
            .await;
        assert_scim_error(s, &body, 400, Some("noTarget"));
    }
    let gid = app.group("g", &[&id]).await;
    let (s, body) = app
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([{"op": "remove"}])),
        )
        .await;
    assert_scim_error(s, &body, 400, Some("noTarget"));
    assert_eq!(app.member_ids(&gid).await, vec![id]);
    app.stop().await;
});

both!(mutability, |app| {
    let id = app.user("m@example.com").await;
    let cases = [
        json!({"op": "replace", "path": "id", "value": "00000000-0000-0000-0000-000000000000"}),
        json!({"op": "replace", "path": "meta.created", "value": "2000-01-01T00:00:00Z"}),
        json!({"op": "add", "path": "groups", "value": [{"value": "g"}]}),
    ];
    for op in cases {
        let (s, body) = app
            .patch(&format!("/Users/{id}"), patch_op(json!([op.clone()])))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{op}: {body}");
        assert_scim_error(s, &body, 400, Some("mutability"));
    }
    let (s, body) = app.get(&format!("/Users/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["id"], json!(id));
    app.stop().await;
});

both!(invalid_syntax, |app| {
    let url = format!("{}/Users", app.base("default"));
    let auth = format!("Bearer {TOKEN}");
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/scim+json"),
    ];
    for raw in [
        "{\"userName\": ",
        "not json",
        "[]",
        "[{\"userName\": \"a\"}]",
        "\"a\"",
        "42",
        "",
    ] {
        let (s, _, body) = send_raw(&app, Method::POST, &url, &h, Some(raw.to_owned())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{raw:?}: {body}");
        assert_scim_error(s, &body, 400, Some("invalidSyntax"));
    }
    let id = app.user("s@example.com").await;
    let cases = [
        json!({"schemas": [PATCH_URN]}),
        json!({"schemas": [PATCH_URN], "Operations": []}),
        json!({"schemas": [PATCH_URN], "Operations": {"op": "add"}}),
        json!({"schemas": [PATCH_URN], "Operations": [{"op": "move", "path": "title"}]}),
        json!({"schemas": [PATCH_URN], "Operations": [{"path": "title", "value": "x"}]}),
    ];
    for body in cases {
        let (s, resp) = app.patch(&format!("/Users/{id}"), body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert_scim_error(s, &resp, 400, Some("invalidSyntax"));
    }
    let purl = format!("{url}/{id}");
    let (s, _, body) = send_raw(&app, Method::PATCH, &purl, &h, Some("[]".into())).await;
    assert_scim_error(s, &body, 400, Some("invalidSyntax"));
    app.stop().await;
});

// ---------------------------------------------------------------- 412, 304-adjacent

both!(precondition_failed_on_stale_if_match, |app| {
    let (s, h, created) = send(
        &app,
        Method::POST,
        "/Users",
        &[],
        Some(json!({"schemas": [USER_URN], "userName": "etag@example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let first = header(&h, "etag").to_owned();
    assert_eq!(json!(first), created["meta"]["version"]);

    // A change moves the version on.
    let (s, h, changed) = send(
        &app,
        Method::PATCH,
        &format!("/Users/{id}"),
        &[("if-match", &first)],
        Some(patch_op(
            json!([{"op": "replace", "path": "displayName", "value": "One"}]),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{changed}");
    let current = header(&h, "etag").to_owned();
    assert_eq!(json!(current), changed["meta"]["version"]);
    assert_ne!(current, first);
    let (s, h, got) = send(&app, Method::GET, &format!("/Users/{id}"), &[], None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(header(&h, "etag"), current);
    assert_eq!(json!(current), got["meta"]["version"]);

    // The stale version is refused by PATCH, PUT and DELETE, and nothing changes.
    let stale = first.as_str();
    for stale in [stale, "W/\"1\"", "\"999\"", "garbage"] {
        if stale == current {
            continue;
        }
        let (s, _, body) = send(
            &app,
            Method::PATCH,
            &format!("/Users/{id}"),
            &[("if-match", stale)],
            Some(patch_op(
                json!([{"op": "replace", "path": "displayName", "value": "Stale"}]),
            )),
        )
        .await;
        assert_scim_error(s, &body, 412, None);
        let (s, _, body) = send(
            &app,
            Method::PUT,
            &format!("/Users/{id}"),
            &[("if-match", stale)],
            Some(
                json!({"schemas": [USER_URN], "userName": "etag@example.com",
                        "displayName": "Stale"}),
            ),
        )
        .await;
        assert_scim_error(s, &body, 412, None);
        let (s, _, body) = send(
            &app,
            Method::DELETE,
            &format!("/Users/{id}"),
            &[("if-match", stale)],
            None,
        )
        .await;
        assert_scim_error(s, &body, 412, None);
    }
    let (s, after) = app.get(&format!("/Users/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(after, got);

    // The current version (and `*`) succeed.
    let (s, h, body) = send(
        &app,
        Method::PUT,
        &format!("/Users/{id}"),
        &[("if-match", &current)],
        Some(json!({"schemas": [USER_URN], "userName": "etag@example.com", "displayName": "Two"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["displayName"], json!("Two"));
    let newest = header(&h, "etag").to_owned();
    assert_eq!(json!(newest), body["meta"]["version"]);
    let (s, _, body) = send(
        &app,
        Method::PATCH,
        &format!("/Users/{id}"),
        &[("if-match", "*")],
        Some(patch_op(
            json!([{"op": "replace", "path": "displayName", "value": "Three"}]),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let newest = body["meta"]["version"].as_str().unwrap().to_owned();
    let (s, _, body) = send(
        &app,
        Method::DELETE,
        &format!("/Users/{id}"),
        &[("if-match", &newest)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, body) = app.get(&format!("/Users/{id}")).await;
    assert_scim_error(s, &body, 404, None);

    // Groups too.
    let gid = app.group("etag-group", &[]).await;
    let (_, h, g) = send(&app, Method::GET, &format!("/Groups/{gid}"), &[], None).await;
    let gv = header(&h, "etag").to_owned();
    assert_eq!(json!(gv), g["meta"]["version"]);
    let (s, _, body) = send(
        &app,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        &[("if-match", &gv)],
        Some(patch_op(
            json!([{"op": "replace", "path": "displayName", "value": "renamed"}]),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, body) = send(
        &app,
        Method::DELETE,
        &format!("/Groups/{gid}"),
        &[("if-match", &gv)],
        None,
    )
    .await;
    assert_scim_error(s, &body, 412, None);
    let (s, body) = app.get(&format!("/Groups/{gid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["displayName"], json!("renamed"));
    app.stop().await;
});

// ---------------------------------------------------------------- 413, 415

/// POSTs a JSON user whose body is sent as `chunks` chunks of about `size` bytes each, with
/// `Transfer-Encoding: chunked` and no `Content-Length` (raw HTTP/1.1: reqwest cannot stream
/// without its `stream` feature).
async fn chunked_post(
    app: &TestApp,
    path: &str,
    chunks: usize,
    size: usize,
) -> (StatusCode, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut parts = vec![format!(
        "{{\"schemas\": [\"{USER_URN}\"], \"userName\": \"chunked@example.com\", \"displayName\": \""
    )];
    parts.extend((0..chunks).map(|_| "y".repeat(size)));
    parts.push("\"}".to_owned());
    let mut req = format!(
        "POST /scim/default/v2{path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/scim+json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        app.addr
    );
    for p in &parts {
        req.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
    }
    req.push_str("0\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // The server may answer (and close) before reading everything; a failed write is fine.
    let _ = stream.write_all(req.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    let code: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (StatusCode::from_u16(code).unwrap(), json)
}

#[tokio::test]
async fn payload_too_large() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| s.server.max_body_bytes = 2048).await;
    let big = json!({
        "schemas": [USER_URN],
        "userName": "big@example.com",
        "displayName": "x".repeat(10 * 1024),
    });
    let (s, body) = app.post("/Users", big).await;
    assert_scim_error(s, &body, 413, None);
    // Without Content-Length (chunked transfer encoding), the limit holds too.
    let (s, body) = chunked_post(&app, "/Users", 10, 1024).await;
    assert_scim_error(s, &body, 413, None);
    // Nothing was created; a small body still works.
    let (_, list) = app.get("/Users").await;
    assert_eq!(list["totalResults"], json!(0), "{list}");
    app.user("small@example.com").await;
    app.stop().await;
}

#[tokio::test]
async fn unsupported_media_type() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let url = format!("{}/Users", app.base("default"));
    let auth = format!("Bearer {TOKEN}");
    let body = json!({"schemas": [USER_URN], "userName": "text@example.com"}).to_string();
    for ct in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
    ] {
        let (s, _, resp) = send_raw(
            &app,
            Method::POST,
            &url,
            &[("authorization", &auth), ("content-type", ct)],
            Some(body.clone()),
        )
        .await;
        assert_scim_error(s, &resp, 415, None);
    }
    let (_, list) = app.get("/Users").await;
    assert_eq!(list["totalResults"], json!(0), "{list}");
    app.stop().await;
}

// ---------------------------------------------------------------- all or nothing

both!(nothing_half_written_on_failed_patch, |app| {
    let (s, created) = app
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN],
                "userName": "whole@example.com",
                "displayName": "Whole",
                "emails": [{"value": "whole@example.com", "type": "work", "primary": true}],
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, before) = app.get(&format!("/Users/{id}")).await;

    let failing = [
        json!([
            {"op": "replace", "path": "displayName", "value": "Half"},
            {"op": "replace", "path": "id", "value": "nope"},
        ]),
        json!([
            {"op": "add", "path": "title", "value": "Boss"},
            {"op": "remove", "path": "emails"},
            {"op": "replace", "path": "shoeSize", "value": 44},
        ]),
        json!([
            {"op": "replace", "path": "active", "value": false},
            {"op": "remove"},
        ]),
    ];
    for ops in failing {
        let (s, body) = app
            .patch(&format!("/Users/{id}"), patch_op(ops.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{ops}: {body}");
        let (_, after) = app.get(&format!("/Users/{id}")).await;
        assert_eq!(after, before, "after {ops}");
        assert_eq!(after["meta"]["version"], before["meta"]["version"]);
    }

    let u1 = app.user("m1@example.com").await;
    let u2 = app.user("m2@example.com").await;
    let gid = app.group("all-or-nothing", &[&u1]).await;
    let (_, gbefore) = app.get(&format!("/Groups/{gid}")).await;
    let failing = [
        json!([{"op": "add", "path": "members", "value": [{"value": u2}, {"value": gid}]}]),
        json!([
            {"op": "add", "path": "members", "value": [{"value": u2}]},
            {"op": "add", "path": "members", "value": [{"value": gid}]},
        ]),
        json!([
            {"op": "replace", "path": "displayName", "value": "renamed"},
            {"op": "remove", "path": "members[shoe eq \"x\"]"},
        ]),
    ];
    for ops in failing {
        let (s, body) = app
            .patch(&format!("/Groups/{gid}"), patch_op(ops.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{ops}: {body}");
        assert_eq!(app.member_ids(&gid).await, vec![u1.clone()], "after {ops}");
        let (_, gafter) = app.get(&format!("/Groups/{gid}")).await;
        assert_eq!(gafter, gbefore, "after {ops}");
    }
    // The user u2 did not gain the group either.
    let (_, u2doc) = app.get(&format!("/Users/{u2}")).await;
    assert!(u2doc.get("groups").is_none(), "{u2doc}");
    app.stop().await;
});

// An id that names no user or group of the connection can grant nothing: it is skipped (and
// logged), and the rest of the change applies. scim-sanity requires this; so do IdPs whose
// provisioning of one user failed.
both!(unknown_member_ids_are_skipped_not_refused, |app| {
    let u1 = app.user("k1@example.com").await;
    let u2 = app.user("k2@example.com").await;
    let gid = app.group("skip-unknown", &[&u1]).await;
    let missing = "2819c223-7f76-453a-919d-413861904646";
    let (s, body) = app
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": u2}, {"value": missing}]}])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let mut expect = vec![u1.clone(), u2.clone()];
    expect.sort();
    assert_eq!(app.member_ids(&gid).await, expect);
    app.stop().await;
});
