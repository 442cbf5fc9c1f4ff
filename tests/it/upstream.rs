//! The upstream client against a real upstream server on loopback: header hygiene, trusted
//! identity headers, streaming bodies both ways, and 502 / 504 JSON errors.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use iamgate::error::full;
use iamgate::proxy::upstream::{Identity, IdentityHeaders, Upstream};
use std::net::SocketAddr;
use std::time::Duration;

/// Echoes method, path, headers and body as JSON; `/slow` waits 2 s first.
async fn start_upstream() -> SocketAddr {
    crate::common::serve_loopback(|req: Request<hyper::body::Incoming>| async move {
        if req.uri().path().ends_with("/slow") {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let method = req.method().to_string();
        let path = req.uri().to_string();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
            .collect();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let out = serde_json::json!({
            "method": method, "path": path, "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        let mut resp = Response::new(Full::new(Bytes::from(out.to_string())));
        resp.headers_mut()
            .insert("keep-alive", "timeout=5".parse().unwrap());
        resp.headers_mut()
            .insert("x-upstream", "1".parse().unwrap());
        resp
    })
    .await
}

fn upstream(addr: SocketAddr, prefix: &str, forward_auth: bool) -> Upstream {
    Upstream::new(
        format!("http://{addr}{prefix}").parse().unwrap(),
        iamgate::net::connector(Duration::from_secs(1), None).unwrap(),
        Duration::from_millis(500),
        IdentityHeaders::default(),
        forward_auth,
    )
    .unwrap()
}

fn identity() -> Identity {
    Identity {
        user_id: "sa-1".into(),
        groups: vec!["ci".into(), "ops".into()].into(),
        properties: r#"{"name":"deployer"}"#.into(),
        client_type: http::HeaderValue::from_static("serviceaccount"),
    }
}

fn peer() -> SocketAddr {
    "10.1.2.3:5555".parse().unwrap()
}

async fn echo(
    resp: Response<iamgate::error::Body>,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap(),
    )
}

#[tokio::test]
async fn forwards_with_trusted_identity_and_clean_headers() {
    let addr = start_upstream().await;
    let up = upstream(addr, "/console", false);
    let req = Request::post("/api/deploy/projects/p1/trigger/pipeline/?x=1%2F2")
        .header("host", "gw.example")
        .header("authorization", "Bearer the-callers-token")
        .header("miauserid", "admin")
        .header("MiaUserGroups", "super-admins")
        .header("client-type", "user")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("x-forwarded-for", "192.0.2.1")
        .header("content-type", "application/json")
        .body(full(Bytes::from_static(br#"{"environment":"dev"}"#)))
        .unwrap();
    let resp = up
        .forward(req, Some(identity()), peer(), "req-42", false)
        .await
        .unwrap();
    let (status, headers, echo) = echo(resp).await;
    assert_eq!(status, 200);
    assert!(
        headers.get("keep-alive").is_none(),
        "hop-by-hop stripped from the response"
    );
    assert_eq!(headers["x-upstream"], "1");
    assert_eq!(echo["method"], "POST");
    assert_eq!(
        echo["path"],
        "/console/api/deploy/projects/p1/trigger/pipeline/?x=1%2F2"
    );
    assert_eq!(echo["body"], r#"{"environment":"dev"}"#);
    let h = &echo["headers"];
    assert_eq!(h["miauserid"], "sa-1", "spoofed identity replaced");
    assert_eq!(h["miausergroups"], "ci,ops");
    assert_eq!(h["miauserproperties"], r#"{"name":"deployer"}"#);
    assert_eq!(h["client-type"], "serviceaccount");
    assert!(
        h.get("authorization").is_none(),
        "caller's token not forwarded"
    );
    assert!(h.get("x-hop").is_none());
    assert_eq!(h["x-request-id"], "req-42");
    // The peer is not a trusted ingress: its X-Forwarded-For is replaced, not extended.
    assert_eq!(h["x-forwarded-for"], "10.1.2.3");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "gw.example");
    assert_eq!(h["host"], addr.to_string());

    // From a trusted ingress the chain is extended and its forwarding headers kept.
    let req = Request::get("/x")
        .header("host", "gw.example")
        .header("x-forwarded-for", "192.0.2.1")
        .header("x-forwarded-proto", "https")
        .body(full(Bytes::new()))
        .unwrap();
    let hop = iamgate::proxy::upstream::Hop {
        peer: peer().ip(),
        trusted: true,
        tls: false,
    };
    let resp = up.forward_from(req, None, &hop, "req-43").await.unwrap();
    let (_, _, seen) = self::echo(resp).await;
    assert_eq!(seen["headers"]["x-forwarded-for"], "192.0.2.1, 10.1.2.3");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn authorization_is_forwarded_only_when_configured() {
    let addr = start_upstream().await;
    let up = upstream(addr, "", true);
    let req = Request::get("/x")
        .header("authorization", "Bearer t")
        .body(full(Bytes::new()))
        .unwrap();
    let (_, _, echo) = echo(
        up.forward(req, Some(identity()), peer(), "r", true)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo["headers"]["authorization"], "Bearer t");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn down_and_slow_upstreams_answer_502_and_504_in_json() {
    // A port with nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = upstream(closed, "", false)
        .forward(
            Request::get("/x").body(full(Bytes::new())).unwrap(),
            Some(identity()),
            peer(),
            "r",
            false,
        )
        .await
        .unwrap_err();
    let resp = err.into_response();
    assert_eq!(resp.status(), 502);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["statusCode"], 502);

    let addr = start_upstream().await;
    let started = std::time::Instant::now();
    let err = upstream(addr, "", false)
        .forward(
            Request::get("/slow").body(full(Bytes::new())).unwrap(),
            Some(identity()),
            peer(),
            "r",
            false,
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(1500));
    let resp = err.into_response();
    assert_eq!(resp.status(), 504);
}
