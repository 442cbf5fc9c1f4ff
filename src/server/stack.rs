//! The one place where the order of the request stack is decided. Outermost first:
//!
//! 1. request id: set `x-request-id` when the client sent none, and echo it on the response, so
//!    every later layer, log line and the upstream share one id;
//! 2. sensitive-header masking: mark `authorization`, `cookie` and `proxy-authorization` (and
//!    `set-cookie` on the way back) sensitive before anything below can log them (1 and 2 are
//!    one service, [`Hygiene`]);
//! 3. load shedding over a concurrency limit ([`Shed`]): past `max_concurrent_requests` a request
//!    gets 503 at once instead of queueing, so overload never turns into unbounded latency or
//!    memory;
//! 4. body limit: a declared `Content-Length` over `max_body_bytes` gets 413 before anything is
//!    read;
//! 5. the application, under its deadline: a request that has no response headers after
//!    `request_timeout` gets 504 (bodies keep streaming past it: a 100 MB download is not cut);
//!    one timer serves this deadline and the upstream's answer ([`Deadline`]). Then, with tracing
//!    on, the request's server span (continuing the caller's `traceparent`) and a log span
//!    carrying its trace id; with DEBUG logging on, one span per request carrying method, path
//!    and request id, and a record of its status and latency (see [`AppService`]); then the
//!    gateway's own endpoints, authentication, route match and resource resolution,
//!    authorization, header rewrite and the proxy (`crate::proxy::gateway`).

use super::App;
use crate::config::ServerSettings;
use crate::error::{ApiError, Body};
use crate::proxy::deadline::{Deadline, RequestElapsed};
use crate::proxy::gateway::ConnInfo;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceBuilder};
use tracing::Instrument;

use crate::proxy::upstream::X_REQUEST_ID;

/// Layers 1 and 2 in one service: the request id and the masking of credentials. tower-http's
/// four layers for this (set and echo the id, mask request and response headers) cost about 3k
/// instructions a request, with a hashed lookup per masked name and an extension map per
/// request; one pass over the few headers a request carries does the same.
#[derive(Clone)]
pub struct Hygiene<S> {
    inner: S,
}

/// A fresh request id: a random UUID, written without the formatting machinery.
fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    // A hyphenated UUID is always a valid header value; the fallback is never taken.
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

impl<S, R, B> Service<Request<R>> for Hygiene<S>
where
    S: Service<Request<R>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = HygieneFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<R>) -> Self::Future {
        let headers = req.headers_mut();
        for (name, value) in headers.iter_mut() {
            if name == header::AUTHORIZATION
                || name == header::COOKIE
                || name == header::PROXY_AUTHORIZATION
            {
                value.set_sensitive(true);
            }
        }
        let id = match headers.get(X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                headers.insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        HygieneFuture {
            inner: self.inner.call(req),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`Hygiene`]: the request's id echoed unless the response names its own,
    /// `set-cookie` masked.
    pub struct HygieneFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for HygieneFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = match this.inner.poll(cx) {
            Poll::Ready(Ok(r)) => r,
            other => return other,
        };
        let headers = resp.headers_mut();
        for (name, value) in headers.iter_mut() {
            if name == header::SET_COOKIE {
                value.set_sensitive(true);
            }
        }
        if let Some(id) = this.id.take()
            && !headers.contains_key(X_REQUEST_ID)
        {
            headers.insert(X_REQUEST_ID, id);
        }
        Poll::Ready(Ok(resp))
    }
}

/// The application as a tower service, for one connection.
#[derive(Clone)]
pub struct AppService {
    app: Arc<App>,
    conn: ConnInfo,
    timeout: Duration,
}

/// `app`'s answer to `req`, or 504 when it has no response headers within `timeout`.
async fn answer(
    app: &App,
    req: Request<Incoming>,
    conn: ConnInfo,
    timeout: Duration,
) -> Response<Body> {
    let deadline = Deadline::new(timeout);
    match deadline.run(app.route(req, conn, &deadline)).await {
        Ok(resp) => resp,
        Err(RequestElapsed) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "request timed out").into_response()
        }
    }
}

