//! The upstream client and header hygiene: the last stage of an allowed request.
//!
//! Requests and responses stream through without buffering. Hop-by-hop headers (and any the
//! `Connection` header names) are removed both ways; inbound identity headers are always dropped
//! and replaced by the verified identity, so a caller can never smuggle `miauserid`; the inbound
//! `Authorization` header is dropped unless configured; `X-Forwarded-*` and `x-request-id` are
//! set. A refused connection becomes 502, a slow upstream 504, both with JSON bodies.

use super::deadline::Deadline;
use super::pool::{Connector, IDLE_TIMEOUT, MAX_IDLE, Pool};
use crate::error::{ApiError, Body};
use crate::telemetry::trace::{RequestTrace, SpanKind};
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why forwarding failed; each maps to one response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Could not connect or the connection broke: 502.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// No response headers within the timeout: 504.
    #[error("upstream timed out")]
    Timeout,
    /// The forwarded request could not be built: 500.
    #[error("cannot build upstream request: {0}")]
    Request(String),
}

impl UpstreamError {
    /// The JSON response for the client.
    pub fn into_response(self) -> Response<Body> {
        match self {
            Self::Unavailable(_) => ApiError::new(StatusCode::BAD_GATEWAY, "upstream unavailable"),
            Self::Timeout => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream timed out"),
            Self::Request(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
        .into_response()
    }
}

pub use crate::config::IdentityHeaders;

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            user_id: HeaderName::from_static("miauserid"),
            groups: HeaderName::from_static("miausergroups"),
            properties: HeaderName::from_static("miauserproperties"),
            client_type: HeaderName::from_static("client-type"),
        }
    }
}

/// The verified identity to hand upstream.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Subject id.
    pub user_id: String,
    /// Groups.
    pub groups: Arc<[String]>,
    /// Properties as JSON text.
    pub properties: String,
    /// `serviceaccount` or `user`, as the header carries it.
    pub client_type: HeaderValue,
}

impl Identity {
    /// The identity as headers named by `names`: user id, groups ([`groups_header`]),
    /// properties and client type. Fails only for a value no header can carry (a control
    /// character in an external issuer's claim). The texts become the values without a copy.
    pub fn headers(
        self,
        names: &IdentityHeaders,
    ) -> Result<[(HeaderName, HeaderValue); 4], header::InvalidHeaderValue> {
        let value = |s: String| HeaderValue::from_maybe_shared(bytes::Bytes::from(s));
        let groups = if self.groups.is_empty() {
            HeaderValue::from_static("")
        } else {
            value(groups_header(&self.groups))?
        };
        Ok([
            (names.user_id.clone(), value(self.user_id)?),
            (names.groups.clone(), groups),
            (names.properties.clone(), value(self.properties)?),
            (names.client_type.clone(), self.client_type),
        ])
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy `keep-alive` and `proxy-connection`.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// False for a name that cannot be in [`HOP_BY_HOP`]: names are lowercase and every hop-by-hop
/// name starts with one of these letters, so most headers (`host`, `authorization`, `date`,
/// `server`) are passed over after one byte instead of nine comparisons.
fn may_be_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str().as_bytes().first(),
        Some(b'c' | b'k' | b'p' | b't' | b'u')
    )
}

/// Removes hop-by-hop headers and those the `Connection` header lists.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Runs twice per proxied request. The request usually has none of these, the response
    // usually `Connection: keep-alive` alone: one pass over the few headers present finds which
    // are there, and only those are removed (a hashed removal each).
    let mut present = [false; HOP_BY_HOP.len()];
    let mut any = false;
    for k in h.keys() {
        if !may_be_hop_by_hop(k) {
            continue;
        }
        if let Some(i) = HOP_BY_HOP.iter().position(|n| n == k) {
            present[i] = true;
            any = true;
        }
    }
    if !any {
        return;
    }
    // `Connection` lists further hop-by-hop names (RFC 9110 §7.6.1); `keep-alive`, the usual
    // token, is removed with the fixed names below. The names are collected (to remove them
    // from the map they are read from) only when another one is listed.
    fn listed(h: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
        h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
    }
    // An answer's usual `Connection: keep-alive` names nothing more: decided without parsing.
    let only_keep_alive = h
        .get_all(header::CONNECTION)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive"));
    if !only_keep_alive && listed(h).next().is_some() {
        for n in listed(h).collect::<Vec<_>>() {
            h.remove(n);
        }
    }
    for (n, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        h.remove(n);
    }
}

/// Headers a client could use to claim another origin or URL; never forwarded.
static SPOOFABLE: [HeaderName; 4] = [
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

/// Forwarding headers: kept from a trusted ingress only.
static FORWARDING: [HeaderName; 5] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
];

