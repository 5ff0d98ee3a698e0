//! The shared connection on real servers: the breaker driven by an injected clock (no
//! sleeping for retry intervals), TLS that verifies the server, and malformed settings.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::testing::{OwnRedis, free_port, redis_server};
use super::*;
use crate::clock::{ManualClock, Timestamp};

fn manual(clock: &ManualClock, retry: Duration) -> RedisOptions {
    RedisOptions {
        retry_interval: retry,
        clock: Arc::new(clock.clone()),
        ..RedisOptions::default()
    }
}

/// A handle on a server of the test's own, under `prefix`, on the test's clock.
async fn on(server: &OwnRedis, prefix: &str, options: RedisOptions) -> Redis {
    Redis::connect(&server.url(), prefix, options)
        .await
        .unwrap()
}

/// One round trip through the breaker (`None`: skipped). A read, which a paused server
/// holds back, unlike `PING`.
async fn ping(redis: &Redis) -> Option<Result<(), Failure>> {
    let started = redis.admit()?;
    let mut cmd = redis::cmd("GET");
    cmd.arg(format!("{}:probe", redis.prefix()));
    Some(
        redis
            .bounded(started, "ping", redis.conn().query::<Option<String>>(&cmd))
            .await
            .map(|_| ()),
    )
}

/// While degraded, nothing reaches Redis until the injected clock passes the retry
/// interval; then exactly one probe goes, and a successful one closes the breaker.
#[tokio::test]
async fn breaker_probes_once_per_interval_by_the_clock() {
    let clock = ManualClock::at(Timestamp(1_700_000_000_000));
    let mut server = OwnRedis::start().await;
    let redis = on(&server, "breaker", manual(&clock, Duration::from_secs(30))).await;
    assert!(redis.is_healthy());
    server.kill();
    assert!(matches!(ping(&redis).await, Some(Err(_))));
    assert!(!redis.is_healthy());
    for _ in 0..5 {
        assert!(
            ping(&redis).await.is_none(),
            "skipped while the breaker is open"
        );
    }
    clock.advance_millis(29_999);
    assert!(ping(&redis).await.is_none());
    clock.advance_millis(1);
    assert!(
        matches!(ping(&redis).await, Some(Err(_))),
        "one probe when due"
    );
    assert!(ping(&redis).await.is_none(), "and only one");

    server.restart().await;
    clock.advance_millis(30_000);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ping(&redis).await {
            Some(Ok(())) => break,
            Some(Err(_)) => clock.advance_millis(30_000),
            None => panic!("the probe slot was not due"),
        }
        assert!(Instant::now() < deadline, "no recovery");
    }
    assert!(redis.is_healthy());
    assert!(
        ping(&redis).await.is_some(),
        "healthy: everything goes through"
    );
}

/// A server that stops answering (`CLIENT PAUSE`) costs one command timeout, then nothing
/// until the next probe is due.
#[tokio::test]
async fn hung_server_times_out_then_is_skipped() {
    let clock = ManualClock::at(Timestamp(1_700_000_000_000));
    let server = OwnRedis::start().await;
    let options = RedisOptions {
        command_timeout: Duration::from_millis(100),
        ..manual(&clock, Duration::from_secs(600))
    };
    let redis = on(&server, "hung", options).await;
    let mut raw = server.raw();
    let () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "1500", "ALL"])
        .query(&mut raw)
        .unwrap();
    let began = Instant::now();
    let first = ping(&redis).await;
    assert!(matches!(first, Some(Err(_))), "{first:?}");
    assert!(began.elapsed() < Duration::from_millis(1400));
    let _: String = redis::cmd("PING").query(&mut raw).unwrap();
    assert!(
        ping(&redis).await.is_none(),
        "answers again, but no probe is due"
    );
    clock.advance_millis(600_000);
    assert!(matches!(ping(&redis).await, Some(Ok(()))));
}

#[tokio::test]
async fn unreachable_at_startup_is_degraded_then_recovers() {
    let clock = ManualClock::at(Timestamp(1_700_000_000_000));
    let mut server = OwnRedis::reserved();
    let redis = on(&server, "late", manual(&clock, Duration::from_secs(1))).await;
    assert!(!redis.is_healthy());
    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis.is_healthy() {
        clock.advance_millis(1000);
        let _ = ping(&redis).await;
        assert!(Instant::now() < deadline, "no recovery");
    }
}

/// A self-signed server certificate is refused (no `#insecure`), which shows `rediss://`
/// really speaks TLS and verifies the server, and never panics.
#[tokio::test]
async fn tls_verifies_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let port = free_port().to_string();
    let mut child = redis_server(&[
        "--port".as_ref(),
        "0".as_ref(),
        "--tls-port".as_ref(),
        port.as_ref(),
        "--bind".as_ref(),
        "127.0.0.1".as_ref(),
        "--tls-auth-clients".as_ref(),
        "no".as_ref(),
        "--tls-cert-file".as_ref(),
        cert.as_os_str(),
        "--tls-key-file".as_ref(),
        key.as_os_str(),
        "--tls-ca-cert-file".as_ref(),
        cert.as_os_str(),
    ]);
    let port: u16 = port.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "TLS redis-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let redis = Redis::connect(
        &format!("rediss://localhost:{port}"),
        "tls",
        RedisOptions::default(),
    )
    .await
    .unwrap();
    assert!(!redis.is_healthy(), "an untrusted certificate was accepted");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn malformed_settings_are_errors_and_unreachable_is_not() {
    for url in [
        "http://127.0.0.1:6379",
        "127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:6379?cluster=maybe",
        "redis+unix:///tmp/r.sock?cluster=true",
        "redis://127.0.0.1:notaport",
    ] {
        let err = Redis::connect(url, "p", RedisOptions::default())
            .await
            .err();
        assert!(
            matches!(err, Some(RedisConfigError::InvalidUrl(_))),
            "{url}: {err:?}"
        );
    }
    let err = Redis::connect("redis://127.0.0.1:1", "a{b}", RedisOptions::default())
        .await
        .err();
    assert!(matches!(err, Some(RedisConfigError::InvalidPrefix(_))));
    let redis = Redis::connect("redis://127.0.0.1:1", "p", RedisOptions::default())
        .await
        .unwrap();
    assert!(!redis.is_healthy());
}
