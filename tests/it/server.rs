//! Connection-level behaviour of the listener.

use crate::common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let gw = gateway().start().await;
    let mut s = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    s.write_all(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // The server closes the connection (possibly after a 408); bounded wait either way.
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 20 s");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed too early: {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn graceful_shutdown_stops_accepting() {
    let gw = gateway().start().await;
    let addr = gw.running().addr;
    assert_eq!(gw.get("/-/healthz").await.status, 200);
    gw.stop().await;
    let refused =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "listener still accepting after shutdown"
    );
}

/// Connections served on the shared runtime (`workers: 0`), on one worker and on more workers
/// than cores: a token request, proxied requests over one kept-alive connection and over many
/// at once all answer alike.
#[tokio::test]
async fn every_worker_setting_serves_tokens_and_proxied_requests() {
    let up = common::upstream::TestUpstream::start().await;
    for workers in [0, 1, 3] {
        let gw = gateway()
            .upstream(&up.url())
            .with(&format!("server: {{workers: {workers}}}"))
            .start()
            .await;
        let (_, token) = gw.company_owner("acme").await;
        let path = "/api/tenants/acme/marketplace/items/i1/versions";
        for _ in 0..3 {
            assert_eq!(
                gw.get_as(path, &token).await.status,
                200,
                "workers: {workers}"
            );
        }
        for _ in 0..4 {
            let (a, b, c, d) = tokio::join!(
                gw.get_as(path, &token),
                gw.get_as(path, &token),
                gw.get_as(path, &token),
                gw.get_as(path, &token)
            );
            for r in [a, b, c, d] {
                assert_eq!(r.status, 200, "workers: {workers}");
            }
        }
        gw.stop().await;
    }
}

/// Sends one request on `s` and reads its whole answer (`Connection: keep-alive`, a small body
/// with a Content-Length).
async fn exchange(s: &mut tokio::net::TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("answer within the wait")
            .unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text.into_owned();
            }
        }
    }
}

/// Three long-lived connections on two workers: the metric shows them spread two and one, never
/// three on one worker.
#[tokio::test]
async fn open_connections_are_balanced_over_the_workers_and_counted_in_the_metrics() {
    let gw = gateway().with("server: {workers: 2}").start().await;
    let addr = gw.running().addr;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(
            exchange(&mut s, "/-/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        held.push(s);
    }
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let metrics = exchange(&mut s, "/-/metrics").await;
    let open = |worker: &str| -> i64 {
        let prefix = format!("iamgate_connections_open{{worker=\"{worker}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no gauge for worker {worker}: {metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    let (one, two) = (open("1"), open("2"));
    assert_eq!(one + two, 3, "{metrics}");
    assert_eq!(one.abs_diff(two), 1, "{metrics}");
    drop(held);
}
