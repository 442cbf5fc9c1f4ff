//! A real upstream HTTP server for the proxy tests: counts hits, records the last request,
//! echoes it as JSON, and serves canned answers, slow answers and large streamed bodies.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HashMap<String, String>,
    pub body_len: usize,
}

#[derive(Default)]
struct State {
    hits: AtomicUsize,
    last: Mutex<Option<Seen>>,
    canned: Mutex<HashMap<String, (u16, String)>>,
}

/// A running upstream.
#[derive(Clone)]
pub struct TestUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).boxed()
}

/// `n` zero bytes in 64 KiB chunks, produced lazily.
pub struct ZeroBody {
    left: usize,
    chunk: Bytes,
}

impl ZeroBody {
    pub fn new(n: usize) -> Self {
        Self {
            left: n,
            chunk: Bytes::from(vec![0u8; 64 * 1024]),
        }
    }
}

impl hyper::body::Body for ZeroBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let take = self.left.min(self.chunk.len());
        self.left -= take;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..take)))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left as u64)
    }
}

fn stream_bytes(n: usize) -> BoxBody {
    ZeroBody::new(n).boxed()
}

impl TestUpstream {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let st = state.clone();
        let addr = super::serve_loopback(move |req| {
            let st = st.clone();
            async move { handle(&st, req).await }
        })
        .await;
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Option<Seen> {
        self.state.last.lock().unwrap().clone()
    }

    /// Answers `path` (without query) with `status` and the JSON `body`.
    pub fn answer(&self, path: &str, status: u16, body: Value) {
        self.state
            .canned
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.to_string()));
    }
}

async fn handle(st: &State, req: Request<hyper::body::Incoming>) -> Response<BoxBody> {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    // Count the body without keeping it, so 100 MB uploads cost the upstream nothing.
    let mut body = req.into_body();
    let mut body_len = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(f) = frame
            && let Some(d) = f.data_ref()
        {
            body_len += d.len();
        }
    }
    let seen = Seen {
        method: method.clone(),
        uri: uri.clone(),
        headers: headers.clone(),
        body_len,
    };
    *st.last.lock().unwrap() = Some(seen);
    if let Some(ms) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("sleep_ms="))
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(n) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("bytes="))
        .and_then(|v| v.parse::<usize>().ok())
    {
        return Response::new(stream_bytes(n));
    }
    let canned = st.canned.lock().unwrap().get(&path).cloned();
    if let Some((status, body)) = canned {
        let mut r = Response::new(full(body));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return r;
    }
    let out = serde_json::json!({
        "method": method, "uri": uri, "headers": headers, "bodyLen": body_len,
    });
    let mut r = Response::new(full(out.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
