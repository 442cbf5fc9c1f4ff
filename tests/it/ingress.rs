//! Decisions for an existing ingress: `/-/authz` named the three ways ingresses name the
//! original request (Traefik's X-Forwarded-*, nginx's X-Original-*, Envoy's path prefix), from a
//! trusted and from an untrusted peer; Envoy's gRPC ext_authz with a tonic client; and a real
//! nginx with `auth_request` in front of a real upstream.

use crate::common;

use common::upstream::TestUpstream;
use common::{Gateway, Resp, gateway};
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, attribute_context, authorization_client::AuthorizationClient,
    check_response::HttpResponse,
};
use http::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const P1: &str = "64b7e1a0c0ffee0000000001";
const ITEMS: &str = "/api/tenants/acme/marketplace/items/i1/versions";

/// A gateway that trusts 127.0.0.1 (not 127.0.0.2) as its ingress, with project P1 in acme and
/// an acme account holding `maintainer` on P1's `dev` and `developer` on acme; its token.
async fn setup(extra: &str) -> (Gateway, String, String) {
    let gw = gateway()
        .with("server: {trusted_proxies: [127.0.0.1], ext_authz_grpc_listen: \"127.0.0.1:0\"}")
        .with(extra)
        .start()
        .await;
    gw.project(P1, "acme", &["dev", "prod"]).await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(&id, "developer", Some(("company", "acme"))).await;
    gw.bind(
        &id,
        "maintainer",
        Some(("environment", &format!("{P1}:dev"))),
    )
    .await;
    (gw, id, token)
}

async fn ask(gw: &Gateway, source: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    gw.request_from(
        source.parse().unwrap(),
        Method::GET,
        path,
        headers,
        body.to_owned(),
    )
    .await
}

fn assert_refused(r: &Resp, reason: &str) {
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.json()["reason"], reason, "{:?}", r.body);
    assert_eq!(r.json()["statusCode"], 403);
    assert!(r.header("miauserid").is_none());
}

#[tokio::test]
async fn traefik_style_headers_are_believed_from_a_trusted_peer_only() {
    let (gw, id, token) = setup("").await;
    let bearer = format!("Bearer {token}");
    let traefik = |uri: &'static str| {
        vec![
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", uri),
            ("x-forwarded-host", "console.example.com"),
        ]
    };
    let mut h = traefik(ITEMS);
    h.push(("authorization", &bearer));
    // The client's own identity header changes nothing: the answer carries the verified one.
    h.push(("miauserid", "bootstrap-admin"));
    let r = ask(&gw, "127.0.0.1", "/-/authz", &h, "").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body.is_empty());
    assert_eq!(r.header("miauserid"), Some(id.as_str()));
    assert_eq!(r.header("client-type"), Some("serviceaccount"));
    assert_eq!(r.header("miausergroups"), Some(""));
    assert!(r.header("miauserproperties").unwrap().starts_with('{'));

    // The same request from a peer that is not a trusted ingress.
    let r = ask(&gw, "127.0.0.2", "/-/authz", &h, "").await;
    assert_refused(&r, "untrusted_peer");

    // Another company's resource, no token, a bad token.
    let mut other = traefik("/api/tenants/globex/marketplace/items/i1/versions");
    other.push(("authorization", &bearer));
    assert_refused(
        &ask(&gw, "127.0.0.1", "/-/authz", &other, "").await,
        "permission_denied",
    );
    for auth in [None, Some("Bearer not-a-token")] {
        let mut h = traefik(ITEMS);
        h.extend(auth.map(|a| ("authorization", a)));
        let r = ask(&gw, "127.0.0.1", "/-/authz", &h, "").await;
        assert_eq!(r.status, 401, "{:?}", r.body);
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        assert!(r.header("miauserid").is_none());
    }

    // Routes the table does not know, paths the rules refuse, routes iamgate serves itself.
    for (uri, reason) in [
        ("/api/nothing/here", "unknown_route"),
        ("/api/tenants/acme/%252e%252e/items", "bad_request"),
        ("/api/companies/acme/service-accounts", "local_route"),
        ("/api/backend/tenants/", "response_rule"),
    ] {
        let mut h = traefik(uri);
        h.push(("authorization", &bearer));
        assert_refused(&ask(&gw, "127.0.0.1", "/-/authz", &h, "").await, reason);
    }
    // Only a method is unknown: still an unknown route for nginx, which understands 403 only.
    let h = [
        ("x-forwarded-method", "DELETE"),
        ("x-forwarded-uri", ITEMS),
        ("authorization", bearer.as_str()),
    ];
    assert_refused(
        &ask(&gw, "127.0.0.1", "/-/authz", &h, "").await,
        "unknown_route",
    );
    // Nothing named.
    assert_refused(
        &ask(
            &gw,
            "127.0.0.1",
            "/-/authz",
            &[("authorization", &bearer)],
            "",
        )
        .await,
        "no_original_request",
    );
}

