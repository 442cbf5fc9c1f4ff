//! Two instances on one PostgreSQL behave as one: a client assertion is single-use across both,
//! a deletion or a role change made on one takes effect on the other within a second.
//! Runs when `IAMGATE_TEST_DATABASE_URL` names a throwaway PostgreSQL (CI does, via
//! `.ci/postgres.sh`); on SQLite alone there is no cluster to test.

use crate::common;

use common::upstream::TestUpstream;
use common::{Gateway, TestKey, gateway, verify_access_token};
use std::time::{Duration, Instant};

const P1: &str = "64b7e1a0c0ffee0000000001";

/// Two gateways on one fresh database, with the same signing key and pepper.
async fn pair(up: &TestUpstream) -> Option<(Gateway, Gateway, tempfile::TempDir)> {
    let shared = tempfile::tempdir().unwrap();
    let key = iamgate::token::SigningKey::generate(None).unwrap();
    let pem = shared.path().join("signing.pem");
    std::fs::write(&pem, key.to_pkcs8_pem().unwrap()).unwrap();
    let signing = format!(
        "signing:\n  keys: [{{path: {}, status: active}}]",
        pem.display()
    );
    pair_with(up, shared, &signing).await
}

const CLUSTER_PEPPER: &str = "cluster-test-pepper-0123456789";

