//! Every decision writes one structured record (target `iamgate::decision`) with subject, route,
//! resource, permission, outcome, reason, policy revision and whether the cache answered.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{LogBuf, deploy_input};
use iamgate::policy::engine::CacheSettings;
use iamgate::policy::{PolicyEngine, PolicySource, Snapshot};
use std::path::Path;
use std::time::Duration;

/// The shipped policy behind a small decision cache.
fn engine() -> PolicyEngine {
    iamgate::policy::engine::set_decision_timeout(Duration::from_millis(200));
    let source =
        PolicySource::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    PolicyEngine::new(
        Snapshot::compile(source).unwrap(),
        Some(CacheSettings {
            capacity: 100,
            ttl: Duration::from_secs(60),
        }),
        false,
    )
}

#[tokio::test]
async fn each_decision_is_logged_once_with_its_revision_and_cache_flag() {
    let buf = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(buf.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let engine = engine();
    let input = deploy_input("developer");
    let first = engine.decide(&input, 7);
    let second = engine.decide(&input, 7);
    assert!(!first.allow && !second.allow);

    let text = buf.text();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["target"] == "iamgate::decision")
        .collect();
    assert_eq!(records.len(), 2, "{text}");
    for (r, cached) in records.iter().zip([false, true]) {
        assert_eq!(r["subject"], "sa-1");
        assert_eq!(r["route"], "deploy");
        assert_eq!(r["permission"], "console.environment.deploy.trigger");
        assert_eq!(r["company"], "c1");
        assert_eq!(r["project"], "p1");
        assert_eq!(r["environment"], "dev");
        assert_eq!(r["allow"], false);
        assert_eq!(r["reason"], "permission_denied");
        assert_eq!(r["revision"], &*engine.revision());
        assert_eq!(r["cached"], cached);
    }
}

#[tokio::test]
async fn request_details_are_built_only_when_the_policy_runs() {
    // A subscriber of its own, so this test's decisions never register the log's callsite as
    // uninteresting while the other test is installing its subscriber.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let engine = engine();
    // The filled input holds the binding that allows; the bare one (cache-key fields only)
    // would be denied if the policy ever ran on it.
    let full = deploy_input("maintainer");
    let mut bare = full.clone();
    bare.user.bindings = Default::default();
    let mut fills = 0;
    async fn decide(
        engine: &PolicyEngine,
        mut input: iamgate::policy::DecisionInput,
        full: &iamgate::policy::DecisionInput,
        fills: &mut u32,
    ) -> bool {
        engine
            .decide_filling(&mut input, 7, |i| {
                *fills += 1;
                i.user.bindings = full.user.bindings.clone();
            })
            .allow
    }
    assert!(
        decide(&engine, bare.clone(), &full, &mut fills).await,
        "a miss fills the input first"
    );
    assert!(
        decide(&engine, bare.clone(), &full, &mut fills).await,
        "a hit answers from the cache"
    );
    let mut elsewhere = bare.clone();
    elsewhere.resource.env_id = Some("prod".into());
    assert!(
        decide(&engine, elsewhere, &full, &mut fills).await,
        "another resource is another key"
    );
    assert_eq!(fills, 2);
    // Without a fill the bare input is denied: the test above could not pass by accident.
    assert!(!engine.decide(&bare, 8).allow);
}
