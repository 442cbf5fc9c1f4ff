//! Decisions for an existing ingress: iamgate decides, the ingress forwards. It sits beside the
//! proxied path and shares everything up to the decision with it ([`Gateway::find`] and
//! [`Gateway::decide`]: route table, path rules, bearer authentication, resource resolution,
//! policy, caches, metrics and decision log); nothing is forwarded. Two doors lead here:
//! `/-/authz` on the listener ([`serve_http`]: nginx `auth_request`, Traefik ForwardAuth, Envoy's
//! HTTP ext_authz) and Envoy's gRPC ext_authz ([`super::ext_authz`]).
//!
//! Only peers in `server.trusted_proxies` are answered: the request an ingress names is believed
//! only from an ingress. Where several namings arrive at once (a prefix path, `X-Forwarded-Uri`,
//! `X-Original-URI` and their methods), they must agree: an ingress that sets one of them passes
//! the client's own copies of the others on, and believing the client's would decide a request
//! other than the one forwarded.

use super::gateway::{Gateway, Refusal, identity_of};
use super::upstream::IdentityHeaders;
use crate::error::{ApiError, Body, full};
use crate::telemetry::trace::RequestTrace;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::time::Instant;

/// The decision endpoint's path, and the prefix of the original path in Envoy's HTTP mode.
pub const PREFIX: &str = "/-/authz";

/// Whether `path` is the decision endpoint (`/-/authz`, or an original path after it).
pub fn is_decision_path(path: &str) -> bool {
    path.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Set by Envoy when it sent only the first part of the body (`with_request_body`).
const PARTIAL_BODY: &str = "x-envoy-auth-partial-body";

/// Envoy's HTTP ext_authz removes the headers an allow answer names here from the request it
/// forwards: the identity headers on a public route, which has no identity to set.
const HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// The headers that name the original request; never part of it.
const NAMING: [HeaderName; 5] = [
    HeaderName::from_static("x-forwarded-method"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-original-method"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static(PARTIAL_BODY),
];

/// How decisions are answered; present when the decision-only mode is on.
#[derive(Debug, Clone)]
pub struct IngressMode {
    /// The identity headers an allow answer sets.
    pub names: IdentityHeaders,
    /// Response-rule routes are decided on their own checks instead of refused.
    pub skip_response_rules: bool,
}

/// The body of the request an ingress asks about, as far as it was sent.
#[derive(Debug, Clone)]
pub enum OriginalBody {
    /// None was sent (nginx `auth_request` never sends one).
    Absent,
    /// All of it.
    Full(Bytes),
    /// Only its start (the ingress's buffer was smaller).
    Partial,
    /// More than the gateway reads for a decision (`server.max_decision_body_bytes`).
    TooLarge,
}

impl OriginalBody {
    /// The body an ingress sent: cut short if it says so (Envoy marks a body cut at its buffer
    /// with `x-envoy-auth-partial-body: true`), none, the bytes read, or `TooLarge` when `read`
    /// is `None` (over the cap, or broken off).
    pub(super) fn of(headers: &HeaderMap, read: Option<Bytes>) -> Self {
        let partial = headers
            .get(PARTIAL_BODY)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        match read {
            _ if partial => Self::Partial,
            None => Self::TooLarge,
            Some(b) if b.is_empty() => Self::Absent,
            Some(b) => Self::Full(b),
        }
    }
}

/// The original request's path and query: origin-form only (no absolute URI, no `*`).
#[allow(clippy::result_large_err)]
pub(super) fn origin_form(target: &str) -> Result<PathAndQuery, Refusal> {
    target
        .parse()
        .ok()
        .filter(|p: &PathAndQuery| p.path().starts_with('/'))
        .ok_or_else(|| deny("bad_original_request", "the original URI is not a path"))
}

/// The original request's method.
#[allow(clippy::result_large_err)]
pub(super) fn method_named(method: &str) -> Result<Method, Refusal> {
    Method::from_bytes(method.as_bytes()).map_err(|_| {
        deny(
            "bad_original_request",
            "the original method is not a method",
        )
    })
}

/// The request an ingress asks about.
#[derive(Debug)]
pub struct Original {
    /// Its method.
    pub method: Method,
    /// Its path and query, as the client sent them.
    pub target: PathAndQuery,
    /// Its headers (credentials included); the naming headers are dropped before deciding.
    pub headers: HeaderMap,
    /// Its body.
    pub body: OriginalBody,
    /// The decision's server span, when tracing is on.
    pub trace: Option<RequestTrace>,
}

/// The answer to an ingress.
#[derive(Debug)]
pub enum Verdict {
    /// Let the request through with these headers set, and these removed.
    Allow {
        /// The identity headers, replacing any the client sent.
        set: Vec<(HeaderName, HeaderValue)>,
        /// Identity headers to drop (a public route has no identity).
        remove: Vec<HeaderName>,
    },
    /// Refuse it: 401 (no or bad credentials, with `WWW-Authenticate`), 403 (with a reason), or
    /// a 5xx when iamgate itself could not decide.
    Deny {
        /// Status.
        status: StatusCode,
        /// `WWW-Authenticate` on a 401.
        challenge: Option<HeaderValue>,
        /// JSON body: `statusCode`, `error`, `message`, `reason`.
        body: Bytes,
    },
}

impl Verdict {
    /// The status an HTTP answer carries.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Allow { .. } => StatusCode::OK,
            Self::Deny { status, .. } => *status,
        }
    }
}

