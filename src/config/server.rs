//! `server:`: the listener's TLS and the request limits.

use super::secs_in;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `server:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate and key.
    pub tls: Option<RawTls>,
    /// Requests handled at once; beyond it new requests get 503 at once. Default 4096.
    pub max_concurrent_requests: Option<usize>,
    /// Longest time from request to response headers, seconds. Default 60.
    pub request_timeout_secs: Option<u64>,
    /// Largest declared request body, bytes. Default 1 GiB.
    pub max_body_bytes: Option<u64>,
    /// Largest request body read for a decision (deploy trigger, role edits), bytes. Default 1 MiB.
    pub max_decision_body_bytes: Option<usize>,
    /// Largest upstream answer read by a response rule, bytes. Default 16 MiB.
    pub max_filtered_response_bytes: Option<usize>,
    /// Seconds in-flight requests get to finish on shutdown. Default 30.
    pub shutdown_grace_secs: Option<u64>,
}

/// `server.tls:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// TLS certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Concurrency limit.
    pub max_concurrent_requests: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Declared body ceiling.
    pub max_body_bytes: u64,
    /// Decision body cap.
    pub max_decision_body_bytes: usize,
    /// Filtered response cap.
    pub max_filtered_response_bytes: usize,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
}

impl RawServer {
    /// Checks the section; problems go to `errs`.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> ServerSettings {
        let sv = self;
        let max_concurrent_requests = sv.max_concurrent_requests.unwrap_or(4096);
        if !(1..=1_000_000).contains(&max_concurrent_requests) {
            errs.push("server.max_concurrent_requests: must be 1..=1000000".to_owned());
        }
        let request_timeout = secs_in(
            "server.request_timeout_secs",
            sv.request_timeout_secs,
            60,
            1..=3600,
            errs,
        );
        let shutdown_grace = secs_in(
            "server.shutdown_grace_secs",
            sv.shutdown_grace_secs,
            30,
            0..=3600,
            errs,
        );
        let max_body_bytes = sv.max_body_bytes.unwrap_or(1 << 30);
        if max_body_bytes < 1024 {
            errs.push("server.max_body_bytes: must be at least 1024".to_owned());
        }
        let max_decision_body_bytes = sv.max_decision_body_bytes.unwrap_or(1 << 20);
        if !(1024..=64 << 20).contains(&max_decision_body_bytes) {
            errs.push("server.max_decision_body_bytes: must be 1024..=67108864".to_owned());
        }
        let max_filtered_response_bytes = sv.max_filtered_response_bytes.unwrap_or(16 << 20);
        if !(1024..=256 << 20).contains(&max_filtered_response_bytes) {
            errs.push("server.max_filtered_response_bytes: must be 1024..=268435456".to_owned());
        }
        ServerSettings {
            tls: sv.tls.map(|t| (t.cert_file, t.key_file)),
            max_concurrent_requests,
            request_timeout,
            max_body_bytes,
            max_decision_body_bytes,
            max_filtered_response_bytes,
            shutdown_grace,
        }
    }
}
