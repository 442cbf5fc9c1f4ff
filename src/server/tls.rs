//! The TLS listener's configuration: certificate chain and key from PEM files, rustls with the
//! aws-lc-rs provider, ALPN offering HTTP/2 before HTTP/1.1, and the certificate reloaded when
//! its files change (cert-manager renews them in place; a Secret volume swaps them through a
//! `..data` link), so new connections get the renewed one without a restart.

use crate::util::FileWatch;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads the chain (leaf first) and the key, and checks that they belong together. Errors name
/// the file, never key material.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    Ok(certified)
}

/// The certificate served to new connections, replaced by [`CertStore::reload_if_changed`].
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: arc_swap::ArcSwap<CertifiedKey>,
    watch: Mutex<FileWatch>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertStore {
    /// Loads the files again if they changed since the last look; a pair that does not load
    /// (half written, or a key that does not match) leaves the current certificate in service
    /// and is tried again next time. Returns whether a new certificate went live.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        let Some(now) = watch.changed() else {
            return Ok(false);
        };
        let loaded = load(&self.cert, &self.key)?;
        self.current.store(Arc::new(loaded));
        watch.mark_seen(now);
        Ok(true)
    }
}

/// Builds the acceptor from `cert` (PEM chain, leaf first) and `key` (PEM private key), and the
/// store that reloads them.
pub fn acceptor(
    cert: &Path,
    key: &Path,
) -> Result<(tokio_rustls::TlsAcceptor, Arc<CertStore>), String> {
    let watch = FileWatch::new(vec![cert.to_path_buf(), key.to_path_buf()]);
    let store = Arc::new(CertStore {
        current: arc_swap::ArcSwap::from_pointee(load(cert, key)?),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        watch: Mutex::new(watch),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), store))
}
