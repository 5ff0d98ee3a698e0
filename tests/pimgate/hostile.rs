//! Hostile load, bad input and faults: one test per finding of the probe that asked for the
//! bounds (slow and idle clients, a connection flood, input that reached the database as a
//! 500, a PostgreSQL restart under write load, the delete/add membership race, shared
//! tokens, a hostile `Host`, requests that outlive their deadline), and a log output that
//! stops being read.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both;
use crate::helpers::{
    ACCESS_TOKEN, Db, ENTERPRISE_URN, GROUP_URN, OwnPostgres, Process, TOKEN, TestApp, TestDb,
    USER_URN, assert_scim_error, patch_op, query, send, send_raw,
};

// ------------------------------------------------------------------ connections

/// Reads until the server closes the connection (or `limit` passes); what was read.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_header_client_is_closed() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.server.header_read_timeout_seconds = 1;
    })
    .await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    // Half a request head, then nothing.
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let closed = read_until_closed(&mut slow, Duration::from_secs(20)).await;
    assert!(
        closed.is_some(),
        "the server must close a client that stops halfway through its headers"
    );
    // A silent connection (not a byte sent) owes its head too.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(20))
            .await
            .is_some()
    );
    // Everyone else is served meanwhile.
    let (s, _) = app.get("/Users").await;
    assert_eq!(s, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.server.idle_timeout_seconds = 1;
        s.server.header_read_timeout_seconds = 30;
    })
    .await;
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive after the answer, then closed for idling.
    let rest = read_until_closed(&mut conn, Duration::from_secs(20)).await;
    assert!(
        rest.is_some(),
        "an idle kept-alive connection must be closed"
    );
    app.stop().await;
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

#[tokio::test]
async fn three_hundred_idle_sockets_while_healthz_answers() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let user = app.user("flood@example.com").await;
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        if i % 2 == 0 {
            // Half send a partial head, half nothing at all.
            s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        }
        idle.push(s);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for path in ["/healthz", "/readyz"] {
        let r = client
            .get(format!("http://{}{path}", app.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path} answers under the flood");
    }
    let r = client
        .get(format!(
            "http://{}/access/v1/connections/default/users/{user}/claims",
            app.addr
        ))
        .bearer_auth(ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the claims API answers too");
    drop(idle);
    app.stop().await;
}

#[tokio::test]
async fn connection_cap_holds_and_probes_answer_once_slots_free() {
    const CAP: usize = 40;
    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.server.max_connections = CAP;
        s.server.header_read_timeout_seconds = 1;
    })
    .await;
    let before = open_descriptors();
    let mut flood = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        flood.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 300 descriptors are the test's own client ends; the server holds at most CAP more
    // (the rest wait in the kernel's backlog, unaccepted).
    let held = open_descriptors().saturating_sub(before + 300);
    assert!(
        held <= CAP + 8,
        "the server holds {held} descriptors for 300 clients with a cap of {CAP}"
    );
    // Slow clients are closed at the header timeout; the probe is then accepted and served.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = client
        .get(format!("http://{}/healthz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(flood);
    app.stop().await;
}

#[tokio::test]
async fn over_the_request_limit_is_503_with_retry_after_and_probes_are_exempt() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.server.max_concurrent_requests = 1;
    })
    .await;
    // Hold the one slot with a request whose body never finishes arriving.
    let mut held = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /scim/default/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n{{"
    );
    held.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, headers, body) = send(&app, Method::GET, "/Users", &[], None).await;
    assert_scim_error(s, &body, 503, None);
    assert_eq!(headers["retry-after"], "1");
    let (s, headers, body) = send_raw(
        &app,
        Method::GET,
        &format!(
            "http://{}/access/v1/connections/default/claims?userName=x",
            app.addr
        ),
        &[("authorization", &format!("Bearer {ACCESS_TOKEN}"))],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "overloaded", "{body}");
    assert_eq!(headers["retry-after"], "1");
    let (s, _, _) = send_raw(
        &app,
        Method::GET,
        &format!("http://{}/healthz", app.addr),
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "probes are never refused");
    drop(held);
    app.stop().await;
}

// ------------------------------------------------------------------ framework errors

