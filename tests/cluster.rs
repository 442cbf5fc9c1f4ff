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

/// A cluster of its own (so stopping it disturbs no other test), removed on drop.
struct OwnCluster {
    state: std::path::PathBuf,
    url: String,
}

impl OwnCluster {
    fn script(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres.sh"))
            .args(args)
            .env("PGTEST_STATE", &self.state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = Self {
            state: std::env::temp_dir().join(format!(
                "iamgate-pg-outage-{}",
                uuid::Uuid::new_v4().simple()
            )),
            url: String::new(),
        };
        c.url = c.script(&["start", &port.to_string()]);
        c
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres.sh"))
            .arg("stop")
            .env("PGTEST_STATE", &self.state)
            .output();
    }
}

#[tokio::test]
async fn a_database_outage_is_503_for_writes_while_requests_keep_being_decided() {
    if std::env::var("IAMGATE_TEST_DATABASE_URL").is_err() {
        println!("skipped: IAMGATE_TEST_DATABASE_URL is not set");
        return;
    }
    let cluster = OwnCluster::start();
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!("database_url: \"{}\"", cluster.url))
        .start()
        .await;
    gw.project(P1, "acme", &["dev"]).await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(&id, "guest", Some(("project", P1))).await;
    let (root_id, root_secret) = gw.secret_client().await;
    let path = format!("/api/backend/projects/{P1}/revisions");
    assert_eq!(gw.get_as(&path, &token).await.status, 200);

    cluster.script(&["down"]);
    until(
        "token endpoint answers 503",
        Duration::from_secs(5),
        async || gw.token_basic(&root_id, &root_secret).await.status == 503,
    )
    .await;
    // Readiness reflects the database; writes fail and leave nothing behind.
    let r = gw.get("/-/ready").await;
    assert_eq!(r.status, 503);
    let created = gw
        .running()
        .accounts
        .create(
            iamgate::iam::NewAccount {
                name: "during-outage".into(),
                owner: iamgate::iam::Owner::Root,
                method: iamgate::iam::AuthMethod::ClientSecretBasic,
                public_key: None,
                permissions: vec![],
            },
            iamgate::util::unix_now(),
        )
        .await;
    assert!(created.is_err());
    // Proxied requests are still decided, from the last snapshot.
    assert_eq!(gw.get_as(&path, &token).await.status, 200);

    cluster.script(&["up"]);
    until(
        "token endpoint recovers",
        Duration::from_secs(10),
        async || gw.token_basic(&root_id, &root_secret).await.status == 200,
    )
    .await;
    assert_eq!(gw.get("/-/ready").await.status, 200);
    gw.bind(&id, "guest", Some(("project", "64b7e1a0c0ffee0000000002")))
        .await;
    assert!(
        !gw.running()
            .accounts
            .snapshot()
            .all()
            .iter()
            .any(|a| a.name == "during-outage")
    );
}

#[tokio::test]
async fn the_shared_replay_record_answers_each_claim_of_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = common::test_database(&dir).await else {
        println!("skipped: IAMGATE_TEST_DATABASE_URL is not set");
        return;
    };
    let store = std::sync::Arc::new(iamgate::store::postgres::PgStore::open(&db).await.unwrap());
    use iamgate::store::Store;
    let now = 1_000_000;
    // 200 claims at once, so they share statements: 40 distinct jtis, 5 copies of each.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let jti = format!("jti-{}", i % 40);
            (
                i % 40,
                store
                    .record_jti("client-a".into(), jti, now + 60, now)
                    .await
                    .unwrap(),
            )
        }));
    }
    let mut firsts = [0; 40];
    for t in tasks {
        let (n, fresh) = t.await.unwrap();
        if fresh {
            firsts[n] += 1;
        }
    }
    assert_eq!(firsts, [1; 40], "exactly one first use per jti");
    // The same jti of another client is a different claim.
    assert!(
        store
            .record_jti("client-b".into(), "jti-0".into(), now + 60, now)
            .await
            .unwrap()
    );
    // Unexpired: still a replay; expired: the old record does not count.
    assert!(
        !store
            .record_jti("client-a".into(), "jti-1".into(), now + 120, now + 59)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_jti("client-a".into(), "jti-1".into(), now + 120, now + 61)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_jti("client-a".into(), "jti-1".into(), now + 180, now + 62)
            .await
            .unwrap()
    );
    assert_eq!(
        store.purge_jtis(now + 61).await.unwrap(),
        40,
        "every other first-batch record expired"
    );
}
