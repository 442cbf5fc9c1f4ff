//! Abuse at the edges, over real sockets from two loopback source addresses (127.0.0.1 and
//! 127.0.0.2): failures never lock a client out from elsewhere, and behind a trusted ingress each
//! forwarded client has its own bucket while forwarding headers of untrusted peers count for
//! nothing.

use crate::common;

use common::gateway;

const A: &str = "127.0.0.1";
const B: &str = "127.0.0.2";

fn limits(per_client: u32, per_address: u32, extra: &str) -> String {
    // `extra` may add keys to the oauth section (indented lines first) and further sections.
    format!(
        "listen: 127.0.0.1:0\nlog: {{level: warn}}\noauth:\n  rate_limit: {{window_secs: 60, max_failures_per_client: {per_client}, max_failures_per_address: {per_address}}}\n{extra}"
    )
}

#[tokio::test]
async fn failures_from_one_address_never_lock_a_client_out_elsewhere() {
    let gw = gateway().yaml(&limits(3, 1000, "")).start().await;
    let (id, secret) = gw.secret_client().await;
    // Someone who knows the (public) client id fails from B until B is refused for it.
    for _ in 0..3 {
        assert_eq!(gw.token_basic_from(B, &id, "wrong", &[]).await.status, 401);
    }
    gw.token_basic_from(B, &id, "wrong", &[])
        .await
        .oauth_error(429, "temporarily_unavailable");
    // The client itself, from A, is not refused.
    let r = gw.token_basic_from(A, &id, &secret, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // From B, the pair stays refused for the window.
    gw.token_basic_from(B, &id, &secret, &[])
        .await
        .oauth_error(429, "temporarily_unavailable");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let gw = gateway()
        .yaml(&limits(
            1000,
            3,
            "server: {trusted_proxies: [\"127.0.0.2/32\"]}\n",
        ))
        .start()
        .await;
    let (id, secret) = gw.secret_client().await;
    let xff = |v: &'static str| [("x-forwarded-for", v)];
    // Through the trusted ingress (B), failures count for the forwarded client.
    for _ in 0..3 {
        let r = gw.token_basic_from(B, &id, "wrong", &xff("10.1.1.1")).await;
        assert_eq!(r.status, 401);
    }
    gw.token_basic_from(B, &id, &secret, &xff("10.1.1.1"))
        .await
        .oauth_error(429, "temporarily_unavailable");
    // Another client behind the same ingress is served.
    let r = gw.token_basic_from(B, &id, &secret, &xff("10.1.1.2")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A client cannot pose as another by sending its own X-Forwarded-For: the ingress appends
    // the real address, and the rightmost untrusted one counts.
    gw.token_basic_from(B, &id, &secret, &xff("10.1.1.2, 10.1.1.1"))
        .await
        .oauth_error(429, "temporarily_unavailable");
    // Trusted hops on the right are skipped; `Forwarded: for=` is read the same way.
    gw.token_basic_from(B, &id, &secret, &xff("10.1.1.1, 127.0.0.2"))
        .await
        .oauth_error(429, "temporarily_unavailable");
    gw.token_basic_from(
        B,
        &id,
        &secret,
        &[("forwarded", "for=10.1.1.1;proto=https")],
    )
    .await
    .oauth_error(429, "temporarily_unavailable");
    // IPv6 clients count per /64.
    for _ in 0..3 {
        let r = gw
            .token_basic_from(B, &id, "wrong", &xff("2001:db8::1"))
            .await;
        assert_eq!(r.status, 401);
    }
    gw.token_basic_from(B, &id, &secret, &xff("2001:db8::ffff"))
        .await
        .oauth_error(429, "temporarily_unavailable");
    let r = gw
        .token_basic_from(
            B,
            &id,
            &secret,
            &[("forwarded", "for=\"[2001:db8:0:1::1]:443\"")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // From an untrusted peer (A) forwarding headers count for nothing: its failures are its own,
    // whatever it claims.
    for _ in 0..3 {
        let r = gw.token_basic_from(A, &id, "wrong", &xff("10.9.9.1")).await;
        assert_eq!(r.status, 401);
    }
    gw.token_basic_from(A, &id, &secret, &xff("10.9.9.2"))
        .await
        .oauth_error(429, "temporarily_unavailable");
}

const P1: &str = "64b7e1a0c0ffee0000000001";

/// A gateway in front of a recording upstream, with 127.0.0.2 as its trusted ingress and an
/// external issuer `idp` whose key is returned, and a token allowed to read project P1.
/// `upstream` adds keys to the upstream section.
struct Proxied {
    gw: common::Gateway,
    up: common::upstream::TestUpstream,
    token: String,
    idp: common::TestKey,
    _keys: tempfile::TempDir,
}

async fn proxied(upstream: &str) -> Proxied {
    let up = common::upstream::TestUpstream::start().await;
    let keys = tempfile::tempdir().unwrap();
    let idp = common::TestKey::new("idp-1");
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({"keys": [idp.jwk()]}).to_string()).unwrap();
    let gw = gateway()
        .with(&format!(
            "server: {{trusted_proxies: [\"127.0.0.2\"]}}\nupstream: {{url: \"{}\"{upstream}}}\nexternal_issuers:\n  - {{name: idp, issuer: \"{}\", audience: console, jwks_file: {}}}\n",
            up.url(),
            common::TEST_ISSUER,
            jwks.display()
        ))
        .start()
        .await;
    gw.project(P1, "acme", &["dev"]).await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(&id, "developer", Some(("project", P1))).await;
    Proxied {
        gw,
        up,
        token,
        idp,
        _keys: keys,
    }
}

async fn get_from(
    gw: &common::Gateway,
    source: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> common::Resp {
    let auth = format!("Bearer {token}");
    let mut h = vec![("authorization", auth.as_str())];
    h.extend_from_slice(headers);
    gw.request_from(source.parse().unwrap(), http::Method::GET, path, &h, "")
        .await
}

#[tokio::test]
async fn the_upstream_never_sees_where_a_client_claims_to_come_from() {
    let Proxied { gw, up, token, .. } = proxied(", strip_headers: [x-console-trusted]").await;
    let path = format!("/api/backend/projects/{P1}/revisions");
    let spoofed = [
        ("forwarded", "for=6.6.6.6;host=evil"),
        ("x-real-ip", "6.6.6.6"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("x-console-trusted", "yes"),
    ];
    // From an untrusted peer: every claim is dropped; the forwarding headers are the gateway's.
    let r = get_from(&gw, A, &path, &token, &spoofed).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = up.last().unwrap().headers;
    for (h, _) in &spoofed[..4] {
        assert!(!seen.contains_key(*h), "{h} reached the upstream: {seen:?}");
    }
    assert!(!seen.contains_key("x-console-trusted"), "{seen:?}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_ne!(seen["x-forwarded-host"], "evil.example");
    // From the trusted ingress: its X-Forwarded-* are kept and the chain extended.
    let r = get_from(
        &gw,
        B,
        &path,
        &token,
        &[
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "console.example"),
            ("x-real-ip", "6.6.6.6"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = up.last().unwrap().headers;
    assert_eq!(seen["x-forwarded-for"], "10.1.1.1, 127.0.0.2");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "console.example");
    assert!(!seen.contains_key("x-real-ip"));
}

#[tokio::test]
async fn double_encoded_separators_are_refused_and_never_forwarded() {
    let Proxied { gw, up, token, .. } = proxied("").await;
    let hits = up.hits();
    for path in [
        format!("/api/backend/projects/{P1}/revisions/%252e%252e%252fadmin"),
        format!("/api/backend/projects/{P1}/revisions/a%252Fb"),
        format!("/api/backend/projects/{P1}/revisions/a%255cb"),
    ] {
        let r = get_from(&gw, A, &path, &token, &[]).await;
        assert_eq!(r.status, 400, "{path}: {:?}", r.body);
    }
    assert_eq!(up.hits(), hits);
}

#[tokio::test]
async fn a_request_with_both_content_length_and_transfer_encoding_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Proxied { gw, up, token, .. } = proxied("").await;
    let hits = up.hits();
    let mut s = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    let req = format!(
        "POST /api/deploy/projects/{P1}/trigger/pipeline/ HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n11\r\n{{\"environment\":1}}\r\n0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(common::WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(up.hits(), hits);
}

#[tokio::test]
async fn group_names_cannot_split_or_join_in_the_groups_header() {
    let Proxied {
        gw, up, idp: key, ..
    } = proxied("").await;
    gw.bind_binding(iamgate::iam::Binding {
        binding_id: "group-a-b".into(),
        subjects: vec![],
        groups: vec!["group:idp:a,b".into()],
        roles: vec!["developer".into()],
        permissions: vec![],
        resource: Some(iamgate::iam::BindingResource::scoped("project", P1, "acme")),
    })
    .await;
    let now = iamgate::util::unix_now();
    let token = key.sign(&serde_json::json!({
        "iss": common::TEST_ISSUER, "aud": "console", "sub": "alice",
        "groups": ["a,b", "c%2Cd", "e"], "iat": now, "exp": now + 300,
    }));
    let r = get_from(
        &gw,
        A,
        &format!("/api/backend/projects/{P1}/revisions"),
        &token,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Each name stays one entry: `,` and `%` are percent-encoded within a name.
    assert_eq!(
        up.last().unwrap().headers["miausergroups"],
        "a%2Cb,c%252Cd,e"
    );
}

#[tokio::test]
async fn one_client_cannot_fill_the_replay_record_for_the_others() {
    // On SQLite the record is in memory (capacity 100 here), on PostgreSQL the shared table:
    // the per-client bound holds on both.
    let gw = gateway()
        .yaml(&limits(
            1000,
            1000,
            "  replay_cache_capacity: 100\n  replay_per_client: 5\n",
        ))
        .start()
        .await;
    let (greedy_key, other_key) = (common::TestKey::new("g1"), common::TestKey::new("o1"));
    let greedy = gw.jwt_client(&greedy_key).await;
    let other = gw.jwt_client(&other_key).await;
    // The greedy client spends its quota of unexpired jtis...
    for _ in 0..5 {
        let r = gw.token_assertion(&greedy_key.assertion(&greedy)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // ...and then it alone is refused, with an error that says why.
    let r = gw.token_assertion(&greedy_key.assertion(&greedy)).await;
    let body = r.oauth_error(429, "temporarily_unavailable");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("unexpired assertions"),
        "{body}"
    );
    // Everyone else is served.
    for _ in 0..5 {
        let r = gw.token_assertion(&other_key.assertion(&other)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
}

#[tokio::test]
async fn signing_keys_and_project_ownership_are_fetched_over_https_only() {
    // Plain http to another host would let anyone on the path inject signing keys or rewrite
    // which company owns a project; loopback stays allowed (a sidecar, the tests).
    let e = common::config_error(
        "external_issuers:\n  - {name: corp, issuer: \"https://corp.example\", audience: console, jwks_url: \"http://corp.example/jwks\"}\ndirectory: {sync_url: \"http://console.example/api/backend/projects/\"}\n",
    );
    assert!(
        e.contains("external_issuers[0].jwks_url: must be https"),
        "{e}"
    );
    assert!(e.contains("directory.sync_url: must be https"), "{e}");
}

#[tokio::test]
async fn secrets_are_read_from_mounted_files_and_must_be_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let pepper = file("pepper", "0123456789abcdef0123456789abcdef\n");
    let keys = file(
        "client-keys",
        "first-client-key-0123456789\nsecond-client-key-0123456789\n",
    );
    let gw = gateway()
        .yaml(&format!(
            "listen: 127.0.0.1:0\nlog: {{level: warn}}\nsecret_pepper_file: {pepper}\nmanagement: {{client_keys_file: {keys}}}\n"
        ))
        .start()
        .await;
    let admin = {
        let file = gw.running().bootstrap_file.clone().unwrap();
        let creds: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let r = gw
            .token_basic(
                creds["clientId"].as_str().unwrap(),
                creds["clientSecret"].as_str().unwrap(),
            )
            .await;
        r.json()["access_token"].as_str().unwrap().to_owned()
    };
    let list = |key: Option<&'static str>| {
        let gw = &gw;
        let auth = format!("Bearer {admin}");
        async move {
            let mut h = vec![("authorization", auth.as_str())];
            if let Some(k) = key {
                h.push(("client-key", k));
            }
            gw.request(http::Method::GET, "/api/service-accounts", &h, "")
                .await
                .status
        }
    };
    // Both keys of the file are accepted, nothing else.
    assert_eq!(list(Some("second-client-key-0123456789")).await, 200);
    assert_eq!(list(Some("first-client-key-0123456789")).await, 200);
    assert_eq!(list(None).await, 401);
    // Short secrets and a value given twice are refused, every problem at once.
    let short = file("short", "too-short\n");
    let e = common::config_error(&format!(
        "secret_pepper_file: {short}\nsecret_pepper: also-given-0123456789abcdef\nmanagement: {{client_keys: [short]}}\n"
    ));
    assert!(
        e.contains("secret_pepper: give either secret_pepper or secret_pepper_file"),
        "{e}"
    );
    assert!(
        e.contains("management.client_keys: each key needs at least 22 characters"),
        "{e}"
    );
    let e = common::config_error(&format!("secret_pepper_file: {short}\n"));
    assert!(
        e.contains("secret_pepper: must be at least 22 characters"),
        "{e}"
    );
    let e = common::config_error("secret_pepper_file: /nonexistent/pepper\n");
    assert!(
        e.contains("secret_pepper_file: cannot read /nonexistent/pepper"),
        "{e}"
    );
}
