//! Tokens of users from trusted external issuers (an OIDC provider in front of the Console), the
//! alternative branch of bearer authentication.
//!
//! Each issuer is configured with its audience, the claims that carry the subject and the
//! groups, and a JWKS from a file or a URL. The URL is fetched with a bounded size and time, and
//! re-fetched when a token names an unknown `kid`, at most once per `refresh_min` so a stream of
//! junk tokens cannot turn the gateway into a load generator against the provider.

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::external::{
    ExternalIssuerSettings, JwksSource, default_issuer_name, valid_issuer_name,
};

/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longest a JWKS fetch may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an external token or JWKS was refused; safe to log, never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    /// JWKS could not be loaded.
    #[error("jwks of {issuer}: {message}")]
    Jwks {
        /// Issuer.
        issuer: String,
        /// What failed.
        message: String,
    },
    /// The token failed verification.
    #[error("{0}")]
    Token(String),
}

/// An authenticated external user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalUser {
    /// Subject.
    pub id: String,
    /// Groups.
    pub groups: Vec<String>,
    /// The issuer.
    pub issuer: String,
    /// The issuer's configured name.
    pub issuer_name: String,
}

type Keys = HashMap<String, (Algorithm, Arc<DecodingKey>)>;

/// One trusted issuer with its current keys.
pub struct ExternalIssuer {
    settings: ExternalIssuerSettings,
    keys: ArcSwap<Keys>,
    last_refresh: tokio::sync::Mutex<Option<std::time::Instant>>,
    client: crate::net::HttpClient,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer")
            .field("issuer", &self.settings.issuer)
            .field("keys", &self.keys.load().len())
            .finish()
    }
}

fn parse_jwks(issuer: &str, bytes: &[u8]) -> Result<Keys, ExternalError> {
    let err = |message: String| ExternalError::Jwks {
        issuer: issuer.to_owned(),
        message,
    };
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
    let mut keys = Keys::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
        {
            continue;
        }
        let alg = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok())
                .unwrap_or(Algorithm::RS256),
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok())
                .unwrap_or(Algorithm::ES256),
            _ => continue,
        };
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            continue;
        }
        if let Ok(dk) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid, (alg, Arc::new(dk)));
        }
    }
    if keys.is_empty() {
        return Err(err("no usable signing keys".to_owned()));
    }
    Ok(keys)
}

impl ExternalIssuer {
    /// The issuer, with its keys loaded when they can be. When they cannot (the identity
    /// provider is down, the file not yet mounted), the gateway still starts and serves
    /// everything else: the failure is logged, this issuer's users are refused, and a
    /// background task retries (1 s, doubling to 30 s) until the keys load or the issuer is
    /// dropped.
    pub async fn load(
        settings: ExternalIssuerSettings,
        client: crate::net::HttpClient,
    ) -> Arc<Self> {
        let issuer = Arc::new(Self {
            keys: ArcSwap::from_pointee(Keys::new()),
            last_refresh: tokio::sync::Mutex::new(None),
            client,
            settings,
        });
        if let JwksSource::File(path) = &issuer.settings.jwks {
            issuer.watch_file(path.clone());
        }
        match issuer.fetch().await {
            Ok(keys) => issuer.keys.store(Arc::new(keys)),
            Err(e) => {
                tracing::error!(error = %e, "issuer keys unavailable at start; its users are refused until a retry loads them");
                let weak = Arc::downgrade(&issuer);
                tokio::spawn(async move {
                    let mut wait = std::time::Duration::from_secs(1);
                    loop {
                        tokio::time::sleep(wait).await;
                        let Some(issuer) = weak.upgrade() else { return };
                        if !issuer.keys.load().is_empty() {
                            return;
                        }
                        match issuer.fetch().await {
                            Ok(keys) => {
                                issuer.keys.store(Arc::new(keys));
                                tracing::info!(issuer = %issuer.settings.issuer, "issuer keys loaded");
                                return;
                            }
                            Err(e) => tracing::warn!(error = %e, "issuer keys still unavailable"),
                        }
                        wait = (wait * 2).min(std::time::Duration::from_secs(30));
                    }
                });
            }
        }
        issuer
    }