/// A 403 refusal with `reason`.
pub(super) fn deny(reason: &'static str, message: &'static str) -> Refusal {
    ApiError::new(StatusCode::FORBIDDEN, message)
        .with_reason(reason)
        .into_response()
}

/// The reason a refusal of the proxied path gives an ingress, which understands only 401 and 403.
fn reason_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "refused",
    }
}

/// A refusal of the shared path as an ingress's answer: a challenge makes it 401, a failure of
/// iamgate's own stays 5xx, and every other refusal is 403 with a reason (a 404 for an unknown
/// project becomes `not_found`; the message says what).
pub(super) async fn denial(refusal: Refusal) -> Verdict {
    let (parts, body) = refusal.into_parts();
    let bytes = Limited::new(body, 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let challenge = parts.headers.get(header::WWW_AUTHENTICATE).cloned();
    let status = if challenge.is_some() {
        StatusCode::UNAUTHORIZED
    } else if parts.status.is_server_error() || parts.status == StatusCode::FORBIDDEN {
        parts.status
    } else {
        StatusCode::FORBIDDEN
    };
    if status == parts.status {
        return Verdict::Deny {
            status,
            challenge,
            body: bytes,
        };
    }
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "the caller may not perform this request".to_owned());
    let reason = if status == StatusCode::UNAUTHORIZED {
        "unauthenticated"
    } else {
        reason_for(parts.status)
    };
    Verdict::Deny {
        status,
        challenge,
        body: ApiError::new(status, message)
            .with_reason(reason)
            .body()
            .into(),
    }
}

impl Gateway {
    /// Decides `original` for an ingress (counted, timed and logged like a proxied request).
    pub async fn decide_original(&self, mode: &IngressMode, original: Original) -> Verdict {
        let started = Instant::now();
        let (route_id, result) = self.decide_inner(mode, original).await;
        let verdict = match result {
            Ok(identity) => allow(mode, identity),
            Err(refusal) => denial(refusal).await,
        };
        self.count(route_id.as_deref(), verdict.status(), started);
        verdict
    }