#[tokio::test]
async fn framework_errors_have_structured_bodies() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let base = format!("http://{}", app.addr);
    let long = "a".repeat(9000);
    // 414 and 431, under /scim (RFC 7644 bodies) and elsewhere (JSON error bodies).
    let (s, _, body) = send(&app, Method::GET, &format!("/Users?x={long}"), &[], None).await;
    assert_scim_error(s, &body, 414, None);
    let big = "b".repeat(17_000);
    let (s, _, body) = send(&app, Method::GET, "/Users", &[("x-big", &big)], None).await;
    assert_scim_error(s, &body, 431, None);
    let (s, _, body) = send_raw(
        &app,
        Method::GET,
        &format!("{base}/healthz?x={long}"),
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::URI_TOO_LONG);
    assert_eq!(body["error"], "uri_too_long", "{body}");
    // 404 and 405 outside SCIM.
    let (s, _, body) = send_raw(&app, Method::GET, &format!("{base}/nope"), &[], None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found", "{body}");
    let (s, _, body) = send_raw(&app, Method::POST, &format!("{base}/healthz"), &[], None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    // The access API's own path and query errors.
    let auth = format!("Bearer {ACCESS_TOKEN}");
    let (s, _, body) = send_raw(
        &app,
        Method::GET,
        &format!("{base}/access/v1/connections/default/users/%FF%FE/claims"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    let (s, _, body) = send_raw(
        &app,
        Method::GET,
        &format!("{base}/access/v1/connections/default/claims?userName=a&userName=b"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    app.stop().await;
}

// ------------------------------------------------------------------ input classes

fn user(extra: Value) -> Value {
    let mut u = json!({"schemas": [USER_URN, ENTERPRISE_URN], "userName": "input@example.com"});
    if let (Value::Object(u), Value::Object(extra)) = (&mut u, extra) {
        u.extend(extra);
    }
    u
}

fn emails(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"value": format!("a{i}@example.com")}))
            .collect(),
    )
}

// Each class of input the probe found answered 500 (or that failed on one store only) is
// a 400 naming the attribute and the limit, on both stores, and nothing is written.
both!(each_input_class_is_400_on_both_stores, |app| {
    let nul = "a\u{0}b";
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "NUL in userName",
            user(json!({"userName": nul})),
            "userName",
        ),
        (
            "NUL in displayName",
            user(json!({"displayName": nul})),
            "displayName",
        ),
        (
            "NUL in externalId",
            user(json!({"externalId": nul})),
            "externalId",
        ),
        (
            "NUL in an extension attribute",
            user(json!({ENTERPRISE_URN: {"department": nul}})),
            "department",
        ),
        (
            "a bell in a title",
            user(json!({"title": "x\u{7}"})),
            "title",
        ),
        (
            "a 2,700-character userName",
            user(json!({"userName": format!("{}@example.com", "u".repeat(2700))})),
            "longer than 256",
        ),
        (
            "a 10 KB externalId",
            user(json!({"externalId": "e".repeat(10 * 1024)})),
            "externalId is longer than 256",
        ),
        (
            "12,000 emails",
            user(json!({"emails": emails(12_000)})),
            "at most 100 values",
        ),
        (
            "25,000 emails",
            user(json!({"emails": emails(25_000)})),
            "at most 100 values",
        ),
    ];
    for (what, body, names) in cases {
        let (s, resp) = app.post("/Users", body).await;
        assert_scim_error(s, &resp, 400, Some("invalidValue"));
        let detail = resp["detail"].as_str().unwrap();
        assert!(detail.contains(names), "{what}: {detail}");
    }
    // Nothing was written.
    let (_, list) = app.get("/Users").await;
    assert_eq!(list["totalResults"], 0, "{list}");

    // The same limits hold for PUT and PATCH.
    let id = app.user("input@example.com").await;
    let (s, resp) = app
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "add", "path": "emails", "value": emails(101)}])),
        )
        .await;
    assert_scim_error(s, &resp, 400, Some("invalidValue"));
    let (s, resp) = app
        .put(&format!("/Users/{id}"), user(json!({"nickName": nul})))
        .await;
    assert_scim_error(s, &resp, 400, Some("invalidValue"));

    // Groups: a NUL display name, and a member id no record can have.
    let (s, resp) = app
        .post(
            "/Groups",
            json!({"schemas": [GROUP_URN], "displayName": nul}),
        )
        .await;
    assert_scim_error(s, &resp, 400, Some("invalidValue"));
    let (s, resp) = app
        .post(
            "/Groups",
            json!({"schemas": [GROUP_URN], "displayName": "G", "members": [{"value": nul}]}),
        )
        .await;
    assert_scim_error(s, &resp, 400, Some("invalidValue"));

    // Filters: 1,000 `or` terms work on both stores; 1,001 are refused naming the limit.
    let terms = |n: usize| {
        (0..n)
            .map(|i| format!("userName eq \"u{i}@example.com\""))
            .chain(std::iter::once(
                "userName eq \"input@example.com\"".to_owned(),
            ))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let (s, resp) = app
        .post("/Users/.search", json!({"filter": terms(999)}))
        .await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    assert_eq!(resp["totalResults"], 1, "{resp}");
    let (s, resp) = app
        .post("/Users/.search", json!({"filter": terms(1000)}))
        .await;
    assert_scim_error(s, &resp, 400, Some("invalidFilter"));
    assert!(resp["detail"].as_str().unwrap().contains("1000"), "{resp}");
    // A 50,001-character `co` pattern, and a 512-term value-path filter.
    let pattern = "p".repeat(50_001);
    let (s, resp) = app
        .post(
            "/Users/.search",
            json!({"filter": format!("userName co \"{pattern}\"")}),
        )
        .await;
    assert_scim_error(s, &resp, 400, Some("invalidFilter"));
    assert!(resp["detail"].as_str().unwrap().contains("256"), "{resp}");
    let inner = (0..512)
        .map(|i| format!("value co \"x{i}\""))
        .collect::<Vec<_>>()
        .join(" or ");
    let (s, resp) = app
        .post(
            "/Users/.search",
            json!({"filter": format!("emails[{inner}]")}),
        )
        .await;
    assert_scim_error(s, &resp, 400, Some("invalidFilter"));
    assert!(resp["detail"].as_str().unwrap().contains("16"), "{resp}");
    let (s, resp) = app
        .get(&format!(
            "/Users?{}",
            query(&[("filter", "userName eq \"a\u{0}b\"")])
        ))
        .await;
    assert_scim_error(s, &resp, 400, Some("invalidFilter"));

    // Ids no record can have are simply not found.
    let (s, resp) = app.get("/Users/a%00b").await;
    assert_scim_error(s, &resp, 404, None);
    let (s, resp) = app.delete(&format!("/Groups/{}", "x".repeat(300))).await;
    assert_scim_error(s, &resp, 404, None);
    let (s, _, body) = send_raw(
        &app,
        Method::GET,
        &format!(
            "http://{}/access/v1/connections/default/claims?userName=a%00b",
            app.addr
        ),
        &[("authorization", &format!("Bearer {ACCESS_TOKEN}"))],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");

    // And the server is still serving.
    let (s, _) = app.get(&format!("/Users/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    app.stop().await;
});

// Case-insensitive filters on document attributes fold Unicode on both stores.
both!(
    case_insensitive_filters_fold_unicode_on_both_stores,
    |app| {
        let (s, body) = app
            .post(
                "/Users",
                user(
                    json!({"userName": "zoe@example.com", "title": "Ärztin", "nickName": "Ωmega"}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        for filter in [
            "title eq \"äRZTIN\"",
            "title sw \"ÄR\"",
            "title co \"RZT\"",
            "title ew \"TIN\"",
            "nickName eq \"ωMEGA\"",
            "userName eq \"ZOE@EXAMPLE.COM\"",
        ] {
            let (s, list) = app
                .get(&format!("/Users?{}", query(&[("filter", filter)])))
                .await;
            assert_eq!(s, StatusCode::OK, "{list}");
            assert_eq!(list["totalResults"], 1, "{filter}: {list}");
        }
        // Patterns are literal: regular-expression and LIKE syntax in a value matches itself.
        for filter in ["title co \".*\"", "title co \"%\"", "title sw \"_\""] {
            let (_, list) = app
                .get(&format!("/Users?{}", query(&[("filter", filter)])))
                .await;
            assert_eq!(list["totalResults"], 0, "{filter}: {list}");
        }
        app.stop().await;
    }
);

// ------------------------------------------------------------------ integrity

// A DELETE of a user racing a PATCH that adds it to a group never leaves a membership row
// naming the deleted user, and `member_count` stays exact.
both!(delete_add_race_leaves_no_ghost_members, |app| {
    let group = app.group("Race", &[]).await;
    for round in 0..60 {
        let u = app.user(&format!("race{round}@example.com")).await;
        let (group_path, user_path) = (format!("/Groups/{group}"), format!("/Users/{u}"));
        let add = app.patch(
            &group_path,
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": u}]}])),
        );
        let del = app.delete(&user_path);
        let ((sa, ba), (sd, bd)) = tokio::join!(add, del);
        assert!(sa.is_success() || sa == StatusCode::NOT_FOUND, "{sa}: {ba}");
        assert!(sd.is_success(), "{sd}: {bd}");
    }
    let (s, body) = app.get(&format!("/Groups/{group}")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        body.get("members")
            .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty)),
        "every member was deleted: {body}"
    );
    let ghosts = app
        .db()
        .scalar(
            "SELECT COUNT(*) FROM group_members m WHERE m.member_type = 'User' \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = m.member_id)",
        )
        .await;
    assert_eq!(ghosts, 0, "membership rows naming a deleted user");
    let count = app
        .db()
        .scalar(&format!(
            "SELECT member_count FROM groups WHERE id = '{group}'"
        ))
        .await;
    assert_eq!(count, 0, "member_count counts only real members");
    app.stop().await;
});

// ------------------------------------------------------------------ log output

/// Standard error is a pipe nobody reads (a stuck log collector): requests go on being
/// answered (before, every logging request waited for the output for good), the lines that
/// found no room are counted, and once stderr is read again a warning says how many.
#[tokio::test]
async fn stalled_log_output_never_stops_requests_and_counts_dropped_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pimgate.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\nformat = \"text\"\n").unwrap();
    let db = format!("sqlite://{}/p.db", dir.path().display());
    let (process, stderr) = Process::start_with_stderr(&config, &db);
    pimgate::tls::install_crypto_provider();
    // Each answer must come well within the client's timeout; before the bound, the request
    // that found both buffers and the pipe full never came back.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // About 200 bytes of access line per request: 4,000 fill the pipe (64 KiB) and both
    // buffers (128 KiB) several times over.
    for n in 0..4_000 {
        let r = client
            .get(format!("{}/healthz", process.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {n} with the log stalled: {e}"));
        assert_eq!(r.status(), StatusCode::OK);
    }
    let metrics = client
        .get(format!("{}/metrics", process.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pimgate_log_lines_dropped_total "))
        .expect("the dropped-lines counter is exported")
        .trim()
        .parse()
        .unwrap();
    assert!(dropped >= 1_000.0, "{dropped} lines counted as dropped");
    // The collector reads again: what was buffered goes out, then the warning.
    let (found, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if line.contains("log lines were dropped") {
                let _ = found.send(line);
            }
        }
    });
    let warning = seen
        .recv_timeout(Duration::from_secs(30))
        .expect("a warning says how many lines were dropped");
    let lines: u64 = warning
        .split("lines=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the warning names a count: {warning}"));
    assert!(lines >= 1, "{warning}");
    drop(process);
}

// ------------------------------------------------------------------ config and headers

/// `pimgate check-config` on a config file with this text.
fn check_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pimgate.toml");
    std::fs::write(&config, text).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_pimgate"))
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env("PIMGATE_DATABASE_URL", "sqlite://unused.db")
        .output()
        .unwrap()
}

#[tokio::test]
async fn shared_token_refused() {
    let out = check_config(
        "[connections.entra]\nscim_token = \"same-token-0123456789abcdef\"\n\
         [connections.okta]\nscim_token = \"same-token-0123456789abcdef\"\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connections.okta") && err.contains("entra") && !err.contains("same-token"),
        "names the key and the other connection, never the token: {err}"
    );
    let out = check_config(
        "[connections.entra]\nscim_token = \"same-token-0123456789abcdef\"\n\
         [access_api]\ntokens = [\"same-token-0123456789abcdef\"]\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("access_api.tokens"));
}

#[tokio::test]
async fn hostile_host_not_reflected() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let body = json!({"schemas": [USER_URN], "userName": "host@example.com"});
    let mut sent = 0;
    for host in ["evil.example", "localhost\"><script>x", "evil.example:8080"] {
        let url = format!("{}/Users", app.base("default"));
        let resp = app
            .client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("host", host)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await;
        // reqwest refuses to send some values itself; what it sends must be refused.
        if let Ok(resp) = resp {
            sent += 1;
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{host}: {text}");
            assert!(
                !text.contains("evil") && !text.contains("<script>"),
                "{text}"
            );
        }
    }
    assert!(
        sent >= 2,
        "the hostile hosts must reach the server to be refused"
    );
    // An allowed host (the loopback name, any port) is used as sent.
    let (s, headers, body) = send(
        &app,
        Method::POST,
        "/Users",
        &[("host", "localhost:9999")],
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let location = headers["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://localhost:9999/scim/default/v2/Users/"),
        "{location}"
    );
    app.stop().await;

    // With a public URL, the Host header is never read.
    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.server.public_url = Some("https://pimgate.example.com".into());
    })
    .await;
    let (s, headers, body) = send(
        &app,
        Method::POST,
        "/Users",
        &[("host", "evil.example")],
        Some(json!({"schemas": [USER_URN], "userName": "host@example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .starts_with("https://pimgate.example.com/scim/default/v2/Users/")
    );
    assert!(!body.to_string().contains("evil"));
    app.stop().await;
}

// ------------------------------------------------------------------ faults

// A write stuck behind a lock another session holds is answered 503 (with a body and
// `Retry-After`) at the request timeout, its statement stops then too (the database
// connection is free again), and nothing of it is written.
both!(
    request_past_its_deadline_is_503_and_frees_its_connection,
    settings = |s| {
        s.server.request_timeout_seconds = 1;
    },
    |app| {
        use sqlx::Connection as _;
        let id = app.user("locked@example.com").await;
        let put = json!({"schemas": [USER_URN], "userName": "locked@example.com", "title": "new"});
        let url = app.db().url.clone();
        let is_pg = url.starts_with("postgres");
        // Another session takes the lock the write needs.
        let mut pg_holder = None;
        let mut lite_holder = None;
        if is_pg {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(&id)
                .execute(&mut c)
                .await
                .unwrap();
            pg_holder = Some(c);
        } else {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            lite_holder = Some(c);
        }
        let (s, headers, body) =
            send(&app, Method::PUT, &format!("/Users/{id}"), &[], Some(put)).await;
        assert_scim_error(s, &body, 503, None);
        assert_eq!(headers["retry-after"], "1");
        if let Some(mut c) = pg_holder {
            // The statement stopped with the request: nothing waits on the lock any more.
            let mut waiting = i64::MAX;
            for _ in 0..40 {
                waiting = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))",
            )
            .fetch_one(&mut c)
            .await
            .unwrap();
                if waiting == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                waiting, 0,
                "the timed-out statement still waits for the lock"
            );
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
        }
        if let Some(mut c) = lite_holder {
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
        }
        // Nothing of the timed-out write landed, and writes go through again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (s, body) = app.get(&format!("/Users/{id}")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.get("title").is_none(), "{body}");
        let (s, body) = app
            .patch(
                &format!("/Users/{id}"),
                patch_op(json!([{"op": "replace", "path": "title", "value": "later"}])),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        app.stop().await;
    }
);

