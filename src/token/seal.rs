//! Encryption at rest for what several instances share through the database: the managed signing
//! key set is stored sealed (AES-256-GCM) under a key derived from the `secret_pepper`, which
//! lives in each instance's configuration and never in the database. A database dump alone
//! therefore holds neither usable signing keys nor the pepper that client-secret hashes need.
//!
//! The same derivation yields a check value that instances compare at start-up, so an instance
//! configured with a different pepper refuses to start instead of silently rejecting every client
//! secret created elsewhere.

use super::TokenError;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};

/// Seals and opens shared documents; built from the pepper.
pub struct Sealer {
    key: LessSafeKey,
    check: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

/// An HKDF output length.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn seal_err(detail: &str) -> TokenError {
    TokenError::Key {
        what: "shared key set".to_owned(),
        detail: detail.to_owned(),
    }
}

impl Sealer {
    /// Derives the sealing key and the check value from the pepper (HKDF-SHA256, one label
    /// each, so neither reveals the other nor relates to the HMAC that hashes client secrets).
    pub fn from_pepper(pepper: &[u8]) -> Result<Self, TokenError> {
        let prk = Salt::new(HKDF_SHA256, b"iamgate shared state").extract(pepper);
        let mut key = [0u8; 32];
        prk.expand(&[b"signing key set seal v1"], Len(32))
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| seal_err("key derivation failed"))?;
        let mut check = [0u8; 32];
        prk.expand(&[b"pepper check v1"], Len(32))
            .and_then(|okm| okm.fill(&mut check))
            .map_err(|_| seal_err("key derivation failed"))?;
        let key = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| seal_err("bad seal key"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            check,
        })
    }

    /// A value that equals another instance's exactly when both were given the same pepper.
    pub fn check_value(&self) -> &[u8; 32] {
        &self.check
    }

    /// `nonce || ciphertext || tag`; `label` binds the document to its purpose.
    pub fn seal(&self, label: &str, plain: &[u8]) -> Result<Vec<u8>, TokenError> {
        let nonce_bytes = crate::util::random_bytes::<NONCE_LEN>().map_err(|_| seal_err("rng"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&nonce_bytes);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(label.as_bytes()),
                &mut body,
            )
            .map_err(|_| seal_err("sealing failed"))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] produced with the same pepper and label.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, TokenError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(seal_err("sealed document is truncated"));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| seal_err("bad nonce"))?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(label.as_bytes()), &mut body)
            .map_err(|_| {
                seal_err(
                    "cannot be opened: this instance's secret_pepper differs from the one that stored it",
                )
            })?;
        Ok(plain.to_vec())
    }
}

/// The pepper check's name in the shared store.
const PEPPER_CHECK: &str = "pepper-check";

/// On a shared store, records this pepper's check value if none is stored yet, and otherwise
/// refuses to continue when it differs: client secrets hashed by the other instances would all
/// fail here, and the sealed key set could not be opened.
pub async fn check_same_pepper(
    store: &dyn super::SharedDocs,
    sealer: &Sealer,
) -> Result<(), TokenError> {
    for _ in 0..3 {
        match store.load_shared(PEPPER_CHECK).await? {
            Some((_, stored)) => {
                return if subtle::ConstantTimeEq::ct_eq(stored.as_slice(), &sealer.check[..]).into()
                {
                    Ok(())
                } else {
                    Err(seal_err(
                        "secret_pepper differs from the one the other instances on this database use; configure the same value everywhere",
                    ))
                };
            }
            None => {
                if store
                    .store_shared(PEPPER_CHECK, None, sealer.check.to_vec())
                    .await?
                {
                    return Ok(());
                }
            }
        }
    }
    Err(seal_err("could not record the pepper check"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_documents_open_only_with_the_same_pepper_and_label() {
        let a = Sealer::from_pepper(b"pepper-one-0123456789").unwrap();
        let b = Sealer::from_pepper(b"pepper-two-0123456789").unwrap();
        let sealed = a.seal("keys", b"secret pem").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"secret pem"));
        assert_eq!(a.open("keys", &sealed).unwrap(), b"secret pem");
        assert!(b.open("keys", &sealed).is_err());
        assert!(a.open("other", &sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(a.open("keys", &tampered).is_err());
        assert!(a.open("keys", &sealed[..10]).is_err());
        assert_ne!(a.check_value(), b.check_value());
        assert_eq!(
            a.check_value(),
            Sealer::from_pepper(b"pepper-one-0123456789")
                .unwrap()
                .check_value()
        );
        assert!(format!("{a:?}").contains("***"));
    }
}
