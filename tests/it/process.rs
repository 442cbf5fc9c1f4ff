//! The gateway as a separate process (`iamgate serve`), for what only a process shows: its memory
//! while 100 MB bodies stream through, SIGTERM draining in-flight requests, and everything it
//! logs at the most verbose level, its dependencies' records included.

use crate::common;

use bytes::Bytes;
use common::WAIT;
use common::upstream::{TestUpstream, ZeroBody};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::process::Command;
use std::time::Duration;

use common::serve::{Proc, spawn_in};

/// Starts `iamgate serve` against `upstream` and waits for its listening line.
fn spawn(upstream: &str) -> Proc {
    spawn_in(
        tempfile::tempdir().unwrap(),
        upstream,
        "format: json, level: info",
        "",
    )
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn hundred_megabyte_bodies_stream_through_in_bounded_memory() {
    const SIZE: usize = 100 * 1024 * 1024;
    let up = TestUpstream::start().await;
    let gw = spawn(&up.url());
    let pid = gw.child.id();
    let client: Client<_, http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> =
        Client::builder(TokioExecutor::new()).build_http();
    let base = format!("http://{}", gw.addr);
    // Warm up: one small request each way, then take the idle figure.
    for _ in 0..3 {
        let r = client
            .request(
                Request::get(format!("{base}/api/version?bytes=1024"))
                    .body(Empty::new().boxed())
                    .unwrap(),
            )
            .await
            .unwrap();
        r.into_body().collect().await.unwrap();
    }
    let idle = rss_kib(pid, "VmRSS:");

    // Upload: 100 MB streamed to the upstream, which counts it.
    let req = Request::post(format!("{base}/api/oauth/token"))
        .body(ZeroBody::new(SIZE).boxed())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    assert_eq!(up.last().unwrap().body_len, SIZE);

    // Download: 100 MB from the upstream, counted chunk by chunk here.
    let resp = client
        .request(
            Request::get(format!("{base}/api/version?bytes={SIZE}"))
                .body(Empty::new().boxed())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0usize;
    let read = async {
        while let Some(f) = body.frame().await {
            if let Some(d) = f.unwrap().data_ref() {
                got += d.len();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap();
    assert_eq!(got, SIZE);

    let peak = rss_kib(pid, "VmHWM:");
    let grown_mib = peak.saturating_sub(idle) / 1024;
    println!(
        "gateway RSS: idle {} MiB, peak {} MiB, grown {grown_mib} MiB",
        idle / 1024,
        peak / 1024
    );
    assert!(grown_mib < 64, "peak RSS grew {grown_mib} MiB over idle");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let up = TestUpstream::start().await;
    let gw = spawn(&up.url());
    let base = format!("http://{}", gw.addr);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let slow = tokio::spawn({
        let client = client.clone();
        let base = base.clone();
        async move {
            let r = client
                .request(
                    Request::get(format!("{base}/api/version?sleep_ms=1500"))
                        .body(Empty::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = r.status();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    });
    // Let the slow request reach the upstream.
    let deadline = std::time::Instant::now() + WAIT;
    while up.hits() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "slow request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(&gw.addr))
        .await
        .unwrap();
    assert!(
        refused.is_err(),
        "new connections are refused while draining"
    );
    let (status, body) = tokio::time::timeout(WAIT, slow).await.unwrap().unwrap();
    assert_eq!(status, 200, "the in-flight request completed");
    assert!(String::from_utf8_lossy(&body).contains("/api/version"));
    let mut gw = gw;
    let exit = tokio::task::spawn_blocking(move || {
        let s = gw.child.wait().unwrap();
        (s, gw)
    });
    let (status, _gw) = tokio::time::timeout(WAIT, exit).await.unwrap().unwrap();
    assert!(status.success(), "clean exit: {status:?}");
}

/// At the most verbose filter, on PostgreSQL, a token request (a good and a wrong secret) and a
/// proxied request log no secret, token or credential. tokio-postgres logs every statement's
/// parameters at DEBUG, secret hashes among them; its records above INFO are never logged.
#[tokio::test]
async fn at_trace_level_on_postgres_no_secret_or_statement_parameter_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = common::test_database(&dir).await else {
        println!("skipped: IAMGATE_TEST_DATABASE_URL is not set");
        return;
    };
    let up = TestUpstream::start().await;
    let gw = spawn_in(
        dir,
        &up.url(),
        "format: json, level: trace",
        &format!(
            "database_url: \"{db}\"\nsecret_pepper: {}\n",
            common::TEST_PEPPER
        ),
    );
    let creds: serde_json::Value = serde_json::from_slice(
        &std::fs::read(gw.dir.path().join("data/bootstrap-credentials.json")).unwrap(),
    )
    .unwrap();
    let (id, secret) = (
        creds["clientId"].as_str().unwrap(),
        creds["clientSecret"].as_str().unwrap(),
    );
    let client: Client<_, http_body_util::Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let token_request = |secret: &str| {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        let req = Request::post(format!("http://{}/api/m2m/oauth/token", gw.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(http_body_util::Full::new(Bytes::from_static(
                b"grant_type=client_credentials",
            )))
            .unwrap();
        (basic, client.request(req))
    };
    let (basic, pending) = token_request(secret);
    let r = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let wrong = "a-wrong-secret-0123456789";
    let (wrong_basic, pending) = token_request(wrong);
    let r = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap();
    assert_eq!(r.status(), 401);
    let req = Request::get(format!("http://{}/api/tenants/", gw.addr))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let r = tokio::time::timeout(WAIT, client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(r.status(), 401);

    let log = gw
        .log_until("the last request's record", |lines| {
            lines
                .iter()
                .any(|l| l.contains("finished processing request") && l.contains("/api/tenants/"))
        })
        .join("\n");
    // The filter was really at its most verbose: the gateway's own DEBUG records are there.
    assert!(log.contains("\"DEBUG\""), "{log}");
    assert!(log.contains("token issued"));
    for (what, s) in [
        ("secret", secret),
        ("wrong secret", wrong),
        ("basic credentials", basic.as_str()),
        ("wrong basic credentials", wrong_basic.as_str()),
        ("token", token.as_str()),
        ("token signature", token.rsplit('.').next().unwrap()),
        ("pepper", common::TEST_PEPPER),
    ] {
        assert!(!log.contains(s), "the {what} reached the log");
    }
    for line in log.lines() {
        assert!(!line.contains("with parameters"), "{line}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let target = v["log.target"].as_str().or(v["target"].as_str()).unwrap();
        if target.starts_with("tokio_postgres") {
            assert!(
                matches!(v["level"].as_str(), Some("INFO" | "WARN" | "ERROR")),
                "{line}"
            );
        }
    }
}
