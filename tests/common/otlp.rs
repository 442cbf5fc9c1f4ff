//! A real OTLP/HTTP trace receiver on loopback: accepts `POST /v1/traces` (protobuf), decodes
//! each export with the collector's message types and keeps every span.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct GotSpan {
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, empty for a root span.
    pub parent_id: String,
    /// OTLP span kind (2 server, 3 client, 1 internal).
    pub kind: i32,
    /// The resource's `service.name`.
    pub service: String,
    /// Attributes as `key=value` strings.
    pub attributes: Vec<(String, String)>,
    /// OTLP status code (2 = error).
    pub status: i32,
}

impl GotSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    spans: Mutex<Vec<GotSpan>>,
    bad: Mutex<Vec<String>>,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn value_text(v: &opentelemetry_proto::tonic::common::v1::AnyValue) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match &v.value {
        Some(V::StringValue(s)) => s.clone(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let st = state.clone();
        let addr = super::serve_loopback(move |req| {
            let st = st.clone();
            async move { receive(&st, req).await }
        })
        .await;
        Self { addr, state }
    }

    /// The base URL (the gateway appends `/v1/traces`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<GotSpan> {
        self.state.spans.lock().unwrap().clone()
    }

    /// Requests it could not take (wrong path, type or body).
    pub fn refused(&self) -> Vec<String> {
        self.state.bad.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` spans of `trace_id` have arrived, and returns them.
    pub async fn wait_trace(&self, trace_id: &str, n: usize) -> Vec<GotSpan> {
        let deadline = std::time::Instant::now() + super::WAIT;
        loop {
            let got: Vec<GotSpan> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {n} spans of trace {trace_id} arrived: {got:#?}; refused: {:?}",
                got.len(),
                self.refused()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

async fn receive(st: &State, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let ctype = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let decoded = (path == "/v1/traces" && ctype == "application/x-protobuf")
        .then(|| ExportTraceServiceRequest::decode(body.as_ref()).ok())
        .flatten();
    let Some(export) = decoded else {
        st.bad.lock().unwrap().push(format!("{path} {ctype}"));
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::new()))
            .unwrap();
    };
    let mut spans = st.spans.lock().unwrap();
    for rs in export.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(value_text)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(GotSpan {
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_id: hex(&s.parent_span_id),
                    kind: s.kind,
                    service: service.clone(),
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                kv.value.as_ref().map(value_text).unwrap_or_default(),
                            )
                        })
                        .collect(),
                    status: s.status.map_or(0, |st| st.code),
                });
            }
        }
    }
    Response::new(Full::new(Bytes::new()))
}
