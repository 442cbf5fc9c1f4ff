//! The gateway request path end to end: real gateway, real upstream, real tokens, the shipped
//! policy and route table.

use crate::common;

use bytes::Bytes;
use common::upstream::TestUpstream;
use common::{Gateway, Resp, gateway};
use http::Method;
use iamgate::util::{b64url, unix_now};
use serde_json::{Value, json};

const P1: &str = "64b7e1a0c0ffee0000000001";
const P2: &str = "64b7e1a0c0ffee0000000002";
const P3: &str = "64b7e1a0c0ffee0000000003";

async fn setup() -> (Gateway, TestUpstream) {
    let up = TestUpstream::start().await;
    let gw = gateway().upstream(&up.url()).with_users().start().await;
    gw.project(P1, "acme", &["dev", "prod"]).await;
    gw.project(P2, "acme", &["dev"]).await;
    gw.project(P3, "globex", &["dev"]).await;
    (gw, up)
}

fn assert_denied(r: &Resp, reason: &str) {
    assert_eq!(r.status, 403, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["statusCode"], 403);
    assert_eq!(j["reason"], reason, "{j}");
    assert!(j["message"].is_string());
}

fn assert_invalid_token(r: &Resp) {
    assert_eq!(r.status, 401, "{:?}", r.body);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(r.json()["statusCode"], 401);
}

