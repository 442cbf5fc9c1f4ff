//! Prometheus metrics, served at `GET /-/metrics`. Labels are fixed, low-cardinality strings
//! (method, outcome, result): never a client id, a token or anything a caller controls.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

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

/// Labels of a disagreement between the live and the shadow policy.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    /// Route id.
    pub route: String,
    /// The live policy's outcome, `allow` or `deny`.
    pub live: &'static str,
    /// The shadow policy's outcome.
    pub shadow: &'static str,
}

/// Labels of the open connections of one connection worker.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// The worker, from 1; 0 for connections served on the shared runtime (`server.workers: 0`).
    pub worker: String,
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
    /// Decisions the shadow policy made otherwise than the live one.
    pub shadow_disagreements: Family<ShadowLabels, Counter>,
    /// Open connections of the public listener by connection worker: whether they are balanced.
    pub connections_open: Family<WorkerLabels, Gauge>,
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
        let shadow_disagreements = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_disagreements",
            "Decisions where the shadow policy (policy.shadow_dir) disagreed with the live one",
            shadow_disagreements.clone(),
        );
        let connections_open = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "connections_open",
            "Open connections of the public listener by connection worker (0: the shared runtime)",
            connections_open.clone(),
        );
        Self {
            connections_open,
            shadow_disagreements,
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

/// One labelled counter of a family, looked up on its first increment and kept. The request path
/// then increments an atomic, where `get_or_create` built the labels, hashed them with SipHash
/// and took the family's lock on every request. A slot never incremented adds no series, so the
/// exposition is the same as with `get_or_create`.
#[derive(Debug)]
pub struct CounterSlot<L: Clone + std::hash::Hash + Eq> {
    family: Family<L, Counter>,
    labels: L,
    counter: OnceLock<Counter>,
}

impl<L: Clone + std::hash::Hash + Eq> CounterSlot<L> {
    /// The slot for `labels` in `family`.
    pub fn new(family: &Family<L, Counter>, labels: L) -> Self {
        Self {
            family: family.clone(),
            labels,
            counter: OnceLock::new(),
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.counter
            .get_or_init(|| self.family.get_or_create(&self.labels).clone())
            .inc();
    }
}

/// Status classes in label order: `1xx` .. `5xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The proxied-request counters of a route table, by route id and status class.
#[derive(Debug)]
pub struct RequestCounters {
    by_route: HashMap<Arc<str>, [CounterSlot<RequestLabels>; 5], foldhash::fast::RandomState>,
    unmatched: [CounterSlot<RequestLabels>; 5],
}

impl RequestCounters {
    /// Counts a request to route `route` (`None`: no route matched) answered with `status`.
    pub fn inc(&self, route: Option<&str>, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        let slots = route
            .and_then(|r| self.by_route.get(r))
            .unwrap_or(&self.unmatched);
        slots[class].inc();
    }
}

/// The policy-decision counters.
#[derive(Debug)]
pub struct DecisionCounters {
    /// Allowed.
    pub allow: CounterSlot<DecisionLabels>,
    /// Denied.
    pub deny: CounterSlot<DecisionLabels>,
}

impl Metrics {
    /// Request counters for the routes `ids`.
    pub fn request_counters<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a Arc<str>>,
    ) -> RequestCounters {
        let slots = |route: &str| {
            CLASSES.map(|status| {
                CounterSlot::new(
                    &self.requests,
                    RequestLabels {
                        route: route.to_owned(),
                        status,
                    },
                )
            })
        };
        RequestCounters {
            by_route: ids.into_iter().map(|id| (id.clone(), slots(id))).collect(),
            unmatched: slots("none"),
        }
    }

    /// The decision counters.
    pub fn decision_counters(&self) -> DecisionCounters {
        DecisionCounters {
            allow: CounterSlot::new(&self.decisions, DecisionLabels { result: "allow" }),
            deny: CounterSlot::new(&self.decisions, DecisionLabels { result: "deny" }),
        }
    }
}
