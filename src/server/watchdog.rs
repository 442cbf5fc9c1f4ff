//! The public listener's per-connection watchdog, between the accept loop and hyper: a
//! connection with no request in progress that has made no progress for [`STALL_LIMIT`] is
//! closed. That covers a client that sends nothing at all, one that stops inside the HTTP/2
//! preface (before hyper knows the protocol, so before any timeout of hyper's applies), one that
//! trickles an HTTP/1.1 request head (slowloris), and an idle kept-alive connection. An idle
//! HTTP/2 connection is sent away with a GOAWAY instead, so a request sent as it closes is
//! refused cleanly and retried by the client.
//!
//! One timer per connection, re-armed only when it fires: per request the connection's service
//! counts the request in and, when its response has been handed over, out, with the time. This
//! replaces hyper's header-read timeout, which allocated and registered a timer for every
//! request head.

use bytes::Bytes;
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Longest a connection may go without progress while no request is in progress: from its
/// start, or from the end of its last response, to a complete request head.
pub(super) const STALL_LIMIT: Duration = Duration::from_secs(10);

/// What the watchdog knows of one connection.
#[derive(Debug)]
pub(super) struct Progress {
    /// When the connection was accepted.
    epoch: Instant,
    /// Requests whose responses have not been handed over yet.
    in_flight: AtomicU32,
    /// When the last response was handed over, in nanoseconds after `epoch`.
    last_nanos: AtomicU64,
    /// The connection speaks HTTP/2 (it has made a request so): idle, it is sent away with a
    /// GOAWAY rather than closed.
    http2: AtomicBool,
    /// The connection is closed for misbehaving (stalled, or no TLS handshake), not ended:
    /// there is no answer the client could still be reading, so it closes without lingering.
    abandoned: AtomicBool,
}

impl Progress {
    /// A connection accepted now.
    pub(super) fn start() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_nanos: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
        })
    }

    /// Marks the connection as closed for misbehaving: its socket closes outright.
    pub(super) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }

    /// Whether [`abandon`](Self::abandon) was called.
    pub(super) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Resolves once the connection has gone `limit` without progress and with nothing in
    /// progress. An HTTP/1.1 connection, or one that never made a request, is then abandoned
    /// ([`Stall::Abandon`]); an HTTP/2 connection that has made requests is idle, and is to be
    /// sent away with a GOAWAY ([`Stall::GoAway`]), unless `idle_http2` is false (it is being
    /// sent away already): then this never resolves for it.
    pub(super) async fn stalled(&self, limit: Duration, idle_http2: bool) -> Stall {
        let mut due = self.epoch + limit;
        loop {
            tokio::time::sleep_until(due).await;
            let http2 = self.http2.load(Ordering::Relaxed);
            if http2 && !idle_http2 {
                return std::future::pending().await;
            }
            let now = Instant::now();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                due = now + limit;
                continue;
            }
            let last = self.epoch + Duration::from_nanos(self.last_nanos.load(Ordering::Acquire));
            if last + limit <= now {
                if http2 {
                    return Stall::GoAway;
                }
                // Before the connection is dropped (which closes its socket): outright.
                self.abandon();
                return Stall::Abandon;
            }
            due = last + limit;
        }
    }
}

/// What [`Progress::stalled`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stall {
    /// Stalled before or between requests: close the socket outright.
    Abandon,
    /// An idle HTTP/2 connection: send it away gracefully, as at shutdown.
    GoAway,
}

/// One request in progress on its connection, until its response is handed over (or it is
/// dropped unanswered).
#[derive(Debug)]
pub(super) struct InFlight(Arc<Progress>);

impl InFlight {
    /// Counts a request in on `progress`; dropping it counts the request out.
    fn begin(progress: &Arc<Progress>) -> Self {
        progress.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(progress.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let p = &self.0;
        let since = u64::try_from(p.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        p.last_nanos.store(since, Ordering::Release);
        p.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// The connection's service, counting its requests for the watchdog.
#[derive(Clone, Debug)]
pub(super) struct Watched<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S> Watched<S> {
    /// `inner`, reporting to `progress`.
    pub(super) fn new(inner: S, progress: Arc<Progress>) -> Self {
        Self { inner, progress }
    }
}

impl<S, B, ReqBody> tower::Service<Request<ReqBody>> for Watched<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<B>>,
{
    type Response = Response<WatchedBody<B>>;
    type Error = S::Error;
    type Future = WatchedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if req.version() == http::Version::HTTP_2 {
            self.progress.http2.store(true, Ordering::Relaxed);
        }
        let in_flight = InFlight::begin(&self.progress);
        WatchedFuture {
            inner: self.inner.call(req),
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`Watched`]: the request counts as in progress until its response
    /// body is done with.
    pub(super) struct WatchedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B, E> Future for WatchedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<WatchedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = std::task::ready!(this.inner.poll(cx))?;
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(resp.map(|inner| WatchedBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its request's time in progress when hyper is done with it
    /// (written whole, or dropped with the connection).
    pub(super) struct WatchedBody<B> {
        #[pin]
        inner: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B> hyper::body::Body for WatchedBody<B>
where
    B: hyper::body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_stalls_at_the_limit() {
        let p = Progress::start();
        let started = Instant::now();
        assert_eq!(p.stalled(STALL_LIMIT, true).await, Stall::Abandon);
        assert_eq!(started.elapsed(), STALL_LIMIT);
        assert!(
            p.abandoned(),
            "a stalled connection closes without lingering"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_runs_from_the_last_response_and_not_while_a_request_is_in_progress() {
        let p = Progress::start();
        let started = Instant::now();
        let watching = tokio::spawn({
            let p = p.clone();
            async move { p.stalled(STALL_LIMIT, true).await }
        });
        // A request from 4 s to 25 s: in progress across two of the timer's firings.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let request = InFlight::begin(&p);
        tokio::time::sleep(Duration::from_secs(21)).await;
        drop(request);
        watching.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(25) + STALL_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_http2_connection_is_sent_away_once_and_never_abandoned() {
        let p = Progress::start();
        p.http2.store(true, Ordering::Relaxed);
        let started = Instant::now();
        assert_eq!(p.stalled(STALL_LIMIT, true).await, Stall::GoAway);
        assert_eq!(started.elapsed(), STALL_LIMIT);
        assert!(!p.abandoned(), "a GOAWAY, not a closed socket");
        // Being sent away already: the watchdog waits for the connection to end.
        let waited = tokio::time::timeout(STALL_LIMIT * 10, p.stalled(STALL_LIMIT, false)).await;
        assert!(waited.is_err());
    }
}
