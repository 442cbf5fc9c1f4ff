//! The list half of response rules: an upstream array answer whose rule the policy declares as
//! an item filter is decided item by item on the compiled policy (each with the time limit of
//! one decision) and streamed to the caller as it is decided, a slice at a time. Sits after the
//! upstream in the proxied path; the gateway hands it the parsed answer and the request's input.

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
    let route = input.route.id.clone();
    // Deciding holds a thread for as long as the list takes: not a reactor thread.
    tokio::task::spawn_blocking(move || {
        filter.prepare(&mut input);
        let total = items.len();
        let (mut kept, mut failed) = (0usize, 0usize);
        let mut out = Vec::with_capacity(16 * 1024);
        out.push(b'[');
        for slice in items.chunks(SLICE) {
            for item in slice {
                input.resource = filter.resource(item);
                let d = snapshot.decide(&input);
                if !d.allow {
                    failed += usize::from(&*d.reason == "policy_error");
                    continue;
                }
                if kept > 0 {
                    out.push(b',');
                }
                if serde_json::to_writer(&mut out, item).is_err() {
                    return;
                }
                kept += 1;
            }
            if tx
                .blocking_send(Bytes::from(std::mem::take(&mut out)))
                .is_err()
            {
                // The caller left.
                return;
            }
        }
        if failed > 0 {
            tracing::warn!(route = %route, failed, total, "list items refused because their decision failed or ran out of time");
        }
        tracing::debug!(route = %route, kept, total, "list filtered");
        let _ = tx.blocking_send(Bytes::from_static(b"]"));
    });
    Response::from_parts(parts, Slices(rx).boxed())
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
