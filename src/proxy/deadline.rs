//! One timer for a request's two deadlines: the request's own (`server.request_timeout_secs`, from
//! the moment the stack takes the request until its response headers) and, while the upstream is
//! asked, the upstream's answer (`upstream.response_timeout_ms`).
//!
//! The stack runs every request under [`Deadline::run`]; the proxy bounds its upstream exchange
//! with [`Deadline::upstream`]. Two timers cost a registration in tokio's timer wheel and a
//! removal each (about 900 instructions a timer, 2 % of a proxied request); here the one timer is
//! set to the earlier deadline when the upstream is asked, so a request that is answered in time
//! registers once. Which deadline passed decides the answer, as with two timers: the request's
//! gives [`RequestElapsed`], the upstream's makes the upstream exchange fail, and the proxy
//! answers as it does for any upstream failure.

use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The request's deadlines, shared by [`Deadline::run`] and the upstream exchange it bounds.
/// Atomics rather than cells only so that futures borrowing it stay `Send`; one task uses it.
#[derive(Debug)]
pub struct Deadline {
    start: Instant,
    request: Instant,
    /// The upstream's deadline as nanoseconds after `start`, plus one; 0 while none is set.
    upstream: AtomicU64,
    /// Set when the upstream's deadline passed and its exchange must fail.
    upstream_elapsed: AtomicBool,
}

/// The request's own deadline passed before its response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request timed out")]
pub struct RequestElapsed;

/// The upstream did not answer within its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream timed out")]
pub struct UpstreamElapsed;

impl Deadline {
    /// A request taken now that must have its response headers within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        // tokio's clock, which the timer runs on (and which tests can pause).
        let start = Instant::now();
        Self {
            start,
            // A timeout past what an Instant can hold is no timeout: a century stands in.
            request: start
                .checked_add(timeout)
                .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 86_400)),
            upstream: AtomicU64::new(0),
            upstream_elapsed: AtomicBool::new(false),
        }
    }

    fn upstream_at(&self) -> Option<Instant> {
        match self.upstream.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.start + Duration::from_nanos(n - 1)),
        }
    }

    /// The deadline the timer must fire at now.
    fn earliest(&self) -> Instant {
        self.upstream_at()
            .map_or(self.request, |u| u.min(self.request))
    }

    /// Runs `fut` until it is ready or the request's deadline passes.
    pub fn run<F: Future>(&self, fut: F) -> Run<'_, F> {
        Run {
            deadline: self,
            inner: fut,
            sleep: None,
        }
    }

    /// Runs the upstream exchange `fut`, which must be ready within `within` from now; the
    /// request's own deadline still applies (through [`Deadline::run`], which must be driving
    /// the future this one is part of).
    pub fn upstream<F: Future>(&self, within: Duration, fut: F) -> Upstream<'_, F> {
        let at = Instant::now().saturating_duration_since(self.start) + within;
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX - 1);
        self.upstream_elapsed.store(false, Ordering::Relaxed);
        self.upstream.store(nanos + 1, Ordering::Relaxed);
        Upstream {
            deadline: self,
            inner: fut,
        }
    }
}

pin_project! {
    /// [`Deadline::run`]'s future.
    pub struct Run<'d, F> {
        deadline: &'d Deadline,
        #[pin]
        inner: F,
        // Made at the first wait, when the upstream's deadline is usually known already: one
        // registration instead of one and a reset.
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl<F: Future> Future for Run<'_, F> {
    type Output = Result<F::Output, RequestElapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let d = *this.deadline;
        loop {
            if let Poll::Ready(out) = this.inner.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            loop {
                let earliest = d.earliest();
                if this.sleep.is_none() {
                    this.sleep.set(Some(tokio::time::sleep_until(earliest)));
                }
                // Set just above when it was not.
                let Some(mut sleep) = this.sleep.as_mut().as_pin_mut() else {
                    return Poll::Pending;
                };
                // Only ever moved earlier here: a deadline that went away (the upstream
                // answered) leaves the timer where it was, and its firing is looked at below.
                if sleep.deadline() > earliest {
                    sleep.as_mut().reset(earliest);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let fired_at = sleep.deadline();
                if d.request <= fired_at {
                    return Poll::Ready(Err(RequestElapsed));
                }
                if d.upstream_at().is_some_and(|u| u <= fired_at) {
                    // The exchange fails when polled next, and the request answers for it.
                    d.upstream_elapsed.store(true, Ordering::Relaxed);
                    d.upstream.store(0, Ordering::Relaxed);
                    break;
                }
                // It fired for a deadline that has gone: on to what is left.
                sleep.as_mut().reset(d.earliest());
            }
        }
    }
}

pin_project! {
    /// [`Deadline::upstream`]'s future.
    pub struct Upstream<'d, F> {
        deadline: &'d Deadline,
        #[pin]
        inner: F,
    }

    impl<'d, F> PinnedDrop for Upstream<'d, F> {
        // The exchange is over, answered or abandoned: its deadline no longer bounds the request.
        fn drop(this: Pin<&mut Self>) {
            this.deadline.upstream.store(0, Ordering::Relaxed);
        }
    }
}

impl<F: Future> Future for Upstream<'_, F> {
    type Output = Result<F::Output, UpstreamElapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this
            .deadline
            .upstream_elapsed
            .swap(false, Ordering::Relaxed)
        {
            return Poll::Ready(Err(UpstreamElapsed));
        }
        let out = std::task::ready!(this.inner.poll(cx));
        this.deadline.upstream.store(0, Ordering::Relaxed);
        Poll::Ready(Ok(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_deadline_ends_a_request_that_waits_too_long() {
        let d = Deadline::new(ms(1000));
        let out = d.run(tokio::time::sleep(ms(5000))).await;
        assert_eq!(out, Err(RequestElapsed));
        let d = Deadline::new(ms(1000));
        assert_eq!(d.run(tokio::time::sleep(ms(10))).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_upstream_deadline_fails_the_exchange_and_the_request_goes_on() {
        let d = Deadline::new(ms(1000));
        let out = d
            .run(async {
                let exchange = d.upstream(ms(100), tokio::time::sleep(ms(5000))).await;
                // After the failed exchange the request still runs, under its own deadline.
                tokio::time::sleep(ms(200)).await;
                exchange
            })
            .await;
        assert_eq!(out, Ok(Err(UpstreamElapsed)));
        // An exchange that answers in time, then a wait past the request's deadline.
        let d = Deadline::new(ms(1000));
        let out = d
            .run(async {
                let exchange = d.upstream(ms(500), tokio::time::sleep(ms(100))).await;
                tokio::time::sleep(ms(5000)).await;
                exchange
            })
            .await;
        assert_eq!(out, Err(RequestElapsed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_upstream_deadline_leaves_the_request_deadline_in_charge() {
        let d = Deadline::new(ms(300));
        let out = d
            .run(d.upstream(ms(5000), tokio::time::sleep(ms(10_000))))
            .await;
        assert_eq!(out, Err(RequestElapsed));
    }
}
