//! The RS256 signer on the token endpoint's hot path.
//!
//! `jsonwebtoken::encode` re-parses the private key on every call; here the key is parsed once
//! into an aws-lc-rs `RsaKeyPair`, and the base64url JWS header (constant per key) is encoded once,
//! so a signature costs one RSA operation plus the payload's encoding.

use super::TokenError;
use crate::util::{b64url, b64url_into, pem_decode, rsa_thumbprint};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use std::fmt;

/// A parsed RSA signing key with its precomputed JWS header and public JWK members.
pub struct SigningKey {
    kid: String,
    pair: RsaKeyPair,
    header_b64: String,
    n_b64: String,
    e_b64: String,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM. `kid` defaults to the
    /// RFC 7638 thumbprint. Keys under 2048 bits are refused (RFC 7518 §3.3).
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<Self, TokenError> {
        let err = |detail: &str| TokenError::Key {
            what: kid.clone().unwrap_or_else(|| "(pem)".to_owned()),
            detail: detail.to_owned(),
        };
        let block = pem_decode(pem).ok_or_else(|| err("not a PEM document"))?;
        let pair = match block.label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&block.der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&block.der),
            _ => return Err(err("expected PRIVATE KEY or RSA PRIVATE KEY")),
        }
        .map_err(|e| err(&format!("rejected: {e}")))?;
        Self::from_pair(pair, kid)
    }

    /// Generates a fresh RSA-2048 key.
    pub fn generate(kid: Option<String>) -> Result<Self, TokenError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| TokenError::Key {
            what: "new key".to_owned(),
            detail: "generation failed".to_owned(),
        })?;
        Self::from_pair(pair, kid)
    }

    fn from_pair(pair: RsaKeyPair, kid: Option<String>) -> Result<Self, TokenError> {
        if pair.public_modulus_len() < 256 {
            return Err(TokenError::Key {
                what: kid.unwrap_or_default(),
                detail: "RSA key is shorter than 2048 bits".to_owned(),
            });
        }
        let public = pair.public_key();
        let n_b64 = b64url(public.modulus().big_endian_without_leading_zero());
        let e_b64 = b64url(public.exponent().big_endian_without_leading_zero());
        let kid = kid.unwrap_or_else(|| rsa_thumbprint(&n_b64, &e_b64));
        let header = serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
        let header_b64 = b64url(serde_json::to_vec(&header)?);
        Ok(Self {
            kid,
            pair,
            header_b64,
            n_b64,
            e_b64,
            rng: SystemRandom::new(),
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (`kty, kid, use, alg, n, e`).
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
            "n": self.n_b64, "e": self.e_b64,
        })
    }

    /// The public key for verifying this key's signatures.
    pub fn verifying_key(&self) -> Result<jsonwebtoken::DecodingKey, TokenError> {
        jsonwebtoken::DecodingKey::from_rsa_components(&self.n_b64, &self.e_b64).map_err(|e| {
            TokenError::Key {
                what: self.kid.clone(),
                detail: e.to_string(),
            }
        })
    }

    /// The private key as PKCS#8 PEM, for writing to a 0600 file.
    pub fn to_pkcs8_pem(&self) -> Result<String, TokenError> {
        let der = self.pair.as_der().map_err(|_| TokenError::Key {
            what: self.kid.clone(),
            detail: "cannot serialise".to_owned(),
        })?;
        Ok(crate::util::pem_encode("PRIVATE KEY", der.as_ref()))
    }

    /// The public key as SPKI PEM.
    pub fn public_pem(&self) -> Result<String, TokenError> {
        let der = self
            .pair
            .public_key()
            .as_der()
            .map_err(|_| TokenError::Key {
                what: self.kid.clone(),
                detail: "cannot serialise public key".to_owned(),
            })?;
        Ok(crate::util::pem_encode("PUBLIC KEY", der.as_ref()))
    }

    /// Signs `payload` (JSON claims) as a compact JWS with this key's `at+jwt` header.
    pub fn sign(&self, payload: &[u8]) -> Result<String, TokenError> {
        self.sign_with_header(&self.header_b64, payload)
    }

    /// Signs `payload` under an arbitrary pre-encoded header (client assertions from the CLI).
    pub fn sign_with_header(&self, header_b64: &str, payload: &[u8]) -> Result<String, TokenError> {
        let sig_len = self.pair.public_modulus_len();
        // One allocation for the whole token: header.payload.signature.
        let mut out =
            String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + sig_len * 4 / 3 + 8);
        out.push_str(header_b64);
        out.push('.');
        b64url_into(payload, &mut out);
        let mut sig = [0u8; 1024];
        let sig = sig.get_mut(..sig_len).ok_or(TokenError::Sign)?;
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, out.as_bytes(), sig)
            .map_err(|_| TokenError::Sign)?;
        out.push('.');
        b64url_into(sig, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

    #[test]
    fn signed_token_verifies_with_jsonwebtoken_and_carries_header() {
        let key = SigningKey::generate(None).unwrap();
        let token = key
            .sign(br#"{"sub":"c","exp":9999999999,"aud":"a","iss":"i"}"#)
            .unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        let jwk = key.public_jwk();
        let dk = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&["a"]);
        v.set_issuer(&["i"]);
        let data = decode::<serde_json::Value>(&token, &dk, &v).unwrap();
        assert_eq!(data.claims["sub"], "c");
    }

    #[test]
    fn pem_round_trip_keeps_kid() {
        let key = SigningKey::generate(None).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let again = SigningKey::from_pem(&pem, None).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert!(
            SigningKey::from_pem(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                None
            )
            .is_err()
        );
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // The example key of RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            rsa_thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