impl Service<Request<Incoming>> for AppService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let (app, conn, timeout) = (self.app.clone(), self.conn, self.timeout);
        let trace = app
            .traces
            .start(req.method(), req.uri().path(), req.headers());
        // The request span and its records exist only with DEBUG on or tracing on: tower-http's
        // trace layer took timestamps and wrapped every response body even when nothing was
        // logged, about 6% of a proxied request's instructions.
        let debug = tracing::enabled!(target: "iamgate::request", tracing::Level::DEBUG);
        if trace.is_none() && !debug {
            return Box::pin(async move { Ok(answer(&app, req, conn, timeout).await) });
        }
        let span = if debug {
            let id = req
                .headers()
                .get(X_REQUEST_ID)
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
                let resp = answer(&app, req, conn, timeout).await;
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
    type Future = Answer<S::Future>;

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
            let refused = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {} bytes", self.max),
            )
            .into_response();
            return Answer::Refused {
                response: Some(refused),
            };
        }
        Answer::Inner {
            inner: self.inner.call(req),
            permit: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`BodyLimit`] and [`Shed`]: a refusal made when the request was called,
    /// or the inner service's own future, unboxed (the application's future is boxed once
    /// already), with the place it holds among the requests in flight, if any.
    // The macro takes no attributes on fields; the variants say what theirs hold.
    #[allow(missing_docs)]
    #[project = AnswerProjection]
    pub enum Answer<F> {
        /// Refused: the response, taken when polled.
        Refused { response: Option<Response<Body>> },
        /// Passed on: the inner future and the place it holds until it is ready.
        Inner { #[pin] inner: F, permit: Option<Permit> },
    }
}

impl<F, E> Future for Answer<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            // Polled again after it answered: a caller's bug, answered as a server error.
            AnswerProjection::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                        .into_response()
                })))
            }
            AnswerProjection::Inner { inner, permit } => {
                let out = std::task::ready!(inner.poll(cx));
                permit.take();
                Poll::Ready(out)
            }
        }
    }
}

/// Layer 3: load shedding over a concurrency limit, as one counter shared by every connection's
/// copy of the stack. A request past `max` in flight gets 503 at once; an admitted one holds its
/// place until its response (headers) is ready or it is dropped. tower's `LoadShed` over
/// `ConcurrencyLimit` did the same through a semaphore and a boxed acquire per request.
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
    max: usize,
}

/// A place among the requests in flight, given back when dropped.
pub struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R> Service<R> for Shed<S>
where
    S: Service<R, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            let mut r = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "gateway overloaded")
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Answer::Refused { response: Some(r) };
        }
        Answer::Inner {
            permit: Some(Permit(self.in_flight.clone())),
            inner: self.inner.call(req),
        }
    }
}

/// The stack around `app`, built for each connection by [`Stacks::for_connection`]. The
/// connection's facts are its service's own (no per-request extension map, which cost an
/// allocation and a hashed insert per request); the concurrency limit is shared by every
/// connection.
#[derive(Clone)]
pub struct Stacks {
    app: Arc<App>,
    in_flight: Arc<AtomicUsize>,
    max_concurrent: usize,
    max_body: u64,
    timeout: Duration,
}

impl Stacks {
    /// The stacks of `app` under `settings`.
    pub fn new(app: Arc<App>, settings: &ServerSettings) -> Self {
        Self {
            app,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_concurrent: settings.max_concurrent_requests,
            max_body: settings.max_body_bytes,
            timeout: settings.request_timeout,
        }
    }

