//! Telemetry: structured logging set up once at start-up, the [`decision_log`], and Prometheus
//! [`metrics`]. Logs are JSON by default so a log
//! pipeline can index them; fields that could carry secrets are never recorded in the first place.

pub mod decision_log;
pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber. Safe to call more than once (later calls are no-ops).
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
