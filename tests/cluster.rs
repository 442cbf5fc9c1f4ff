//! Two instances on one PostgreSQL behave as one: a client assertion is single-use across both,
//! a deletion or a role change made on one takes effect on the other within a second.
//! Runs when `IAMGATE_TEST_DATABASE_URL` names a throwaway PostgreSQL (CI does, via
//! `.ci/postgres.sh`); on SQLite alone there is no cluster to test.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::upstream::TestUpstream;
use common::{Gateway, TestKey, gateway};
use std::time::{Duration, Instant};

const P1: &str = "64b7e1a0c0ffee0000000001";

/// Two gateways on one fresh database, with the same signing key and pepper.
async fn pair(up: &TestUpstream) -> Option<(Gateway, Gateway, tempfile::TempDir)> {
    let shared = tempfile::tempdir().unwrap();
    let db = common::test_database(&shared).await?;
    let key = iamgate::token::SigningKey::generate(None).unwrap();
    let pem = shared.path().join("signing.pem");
    std::fs::write(&pem, key.to_pkcs8_pem().unwrap()).unwrap();
    let yaml = format!(
        "public_url: http://gateway.cluster.test\ndatabase_url: \"{db}\"\nsecret_pepper: cluster-test-pepper-0123456789\nsigning:\n  keys: [{{path: {}, status: active}}]\nbootstrap: {{enabled: false}}",
        pem.display()
    );
    let a = gateway().upstream(&up.url()).with(&yaml).start().await;
    let b = gateway().upstream(&up.url()).with(&yaml).start().await;
    Some((a, b, shared))
}

async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            let took = started.elapsed();
            println!("{what}: {} ms", took.as_millis());
            return took;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_assertion_is_single_use_across_instances() {
    let up = TestUpstream::start().await;
    let Some((a, b, _shared)) = pair(&up).await else {
        println!("skipped: IAMGATE_TEST_DATABASE_URL is not set");
        return;
    };
    let key = TestKey::new("k1");
    let id = a.jwt_client(&key).await;
    // B learns about the account from A's notification.
    until("account visible on B", Duration::from_secs(2), async || {
        b.running().accounts.snapshot().get(&id).is_some()
    })
    .await;
    let assertion = key.assertion(&id);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let gw = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let form = common::assertion_form(&assertion, None);
        tasks.push(tokio::spawn(async move {
            let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            let req = http::Request::post(format!("{gw}/api/m2m/oauth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(http_body_util::Full::new(bytes::Bytes::from(form)))
                .unwrap();
            client.request(req).await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(
            tokio::time::timeout(common::WAIT, t)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn deletions_and_role_changes_reach_the_other_instance_within_a_second() {
    let up = TestUpstream::start().await;
    let Some((a, b, _shared)) = pair(&up).await else {
        println!("skipped: IAMGATE_TEST_DATABASE_URL is not set");
        return;
    };
    a.project(P1, "acme", &["dev"]).await;
    let (id, token) = a.company_sa("acme").await;
    let path = format!("/api/backend/projects/{P1}/revisions");
    until(
        "project and account visible on B",
        Duration::from_secs(2),
        async || {
            b.running().directory.project(P1).is_some()
                && b.running().accounts.snapshot().get(&id).is_some()
        },
    )
    .await;
    assert_eq!(b.get_as(&path, &token).await.status, 403);

    // A role granted on A is enforced on B.
    a.bind(&id, "guest", Some(("project", P1))).await;
    let took = until(
        "role change on A enforced on B",
        Duration::from_secs(1),
        async || b.get_as(&path, &token).await.status == 200,
    )
    .await;
    assert!(took < Duration::from_secs(1));

    // An account deleted on A: its token is refused on B.
    a.running().accounts.delete(&id).await.unwrap();
    let took = until(
        "deletion on A refused on B",
        Duration::from_secs(1),
        async || b.get_as(&path, &token).await.status == 401,
    )
    .await;
    assert!(took < Duration::from_secs(1));
}