    async fn decide_inner(
        &self,
        mode: &IngressMode,
        original: Original,
    ) -> (
        Option<std::sync::Arc<str>>,
        Result<Option<super::upstream::Identity>, Refusal>,
    ) {
        let (route, params) = match self.find(&original.method, original.target.path()) {
            Ok(found) => found,
            Err(r) if r.status() == StatusCode::BAD_REQUEST => return (None, Err(r)),
            // nginx's auth_request understands only 2xx, 401 and 403.
            Err(_) => {
                return (
                    None,
                    Err(deny("unknown_route", "no route matches the request")),
                );
            }
        };
        let id = Some(route.id.clone());
        if route.local.is_some() {
            return (
                id,
                Err(deny(
                    "local_route",
                    "iamgate serves this route itself: route it to the gateway, not past it",
                )),
            );
        }
        if route.response.is_some() && !mode.skip_response_rules {
            return (
                id,
                Err(deny(
                    "response_rule",
                    "this route's answer is filtered by a response rule, which an authorizer cannot apply",
                )),
            );
        }
        let body = match (&original.body, route.needs_body) {
            (_, false) => None,
            (OriginalBody::Full(b), true) if b.len() <= self.max_decision_body() => Some(b.clone()),
            (OriginalBody::Full(_) | OriginalBody::TooLarge, true) => {
                return (
                    id,
                    Err(deny(
                        "body_too_large",
                        "the request body is too large to decide on",
                    )),
                );
            }
            (OriginalBody::Absent, true) => {
                return (
                    id,
                    Err(deny(
                        "body_required",
                        "this route is decided on the request body, which the ingress did not send",
                    )),
                );
            }
            (OriginalBody::Partial, true) => {
                return (
                    id,
                    Err(deny(
                        "partial_body",
                        "this route is decided on the request body, which the ingress sent only in part",
                    )),
                );
            }
        };
        let mut parts = Request::new(()).into_parts().0;
        if let Some(t) = original.trace {
            t.set("iamgate.original.route", route.id.to_string());
            parts.extensions.insert(t);
        }
        parts.method = original.method;
        parts.uri = original.target.into();
        parts.headers = original.headers;
        // The headers that named the request are not part of it (whichever door it came by).
        for n in &NAMING {
            parts.headers.remove(n);
        }
        let result = self
            .decide(&parts, &route, &params, body.as_ref())
            .await
            .map(|allowed| allowed.caller.as_ref().map(identity_of));
        (id, result)
    }
}

/// The allow answer for `identity` (none on a public route).
fn allow(mode: &IngressMode, identity: Option<super::upstream::Identity>) -> Verdict {
    let names = mode.names.all().map(Clone::clone).to_vec();
    match identity.map(|i| i.headers(&mode.names)) {
        None => Verdict::Allow {
            set: Vec::new(),
            remove: names,
        },
        Some(Ok(set)) => Verdict::Allow {
            set: set.to_vec(),
            remove: Vec::new(),
        },
        // An identity no header can carry is refused rather than forwarded without it.
        Some(Err(_)) => Verdict::Deny {
            status: StatusCode::FORBIDDEN,
            challenge: None,
            body: ApiError::new(
                StatusCode::FORBIDDEN,
                "the identity cannot be carried in headers",
            )
            .with_reason("identity_unrepresentable")
            .body()
            .into(),
        },
    }
}

/// The original request named by a request to `/-/authz` (its path after the prefix, or the
/// naming headers); every naming present must agree.
#[allow(clippy::result_large_err)]
fn name_original(parts: &http::request::Parts) -> Result<(Method, PathAndQuery), Refusal> {
    let h = &parts.headers;
    let text = |i: usize| h.get(&NAMING[i]).map(|v| v.to_str().map(str::to_owned));
    let mut methods: Vec<String> = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    let unreadable = || {
        deny(
            "bad_original_request",
            "a naming header is not readable text",
        )
    };
    for i in [0, 2] {
        if let Some(m) = text(i) {
            methods.push(m.map_err(|_| unreadable())?);
        }
    }
    for i in [1, 3] {
        if let Some(t) = text(i) {
            targets.push(t.map_err(|_| unreadable())?);
        }
    }
    if let Some(rest) = parts.uri.path().strip_prefix(PREFIX)
        && !rest.is_empty()
    {
        let mut t = rest.to_owned();
        if let Some(q) = parts.uri.query() {
            t.push('?');
            t.push_str(q);
        }
        targets.push(t);
        methods.push(parts.method.as_str().to_owned());
    }
    let Some(target) = targets.first() else {
        return Err(deny(
            "no_original_request",
            "name the original request: a path after /-/authz, X-Forwarded-Uri or X-Original-URI",
        ));
    };
    if targets.iter().any(|t| t != target) || methods.iter().any(|m| Some(m) != methods.first()) {
        return Err(deny(
            "ambiguous_original_request",
            "the request names more than one original request",
        ));
    }
    let target = origin_form(target)?;
    // Without a method header, the subrequest's own method (nginx's auth_request keeps it).
    let method = match methods.first() {
        Some(m) => method_named(m)?,
        None => parts.method.clone(),
    };
    Ok((method, target))
}

