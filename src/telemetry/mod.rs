//! Telemetry: structured logging set up once at start-up, the [`decision_log`], Prometheus
//! [`metrics`], and OpenTelemetry [`trace`]s. Logs are JSON by default so a log
//! pipeline can index them; fields that could carry secrets are never recorded in the first place.

pub mod decision_log;
pub mod metrics;
pub mod trace;

use tracing::Level;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Dependencies whose records above INFO carry data that must not reach a log, whatever the
/// configured level: tokio-postgres logs every statement's parameters at DEBUG, and those
/// include client-secret hashes, the pepper check and the sealed signing-key set.
const CAPPED_AT_INFO: &[&str] = &["tokio_postgres"];

/// Whether a record from `target` at `level` may be logged at all (the configured filter then
/// narrows further). Records bridged from the `log` crate carry their crate's target too.
pub fn may_log(target: &str, level: &Level) -> bool {
    *level <= Level::INFO
        || !CAPPED_AT_INFO.iter().any(|c| {
            target
                .strip_prefix(c)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Installs the global tracing subscriber. Safe to call more than once (later calls are no-ops).
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.boxed()
    };
    // One filter for the one layer, with a level hint: two nested filters, the inner one
    // without a hint, made every callsite look enabled at every level, so `enabled!` at DEBUG
    // was true with logging at INFO and every request built its DEBUG span (about 10k
    // instructions per proxied request).
    let capped = tracing_subscriber::filter::filter_fn(|m| may_log(m.target(), m.level()))
        .with_max_level_hint(tracing_subscriber::filter::LevelFilter::TRACE);
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter.and(capped)))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_driver_records_above_info_are_never_logged() {
        for target in [
            "tokio_postgres",
            "tokio_postgres::query",
            "tokio_postgres::prepare",
        ] {
            assert!(!may_log(target, &Level::DEBUG), "{target}");
            assert!(!may_log(target, &Level::TRACE), "{target}");
            assert!(may_log(target, &Level::INFO), "{target}");
            assert!(may_log(target, &Level::WARN), "{target}");
        }
        for target in [
            "iamgate::request",
            "tokio_postgres_rustls",
            "rustls::client",
            "hyper",
        ] {
            assert!(may_log(target, &Level::TRACE), "{target}");
        }
    }
}
