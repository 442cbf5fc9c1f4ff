//! The web console's files, embedded in the binary and served at `/console/` beside the
//! gateway's own endpoints: the page, one ES module and one stylesheet, no build step and no
//! third-party code. Every page path under `/console/` answers the same page (the module reads
//! the URL), so a deep link survives sign-in. The console holds no authority of its own: it calls
//! the management API with the signed-in account's token, and the API decides.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from the gateway
//! only, no inline script, no framing, requests only to the gateway itself).

use crate::error::{ApiError, Body, full};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

/// Where the console is served.
pub const PREFIX: &str = "/console";

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    body: &'static [u8],
    content_type: &'static str,
}

const INDEX: &[u8] = include_bytes!("console/index.html");

const ASSETS: &[Asset] = &[
    Asset {
        path: "/console/assets/app.js",
        body: include_bytes!("console/app.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Asset {
        path: "/console/assets/style.css",
        body: include_bytes!("console/style.css"),
        content_type: "text/css; charset=utf-8",
    },
];

/// Whether `path` is the console's.
pub fn is_console_path(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The validator of an embedded body: its hash, so a new binary's files are fetched again.
fn etag(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    // The files are fixed at build time; a 64-bit hash only has to tell versions apart.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

fn secured(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn file<B>(req: &Request<B>, body: &'static [u8], content_type: &'static str) -> Response<Body> {
    let tag = etag(body);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes());
    let mut r = if fresh {
        let mut r = Response::new(full(bytes::Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if req.method() == Method::HEAD {
        Response::new(full(bytes::Bytes::new()))
    } else {
        Response::new(full(bytes::Bytes::from_static(body)))
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every use: a new binary's files replace the old ones at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    r
}

/// Answers a request for a console path.
pub fn serve<B>(req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r =
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return secured(r);
    }
    if path == PREFIX {
        let mut r = Response::new(full(bytes::Bytes::new()));
        *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/console/"));
        return secured(r);
    }
    if path.starts_with("/console/assets/") {
        return secured(match ASSETS.iter().find(|a| a.path == path) {
            Some(a) => file(req, a.body, a.content_type),
            None => ApiError::new(StatusCode::NOT_FOUND, "no such console file").into_response(),
        });
    }
    secured(file(req, INDEX, "text/html; charset=utf-8"))
}
