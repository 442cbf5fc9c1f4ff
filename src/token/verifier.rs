//! Verification of our own access tokens at the bearer layer (before routing and the policy).
//!
//! Explicit typing (`typ: at+jwt`, RFC 9068) keeps client assertions and foreign JWTs out; the
//! key is chosen by `kid` among the published keys only, with RS256 as the one algorithm; `iss`,
//! `aud` and `exp` are required. Verified tokens are cached under a seeded 64-bit hash of the
//! token's length and its last bytes (the end of its signature), and a hit is honoured only if
//! the entry's token equals the presented one byte for byte (so a collision, found or chance, is
//! a miss), the token is unexpired and no key has left the set since it was verified (a revoked
//! key takes its tokens with it at once): the cache only ever skips signature work. A
//! cryptographic digest as the key would cost more than the rest of a cached request together;
//! the comparison makes it unnecessary.
//! Whether the account still exists is the caller's check, against the live snapshot, on every
//! request.

use super::KeyRing;
use crate::util::ttl_cache::TtlCache;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

/// Why a bearer token was refused. Messages are safe to log; none contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a compact JWS with a readable header.
    #[error("malformed token")]
    Malformed,
    /// `typ` is not `at+jwt`.
    #[error("not an access token (typ)")]
    Type,
    /// `alg` other than RS256.
    #[error("unsupported algorithm")]
    Algorithm,
    /// `kid` missing or not published.
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature, issuer, audience, expiry or claim types.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The claims the gateway uses from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VerifiedToken {
    /// Subject (the client id).
    pub sub: String,
    /// Client id.
    pub client_id: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Root permissions.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The principal key of the client (`serviceaccount:<client_id>`), made once when the token
    /// is verified rather than on every request that presents it.
    #[serde(skip)]
    pub principal: Arc<str>,
}

/// Verifies access tokens signed by a [`KeyRing`].
///
/// `S` hashes tokens into cache keys; only tests choose another than the seeded default.
pub struct AccessTokenVerifier<S = foldhash::quality::RandomState> {
    keys: KeyRing,
    validation: Validation,
    /// Seeded per process, so which tokens share a key cannot be planned from outside.
    token_hash: S,
    cache: TtlCache<u64, Cached>,
}

/// A verified token, the token itself and the key ring's removal count it was verified under.
#[derive(Clone)]
struct Cached {
    text: Arc<str>,
    removals: u64,
    token: Arc<VerifiedToken>,
}

impl Cached {
    /// What the entry counts against the cache's size in bytes.
    fn weight(&self) -> u64 {
        let t = &self.token;
        let claims = t.sub.len()
            + t.client_id.len()
            + t.jti.len()
            + t.permissions.iter().map(|p| p.len() + 24).sum::<usize>();
        u64::try_from(self.text.len() + claims + 128).unwrap_or(u64::MAX)
    }
}

/// Bytes at the end of a token its cache key is made from.
const KEY_TAIL: usize = 32;

/// The part of `token` its cache key hashes: its length and its last [`KEY_TAIL`] bytes. A
/// verified token ends with its signature, which nobody without the signing key can choose, so
/// valid tokens spread over the keys as well as if all their bytes were hashed (about 900, a
/// tenth of a cached request's own work); only verified tokens are ever stored, and a presented
/// token that shares an entry's key without being its token is a miss.
fn cache_key_part(token: &[u8]) -> (usize, &[u8]) {
    (
        token.len(),
        token
            .get(token.len().saturating_sub(KEY_TAIL)..)
            .unwrap_or(token),
    )
}

/// Whether two tokens are the same, in time that depends on their lengths only: the entry's token
/// is a secret the presented one must not be able to probe byte by byte.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S> std::fmt::Debug for AccessTokenVerifier<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenVerifier")
            .finish_non_exhaustive()
    }
}

impl AccessTokenVerifier {
    /// The serving cache's size: 64 MiB, the tokens themselves and their claims, about 60,000
    /// tokens of a typical size.
    pub const CACHE_BYTES: u64 = 64 << 20;

    /// A verifier for tokens with `issuer` and `audience`, tolerating `skew`, caching verified
    /// tokens up to `cache_bytes`.
    pub fn new(
        keys: KeyRing,
        issuer: &str,
        audience: &str,
        skew: Duration,
        cache_bytes: u64,
    ) -> Self {
        Self::with_token_hash(
            keys,
            issuer,
            audience,
            skew,
            cache_bytes,
            foldhash::quality::RandomState::default(),
        )
    }
}

impl<S: BuildHasher> AccessTokenVerifier<S> {
    /// [`AccessTokenVerifier::new`] with `token_hash` making the cache keys.
    fn with_token_hash(
        keys: KeyRing,
        issuer: &str,
        audience: &str,
        skew: Duration,
        cache_bytes: u64,
        token_hash: S,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = skew.as_secs();
        Self {
            keys,
            validation,
            token_hash,
            // Tokens live an hour by default; entries never outlive that by much, and a hit is
            // re-checked against the token's own exp anyway.
            cache: TtlCache::new(cache_bytes, Duration::from_secs(3600)),
        }
    }

