//! With tracing on, the log records a request writes carry its trace id, at the default log
//! level: an operator goes from a log line to the trace and back.
//!
//! The only test in this binary: tracing caches each call site's interest process-wide, so a
//! test without this subscriber running beside it could register the call site as never
//! enabled.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway;
use common::otlp::Receiver;
use common::upstream::TestUpstream;

#[tokio::test]
async fn the_decision_record_of_a_traced_request_carries_its_trace_id() {
    let buf = common::LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(buf.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let receiver = Receiver::start().await;
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!(
            "telemetry: {{otlp_endpoint: \"{}\", export_interval_ms: 50}}",
            receiver.url()
        ))
        .start()
        .await;
    let (id, token) = gw.company_sa("acme").await;
    gw.bind(&id, "company-owner", Some(("company", "acme")))
        .await;
    let r = gw.get_as("/api/tenants/acme/audit-logs", &token).await;
    assert_eq!(r.status, 200);
    let traceparent = up.last().unwrap().headers["traceparent"].clone();
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    receiver.wait_trace(&trace_id, 4).await;

    let text = buf.text();
    let decisions: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "iamgate::decision")
        .filter(|v| v["span"]["trace_id"] == trace_id.as_str())
        .collect();
    assert_eq!(decisions.len(), 1, "{text}");
    assert_eq!(decisions[0]["allow"], true);
    assert!(!text.contains(&token), "the bearer token reached a log");
}
