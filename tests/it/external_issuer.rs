//! Users of trusted external issuers: tokens verified against a JWKS file or URL, groups from a
//! claim, bindings by subject and group, key rotation picked up on an unknown kid, and refreshes
//! rate-limited.

use crate::common;

use common::upstream::TestUpstream;
use common::{TestKey, gateway};
use iamgate::iam::{Binding, BindingResource};
use iamgate::util::unix_now;
use serde_json::{Value, json};

const P1: &str = "64b7e1a0c0ffee0000000001";
const ISS: &str = "https://idp.example.test";

fn user_token(key: &TestKey, sub: &str, groups: &[&str], aud: &str, exp_in: i64) -> String {
    key.sign(&json!({
        "iss": ISS, "aud": aud, "sub": sub, "groups": groups,
        "iat": unix_now(), "exp": unix_now() + exp_in,
    }))
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

fn group_binding(group: &str, role: &str) -> Binding {
    Binding {
        binding_id: format!("g-{group}"),
        subjects: vec![],
        groups: vec![format!("group:idp.example.test:{group}")],
        roles: vec![role.to_owned()],
        permissions: vec![],
        resource: Some(BindingResource::scoped("project", P1, "acme")),
    }
}

/// A gateway trusting the issuer whose keys are read from `file` (which may not exist yet), with
/// project P1 of acme and group `devs` bound there as developers; returns it with P1's path.
async fn file_issuer_gateway(
    up: &TestUpstream,
    file: &std::path::Path,
    extra: &str,
) -> (common::Gateway, String) {
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!(
            "external_issuers:\n  - {{issuer: \"{ISS}\", audience: console, jwks_file: {}{extra}}}",
            file.display()
        ))
        .start()
        .await;
    gw.project(P1, "acme", &["dev"]).await;
    gw.bind_binding(group_binding("devs", "developer")).await;
    (gw, format!("/api/backend/projects/{P1}/revisions"))
}

#[tokio::test]
async fn users_of_a_jwks_file_issuer_are_authorized_by_their_groups() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    let k1 = TestKey::new("k1");
    std::fs::write(&file, jwks(&[&k1]).to_string()).unwrap();
    let (gw, path) = file_issuer_gateway(&up, &file, ", refresh_min_secs: 0").await;

    let alice = user_token(&k1, "alice", &["devs", "qa"], "console", 600);
    let r = gw.get_as(&path, &alice).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = up.last().unwrap();
    assert_eq!(seen.headers["miauserid"], "alice");
    assert_eq!(seen.headers["miausergroups"], "devs,qa");
    assert_eq!(seen.headers["client-type"], "user");

    // Not in the group: authenticated, but denied.
    let bob = user_token(&k1, "bob", &["qa"], "console", 600);
    let r = gw.get_as(&path, &bob).await;
    assert_eq!(r.status, 403);
    // A binding naming the user directly works as well.
    gw.bind("user:idp.example.test:bob", "guest", Some(("project", P1)))
        .await;
    let r = gw.get_as(&path, &bob).await;
    assert_eq!(r.status, 200);

    // Refused: wrong audience, expired, unsigned, HMAC with the public key, unknown issuer.
    let expired = user_token(&k1, "alice", &["devs"], "console", -3600);
    let wrong_aud = user_token(&k1, "alice", &["devs"], "other", 600);
    let b64 = |v: Value| iamgate::util::b64url(v.to_string().as_bytes());
    let claims = json!({"iss": ISS, "aud": "console", "sub": "alice", "groups": ["devs"], "exp": unix_now() + 600});
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "k1"})),
        b64(claims.clone())
    );
    let hs = {
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k1.public_pem().as_bytes());
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "HS256", "kid": "k1"})),
            b64(claims.clone())
        );
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", iamgate::util::b64url(tag.as_ref()))
    };
    let stranger = TestKey::new("k1");
    let foreign = stranger.sign(&json!({"iss": "https://evil.test", "aud": "console", "sub": "alice", "exp": unix_now() + 600}));
    let forged_same_kid = stranger.sign(&claims);
    for bad in [expired, wrong_aud, none, hs, foreign, forged_same_kid] {
        let r = gw.get_as(&path, &bad).await;
        assert_eq!(r.status, 401, "{:?}", r.body);
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("invalid_token")
        );
    }

    // Rotation at the issuer: a new kid is fetched on first sight.
    let k2 = TestKey::new("k2");
    std::fs::write(&file, jwks(&[&k1, &k2]).to_string()).unwrap();
    let carol = user_token(&k2, "carol", &["devs"], "console", 600);
    let r = gw.get_as(&path, &carol).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_changed_jwks_file_is_reloaded_and_a_removed_key_stops_verifying() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    let (k1, k2) = (TestKey::new("k1"), TestKey::new("k2"));
    std::fs::write(&file, jwks(&[&k1]).to_string()).unwrap();
    // A long refresh interval: only the file watch can pick the change up in time.
    let (gw, path) = file_issuer_gateway(&up, &file, ", refresh_min_secs: 1").await;
    let token = |k: &TestKey, sub: &str| user_token(k, sub, &["devs"], "console", 600);
    assert_eq!(gw.get_as(&path, &token(&k1, "alice")).await.status, 200);
    // The issuer rotates k1 out (k1 compromised): a token k1 signs from now on is refused.
    std::fs::write(&file, jwks(&[&k2]).to_string()).unwrap();
    let deadline = std::time::Instant::now() + common::WAIT;
    let mut n = 0;
    loop {
        n += 1;
        if gw
            .get_as(&path, &token(&k1, &format!("mallory{n}")))
            .await
            .status
            == 401
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "k1 still verifies");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(gw.get_as(&path, &token(&k2, "bob")).await.status, 200);
    // A file that does not parse keeps the keys in service.
    std::fs::write(&file, "{not json").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(gw.get_as(&path, &token(&k2, "carol")).await.status, 200);
}

