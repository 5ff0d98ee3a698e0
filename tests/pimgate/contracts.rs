//! Contract snapshots (`insta`): what clients and the PIM read from pimgate, byte for byte.
//! A change to a discovery document, the claims document or an error body shows up here as
//! a diff to review (`tests/pimgate/snapshots/`), never silently.
//!
//! Ids the server generates are redacted; everything else is as served. The base URL is a
//! configured `public_url`, so URLs do not depend on the test's port.

use insta::assert_json_snapshot;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::access::{ACCESS, access_config};
use crate::helpers::{
    ACCESS_TOKEN, Db, ENTERPRISE_URN, OTHER_TOKEN, TOKEN, TestApp, patch_op, send, send_raw,
};

const PUBLIC_URL: &str = "https://pimgate.example.com";

async fn app() -> TestApp {
    TestApp::spawn_with(Db::Sqlite, |s| {
        s.server.public_url = Some(PUBLIC_URL.into());
        s.access = access_config(ACCESS);
    })
    .await
}

/// Status, content type and body of one exchange.
fn exchange(status: StatusCode, headers: &reqwest::header::HeaderMap, body: Value) -> Value {
    json!({
        "status": status.as_u16(),
        "contentType": headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        "body": body,
    })
}

#[tokio::test]
async fn discovery_documents() {
    let app = app().await;
    for (name, path) in [
        ("service_provider_config", "/ServiceProviderConfig"),
        ("resource_types", "/ResourceTypes"),
        ("resource_type_user", "/ResourceTypes/User"),
        ("schemas", "/Schemas"),
        (
            "schema_group",
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group",
        ),
    ] {
        let (s, h, body) = send(&app, Method::GET, path, &[], None).await;
        assert_json_snapshot!(format!("discovery_{name}"), exchange(s, &h, body));
    }
    app.stop().await;
}

