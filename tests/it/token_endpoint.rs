//! The token endpoint over real HTTP: both client authentication methods, every assertion rule of
//! The token endpoint's contract, request hygiene, indistinguishable failures, replay and rate limiting.

use crate::common;

use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PKCS1_SHA384};
use common::*;
use http::Method;
use iamgate::iam::AuthMethod;
use iamgate::util::{b64url, unix_now};
use serde_json::json;

#[tokio::test]
async fn client_secret_basic_returns_a_verifiable_access_token() {
    let gw = gateway().start().await;
    let (id, secret) = gw.secret_client().await;
    let r = gw.token_basic(&id, &secret).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");

    let (header, claims) = verify_access_token(&gw, body["access_token"].as_str().unwrap()).await;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["permissions"], json!(["console.root.view"]));
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - unix_now()).abs() < 5);
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

#[tokio::test]
async fn basic_scheme_is_case_insensitive_and_credentials_are_form_decoded() {
    let gw = gateway().start().await;
    let (id, secret) = gw.secret_client().await;
    let lower = format!("basic {}", base64_std(&format!("{id}:{secret}")));
    let r = gw
        .token(
            &[("authorization", &lower)],
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(r.status, 200);
    // A client that form-urlencodes both parts, every character escaped (RFC 6749 §2.3.1).
    let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let encoded = format!(
        "Basic {}",
        base64_std(&format!("{}:{}", enc(&id), enc(&secret)))
    );
    let r = gw
        .token(
            &[("authorization", &encoded)],
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn private_key_jwt_with_jwk_and_with_pem_keys() {
    let gw = gateway().start().await;
    let key = TestKey::new("k1");
    let id = gw.jwt_client(&key).await;
    let r = gw.token_assertion(&key.assertion(&id)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (_, claims) = verify_access_token(&gw, r.json()["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["permissions"], json!([]));

    // PEM-registered key: kid is the RFC 7638 thumbprint, returned at creation.
    let pem_key = TestKey::new("unused");
    let created = gw
        .create(
            AuthMethod::PrivateKeyJwt,
            Some(json!(pem_key.public_pem())),
            &[],
        )
        .await;
    let kid = created.kid.clone().unwrap();
    let signer = TestKey {
        pair: pem_key.pair,
        kid,
    };
    let mut c = claims_for(&created.client_id);
    c["aud"] = json!(format!("{}/api/m2m/oauth/token", gw.base));
    let form = assertion_form(&signer.sign(&c), Some(&created.client_id));
    let r = gw
        .token(
            &[],
            &format!("{form}&token_endpoint_auth_method=private_key_jwt"),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // The issuer is an accepted audience too, as a one-element array.
    let mut c = claims_for(&id);
    c["aud"] = json!([gw.base.clone()]);
    assert_eq!(gw.token_assertion(&key.sign(&c)).await.status, 200);
}

fn claims_for(id: &str) -> serde_json::Value {
    claims(id)
}

#[tokio::test]
async fn replayed_assertions_are_refused_sequentially_and_concurrently() {
    let gw = gateway().start().await;
    let key = TestKey::new("k1");
    let id = gw.jwt_client(&key).await;
    let a = key.assertion(&id);
    assert_eq!(gw.token_assertion(&a).await.status, 200);
    gw.token_assertion(&a)
        .await
        .oauth_error(401, "invalid_client");

    let a = key.assertion(&id);
    let gw = std::sync::Arc::new(gw);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (gw, a) = (gw.clone(), a.clone());
        tasks.push(tokio::spawn(async move { gw.token_assertion(&a).await }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 200 {
            ok += 1;
        } else {
            r.oauth_error(401, "invalid_client");
        }
    }
    assert_eq!(ok, 1, "exactly one of 20 concurrent copies gets a token");
}

type Mutation = Box<dyn Fn(&mut serde_json::Value)>;

#[tokio::test]
async fn assertion_claim_rules() {
    let gw = gateway().start().await;
    let key = TestKey::new("k1");
    let id = gw.jwt_client(&key).await;
    let now = unix_now();
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "missing jti",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        ("empty jti", Box::new(|c| c["jti"] = json!(""))),
        ("numeric jti", Box::new(|c| c["jti"] = json!(5))),
        (
            "missing exp",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        ("expired", Box::new(move |c| c["exp"] = json!(now - 120))),
        (
            "exp beyond max lifetime",
            Box::new(move |c| c["exp"] = json!(now + 3600 + 31 + 60)),
        ),
        (
            "iat in the future",
            Box::new(move |c| c["iat"] = json!(now + 120)),
        ),
        (
            "nbf in the future",
            Box::new(move |c| c["nbf"] = json!(now + 120)),
        ),
        (
            "aud of another server",
            Box::new(|c| c["aud"] = json!("https://other.example/oauth/token")),
        ),
        (
            "two-element aud",
            Box::new(|c| c["aud"] = json!(["console-client-credentials", "x"])),
        ),
        (
            "aud with trailing slash",
            Box::new(|c| c["aud"] = json!("console-client-credentials/")),
        ),
        (
            "missing aud",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        ("iss != sub", Box::new(|c| c["sub"] = json!("someone-else"))),
        (
            "exp as string",
            Box::new(move |c| c["exp"] = json!((now + 60).to_string())),
        ),
        (
            "iat as string",
            Box::new(move |c| c["iat"] = json!(now.to_string())),
        ),
        ("iss as number", Box::new(|c| c["iss"] = json!(1))),
    ];
    for (name, mutate) in cases {
        let mut c = claims(&id);
        mutate(&mut c);
        gw.token_assertion(&key.sign(&c))
            .await
            .oauth_error_for(name, 401, "invalid_client");
    }
    // A valid assertion still works afterwards (no jti was burnt, no lockout).
    assert_eq!(gw.token_assertion(&key.assertion(&id)).await.status, 200);
    // exp just inside the maximum lifetime is accepted.
    let mut c = claims(&id);
    c["exp"] = json!(now + 3600);
    assert_eq!(gw.token_assertion(&key.sign(&c)).await.status, 200);
}

#[tokio::test]
async fn assertion_header_and_signature_rules() {
    let gw = gateway().start().await;
    let key = TestKey::new("k1");
    let id = gw.jwt_client(&key).await;
    let other = TestKey::new("other-kid");
    let other_id = gw.jwt_client(&other).await;
    let c = claims(&id);
    let bad = |r: Resp, name: &str| {
        r.oauth_error_for(name, 401, "invalid_client");
    };

    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(serde_json::to_vec(&c).unwrap())
    );
    bad(gw.token_assertion(&none).await, "alg none, empty signature");
    let none_sig = format!(
        "{}.{}.AAAA",
        b64url(br#"{"alg":"none","kid":"k1"}"#),
        b64url(serde_json::to_vec(&c).unwrap())
    );
    bad(
        gw.token_assertion(&none_sig).await,
        "alg none with signature",
    );

    // HS256 keyed with the account's public key: the classic algorithm confusion.
    let input = format!(
        "{}.{}",
        b64url(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#),
        b64url(serde_json::to_vec(&c).unwrap())
    );
    for secret in [key.public_pem(), serde_json::to_string(&key.jwk()).unwrap()] {
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
            input.as_bytes(),
        );
        bad(
            gw.token_assertion(&format!("{input}.{}", b64url(mac.as_ref())))
                .await,
            "HS256 with public key",
        );
    }

    let rs384 = key.sign_raw(&json!({"alg":"RS384","kid":"k1"}), &c, &RSA_PKCS1_SHA384);
    bad(gw.token_assertion(&rs384).await, "RS384");
    let lying = key.sign_raw(&json!({"alg":"RS256","kid":"k1"}), &c, &RSA_PKCS1_SHA384);
    bad(
        gw.token_assertion(&lying).await,
        "RS256 header over an RS384 signature",
    );

    bad(
        gw.token_assertion(&key.sign_raw(
            &json!({"alg":"RS256","kid":"nope"}),
            &c,
            &RSA_PKCS1_SHA256,
        ))
        .await,
        "unknown kid",
    );
    // The other account's key and kid, claiming to be `id`.
    bad(
        gw.token_assertion(&other.sign(&claims(&id))).await,
        "kid of another account",
    );
    let _ = other_id;

    let good = key.assertion(&id);
    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut raw = iamgate::util::b64url_decode(sig).unwrap();
    raw[10] ^= 0x01;
    bad(
        gw.token_assertion(&format!("{head}.{}", b64url(raw))).await,
        "flipped signature byte",
    );

    let mut parts = good.split('.');
    let (h, p) = (parts.next().unwrap(), parts.next().unwrap());
    bad(
        gw.token_assertion(&format!("{h}.{p}")).await,
        "two segments",
    );
    bad(
        gw.token_assertion(&format!("{good}.AAAA")).await,
        "four segments",
    );
    bad(
        gw.token_assertion(&key.sign_raw(
            &json!({"alg":"RS256","kid":"k1","typ":"at+jwt"}),
            &c,
            &RSA_PKCS1_SHA256,
        ))
        .await,
        "typ at+jwt",
    );
    bad(
        gw.token_assertion(&key.sign_raw(
            &json!({"alg":"RS256","kid":"k1","crit":["exp"]}),
            &c,
            &RSA_PKCS1_SHA256,
        ))
        .await,
        "crit",
    );

    // client_id parameter naming another client than the assertion.
    let r = gw
        .token(&[], &assertion_form(&key.assertion(&id), Some(&other_id)))
        .await;
    bad(r, "client_id parameter mismatch");

    // Assertion for a client_secret_basic account.
    let (secret_id, _) = gw.secret_client().await;
    bad(
        gw.token_assertion(&key.assertion(&secret_id)).await,
        "assertion for a secret account",
    );

    // Header typ client-authentication+jwt and no typ are both fine; the good assertion works.
    let ok = key.sign_raw(
        &json!({"alg":"RS256","kid":"k1","typ":"client-authentication+jwt"}),
        &claims(&id),
        &RSA_PKCS1_SHA256,
    );
    assert_eq!(gw.token_assertion(&ok).await.status, 200);
    assert_eq!(gw.token_assertion(&good).await.status, 200);
}

type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u16, &'a str);

#[tokio::test]
async fn oversized_and_malformed_requests() {
    let gw = gateway().start().await;
    let key = TestKey::new("k1");
    let id = gw.jwt_client(&key).await;
    let huge = format!(
        "{}.{}.{}",
        "a".repeat(10),
        "b".repeat(1024 * 1024),
        "c".repeat(10)
    );
    gw.token_assertion(&huge)
        .await
        .oauth_error(413, "invalid_request");
    // Just under the body limit but over the assertion limit.
    let big = format!("{}.{}.{}", "a".repeat(10), "b".repeat(9000), "c".repeat(10));
    gw.token_assertion(&big)
        .await
        .oauth_error(401, "invalid_client");

    let (sid, secret) = gw.secret_client().await;
    let basic = |s: &str| format!("Basic {s}");
    gw.token(
        &[("authorization", &basic("%%%not-base64"))],
        "grant_type=client_credentials",
    )
    .await
    .oauth_error(401, "invalid_client");
    let r = gw
        .token(
            &[("authorization", &basic(&base64_std("no-colon-here")))],
            "grant_type=client_credentials",
        )
        .await;
    r.oauth_error(401, "invalid_client");
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));

    let both = format!("Basic {}", base64_std(&format!("{sid}:{secret}")));
    let assertion = assertion_form(&key.assertion(&id), None);
    let with_secret =
        format!("grant_type=client_credentials&client_id={sid}&client_secret={secret}");
    let auth: &[(&str, &str)] = &[("authorization", &both)];
    let cc = "grant_type=client_credentials";
    // (what, headers beyond the form content type, body, status, error)
    let cases: &[Case] = &[
        (
            "Basic plus assertion",
            auth,
            &assertion,
            400,
            "invalid_request",
        ),
        (
            "client_secret in the body",
            &[],
            &with_secret,
            401,
            "invalid_client",
        ),
        (
            "Basic plus body secret",
            auth,
            &with_secret,
            400,
            "invalid_request",
        ),
        (
            "password grant",
            auth,
            "grant_type=password",
            400,
            "unsupported_grant_type",
        ),
        (
            "JWT profile grant",
            auth,
            "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer",
            400,
            "unsupported_grant_type",
        ),
        ("no grant_type", auth, "", 400, "invalid_request"),
        (
            "repeated parameter",
            auth,
            "grant_type=client_credentials&grant_type=client_credentials",
            400,
            "invalid_request",
        ),
        (
            "two Authorization headers",
            &[("authorization", &both), ("authorization", &both)],
            cc,
            400,
            "invalid_request",
        ),
        (
            "Bearer scheme",
            &[("authorization", "Bearer abc")],
            cc,
            401,
            "invalid_client",
        ),
        ("no authentication", &[], cc, 401, "invalid_client"),
        (
            "wrong assertion type",
            &[],
            "grant_type=client_credentials&client_assertion_type=urn:x&client_assertion=a.b.c",
            400,
            "invalid_request",
        ),
    ];
    for (what, headers, body, status, code) in cases {
        gw.token(headers, body)
            .await
            .oauth_error_for(what, *status, code);
    }

    let r = gw
        .request(Method::GET, "/api/m2m/oauth/token", auth, "")
        .await;
    r.oauth_error(405, "invalid_request");
    assert_eq!(r.header("allow"), Some("POST"));
    let json_ct = [auth[0], ("content-type", "application/json")];
    let r = gw
        .request(
            Method::POST,
            "/api/m2m/oauth/token",
            &json_ct,
            r#"{"grant_type":"client_credentials"}"#,
        )
        .await;
    r.oauth_error(400, "invalid_request");
    let form_ct = [
        auth[0],
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let r = gw
        .request(
            Method::POST,
            "/api/m2m/oauth/token?client_secret=x",
            &form_ct,
            cc,
        )
        .await;
    r.oauth_error(400, "invalid_request");
    // Non-UTF-8 garbage in the body is a clear error, not a crash.
    let r = gw
        .request(
            Method::POST,
            "/api/m2m/oauth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            vec![0xff, 0xfe, b'=', 0x00],
        )
        .await;
    r.oauth_error(400, "invalid_request");
    // And the real client still works: nothing above locked it out.
    assert_eq!(gw.token_basic(&sid, &secret).await.status, 200);
}

#[tokio::test]
async fn failures_are_indistinguishable() {
    let gw = gateway().start().await;
    let (id, _secret) = gw.secret_client().await;
    let key = TestKey::new("k1");
    let jwt_id = gw.jwt_client(&key).await;
    let unknown = gw.token_basic("no-such-client", "whatever").await;
    let wrong = gw.token_basic(&id, "wrong-secret").await;
    let other_method = gw.token_basic(&jwt_id, "some-secret").await;
    for r in [&unknown, &wrong, &other_method] {
        r.oauth_error(401, "invalid_client");
        assert_eq!(r.body, unknown.body);
        assert_eq!(
            r.header("www-authenticate"),
            unknown.header("www-authenticate")
        );
    }
    // Assertions: unknown client, unknown kid and wrong key read the same.
    let stranger = TestKey::new("k1");
    let a = gw
        .token_assertion(&stranger.assertion("no-such-client"))
        .await;
    let b = gw.token_assertion(&stranger.assertion(&jwt_id)).await;
    let c = gw
        .token_assertion(&key.sign_raw(
            &json!({"alg":"RS256","kid":"zzz"}),
            &claims(&jwt_id),
            &RSA_PKCS1_SHA256,
        ))
        .await;
    for r in [&a, &b, &c] {
        r.oauth_error(401, "invalid_client");
        assert_eq!(r.body, a.body);
    }
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_per_client_and_recover() {
    let gw = gateway()
        .yaml("listen: 127.0.0.1:0\nlog: {level: warn}\noauth:\n  rate_limit: {window_secs: 2, max_failures_per_client: 3, max_failures_per_address: 1000}\n")
        .start()
        .await;
    let (id, secret) = gw.secret_client().await;
    let (other, other_secret) = gw.secret_client().await;
    for _ in 0..3 {
        gw.token_basic(&id, "wrong")
            .await
            .oauth_error(401, "invalid_client");
    }
    let r = gw.token_basic(&id, &secret).await;
    r.oauth_error(429, "temporarily_unavailable");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry));
    assert_eq!(
        gw.token_basic(&other, &other_secret).await.status,
        200,
        "other clients unaffected"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        gw.token_basic(&id, &secret).await.status,
        200,
        "the window ends; no permanent lockout"
    );
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_per_address() {
    let gw = gateway()
        .yaml("listen: 127.0.0.1:0\nlog: {level: warn}\noauth:\n  rate_limit: {window_secs: 60, max_failures_per_client: 1000, max_failures_per_address: 5}\n")
        .start()
        .await;
    for i in 0..5 {
        gw.token_basic(&format!("guess-{i}"), "x")
            .await
            .oauth_error(401, "invalid_client");
    }
    gw.token_basic("guess-6", "x")
        .await
        .oauth_error(429, "temporarily_unavailable");
}

#[tokio::test]
async fn full_replay_record_refuses_with_503() {
    // The bounded record is the in-memory one of a single instance; on PostgreSQL the shared
    // record is a table (tests/it/cluster.rs covers it).
    if std::env::var("IAMGATE_TEST_DATABASE_URL").is_ok() {
        println!("skipped: the shared replay record has no capacity bound");
        return;
    }
    let gw = gateway()
        .yaml("listen: 127.0.0.1:0\nlog: {level: warn}\noauth:\n  replay_cache_capacity: 1\n")
        .start()
        .await;
    let (key, other_key) = (TestKey::new("k1"), TestKey::new("k2"));
    let id = gw.jwt_client(&key).await;
    let other = gw.jwt_client(&other_key).await;
    assert_eq!(gw.token_assertion(&key.assertion(&id)).await.status, 200);
    // The record is full for everyone (a client over its own share gets 429, tests/it/abuse.rs).
    let r = gw.token_assertion(&other_key.assertion(&other)).await;
    r.oauth_error(503, "temporarily_unavailable");
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn deleted_account_gets_no_token_and_last_login_is_recorded() {
    let gw = gateway()
        .yaml("listen: 127.0.0.1:0\nlog: {level: warn}\nlast_login_flush_secs: 1\n")
        .start()
        .await;
    let (id, secret) = gw.secret_client().await;
    assert_eq!(gw.token_basic(&id, &secret).await.status, 200);
    let store = gw.running().accounts.store().clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let all = store.load_accounts().await.unwrap();
        let a = all.iter().find(|a| a.client_id == id).unwrap();
        if let Some(t) = a.last_login {
            assert!((t - unix_now()).abs() < 10);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lastLogin never flushed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    gw.delete_account(&id).await;
    gw.token_basic(&id, &secret)
        .await
        .oauth_error(401, "invalid_client");
}

#[tokio::test]
async fn discovery_documents_and_jwks() {
    let gw = gateway().start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = gw.get(path).await;
        assert_eq!(r.status, 200);
        let m = r.json();
        assert_eq!(m["issuer"], gw.base.as_str());
        assert_eq!(
            m["token_endpoint"],
            format!("{}/api/m2m/oauth/token", gw.base)
        );
        assert_eq!(m["jwks_uri"], format!("{}/.well-known/jwks.json", gw.base));
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "private_key_jwt"])
        );
        assert_eq!(
            m["token_endpoint_auth_signing_alg_values_supported"],
            json!(["RS256"])
        );
        assert_eq!(m["grant_types_supported"], json!(["client_credentials"]));
        assert!(m["response_types_supported"].is_array());
    }
    let r = gw.get("/.well-known/jwks.json").await;
    assert!(r.header("cache-control").unwrap().contains("max-age"));
    let jwks = r.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "active and next are published");
    for k in keys {
        assert_eq!(k["kty"], "RSA");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["alg"], "RS256");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none());
        }
    }
    assert_eq!(gw.get("/-/healthz").await.status, 200);
    assert_eq!(gw.get("/-/ready").await.status, 200);
    let r = gw.get("/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["statusCode"], 404);
}

#[tokio::test]
async fn metrics_count_grants_by_method_and_outcome_without_client_ids() {
    let gw = gateway().start().await;
    let (id, secret) = gw.secret_client().await;
    assert_eq!(gw.token_basic(&id, &secret).await.status, 200);
    gw.token_basic(&id, "wrong")
        .await
        .oauth_error(401, "invalid_client");
    gw.token(&[], "grant_type=password")
        .await
        .oauth_error(400, "unsupported_grant_type");
    let r = gw.get("/-/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for line in [
        r#"iamgate_token_requests_total{method="client_secret_basic",outcome="issued"} 1"#,
        r#"iamgate_token_requests_total{method="client_secret_basic",outcome="invalid_client"} 1"#,
        r#"iamgate_token_requests_total{method="none",outcome="unsupported_grant_type"} 1"#,
        "iamgate_token_request_duration_seconds_count 3",
        r#"iamgate_token_request_duration_seconds_bucket{le="0.00005"}"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(!text.contains(&id), "client ids never become labels");
    assert!(!text.contains(&secret));
}