    /// Verifies `token` at time `now` (Unix seconds). The token is taken as the bytes the
    /// client sent: a cache hit equals a token that was valid text, so only a miss checks that
    /// it is (a header's ~900 bytes of UTF-8 validation per request otherwise).
    pub async fn verify<T: AsRef<[u8]> + ?Sized>(
        &self,
        token: &T,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, VerifyError> {
        let bytes = token.as_ref();
        let key = self.token_hash.hash_one(cache_key_part(bytes));
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        // Read before the set the verification uses: a key removed after this makes the entry
        // stale even if the verification saw the old set.
        let removals = self.keys.removals();
        // Another token under the same key is a miss; its entry gives way to this one's.
        let hit = self
            .cache
            .get(&key)
            .filter(|h| same_token(h.text.as_bytes(), bytes));
        // An entry from before a key left the set is verified again against the current one.
        if let Some(hit) = hit.as_ref().filter(|h| h.removals == removals) {
            if hit.token.exp.saturating_add(leeway) >= now {
                return Ok(hit.token.clone());
            }
            self.cache.invalidate(&key);
            return Err(VerifyError::Invalid("token expired".to_owned()));
        }
        let verified = std::str::from_utf8(bytes)
            .map_err(|_| VerifyError::Malformed)
            .and_then(|text| Ok((self.verify_uncached(text)?, text)));
        let (verified, text) = match verified {
            Ok((v, text)) => (Arc::new(v), text),
            Err(e) => {
                if hit.is_some() {
                    self.cache.invalidate(&key);
                }
                return Err(e);
            }
        };
        let entry = Cached {
            text: Arc::from(text),
            removals,
            token: verified.clone(),
        };
        let weight = entry.weight();
        self.cache.insert_weighted(key, entry, weight);
        Ok(verified)
    }

    fn verify_uncached(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(VerifyError::Algorithm);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            t == "at+jwt" || t == "application/at+jwt"
        });
        if !typ_ok {
            return Err(VerifyError::Type);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let set = self.keys.current();
        let dk = set.verifying_key(&kid).ok_or(VerifyError::UnknownKey)?;
        let mut claims = jsonwebtoken::decode::<VerifiedToken>(token, dk, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        claims.principal = crate::model::Principal::service_account(&claims.client_id).into();
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Issuer, KeySet, KeyStatus, SigningKey};
    use crate::util::{b64url, unix_now};

    fn setup() -> (Issuer, AccessTokenVerifier, Arc<SigningKey>) {
        let active = Arc::new(SigningKey::generate(None).unwrap());
        let ring = KeyRing::new(KeySet::new(vec![(KeyStatus::Active, active.clone())]).unwrap());
        let issuer = Issuer {
            issuer: Arc::from("https://gw.example"),
            audience: Arc::from("https://gw.example"),
            lifetime_secs: 3600,
            keys: ring.clone(),
        };
        let v = AccessTokenVerifier::new(
            ring,
            "https://gw.example",
            "https://gw.example",
            Duration::from_secs(30),
            1 << 20,
        );
        (issuer, v, active)
    }

    #[tokio::test]
    async fn minted_tokens_verify_and_hits_come_from_the_cache() {
        let (issuer, v, _) = setup();
        let now = unix_now();
        let t = issuer
            .mint("client-1", &["console.root.view".to_owned()], now)
            .unwrap()
            .token;
        let a = v.verify(&t, now).await.unwrap();
        assert_eq!(a.sub, "client-1");
        assert_eq!(a.permissions, vec!["console.root.view"]);
        let b = v.verify(&t, now).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "second verification is a cache hit");
        // A cached token still expires: past exp + leeway it is refused.
        assert!(matches!(
            v.verify(&t, now + 3600 + 31).await,
            Err(VerifyError::Invalid(_))
        ));
    }

    /// Every token hashes to the same cache key.
    #[derive(Clone, Default)]
    struct Colliding;
    impl BuildHasher for Colliding {
        type Hasher = Constant;
        fn build_hasher(&self) -> Constant {
            Constant
        }
    }
    struct Constant;
    impl std::hash::Hasher for Constant {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[tokio::test]
    async fn a_token_sharing_a_cached_token_s_key_never_gets_its_identity() {
        let (issuer, _, _) = setup();
        let v = AccessTokenVerifier::with_token_hash(
            issuer.keys.clone(),
            "https://gw.example",
            "https://gw.example",
            Duration::from_secs(30),
            1 << 20,
            Colliding,
        );
        let now = unix_now();
        let a = issuer.mint("client-1", &[], now).unwrap().token;
        assert_eq!(v.verify(&a, now).await.unwrap().sub, "client-1");
        // The same key, another text: an unsigned copy of the cached token's claims, a token cut
        // short, garbage. Each is verified itself and refused.
        let (signed, _) = a.rsplit_once('.').unwrap();
        for forged in [
            format!("{signed}."),
            a[..a.len() - 1].to_owned(),
            "x".to_owned(),
        ] {
            assert!(v.verify(&forged, now).await.is_err(), "{forged}");
        }
        // Another valid token takes the key; both keep their own identity.
        let b = issuer.mint("client-2", &[], now).unwrap().token;
        assert_eq!(v.verify(&b, now).await.unwrap().sub, "client-2");
        assert_eq!(v.verify(&a, now).await.unwrap().sub, "client-1");
        assert!(same_token(a.as_bytes(), a.as_bytes()));
        assert!(!same_token(a.as_bytes(), b.as_bytes()));
        assert!(!same_token(a.as_bytes(), signed.as_bytes()));
        // Bytes that are not text are refused as malformed, cached or not.
        let mut bad = a.clone().into_bytes();
        bad[3] = 0xff;
        assert_eq!(
            v.verify(&bad, now).await.unwrap_err(),
            VerifyError::Malformed
        );
    }