/// Serves one request to `/-/authz`.
pub async fn serve_http(
    gateway: &Gateway,
    mode: &IngressMode,
    req: Request<Incoming>,
    trusted: bool,
) -> Response<Body> {
    let verdict = if trusted {
        let (parts, body) = req.into_parts();
        match name_original(&parts) {
            Ok((method, target)) => {
                let read = gateway.read_decision_body(&parts.headers, body).await.ok();
                let original = Original {
                    method,
                    target,
                    body: OriginalBody::of(&parts.headers, read),
                    trace: parts.extensions.get::<RequestTrace>().cloned(),
                    headers: parts.headers,
                };
                gateway.decide_original(mode, original).await
            }
            Err(refusal) => denial(refusal).await,
        }
    } else {
        denial(deny(
            "untrusted_peer",
            "decisions are answered to the ingresses in server.trusted_proxies only",
        ))
        .await
    };
    render_http(verdict)
}

fn render_http(verdict: Verdict) -> Response<Body> {
    match verdict {
        Verdict::Allow { set, remove } => {
            let mut r = Response::new(full(Bytes::new()));
            let h = r.headers_mut();
            for (n, v) in set {
                h.insert(n, v);
            }
            let listed = remove
                .iter()
                .map(HeaderName::as_str)
                .collect::<Vec<_>>()
                .join(",");
            if let (false, Ok(v)) = (listed.is_empty(), HeaderValue::from_str(&listed)) {
                h.insert(HEADERS_TO_REMOVE, v);
            }
            r
        }
        Verdict::Deny {
            status,
            challenge,
            body,
        } => {
            let mut r = crate::error::json(status, body);
            if let Some(c) = challenge {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, c);
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn each_naming_is_understood_and_all_must_agree() {
        let named = |p| {
            name_original(&p)
                .map(|(m, t)| (m.to_string(), t.to_string()))
                .map_err(|e| e.status())
        };
        let ok = |m: &str, t: &str| Ok::<_, StatusCode>((m.to_owned(), t.to_owned()));
        // Envoy's HTTP mode: the original method and path after the prefix.
        assert_eq!(
            (named(parts("DELETE", "/-/authz/api/x?y=1", &[]))),
            ok("DELETE", "/api/x?y=1")
        );
        // Traefik.
        assert_eq!(
            (named(parts(
                "GET",
                "/-/authz",
                &[
                    ("x-forwarded-method", "POST"),
                    ("x-forwarded-uri", "/api/a")
                ]
            ))),
            ok("POST", "/api/a")
        );
        // nginx, with and without the method header.
        assert_eq!(
            (named(parts(
                "GET",
                "/-/authz",
                &[("x-original-method", "PATCH"), ("x-original-uri", "/api/b")]
            ))),
            ok("PATCH", "/api/b")
        );
        assert_eq!(
            (named(parts("PUT", "/-/authz", &[("x-original-uri", "/api/b")]))),
            ok("PUT", "/api/b")
        );
        // Two namings that agree are one request.
        assert_eq!(
            (named(parts(
                "GET",
                "/-/authz",
                &[("x-original-uri", "/api/b"), ("x-forwarded-uri", "/api/b")]
            ))),
            ok("GET", "/api/b")
        );
        // A client's own copy of a naming header the ingress does not set.
        for h in [
            &[
                ("x-original-uri", "/api/real"),
                ("x-forwarded-uri", "/api/other"),
            ][..],
            &[
                ("x-original-uri", "/api/real"),
                ("x-original-method", "DELETE"),
                ("x-forwarded-method", "GET"),
            ][..],
            &[("x-original-uri", "/api/other")][..],
        ] {
            let prefix = h.len() == 1;
            let uri = if prefix {
                "/-/authz/api/real"
            } else {
                "/-/authz"
            };
            assert_eq!(
                (named(parts("GET", uri, h))),
                Err(StatusCode::FORBIDDEN),
                "{h:?}"
            );
        }
        // Nothing named, or not a path.
        assert_eq!(
            (named(parts("GET", "/-/authz", &[]))),
            Err(StatusCode::FORBIDDEN)
        );
        for bad in ["http://evil/api", "*", "api/x"] {
            assert_eq!(
                (named(parts("GET", "/-/authz", &[("x-original-uri", bad)]))),
                Err(StatusCode::FORBIDDEN),
                "{bad}"
            );
        }
    }
}