#[tokio::test]
async fn claims_document() {
    let app = app().await;
    let (s, body) = app
        .post(
            "/Users",
            json!({"userName": "claims@example.com", "externalId": "ext-claims",
                   ENTERPRISE_URN: {"department": "Marketing"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let user = body["id"].as_str().unwrap().to_owned();
    let group = app.group("PIM Editors", &[&user]).await;
    let url = |q: &str| {
        format!(
            "http://{}/access/v1/connections/default/users/{user}/claims{q}",
            app.addr
        )
    };
    let auth = format!("Bearer {ACCESS_TOKEN}");
    for (name, q) in [("plain", ""), ("explained", "?explain=true")] {
        let (s, h, body) = send_raw(
            &app,
            Method::GET,
            &url(q),
            &[("authorization", &auth)],
            None,
        )
        .await;
        let text = body.to_string();
        assert!(text.contains(&user) && (q.is_empty() || text.contains(&group)));
        assert_json_snapshot!(format!("claims_{name}"), exchange(s, &h, body), {
            ".body.sub" => "[user id]",
            ".body.provenance.**.group.id" => "[group id]",
        });
    }
    app.stop().await;
}

/// A name, a method, a URL, extra headers and a body.
type Case = (
    &'static str,
    Method,
    String,
    Vec<(&'static str, String)>,
    Option<String>,
);

#[tokio::test]
async fn scim_error_bodies() {
    let app = app().await;
    let user = app.user("taken@example.com").await;
    let base = app.base("default");
    let cases: Vec<Case> = vec![
        (
            "401_no_token",
            Method::GET,
            format!("{base}/Users"),
            vec![],
            None,
        ),
        (
            "403_other_connection",
            Method::GET,
            format!("{base}/Users"),
            vec![("authorization", format!("Bearer {OTHER_TOKEN}"))],
            None,
        ),
        (
            "404_unknown_id",
            Method::GET,
            format!("{base}/Users/nobody"),
            vec![],
            None,
        ),
        (
            "404_unknown_endpoint",
            Method::GET,
            format!("{base}/Nothing"),
            vec![],
            None,
        ),
        (
            "405_discovery_write",
            Method::POST,
            format!("{base}/Schemas"),
            vec![],
            Some("{}".into()),
        ),
        (
            "409_uniqueness",
            Method::POST,
            format!("{base}/Users"),
            vec![],
            Some(json!({"userName": "TAKEN@example.com"}).to_string()),
        ),
        (
            "412_stale_if_match",
            Method::PUT,
            format!("{base}/Users/{user}"),
            vec![("if-match", "W/\"7\"".into())],
            Some(json!({"userName": "taken@example.com"}).to_string()),
        ),
        (
            "413_too_large",
            Method::POST,
            format!("{base}/Users"),
            vec![],
            Some(format!(
                "{{\"userName\":\"{}\"}}",
                "x".repeat(2 * 1024 * 1024)
            )),
        ),
        (
            "415_media_type",
            Method::POST,
            format!("{base}/Users"),
            vec![("content-type", "text/plain".into())],
            Some("userName=x".into()),
        ),
        (
            "400_invalid_filter_syntax",
            Method::GET,
            format!("{base}/Users?filter=userName%20eq"),
            vec![],
            None,
        ),
        (
            "400_invalid_filter_unknown_attribute",
            Method::GET,
            format!("{base}/Users?filter=shoeSize%20eq%20%2244%22"),
            vec![],
            None,
        ),
        (
            "400_invalid_value",
            Method::POST,
            format!("{base}/Users"),
            vec![],
            Some(json!({"userName": "v@example.com", "active": "yes"}).to_string()),
        ),
        (
            "400_invalid_path",
            Method::PATCH,
            format!("{base}/Users/{user}"),
            vec![],
            Some(patch_op(json!([{"op": "replace", "path": "shoeSize", "value": 1}])).to_string()),
        ),
        (
            "400_no_target",
            Method::PATCH,
            format!("{base}/Users/{user}"),
            vec![],
            Some(patch_op(json!([{"op": "remove"}])).to_string()),
        ),
        (
            "400_mutability",
            Method::PATCH,
            format!("{base}/Users/{user}"),
            vec![],
            Some(patch_op(json!([{"op": "replace", "path": "id", "value": "x"}])).to_string()),
        ),
        (
            "400_invalid_syntax",
            Method::POST,
            format!("{base}/Users"),
            vec![],
            Some("{not json".into()),
        ),
        (
            "400_too_many_operations",
            Method::PATCH,
            format!("{base}/Users/{user}"),
            vec![],
            Some(
                patch_op(Value::Array(
                    (0..1001)
                        .map(|_| json!({"op": "remove", "path": "title"}))
                        .collect(),
                ))
                .to_string(),
            ),
        ),
        (
            "501_bulk",
            Method::POST,
            format!("{base}/Bulk"),
            vec![],
            Some("{}".into()),
        ),
    ];
    for (name, method, url, extra, body) in cases {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        let auth = format!("Bearer {TOKEN}");
        if name != "401_no_token" && !extra.iter().any(|(k, _)| *k == "authorization") {
            headers.push(("authorization", &auth));
        }
        if body.is_some() && !extra.iter().any(|(k, _)| *k == "content-type") {
            headers.push(("content-type", "application/scim+json"));
        }
        for (k, v) in &extra {
            headers.push((k, v));
        }
        let (s, h, body) = send_raw(&app, method, &url, &headers, body).await;
        assert_json_snapshot!(format!("scim_error_{name}"), exchange(s, &h, body));
    }
    app.stop().await;
}

#[tokio::test]
async fn access_api_error_bodies() {
    let app = app().await;
    let root = format!("http://{}/access/v1/connections", app.addr);
    let access = format!("Bearer {ACCESS_TOKEN}");
    let scim = format!("Bearer {TOKEN}");
    for (name, url, auth) in [
        (
            "401_no_token",
            format!("{root}/default/users/x/claims"),
            None,
        ),
        (
            "401_scim_token",
            format!("{root}/default/users/x/claims"),
            Some(&scim),
        ),
        (
            "404_connection",
            format!("{root}/nosuch/users/x/claims"),
            Some(&access),
        ),
        (
            "404_user",
            format!("{root}/default/users/nobody/claims"),
            Some(&access),
        ),
        (
            "400_lookup",
            format!("{root}/default/claims?userName=a&externalId=b"),
            Some(&access),
        ),
    ] {
        let headers: Vec<(&str, &str)> = auth
            .map(|a| vec![("authorization", a.as_str())])
            .unwrap_or_default();
        let (s, h, body) = send_raw(&app, Method::GET, &url, &headers, None).await;
        assert_json_snapshot!(format!("access_error_{name}"), exchange(s, &h, body));
    }
    app.stop().await;
}