/// PostgreSQL restarted (`pg_ctl restart -m fast`: every session terminated "by
/// administrator command", then refused while it stops and starts) under 8 writers: no
/// answer is a 500, every 503 says when to retry, and every acknowledged write is there.
#[tokio::test]
async fn postgres_restart_under_write_load_answers_503_and_loses_no_acknowledged_write() {
    let pg = OwnPostgres::start();
    let db = TestDb::on_server(&pg.url()).await;
    let app = TestApp::spawn_on(db, |s| {
        s.database.max_connections = 8;
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let client = app.client.clone();
        let url = format!("{}/Users", app.base("default"));
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let name = format!("w{w}-{i}@example.com");
                let resp = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/scim+json")
                    .body(json!({"schemas": [USER_URN], "userName": name}).to_string())
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                *statuses.entry(status.as_u16()).or_default() += 1;
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    assert!(resp.headers().contains_key("retry-after"));
                    let body: Value = resp.json().await.unwrap();
                    assert_eq!(body["status"], "503", "{body}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let body: Value = resp.json().await.unwrap();
                assert!(
                    status == StatusCode::CREATED || status == StatusCode::CONFLICT,
                    "{status}: {body}"
                );
                if status == StatusCode::CREATED {
                    acked.push(body["id"].as_str().unwrap().to_owned());
                }
            }
            (acked, statuses)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    // Writes go through again after the restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for w in writers {
        let (a, s) = w.await.unwrap();
        acked.extend(a);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    assert!(!statuses.contains_key(&500), "{statuses:?}");
    assert!(
        acked.len() > 100,
        "too few writes to mean anything: {statuses:?}"
    );
    for id in &acked {
        let (s, body) = app.get(&format!("/Users/{id}")).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "acknowledged user {id} is missing: {body}"
        );
    }
    eprintln!("writes during a PostgreSQL restart: {statuses:?}");
    app.stop().await;
    drop(pg);
}
