//! The TLS listener: HTTPS with a test certificate, HTTP/2 negotiated by ALPN, and HTTP/1.1 for
//! clients that do not offer h2; proxied requests carry `x-forwarded-proto: https`.

use crate::common;

use bytes::Bytes;
use common::upstream::TestUpstream;
use common::{WAIT, gateway};
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-tls-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-tls-key.pem");

fn client(h2: bool) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>> {
    client_trusting(CERT, h2)
}

/// A client that trusts only the certificate in `cert`.
fn client_trusting(
    cert: &str,
    h2: bool,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let connector = if h2 {
        b.enable_http2().build()
    } else {
        b.enable_http1().build()
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(h2);
    builder.build(connector)
}

#[tokio::test]
async fn https_serves_http2_by_alpn_and_http1_otherwise() {
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!(
            "server:\n  tls: {{cert_file: {CERT}, key_file: {KEY}}}"
        ))
        .start()
        .await;
    let port = gw.running().addr.port();
    // A token over plain HTTP is impossible now; mint one directly.
    let c = gw
        .create(
            iamgate::iam::AuthMethod::ClientSecretBasic,
            None,
            &["console.root.view"],
        )
        .await;
    let token = gw
        .running()
        .issuer
        .mint(&c.client_id, &[], iamgate::util::unix_now())
        .unwrap()
        .token;
    for (h2, version) in [(true, Version::HTTP_2), (false, Version::HTTP_11)] {
        let client = client(h2);
        let r = tokio::time::timeout(
            WAIT,
            client.request(
                Request::get(format!("https://localhost:{port}/.well-known/jwks.json"))
                    .body(Empty::new())
                    .unwrap(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), version);
        let r = tokio::time::timeout(
            WAIT,
            client.request(
                Request::get(format!(
                    "https://localhost:{port}/api/marketplace/categories"
                ))
                .header("authorization", format!("Bearer {token}"))
                .body(Empty::new())
                .unwrap(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
        let seen = up.last().unwrap();
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert_eq!(seen.uri, "/api/marketplace/categories");
    }
    // Plain HTTP on the TLS port gets no answer.
    let plain: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let r = tokio::time::timeout(
        WAIT,
        plain.request(
            Request::get(format!("http://127.0.0.1:{port}/-/healthz"))
                .body(Empty::new())
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert!(r.is_err());
}

#[tokio::test]
async fn a_bad_certificate_file_fails_start_up_with_a_clear_error() {
    let err = common::start_error(&format!(
        "listen: 127.0.0.1:0\nserver:\n  tls: {{cert_file: /nonexistent/missing.pem, key_file: {KEY}}}\n"
    ))
    .await;
    assert!(
        err.starts_with("tls: ") && err.contains("missing.pem"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn an_https_upstream_is_reached_over_tls_with_a_configured_ca() {
    // Chain: client -> A (plain) -> B (TLS, test certificate) -> upstream.
    let up = TestUpstream::start().await;
    let b = gateway()
        .upstream(&up.url())
        .with(&format!(
            "server:\n  tls: {{cert_file: {CERT}, key_file: {KEY}}}"
        ))
        .start()
        .await;
    let b_port = b.running().addr.port();
    let a = gateway()
        .with(&format!(
            "upstream: {{url: \"https://localhost:{b_port}\", ca_file: {CERT}, response_timeout_ms: 2000}}"
        ))
        .start()
        .await;
    let r = a.get("/api/version").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = up.last().unwrap();
    assert_eq!(seen.uri, "/api/version");
    assert_eq!(
        seen.headers["x-forwarded-proto"], "https",
        "B was reached over TLS"
    );

    // Without the CA the certificate is not trusted: 502, nothing forwarded.
    let c = gateway()
        .with(&format!(
            "upstream: {{url: \"https://localhost:{b_port}\", response_timeout_ms: 2000}}"
        ))
        .start()
        .await;
    let before = up.hits();
    let r = c.get("/api/version").await;
    assert_eq!(r.status, 502);
    assert_eq!(up.hits(), before);
}

const RENEWED_CERT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/test-tls-cert-renewed.pem"
);
const RENEWED_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/test-tls-key-renewed.pem"
);

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(CERT, &cert).unwrap();
    std::fs::copy(KEY, &key).unwrap();
    let gw = gateway()
        .with(&format!(
            "server:\n  tls: {{cert_file: {}, key_file: {}, reload_secs: 1}}",
            cert.display(),
            key.display()
        ))
        .start()
        .await;
    let url = format!("https://localhost:{}/-/healthz", gw.running().addr.port());
    let answers = |trusted: &'static str| {
        let url = url.clone();
        async move {
            // A fresh client: a fresh connection, and a fresh handshake.
            let r = tokio::time::timeout(
                WAIT,
                client_trusting(trusted, false)
                    .request(Request::get(url).body(Empty::new()).unwrap()),
            )
            .await
            .expect("request timed out");
            r.map(|r| r.status().as_u16()).ok()
        }
    };
    assert_eq!(answers(CERT).await, Some(200));
    assert_eq!(answers(RENEWED_CERT).await, None);
    // A half-renewed pair (new certificate, old key) is not served: the old pair stays.
    std::fs::copy(RENEWED_CERT, &cert).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(answers(CERT).await, Some(200));
    // The key follows: new connections get the renewed certificate.
    std::fs::copy(RENEWED_KEY, &key).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while answers(RENEWED_CERT).await != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was not served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(answers(CERT).await, None);
}

/// A failed TLS handshake closes the socket outright: with nothing answered, there is nothing
/// to linger for, and a client that goes on sending after it must not hold the socket.
#[tokio::test]
async fn a_failed_handshake_closes_the_socket_without_lingering() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = gateway()
        .with(&format!(
            "server:\n  tls: {{cert_file: {CERT}, key_file: {KEY}}}"
        ))
        .start()
        .await;
    let mut s = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    s.write_all(b"GET /-/healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut alert = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut alert))
        .await
        .expect("the handshake fails at once")
        .ok();
    let ended = std::time::Instant::now();
    let failed = common::write_until_refused(
        &mut s,
        b"more plaintext",
        std::time::Duration::from_millis(200),
        60,
    )
    .await
    .expect("a write failed: the socket was closed")
    .duration_since(ended);
    assert!(
        failed < std::time::Duration::from_secs(4),
        "the socket stayed open {failed:?} after the handshake failed"
    );
}