/// How a request reached the gateway.
#[derive(Debug, Clone, Copy)]
pub struct Hop {
    /// The peer of the connection.
    pub peer: std::net::IpAddr,
    /// Whether the peer is a trusted ingress (`server.trusted_proxies`).
    pub trusted: bool,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// The groups header: names joined by `,`, with `%` and `,` inside a name percent-encoded
/// (`a,b` → `a%2Cb`), so that no name can split into two or two join into one.
pub fn groups_header(groups: &[String]) -> String {
    let mut out = String::new();
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for c in g.chars() {
            match c {
                '%' => out.push_str("%25"),
                ',' => out.push_str("%2C"),
                c => out.push(c),
            }
        }
    }
    out
}

/// The request id header, set by the stack and sent upstream.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Appends `ip` as text: the common IPv4 case without the formatting machinery, which cost
/// about as much as the rest of the header rewrite.
fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    use std::fmt::Write;
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if o >= 100 {
                    out.push(char::from(b'0' + o / 100));
                }
                if o >= 10 {
                    out.push(char::from(b'0' + (o / 10) % 10));
                }
                out.push(char::from(b'0' + o % 10));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// The forwarder to one upstream base URL.
#[derive(Debug, Clone)]
pub struct Upstream {
    pool: Arc<Pool>,
    /// The base URL's path without its trailing slash, put before every request's path.
    prefix: Arc<str>,
    /// The base URL's authority, sent as `Host`.
    host: HeaderValue,
    response_timeout: Duration,
    names: IdentityHeaders,
    forward_authorization: bool,
    strip: Arc<[HeaderName]>,
}

impl Upstream {
    /// A forwarder to `base` (`http(s)://host:port[/prefix]`) over connections from `connector`.
    pub fn new(
        base: Uri,
        connector: Connector,
        response_timeout: Duration,
        names: IdentityHeaders,
        forward_authorization: bool,
    ) -> Result<Self, UpstreamError> {
        let host = base
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .ok_or_else(|| UpstreamError::Request("upstream URL has no host".to_owned()))?;
        Ok(Self {
            prefix: Arc::from(base.path().trim_end_matches('/')),
            pool: Arc::new(Pool::new(connector, base, IDLE_TIMEOUT, MAX_IDLE)),
            host,
            response_timeout,
            names,
            forward_authorization,
            strip: Arc::from(Vec::new()),
        })
    }

    /// Also removes `names` from every forwarded request (headers the upstream trusts, which a
    /// client must never set).
    pub fn with_strip(mut self, names: Vec<HeaderName>) -> Self {
        self.strip = Arc::from(names);
        self
    }

