//! Access tokens: what the token endpoint hands out once `authn` has authenticated a client.
//!
//! [`signer`] signs with a pre-parsed RSA key and a pre-encoded JWS header, [`keyset`] holds the
//! active / next / retired keys and the JWKS they publish (and rotates them), [`metadata`] builds
//! the RFC 8414 document. [`Issuer`] ties them to the configured `iss`, `aud` and lifetime.

pub mod keyset;
pub mod metadata;
pub mod seal;
pub mod signer;
pub mod verifier;

pub use keyset::{KeyRing, KeySet, KeyStatus};
pub use signer::SigningKey;

use serde::Serialize;
use std::sync::Arc;

/// Why a token could not be issued. Internal faults only: a client never causes these.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The RSA signing operation failed.
    #[error("signing failed")]
    Sign,
    /// Claims could not be serialised.
    #[error("claims serialisation failed: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A key file could not be read, parsed or written.
    #[error("signing key {what}: {detail}")]
    Key {
        /// Which key or file.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// The shared store holding the key set failed.
    #[error("shared key set: {0}")]
    Store(#[from] SharedError),
}

/// A failure of the shared store, as its implementation describes it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SharedError(pub String);

impl std::fmt::Debug for dyn SharedDocs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never connection details.
        f.write_str("SharedDocs")
    }
}

/// A shared-store operation in flight.
pub type SharedFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, SharedError>> + Send + 'a>>;

/// Named documents every instance of a cluster shares: the sealed signing key set and the pepper
/// check. The token layer needs nothing else of a store; the store implements it (every `Store`
/// is one), so this layer does not depend on the store's.
pub trait SharedDocs: Send + Sync {
    /// A named document with its version; `None` when absent or when the store is not shared.
    fn load_shared(&self, _name: &'static str) -> SharedFuture<'_, Option<(i64, Vec<u8>)>> {
        Box::pin(async { Ok(None) })
    }
    /// Writes a shared document if its version is still `expected` (`None`: only if absent), and
    /// notifies the other instances; `Ok(false)` when another instance wrote first.
    fn store_shared(
        &self,
        _name: &'static str,
        _expected: Option<i64>,
        _value: Vec<u8>,
    ) -> SharedFuture<'_, bool> {
        Box::pin(async {
            Err(SharedError(
                "this store is not shared between instances".to_owned(),
            ))
        })
    }
}

/// Claims of an access token (RFC 9068 plus the Console's `permissions`).
#[derive(Debug, Serialize)]
pub struct AccessClaims<'a> {
    /// Issuer.
    pub iss: &'a str,
    /// Audience.
    pub aud: &'a str,
    /// Subject: the client id.
    pub sub: &'a str,
    /// Client id (RFC 9068 §2.2).
    pub client_id: &'a str,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// Unique id.
    pub jti: &'a str,
    /// Root permissions; `[]` for company accounts.
    pub permissions: &'a [String],
}

/// A freshly minted access token.
#[derive(Debug)]
pub struct Minted {
    /// The compact JWS.
    pub token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Mints access tokens with the active key of a [`KeyRing`].
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Access token `iss`.
    pub issuer: Arc<str>,
    /// Access token `aud`.
    pub audience: Arc<str>,
    /// Lifetime in seconds.
    pub lifetime_secs: u64,
    /// Keys.
    pub keys: KeyRing,
}

impl Issuer {
    /// Signs a token for `client_id` carrying `permissions`, issued at `now`.
    pub fn mint(
        &self,
        client_id: &str,
        permissions: &[String],
        now: i64,
    ) -> Result<Minted, TokenError> {
        let jti = uuid::Uuid::new_v4();
        let mut jti_buf = uuid::Uuid::encode_buffer();
        let claims = AccessClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: client_id,
            client_id,
            iat: now,
            exp: now.saturating_add(i64::try_from(self.lifetime_secs).unwrap_or(3600)),
            jti: jti.hyphenated().encode_lower(&mut jti_buf),
            permissions,
        };
        let payload = serde_json::to_vec(&claims)?;
        let set = self.keys.current();
        let token = set.active().sign(&payload)?;
        Ok(Minted {
            token,
            expires_in: self.lifetime_secs,
        })
    }
}
