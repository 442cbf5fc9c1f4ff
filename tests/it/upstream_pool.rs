//! The upstream connection pool against a scripted upstream on a real socket: connections are
//! reused, given back only when their answer was read to the end, replaced when the upstream
//! closed them, and a request the upstream received is never sent twice.

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use iamgate::error::full;
use iamgate::proxy::upstream::{IdentityHeaders, Upstream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(5);

/// What the scripted upstream has seen.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

/// An HTTP/1.1 upstream written against the socket, so the test decides exactly when a
/// connection closes. The path picks the answer:
/// - `/ok`: 200 with a short body, connection kept;
/// - `/close`: 200 with `Connection: close`, then closed;
/// - `/empty`: 204, connection kept;
/// - `/big`: 200 with a 4 MiB body, connection kept;
/// - `/drop`: the request is read, then the connection is closed without an answer.
///
/// A connection idle for `idle` after an answer is closed, as upstream keep-alive timers do.
async fn scripted(idle: Duration) -> (SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counts.connections.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let head = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            break head;
                        }
                        let mut chunk = [0u8; 4096];
                        let n = match tokio::time::timeout(idle, stream.read(&mut chunk)).await {
                            Ok(Ok(n)) if n > 0 => n,
                            _ => return,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    counts.requests.fetch_add(1, Ordering::SeqCst);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let answer: Vec<u8> = match path.as_str() {
                        "/close" => {
                            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
                                .to_vec()
                        }
                        "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                        "/big" => {
                            let mut a =
                                b"HTTP/1.1 200 OK\r\ncontent-length: 4194304\r\n\r\n".to_vec();
                            a.resize(a.len() + 4 * 1024 * 1024, b'x');
                            a
                        }
                        "/drop" => return,
                        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                    };
                    if stream.write_all(&answer).await.is_err() || path == "/close" {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn upstream(addr: SocketAddr) -> Upstream {
    Upstream::new(
        format!("http://{addr}").parse().unwrap(),
        iamgate::net::connector(Duration::from_secs(1), None).unwrap(),
        Duration::from_secs(2),
        IdentityHeaders::default(),
        false,
    )
    .unwrap()
}

/// Forwards a GET of `path` and reads the whole answer: (status, body).
async fn get(up: &Upstream, path: &str) -> Result<(u16, Bytes), u16> {
    let req = Request::get(path).body(full(Bytes::new())).unwrap();
    let fut = up.forward(req, None, "127.0.0.1:1".parse().unwrap(), "r", false);
    match tokio::time::timeout(WAIT, fut).await.unwrap() {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Read as hyper's server does: no poll after the body says it has ended.
            let mut body = resp.into_body();
            let mut out = Vec::new();
            while !body.is_end_stream() {
                let frame = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
                let Some(frame) = frame else { break };
                if let Ok(data) = frame.unwrap().into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Ok((status, Bytes::from(out)))
        }
        Err(e) => Err(e.into_response().status().as_u16()),
    }
}

/// `n` GETs of `path` at once.
async fn together(up: &Upstream, n: usize, path: &'static str) -> Vec<Result<(u16, Bytes), u16>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let up = up.clone();
        set.spawn(async move { get(&up, path).await });
    }
    set.join_all().await
}

/// Waits (bounded) until the pool holds `n` idle connections: a connection is handed back from
/// the task that read its answer, which may run just after the reader saw the last byte.
async fn idle_becomes(up: &Upstream, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while up.idle_connections() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle connections stayed {} (wanted {n})",
            up.idle_connections()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (addr, seen) = scripted(Duration::from_secs(30)).await;
    let up = upstream(addr);
    for _ in 0..20 {
        assert_eq!(get(&up, "/ok").await.unwrap(), (200, Bytes::from("ok")));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 20);
    idle_becomes(&up, 1).await;
}

#[tokio::test]
async fn concurrent_requests_open_connections_and_keep_them() {
    let (addr, seen) = scripted(Duration::from_secs(30)).await;
    let up = upstream(addr);
    for r in together(&up, 8, "/big").await {
        let (status, body) = r.unwrap();
        assert_eq!((status, body.len()), (200, 4 * 1024 * 1024));
    }
    let opened = seen.connections.load(Ordering::SeqCst);
    assert!((1..=8).contains(&opened), "{opened} connections");
    idle_becomes(&up, opened).await;
    // The next round reuses them all: no new connection.
    for r in together(&up, opened, "/ok").await {
        assert_eq!(r.unwrap().0, 200);
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), opened);
}

#[tokio::test]
async fn an_answer_without_body_gives_the_connection_back() {
    let (addr, seen) = scripted(Duration::from_secs(30)).await;
    let up = upstream(addr);
    assert_eq!(get(&up, "/empty").await.unwrap().0, 204);
    idle_becomes(&up, 1).await;
    assert_eq!(get(&up, "/ok").await.unwrap().0, 200);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connections_the_upstream_closed_are_replaced_without_an_error() {
    // Closed by the upstream's idle timer while pooled.
    let (addr, seen) = scripted(Duration::from_millis(100)).await;
    let up = upstream(addr);
    assert_eq!(get(&up, "/ok").await.unwrap().0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&up, "/ok").await.unwrap().0, 200);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);

    // Closed after an answer that said `Connection: close`.
    let (addr, seen) = scripted(Duration::from_secs(30)).await;
    let up = upstream(addr);
    for _ in 0..3 {
        assert_eq!(get(&up, "/close").await.unwrap(), (200, Bytes::from("ok")));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    assert_eq!(get(&up, "/ok").await.unwrap().0, 200);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_received_request_is_never_sent_twice() {
    let (addr, seen) = scripted(Duration::from_secs(30)).await;
    let up = upstream(addr);
    // A pooled connection first, so the failing request goes out on a reused one.
    assert_eq!(get(&up, "/ok").await.unwrap().0, 200);
    idle_becomes(&up, 1).await;
    assert_eq!(get(&up, "/drop").await.unwrap_err(), 502);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    // The pool recovers with a new connection.
    assert_eq!(get(&up, "/ok").await.unwrap().0, 200);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_answer_dropped_unread_does_not_return_its_connection() {
    let (addr, seen) = scripted(Duration::from_secs(30)).await;
    let up = upstream(addr);
    let req = Request::get("/big").body(full(Bytes::new())).unwrap();
    let resp = tokio::time::timeout(
        WAIT,
        up.forward(req, None, "127.0.0.1:1".parse().unwrap(), "r", false),
    )
    .await
    .unwrap()
    .unwrap();
    let mut body = resp.into_body();
    // One frame, then the client goes away.
    let _ = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
    drop(body);
    assert_eq!(up.idle_connections(), 0);
    // The next request gets a fresh connection and a whole answer.
    assert_eq!(get(&up, "/ok").await.unwrap(), (200, Bytes::from("ok")));
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}
