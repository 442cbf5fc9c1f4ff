//! The one place where the order of the request stack is decided. Outermost first:
//!
//! 1. request id: set `x-request-id` when the client sent none, and echo it on the response, so
//!    every later layer, log line and the upstream share one id;
//! 2. sensitive-header masking: mark `authorization`, `cookie` and `proxy-authorization` (and
//!    `set-cookie` on the way back) sensitive before anything below can log them;
//! 3. error mapping: the refusals of the layers below (shed, timed out) become JSON responses;
//! 4. load shedding over a concurrency limit: past `max_concurrent_requests` a request gets 503
//!    at once instead of queueing, so overload never turns into unbounded latency or memory;
//! 5. timeout: a request that has no response headers after `request_timeout` gets 504 (bodies
//!    keep streaming past it: a 100 MB download is not cut);
//! 6. body limit: a declared `Content-Length` over `max_body_bytes` gets 413 before anything is
//!    read;
//! 7. the application: with tracing on, the request's server span (continuing the caller's
//!    `traceparent`) and a log span carrying its trace id; with DEBUG logging on, one span per
//!    request carrying method, path and request id, and a record of its status and latency
//!    (see [`AppService`]); then the
//!    gateway's own endpoints, authentication, route match and resource resolution,
//!    authorization, header rewrite and the proxy (`crate::proxy::gateway`).

use super::App;
use crate::config::ServerSettings;
use crate::error::{ApiError, Body};
use crate::proxy::gateway::ConnInfo;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{BoxError, Service, ServiceBuilder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tracing::Instrument;

/// The application as a tower service.
#[derive(Clone)]
pub struct AppService(pub Arc<App>);

impl Service<Request<Incoming>> for AppService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let app = self.0.clone();
        let conn = req.extensions().get::<ConnInfo>().copied();
        let trace = app
            .traces
            .start(req.method(), req.uri().path(), req.headers());
        // The request span and its records exist only with DEBUG on or tracing on: tower-http's
        // trace layer took timestamps and wrapped every response body even when nothing was
        // logged, about 6% of a proxied request's instructions.
        let debug = tracing::enabled!(target: "iamgate::request", tracing::Level::DEBUG);
        if trace.is_none() && !debug {
            return Box::pin(async move { Ok(app.route(req, conn).await) });
        }
        let span = if debug {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::debug_span!(target: "iamgate::request", "request", method = %req.method(), path = %req.uri().path(), request_id = %id, trace_id = tracing::field::Empty)
        } else {
            // At ERROR level so that the span is enabled whatever level the log runs at: every
            // record a request writes (a WARN about its upstream, its decision at INFO) carries
            // the trace id.
            tracing::error_span!(target: "iamgate::request", "request", trace_id = tracing::field::Empty)
        };
        if let Some(t) = &trace {
            span.record("trace_id", t.trace_id());
            req.extensions_mut().insert(t.clone());
        }
        Box::pin(
            async move {
                let started = std::time::Instant::now();
                if debug {
                    tracing::debug!(target: "iamgate::request", "started processing request");
                }
                let resp = app.route(req, conn).await;
                if let Some(t) = &trace {
                    t.finish(resp.status());
                }
                if debug {
                    tracing::debug!(
                        target: "iamgate::request",
                        status = resp.status().as_u16(),
                        latency_us = started.elapsed().as_micros() as u64,
                        "finished processing request"
                    );
                }
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

/// Refuses requests whose declared body exceeds the limit.
#[derive(Clone)]
pub struct BodyLimit<S> {
    inner: S,
    max: u64,
}

impl<S> Service<Request<Incoming>> for BodyLimit<S>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max) {
            let max = self.max;
            return Box::pin(async move {
                Ok(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {max} bytes"),
                )
                .into_response())
            });
        }
        Box::pin(self.inner.call(req))
    }
}

/// Turns the refusals of the layers below into responses. Its error type stays `BoxError` only
/// because tower requires it to absorb `poll_ready` errors; it never returns `Err`.
fn map_refusal(result: Result<Response<Body>, BoxError>) -> Result<Response<Body>, BoxError> {
    Ok(match result {
        Ok(r) => r,
        Err(e) if e.is::<tower::load_shed::error::Overloaded>() => {
            let mut r = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "gateway overloaded")
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(e) if e.is::<tower::timeout::error::Elapsed>() => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "request timed out").into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "request failed in the stack");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    })
}

/// Builds the stack around `app`; cloned once per connection (the concurrency limit is shared).
pub fn build(
    app: Arc<App>,
    settings: &ServerSettings,
) -> impl Service<
    Request<Incoming>,
    Response = Response<
        impl hyper::body::Body<Data = bytes::Bytes, Error = hyper::Error> + Send + 'static,
    >,
    Error = BoxError,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    let max_body = settings.max_body_bytes;
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
        ]))
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
        .map_result(map_refusal)
        .load_shed()
        .concurrency_limit(settings.max_concurrent_requests)
        .timeout(settings.request_timeout)
        .layer_fn(move |inner| BodyLimit {
            inner,
            max: max_body,
        })
        .service(AppService(app))
}