#[tokio::test]
async fn allowed_request_reaches_upstream_with_trusted_identity_and_no_spoofed_headers() {
    let (gw, up) = setup().await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(&id, "developer", Some(("project", P1))).await;
    let r = gw
        .call(
            Method::GET,
            &format!("/api/backend/projects/{P1}/revisions?withTenant=true"),
            Some(&token),
            &[
                ("miauserid", "someone-else"),
                ("miausergroups", "admins"),
                ("client-type", "forged"),
                ("x-request-id", "req-abc-123"),
                ("connection", "x-drop-me"),
                ("x-drop-me", "1"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-request-id"), Some("req-abc-123"));
    let seen = up.last().unwrap();
    assert_eq!(
        seen.uri,
        format!("/api/backend/projects/{P1}/revisions?withTenant=true")
    );
    assert_eq!(seen.headers["miauserid"], id);
    assert_eq!(seen.headers["miausergroups"], "");
    assert_eq!(seen.headers["client-type"], "serviceaccount");
    let props: Value = serde_json::from_str(&seen.headers["miauserproperties"]).unwrap();
    assert_eq!(props["companyId"], "acme");
    assert_eq!(seen.headers["x-request-id"], "req-abc-123");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert!(
        !seen.headers.contains_key("authorization"),
        "token not forwarded"
    );
    assert!(
        !seen.headers.contains_key("x-drop-me"),
        "connection-listed header dropped"
    );

    // Without an inbound id, one is created and the same one reaches the upstream.
    let r = gw
        .get_as(&format!("/api/backend/projects/{P1}/versions"), &token)
        .await;
    assert_eq!(r.status, 200);
    let rid = r.header("x-request-id").unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&rid).is_ok(), "{rid}");
    assert_eq!(up.last().unwrap().headers["x-request-id"], rid);
}

#[tokio::test]
async fn denied_request_is_403_with_a_reason_and_never_reaches_upstream() {
    let (gw, up) = setup().await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(&id, "developer", Some(("project", P1))).await;
    let before = up.hits();
    // A developer cannot deploy; a project it has no role on is not visible; an unknown project
    // is denied as such; another company's project is not reachable.
    let cases = [
        (
            Method::PATCH,
            format!("/api/backend/projects/{P1}/rules"),
            "permission_denied",
        ),
        (
            Method::GET,
            format!("/api/backend/projects/{P2}/revisions"),
            "permission_denied",
        ),
        (
            Method::GET,
            format!("/api/backend/projects/{P3}/revisions"),
            "permission_denied",
        ),
        (
            Method::GET,
            "/api/tenants/globex/audit-logs".to_owned(),
            "permission_denied",
        ),
    ];
    for (m, path, reason) in cases {
        let r = gw.call(m, &path, Some(&token), &[], Bytes::new()).await;
        assert_denied(&r, reason);
    }
    // A project the directory does not know: the same plain 403, so that a caller cannot tell
    // it from another company's (the reason, unknown_resource, is in the decision log).
    let r = gw
        .get_as(
            "/api/backend/projects/64b7e1a0c0ffee00000000ff/revisions",
            &token,
        )
        .await;
    assert_denied(&r, "permission_denied");
    let r = gw
        .call(
            Method::POST,
            &format!("/api/deploy/projects/{P1}/trigger/pipeline/"),
            Some(&token),
            &[("content-type", "application/json")],
            r#"{"environment":"dev","revision":"main"}"#,
        )
        .await;
    assert_denied(&r, "permission_denied");
    assert_eq!(up.hits(), before, "the upstream saw nothing");

    // Unknown routes are 404 and never forwarded, even with a valid token.
    let r = gw.get_as("/api/secret-admin", &token).await;
    assert_eq!(r.status, 404);
    let r = gw
        .call(
            Method::PUT,
            &format!("/api/backend/projects/{P1}/rules"),
            Some(&token),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("PATCH"));
    assert_eq!(up.hits(), before);
}

/// A token signed by the gateway's own key with arbitrary header and claims.
fn forge(gw: &Gateway, header: Value, claims: Value) -> String {
    let set = gw.running().issuer.keys.current();
    set.active()
        .sign_with_header(
            &b64url(header.to_string().as_bytes()),
            claims.to_string().as_bytes(),
        )
        .unwrap()
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_bearer_challenge() {
    let (gw, up) = setup().await;
    let (id, token) = gw.company_owner("acme").await;
    let path = "/api/tenants/acme/audit-logs";
    let ok = gw.get_as(path, &token).await;
    assert_eq!(ok.status, 200);
    let before = up.hits();

    // No token: a bare challenge, no error code (RFC 6750 §3.1).
    let r = gw.call(Method::GET, path, None, &[], Bytes::new()).await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer") && !challenge.contains("error="),
        "{challenge}"
    );

    let issuer = gw.running().issuer.clone();
    let kid = issuer.keys.current().active().kid().to_owned();
    let now = unix_now();
    let claims = |iss: &str, aud: &str, exp: i64| json!({"iss": iss, "aud": aud, "sub": id, "client_id": id, "iat": now - 10, "exp": exp, "jti": uuid::Uuid::new_v4().to_string(), "permissions": []});
    let at = json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
    let expired = issuer.mint(&id, &[], now - 7200).unwrap().token;
    let wrong_aud = forge(
        &gw,
        at.clone(),
        claims(&issuer.issuer, "https://elsewhere", now + 600),
    );
    let other_iss = forge(
        &gw,
        at.clone(),
        claims("https://other-issuer", &issuer.audience, now + 600),
    );
    let typ_jwt = forge(
        &gw,
        json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
        claims(&issuer.issuer, &issuer.audience, now + 600),
    );
    // A client assertion (RFC 7523) signed by the client's own key, sent as an access token.
    let client_key = common::TestKey::new("ck");
    let assertion = client_key.assertion(&id);
    let mut tampered = token.clone();
    tampered.push('x');
    for bad in [
        "not-a-jwt".to_owned(),
        "a.b.c".to_owned(),
        tampered,
        expired,
        wrong_aud,
        other_iss,
        typ_jwt,
        assertion,
    ] {
        let r = gw.get_as(path, &bad).await;
        assert_invalid_token(&r);
        assert!(
            !String::from_utf8_lossy(&r.body).contains(&bad),
            "token echoed"
        );
    }
    assert_eq!(up.hits(), before);
}

#[tokio::test]
async fn a_deleted_accounts_token_is_refused_at_once() {
    let (gw, up) = setup().await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(&id, "reporter", Some(("company", "acme"))).await;
    let path = format!("/api/backend/projects/{P1}/revisions");
    let r = gw.get_as(&path, &token).await;
    assert_eq!(r.status, 200);
    gw.delete_account(&id).await;
    let before = up.hits();
    let r = gw.get_as(&path, &token).await;
    assert_invalid_token(&r);
    assert_eq!(up.hits(), before);
}

#[tokio::test]
async fn path_tricks_never_reach_a_route_the_caller_may_not_use() {
    let (gw, up) = setup().await;
    let (id, token) = gw.company_sa("acme").await;
    // May read P1's configuration, nothing of P2 or company settings.
    gw.bind(&id, "guest", Some(("project", P1))).await;
    let allowed = format!("/api/backend/projects/{P1}/revisions");
    assert_eq!(gw.get_as(&allowed, &token).await.status, 200);
    let before = up.hits();
    for (path, status) in [
        (format!("//api/backend/projects/{P2}/revisions"), 400),
        (format!("/api/backend/projects/{P1}/../{P2}/revisions"), 400),
        (
            format!("/api/backend/projects/{P1}/%2e%2e/{P2}/revisions"),
            400,
        ),
        (
            format!("/api/backend/projects/{P1}/%2E%2E/{P2}/revisions"),
            400,
        ),
        (format!("/api/backend/projects/{P1};x=y/revisions"), 400),
        (
            format!("/api/backend/projects/{P1}%2F..%2F{P2}/revisions"),
            400,
        ),
        // One segment holding a separator: not an id, as in a body.
        (format!("/api/backend/projects/{P1}%2F{P2}/revisions"), 400),
        (format!("/API/backend/projects/{P1}/revisions"), 404),
        (format!("/api/Backend/projects/{P1}/revisions"), 404),
        // A project id is case-sensitive: this one names no known project.
        (
            format!("/api/backend/projects/{}/revisions", P1.to_uppercase()),
            403,
        ),
        (format!("/api/backend/projects/{P1}/revisions//"), 400),
        ("/api/backend/tenants/acme/rules".to_owned(), 403),
    ] {
        let r = gw.get_as(&path, &token).await;
        assert_eq!(r.status, status, "{path}: {:?}", r.body);
        assert_eq!(r.json()["statusCode"], status);
    }
    assert_eq!(up.hits(), before, "no trick reached the upstream");

    // One trailing slash is ignored for matching and forwarded as sent.
    let r = gw.get_as(&format!("{allowed}/"), &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().unwrap().uri, format!("{allowed}/"));
    // %2F stays inside its segment and is forwarded unchanged.
    let r = gw
        .get_as(
            &format!("/api/backend/projects/{P1}/revisions/feat%2Fx/configuration"),
            &token,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().unwrap().uri,
        format!("/api/backend/projects/{P1}/revisions/feat%2Fx/configuration")
    );

    // Allowed on one route, then denied on another with the same token: no cache leak.
    for _ in 0..3 {
        assert_eq!(gw.get_as(&allowed, &token).await.status, 200);
        assert_denied(
            &gw.get_as(&format!("/api/backend/projects/{P2}/revisions"), &token)
                .await,
            "permission_denied",
        );
        assert_denied(
            &gw.call(
                Method::POST,
                &format!("/api/backend/projects/{P1}/versions"),
                Some(&token),
                &[],
                "{}",
            )
            .await,
            "permission_denied",
        );
    }
}

#[tokio::test]
async fn deploy_is_decided_on_the_environment_named_in_the_body() {
    let (gw, up) = setup().await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(
        &id,
        "maintainer",
        Some(("environment", &format!("{P1}:dev"))),
    )
    .await;
    let path = format!("/api/deploy/projects/{P1}/trigger/pipeline/");
    let json_ct = [("content-type", "application/json")];
    let body = r#"{"environment":"dev","revision":"main","deployType":"smart_deploy"}"#;
    let r = gw
        .call(Method::POST, &path, Some(&token), &json_ct, body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = up.last().unwrap();
    assert_eq!(
        seen.body_len,
        body.len(),
        "the buffered body is forwarded unchanged"
    );
    let before = up.hits();
    let r = gw
        .call(
            Method::POST,
            &path,
            Some(&token),
            &json_ct,
            r#"{"environment":"prod","revision":"main"}"#,
        )
        .await;
    assert_denied(&r, "permission_denied");
    // Same environment id, other project: no binding there.
    let r = gw
        .call(
            Method::POST,
            &format!("/api/deploy/projects/{P2}/trigger/pipeline/"),
            Some(&token),
            &json_ct,
            r#"{"environment":"dev"}"#,
        )
        .await;
    assert_denied(&r, "permission_denied");
    // Bad bodies: a clear 400 naming the field, or 413; nothing forwarded.
    for (body, status, needle) in [
        ("", 400, "body field /environment"),
        (r#"{"revision":"main"}"#, 400, "body field /environment"),
        (r#"{"environment":5}"#, 400, "must be a non-empty string"),
        (
            r#"{"environment":["dev"]}"#,
            400,
            "must be a non-empty string",
        ),
        ("{not json", 400, "not valid JSON"),
    ] {
        let r = gw
            .call(Method::POST, &path, Some(&token), &json_ct, body)
            .await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        assert!(
            r.json()["message"].as_str().unwrap().contains(needle),
            "{:?}",
            r.json()
        );
    }
    let huge = format!(r#"{{"environment":"dev","pad":"{}"}}"#, "x".repeat(2 << 20));
    let r = gw
        .call(Method::POST, &path, Some(&token), &json_ct, huge)
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(up.hits(), before);
}

#[tokio::test]
async fn lists_return_only_what_the_caller_may_view() {
    let (gw, up) = setup().await;
    up.answer(
        "/api/backend/projects/",
        200,
        json!([
            {"_id": P1, "tenantId": "acme", "name": "one"},
            {"_id": P2, "tenantId": "acme", "name": "two"},
            {"_id": P3, "tenantId": "globex", "name": "three"},
        ]),
    );
    up.answer(
        &format!("/api/backend/projects/{P1}"),
        200,
        json!({"_id": P1, "tenantId": "acme", "environments": [{"envId": "dev"}, {"envId": "prod"}]}),
    );
    up.answer(
        "/api/backend/tenants/",
        200,
        json!([{"tenantId": "acme"}, {"tenantId": "globex"}]),
    );
    let ids = |r: &Resp| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["_id"].as_str().unwrap().to_owned())
            .collect()
    };

    let (dev, dev_token) = gw.company_sa("acme").await;
    gw.bind(&dev, "developer", Some(("project", P2))).await;
    let r = gw
        .call(
            Method::GET,
            "/api/backend/projects/?tenantIds=acme",
            Some(&dev_token),
            &[("accept-encoding", "gzip")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(ids(&r), vec![P2]);
    assert!(!up.last().unwrap().headers.contains_key("accept-encoding"));

    let (_owner, owner_token) = gw.company_owner("acme").await;
    let r = gw.get_as("/api/backend/projects/", &owner_token).await;
    assert_eq!(ids(&r), vec![P1, P2]);
    let r = gw.get_as("/api/backend/tenants/", &owner_token).await;
    assert_eq!(r.json(), json!([{"tenantId": "acme"}]));

    let (_, root_token) = gw.root_sa(&["console.root.view"]).await;
    let r = gw.get_as("/api/backend/projects/", &root_token).await;
    assert_eq!(ids(&r), vec![P1, P2, P3]);

    // A caller with no role sees an empty list, not an error.
    let (_, nobody) = gw.company_sa("acme").await;
    let r = gw.get_as("/api/backend/projects/", &nobody).await;
    assert_eq!(r.json(), json!([]));

    // A project's environments are filtered too: a project guest who reports on one environment
    // sees that one.
    let (envr, envr_token) = gw.company_sa("acme").await;
    gw.bind(&envr, "guest", Some(("project", P1))).await;
    gw.bind(
        &envr,
        "reporter",
        Some(("environment", &format!("{P1}:dev"))),
    )
    .await;
    let r = gw
        .get_as(&format!("/api/backend/projects/{P1}"), &envr_token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["environments"], json!([{"envId": "dev"}]));

    // An answer that cannot be filtered is refused, never passed through.
    up.answer(
        "/api/backend/projects/",
        200,
        json!({"unexpected": "shape"}),
    );
    let r = gw.get_as("/api/backend/projects/", &dev_token).await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    // Upstream errors pass through unfiltered.
    up.answer("/api/backend/projects/", 500, json!({"error": "boom"}));
    let r = gw.get_as("/api/backend/projects/", &dev_token).await;
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let up = TestUpstream::start().await;
    // A port with nothing listening: bind, note the port, drop.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = gateway().upstream(&format!("http://{dead}")).start().await;
    let (_, token) = gw.root_sa(&["console.root.view"]).await;
    let r = gw.get_as("/api/marketplace/categories", &token).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["statusCode"], 502);
    assert_eq!(r.header("content-type"), Some("application/json"));

    let gw = gateway().upstream(&up.url()).start().await;
    let (_, token) = gw.root_sa(&["console.root.view"]).await;
    let r = gw
        .get_as("/api/marketplace/categories?sleep_ms=3000", &token)
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["statusCode"], 504);
}

#[tokio::test]
async fn public_routes_need_no_token_and_carry_no_identity() {
    let (gw, up) = setup().await;
    let r = gw
        .call(
            Method::GET,
            "/api/version",
            None,
            &[("miauserid", "forged")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = up.last().unwrap();
    assert_eq!(seen.uri, "/api/version");
    assert!(!seen.headers.contains_key("miauserid"));
    // Both spellings of the refresh route exist.
    for p in ["/api/refreshtoken", "/api/refreshToken"] {
        let r = gw.call(Method::POST, p, None, &[], "{}").await;
        assert_eq!(r.status, 200, "{p}");
    }
    // Authenticated-only routes need a valid token.
    let r = gw
        .call(Method::GET, "/api/userinfo", None, &[], Bytes::new())
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn role_edits_need_user_management_on_every_project_named() {
    let (gw, up) = setup().await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(&id, "project-admin", Some(("project", P1))).await;
    let path = "/api/companies/acme/users/u-42";
    let ct = [("content-type", "application/json")];
    let ok = r#"{"projectsRole":[{"projectId":"64b7e1a0c0ffee0000000001","role":"developer"}]}"#;
    let before = up.hits();
    let r = gw.call(Method::PATCH, path, Some(&token), &ct, ok).await;
    // Role bindings are iamgate's own: served here, never forwarded.
    assert_eq!(r.status, 204, "{:?}", r.body);
    // A second project without the role: denied as a whole (granting there would escalate).
    let two = format!(
        r#"{{"projectsRole":[{{"projectId":"{P1}","role":"developer"}},{{"projectId":"{P2}","role":"developer"}}]}}"#
    );
    assert_denied(
        &gw.call(Method::PATCH, path, Some(&token), &ct, two).await,
        "escalation",
    );
    // A company role needs company user management.
    assert_denied(
        &gw.call(
            Method::PATCH,
            path,
            Some(&token),
            &ct,
            r#"{"role":"developer"}"#,
        )
        .await,
        "permission_denied",
    );
    // A project of another company named under this company: refused, as plainly as any deny.
    let other = format!(r#"{{"projectsRole":[{{"projectId":"{P3}","role":"developer"}}]}}"#);
    let (_own, own_token) = gw.company_owner("acme").await;
    assert_denied(
        &gw.call(Method::PATCH, path, Some(&own_token), &ct, other)
            .await,
        "permission_denied",
    );
    // Nothing to decide on: denied.
    assert_denied(
        &gw.call(Method::PATCH, path, Some(&own_token), &ct, "{}")
            .await,
        "no_applicable_check",
    );
    assert_eq!(up.hits(), before);
}

#[tokio::test]
async fn metrics_count_requests_and_decisions() {
    let (gw, _up) = setup().await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(&id, "guest", Some(("project", P1))).await;
    gw.get_as(&format!("/api/backend/projects/{P1}/revisions"), &token)
        .await;
    gw.get_as(&format!("/api/backend/projects/{P2}/revisions"), &token)
        .await;
    let m = String::from_utf8(gw.get("/-/metrics").await.body.to_vec()).unwrap();
    assert!(
        m.contains(r#"iamgate_requests_total{route="P2.revisions",status="2xx"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"iamgate_requests_total{route="P2.revisions",status="4xx"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"iamgate_decisions_total{result="allow"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"iamgate_decisions_total{result="deny"} 1"#),
        "{m}"
    );
    assert!(m.contains("iamgate_request_duration_seconds_bucket"), "{m}");
    // A path no route matches counts under `none`; only routes and classes seen have series.
    gw.get_as("/api/no/such/route", &token).await;
    gw.get_as("/api/no/such/route", &token).await;
    let m = String::from_utf8(gw.get("/-/metrics").await.body.to_vec()).unwrap();
    assert!(
        m.contains(r#"iamgate_requests_total{route="none",status="4xx"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"iamgate_requests_total{route="P2.revisions",status="2xx"} 1"#),
        "{m}"
    );
    assert_eq!(m.matches("iamgate_requests_total{").count(), 3, "{m}");
    assert!(
        !m.contains(&token) && !m.contains(&id),
        "no identities in metrics"
    );
}