    #[tokio::test]
    async fn a_key_that_leaves_the_set_takes_its_cached_tokens_with_it() {
        let (issuer, v, active) = setup();
        let now = unix_now();
        let t = issuer.mint("client-1", &[], now).unwrap().token;
        v.verify(&t, now).await.unwrap();
        v.verify(&t, now).await.unwrap();
        // The key is revoked: the set now publishes only another one.
        let other = Arc::new(SigningKey::generate(None).unwrap());
        issuer
            .keys
            .replace(KeySet::new(vec![(KeyStatus::Active, other)]).unwrap());
        assert_eq!(
            v.verify(&t, now).await.unwrap_err(),
            VerifyError::UnknownKey,
            "a verification cached before the revocation is not honoured"
        );
        // A set that only adds keys leaves the cache alone.
        let t2 = issuer.mint("client-2", &[], now).unwrap().token;
        let a = v.verify(&t2, now).await.unwrap();
        let current = issuer.keys.current();
        let mut keys = current.published().to_vec();
        keys.push((KeyStatus::Next, active));
        issuer.keys.replace(KeySet::new(keys).unwrap());
        assert!(Arc::ptr_eq(&a, &v.verify(&t2, now).await.unwrap()));
    }

    #[tokio::test]
    async fn wrong_type_issuer_audience_key_and_signature_are_refused() {
        let (issuer, v, active) = setup();
        let now = unix_now();
        let claims = |iss: &str, aud: &str, exp: i64| {
            serde_json::to_vec(&serde_json::json!({"iss": iss, "aud": aud, "sub": "c", "client_id": "c", "exp": exp, "jti": "j", "iat": now})).unwrap()
        };
        let header = |typ: &str, kid: &str| {
            b64url(format!(r#"{{"alg":"RS256","typ":"{typ}","kid":"{kid}"}}"#))
        };
        let kid = active.kid().to_owned();
        let ok = active
            .sign_with_header(
                &header("at+jwt", &kid),
                &claims("https://gw.example", "https://gw.example", now + 60),
            )
            .unwrap();
        assert!(v.verify(&ok, now).await.is_ok());
        let jwt = active
            .sign_with_header(
                &header("JWT", &kid),
                &claims("https://gw.example", "https://gw.example", now + 60),
            )
            .unwrap();
        assert_eq!(v.verify(&jwt, now).await.unwrap_err(), VerifyError::Type);
        let iss = active
            .sign_with_header(
                &header("at+jwt", &kid),
                &claims("https://evil", "https://gw.example", now + 60),
            )
            .unwrap();
        assert!(matches!(
            v.verify(&iss, now).await,
            Err(VerifyError::Invalid(_))
        ));
        let aud = active
            .sign_with_header(
                &header("at+jwt", &kid),
                &claims("https://gw.example", "other", now + 60),
            )
            .unwrap();
        assert!(matches!(
            v.verify(&aud, now).await,
            Err(VerifyError::Invalid(_))
        ));
        let expired = active
            .sign_with_header(
                &header("at+jwt", &kid),
                &claims("https://gw.example", "https://gw.example", now - 120),
            )
            .unwrap();
        assert!(matches!(
            v.verify(&expired, now).await,
            Err(VerifyError::Invalid(_))
        ));
        let unknown = active
            .sign_with_header(
                &header("at+jwt", "nope"),
                &claims("https://gw.example", "https://gw.example", now + 60),
            )
            .unwrap();
        assert_eq!(
            v.verify(&unknown, now).await.unwrap_err(),
            VerifyError::UnknownKey
        );
        // A key outside the ring, claiming the ring's kid.
        let stranger = SigningKey::generate(None).unwrap();
        let forged = stranger
            .sign_with_header(
                &header("at+jwt", &kid),
                &claims("https://gw.example", "https://gw.example", now + 60),
            )
            .unwrap();
        assert!(matches!(
            v.verify(&forged, now).await,
            Err(VerifyError::Invalid(_))
        ));
        let none = format!(
            "{}.{}.",
            b64url(r#"{"alg":"none","typ":"at+jwt"}"#),
            b64url(claims("https://gw.example", "https://gw.example", now + 60))
        );
        assert_eq!(
            v.verify(&none, now).await.unwrap_err(),
            VerifyError::Malformed
        );
        assert_eq!(
            v.verify("garbage", now).await.unwrap_err(),
            VerifyError::Malformed
        );
        let _ = issuer;
    }
}