#[tokio::test]
async fn a_clients_own_naming_header_cannot_change_the_request_decided() {
    let (gw, _, token) = setup("").await;
    let bearer = format!("Bearer {token}");
    // nginx sets X-Original-* for the real request and passes the client's other headers on:
    // the client names a harmless request in Traefik's headers.
    let h = [
        ("x-original-method", "POST"),
        ("x-original-uri", "/api/tenants/acme/marketplace/items"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", ITEMS),
        ("authorization", bearer.as_str()),
    ];
    assert_refused(
        &ask(&gw, "127.0.0.1", "/-/authz", &h, "").await,
        "ambiguous_original_request",
    );
    // The real request alone is decided on its own merits: a developer may not publish items.
    assert_refused(
        &ask(
            &gw,
            "127.0.0.1",
            "/-/authz",
            &h[..2].iter().copied().chain([h[4]]).collect::<Vec<_>>(),
            "",
        )
        .await,
        "permission_denied",
    );
    // Envoy's prefix form with a contradicting header.
    let path = format!("/-/authz{ITEMS}");
    let h = [
        ("x-original-uri", "/api/version"),
        ("authorization", bearer.as_str()),
    ];
    assert_refused(
        &ask(&gw, "127.0.0.1", &path, &h, "").await,
        "ambiguous_original_request",
    );
}

#[tokio::test]
async fn envoy_http_mode_names_the_request_by_prefix_and_sends_the_body() {
    let (gw, id, token) = setup("").await;
    let bearer = format!("Bearer {token}");
    let deploy = format!("/-/authz/api/deploy/projects/{P1}/trigger/pipeline/");
    let post = |headers: Vec<(&'static str, String)>, body: &'static str| {
        let gw = &gw;
        let deploy = deploy.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            gw.request_from(
                "127.0.0.1".parse().unwrap(),
                Method::POST,
                &deploy,
                &h,
                body,
            )
            .await
        }
    };
    let auth = || vec![("authorization", bearer.clone())];
    let r = post(auth(), r#"{"environment":"dev"}"#).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("miauserid"), Some(id.as_str()));
    assert_refused(
        &post(auth(), r#"{"environment":"prod"}"#).await,
        "permission_denied",
    );
    assert_refused(&post(auth(), "").await, "body_required");
    let mut partial = auth();
    partial.push(("x-envoy-auth-partial-body", "true".to_owned()));
    assert_refused(&post(partial, r#"{"environ"#).await, "partial_body");
    // A public route has no identity: the allow answer tells Envoy to drop the client's.
    let r = ask(
        &gw,
        "127.0.0.1",
        "/-/authz/api/version",
        &[("miauserid", "x")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.header("miauserid").is_none());
    let removed = r.header("x-envoy-auth-headers-to-remove").unwrap();
    for name in [
        "miauserid",
        "miausergroups",
        "miauserproperties",
        "client-type",
    ] {
        assert!(removed.split(',').any(|n| n == name), "{removed}");
    }
}

#[tokio::test]
async fn response_rules_can_be_skipped_and_the_endpoint_turned_off() {
    let (gw, _, token) = setup("authz: {response_rules: skip}").await;
    let bearer = format!("Bearer {token}");
    let h = [
        ("x-original-uri", "/api/backend/tenants/"),
        ("authorization", bearer.as_str()),
    ];
    let r = ask(&gw, "127.0.0.1", "/-/authz", &h, "").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let off = gateway().with("authz: {enabled: false}").start().await;
    // Without the endpoint the path is just a path the route table does not know.
    assert_eq!(off.get("/-/authz").await.status, 404);
    let bad = common::config_error("authz: {response_rules: maybe}");
    assert!(bad.contains("authz.response_rules"), "{bad}");
    let bad = common::config_error("server: {ext_authz_grpc_listen: nowhere}");
    assert!(bad.contains("server.ext_authz_grpc_listen"), "{bad}");
}

fn check(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> CheckRequest {
    let http = attribute_context::HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
        body: body.to_owned(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The status code, then the allow headers or the deny's HTTP status, headers and JSON body.
enum Answer {
    Allow(HashMap<String, String>, Vec<String>),
    Deny(i32, i32, HashMap<String, String>, Value),
}

async fn grpc_check(addr: std::net::SocketAddr, req: CheckRequest) -> Answer {
    let mut client = tokio::time::timeout(
        common::WAIT,
        AuthorizationClient::connect(format!("http://{addr}")),
    )
    .await
    .unwrap()
    .unwrap();
    let resp = tokio::time::timeout(common::WAIT, client.check(req))
        .await
        .unwrap()
        .unwrap()
        .into_inner();
    let code = resp.status.unwrap().code;
    let headers = |hs: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption]| {
        hs.iter()
            .map(|h| {
                let h = h.header.as_ref().unwrap();
                (h.key.clone(), h.value.clone())
            })
            .collect::<HashMap<_, _>>()
    };
    match resp.http_response.unwrap() {
        HttpResponse::OkResponse(ok) => {
            assert_eq!(code, 0);
            Answer::Allow(headers(&ok.headers), ok.headers_to_remove)
        }
        HttpResponse::DeniedResponse(d) => Answer::Deny(
            code,
            d.status.unwrap().code,
            headers(&d.headers),
            serde_json::from_str(&d.body).unwrap(),
        ),
        HttpResponse::ErrorResponse(e) => panic!("error response: {e:?}"),
    }
}

#[tokio::test]
async fn envoy_grpc_ext_authz_allows_with_headers_and_denies_with_status_and_body() {
    let (gw, id, token) = setup("").await;
    let addr = gw.running().ext_authz_addr.unwrap();
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    match grpc_check(addr, check("GET", ITEMS, &auth, "")).await {
        Answer::Allow(set, removed) => {
            assert_eq!(set["miauserid"], id);
            assert_eq!(set["client-type"], "serviceaccount");
            assert!(removed.is_empty());
        }
        Answer::Deny(.., body) => panic!("denied: {body}"),
    }
    let deny = |a: Answer| match a {
        Answer::Deny(code, status, headers, body) => (code, status, headers, body),
        Answer::Allow(set, _) => panic!("allowed: {set:?}"),
    };
    // A policy deny: PERMISSION_DENIED, 403 and the reason.
    let (code, status, headers, body) = deny(
        grpc_check(
            addr,
            check("POST", "/api/tenants/acme/marketplace/items", &auth, ""),
        )
        .await,
    );
    assert_eq!((code, status), (7, 403));
    assert_eq!(body["reason"], "permission_denied");
    assert_eq!(headers["content-type"], "application/json");
    // No credentials: UNAUTHENTICATED, 401 with the challenge.
    let (code, status, headers, _) = deny(grpc_check(addr, check("GET", ITEMS, &[], "")).await);
    assert_eq!((code, status), (16, 401));
    assert!(headers["www-authenticate"].starts_with("Bearer"));
    // The deploy trigger is decided on the body Envoy sends along.
    let deploy = format!("/api/deploy/projects/{P1}/trigger/pipeline/");
    assert!(matches!(
        grpc_check(
            addr,
            check("POST", &deploy, &auth, r#"{"environment":"dev"}"#)
        )
        .await,
        Answer::Allow(..)
    ));
    let (_, _, _, body) = deny(
        grpc_check(
            addr,
            check("POST", &deploy, &auth, r#"{"environment":"prod"}"#),
        )
        .await,
    );
    assert_eq!(body["reason"], "permission_denied");
    let partial = [auth[0], ("x-envoy-auth-partial-body", "true")];
    let (_, _, _, body) =
        deny(grpc_check(addr, check("POST", &deploy, &partial, r#"{"environ"#)).await);
    assert_eq!(body["reason"], "partial_body");
    let (_, _, _, body) = deny(grpc_check(addr, check("POST", &deploy, &auth, "")).await);
    assert_eq!(body["reason"], "body_required");
    // A check naming no request at all.
    let (_, status, _, body) = deny(grpc_check(addr, CheckRequest { attributes: None }).await);
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("bad_original_request"))
    );

    // An instance whose trusted ingresses do not include this client answers nothing else.
    let other = gateway()
        .with("server: {trusted_proxies: [10.0.0.0/8], ext_authz_grpc_listen: \"127.0.0.1:0\"}")
        .start()
        .await;
    let (_, status, _, body) = deny(
        grpc_check(
            other.running().ext_authz_addr.unwrap(),
            check("GET", "/api/version", &[], ""),
        )
        .await,
    );
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("untrusted_peer"))
    );
}

/// A real nginx (Debian's package has `auth_request`) on `port` running `examples/nginx`:
/// `/api/` is decided by iamgate at `gw` and forwarded to `up` with the identity iamgate
/// answered; iamgate's own paths go to iamgate.
struct Nginx {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(port: u16, gw: std::net::SocketAddr, up: std::net::SocketAddr) -> Option<Nginx> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(bin) = bin else {
        assert!(
            std::env::var_os("IAMGATE_REQUIRE_NGINX").is_none(),
            "nginx is required here (IAMGATE_REQUIRE_NGINX) but not installed"
        );
        eprintln!(
            "\n*** SKIPPED: nginx is not installed (apt-get install nginx); the nginx auth_request test did not run ***\n"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // The shipped example, pointed at this test's gateway, upstream and port, with the paths a
    // process without root needs.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/nginx/nginx.conf"
    ))
    .unwrap();
    for needle in [
        "server iamgate:8080;",
        "server console-api:8080;",
        "listen 80;",
        "http {",
    ] {
        assert!(
            example.contains(needle),
            "examples/nginx/nginx.conf lost `{needle}`"
        );
    }
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n{}",
        example
            .replace("server iamgate:8080;", &format!("server {gw};"))
            .replace("server console-api:8080;", &format!("server {up};"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
            .replace(
                "http {",
                &format!(
                    "http {{\n    access_log off;\n    client_body_temp_path {d}; proxy_temp_path {d};\n    fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};"
                ),
            )
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = std::process::Command::new(bin)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Some(Nginx { child, _dir: dir })
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_a_real_upstream() {
    let up = TestUpstream::start().await;
    let (gw, id, token) = setup("").await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let Some(_nginx) = start_nginx(port, gw.running().addr, up.addr) else {
        return;
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let send = |method: Method, path: &str, headers: &[(&str, &str)]| {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let client = client.clone();
        async move {
            use http_body_util::BodyExt;
            let r = tokio::time::timeout(common::WAIT, client.request(req))
                .await
                .ok()?
                .ok()?;
            let status = r.status().as_u16();
            let body = r.into_body().collect().await.ok()?.to_bytes();
            Some((status, body))
        }
    };
    // Wait (bounded) until nginx listens.
    let deadline = std::time::Instant::now() + common::WAIT;
    while send(Method::GET, "/api/version", &[]).await.is_none() {
        assert!(std::time::Instant::now() < deadline, "nginx did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bearer = format!("Bearer {token}");
    // iamgate's own paths reach iamgate through nginx, never the upstream.
    let before = up.hits();
    let (status, body) = send(Method::GET, "/.well-known/jwks.json", &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["keys"].is_array());
    assert_eq!(up.hits(), before);
    let (status, _) = send(
        Method::GET,
        ITEMS,
        &[("authorization", &bearer), ("miauserid", "bootstrap-admin")],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(up.hits(), before + 1);
    let seen = up.last().unwrap();
    assert_eq!(seen.uri, ITEMS);
    assert_eq!(
        seen.headers["miauserid"], id,
        "the verified identity, not the client's"
    );
    assert_eq!(seen.headers["client-type"], "serviceaccount");
    // Refusals never reach the upstream: 401 without a token, 403 on a denied and on an unknown
    // route; the client's identity header never passes either.
    for (path, auth, want) in [
        (ITEMS, None, 401),
        (
            "/api/tenants/globex/marketplace/items/i1/versions",
            Some(&bearer),
            403,
        ),
        ("/api/nothing/here", Some(&bearer), 403),
    ] {
        let mut h = vec![("miauserid", "bootstrap-admin")];
        h.extend(auth.map(|a| ("authorization", a.as_str())));
        let (status, _) = send(Method::GET, path, &h).await.unwrap();
        assert_eq!(status, want, "{path}");
    }
    assert_eq!(
        up.hits(),
        before + 1,
        "a refused request reached the upstream"
    );
    // A public route passes without an identity, and the client's own is not forwarded.
    let (status, _) = send(
        Method::GET,
        "/api/version",
        &[("miauserid", "bootstrap-admin")],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let seen = up.last().unwrap();
    assert_eq!(seen.uri, "/api/version");
    assert!(
        !seen.headers.contains_key("miauserid"),
        "{:?}",
        seen.headers
    );
}
