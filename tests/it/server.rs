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
