//! Prometheus metrics, served at `GET /-/metrics`. Labels are fixed, low-cardinality strings
//! (method, outcome, result): never a client id, a token or anything a caller controls.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a token request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    /// `client_secret_basic`, `private_key_jwt` or `none` (refused before authentication).
    pub method: &'static str,
    /// `issued` or the OAuth error code.
    pub outcome: &'static str,
}

/// Labels of a policy reload.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `applied` or `rejected`.
    pub result: &'static str,
}

/// Labels of a proxied request. `route` is a route id from the table (or `none` when no route
/// matched), never the path itself.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route id.
    pub route: String,
    /// Status class (`2xx`, `4xx`, …).
    pub status: &'static str,
}

/// Labels of a policy decision.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allow` or `deny`.
    pub result: &'static str,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Token requests by method and outcome.
    pub token_requests: Family<GrantLabels, Counter>,
    /// Token request latency in seconds (sub-millisecond buckets).
    pub token_latency: Histogram,
    /// Policy reloads by result.
    pub policy_reloads: Family<ReloadLabels, Counter>,
    /// Proxied requests by route and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Proxied request latency to response headers, seconds (sub-millisecond buckets).
    pub request_latency: Histogram,
    /// Policy decisions by result.
    pub decisions: Family<DecisionLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("iamgate");
        let token_requests = Family::<GrantLabels, Counter>::default();
        registry.register(
            "token_requests",
            "Token endpoint requests by client authentication method and outcome",
            token_requests.clone(),
        );
        // 50 us .. ~1.6 s: the interesting range of an RSA-signing endpoint.
        let token_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "token_request_duration_seconds",
            "Token endpoint latency",
            token_latency.clone(),
        );
        let policy_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy folder changes applied or rejected",
            policy_reloads.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Proxied requests by route id and status class",
            requests.clone(),
        );
        // 10 us .. ~0.65 s.
        let request_latency = Histogram::new(exponential_buckets(0.000_01, 2.0, 17));
        registry.register(
            "request_duration_seconds",
            "Proxied request latency until response headers",
            request_latency.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("decisions", "Policy decisions by result", decisions.clone());
        Self {
            registry,
            token_requests,
            token_latency,
            policy_reloads,
            requests,
            request_latency,
            decisions,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