    /// Idle connections to the upstream right now.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// The origin-form target: the base URL's path, then the request's path and query.
    fn target(&self, original: Option<&PathAndQuery>) -> Result<Uri, UpstreamError> {
        let pq = match original {
            // The common case, a base URL without a path: the request's own (already parsed).
            Some(pq) if self.prefix.is_empty() => pq.clone(),
            _ => {
                let pq = original.map_or("/", |p| p.as_str());
                format!("{}{pq}", self.prefix)
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| UpstreamError::Request(e.to_string()))?
            }
        };
        Ok(Uri::from(pq))
    }

    /// Forwards `req` (whose path is exactly the one the policy saw) for `identity`.
    pub async fn forward(
        &self,
        req: Request<Body>,
        identity: Option<Identity>,
        peer: SocketAddr,
        request_id: &str,
        tls: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        let hop = Hop {
            peer: peer.ip(),
            trusted: false,
            tls,
        };
        self.forward_from(req, identity, &hop, request_id).await
    }

    /// [`Upstream::forward`] for a request that arrived over `hop`: from a trusted ingress its
    /// `X-Forwarded-*` headers are kept and the chain extended, from any other peer they are
    /// replaced by the gateway's own.
    pub async fn forward_from(
        &self,
        req: Request<Body>,
        identity: Option<Identity>,
        hop: &Hop,
        request_id: &str,
    ) -> Result<Response<Body>, UpstreamError> {
        let deadline = Deadline::new(self.response_timeout);
        deadline
            .run(self.forward_within(req, identity, hop, request_id, &deadline))
            .await
            .unwrap_or(Err(UpstreamError::Timeout))
    }

    /// [`Upstream::forward_from`] for a request running under `deadline` (which must be driving
    /// this future through [`Deadline::run`]): the upstream's answer is bounded on the request's
    /// own timer instead of a second one.
    pub async fn forward_within(
        &self,
        req: Request<Body>,
        identity: Option<Identity>,
        hop: &Hop,
        request_id: &str,
        deadline: &Deadline,
    ) -> Result<Response<Body>, UpstreamError> {
        let (peer, tls) = (hop.peer, hop.tls);
        let (mut parts, body) = req.into_parts();
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let h = &mut parts.headers;
        strip_hop_by_hop(h);
        let names = self.names.all();
        // Inbound identity headers are always dropped; a request rarely carries one, so one pass
        // over the headers present decides, instead of four hashed removals.
        if h.keys().any(|k| names.contains(&k)) {
            for n in names {
                h.remove(n);
            }
        }
        if !self.forward_authorization {
            h.remove(header::AUTHORIZATION);
        }
        // Where the request came from and which URL it asked for are the gateway's to say: a
        // client's own claims could steer an upstream that trusts them (`X-Original-URL` routes
        // some servers; `X-Real-IP` and `Forwarded` name the client). An ingress the operator
        // trusts keeps its `X-Forwarded-*`; the operator's own list goes too.
        // A request rarely carries any of them: one pass over the headers present decides.
        let dropped = |k: &HeaderName| {
            SPOOFABLE.contains(k)
                || (!hop.trusted && FORWARDING.contains(k))
                || self.strip.contains(k)
        };
        if h.keys().any(dropped) {
            let present: Vec<HeaderName> = h.keys().filter(|k| dropped(k)).cloned().collect();
            for n in present {
                h.remove(n);
            }
        }
        // Room for what is added below (identity, request id, forwarding): one growth of the
        // map, instead of one at each insert that crosses its capacity.
        h.reserve(8);
        h.insert(header::HOST, self.host.clone());
        let value = |s: &str| {
            HeaderValue::from_str(s).map_err(|_| UpstreamError::Request("header value".to_owned()))
        };
        if let Some(identity) = identity {
            let set = identity
                .headers(&self.names)
                .map_err(|_| UpstreamError::Request("header value".to_owned()))?;
            for (name, v) in set {
                h.insert(name, v);
            }
        }
        // Each of these headers is looked up once, through its entry: a `get` and then an
        // `insert` hashed the name twice.
        // The stack's request-id layer usually put this very value in already.
        match h.entry(X_REQUEST_ID) {
            Entry::Occupied(mut e) => {
                if e.get().as_bytes() != request_id.as_bytes() {
                    e.insert(value(request_id)?);
                }
            }
            Entry::Vacant(e) => {
                e.insert(value(request_id)?);
            }
        }
        let mut xff = String::with_capacity(48);
        match h.entry(X_FORWARDED_FOR) {
            Entry::Occupied(mut e) => {
                if let Ok(prev) = e.get().to_str() {
                    xff.push_str(prev);
                    xff.push_str(", ");
                }
                push_ip(&mut xff, peer);
                e.insert(value(&xff)?);
            }
            Entry::Vacant(e) => {
                push_ip(&mut xff, peer);
                e.insert(value(&xff)?);
            }
        }
        h.entry(X_FORWARDED_PROTO)
            .or_insert_with(|| HeaderValue::from_static(if tls { "https" } else { "http" }));
        if let Some(host) = original_host
            && let Entry::Vacant(e) = h.entry(X_FORWARDED_HOST)
        {
            e.insert(host);
        }
        parts.uri = self.target(parts.uri.path_and_query())?;
        parts.version = http::Version::HTTP_11;
        // With tracing on, the upstream continues the trace under this call's own span; with it
        // off, a client's `traceparent` passes through untouched, as through any proxy.
        let span = parts
            .extensions
            .get::<RequestTrace>()
            .map(|t| t.child("upstream", SpanKind::Client));
        if let Some(span) = &span {
            span.inject(&mut parts.headers);
            span.set("http.request.method", parts.method.as_str().to_owned());
            span.set(
                "server.address",
                String::from_utf8_lossy(self.host.as_bytes()).into_owned(),
            );
        }
        let upstream_req = Request::from_parts(parts, body);
        let resp = deadline
            .upstream(self.response_timeout, self.pool.send(upstream_req))
            .await
            .map_err(|_| UpstreamError::Timeout)
            .and_then(|r| r.map_err(|e| UpstreamError::Unavailable(e.to_string())));
        if let Some(span) = &span {
            match &resp {
                Ok(r) => span.set("http.response.status_code", i64::from(r.status().as_u16())),
                Err(UpstreamError::Timeout) => span.fail("timeout"),
                Err(_) => span.fail("unavailable"),
            }
        }
        let (mut parts, body) = resp?.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_print_as_std_prints_them() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "192.168.10.9",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }

    #[test]
    fn the_first_letter_filter_lets_every_hop_by_hop_name_through() {
        assert!(HOP_BY_HOP.iter().all(may_be_hop_by_hop));
        assert!(!may_be_hop_by_hop(&header::HOST));
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, x-secret-hop".parse().unwrap(),
        );
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-keep", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-keep"], "yes");

        // The usual answer, `Connection: keep-alive` alone; then `close` with another option.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        h.insert(header::CONTENT_LENGTH, "2".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_LENGTH));
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "Close".parse().unwrap());
        h.append(header::CONNECTION, " X-Other ".parse().unwrap());
        h.insert("x-other", "1".parse().unwrap());
        h.insert("close", "listed, so removed too".parse().unwrap());
        h.insert("x-keep", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }
}