/// Two gateways on one fresh database under `shared`, with the same pepper and `extra` config.
async fn pair_with(
    up: &TestUpstream,
    shared: tempfile::TempDir,
    extra: &str,
) -> Option<(Gateway, Gateway, tempfile::TempDir)> {
    let db = common::test_database(&shared).await?;
    let yaml = format!(
        "public_url: http://gateway.cluster.test\ndatabase_url: \"{db}\"\nsecret_pepper: {CLUSTER_PEPPER}\nbootstrap: {{enabled: false}}\n{extra}"
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
    // The pepper is checked across instances whatever the signing keys are.
    let db = common::existing_test_database(_shared.path()).unwrap();
    let err = common::start_error(&format!(
        "database_url: \"{db}\"\nsecret_pepper: another-pepper-0123456789\nbootstrap: {{enabled: false}}\nsigning:\n  keys: [{{path: {}, status: active}}]",
        _shared.path().join("signing.pem").display()
    ))
    .await;
    assert!(err.contains("secret_pepper differs"), "{err}");
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

/// Writes binding `stray` into the pair's database behind the gateways' backs, with no
/// notification: only a full read of the store picks it up.
async fn stray_binding(shared: &tempfile::TempDir) {
    let db = common::existing_test_database(shared.path()).unwrap();
    let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let stray = iamgate::iam::Binding {
        binding_id: "stray".to_owned(),
        subjects: vec!["serviceaccount:someone".to_owned()],
        groups: vec![],
        roles: vec!["guest".to_owned()],
        permissions: vec![],
        resource: Some(iamgate::iam::BindingResource::console()),
    };
    client
        .execute(
            "INSERT INTO bindings (binding_id, doc) VALUES ($1, $2)",
            &[&stray.binding_id, &serde_json::to_string(&stray).unwrap()],
        )
        .await
        .unwrap();
}

/// A notification names the rows its batch wrote, and the other instance reads those rows
/// alone: at a million bindings, reading everything took seconds per change on every instance.
#[tokio::test]
async fn another_instance_reads_only_the_rows_a_change_names() {
    let up = TestUpstream::start().await;
    let Some((a, b, shared)) = pair(&up).await else {
        println!("skipped: IAMGATE_TEST_DATABASE_URL is not set");
        return;
    };
    // B follows A: its first full read (when its feed connected) is behind it.
    a.project(P1, "acme", &["dev"]).await;
    until(
        "A's project visible on B",
        Duration::from_secs(2),
        async || b.running().directory.project(P1).is_some(),
    )
    .await;
    stray_binding(&shared).await;

    let (id, _) = a.company_sa("acme").await;
    a.bind(&id, "guest", Some(("project", P1))).await;
    until(
        "A's binding visible on B",
        Duration::from_secs(2),
        async || {
            b.running()
                .directory
                .bindings_for(&iamgate::iam::Principal::service_account(&id), &[])
                .len()
                == 1
        },
    )
    .await;
    assert!(b.running().accounts.snapshot().get(&id).is_some());
    // B applied what A's notifications named, and read nothing else.
    assert!(b.running().directory.binding("stray").is_none());
    assert!(a.running().directory.binding("stray").is_none());
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
    a.delete_account(&id).await;
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
        common::run_ok(
            std::process::Command::new("bash")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres.sh"))
                .args(args)
                .env("PGTEST_STATE", &self.state),
        )
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
        .create_account(iamgate::iam::NewAccount {
            name: "during-outage".into(),
            owner: iamgate::iam::Owner::Root,
            method: iamgate::iam::AuthMethod::ClientSecretBasic,
            public_key: None,
            permissions: vec![],
        })
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
    use iamgate::store::{JtiOutcome, Store};
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
                    .record_jti("client-a".into(), jti, now + 60, now, 1000)
                    .await
                    .unwrap(),
            )
        }));
    }
    let mut firsts = [0; 40];
    for t in tasks {
        let (n, fresh) = t.await.unwrap();
        if fresh == JtiOutcome::Fresh {
            firsts[n] += 1;
        }
    }
    assert_eq!(firsts, [1; 40], "exactly one first use per jti");
    // The same jti of another client is a different claim.
    assert_eq!(
        store
            .record_jti("client-b".into(), "jti-0".into(), now + 60, now, 1000)
            .await
            .unwrap(),
        JtiOutcome::Fresh
    );
    // Unexpired: still a replay; expired: the old record does not count.
    assert_eq!(
        store
            .record_jti("client-a".into(), "jti-1".into(), now + 120, now + 59, 1000)
            .await
            .unwrap(),
        JtiOutcome::Replayed
    );
    assert_eq!(
        store
            .record_jti("client-a".into(), "jti-1".into(), now + 120, now + 61, 1000)
            .await
            .unwrap(),
        JtiOutcome::Fresh
    );
    assert_eq!(
        store
            .record_jti("client-a".into(), "jti-1".into(), now + 180, now + 62, 1000)
            .await
            .unwrap(),
        JtiOutcome::Replayed
    );
    assert_eq!(
        store.purge_jtis(now + 61).await.unwrap(),
        40,
        "every other first-batch record expired"
    );
    // One client holds at most its share of unexpired records; replays stay replays.
    for i in 0..3 {
        let got = store
            .record_jti("client-q".into(), format!("q-{i}"), now + 600, now + 70, 3)
            .await
            .unwrap();
        assert_eq!(got, JtiOutcome::Fresh);
    }
    let over = store
        .record_jti("client-q".into(), "q-3".into(), now + 600, now + 70, 3)
        .await
        .unwrap();
    assert_eq!(over, JtiOutcome::ClientFull);
    let replay = store
        .record_jti("client-q".into(), "q-0".into(), now + 600, now + 70, 3)
        .await
        .unwrap();
    assert_eq!(replay, JtiOutcome::Replayed);
    let other = store
        .record_jti("client-r".into(), "q-3".into(), now + 600, now + 70, 3)
        .await
        .unwrap();
    assert_eq!(other, JtiOutcome::Fresh);
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn instances_share_the_managed_key_set_and_all_see_a_rotation() {
    let up = TestUpstream::start().await;
    let shared = tempfile::tempdir().unwrap();
    let Some((a, b, shared)) = pair_with(&up, shared, "signing: {reload_secs: 1}").await else {
        println!("skipped: IAMGATE_TEST_DATABASE_URL is not set");
        return;
    };
    // One key set, generated once, sealed in the database.
    let jwks = a.jwks().await;
    assert_eq!(jwks, b.jwks().await, "both instances publish the same keys");
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "active + next");
    let db = common::existing_test_database(shared.path()).unwrap();
    {
        let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT value FROM shared_state WHERE name = 'signing-keys'",
                &[],
            )
            .await
            .unwrap();
        let sealed: Vec<u8> = row.get(0);
        assert!(
            !String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"),
            "private keys are sealed at rest"
        );
    }

    // A token minted on A is accepted on B.
    a.project(P1, "acme", &["dev"]).await;
    let (id, before) = a.company_sa("acme").await;
    a.bind(&id, "guest", Some(("project", P1))).await;
    let path = format!("/api/backend/projects/{P1}/revisions");
    until(
        "A's token accepted on B",
        Duration::from_secs(2),
        async || b.get_as(&path, &before).await.status == 200,
    )
    .await;

    // `iamgate keys rotate` against the database: both instances move to the promoted key
    // (polling the key set), and the rotation's notification makes neither read everything.
    stray_binding(&shared).await;
    common::run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_iamgate"))
            .args(["keys", "rotate"])
            .env("IAMGATE_DATA_DIR", shared.path().join("cli-data"))
            .env("IAMGATE_DATABASE_URL", &db)
            .env("IAMGATE_SECRET_PEPPER", CLUSTER_PEPPER)
            .env_remove("IAMGATE_CONFIG"),
    );
    let (sa_id, secret) = b.secret_client().await;
    let old_kid = kid_of(&before);
    let mut fresh = Vec::new();
    for gw in [&a, &b] {
        until(
            "instance signs with the promoted key",
            Duration::from_secs(5),
            async || {
                let r = gw.token_basic(&sa_id, &secret).await;
                r.status == 200 && kid_of(r.json()["access_token"].as_str().unwrap()) != old_kid
            },
        )
        .await;
        let r = gw.token_basic(&sa_id, &secret).await;
        fresh.push(r.json()["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        kid_of(&fresh[0]),
        kid_of(&fresh[1]),
        "same active key everywhere"
    );
    for gw in [&a, &b] {
        assert!(gw.running().directory.binding("stray").is_none());
    }
    let jwks_after = a.jwks().await;
    assert_eq!(
        jwks_after["keys"].as_array().unwrap().len(),
        3,
        "retired + active + next"
    );
    // The promoted key was published before it signed; the retired one still verifies.
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid_of(&fresh[0]).as_str())
    );
    for gw in [&a, &b] {
        assert_eq!(
            gw.get_as(&path, &before).await.status,
            200,
            "pre-rotation token still valid"
        );
        verify_access_token(gw, &fresh[0]).await;
        verify_access_token(gw, &fresh[1]).await;
    }

    // An instance given another pepper refuses to start rather than reject every secret.
    let err = common::start_error(&format!(
        "database_url: \"{db}\"\nsecret_pepper: another-pepper-0123456789\nbootstrap: {{enabled: false}}"
    ))
    .await;
    assert!(err.contains("secret_pepper differs"), "{err}");
}

