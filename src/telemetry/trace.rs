//! Distributed tracing (OpenTelemetry): a server span per request, child spans for
//! authentication, the decision and the upstream call, W3C trace context taken from the request
//! and handed to the upstream, spans exported over OTLP/HTTP in batches.
//!
//! The composition root builds a [`Tracing`] from `telemetry:` with the outbound client it owns;
//! the request stack starts a [`RequestTrace`] per request and puts it in the request's
//! extensions, where the gateway and the upstream find it. With tracing off, [`Tracing::start`]
//! answers `None` after one branch: nothing is allocated, parsed or exported.
//!
//! What a span records is chosen for a log an operator may share: method, route, path, status,
//! the caller's kind and the decision's outcome. Never a header value, a query string or a body.

use crate::config::OtlpSettings;
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{
    Span as _, Status, TraceContextExt, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use std::time::Duration;

/// Why tracing could not be set up (the operator's configuration, or the exporter).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The OTLP exporter refused its settings.
    #[error("telemetry.otlp_endpoint: cannot build the exporter: {0}")]
    Exporter(String),
}

/// The process's tracer, or nothing when tracing is off.
#[derive(Clone, Default)]
pub struct Tracing {
    on: Option<On>,
}

#[derive(Clone)]
struct On {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("on", &self.on.is_some())
            .finish()
    }
}

impl Tracing {
    /// Tracing off: no span is ever made.
    pub fn off() -> Self {
        Self::default()
    }

    /// Spans exported to `settings.endpoint` through `client`, an HTTP client that may be called
    /// from the exporter's own thread.
    pub fn otlp<C>(settings: &OtlpSettings, client: C) -> Result<Self, TraceError>
    where
        C: opentelemetry_http::HttpClient + 'static,
    {
        use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.to_string())
            .with_timeout(settings.export_timeout)
            .build()
            .map_err(|e| TraceError::Exporter(e.to_string()))?;
        // A bounded queue: past it spans are dropped (and counted by the SDK), never buffered
        // without limit while a collector is away.
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(settings.export_interval)
            .with_max_queue_size(8192)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("iamgate");
        Ok(Self {
            on: Some(On { provider, tracer }),
        })
    }

    /// Whether spans are made.
    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// The server span of a request (`None` with tracing off), a child of the caller's span
    /// when `headers` carry a valid `traceparent`.
    pub fn start(
        &self,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<RequestTrace> {
        let on = self.on.as_ref()?;
        let parent =
            TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
        let mut span = on
            .tracer
            .span_builder(method_name(method))
            .with_kind(SpanKind::Server)
            .start_with_context(&on.tracer, &parent);
        // A trace that is not sampled records nothing: its attributes are not even built.
        let recording = span.is_recording();
        if recording {
            span.set_attribute(KeyValue::new("http.request.method", method_name(method)));
            span.set_attribute(KeyValue::new("url.path", path.to_owned()));
        }
        Some(RequestTrace {
            cx: parent.with_span(span),
            tracer: on.tracer.clone(),
            recording,
        })
    }

    /// Exports what is queued and stops the exporter, waiting at most `within`. Called once at
    /// shutdown; the export runs on a blocking thread, since the exporter's thread may need this
    /// runtime to send.
    pub async fn shutdown(&self, within: Duration) {
        let Some(on) = &self.on else { return };
        let provider = on.provider.clone();
        let done = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(within, done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "trace exporter did not shut down cleanly")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "trace exporter shutdown failed"),
            Err(_) => tracing::warn!("trace exporter shutdown timed out; queued spans are lost"),
        }
    }
}

/// A method's name without an allocation for the standard ones.
fn method_name(m: &http::Method) -> std::borrow::Cow<'static, str> {
    use http::Method;
    let known = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    const NAMES: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    match known.iter().position(|k| k == m) {
        Some(i) => std::borrow::Cow::Borrowed(NAMES[i]),
        None => std::borrow::Cow::Owned(m.as_str().to_owned()),
    }
}

/// One request's server span, in its request's extensions while the request is served.
#[derive(Clone)]
pub struct RequestTrace {
    cx: Context,
    tracer: SdkTracer,
    /// The trace is sampled: spans record and are exported.
    recording: bool,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrace")
            .field("trace_id", &self.trace_id())
            .finish()
    }
}

impl RequestTrace {
    /// The trace's id, as logs print it (32 hex digits).
    pub fn trace_id(&self) -> String {
        self.id().to_string()
    }

    fn id(&self) -> TraceId {
        self.cx.span().span_context().trace_id()
    }

    /// Names the route the request matched: the span is renamed `METHOD route` (a bounded set
    /// of names, unlike paths).
    pub fn set_route(&self, method: &http::Method, route: &str) {
        if self.recording {
            let span = self.cx.span();
            span.update_name(format!("{method} {route}"));
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
        }
    }

    /// Whether the trace is sampled (its spans record and are exported).
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Adds an attribute to the server span.
    pub fn set(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if self.recording {
            self.cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Records the client's address (after trusted proxies are taken into account).
    pub fn set_client(&self, client: std::net::IpAddr) {
        if self.recording {
            self.set("client.address", client.to_string());
        }
    }

    /// A child span `name` of the server span (kind internal, or client for the upstream call);
    /// it ends when [`Child::end`] is called or it is dropped. In a trace that is not sampled no
    /// span is made: the child stands for the server span, whose id then goes upstream.
    pub fn child(&self, name: &'static str, kind: SpanKind) -> Child {
        if !self.recording {
            return Child {
                cx: self.cx.clone(),
                own: false,
            };
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&self.tracer, &self.cx);
        Child {
            cx: self.cx.with_span(span),
            own: true,
        }
    }

    /// Ends the server span with the response's status (5xx marks it failed).
    pub fn finish(&self, status: http::StatusCode) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            span.set_status(Status::error(status.as_str().to_owned()));
        }
        span.end();
    }
}

/// A child span in progress.
pub struct Child {
    cx: Context,
    /// The span is this child's own (not the server span standing in for it).
    own: bool,
}

impl Child {
    /// Adds an attribute.
    pub fn set(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if self.own {
            self.cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with a short reason (never a secret: callers pass error kinds).
    pub fn fail(&self, reason: impl Into<std::borrow::Cow<'static, str>>) {
        if self.own {
            self.cx.span().set_status(Status::error(reason));
        }
    }

    /// Writes `traceparent` (and the caller's `tracestate`) naming this span as the parent, for
    /// the request this span is about to send.
    pub fn inject(&self, headers: &mut HeaderMap) {
        // A client's own `tracestate` must not ride along with a parent it did not name.
        headers.remove("tracestate");
        TraceContextPropagator::new()
            .inject_context(&self.cx, &mut opentelemetry_http::HeaderInjector(headers));
    }

    /// Ends the span now.
    pub fn end(self) {}
}

impl Drop for Child {
    fn drop(&mut self) {
        // A span dropped on an early return still ends; the server span is not a child's to end.
        if self.own {
            self.cx.span().end();
        }
    }
}
