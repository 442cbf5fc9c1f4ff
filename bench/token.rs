//! Token endpoint hot-path benchmarks: access-token signing (pre-parsed aws-lc-rs key versus
//! `jsonwebtoken::encode`), client-assertion verification, secret checking, and a whole
//! `client_secret_basic` request through the real handler (no socket).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The allocator the shipped binary uses, so that figures match production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::Full;
use iamgate::authn::TokenEndpoint;
use iamgate::authn::assertion::{Assertion, AssertionRules};
use iamgate::config::parse_yaml;
use iamgate::iam::{Accounts, AuthMethod, NewAccount, Owner, SecretHasher};
use iamgate::token::{Issuer, KeyRing, KeySet, KeyStatus, SigningKey};
use iamgate::util::unix_now;
use std::hint::black_box;
use std::sync::Arc;

fn signing(c: &mut Criterion) {
    let key = Arc::new(SigningKey::generate(None).unwrap());
    let ring = KeyRing::new(KeySet::new(vec![(KeyStatus::Active, key.clone())]).unwrap());
    let issuer = Issuer {
        issuer: Arc::from("http://127.0.0.1:8080"),
        audience: Arc::from("http://127.0.0.1:8080"),
        lifetime_secs: 3600,
        keys: ring,
    };
    let perms = vec!["console.root.view".to_owned()];
    let now = unix_now();
    let mut g = c.benchmark_group("access_token_sign");
    g.bench_function("preparsed_aws_lc", |b| {
        b.iter(|| black_box(issuer.mint(black_box("client-id"), &perms, now).unwrap()))
    });
    let enc =
        jsonwebtoken::EncodingKey::from_rsa_pem(key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid().to_owned());
    g.bench_function("jsonwebtoken_encode", |b| {
        b.iter(|| {
            let claims = serde_json::json!({
                "iss": "http://127.0.0.1:8080", "aud": "http://127.0.0.1:8080", "sub": "client-id",
                "client_id": "client-id", "iat": now, "exp": now + 3600,
                "jti": uuid::Uuid::new_v4().to_string(), "permissions": perms,
            });
            black_box(jsonwebtoken::encode(&header, &claims, &enc).unwrap())
        })
    });
    g.finish();
}

fn assertion_verify(c: &mut Criterion) {
    let client = SigningKey::generate(Some("k1".into())).unwrap();
    let jwk = client.public_jwk();
    let dk = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let now = unix_now();
    let header = iamgate::util::b64url(br#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#);
    let claims = serde_json::json!({"iss":"cid","sub":"cid","aud":"console-client-credentials","jti":"j-1","iat":now,"exp":now+300});
    let token = client
        .sign_with_header(&header, &serde_json::to_vec(&claims).unwrap())
        .unwrap();
    let rules = AssertionRules {
        audiences: vec!["console-client-credentials".into()],
        skew: 30,
        max_lifetime: 3600,
    };
    c.bench_function("assertion_parse_and_verify", |b| {
        b.iter(|| {
            let a = Assertion::parse(black_box(&token), &rules, now).unwrap();
            let ok = jsonwebtoken::crypto::verify(
                a.signature,
                a.signing_input.as_bytes(),
                &dk,
                jsonwebtoken::Algorithm::RS256,
            )
            .unwrap();
            assert!(ok);
        })
    });
}

fn secret_check(c: &mut Criterion) {
    let h = SecretHasher::new(b"bench-pepper-0123456789");
    let stored = h.hash("otJ-GY8j7KVgFdrvdx4ToYLSIKllgvWeVVGRsQU6Lw0");
    let mut g = c.benchmark_group("secret_check");
    g.bench_function("known_client", |b| {
        b.iter(|| {
            assert!(h.verify(
                black_box(b"otJ-GY8j7KVgFdrvdx4ToYLSIKllgvWeVVGRsQU6Lw0"),
                Some(&stored)
            ))
        })
    });
    g.bench_function("unknown_client", |b| {
        b.iter(|| {
            assert!(!h.verify(
                black_box(b"otJ-GY8j7KVgFdrvdx4ToYLSIKllgvWeVVGRsQU6Lw0"),
                None
            ))
        })
    });
    g.finish();
}

fn endpoint(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ep, auth) = rt.block_on(async {
        let store: Arc<dyn iamgate::store::Store> = Arc::new(
            iamgate::store::sqlite::SqliteStore::open(&dir.path().join("b.db"))
                .await
                .unwrap(),
        );
        let hasher = Arc::new(SecretHasher::new(b"bench-pepper-0123456789"));
        let accounts = Accounts::load(store.clone(), hasher.clone()).await.unwrap();
        let directory = iamgate::iam::directory::Directory::load(store)
            .await
            .unwrap();
        let manager = iamgate::iam::manage::Manager::new(accounts.clone(), directory, 0);
        let model = iamgate::model::RoleModel {
            root_permissions: vec!["console.root.view".into()],
            ..Default::default()
        };
        let created = manager
            .create_account(
                "bench",
                NewAccount {
                    name: "bench".into(),
                    owner: Owner::Root,
                    method: AuthMethod::ClientSecretBasic,
                    public_key: None,
                    permissions: vec!["console.root.view".into()],
                },
                &iamgate::iam::manage::RoleRequest::default(),
                &model,
                unix_now(),
                None,
            )
            .await
            .unwrap();
        let key = Arc::new(SigningKey::generate(None).unwrap());
        let issuer = Issuer {
            issuer: Arc::from("http://x"),
            audience: Arc::from("http://x"),
            lifetime_secs: 3600,
            keys: KeyRing::new(KeySet::new(vec![(KeyStatus::Active, key)]).unwrap()),
        };
        let settings = parse_yaml("").unwrap().validate().unwrap();
        let ep = TokenEndpoint::new(
            &settings.oauth,
            vec!["console-client-credentials".into()],
            accounts.snapshot().clone(),
            hasher,
            issuer,
            Default::default(),
            Default::default(),
        )
        .unwrap();
        let auth = format!(
            "Basic {}",
            base64_std(&format!(
                "{}:{}",
                created.client_id,
                created.client_secret.unwrap().expose()
            ))
        );
        (ep, auth)
    });
    let peer: std::net::IpAddr = [127, 0, 0, 1].into();
    c.bench_function("token_endpoint_client_secret_basic", |b| {
        b.iter(|| {
            let req = http::Request::post("/api/m2m/oauth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", &auth)
                .body(Full::new(Bytes::from_static(
                    b"grant_type=client_credentials",
                )))
                .unwrap();
            let resp = rt.block_on(ep.handle(req, peer));
            assert_eq!(resp.status(), 200);
        })
    });
}

fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

criterion_group!(benches, signing, assertion_verify, secret_check, endpoint);
criterion_main!(benches);