    /// The stack serving the requests of the connection `conn` describes (a copy of `self`:
    /// two shared pointers).
    pub fn for_connection(
        self,
        conn: ConnInfo,
    ) -> impl Service<
        Request<Incoming>,
        Response = Response<
            impl hyper::body::Body<Data = bytes::Bytes, Error = hyper::Error> + Send + 'static,
        >,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        let (in_flight, max, max_body) =
            (self.in_flight.clone(), self.max_concurrent, self.max_body);
        ServiceBuilder::new()
            .layer_fn(|inner| Hygiene { inner })
            .layer_fn(move |inner| Shed {
                inner,
                in_flight: in_flight.clone(),
                max,
            })
            .layer_fn(move |inner| BodyLimit {
                inner,
                max: max_body,
            })
            .service(AppService {
                app: self.app,
                conn,
                timeout: self.timeout,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inner service that reports what it received and answers with `answer`'s headers.
    async fn through(
        request: &[(&'static str, &'static str)],
        answer: &[(&'static str, &'static str)],
    ) -> (http::HeaderMap, http::HeaderMap) {
        let mut req = Request::builder();
        for (n, v) in request {
            req = req.header(*n, *v);
        }
        let answer: Vec<_> = answer.to_vec();
        let seen = Arc::new(std::sync::Mutex::new(http::HeaderMap::new()));
        let inner = {
            let seen = seen.clone();
            tower::service_fn(move |r: Request<()>| {
                *seen.lock().unwrap() = r.headers().clone();
                let mut resp = Response::new(());
                for (n, v) in &answer {
                    resp.headers_mut().append(*n, HeaderValue::from_static(v));
                }
                async move { Ok::<_, Infallible>(resp) }
            })
        };
        let resp = Hygiene { inner }.call(req.body(()).unwrap()).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        (seen, resp.headers().clone())
    }

    #[tokio::test]
    async fn credentials_are_masked_both_ways_and_the_request_id_is_set_and_echoed() {
        let (seen, answered) = through(
            &[
                ("authorization", "Bearer t"),
                ("cookie", "a=b"),
                ("proxy-authorization", "Basic x"),
                ("accept", "*/*"),
            ],
            &[
                ("set-cookie", "s=1"),
                ("set-cookie", "s=2"),
                ("server", "up"),
            ],
        )
        .await;
        for n in ["authorization", "cookie", "proxy-authorization"] {
            assert!(seen.get(n).unwrap().is_sensitive(), "{n}");
        }
        assert!(!seen.get("accept").unwrap().is_sensitive());
        let id = seen.get("x-request-id").unwrap();
        assert!(uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok());
        assert_eq!(answered.get("x-request-id"), Some(id));
        assert!(
            answered
                .get_all("set-cookie")
                .iter()
                .all(|v| v.is_sensitive())
        );
        assert!(!answered.get("server").unwrap().is_sensitive());
        // Two requests get two ids.
        let (again, _) = through(&[], &[]).await;
        assert_ne!(again.get("x-request-id"), Some(id));
    }

    #[tokio::test]
    async fn past_the_limit_requests_get_503_and_a_finished_or_dropped_one_gives_its_place_back() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
        let inner = tower::service_fn(move |_: ()| {
            let rx = rx.lock().unwrap().take();
            async move {
                if let Some(rx) = rx {
                    let _ = rx.await;
                }
                Ok::<_, Infallible>(Response::new(crate::error::full(bytes::Bytes::new())))
            }
        });
        let mut shed = Shed {
            inner,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max: 1,
        };
        let held = tokio::spawn(shed.call(()));
        let refused = shed.call(()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        tx.send(()).unwrap();
        assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(shed.call(()).await.unwrap().status(), StatusCode::OK);
        // A request dropped before its answer (the client went away) gives its place back too.
        drop(shed.call(()));
        assert_eq!(shed.in_flight.load(Ordering::Acquire), 0);
        assert_eq!(shed.call(()).await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_client_s_request_id_is_kept_and_an_upstream_s_own_is_not_replaced() {
        let (seen, answered) = through(&[("x-request-id", "abc-1")], &[]).await;
        assert_eq!(seen.get("x-request-id").unwrap(), "abc-1");
        assert_eq!(answered.get("x-request-id").unwrap(), "abc-1");
        let (_, answered) =
            through(&[("x-request-id", "abc-1")], &[("x-request-id", "up-2")]).await;
        assert_eq!(answered.get_all("x-request-id").iter().count(), 1);
        assert_eq!(answered.get("x-request-id").unwrap(), "up-2");
    }
}
