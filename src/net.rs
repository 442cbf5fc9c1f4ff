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
/// request path, to any host. Proxied requests go through [`Pool`] instead.
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
