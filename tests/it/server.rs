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

/// The attack on the connection table: connections that send nothing at all, or stop inside
/// the HTTP/2 preface, were held open for ever (hyper's header timeout starts only once the
/// protocol is known), so a client could exhaust the gateway's file descriptors with idle
/// sockets. Each is now closed once it has made no progress for 10 s, as a stalled request head
/// is, and an idle kept-alive connection 10 s after its last answer. All wait at once, bounded.
#[tokio::test]
async fn a_connection_that_sends_nothing_or_stalls_in_the_preface_is_closed() {
    let gw = gateway().start().await;
    let addr = gw.running().addr;
    let stalled = |first: &'static [u8]| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(first).await.unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "{:?}: connection still open after 20 s",
            String::from_utf8_lossy(first)
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(9), "closed too early: {took:?}");
        assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    };
    // A kept-alive connection: its requests are progress, and the limit runs again from each
    // response.
    let kept_alive = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut answered = Instant::now();
        for _ in 0..2 {
            let answer = exchange(&mut s, "/-/healthz").await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            answered = Instant::now();
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest))
            .await
            .expect("an idle kept-alive connection is closed")
            .unwrap();
        let idle = answered.elapsed();
        assert!(idle >= Duration::from_secs(9), "closed too early: {idle:?}");
    };
    tokio::join!(
        stalled(b""),
        stalled(b"PRI * HTTP/2.0\r\n"),
        stalled(b"G"),
        kept_alive
    );
}

/// A stalled connection is closed outright, not with the lingering read that protects an
/// answer: a slowloris client that goes on trickling bytes after the close would otherwise hold
/// the socket up to another 10 s. After the end of the stream, a write must soon fail (the
/// socket is gone and answers with a reset).
#[tokio::test]
async fn a_stalled_connection_is_not_held_by_lingering() {
    let gw = gateway().start().await;
    let mut s = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    s.write_all(b"GET /-/healthz HTTP/1.1\r\n").await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // One header byte every 500 ms: never a whole head. Ends when the gateway has really
    // closed the socket (a write fails), with the time of that failure.
    let trickle = tokio::spawn(async move {
        write_until_refused(&mut wr, b"x", Duration::from_millis(500), 80).await
    });
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut buf))
        .await
        .expect("closed within 20 s")
        .ok();
    let ended = Instant::now();
    let failed = tokio::time::timeout(Duration::from_secs(20), trickle)
        .await
        .expect("the trickle ends")
        .unwrap()
        .expect("a write failed: the socket was closed");
    assert!(
        failed.duration_since(ended) < Duration::from_secs(4),
        "the socket stayed open {:?} after the stream ended",
        failed.duration_since(ended)
    );
}

/// The same attack over HTTP/2: one request (any, a refused one will do), then an idle
/// connection held for ever. An idle HTTP/2 connection now gets a GOAWAY 10 s after its last
/// stream, and the client's connection ends.
#[tokio::test]
async fn an_idle_http2_connection_is_sent_away() {
    let gw = gateway().start().await;
    let tcp = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/-/healthz", gw.running().addr))
        .body(http_body_util::Empty::new())
        .unwrap();
    let r = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
    drop(r);
    let answered = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(25), conn)
        .await
        .expect("an idle HTTP/2 connection is closed");
    assert!(ended.unwrap().is_ok(), "closed gracefully (GOAWAY)");
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_secs(9), "closed too early: {idle:?}");
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
