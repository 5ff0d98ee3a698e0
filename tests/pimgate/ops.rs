//! Operations: health, readiness, request ids, graceful shutdown, change events.

use pimgate::directory::events::Change;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, TestApp};

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = TestApp::spawn(Db::Sqlite).await;
    for path in ["/healthz", "/readyz"] {
        let resp = app
            .client
            .get(format!("http://{}{path}", app.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_answer_in_the_openmetrics_text_format() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let resp = app
        .client
        .get(format!("http://{}/metrics", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = resp.text().await.unwrap();
    let build = format!(
        "pimgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn readyz_fails_when_the_store_is_gone() {
    let app = TestApp::spawn(Db::Sqlite).await;
    app.running().store().close().await;
    let resp = app
        .client
        .get(format!("http://{}/readyz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let resp = app
        .client
        .get(format!("http://{}/healthz", app.addr))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-request-id").is_some());
    let resp = app
        .client
        .get(format!("http://{}/healthz", app.addr))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    app.stop().await;
}

#[tokio::test]
async fn changes_emit_events_after_commit() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let mut events = app.events();
    let u = app.user("eve").await;
    let e = events.recv().await.unwrap();
    assert_eq!(
        (e.change, e.users.clone()),
        (Change::UserCreated, vec![u.clone()])
    );
    let g = app.group("G", &[]).await;
    assert_eq!(events.recv().await.unwrap().change, Change::GroupCreated);
    let (s, _) = app
        .patch(
            &format!("/Groups/{g}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "add", "path": "members", "value": [{"value": u}]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let e = events.recv().await.unwrap();
    assert_eq!(e.change, Change::MembershipChanged);
    assert_eq!(e.users, vec![u.clone()]);
    assert_eq!(e.groups, vec![g.clone()]);
    // A failed change emits nothing.
    let (s, _) = app.post("/Users", json!({"userName": "EVE"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = app.delete(&format!("/Users/{u}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let e = events.recv().await.unwrap();
    assert_eq!((e.change, e.users), (Change::UserDeleted, vec![u]));
    assert_eq!(e.groups, vec![g]);
    app.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_stops_listening() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let addr = app.addr;
    app.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
