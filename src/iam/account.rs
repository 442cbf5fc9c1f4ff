//! Service-account credentials: generating client ids and secrets, and hashing secrets.
//!
//! Secrets are never stored: only an HMAC-SHA-256 under a server pepper. A client secret carries
//! 256 bits of randomness, so a slow password hash would only slow the token endpoint down; the
//! pepper keeps a stolen database from being useful on its own.

use crate::model::SecretHash;
use crate::util::{b64url, random_bytes};
use aws_lc_rs::hmac;
use std::fmt;
use subtle::ConstantTimeEq;

/// A client secret in the clear: exists only between generation and the creation response.
pub struct ClientSecret(String);

impl ClientSecret {
    /// Generates 256 random bits, base64url encoded (43 URL-safe characters).
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        Ok(Self(b64url(random_bytes::<32>()?)))
    }
    /// The secret, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// Generates a client id: a random UUID, whose characters are all URL-safe and never `:`.
pub fn generate_client_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// HMAC-SHA-256 under the server pepper, with constant-time comparison.
pub struct SecretHasher {
    key: hmac::Key,
    dummy: SecretHash,
}

impl fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHasher(***)")
    }
}

impl SecretHasher {
    /// A hasher keyed with `pepper`.
    pub fn new(pepper: &[u8]) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, pepper);
        let dummy = Self::hash_with(&key, b"iamgate: no such client");
        Self { key, dummy }
    }

    fn hash_with(key: &hmac::Key, secret: &[u8]) -> SecretHash {
        let tag = hmac::sign(key, secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        SecretHash(out)
    }

    /// The stored form of `secret`.
    pub fn hash(&self, secret: &str) -> SecretHash {
        Self::hash_with(&self.key, secret.as_bytes())
    }

    /// Checks `presented` against `stored`. With no stored hash (unknown client, or an account
    /// of the other method) the same HMAC and comparison run against a dummy, so the answer
    /// takes the same time either way.
    pub fn verify(&self, presented: &[u8], stored: Option<&SecretHash>) -> bool {
        let computed = Self::hash_with(&self.key, presented);
        let target = stored.unwrap_or(&self.dummy);
        let equal: bool = computed.0.ct_eq(&target.0).into();
        equal && stored.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_urlsafe_and_distinct() {
        let a = ClientSecret::generate().unwrap();
        let b = ClientSecret::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(format!("{a:?}"), "ClientSecret(***)");
    }

    #[test]
    fn hasher_accepts_only_the_right_secret_and_depends_on_pepper() {
        let h = SecretHasher::new(b"pepper-one-0123456789");
        let stored = h.hash("s3cret");
        assert!(h.verify(b"s3cret", Some(&stored)));
        assert!(!h.verify(b"s3cret!", Some(&stored)));
        assert!(!h.verify(b"s3cret", None));
        let other = SecretHasher::new(b"pepper-two-0123456789");
        assert!(!other.verify(b"s3cret", Some(&stored)));
    }

    #[test]
    fn client_ids_are_url_safe() {
        let id = generate_client_id();
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
        );
        assert!(!id.contains(':'));
    }
}