    /// Re-reads a JWKS file whenever it changes (checked every `refresh_min`), so that a key
    /// removed from it stops verifying tokens without a restart; an unknown `kid` alone would
    /// only ever add keys. A file that does not parse keeps the current keys. Ends when the
    /// issuer is dropped.
    fn watch_file(self: &Arc<Self>, path: std::path::PathBuf) {
        let weak = Arc::downgrade(self);
        // `refresh_min_secs: 0` (refresh on every unknown kid) must not spin this loop.
        let every = self
            .settings
            .refresh_min
            .max(std::time::Duration::from_secs(1));
        tokio::spawn(async move {
            let mut watch = crate::util::FileWatch::new(vec![path]);
            loop {
                tokio::time::sleep(every).await;
                let Some(issuer) = weak.upgrade() else { return };
                let Some(now) = watch.changed() else {
                    continue;
                };
                match issuer.fetch().await {
                    Ok(keys) => {
                        issuer.keys.store(Arc::new(keys));
                        watch.mark_seen(now);
                        tracing::info!(issuer = %issuer.settings.issuer, "issuer keys reloaded from their file");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "issuer key file changed but does not load; keeping the current keys")
                    }
                }
            }
        });
    }

    /// The configured `iss`.
    /// The issuer's configured name (in principals and management API ids).
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The exact `iss` this issuer signs with.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    async fn fetch(&self) -> Result<Keys, ExternalError> {
        let iss = &self.settings.issuer;
        let err = |message: String| ExternalError::Jwks {
            issuer: iss.clone(),
            message,
        };
        let bytes = match &self.settings.jwks {
            JwksSource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    crate::util::read_bounded(&path, MAX_JWKS_BYTES as u64)
                        .map_err(|e| format!("{}: {e}", path.display()))
                })
                .await
                .map_err(|e| err(e.to_string()))?
                .map_err(err)?
            }
            JwksSource::Url(uri) => crate::net::fetch_bounded(
                &self.client,
                uri,
                None,
                MAX_JWKS_BYTES,
                JWKS_FETCH_TIMEOUT,
            )
            .await
            .map_err(err)?
            .to_vec(),
        };
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(err("document too large".to_owned()));
        }
        parse_jwks(iss, &bytes)
    }

    /// Re-reads the keys if the last refresh is older than `refresh_min`; returns whether it did.
    async fn refresh(&self) -> bool {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.settings.refresh_min) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                self.keys.store(Arc::new(keys));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "jwks refresh failed; keeping the current keys");
                false
            }
        }
    }

    /// Verifies a token this issuer signed.
    pub async fn verify(&self, token: &str) -> Result<ExternalUser, ExternalError> {
        let bad = |m: &str| ExternalError::Token(m.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed token"))?;
        let kid = header.kid.ok_or_else(|| bad("token names no kid"))?;
        let mut found = self.keys.load().get(&kid).cloned();
        if found.is_none() && self.refresh().await {
            found = self.keys.load().get(&kid).cloned();
        }
        let (alg, key) = found.ok_or_else(|| bad("unknown signing key"))?;
        // The algorithm is the key's, never the token's: no alg confusion.
        if header.alg != alg {
            return Err(bad("algorithm does not match the key"));
        }
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&[&self.settings.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.settings.skew.as_secs();
        v.validate_nbf = true;
        let claims =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
                .map_err(|e| ExternalError::Token(format!("invalid token: {e}")))?
                .claims;
        let id = claims
            .get(&self.settings.subject_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("token has no subject claim"))?
            .to_owned();
        let groups = match claims.get(&self.settings.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => vec![],
        };
        Ok(ExternalUser {
            id,
            groups,
            issuer: self.settings.issuer.clone(),
            issuer_name: self.settings.name.clone(),
        })
    }
}

/// The `iss` claim of a token, read without verification, only to pick the verifier.
pub fn peek_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    if payload.len() > 64 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}
