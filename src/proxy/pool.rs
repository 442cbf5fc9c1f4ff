//! The upstream connection pool: the transport under [`Upstream`](super::upstream::Upstream),
//! the last stage of an allowed request.
//!
//! The gateway talks to one upstream origin, so the pool is one stack of idle HTTP/1.1
//! connections rather than a general client keyed by host. A request takes the most recently
//! used idle connection (warm in the caches, and the one least likely to have been closed by
//! the upstream's keep-alive timer) or opens a new one; its response body gives the connection
//! back when the last byte has been read. hyper's general pooled client did the same work with a
//! hashed pool key, a spawned task per request to return the connection and more locking: about
//! a third of a plain proxy's CPU per request on the benchmark (`bench/RESULTS.md`).
//!
//! A request that a reused connection could not carry (the upstream closed it while idle, the
//! request never written) is retried on the next idle connection or a new one; a request that was
//! written is never retried, so nothing is sent twice.

use crate::error::Body;
pub use crate::net::{Connector, IDLE_TIMEOUT};
use crate::util::workers;
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// The most idle connections kept to the upstream: enough for the concurrency limit's bursts
/// without holding thousands of sockets after one.
pub const MAX_IDLE: usize = 1024;

/// Why a request could not be exchanged with the upstream.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be opened (refused, unreachable, TLS failure, connect timeout).
    #[error("connect failed: {0}")]
    Connect(String),
    /// The connection failed while the request or the response head was in flight.
    #[error("exchange failed: {0}")]
    Exchange(#[from] hyper::Error),
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// Idle HTTP/1.1 connections to one upstream origin.
pub struct Pool {
    connector: Connector,
    origin: Uri,
    /// Idle connections by the worker that made them ([`workers::index`]): an upstream
    /// connection's task runs on the runtime that opened it, and a request sent on it from
    /// another thread would cross threads twice. Other threads share the first list.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    idle_timeout: Duration,
    max_idle: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("origin", &self.origin)
            .field("idle", &self.idle_count())
            .field("idle_timeout", &self.idle_timeout)
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

impl Pool {
    /// A pool to `origin` (scheme and authority; any path is ignored) keeping at most `max_idle`
    /// connections per worker, each for at most `idle_timeout` unused.
    pub fn new(connector: Connector, origin: Uri, idle_timeout: Duration, max_idle: usize) -> Self {
        Self {
            connector,
            origin,
            idle: (0..=workers::per_core())
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            idle_timeout,
            max_idle,
        }
    }

    /// How many idle connections the pool holds now.
    pub fn idle_count(&self) -> usize {
        self.idle.iter().map(|q| Self::locked(q).len()).sum()
    }

    fn locked(queue: &Mutex<VecDeque<Idle>>) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // The queue is consistent between any two statements, so a panic elsewhere while it was
        // held leaves nothing to repair.
        queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The idle connections of the thread this runs on.
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let queue = &self.idle[workers::index() % self.idle.len()];
        Self::locked(queue)
    }

    /// Sends `req` (origin-form URI, `Host` set) and returns the response head; the body returns
    /// the connection to the pool when it has been read to its end.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, PoolError> {
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                // Boxed: a new connection is rare, and its state (the TLS stream being set up)
                // would otherwise be part of every proxied request's future, which is copied
                // each time it moves.
                None => (Box::pin(self.connect()).await?, false),
            };
            // A returned connection may still be finishing its previous exchange; a closed one
            // errors here, before anything was written to it.
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(e.into());
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = Returning::new(body, sender, self);
                    return Ok(Response::from_parts(parts, body.boxed()));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the upstream had closed this idle connection.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The most recently used live idle connection, dropping the expired and closed ones met.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.lock();
        while let Some(entry) = idle.pop_back() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        // The oldest entries sit at the front: expire them here, so a pool that never drains
        // does not keep dead sockets open.
        while idle
            .front()
            .is_some_and(|e| now.duration_since(e.since) >= self.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle { sender, since: now });
    }

    async fn connect(&self) -> Result<SendRequest<Body>, PoolError> {
        let io = self
            .connector
            .clone()
            .oneshot(self.origin.clone())
            .await
            .map_err(|e| PoolError::Connect(e.to_string()))?;
        let (sender, conn) = http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A response body that hands its connection back to the pool once read to the end. Dropped
/// earlier (the client went away), it drops the connection, whose unread rest makes it unusable.
struct Returning {
    inner: Incoming,
    back: Option<(SendRequest<Body>, Arc<Pool>)>,
}

impl Returning {
    fn new(inner: Incoming, sender: SendRequest<Body>, pool: &Arc<Pool>) -> Self {
        let back = if inner.is_end_stream() {
            // No body at all (HEAD, 204, 304): nobody may ever poll it.
            pool.put(sender);
            None
        } else {
            Some((sender, pool.clone()))
        };
        Self { inner, back }
    }

    fn give_back(&mut self) {
        if let Some((sender, pool)) = self.back.take() {
            pool.put(sender);
        }
    }
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            // The server stops polling once `is_end_stream` says so: give back on the last
            // frame, not only on the end marker after it.
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
