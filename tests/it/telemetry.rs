//! Distributed tracing over real sockets: the caller's W3C trace context is continued, the
//! upstream receives the same trace id with iamgate's upstream span as its parent, and every span
//! reaches a real OTLP/HTTP receiver. Off by default: a client's `traceparent` then passes through
//! untouched and nothing is exported.

use crate::common::otlp::{GotSpan, Receiver};
use crate::common::upstream::TestUpstream;
use crate::common::{Gateway, gateway};
use http::Method;

const PATH: &str = "/api/tenants/acme/audit-logs";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A receiver, an upstream, a gateway exporting to the receiver (`extra` YAML inside the
/// `telemetry` map), and a company owner of `acme` (allowed on [`PATH`]): its id and token.
struct Traced {
    receiver: Receiver,
    up: TestUpstream,
    gw: Gateway,
    id: String,
    token: String,
}

async fn traced(extra: &str) -> Traced {
    let receiver = Receiver::start().await;
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!(
            "telemetry: {{otlp_endpoint: \"{}\", export_interval_ms: 50, service_name: iamgate-test{extra}}}",
            receiver.url()
        ))
        .start()
        .await;
    let (id, token) = owner(&gw).await;
    Traced {
        receiver,
        up,
        gw,
        id,
        token,
    }
}

async fn owner(gw: &Gateway) -> (String, String) {
    let (id, token) = gw.company_owner("acme").await;
    (id, token)
}

/// GET [`PATH`] with `token` and the trace headers given; its status.
async fn get_traced(gw: &Gateway, token: &str, trace_headers: &[(&str, &str)]) -> u16 {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend_from_slice(trace_headers);
    gw.request(Method::GET, PATH, &headers, "")
        .await
        .status
        .as_u16()
}

