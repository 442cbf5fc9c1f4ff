//! Outbound HTTP: the TLS connector (Mozilla roots plus an optional private CA), the pooled
//! general client, and the bounded fetch behind JWKS URLs and the directory sync. Sits below
//! everything that calls out (authentication, the directory sync, the proxy's upstream pool);
//! knows nothing of what it fetches.

use crate::error::Body;
use http::{Request, Uri, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// The connector of every outbound client: TCP with the connect timeout, then TLS for `https`.
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// How long an idle outbound connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The general pooled HTTP/1.1 client (plain or TLS) for JWKS URLs and directory sync: off the
/// request path, to any host. Proxied requests go through `crate::proxy::pool::Pool` instead.
pub type HttpClient = Client<Connector, Body>;

/// The connector for `http` and `https` URLs, with `connect_timeout`. TLS trusts the Mozilla
/// roots plus the PEM certificates in `extra_ca` (a private CA in front of the Console).
pub fn connector(
    connect_timeout: Duration,
    extra_ca: Option<&std::path::Path>,
) -> Result<Connector, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// A pooled general client over `connector`.
pub fn http_client(connector: Connector) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .build(connector)
}

/// GETs `uri` (JSON wanted, optionally with a bearer token) and returns its 2xx body, read up to
/// `max_bytes` and within `timeout`: the bounded fetch behind JWKS URLs and directory sync.
pub async fn fetch_bounded(
    client: &HttpClient,
    uri: &Uri,
    bearer: Option<&str>,
    max_bytes: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, String> {
    let mut req = Request::get(uri.clone()).header(header::ACCEPT, "application/json");
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body::<Body>(
            http_body_util::Empty::<bytes::Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .map_err(|e| e.to_string())?;
    let fetch = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("fetch failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("fetch answered {}", resp.status()));
        }
        http_body_util::Limited::new(resp.into_body(), max_bytes)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| format!("reading body: {e}"))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| "fetch timed out".to_owned())?
}

/// The largest collector answer read after an export.
const MAX_EXPORT_ANSWER: usize = 64 * 1024;

/// [`HttpClient`] for the trace exporter, which sends from a thread of its own outside the
/// runtime: each send is spawned onto the runtime the client was made on and awaited from
/// there, so the pooled client (and its TLS) serves the exporter as it serves everything else.
#[derive(Debug, Clone)]
pub struct ExportClient {
    client: HttpClient,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl ExportClient {
    /// Sends through `client` on the current runtime (call from inside it), each send given
    /// up after `timeout`: the exporter's thread waits for it.
    pub fn new(client: HttpClient, timeout: Duration) -> Self {
        Self {
            client,
            runtime: tokio::runtime::Handle::current(),
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (client, timeout) = (self.client.clone(), self.timeout);
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, crate::error::full(body));
        let sent = self.runtime.spawn(async move {
            let exchange = async {
                let resp = client.request(request).await?;
                let (parts, body) = resp.into_parts();
                let body = http_body_util::Limited::new(body, MAX_EXPORT_ANSWER)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| "export to the collector timed out")?
        });
        sent.await?
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The client's address.
    pub client: std::net::IpAddr,
    /// Whether the peer is a trusted ingress.
    pub peer_trusted: bool,
}

/// The client's address as the gateway counts it (limits, logs, the policy input, the
/// upstream's `X-Forwarded-For`), and whether the peer is a trusted ingress. A request from an ingress in `trusted` names its client in
/// `X-Forwarded-For` (or, without it, `Forwarded: for=`): each hop appends the address it saw,
/// so the rightmost entry that is not itself a trusted ingress is the client; entries to its left
/// were written by the client and count for nothing. A request from any other peer is its
/// peer, whatever it claims.
pub fn client_addr(
    trusted: &[crate::config::Cidr],
    peer: std::net::IpAddr,
    headers: &http::HeaderMap,
) -> Origin {
    let peer = peer.to_canonical();
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Origin {
            client: peer,
            peer_trusted: false,
        };
    }
    let mut client = peer;
    for hop in forwarded_hops(headers).iter().rev() {
        match hop {
            // Unreadable: the hop that wrote it is the last one we can vouch for.
            None => break,
            Some(ip) => {
                client = ip.to_canonical();
                if !is_trusted(client) {
                    break;
                }
            }
        }
    }
    Origin {
        client,
        peer_trusted: true,
    }
}

/// The addresses of `X-Forwarded-For` (all its lines, in order), or else those of
/// `Forwarded: for=`; `None` for an entry that is not an address (`unknown`, an obfuscated
/// name, garbage).
fn forwarded_hops(headers: &http::HeaderMap) -> Vec<Option<std::net::IpAddr>> {
    let xff: Vec<Option<std::net::IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|e| parse_node(e.trim()))
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("for=?").split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(v.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// An address as forwarding headers write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`.
fn parse_node(s: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::client_addr;
    use crate::config::Cidr;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let at = |peer: &str, h: &[(&str, &str)]| {
            client_addr(&trusted, peer.parse().unwrap(), &headers(h))
                .client
                .to_string()
        };
        // An untrusted peer's claims count for nothing.
        assert_eq!(
            at("192.0.2.9", &[("x-forwarded-for", "1.1.1.1")]),
            "192.0.2.9"
        );
        // Through one ingress, and through two (both trusted), with spoofed entries on the left.
        assert_eq!(at("10.0.0.1", &[("x-forwarded-for", "1.1.1.1")]), "1.1.1.1");
        assert_eq!(
            at(
                "10.0.0.1",
                &[("x-forwarded-for", "6.6.6.6, 1.1.1.1, 10.0.0.7")]
            ),
            "1.1.1.1"
        );
        // Several header lines read as one list.
        assert_eq!(
            at(
                "10.0.0.1",
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "2.2.2.2")
                ]
            ),
            "2.2.2.2"
        );
        // Ports and brackets, Forwarded when there is no X-Forwarded-For.
        assert_eq!(
            at("10.0.0.1", &[("x-forwarded-for", "3.3.3.3:1234")]),
            "3.3.3.3"
        );
        assert_eq!(
            at(
                "10.0.0.1",
                &[("forwarded", "for=\"[2001:db8::5]:443\";proto=https")]
            ),
            "2001:db8::5"
        );
        assert_eq!(
            at(
                "10.0.0.1",
                &[("forwarded", "for=7.7.7.7, for=4.4.4.4;by=10.0.0.1")]
            ),
            "4.4.4.4"
        );
        // Garbage stops the walk at the last hop we can vouch for; no header: the peer.
        assert_eq!(
            at("10.0.0.1", &[("x-forwarded-for", "1.1.1.1, garbage")]),
            "10.0.0.1"
        );
        assert_eq!(at("10.0.0.1", &[]), "10.0.0.1");
        // Only trusted hops: the leftmost of them.
        assert_eq!(
            at("10.0.0.1", &[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]),
            "10.9.9.9"
        );
        // IPv4-mapped peers count as their IPv4 address.
        assert_eq!(
            at("::ffff:10.0.0.1", &[("x-forwarded-for", "1.1.1.1")]),
            "1.1.1.1"
        );
    }
}