#[tokio::test]
async fn two_instances_started_together_on_an_empty_database_bootstrap_once() {
    for round in 0..3 {
        let shared = tempfile::tempdir().unwrap();
        let Some(db) = common::test_database(&shared).await else {
            println!("skipped: IAMGATE_TEST_DATABASE_URL is not set");
            return;
        };
        let yaml = format!("database_url: \"{db}\"\nsecret_pepper: {CLUSTER_PEPPER}\n");
        let (a, b) = tokio::join!(gateway().with(&yaml).start(), gateway().with(&yaml).start());
        let files: Vec<bool> = [&a, &b]
            .iter()
            .map(|g| g.data_path().join("bootstrap-credentials.json").exists())
            .collect();
        assert_eq!(
            files.iter().filter(|f| **f).count(),
            1,
            "round {round}: exactly one instance writes the credentials file: {files:?}"
        );
        // Both serve, and the one bootstrap account is the one the file names.
        let maker = if files[0] { &a } else { &b };
        let creds: serde_json::Value = serde_json::from_slice(
            &std::fs::read(maker.data_path().join("bootstrap-credentials.json")).unwrap(),
        )
        .unwrap();
        for g in [&a, &b] {
            assert_eq!(g.get("/-/ready").await.status, 200);
            // The other instance learns of the account through the change feed.
            until(
                "the bootstrap account on both",
                Duration::from_secs(5),
                async || {
                    g.token_basic(
                        creds["clientId"].as_str().unwrap(),
                        creds["clientSecret"].as_str().unwrap(),
                    )
                    .await
                    .status
                        == 200
                },
            )
            .await;
            assert_eq!(
                g.running().accounts.snapshot().all().len(),
                1,
                "round {round}"
            );
        }
    }
}

/// A leaked key revoked through one instance's configuration is refused on the other within the
/// reload interval, its cached verifications included; the next key signs on both.
#[tokio::test]
async fn a_key_revoked_on_one_instance_is_refused_on_the_other_within_the_reload_interval() {
    let up = TestUpstream::start().await;
    let shared = tempfile::tempdir().unwrap();
    let Some((a, b, shared)) = pair_with(&up, shared, "signing: {reload_secs: 1}").await else {
        println!("skipped: IAMGATE_TEST_DATABASE_URL is not set");
        return;
    };
    let (id, token) = a.root_sa(&["console.root.view"]).await;
    until("account visible on B", Duration::from_secs(2), async || {
        b.running().accounts.snapshot().get(&id).is_some()
    })
    .await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    // One shared key set: B accepts A's token, twice (the second from its cache).
    for _ in 0..2 {
        assert_eq!(b.get_as("/api/iamgate/audit-log", &token).await.status, 200);
    }
    let db = common::existing_test_database(shared.path()).unwrap();
    let out = common::run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_iamgate"))
            .env_remove("IAMGATE_CONFIG")
            .env("IAMGATE_DATA_DIR", a.data_path())
            .env("IAMGATE_DATABASE_URL", &db)
            .env("IAMGATE_SECRET_PEPPER", CLUSTER_PEPPER)
            .args(["keys", "revoke", &kid]),
    );
    assert!(out.contains(&kid), "{out}");
    let took = until(
        "the revoked key's token refused on B",
        Duration::from_secs(5),
        async || b.get_as("/api/iamgate/audit-log", &token).await.status == 401,
    )
    .await;
    assert!(took < Duration::from_millis(2500), "{took:?}");
    until("and on A", Duration::from_secs(5), async || {
        a.get_as("/api/iamgate/audit-log", &token).await.status == 401
    })
    .await;
    // Both sign with the promoted key, and the other accepts it.
    for (signer, checker) in [(&a, &b), (&b, &a)] {
        let fresh = signer.root_sa(&["console.root.view"]).await;
        let new_kid = jsonwebtoken::decode_header(&fresh.1).unwrap().kid.unwrap();
        assert_ne!(new_kid, kid);
        until("account visible", Duration::from_secs(2), async || {
            checker
                .running()
                .accounts
                .snapshot()
                .get(&fresh.0)
                .is_some()
        })
        .await;
        assert_eq!(
            checker
                .get_as("/api/iamgate/audit-log", &fresh.1)
                .await
                .status,
            200
        );
    }
}