/// Waits (bounded) for a span `matches` accepts.
async fn wait_span(receiver: &Receiver, what: &str, matches: impl Fn(&GotSpan) -> bool) -> GotSpan {
    let deadline = std::time::Instant::now() + crate::common::WAIT;
    loop {
        if let Some(s) = receiver.spans().into_iter().find(|s| matches(s)) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no span {what}: {:#?}",
            receiver.spans()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `(trace id, parent id, flags)` of a `traceparent` value.
fn parse_traceparent(v: &str) -> (String, String, String) {
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "{v}");
    assert_eq!(parts[0], "00", "{v}");
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

fn one<'a>(spans: &'a [GotSpan], name: &str) -> &'a GotSpan {
    let found: Vec<&GotSpan> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span {name} expected: {spans:#?}");
    found[0]
}

#[tokio::test]
async fn the_callers_trace_continues_through_the_gateway_to_the_upstream_and_the_collector() {
    let t = traced("").await;
    let parent_header = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let status = get_traced(
        &t.gw,
        &t.token,
        &[
            ("traceparent", &parent_header),
            ("tracestate", "vendor=opaque"),
        ],
    )
    .await;
    assert_eq!(status, 200);

    // The upstream continues the caller's trace, under a span of iamgate's.
    let seen = t.up.last().unwrap();
    let (trace, parent, flags) = parse_traceparent(&seen.headers["traceparent"]);
    assert_eq!(trace, TRACE);
    assert_ne!(
        parent, CALLER_SPAN,
        "the upstream's parent must be iamgate's span"
    );
    assert_eq!(flags, "01");
    assert_eq!(seen.headers["tracestate"], "vendor=opaque");

    // Server span, authentication, decision and upstream call all reach the collector.
    let spans = t.receiver.wait_trace(TRACE, 4).await;
    let server = spans.iter().find(|s| s.kind == 2).expect("a server span");
    assert_eq!(server.parent_id, CALLER_SPAN, "{server:#?}");
    assert_eq!(server.service, "iamgate-test");
    let route = server.attr("http.route").expect("http.route").to_owned();
    assert_eq!(server.name, format!("GET {route}"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("url.path"), Some(PATH));
    let authn = one(&spans, "authenticate");
    assert_eq!(authn.parent_id, server.span_id);
    assert_eq!(authn.attr("iamgate.caller.id"), Some(t.id.as_str()));
    let authz = one(&spans, "authorize");
    assert_eq!(authz.parent_id, server.span_id);
    assert_eq!(authz.attr("iamgate.decision.allow"), Some("true"));
    let upstream = one(&spans, "upstream");
    assert_eq!(upstream.kind, 3, "the upstream call is a client span");
    assert_eq!(upstream.parent_id, server.span_id);
    assert_eq!(upstream.attr("http.response.status_code"), Some("200"));
    assert_eq!(
        upstream.span_id, parent,
        "the upstream's traceparent names the upstream span"
    );

    // Credentials never reach a span.
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(!v.contains(&t.token), "{k} carries the token");
        }
    }
    assert!(
        t.receiver.refused().is_empty(),
        "{:?}",
        t.receiver.refused()
    );
}

#[tokio::test]
async fn a_request_without_trace_context_starts_a_trace_and_a_refusal_is_traced_too() {
    let t = traced("").await;
    assert_eq!(get_traced(&t.gw, &t.token, &[]).await, 200);
    let (trace, parent, _) = parse_traceparent(&t.up.last().unwrap().headers["traceparent"]);
    let spans = t.receiver.wait_trace(&trace, 4).await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    assert!(server.parent_id.is_empty(), "a new trace has a root span");
    assert_eq!(one(&spans, "upstream").span_id, parent);

    // A traceparent that is not valid W3C starts a fresh trace instead; a refusal is traced.
    let hits = t.up.hits();
    let status = get_traced(
        &t.gw,
        "not-a-token",
        &[("traceparent", "00-zz-not-a-trace-01")],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        t.up.hits(),
        hits,
        "a refused request never reaches the upstream"
    );
    let refused = wait_span(&t.receiver, "of the refusal", |s| {
        s.kind == 2 && s.attr("http.response.status_code") == Some("401")
    })
    .await;
    assert!(refused.parent_id.is_empty());
    let spans = t.receiver.wait_trace(&refused.trace_id, 2).await;
    let authn = one(&spans, "authenticate");
    assert_eq!(authn.status, 2, "a failed authentication is marked failed");
}

#[tokio::test]
async fn the_gateways_own_endpoints_are_named_by_their_path() {
    let t = traced("").await;
    let (client_id, secret) = t.gw.secret_client().await;
    assert_eq!(t.gw.token_basic(&client_id, &secret).await.status, 200);
    let name = format!("POST {}", iamgate::token::metadata::TOKEN_PATH);
    let s = wait_span(&t.receiver, "of the token endpoint", |s| s.name == name).await;
    assert_eq!(s.attr("http.response.status_code"), Some("200"));
    assert!(
        s.attributes.iter().all(|(_, v)| !v.contains(&secret)),
        "{s:#?}"
    );
}

#[tokio::test]
async fn with_a_zero_sample_ratio_new_traces_are_not_recorded_but_a_sampled_caller_is_followed() {
    let t = traced(", sample_ratio: 0.0").await;
    assert_eq!(get_traced(&t.gw, &t.token, &[]).await, 200);
    let (unsampled, _, flags) = parse_traceparent(&t.up.last().unwrap().headers["traceparent"]);
    assert_eq!(flags, "00", "the upstream learns the trace is not sampled");

    let parent_header = format!("00-{TRACE}-{CALLER_SPAN}-01");
    assert_eq!(
        get_traced(&t.gw, &t.token, &[("traceparent", &parent_header)]).await,
        200
    );
    t.receiver.wait_trace(TRACE, 4).await;
    assert!(
        t.receiver.spans().iter().all(|s| s.trace_id != unsampled),
        "an unsampled trace was exported"
    );
}

#[tokio::test]
async fn with_tracing_off_a_clients_trace_context_passes_through_untouched() {
    let up = TestUpstream::start().await;
    let gw = gateway().upstream(&up.url()).start().await;
    let (_, token) = owner(&gw).await;
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let status = get_traced(
        &gw,
        &token,
        &[("traceparent", &incoming), ("tracestate", "vendor=opaque")],
    )
    .await;
    assert_eq!(status, 200);
    let seen = up.last().unwrap();
    assert_eq!(seen.headers["traceparent"], incoming);
    assert_eq!(seen.headers["tracestate"], "vendor=opaque");
    assert_eq!(get_traced(&gw, &token, &[]).await, 200);
    assert!(
        !up.last().unwrap().headers.contains_key("traceparent"),
        "no trace is made up with tracing off"
    );
}

#[tokio::test]
async fn a_collector_that_is_down_costs_no_request() {
    // A port nothing listens on: exports fail, requests do not.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!(
            "telemetry: {{otlp_endpoint: \"{url}\", export_interval_ms: 10, export_timeout_secs: 1}}"
        ))
        .start()
        .await;
    let (_, token) = owner(&gw).await;
    for _ in 0..50 {
        assert_eq!(get_traced(&gw, &token, &[]).await, 200);
    }
}