#[tokio::test]
async fn jwks_urls_are_fetched_and_refreshes_are_rate_limited() {
    let idp = TestUpstream::start().await;
    let up = TestUpstream::start().await;
    let k1 = TestKey::new("k1");
    idp.answer("/jwks", 200, jwks(&[&k1]));
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!(
            "external_issuers:\n  - {{issuer: \"{ISS}\", audience: console, jwks_url: \"{}/jwks\", refresh_min_secs: 3600}}",
            idp.url()
        ))
        .start()
        .await;
    assert_eq!(idp.hits(), 1, "fetched once at start");
    gw.project(P1, "acme", &["dev"]).await;
    gw.bind_binding(group_binding("devs", "developer")).await;
    let path = format!("/api/backend/projects/{P1}/revisions");
    let ok = user_token(&k1, "alice", &["devs"], "console", 600);
    assert_eq!(gw.get_as(&path, &ok).await.status, 200);
    assert_eq!(idp.hits(), 1, "known kid: no fetch");

    // A flood of tokens with unknown kids costs the issuer one fetch per refresh interval.
    for i in 0..20 {
        let junk = TestKey::new(&format!("junk-{i}"));
        let t = user_token(&junk, "alice", &["devs"], "console", 600);
        assert_eq!(gw.get_as(&path, &t).await.status, 401);
    }
    assert_eq!(idp.hits(), 2);
}

#[tokio::test]
async fn an_unreachable_jwks_at_start_is_retried_in_the_background() {
    // The issuer's keys cannot be read at start: the gateway starts and serves everything else,
    // refuses that issuer's users, and accepts them once the keys can be read.
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    let (gw, path) = file_issuer_gateway(&up, &file, "").await;
    let (_, sa_token) = gw.company_sa("acme").await;
    assert_eq!(
        gw.get_as(&path, &sa_token).await.status,
        403,
        "others are served"
    );
    let k1 = TestKey::new("k1");
    let token = user_token(&k1, "alice", &["devs"], "console", 300);
    assert_eq!(gw.get_as(&path, &token).await.status, 401);
    std::fs::write(&file, jwks(&[&k1]).to_string()).unwrap();
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        let status = gw.get_as(&path, &token).await.status;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "keys never loaded: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
