//! The installed subscriber says "disabled" for what it would not log: at INFO, nothing on the
//! request path pays for a DEBUG span or record. (Two nested per-layer filters once made every
//! call site look enabled, and each proxied request built its DEBUG span for nothing.)
//!
//! A binary of its own: the subscriber is global and installed once per process.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tracing::Level;

#[test]
fn at_info_debug_call_sites_are_disabled_and_info_ones_enabled() {
    iamgate::telemetry::init("info", true);
    assert!(!tracing::enabled!(target: "iamgate::request", Level::DEBUG));
    assert!(!tracing::enabled!(target: "hyper", Level::TRACE));
    assert!(!tracing::enabled!(target: "tokio_postgres::query", Level::DEBUG));
    assert!(tracing::enabled!(target: "iamgate::decision", Level::INFO));
    assert!(tracing::enabled!(target: "iamgate::server", Level::WARN));
    assert!(tracing::span!(target: "iamgate::request", Level::DEBUG, "request").is_disabled());
}
