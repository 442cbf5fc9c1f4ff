//! The stack's protections and the configurable parts of the request path: load shedding,
//! declared-body limit, a custom route file with a named Rego rule, and route-file errors.

use crate::common;

use bytes::Bytes;
use common::upstream::TestUpstream;
use common::{WAIT, gateway};
use http::Method;

#[tokio::test]
async fn beyond_the_concurrency_limit_requests_are_shed_with_503() {
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with("server: {max_concurrent_requests: 1}")
        .start()
        .await;
    let base = gw.base.clone();
    let slow = tokio::spawn(async move {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let r = client
            .get(format!("{base}/api/version?sleep_ms=1000").parse().unwrap())
            .await
            .unwrap();
        r.status()
    });
    let deadline = std::time::Instant::now() + WAIT;
    while up.hits() == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = gw.get("/api/version").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["message"], "gateway overloaded");
    assert_eq!(slow.await.unwrap(), 200);
    // Capacity is back once the slow request is done.
    assert_eq!(gw.get("/api/version").await.status, 200);
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_before_anything_is_read() {
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with("server: {max_body_bytes: 4096}")
        .start()
        .await;
    let r = gw
        .request(Method::POST, "/api/oauth/token", &[], vec![b'x'; 5000])
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["statusCode"], 413);
    assert_eq!(up.hits(), 0);
    let r = gw
        .request(Method::POST, "/api/oauth/token", &[], vec![b'x'; 4000])
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_route_file_can_name_a_rego_rule() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for f in std::fs::read_dir("policies").unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, policies.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        policies.join("rules.rego"),
        "package iamgate.rules\n\nimport rego.v1\n\nchange_window if {\n\tinput.request.query.ticket == \"CHG-1\"\n\tinput.user.type == \"serviceaccount\"\n}\n",
    )
    .unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        "routes:\n  - {id: freeze, method: POST, path: /api/freeze, rule: change_window}\n  - {id: ping, method: GET, path: /api/ping, access: public}\n",
    )
    .unwrap();
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!(
            "routes_file: {}\npolicy: {{dir: {}}}",
            routes.display(),
            policies.display()
        ))
        .start()
        .await;
    let (_, token) = gw.company_sa("acme").await;
    let r = gw
        .call(
            Method::POST,
            "/api/freeze?ticket=CHG-1",
            Some(&token),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = gw
        .call(
            Method::POST,
            "/api/freeze?ticket=CHG-2",
            Some(&token),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 403);
    // The file replaced the built-in table.
    let r = gw.get_as("/api/version", &token).await;
    assert_eq!(r.status, 404);
    assert_eq!(gw.get("/api/ping").await.status, 200);
}

#[tokio::test]
async fn an_invalid_route_file_fails_start_up_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        "routes:\n  - {id: a, method: GET, path: \"/p/{projectId}\", permission: console.project.view}\n  - {id: b, method: GET, path: /x, access: sometimes}\n",
    )
    .unwrap();
    let err = common::start_error(&format!(
        "listen: 127.0.0.1:0\nroutes_file: {}\n",
        routes.display()
    ))
    .await;
    assert!(
        err.contains("route a: checks[0]: permission console.project.view needs a project source"),
        "{err}"
    );
    assert!(err.contains("route b: access `sometimes`"), "{err}");
}

/// The request timeout covers every await of a request, here the token endpoint reading a body
/// the client declared and never sent: 504, in JSON, from the timeout (not from the client's
/// connection being dropped).
#[tokio::test]
async fn a_request_without_its_declared_body_is_504_at_the_request_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with("server: {request_timeout_secs: 1}")
        .start()
        .await;
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /api/oauth/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\ngrant_type=",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The head and the JSON body come in one write or two; the connection stays open.
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") || !answer.ends_with(b"}") {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("an answer before the test's own wait")
            .unwrap();
        assert!(n > 0, "closed without an answer: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("request timed out"), "{text}");
}

/// Of the request timeout and the upstream's answer timeout, the earlier one answers, and says
/// which it was.
#[tokio::test]
async fn the_earlier_of_the_request_and_upstream_timeouts_answers() {
    let up = TestUpstream::start().await;
    // The harness gives the upstream 1.5 s to answer; the request gets 1 s in all.
    let gw = gateway()
        .upstream(&up.url())
        .with("server: {request_timeout_secs: 1}")
        .start()
        .await;
    let (_, token) = gw.root_sa(&["console.root.view"]).await;
    let r = gw
        .get_as("/api/marketplace/categories?sleep_ms=3000", &token)
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["message"], "request timed out");
    // The upstream's 1.5 s within the default request timeout of a minute.
    let gw = gateway().upstream(&up.url()).start().await;
    let (_, token) = gw.root_sa(&["console.root.view"]).await;
    let r = gw
        .get_as("/api/marketplace/categories?sleep_ms=3000", &token)
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["message"], "upstream timed out");
    // A fast answer after a timed-out one: nothing of the last request's timers is left.
    let r = gw.get_as("/api/marketplace/categories", &token).await;
    assert_eq!(r.status, 200);
}

/// Sends `head` and then `body_len` bytes of body in full, as a simple client does before it
/// looks for an answer, then reads the answer to the end. Fails when a write or the read is cut
/// off: the gateway must read away what it refused rather than reset the connection under the
/// client, which would lose the answer.
async fn send_whole_body_then_read(base: &str, head: &str, body_len: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let send = async {
        s.write_all(head.as_bytes()).await?;
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            s.write_all(&chunk[..n]).await?;
            left -= n;
        }
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(WAIT, send)
        .await
        .expect("the exchange within the test's own wait")
        .unwrap_or_else(|e| panic!("the connection was cut under the client: {e}"));
    String::from_utf8_lossy(&answer).into_owned()
}

/// An attack on the client's answer, not on the gateway: a refusal made before the body is
/// read (a declared length over the limit, a missing token, a decision body over its cap) used
/// to close the connection with the body unread, which resets it, so a client still sending
/// got a broken pipe instead of the refusal. The gateway now reads away the rest of the body,
/// within a bound, before it closes.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_still_reaches_a_client_sending_it() {
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with("server: {max_body_bytes: 4096}")
        .start()
        .await;
    let big = 16 << 20;
    let head = |path: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n{extra}content-length: {big}\r\n\r\n"
        )
    };
    let text = send_whole_body_then_read(&gw.base, &head("/api/oauth/token", ""), big).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("larger than 4096 bytes"), "{text}");

    // Within the body limit, refused before the body is read: a proxied route without a token,
    // then a body the decision needs over its cap.
    let gw = gateway().upstream(&up.url()).start().await;
    let text = send_whole_body_then_read(
        &gw.base,
        &head("/api/tenants/acme/marketplace/files", ""),
        big,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    let (_, token) = gw.root_sa(&["console.root.view"]).await;
    let auth = format!("authorization: Bearer {token}\r\n");
    let deploy = "/api/deploy/projects/p1/trigger/pipeline/";
    let text = send_whole_body_then_read(&gw.base, &head(deploy, &auth), big).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("larger than 1048576 bytes"), "{text}");
    assert_eq!(up.hits(), 0);
}
