//! With DEBUG logging on, each request is recorded in a span of its own (method, path, request
//! id) with its status and latency, and credentials never reach the log.
//!
//! The only test in this binary: tracing caches each call site's interest process-wide, so a
//! test without this subscriber running beside it could register the call site as never
//! enabled.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway;
use common::upstream::TestUpstream;

#[tokio::test]
async fn with_debug_logging_each_request_is_recorded_in_its_span_without_credentials() {
    let buf = common::LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(buf.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let up = TestUpstream::start().await;
    let gw = gateway().upstream(&up.url()).start().await;
    let (_, token) = gw.company_sa("acme").await;
    let r = gw
        .get_as("/api/tenants/acme/marketplace/items/i1/versions", &token)
        .await;
    let id = r.header("x-request-id").unwrap().to_owned();

    let text = buf.text();
    let finished: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["target"] == "iamgate::request" && v["message"] == "finished processing request"
        })
        .filter(|v| v["span"]["request_id"] == id.as_str())
        .collect();
    assert_eq!(finished.len(), 1, "{text}");
    let f = &finished[0];
    assert_eq!(f["status"], r.status.as_u16());
    assert_eq!(f["span"]["method"], "GET");
    assert_eq!(
        f["span"]["path"],
        "/api/tenants/acme/marketplace/items/i1/versions"
    );
    assert!(f["latency_us"].as_u64().is_some(), "{f}");
    assert!(!text.contains(&token), "the bearer token reached a log");
}
