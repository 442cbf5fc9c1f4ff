//! The list half of response rules: an upstream array answer whose rule the policy declares as
//! an item filter is decided item by item on the compiled policy (each with the time limit of
//! one decision) and streamed to the caller as it is decided, a slice at a time: each slice on a
//! blocking thread, handed over from an async task, so a caller that reads slowly holds no
//! thread. Sits after the upstream in the proxied path; the gateway hands it the parsed answer
//! and the request's input.

use crate::error::Body;
use crate::policy::engine::Snapshot;
use crate::policy::input::DecisionInput;
use crate::policy::item_filter::ItemFilter;
use bytes::Bytes;
use http::Response;
use http::response::Parts;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Items decided between two writes to the caller: a slice costs a few milliseconds at most.
const SLICE: usize = 256;

/// The kept items of `items`, as a streamed JSON array. A failure part-way ends the body before
/// its closing bracket, so no client can take a partial list for a whole one.
pub(super) fn stream(
    parts: Parts,
    snapshot: Arc<Snapshot>,
    filter: ItemFilter,
    mut input: DecisionInput,
    items: Vec<serde_json::Value>,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    // Each slice is decided on a blocking thread (not the reactor's), and handed to the caller
    // from this task: a caller that reads slowly holds a task, never a blocking thread.
    tokio::spawn(async move {
        filter.prepare(&mut input);
        let route = input.route.id.clone();
        let total = items.len();
        let mut decided = Decided::default();
        let mut items = items.into_iter();
        if tx.send(Bytes::from_static(b"[")).await.is_err() {
            return;
        }
        loop {
            let slice: Vec<serde_json::Value> = items.by_ref().take(SLICE).collect();
            if slice.is_empty() {
                break;
            }
            let (snap, f) = (snapshot.clone(), filter.clone());
            let job = tokio::task::spawn_blocking(move || {
                let mut out = Vec::with_capacity(16 * 1024);
                let ok = decided.write(&snap, &f, &mut input, &slice, &mut out);
                (ok.then_some(out), decided, input)
            });
            let Ok((Some(out), d, i)) = job.await else {
                return;
            };
            (decided, input) = (d, i);
            if tx.send(Bytes::from(out)).await.is_err() {
                // The caller left.
                return;
            }
        }
        if decided.failed > 0 {
            tracing::warn!(route = %route, failed = decided.failed, total, "list items refused because their decision failed or ran out of time");
        }
        tracing::debug!(route = %route, kept = decided.kept, total, "list filtered");
        let _ = tx.send(Bytes::from_static(b"]")).await;
    });
    Response::from_parts(parts, Slices(rx).boxed())
}

/// What the slices decided so far.
#[derive(Debug, Default, Clone, Copy)]
struct Decided {
    kept: usize,
    failed: usize,
}

impl Decided {
    /// Decides `slice`, writing each kept item to `out` (comma-separated across slices);
    /// `false` when an item could not be written.
    fn write(
        &mut self,
        snapshot: &Snapshot,
        filter: &ItemFilter,
        input: &mut DecisionInput,
        slice: &[serde_json::Value],
        out: &mut Vec<u8>,
    ) -> bool {
        for item in slice {
            input.resource = filter.resource(item);
            let d = snapshot.decide(input);
            if !d.allow {
                self.failed += usize::from(&*d.reason == "policy_error");
                continue;
            }
            if self.kept > 0 {
                out.push(b',');
            }
            if serde_json::to_writer(&mut *out, item).is_err() {
                return false;
            }
            self.kept += 1;
        }
        true
    }
}

/// A body of the slices a filtering task sends; it ends when the task is done.
struct Slices(tokio::sync::mpsc::Receiver<Bytes>);

impl HttpBody for Slices {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
